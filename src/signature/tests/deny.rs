//! Every refusal the verifier produces, each next to its accepted twin.

use std::time::Duration;

use super::*;
use crate::config::DigestPolicy;
use crate::registry::Algorithm;
use crate::signature::digest::{DigestAlg, content_digest_value, digest_value};
use crate::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use crate::signature::{Message, ReplayStore, Scheme, config_warnings};

const NOW: i64 = 1764842400;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const KEYS: &str = "keys:
  - id: k1
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
  - id: k-net
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    ip_allow: [10.1.2.0/24]
  - id: k-later
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    not_before: 2025-12-05T00:00:00Z
  - id: k-old
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    not_after: 2025-12-01T00:00:00Z
  - id: k-strict
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    required: [x-request-id]
  - id: legacy-job
    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
";

fn v(settings: &SignatureSettings) -> Verifier {
    verifier(KEYS, &fixture(""), settings)
}

fn msg(r: &Req) -> Message<'_> {
    Message {
        method: r.method.as_str(),
        target: &r.target,
        scheme: "https",
        authority: r.headers.get("host").and_then(|h| h.to_str().ok()),
        headers: &r.headers,
        status: None,
    }
}

/// A cavage-signed request (HMAC, key `key`, covering `covered`).
fn cavage(key: &str, covered: &[&str], mut r: Req) -> Req {
    let signer = Signer::hmac(Algorithm::HmacSha256, SECRET).unwrap();
    let (params, _) = sign::cavage(
        &msg(&r),
        &signer,
        &CavageSpec {
            key_id: key,
            algorithm: Some("hmac-sha256"),
            headers: covered.iter().map(|s| s.to_string()).collect(),
            created: None,
            expires: None,
            tyk: false,
        },
    )
    .unwrap();
    r.set("authorization", &format!("Signature {params}"));
    r
}

fn base_req() -> Req {
    Req::new(
        "POST",
        "/orders/7?x=1",
        &[
            ("Host", "api.example"),
            ("Date", "Thu, 04 Dec 2025 10:00:00 GMT"),
            ("X-Request-Id", "r-1"),
        ],
    )
}

const STD: &[&str] = &["(request-target)", "host", "date", "x-request-id"];

#[test]
fn signature_missing_and_its_twin() {
    let s = SignatureSettings::default();
    refused(
        &v(&s),
        &base_req(),
        NOW,
        Reject::SignatureMissing,
        "no signature",
    );
    // A Bearer token in Authorization is not a signature.
    let mut r = base_req();
    r.set("authorization", "Bearer abc");
    refused(&v(&s), &r, NOW, Reject::SignatureMissing, "no signature");
    accepted(&v(&s), &cavage("k1", STD, base_req()), NOW);
    // A scheme that is switched off does not count.
    let only9421 = SignatureSettings {
        schemes: crate::config::Schemes {
            cavage: false,
            rfc9421: true,
        },
        ..SignatureSettings::default()
    };
    refused(
        &v(&only9421),
        &cavage("k1", STD, base_req()),
        NOW,
        Reject::SignatureMissing,
        "signature.schemes",
    );
}

#[test]
fn malformed_signature_and_its_twin() {
    let s = SignatureSettings::default();
    let good = cavage("k1", STD, base_req());
    accepted(&v(&s), &good, NOW);
    let auth = good
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for (bad, needle) in [
        (auth.replace("keyId=", "keyId "), "name=\"value\""),
        (
            auth.replace("signature=\"", "signature=\"%zz"),
            "two hex digits",
        ),
        (
            auth.replace(",headers=\"", ",headers=\"x\",headers=\""),
            "appears twice",
        ),
        (
            "Signature keyId=\"k1\"".to_string(),
            "`signature` parameter is missing",
        ),
    ] {
        let mut r = good.clone();
        r.set("authorization", &bad);
        refused(&v(&s), &r, NOW, Reject::MalformedSignature, needle);
    }
    // Two Authorization headers are ambiguous.
    let mut r = good.clone();
    r.headers
        .append("authorization", http::HeaderValue::from_str(&auth).unwrap());
    refused(
        &v(&s),
        &r,
        NOW,
        Reject::MalformedSignature,
        "several Authorization",
    );
    // An RFC 9421 Signature-Input that is not a dictionary.
    let mut r = base_req();
    r.set("signature-input", "sig1=(");
    r.set("signature", "sig1=:AAAA:");
    refused(
        &v(&s),
        &r,
        NOW,
        Reject::MalformedSignature,
        "structured dictionary",
    );
    // A signed Date that is not a date.
    let mut r = base_req();
    r.set("date", "yesterday");
    let r = cavage("k1", STD, r);
    refused(
        &v(&s),
        &r,
        NOW,
        Reject::MalformedSignature,
        "not an HTTP date",
    );
}

#[test]
fn signature_invalid_and_its_twin() {
    let s = SignatureSettings::default();
    let good = cavage("k1", STD, base_req());
    accepted(&v(&s), &good, NOW);
    let mut t = good.clone();
    t.target = "/orders/8?x=1".to_string();
    refused(
        &v(&s),
        &t,
        NOW,
        Reject::SignatureInvalid,
        "does not verify with key `k1`",
    );
    let mut t = good.clone();
    t.method = http::Method::PUT;
    refused(&v(&s), &t, NOW, Reject::SignatureInvalid, "does not verify");
    // Algorithm confusion: the request names another algorithm than the key's.
    let mut t = good.clone();
    let a = t
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("hmac-sha256", "rsa-sha256");
    t.set("authorization", &a);
    refused(
        &v(&s),
        &t,
        NOW,
        Reject::SignatureInvalid,
        "registered as hmac-sha256",
    );
    // `hs2019` resolves through the key.
    let mut t = good.clone();
    let a = t
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("hmac-sha256", "hs2019");
    t.set("authorization", &a);
    accepted(&v(&s), &t, NOW);
    // A listed header that did not arrive.
    let mut t = good.clone();
    t.headers.remove("x-request-id");
    refused(&v(&s), &t, NOW, Reject::SignatureInvalid, "`x-request-id`");
}

#[test]
fn insufficient_coverage_and_its_twin() {
    let s = SignatureSettings::default();
    refused(
        &v(&s),
        &cavage("k1", &["host", "date"], base_req()),
        NOW,
        Reject::SignatureInvalid,
        "`(request-target)`",
    );
    // The key's own `required` adds x-request-id.
    refused(
        &v(&s),
        &cavage("k-strict", &["(request-target)", "date"], base_req()),
        NOW,
        Reject::SignatureInvalid,
        "key `k-strict` requires",
    );
    accepted(&v(&s), &cavage("k-strict", STD, base_req()), NOW);
    // digest: required without a covered digest.
    let req_digest = SignatureSettings {
        digest: DigestPolicy::Required,
        ..SignatureSettings::default()
    };
    let r = cavage("k1", STD, base_req()).body(b"{}");
    refused(
        &v(&req_digest),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "signature.digest is required",
    );
    let mut d = base_req().body(b"{}");
    d.set("digest", &digest_value(DigestAlg::Sha256, b"{}"));
    let mut covered = STD.to_vec();
    covered.push("digest");
    accepted(&v(&req_digest), &cavage("k1", &covered, d), NOW);
}

#[test]
fn a_far_future_expires_is_shown_not_panicked_on() {
    // Found with fuzz/fuzz_targets/date.rs: `fresh until` past year 9999 panicked in
    // `registry::rfc3339` (explain, and `countersign verify`).
    let open = SignatureSettings {
        required: vec!["(request-target)".to_string()],
        ..SignatureSettings::default()
    };
    let signer = Signer::hmac(Algorithm::HmacSha256, SECRET).unwrap();
    let mut r = base_req();
    let sign_until = |r: &Req, expires: i64| {
        sign::cavage(
            &msg(r),
            &signer,
            &CavageSpec {
                key_id: "k1",
                algorithm: Some("hmac-sha256"),
                headers: vec!["(request-target)".to_string(), "(expires)".to_string()],
                created: None,
                expires: Some(expires),
                tyk: false,
            },
        )
        .unwrap()
        .0
    };
    let far = 999_999_999_999_999;
    let params = sign_until(&r, far);
    r.set("authorization", &format!("Signature {params}"));
    let ok = accepted(&v(&open), &r, NOW);
    assert_eq!(ok.fresh_until, at(far + 300));
    let shown = explain(&v(&open), &r, NOW).to_string();
    assert!(
        shown.contains("fresh until Unix time 1000000000000299"),
        "{shown}"
    );
    // Its twin: an expires in the past is refused.
    let params = sign_until(&r, NOW - 301);
    r.set("authorization", &format!("Signature {params}"));
    refused(
        &v(&open),
        &r,
        NOW,
        Reject::SignatureExpired,
        "expired 301s ago",
    );
}

#[test]
fn a_huge_configured_skew_saturates_instead_of_panicking() {
    // `clock_skew: 500000000000y` loads (humantime), but adding it to now overflowed SystemTime
    // and the i64 arithmetic of the freshness window (found with fuzz/fuzz_targets/config.rs).
    let huge = Duration::from_secs(500_000_000_000 * 31_557_600);
    let s = SignatureSettings {
        required: vec!["(request-target)".to_string()],
        clock_skew: huge,
        max_age: huge,
        ..SignatureSettings::default()
    };
    // No signed time: fresh "forever".
    let r = cavage("k1", &["(request-target)"], base_req());
    let ok = accepted(&v(&s), &r, NOW);
    assert_eq!(ok.fresh_until, at(i64::MAX));
    // A signed Date, created and expires: the window saturates.
    let ok = accepted(&v(&s), &cavage("k1", STD, base_req()), NOW + 10_000_000);
    assert_eq!(ok.fresh_until, at(i64::MAX));
    let ok = accepted(
        &v(&s),
        &rfc(RFC_STD, Some(NOW), Some(NOW + 60), rfc_req(), "sig1", "k1"),
        NOW + 10_000_000,
    );
    assert_eq!(ok.fresh_until, at(i64::MAX));
    let _ = explain(&v(&s), &r, NOW).to_string();
    // Its twin: the skew does not make a bad signature good.
    let mut bad = r.clone();
    bad.target = "/orders/8?x=1".to_string();
    refused(
        &v(&s),
        &bad,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn signature_expired_and_its_twin() {
    let s = SignatureSettings::default();
    let r = cavage("k1", STD, base_req());
    accepted(&v(&s), &r, NOW + 299);
    accepted(&v(&s), &r, NOW - 299);
    refused(&v(&s), &r, NOW + 301, Reject::SignatureExpired, "301s old");
    refused(
        &v(&s),
        &r,
        NOW - 301,
        Reject::SignatureExpired,
        "301s in the future",
    );
    // An uncovered Date is ignored: a signature over (request-target) only has no time.
    let open = SignatureSettings {
        required: vec!["(request-target)".to_string()],
        ..SignatureSettings::default()
    };
    accepted(
        &v(&open),
        &cavage("k1", &["(request-target)"], base_req()),
        NOW + 86400,
    );
}

#[test]
fn unknown_key_and_its_twin() {
    let s = SignatureSettings::default();
    accepted(&v(&s), &cavage("k1", STD, base_req()), NOW);
    refused(
        &v(&s),
        &cavage("nobody", STD, base_req()),
        NOW,
        Reject::UnknownKey,
        "no key `nobody`",
    );
    refused(
        &v(&s),
        &cavage("k-later", STD, base_req()),
        NOW,
        Reject::UnknownKey,
        "not valid before 2025-12-05T00:00:00Z",
    );
    let mut later = base_req();
    later.set("date", "Fri, 05 Dec 2025 00:00:00 GMT");
    accepted(&v(&s), &cavage("k-later", STD, later), 1764892800);
    refused(
        &v(&s),
        &cavage("k-old", STD, base_req()),
        NOW,
        Reject::UnknownKey,
        "expired at 2025-12-01T00:00:00Z",
    );
    refused(
        &v(&s),
        &cavage("legacy-job", STD, base_req()),
        NOW,
        Reject::UnknownKey,
        "API key",
    );
}

#[test]
fn key_not_allowed_from_ip_and_its_twin() {
    let s = SignatureSettings::default();
    let r = cavage("k-net", STD, base_req());
    refused(
        &v(&s),
        &r,
        NOW,
        Reject::KeyNotAllowedFromIp,
        "203.0.113.9 (its ip_allow: 10.1.2.0/24)",
    );
    let mut inside = r.clone();
    inside.ip = "10.1.2.3".parse().unwrap();
    accepted(&v(&s), &inside, NOW);
    inside.ip = "::ffff:10.1.2.3".parse().unwrap();
    accepted(&v(&s), &inside, NOW);
}

#[test]
fn digest_mismatch_and_its_twin() {
    let s = SignatureSettings::default();
    let body = b"{\"amount\": 10}";
    for (field, value) in [
        ("digest", digest_value(DigestAlg::Sha256, body)),
        ("digest", digest_value(DigestAlg::Sha512, body)),
        (
            "content-digest",
            content_digest_value(DigestAlg::Sha256, body),
        ),
        (
            "content-digest",
            content_digest_value(DigestAlg::Sha512, body),
        ),
    ] {
        let mut r = base_req().body(body);
        r.set(field, &value);
        let mut covered = STD.to_vec();
        covered.push(field);
        let r = cavage("k1", &covered, r);
        assert!(v(&s).needs_body(&r.headers));
        accepted(&v(&s), &r, NOW);
        let mut t = r.clone();
        t.body = Some(b"{\"amount\": 1000}".to_vec());
        refused(&v(&s), &t, NOW, Reject::DigestMismatch, "does not match");
        // Not buffered although needed: fail closed.
        let mut t = r.clone();
        t.body = None;
        refused(&v(&s), &t, NOW, Reject::MalformedRequest, "not buffered");
        // With digest: off the body is not checked.
        let off = SignatureSettings {
            digest: DigestPolicy::Off,
            ..SignatureSettings::default()
        };
        assert!(!v(&off).needs_body(&r.headers));
        let mut t = r.clone();
        t.body = None;
        accepted(&v(&off), &t, NOW);
    }
    // A digest header the signature does not cover does not count (and is not checked).
    let mut r = base_req().body(b"x");
    r.set("digest", "SHA-256=AAAA");
    accepted(&v(&s), &cavage("k1", STD, r), NOW);
}

fn rfc(
    components: &[&str],
    created: Option<i64>,
    expires: Option<i64>,
    r: Req,
    label: &str,
    keyid: &str,
) -> Req {
    let signer = Signer::hmac(Algorithm::HmacSha256, SECRET).unwrap();
    let (input, sig, _) = sign::rfc9421(
        &msg(&r),
        &signer,
        &Rfc9421Spec {
            label,
            components: components.iter().map(|s| s.to_string()).collect(),
            created,
            expires,
            keyid,
            nonce: Some("n-1"),
            tag: Some("gw"),
            ..Default::default()
        },
    )
    .unwrap();
    let mut r = r;
    sign::append_rfc9421(&mut r.headers, &input, &sig).unwrap();
    r
}

const RFC_STD: &[&str] = &["@method", "@authority", "@path", "@query", "content-digest"];

fn rfc_req() -> Req {
    let mut r = base_req().body(b"{}");
    r.set(
        "content-digest",
        &content_digest_value(DigestAlg::Sha256, b"{}"),
    );
    r
}

#[test]
fn rfc9421_refusals_and_their_twins() {
    let s = SignatureSettings::default();
    let good = rfc(RFC_STD, Some(NOW), None, rfc_req(), "sig1", "k1");
    let ok = accepted(&v(&s), &good, NOW + 10);
    assert_eq!(ok.scheme, Scheme::Rfc9421);
    assert_eq!(ok.fresh_until, at(NOW + 300));
    // created is required by default.
    refused(
        &v(&s),
        &rfc(RFC_STD, None, None, rfc_req(), "sig1", "k1"),
        NOW,
        Reject::SignatureInvalid,
        "no created",
    );
    let no_created = SignatureSettings {
        require_created: false,
        required: vec!["(request-target)".to_string()],
        ..SignatureSettings::default()
    };
    accepted(
        &v(&no_created),
        &rfc(RFC_STD, None, None, rfc_req(), "sig1", "k1"),
        NOW,
    );
    // (request-target) needs @query too.
    refused(
        &v(&s),
        &rfc(
            &["@method", "@path"],
            Some(NOW),
            None,
            rfc_req(),
            "sig1",
            "k1",
        ),
        NOW,
        Reject::SignatureInvalid,
        "`(request-target)`",
    );
    accepted(
        &v(&s),
        &rfc(
            &["@method", "@request-target"],
            Some(NOW),
            None,
            rfc_req(),
            "sig1",
            "k1",
        ),
        NOW,
    );
    // expires in the past (beyond the skew), although created is young enough.
    let long = SignatureSettings {
        max_age: Duration::from_secs(3600),
        ..SignatureSettings::default()
    };
    let r = rfc(
        RFC_STD,
        Some(NOW - 100),
        Some(NOW - 50),
        rfc_req(),
        "sig1",
        "k1",
    );
    refused(
        &v(&long),
        &r,
        NOW + 251,
        Reject::SignatureExpired,
        "expired 301s ago",
    );
    let ok = accepted(&v(&long), &r, NOW);
    assert_eq!(ok.fresh_until, at(NOW + 250));
    // No keyid.
    let mut r = good.clone();
    let si = r
        .headers
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .replace(";keyid=\"k1\"", "");
    r.set("signature-input", &si);
    refused(&v(&s), &r, NOW, Reject::UnknownKey, "no keyid");
    // alg naming another algorithm.
    let mut r = good.clone();
    let si = r
        .headers
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
        + ";alg=\"ed25519\"";
    r.set("signature-input", &si);
    refused(
        &v(&s),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "registered as hmac-sha256",
    );
    // The body changed.
    let mut t = good.clone();
    t.body = Some(b"{ }".to_vec());
    refused(
        &v(&s),
        &t,
        NOW,
        Reject::DigestMismatch,
        "Content-Digest sha-256",
    );
    // A covered field that is missing.
    let mut t = good.clone();
    t.headers.remove("content-digest");
    refused(&v(&s), &t, NOW, Reject::SignatureInvalid, "content-digest");
    // The signature's label without a Signature member.
    let mut t = good.clone();
    t.set("signature", "other=:AAAA:");
    refused(
        &v(&s),
        &t,
        NOW,
        Reject::MalformedSignature,
        "Signature has no `sig1`",
    );
}

#[test]
fn rfc9421_several_labels_policy() {
    let s = SignatureSettings::default();
    // First label from an unknown key, second from k1: the second is accepted.
    let r = rfc(
        RFC_STD,
        Some(NOW),
        None,
        rfc_req(),
        "client",
        "someone-else",
    );
    let r = rfc(RFC_STD, Some(NOW), None, r, "gw", "k1");
    let e = explain(&v(&s), &r, NOW);
    assert_eq!(e.attempts.len(), 2);
    assert_eq!(&*accepted(&v(&s), &r, NOW).key.id, "k1");
    // Only the unknown one: unknown_key.
    let r = rfc(
        RFC_STD,
        Some(NOW),
        None,
        rfc_req(),
        "client",
        "someone-else",
    );
    refused(&v(&s), &r, NOW, Reject::UnknownKey, "someone-else");
    // The furthest failure is reported: an expired valid signature beats an unknown key.
    let r = rfc(
        RFC_STD,
        Some(NOW),
        None,
        rfc_req(),
        "client",
        "someone-else",
    );
    let r = rfc(RFC_STD, Some(NOW - 1000), None, r, "gw", "k1");
    refused(&v(&s), &r, NOW, Reject::SignatureExpired, "1000s old");
}

#[test]
fn replayed_and_its_twin() {
    let s = SignatureSettings {
        replay: crate::config::ReplaySetting::Memory,
        ..SignatureSettings::default()
    };
    let store = ReplayStore::new(1000);
    let r = cavage("k1", STD, base_req());
    let ok = accepted(&v(&s), &r, NOW);
    store
        .check_and_record(ok.replay_token, ok.fresh_until, at(NOW))
        .unwrap();
    let again = accepted(&v(&s), &r, NOW + 1);
    let d = store
        .check_and_record(again.replay_token, again.fresh_until, at(NOW + 1))
        .unwrap_err();
    assert_eq!(d.reject, Reject::Replayed);
    // A different request id makes a different signature: accepted.
    let mut other = base_req();
    other.set("x-request-id", "r-2");
    let o = accepted(&v(&s), &cavage("k1", STD, other), NOW + 1);
    store
        .check_and_record(o.replay_token, o.fresh_until, at(NOW + 1))
        .unwrap();
    // After the signature went stale the store forgets it (and the verifier refuses it anyway).
    assert_eq!(ok.fresh_until, at(NOW + 300));
    store
        .check_and_record(ok.replay_token, at(NOW + 700), at(NOW + 301))
        .unwrap();
}

#[test]
fn warnings_for_replay_without_unique_coverage() {
    let mut s = SignatureSettings {
        replay: crate::config::ReplaySetting::Memory,
        ..SignatureSettings::default()
    };
    let w = config_warnings(&s);
    assert!(w.iter().any(|w| w.contains("no component unique")), "{w:?}");
    s.required.push("x-request-id".to_string());
    assert!(
        !config_warnings(&s)
            .iter()
            .any(|w| w.contains("no component unique"))
    );
    let wide = SignatureSettings {
        clock_skew: Duration::from_secs(7200),
        ..SignatureSettings::default()
    };
    assert!(
        config_warnings(&wide)
            .iter()
            .any(|w| w.contains("over an hour"))
    );
    assert!(config_warnings(&SignatureSettings::default()).is_empty());
}
