//! The published vectors: draft-cavage-10 Appendix C and RFC 9421 (2.5/3.2, B.2.1-B.2.6, 4.3, B.3,
//! B.4 with its variants), signing strings and signature bases reproduced exactly, at a pinned clock.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::registry::Registry;
use crate::signature::{Message, Scheme, alg, rfc9421};

fn json(p: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(p)).unwrap()).unwrap()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn req_from(m: &Value, extra: &[(String, String)]) -> Req {
    let mut list = pairs(&m["headers"]);
    list.extend_from_slice(extra);
    let refs: Vec<(&str, &str)> = list.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let target = m
        .get("request_target")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let uri = m["target_uri"].as_str().unwrap();
            let after = uri.split_once("://").unwrap().1;
            after[after.find('/').unwrap()..].to_string()
        });
    let mut r = Req::new(m["method"].as_str().unwrap(), &target, &refs);
    if let Some(b) = m.get("body").and_then(Value::as_str) {
        r = r.body(b.as_bytes());
    }
    r
}

const CAVAGE_NOW: i64 = 1388957500 + 10; // Sun, 05 Jan 2014 21:31:40 GMT + 10 s

fn cavage_settings(min_rsa_bits: usize) -> SignatureSettings {
    SignatureSettings {
        required: vec!["date".to_string()],
        min_rsa_bits,
        ..SignatureSettings::default()
    }
}

const CAVAGE_KEYS: &str =
    "keys:\n  - id: Test\n    algorithm: rsa-sha256\n    public_key: test-key-Test.pub.pem\n";

#[test]
fn cavage_appendix_c() {
    let v = json("vectors/cavage10/vectors.json");
    let verifier = verifier(
        CAVAGE_KEYS,
        &fixture("vectors/cavage10"),
        &cavage_settings(1024),
    );
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let id = c["id"].as_str().unwrap();
        for (header, value) in [
            ("Authorization", &c["authorization_header"]),
            ("Signature", &c["signature_header"]),
        ] {
            let r = req_from(
                &v["request"],
                &[(header.to_string(), value.as_str().unwrap().to_string())],
            );
            let e = explain(&verifier, &r, CAVAGE_NOW);
            assert!(e.verdict.is_ok(), "{id} in {header}:\n{e}");
            let base = e.attempts[0].base.as_ref().unwrap();
            assert_eq!(
                std::str::from_utf8(base).unwrap(),
                c["signing_string"].as_str().unwrap(),
                "{id}"
            );
            accepted(&verifier, &r, CAVAGE_NOW);

            // The same request with its Date moved by a second: the signature no longer matches.
            let mut t = r.clone();
            t.set("date", "Sun, 05 Jan 2014 21:31:41 GMT");
            refused(
                &verifier,
                &t,
                CAVAGE_NOW,
                Reject::SignatureInvalid,
                "does not verify",
            );
        }
    }
    // C.3 covers the digest: a changed body is caught even though the signature is intact.
    let c3 = &cases[2];
    let mut r = req_from(
        &v["request"],
        &[(
            "Authorization".to_string(),
            c3["authorization_header"].as_str().unwrap().to_string(),
        )],
    );
    r.body = Some(b"{\"hello\": \"World\"}".to_vec());
    refused(&verifier, &r, CAVAGE_NOW, Reject::DigestMismatch, "SHA-256");
    // The draft's clock: an hour later the Date is stale.
    let r = req_from(
        &v["request"],
        &[(
            "Authorization".to_string(),
            c3["authorization_header"].as_str().unwrap().to_string(),
        )],
    );
    refused(
        &verifier,
        &r,
        CAVAGE_NOW + 3600,
        Reject::SignatureExpired,
        "s old",
    );
}

#[test]
fn cavage_key_is_refused_at_the_default_minimum() {
    let e = Registry::from_yaml_str(
        CAVAGE_KEYS,
        Path::new("keys.yaml"),
        &fixture("vectors/cavage10"),
        &cavage_settings(2048),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "keys.yaml: keys[0].public_key: test-key-Test.pub.pem: a 1024-bit RSA key is below signature.min_rsa_bits (2048)"
    );
}

const RFC_NOW: i64 = 1618884490;

const RFC_KEYS: &str = "keys:
  - id: test-key-rsa-pss
    algorithm: rsa-pss-sha512
    public_key: test-key-rsa-pss.pub.pem
  - id: test-key-rsa
    algorithm: rsa-v1_5-sha256
    public_key: test-key-rsa.pub.pem
  - id: test-key-ecc-p256
    algorithm: ecdsa-p256-sha256
    public_key: test-key-ecc-p256.pub.pem
  - id: test-key-ed25519
    algorithm: ed25519
    public_key: test-key-ed25519.pub.pem
  - id: test-shared-secret
    algorithm: hmac-sha256
    secret_file: test-shared-secret.bin
";

fn rfc_verifier(settings: &SignatureSettings) -> Verifier {
    verifier(RFC_KEYS, &fixture("vectors/rfc9421/keys"), settings)
}

fn case<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

fn signed(v: &Value, c: &Value) -> Req {
    let m = &v["messages"][c["message"].as_str().unwrap()];
    req_from(
        m,
        &[
            (
                "Signature-Input".to_string(),
                c["signature_input_header"].as_str().unwrap().to_string(),
            ),
            (
                "Signature".to_string(),
                c["signature_header"].as_str().unwrap().to_string(),
            ),
        ],
    )
}

#[test]
fn rfc9421_request_cases() {
    let v = json("vectors/rfc9421/vectors.json");
    let verifier = rfc_verifier(&lenient());
    for id in [
        "s3.2-sig1-rsa-pss",
        "B.2.2-sig-b22",
        "B.2.3-sig-b23",
        "B.2.5-sig-b25",
        "B.2.6-sig-b26",
        "s4.3-proxy_sig-rsa-v1_5",
        "s4.3-sig1-ecdsa-client",
        "B.3-ttrp-ecdsa",
        "B.4-transform-ed25519",
    ] {
        let c = case(&v, id);
        let r = signed(&v, c);
        let e = explain(&verifier, &r, RFC_NOW);
        assert!(e.verdict.is_ok(), "{id}:\n{e}");
        assert_eq!(
            std::str::from_utf8(e.attempts[0].base.as_ref().unwrap()).unwrap(),
            c["expected_signature_base"].as_str().unwrap(),
            "{id}"
        );
        let ok = accepted(&verifier, &r, RFC_NOW);
        assert_eq!(&*ok.key.id, c["keyid"].as_str().unwrap());
        assert_eq!(ok.scheme, Scheme::Rfc9421);

        // Tampered: the path (or, for signatures that do not cover it, the authority).
        let mut t = r.clone();
        t.target = t
            .target
            .replacen("/foo", "/bar", 1)
            .replacen("/demo", "/dem0", 1);
        t.set("host", "example.net");
        refused(
            &verifier,
            &t,
            RFC_NOW,
            Reject::SignatureInvalid,
            "does not verify",
        );
    }
}

#[test]
fn rfc9421_b21_empty_coverage_is_refused_though_it_verifies() {
    let v = json("vectors/rfc9421/vectors.json");
    let c = case(&v, "B.2.1-sig-b21");
    let r = signed(&v, c);
    let verifier = rfc_verifier(&lenient());
    // The base is exactly the published one and the signature is genuine...
    let msg = Message {
        method: "POST",
        target: &r.target,
        scheme: "https",
        authority: Some("example.com"),
        headers: &r.headers,
        status: None,
    };
    let sigs = rfc9421::parse(&msg).unwrap();
    let base = rfc9421::signature_base(&msg, &sigs[0]).unwrap();
    assert_eq!(
        std::str::from_utf8(&base).unwrap(),
        c["expected_signature_base"].as_str().unwrap()
    );
    let reg = Registry::from_yaml_str(
        RFC_KEYS,
        Path::new("keys.yaml"),
        &fixture("vectors/rfc9421/keys"),
        &lenient(),
    )
    .unwrap();
    let key = reg.get("test-key-rsa-pss").unwrap();
    assert!(alg::verify(key, Scheme::Rfc9421, &base, &sigs[0].value));
    // ...but it covers nothing, so it is refused.
    refused(
        &verifier,
        &r,
        RFC_NOW,
        Reject::SignatureInvalid,
        "covers no components",
    );
}

#[test]
fn rfc9421_b24_response_signature_base() {
    let v = json("vectors/rfc9421/vectors.json");
    let c = case(&v, "B.2.4-sig-b24");
    let m = &v["messages"]["test-response"];
    let mut list = pairs(&m["headers"]);
    list.push((
        "Signature-Input".to_string(),
        c["signature_input_header"].as_str().unwrap().to_string(),
    ));
    list.push((
        "Signature".to_string(),
        c["signature_header"].as_str().unwrap().to_string(),
    ));
    let refs: Vec<(&str, &str)> = list.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let h = headers(&refs);
    let msg = Message {
        method: "",
        target: "",
        scheme: "https",
        authority: None,
        headers: &h,
        status: Some(200),
    };
    let sigs = rfc9421::parse(&msg).unwrap();
    let base = rfc9421::signature_base(&msg, &sigs[0]).unwrap();
    assert_eq!(
        std::str::from_utf8(&base).unwrap(),
        c["expected_signature_base"].as_str().unwrap()
    );
    // The response's digest is the correct one (not the RFC's misprint).
    crate::signature::digest::check_content_digest(
        h.get("content-digest").unwrap().as_bytes(),
        m["body"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let reg = Registry::from_yaml_str(
        RFC_KEYS,
        Path::new("keys.yaml"),
        &fixture("vectors/rfc9421/keys"),
        &lenient(),
    )
    .unwrap();
    let key = reg.get("test-key-ecc-p256").unwrap();
    assert!(alg::verify(key, Scheme::Rfc9421, &base, &sigs[0].value));
    let mut tampered = base.clone();
    tampered[13] ^= 1;
    assert!(!alg::verify(
        key,
        Scheme::Rfc9421,
        &tampered,
        &sigs[0].value
    ));
    // A request verifier refuses @status.
    let req_msg = Message {
        status: None,
        ..msg
    };
    assert!(rfc9421::signature_base(&req_msg, &sigs[0]).is_err());
}

#[test]
fn rfc9421_section_4_3_two_labels_the_valid_one_wins() {
    let v = json("vectors/rfc9421/vectors.json");
    let client = case(&v, "s4.3-sig1-ecdsa-client");
    let proxy = case(&v, "s4.3-proxy_sig-rsa-v1_5");
    let m = &v["messages"]["proxied-request"];
    let r = req_from(
        m,
        &[
            (
                "Signature-Input".to_string(),
                format!(
                    "{}, {}",
                    client["signature_input_header"].as_str().unwrap(),
                    proxy["signature_input_header"].as_str().unwrap()
                ),
            ),
            (
                "Signature".to_string(),
                format!(
                    "{}, {}",
                    client["signature_header"].as_str().unwrap(),
                    proxy["signature_header"].as_str().unwrap()
                ),
            ),
        ],
    );
    let verifier = rfc_verifier(&lenient());
    let e = explain(&verifier, &r, RFC_NOW);
    // sig1 (the client's, first) no longer verifies after the proxy changed @authority; proxy_sig does.
    assert_eq!(e.attempts.len(), 2, "{e}");
    assert!(e.attempts[0].outcome.is_some());
    assert!(e.attempts[1].outcome.is_none());
    assert_eq!(&*accepted(&verifier, &r, RFC_NOW).key.id, "test-key-rsa");

    // With only the client's key registered, the refusal is the client's signature's.
    let only_client = verifier_with(&["test-key-ecc-p256"]);
    refused(&only_client, &r, RFC_NOW, Reject::SignatureInvalid, "sig1");

    // A tag policy picks by tag: neither label has the tag.
    let tagged = SignatureSettings {
        rfc9421_tag: Some("gateway".to_string()),
        ..lenient()
    };
    let tv = rfc_verifier(&tagged);
    refused(
        &tv,
        &r,
        RFC_NOW,
        Reject::SignatureMissing,
        "tag \"gateway\"",
    );

    // proxy_sig's expires (1618884540) is enforced.
    refused(
        &verifier,
        &r,
        1618884540 + 301,
        Reject::SignatureExpired,
        "",
    );
}

fn verifier_with(ids: &[&str]) -> Verifier {
    let mut yaml = String::from("keys:\n");
    for block in RFC_KEYS.split("  - ").skip(1) {
        if ids
            .iter()
            .any(|id| block.starts_with(&format!("id: {id}\n")))
        {
            yaml.push_str("  - ");
            yaml.push_str(block);
        }
    }
    rfc_verifier_yaml(&yaml)
}

fn rfc_verifier_yaml(yaml: &str) -> Verifier {
    verifier(yaml, &fixture("vectors/rfc9421/keys"), &lenient())
}

#[test]
fn rfc9421_b2_tag_policy_selects_the_tagged_signature() {
    let v = json("vectors/rfc9421/vectors.json");
    let c = case(&v, "B.2.2-sig-b22");
    let r = signed(&v, c);
    let tagged = SignatureSettings {
        rfc9421_tag: Some("header-example".to_string()),
        ..lenient()
    };
    accepted(&rfc_verifier(&tagged), &r, RFC_NOW);
    let other = SignatureSettings {
        rfc9421_tag: Some("other".to_string()),
        ..lenient()
    };
    refused(
        &rfc_verifier(&other),
        &r,
        RFC_NOW,
        Reject::SignatureMissing,
        "header-example",
    );
}

#[test]
fn rfc9421_b4_transform_variants() {
    let v = json("vectors/rfc9421/vectors.json");
    let verifier = rfc_verifier(&lenient());
    let variants = v["transform_variants"].as_array().unwrap();
    assert_eq!(variants.len(), 6);
    for t in variants {
        let m = serde_json::json!({
            "method": t["method"],
            "target_uri": t["target_uri"],
            "headers": t["headers"],
        });
        let r = req_from(&m, &[]);
        if t["expect"] == "valid" {
            accepted(&verifier, &r, RFC_NOW);
        } else {
            refused(
                &verifier,
                &r,
                RFC_NOW,
                Reject::SignatureInvalid,
                "does not verify",
            );
        }
    }
}

#[test]
fn rfc9421_pinned_clock_matters() {
    let v = json("vectors/rfc9421/vectors.json");
    let c = case(&v, "B.2.6-sig-b26");
    let r = signed(&v, c);
    let verifier = rfc_verifier(&lenient());
    accepted(&verifier, &r, RFC_NOW);
    // Today the 2021 signature is stale...
    let now = date::unix(SystemTime::now());
    refused(
        &verifier,
        &r,
        now,
        Reject::SignatureExpired,
        "created=1618884473",
    );
    // ...and before it was made it is in the future.
    refused(
        &verifier,
        &r,
        1618884473 - 301,
        Reject::SignatureExpired,
        "in the future",
    );
    // A larger max_age admits it later.
    let wide = SignatureSettings {
        max_age: Duration::from_secs(3600),
        ..lenient()
    };
    accepted(&rfc_verifier(&wide), &r, RFC_NOW + 3000);
}

#[test]
fn rfc9421_hmac_key_from_base64_and_jwk() {
    let v = json("vectors/rfc9421/vectors.json");
    let c = case(&v, "B.2.5-sig-b25");
    let r = signed(&v, c);
    let b64 =
        std::fs::read_to_string(fixture("vectors/rfc9421/keys/test-shared-secret.b64")).unwrap();
    let k = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim()).unwrap(),
    );
    for yaml in [
        format!(
            "keys:\n  - id: test-shared-secret\n    algorithm: hmac-sha256\n    secret_base64: {}\n",
            b64.trim()
        ),
        format!(
            "keys:\n  - id: test-shared-secret\n    algorithm: hmac-sha256\n    jwk: {{kty: oct, k: \"{k}\"}}\n"
        ),
    ] {
        let verifier = rfc_verifier_yaml(&yaml);
        accepted(&verifier, &r, RFC_NOW);
    }
    // The wrong secret: refused.
    let wrong = rfc_verifier_yaml(
        "keys:\n  - id: test-shared-secret\n    algorithm: hmac-sha256\n    secret: not-the-secret\n",
    );
    refused(
        &wrong,
        &r,
        RFC_NOW,
        Reject::SignatureInvalid,
        "does not verify",
    );
}

#[test]
fn signer_reproduces_the_deterministic_vectors() {
    use crate::registry::Algorithm;
    use crate::signature::sign::{Rfc9421Spec, Signer, rfc9421 as sign9421};
    let v = json("vectors/rfc9421/vectors.json");
    let secret = std::fs::read(fixture("vectors/rfc9421/keys/test-shared-secret.bin")).unwrap();
    for (id, signer) in [
        (
            "B.2.6-sig-b26",
            Signer::from_pem(
                Algorithm::Ed25519,
                &std::fs::read(fixture("vectors/rfc9421/keys/test-key-ed25519.priv.pem")).unwrap(),
            )
            .unwrap(),
        ),
        (
            "B.2.5-sig-b25",
            Signer::hmac(Algorithm::HmacSha256, &secret).unwrap(),
        ),
    ] {
        let c = case(&v, id);
        let m = &v["messages"][c["message"].as_str().unwrap()];
        let r = req_from(m, &[]);
        let si = c["signature_input_header"].as_str().unwrap();
        let sig = rfc9421::parse(&Message {
            method: r.method.as_str(),
            target: &r.target,
            scheme: "https",
            authority: None,
            headers: &signed(&v, c).headers,
            status: None,
        })
        .unwrap()
        .remove(0);
        let spec = Rfc9421Spec {
            label: c["label"].as_str().unwrap(),
            components: sig.components.iter().map(|c| c.name.clone()).collect(),
            created: sig.created,
            expires: sig.expires,
            keyid: c["keyid"].as_str().unwrap(),
            alg: sig.alg.as_deref(),
            ..Default::default()
        };
        let host = r.headers.get("host").unwrap().to_str().unwrap().to_string();
        let msg = Message {
            method: r.method.as_str(),
            target: &r.target,
            scheme: "https",
            authority: Some(&host),
            headers: &r.headers,
            status: None,
        };
        let (input, signature, base) = sign9421(&msg, &signer, &spec).unwrap();
        assert_eq!(input, si, "{id}");
        assert_eq!(signature, c["signature_header"].as_str().unwrap(), "{id}");
        assert_eq!(
            std::str::from_utf8(&base).unwrap(),
            c["expected_signature_base"].as_str().unwrap()
        );
    }
    // The other published key forms load for signing: SEC1 EC and PKCS#8 with the PSS identifier.
    // (ring refuses test-key-rsa for signing: its primes differ in size; verifying with it works.)
    for (alg, key) in [
        (Algorithm::EcdsaP256Sha256, "test-key-ecc-p256.priv.pem"),
        (Algorithm::RsaPssSha512, "test-key-rsa-pss.priv.pem"),
    ] {
        Signer::from_pem(
            alg,
            &std::fs::read(fixture(&format!("vectors/rfc9421/keys/{key}"))).unwrap(),
        )
        .unwrap();
    }
}
