//! Tyk's request signing, from TYK.md's description of `mw_request_signing.go` and written
//! independently of the verifier: Go's random map order, URL-escaped HMAC values, `UTC` dates,
//! `signature_header`, the `header_list` quirks, and the proxy's changes after signing.

#[path = "../../../tests/common/tyk_signer.rs"]
mod tyk_signer;

use super::*;
use crate::signature::sign::{CavageSpec, Signer};
use crate::signature::{Message, sign};
use tyk_signer::*;

impl GoRequest {
    /// The request as it leaves for the backend.
    fn to_req(&self, target: &str) -> Req {
        let mut pairs = Vec::new();
        for (k, vs) in &self.header {
            for v in vs {
                pairs.push((k.as_str(), v.as_str()));
            }
        }
        Req::new(&self.method, target, &pairs)
    }
}

const NOW: i64 = 1764842400; // Thu, 04 Dec 2025 10:00:00 UTC

fn keys() -> String {
    let pubkey = fixture("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem");
    format!(
        "keys:
  - id: tyk-gw-1
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
  - id: tyk-gw-sha1
    algorithm: hmac-sha1
    legacy_sha1: true
    secret: \"{SECRET}\"
  - id: tyk-gw-384
    algorithm: hmac-sha384
    secret: \"{SECRET}\"
  - id: tyk-gw-512
    algorithm: hmac-sha512
    secret: \"{SECRET}\"
  - id: tyk-gw-rsa
    algorithm: rsa-sha256
    public_key: {}
",
        pubkey.display()
    )
}

fn tyk_verifier(settings: &SignatureSettings) -> Verifier {
    verifier(&keys(), &fixture(""), settings)
}

fn strict() -> SignatureSettings {
    SignatureSettings::default()
}

fn compat() -> SignatureSettings {
    SignatureSettings {
        tyk_compat: true,
        ..SignatureSettings::default()
    }
}

#[test]
fn worked_example_byte_for_byte() {
    let expected = "Signature keyId=\"tyk-gw-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) x-request-id accept date\",signature=\"ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D\"";
    let signing_string = "(request-target): get /orders/42?expand=items&page=2\nx-request-id: r-1\naccept: application/json\ndate: Thu, 04 Dec 2025 10:00:00 UTC";
    let r = Req::new(
        "GET",
        "/orders/42?expand=items&page=2",
        &[
            ("X-Request-Id", "r-1"),
            ("Accept", "application/json"),
            ("Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
            ("Authorization", expected),
        ],
    );
    for s in [strict(), compat()] {
        let v = tyk_verifier(&s);
        let e = explain(&v, &r, NOW + 5);
        assert!(e.verdict.is_ok(), "{e}");
        assert_eq!(
            e.attempts[0].base.as_deref(),
            Some(signing_string.as_bytes())
        );
        assert_eq!(&*accepted(&v, &r, NOW + 5).key.id, "tyk-gw-1");
    }

    // The test signer above and `countersign sign --scheme tyk` both produce exactly this header.
    let mut g = GoRequest::new(
        "GET",
        "/orders/42?expand=items&page=2",
        &[("X-Request-Id", "r-1"), ("Accept", "application/json")],
    );
    // The map order of the example: X-Request-Id, Accept.
    tyk_sign(&TykApi::hmac("tyk-gw-1", "hmac-sha256"), &mut g, NOW, None);
    let h = g.to_req("/").headers;
    assert_eq!(h.get("authorization").unwrap().to_str().unwrap(), expected);
    assert_eq!(h.get("date").unwrap(), "Thu, 04 Dec 2025 10:00:00 UTC");
    let signer = Signer::hmac(crate::registry::Algorithm::HmacSha256, b"9879879878787878").unwrap();
    let msg = Message {
        method: "GET",
        target: "/orders/42?expand=items&page=2",
        scheme: "https",
        authority: None,
        headers: &r.headers,
        status: None,
    };
    let (params, base) = sign::cavage(
        &msg,
        &signer,
        &CavageSpec {
            key_id: "tyk-gw-1",
            algorithm: Some("hmac-sha256"),
            headers: ["(request-target)", "x-request-id", "accept", "date"]
                .map(String::from)
                .to_vec(),
            created: None,
            expires: None,
            tyk: true,
        },
    )
    .unwrap();
    assert_eq!(format!("Signature {params}"), expected);
    assert_eq!(base, signing_string.as_bytes());
}

#[test]
fn default_header_list_in_random_orders_every_algorithm() {
    let base_headers = [
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        ("User-Agent", "curl/8.5.0"),
        ("X-Request-Id", "r-77"),
        ("Content-Length", "0"),
    ];
    let mut seen_orders = std::collections::HashSet::new();
    for seed in 0..40u64 {
        for api in TykApi::every() {
            let key = api.key_id;
            let mut g = GoRequest::new("POST", "/orders?x=1", &base_headers);
            tyk_sign(&api, &mut g, NOW, Some(seed));
            let r = g.to_req("/orders?x=1");
            let auth = r
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            seen_orders.insert(
                auth.split("headers=")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .nth(1)
                    .unwrap()
                    .to_string(),
            );
            if api.rsa.is_none() {
                assert!(
                    auth.contains("%3D\"") || api.algorithm == "hmac-sha384",
                    "{auth}"
                );
            }
            for s in [strict(), compat()] {
                let v = tyk_verifier(&s);
                assert_eq!(&*accepted(&v, &r, NOW + 1).key.id, key);
            }
            // Tampered copies are refused: path, a header, the date, the key id.
            let v = tyk_verifier(&strict());
            let mut t = r.clone();
            t.target = "/orders?x=2".to_string();
            refused(&v, &t, NOW + 1, Reject::SignatureInvalid, "does not verify");
            let mut t = r.clone();
            t.set("x-request-id", "r-78");
            refused(&v, &t, NOW + 1, Reject::SignatureInvalid, "does not verify");
            let mut t = r.clone();
            t.set("date", "Thu, 04 Dec 2025 10:00:01 UTC");
            refused(&v, &t, NOW + 1, Reject::SignatureInvalid, "does not verify");
            let mut t = r.clone();
            t.set("authorization", &auth.replace(key, "tyk-gw-unknown"));
            refused(&v, &t, NOW + 1, Reject::UnknownKey, "tyk-gw-unknown");
        }
    }
    assert!(seen_orders.len() > 10, "the header order should vary");
}

#[test]
fn repeated_header_first_value_only_with_tyk_compat() {
    let mut g = GoRequest::new(
        "GET",
        "/a",
        &[("Accept", "application/json"), ("Accept", "text/plain")],
    );
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(3),
    );
    let r = g.to_req("/a");
    accepted(&tyk_verifier(&compat()), &r, NOW);
    // The draft joins every value; Tyk signed only the first.
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn x_aux_date_with_tyk_compat() {
    let mut g = GoRequest::new(
        "GET",
        "/a",
        &[
            ("X-Aux-Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
            ("Date", "Thu, 04 Dec 2025 09:00:00 GMT"),
        ],
    );
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(9),
    );
    let r = g.to_req("/a");
    // The freshness check also reads X-Aux-Date (the Date is an hour old).
    let e = explain(&tyk_verifier(&compat()), &r, NOW);
    assert!(e.verdict.is_ok(), "{e}");
    assert!(e.to_string().contains("X-Aux-Date (tyk_compat)"));
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
    // A stale X-Aux-Date is stale.
    refused(
        &tyk_verifier(&compat()),
        &r,
        NOW + 3600,
        Reject::SignatureExpired,
        "X-Aux-Date",
    );
}

#[test]
fn a_blank_x_aux_date_leaves_date_to_sign_and_to_check() {
    // Go's `Header.Get` and hyper both trim, so a blank X-Aux-Date reads as "": Tyk signs `date:`.
    // The verifier may still be handed it untrimmed (`verify --explain`, an h2 front end).
    for aux in ["", "  "] {
        let mut g = GoRequest::new(
            "GET",
            "/a",
            &[
                ("X-Aux-Date", ""),
                ("Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
            ],
        );
        tyk_sign(
            &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
            &mut g,
            NOW,
            Some(9),
        );
        g.set("X-Aux-Date", aux);
        let r = g.to_req("/a");
        let v = tyk_verifier(&compat());
        let e = explain(&v, &r, NOW);
        assert!(e.verdict.is_ok(), "{aux:?}: {e}");
        assert!(!e.to_string().contains("read from X-Aux-Date"), "{aux:?}");
        // The freshness check reads Date too: an hour later it is stale.
        refused(&v, &r, NOW + 3600, Reject::SignatureExpired, "signed Date");
    }
}

#[test]
fn signature_header_custom_and_signature() {
    // signature_header: x-tyk-signature -> X-Tyk-Signature: Signature keyId=...
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.signature_header = Some("x-tyk-signature");
    let mut g = GoRequest::new(
        "GET",
        "/a",
        &[
            ("Authorization", "Bearer client-token"),
            ("X-Request-Id", "r-1"),
        ],
    );
    tyk_sign(&api, &mut g, NOW, Some(1));
    let r = g.to_req("/a");
    assert!(
        r.headers
            .get("x-tyk-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Signature keyId=")
    );
    let custom = SignatureSettings {
        cavage_header: http::HeaderName::from_static("x-tyk-signature"),
        ..strict()
    };
    // The client's Authorization was signed too, and arrives unchanged.
    accepted(&tyk_verifier(&custom), &r, NOW);
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureMissing,
        "no signature",
    );

    // signature_header: "Signature" -> read by default, prefix stripped.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.signature_header = Some("Signature");
    let mut g = GoRequest::new("GET", "/a", &[("Authorization", "Bearer client-token")]);
    tyk_sign(&api, &mut g, NOW, Some(2));
    let r = g.to_req("/a");
    accepted(&tyk_verifier(&strict()), &r, NOW);
    let mut t = r.clone();
    t.set("authorization", "Bearer other-token");
    refused(
        &tyk_verifier(&strict()),
        &t,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn authorization_covered_in_authorization_names_signature_header() {
    // The default list signs the client's Authorization, which Tyk then replaces.
    let mut g = GoRequest::new("GET", "/a", &[("Authorization", "Bearer client-token")]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(4),
    );
    let r = g.to_req("/a");
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "request_signing.signature_header",
    );
}

#[test]
fn header_list_quirks() {
    // header_list [date, content-type] on a request without Date: headers="content-type" only.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.header_list = vec!["date", "content-type"];
    let mut g = GoRequest::new("POST", "/a", &[("Content-Type", "application/json")]);
    tyk_sign(&api, &mut g, NOW, Some(0));
    let r = g.to_req("/a");
    assert!(
        r.headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("headers=\"content-type\"")
    );
    assert!(r.headers.get("date").is_none());
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "header_list",
    );
    let open = SignatureSettings {
        required: vec!["content-type".to_string()],
        ..strict()
    };
    let ok = accepted(&tyk_verifier(&open), &r, NOW);
    // Nothing signed says when: the replay window falls back to max_age from now.
    assert_eq!(ok.fresh_until, at(NOW + 300));

    // Case is kept, (request-target) and host are dropped.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.header_list = vec!["X-Request-Id", "(request-target)", "host", "Date"];
    let mut g = GoRequest::new(
        "GET",
        "/a",
        &[
            ("X-Request-Id", "r-9"),
            ("Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
        ],
    );
    tyk_sign(&api, &mut g, NOW, Some(0));
    let r = g.to_req("/a");
    assert!(
        r.headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("headers=\"X-Request-Id Date\"")
    );
    let by_id = SignatureSettings {
        required: vec!["x-request-id".to_string(), "date".to_string()],
        ..strict()
    };
    accepted(&tyk_verifier(&by_id), &r, NOW);
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "(request-target)",
    );

    // Nothing survives: Tyk falls back to "(request-target) date" and adds a Date.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.header_list = vec!["x-missing"];
    let mut g = GoRequest::new("GET", "/a", &[]);
    tyk_sign(&api, &mut g, NOW, Some(0));
    let r = g.to_req("/a");
    accepted(&tyk_verifier(&strict()), &r, NOW);
}

#[test]
fn dates_in_the_gateway_zone() {
    for (date, ok) in [
        ("Thu, 04 Dec 2025 10:00:00 UTC", true),
        ("Thu, 04 Dec 2025 10:00:00 GMT", true),
        ("Thu, 04 Dec 2025 14:00:00 +04", true),
        ("Thu, 04 Dec 2025 11:00:00 CET", false),
    ] {
        let mut g = GoRequest::new("GET", "/a", &[("Date", date)]);
        tyk_sign(
            &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
            &mut g,
            NOW,
            Some(0),
        );
        let r = g.to_req("/a");
        if ok {
            accepted(&tyk_verifier(&strict()), &r, NOW);
        } else {
            refused(
                &tyk_verifier(&strict()),
                &r,
                NOW,
                Reject::MalformedSignature,
                "date_zones",
            );
            let zoned = SignatureSettings {
                date_zones: vec![("CET".to_string(), 3600)],
                ..strict()
            };
            accepted(&tyk_verifier(&zoned), &r, NOW);
        }
    }
}

#[test]
fn listen_path_versus_target_url_path() {
    // Tyk signs /items; target_url http://backend/api makes the backend receive /api/items.
    let mut g = GoRequest::new("GET", "/items?page=2", &[]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(0),
    );
    let r = g.to_req("/api/items?page=2");
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
    let e = explain(&tyk_verifier(&strict()), &r, NOW).to_string();
    assert!(e.contains("strip_path_prefix"), "{e}");
    let stripped = SignatureSettings {
        strip_path_prefix: Some("/api".to_string()),
        ..strict()
    };
    accepted(&tyk_verifier(&stripped), &r, NOW);
    // A path outside the prefix is left alone (and so fails).
    let mut t = r.clone();
    t.target = "/apix/items?page=2".to_string();
    refused(
        &tyk_verifier(&stripped),
        &t,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn client_x_forwarded_for_is_replaced_after_signing() {
    let mut g = GoRequest::new("GET", "/a", &[("X-Forwarded-For", "198.51.100.1")]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(0),
    );
    accepted(&tyk_verifier(&strict()), &g.to_req("/a"), NOW);
    // The reverse proxy appends the client IP after signing.
    let mut r = g.to_req("/a");
    r.set("x-forwarded-for", "198.51.100.1, 203.0.113.50");
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn hop_by_hop_header_listed_but_removed() {
    let mut g = GoRequest::new("GET", "/a", &[("Connection", "keep-alive")]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(0),
    );
    let mut r = g.to_req("/a");
    r.headers.remove("connection");
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "`connection`",
    );
}

#[test]
fn empty_header_dropped_on_the_way_with_absent_headers_empty() {
    // Tyk signs `x-empty: ` for a header sent empty; a proxy that drops empty headers removes it.
    let mut g = GoRequest::new("GET", "/a", &[("X-Empty", "")]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        NOW,
        Some(0),
    );
    accepted(&tyk_verifier(&strict()), &g.to_req("/a"), NOW);
    let mut r = g.to_req("/a");
    r.headers.remove("x-empty");
    refused(
        &tyk_verifier(&strict()),
        &r,
        NOW,
        Reject::SignatureInvalid,
        "`x-empty`",
    );
    let lenient = SignatureSettings {
        tyk_absent_headers_empty: true,
        ..compat()
    };
    let e = explain(&tyk_verifier(&lenient), &r, NOW);
    assert!(e.verdict.is_ok(), "{e}");
    assert!(e.to_string().contains("read as empty"));
}
