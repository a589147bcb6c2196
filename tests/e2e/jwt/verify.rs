//! Token verification through the public API against a JWKS served over HTTP: every algorithm,
//! every claim failure, refused algorithms, bearer extraction, scopes, forwarded claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign::reject::{Denial, Reject};
use countersign::token::{Claims, JwtVerifier};
use http::HeaderName;
use serde_json::{Value, json};

use super::idp::{AUD, Idp, TestKey, bearer, good_claims, jwks_of, now_secs, settings};

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// Every algorithm's key: RSA pinned per algorithm, RSA unpinned, EC and Ed25519.
fn all_keys() -> Vec<TestKey> {
    let mut keys: Vec<TestKey> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        .into_iter()
        .map(|alg| TestKey::rsa(&format!("rsa-{alg}"), alg, true))
        .collect();
    keys.push(TestKey::rsa("rsa-any", "PS512", false));
    keys.push(TestKey::ec("ec-256", "ES256"));
    keys.push(TestKey::ec("ec-384", "ES384"));
    keys.push(TestKey::ed25519("ed"));
    keys
}

struct Fixture {
    idp: Idp,
    keys: Vec<TestKey>,
}

impl Fixture {
    async fn new() -> Fixture {
        let keys = all_keys();
        let idp = Idp::start(jwks_of(&keys.iter().collect::<Vec<_>>())).await;
        Fixture { idp, keys }
    }

    fn issuer(&self) -> String {
        self.idp.base()
    }

    fn verifier(
        &self,
        tweak: impl FnOnce(&mut countersign::config::JwtSettings),
    ) -> std::sync::Arc<JwtVerifier> {
        let mut s = settings(Some(self.idp.jwks_url()), &self.issuer());
        tweak(&mut s);
        JwtVerifier::new(&s).unwrap()
    }

    fn key(&self, kid: &str) -> &TestKey {
        self.keys.iter().find(|k| k.kid == kid).unwrap()
    }
}

async fn deny(v: &JwtVerifier, token: &str, now: i64) -> Denial {
    v.verify(&bearer(token), at(now)).await.unwrap_err()
}

fn flip_last(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len() - 3;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn every_algorithm_verifies_and_tampered_tokens_do_not() {
    let f = Fixture::new().await;
    let v = f.verifier(|_| {});
    v.spawn_refresh();
    let now = now_secs();
    let claims = good_claims(&f.issuer(), now);
    let mut seen = Vec::new();
    for k in &f.keys {
        let token = k.mint(&claims);
        let c: Claims = v
            .verify(&bearer(&token), at(now))
            .await
            .unwrap_or_else(|d| panic!("{} {}: {}", k.kid, k.alg, d.detail));
        assert_eq!(c.sub.as_deref(), Some("svc-orders"));
        seen.push(k.alg);
        let d = deny(&v, &flip_last(&token), now).await;
        assert_eq!(d.reject, Reject::TokenInvalid, "{}", k.kid);
        assert!(
            d.detail.contains("signature does not verify"),
            "{}: {}",
            k.kid,
            d.detail
        );
        // Payload changed, signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims.clone();
        other["sub"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                other.to_string()
            ),
            parts[2]
        );
        assert_eq!(deny(&v, &forged, now).await.reject, Reject::TokenInvalid);
    }
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        assert!(seen.contains(&alg), "{alg} not exercised");
    }
    // The unpinned RSA key verifies every RSA algorithm.
    let any = f.key("rsa-any");
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let t = any.sign(&json!({"alg": alg, "kid": "rsa-any"}), &claims);
        assert!(v.verify(&bearer(&t), at(now)).await.is_ok(), "{alg}");
    }
}

#[tokio::test]
async fn the_allow_list_narrows_algorithms() {
    let f = Fixture::new().await;
    let v = f.verifier(|s| s.algorithms = vec!["ES256".into()]);
    let now = now_secs();
    let claims = good_claims(&f.issuer(), now);
    assert!(
        v.verify(&bearer(&f.key("ec-256").mint(&claims)), at(now))
            .await
            .is_ok()
    );
    let d = deny(&v, &f.key("rsa-RS256").mint(&claims), now).await;
    assert_eq!(d.reject, Reject::TokenInvalid);
    assert!(
        d.detail.contains("alg \"RS256\" is not accepted"),
        "{}",
        d.detail
    );
}

#[tokio::test]
async fn none_hs256_and_algorithm_confusion_are_refused() {
    let f = Fixture::new().await;
    let v = f.verifier(|_| {});
    let now = now_secs();
    let claims = good_claims(&f.issuer(), now);
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let body = b64(&claims.to_string());

    for alg in ["none", "None", "NONE"] {
        let t = format!(
            "{}.{body}.",
            b64(&json!({"alg": alg, "kid": "rsa-RS256"}).to_string())
        );
        let d = deny(&v, &t, now).await;
        assert_eq!(d.reject, Reject::TokenInvalid);
        assert!(d.detail.contains("is not accepted"), "{alg}: {}", d.detail);
    }

    // HS256 keyed with the RSA public key's bytes (the classic confusion attack).
    let n = f.key("rsa-RS256").jwk["n"].as_str().unwrap().to_string();
    let input = format!(
        "{}.{body}",
        b64(&json!({"alg": "HS256", "kid": "rsa-RS256"}).to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, n.as_bytes());
    let mac = ring::hmac::sign(&key, input.as_bytes());
    let t = format!(
        "{input}.{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            mac.as_ref()
        )
    );
    let d = deny(&v, &t, now).await;
    assert!(
        d.detail.contains("alg \"HS256\" is not accepted"),
        "{}",
        d.detail
    );

    // A kid pinned to RS256 does not verify PS256, even with the right key.
    let t = f
        .key("rsa-RS256")
        .sign(&json!({"alg": "PS256", "kid": "rsa-RS256"}), &claims);
    let d = deny(&v, &t, now).await;
    assert!(
        d.detail.contains("does not allow the token's alg"),
        "{}",
        d.detail
    );
    assert!(
        d.detail.contains("rsa-RS256"),
        "the detail names the kid: {}",
        d.detail
    );

    // An EC kid with an RSA algorithm, and an RSA kid with ES256.
    let t = f
        .key("rsa-any")
        .sign(&json!({"alg": "RS256", "kid": "ec-256"}), &claims);
    assert!(deny(&v, &t, now).await.detail.contains("does not allow"));
    let t = f
        .key("ec-256")
        .sign(&json!({"alg": "ES256", "kid": "rsa-any"}), &claims);
    assert!(deny(&v, &t, now).await.detail.contains("does not allow"));

    // ES384 signature presented as ES256 under the P-384 kid.
    let t = f
        .key("ec-384")
        .sign(&json!({"alg": "ES384", "kid": "ec-256"}), &claims);
    assert!(deny(&v, &t, now).await.detail.contains("does not allow"));

    // crit and embedded keys are not honoured.
    let t = f.key("ec-256").sign(
        &json!({"alg": "ES256", "kid": "ec-256", "crit": ["b64"], "b64": false}),
        &claims,
    );
    assert!(deny(&v, &t, now).await.detail.contains("crit"));
    let attacker = TestKey::ec("ec-256", "ES256");
    let t = attacker.sign(&json!({"alg": "ES256", "kid": "ec-256", "jwk": attacker.jwk, "jku": "http://127.0.0.1:1/evil"}), &claims);
    assert!(
        deny(&v, &t, now)
            .await
            .detail
            .contains("signature does not verify")
    );
}

#[tokio::test]
async fn every_claim_failure_is_token_invalid_with_a_precise_detail() {
    let f = Fixture::new().await;
    let v = f.verifier(|s| {
        s.max_lifetime = Some(Duration::from_secs(3600));
        s.allowed_clients = vec!["tyk-gateway".into(), "batch".into()];
    });
    let now = now_secs();
    let k = f.key("ec-256");
    let good = good_claims(&f.issuer(), now);
    assert!(v.verify(&bearer(&k.mint(&good)), at(now)).await.is_ok());

    let case = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = good.clone();
        edit(c.as_object_mut().unwrap());
        k.mint(&c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "iss is not the configured issuer",
            case(&|m| {
                m.insert("iss".into(), json!("https://evil.example/"));
            }),
        ),
        (
            "iss is missing",
            case(&|m| {
                m.remove("iss");
            }),
        ),
        (
            "aud does not contain",
            case(&|m| {
                m.insert("aud".into(), json!("billing-api"));
            }),
        ),
        (
            "aud does not contain",
            case(&|m| {
                m.insert("aud".into(), json!(["billing-api", "orders"]));
            }),
        ),
        (
            "aud is missing",
            case(&|m| {
                m.remove("aud");
            }),
        ),
        (
            "exp is missing",
            case(&|m| {
                m.remove("exp");
            }),
        ),
        (
            "expired",
            case(&|m| {
                m.insert("exp".into(), json!(now - 61));
            }),
        ),
        (
            "not yet valid",
            case(&|m| {
                m.insert("nbf".into(), json!(now + 120));
            }),
        ),
        (
            "issued in the future",
            case(&|m| {
                m.insert("iat".into(), json!(now + 120));
            }),
        ),
        (
            "max_lifetime",
            case(&|m| {
                m.insert("iat".into(), json!(now - 10));
                m.insert("exp".into(), json!(now + 3600));
            }),
        ),
        (
            "client_id is not in allowed_clients",
            case(&|m| {
                m.insert("client_id".into(), json!("mallory"));
            }),
        ),
        (
            "azp is not in allowed_clients",
            case(&|m| {
                m.insert("azp".into(), json!("mallory"));
            }),
        ),
        (
            "no azp or client_id",
            case(&|m| {
                m.remove("client_id");
            }),
        ),
        (
            "wrong type",
            case(&|m| {
                m.insert("exp".into(), json!("tomorrow"));
            }),
        ),
    ];
    for (want, token) in cases {
        let d = deny(&v, &token, now).await;
        assert_eq!(d.reject, Reject::TokenInvalid, "{want}");
        assert!(d.detail.contains(want), "want {want:?}, got {:?}", d.detail);
        assert!(
            !d.detail.contains(&token[token.len() - 20..]),
            "the detail never carries the token"
        );
    }
    // Inside the leeway everything passes.
    let edge = case(&|m| {
        m.insert("exp".into(), json!(now - 59));
        m.insert("nbf".into(), json!(now + 59));
        m.insert("iat".into(), json!(now + 59));
    });
    assert!(v.verify(&bearer(&edge), at(now)).await.is_ok());
    // aud as an array containing ours, azp instead of client_id.
    let alt = case(&|m| {
        m.insert("aud".into(), json!(["billing-api", AUD]));
        m.remove("client_id");
        m.insert("azp".into(), json!("batch"));
    });
    let c = v.verify(&bearer(&alt), at(now)).await.unwrap();
    assert_eq!(c.client_id.as_deref(), Some("batch"));
}

#[tokio::test]
async fn missing_and_malformed_bearers() {
    let f = Fixture::new().await;
    let v = f.verifier(|_| {});
    let now = now_secs();
    let d = v
        .verify(&http::HeaderMap::new(), at(now))
        .await
        .unwrap_err();
    assert_eq!(d.reject, Reject::TokenMissing);
    assert_eq!(d.reject.status(), 401);
    assert!(d.reject.www_authenticate().is_some());
    let mut h = http::HeaderMap::new();
    h.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(
        v.verify(&h, at(now)).await.unwrap_err().reject,
        Reject::TokenMissing
    );
    for bad in ["Bearer", "Bearer a b", "Bearer opaque-without-dots"] {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", bad.parse().unwrap());
        let d = v.verify(&h, at(now)).await.unwrap_err();
        assert_eq!(d.reject, Reject::TokenInvalid, "{bad}");
    }
    // Unknown kid: refused as invalid after one refetch.
    let stranger = TestKey::ec("nobody", "ES256");
    let d = deny(&v, &stranger.mint(&good_claims(&f.issuer(), now)), now).await;
    assert_eq!(d.reject, Reject::TokenInvalid);
    assert!(d.detail.contains("unknown kid \"nobody\""), "{}", d.detail);
}

#[tokio::test]
async fn scopes_and_forwarded_claims() {
    let f = Fixture::new().await;
    let v = f.verifier(|s| {
        s.forward_claims = vec![
            ("tenant".into(), HeaderName::from_static("x-tenant")),
            ("sub".into(), HeaderName::from_static("x-subject")),
            ("missing".into(), HeaderName::from_static("x-missing")),
        ];
    });
    let now = now_secs();
    let mut claims = good_claims(&f.issuer(), now);
    claims["tenant"] = json!("acme");
    let c = v
        .verify(&bearer(&f.key("ed").mint(&claims)), at(now))
        .await
        .unwrap();
    assert_eq!(c.scopes, ["orders:read", "orders:write"]);
    assert!(c.has_scopes(&["orders:read".into()]));
    assert!(c.has_scopes(&["orders:write".into(), "orders:read".into()]));
    assert!(!c.has_scopes(&["orders:admin".into()]));
    assert!(!c.has_scopes(&["orders:read".into(), "orders:admin".into()]));
    assert_eq!(c.client_id.as_deref(), Some("tyk-gateway"));
    let fwd: Vec<(String, String)> = c
        .forward
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        fwd,
        [
            ("x-tenant".into(), "acme".into()),
            ("x-subject".into(), "svc-orders".into())
        ]
    );

    claims.as_object_mut().unwrap().remove("scope");
    claims["scp"] = json!(["orders:admin"]);
    let c = v
        .verify(&bearer(&f.key("ed").mint(&claims)), at(now))
        .await
        .unwrap();
    assert!(c.has_scopes(&["orders:admin".into()]));
    assert!(!c.has_scopes(&["orders:read".into()]));
    // The route's refusal for a missing scope is the lead's: Reject::InsufficientScope is 403.
    assert_eq!(Reject::InsufficientScope.status(), 403);
}

#[tokio::test]
async fn strip_bearer_keeps_a_signature_in_authorization() {
    let mut h = bearer("abc.def.ghi");
    h.append(
        "authorization",
        "Signature keyId=\"k\",signature=\"s\"".parse().unwrap(),
    );
    countersign::token::strip_bearer(&mut h);
    let left: Vec<_> = h.get_all("authorization").iter().collect();
    assert_eq!(left, ["Signature keyId=\"k\",signature=\"s\""]);
}
