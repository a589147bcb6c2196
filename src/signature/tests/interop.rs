//! Requests signed by libraries nobody here wrote (PyPI httpsig and http-message-signatures, npm
//! http-signature and http-message-signatures), committed as fixtures by
//! `tests/interop/generate.sh`: each verifies, and tampered copies are refused.

use serde_json::Value;

use super::*;

const FILES: [&str; 4] = [
    "httpsig-python.json",
    "http-message-signatures-python.json",
    "http-signature-node.json",
    "http-message-signatures-node.json",
];

fn load(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("interop/{name}"))).unwrap()).unwrap()
}

fn request(c: &Value) -> Req {
    let r = &c["request"];
    let pairs: Vec<(String, String)> = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut req = Req::new(
        r["method"].as_str().unwrap(),
        r["target"].as_str().unwrap(),
        &refs,
    );
    req.body = Some(r["body"].as_str().unwrap().as_bytes().to_vec());
    req
}

fn covers(c: &Value, what: &str) -> bool {
    c["covers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str() == Some(what))
}

fn interop_verifier() -> Verifier {
    let yaml = std::fs::read_to_string(fixture("interop/keys.yaml")).unwrap();
    verifier(&yaml, &fixture("interop"), &SignatureSettings::default())
}

/// Replaces the key id in whichever header carries it.
fn with_key_id(r: &Req, from: &str, to: &str) -> Req {
    let mut t = r.clone();
    for name in ["authorization", "signature", "signature-input"] {
        if let Some(v) = t
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            && v.contains(from)
        {
            t.set(
                name,
                &v.replace(&format!("\"{from}\""), &format!("\"{to}\"")),
            );
        }
    }
    t
}

#[test]
fn every_independent_signature_verifies_and_tampering_is_refused() {
    let v = interop_verifier();
    let mut total = 0;
    let mut refused_known = 0;
    for file in FILES {
        let f = load(file);
        let signed_at = f["signed_at"].as_i64().unwrap();
        let now = signed_at + 2;
        let cases = f["cases"].as_array().unwrap();
        assert!(cases.len() >= 10, "{file}");
        for c in cases {
            let name = format!("{} / {}", f["generator"], c["name"]);
            let r = request(c);
            let kid = c["key_id"].as_str().unwrap();
            if let Some(code) = c["expect"]["code"].as_str() {
                // A case the generator records as refused, with why.
                let d = verify(&v, &r, now).expect_err(&name);
                assert_eq!(d.reject.code(), code, "{name}: {}", d.detail);
                refused_known += 1;
                continue;
            }
            let ok = match verify(&v, &r, now) {
                Ok(ok) => ok,
                Err(d) => panic!(
                    "{name}: {} {}\n{}",
                    d.reject.code(),
                    d.detail,
                    explain(&v, &r, now)
                ),
            };
            assert_eq!(&*ok.key.id, kid, "{name}");
            total += 1;

            // The path.
            let mut t = r.clone();
            t.target = t.target.replacen("/orders/7", "/orders/8", 1);
            let d = verify(&v, &t, now).expect_err(&name);
            assert_eq!(d.reject, Reject::SignatureInvalid, "{name}: {}", d.detail);

            // A covered header.
            let mut t = r.clone();
            t.set("x-request-id", "someone-else");
            let d = verify(&v, &t, now).expect_err(&name);
            assert_eq!(d.reject, Reject::SignatureInvalid, "{name}: {}", d.detail);

            // The body, when a digest covers it.
            if covers(c, "digest") || covers(c, "content-digest") {
                let mut t = r.clone();
                t.body = Some(b"{\"order\": 8}".to_vec());
                let d = verify(&v, &t, now).expect_err(&name);
                assert_eq!(d.reject, Reject::DigestMismatch, "{name}: {}", d.detail);
            }

            // The date: a covered Date header moved by a second, and the clock an hour on.
            if covers(c, "date") {
                let mut t = r.clone();
                let d0 = crate::signature::date::parse(
                    t.headers.get("date").unwrap().to_str().unwrap(),
                    &[],
                )
                .unwrap();
                t.set(
                    "date",
                    &crate::signature::date::format_imf(d0 + std::time::Duration::from_secs(1)),
                );
                let d = verify(&v, &t, now).expect_err(&name);
                assert_eq!(d.reject, Reject::SignatureInvalid, "{name}: {}", d.detail);
            }
            let d = verify(&v, &r, now + 3600).expect_err(&name);
            assert_eq!(d.reject, Reject::SignatureExpired, "{name}: {}", d.detail);

            // The key id: unknown, and another registered key of a different algorithm.
            let d = verify(&v, &with_key_id(&r, kid, "interop-unknown"), now).expect_err(&name);
            assert_eq!(d.reject, Reject::UnknownKey, "{name}: {}", d.detail);
            let other = if kid == "interop-ed25519" {
                "interop-ecdsa-p256-sha256"
            } else {
                "interop-ed25519"
            };
            let d = verify(&v, &with_key_id(&r, kid, other), now).expect_err(&name);
            assert_eq!(d.reject, Reject::SignatureInvalid, "{name}: {}", d.detail);
        }
    }
    assert!(total >= 70, "{total} cases");
    assert_eq!(refused_known, 1);
}

#[test]
fn fixtures_are_complete_requests() {
    for file in FILES {
        let f = load(file);
        assert!(f["generator"].as_str().unwrap().contains(' '));
        assert!(f["signed_at"].as_i64().unwrap() > 1_700_000_000);
        for c in f["cases"].as_array().unwrap() {
            let r = &c["request"];
            for field in ["method", "target", "scheme", "authority", "body"] {
                assert!(r[field].is_string(), "{file}: {field}");
            }
            assert!(
                r["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("host"))
            );
        }
    }
}
