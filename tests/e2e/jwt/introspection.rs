//! Opaque tokens through RFC 7662 introspection at a real endpoint on 127.0.0.1: active,
//! inactive, cached positive and negative results, expiry, claim checks, endpoint failures, and
//! which tokens go to introspection when a JWKS is configured too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use countersign::config::{IntrospectionSettings, JwtSettings};
use countersign::reject::Reject;
use countersign::token::JwtVerifier;
use serde_json::json;

use super::idp::{
    AUD, CLIENT_ID, CLIENT_SECRET, Idp, TestKey, bearer, good_claims, jwks_of, settings,
};

const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn introspection(idp: &Idp) -> IntrospectionSettings {
    IntrospectionSettings {
        url: format!("{}/introspect", idp.base()),
        client_id: CLIENT_ID.to_string(),
        client_secret: CLIENT_SECRET.to_string(),
        cache_size: 100,
        cache_ttl: Duration::from_secs(300),
    }
}

fn only_introspection(idp: &Idp) -> JwtSettings {
    let mut s = settings(None, &idp.base());
    s.issuer = Some("https://as.example/".into());
    s.introspection = Some(introspection(idp));
    s
}

fn answer(idp: &Idp, token: &str, v: serde_json::Value) {
    idp.state
        .introspect
        .lock()
        .unwrap()
        .insert(token.to_string(), v);
}

fn hits(idp: &Idp) -> usize {
    idp.state.introspect_hits.load(Ordering::SeqCst)
}

#[tokio::test]
async fn active_tokens_pass_and_are_cached_until_exp() {
    let idp = Idp::start(json!({"keys": []})).await;
    let v = JwtVerifier::new(&only_introspection(&idp)).unwrap();
    assert!(v.is_ready(), "introspection only: ready without a JWKS");
    let token = "2YotnFZFEjr1zCsicMWpAA";
    answer(
        &idp,
        token,
        json!({
            "active": true, "sub": "batch-job", "client_id": "tyk-gateway", "scope": "orders:read",
            "iss": "https://as.example/", "aud": AUD, "exp": T0 + 100, "iat": T0 - 10, "token_type": "Bearer",
        }),
    );
    let c = v.verify(&bearer(token), at(T0)).await.unwrap();
    assert_eq!(c.sub.as_deref(), Some("batch-job"));
    assert_eq!(c.client_id.as_deref(), Some("tyk-gateway"));
    assert!(c.has_scopes(&["orders:read".into()]));
    assert_eq!(hits(&idp), 1);
    // Cached: the endpoint is not asked again before exp, even when its answer changes.
    answer(&idp, token, json!({"active": false}));
    assert!(v.verify(&bearer(token), at(T0 + 50)).await.is_ok());
    assert!(v.verify(&bearer(token), at(T0 + 99)).await.is_ok());
    assert_eq!(hits(&idp), 1);
    // At exp the cache entry is stale: asked again, and now inactive.
    let d = v.verify(&bearer(token), at(T0 + 100)).await.unwrap_err();
    assert_eq!(d.reject, Reject::TokenInvalid);
    assert!(d.detail.contains("not active"), "{}", d.detail);
    assert_eq!(hits(&idp), 2);
}

#[tokio::test]
async fn an_active_answer_past_its_exp_is_refused() {
    let idp = Idp::start(json!({"keys": []})).await;
    let v = JwtVerifier::new(&only_introspection(&idp)).unwrap();
    answer(&idp, "old", json!({"active": true, "exp": T0 - 120}));
    let d = v.verify(&bearer("old"), at(T0)).await.unwrap_err();
    assert!(d.detail.contains("expired"), "{}", d.detail);
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_refused_and_briefly_cached() {
    let idp = Idp::start(json!({"keys": []})).await;
    let v = JwtVerifier::new(&only_introspection(&idp)).unwrap();
    let d = v.verify(&bearer("never-issued"), at(T0)).await.unwrap_err();
    assert_eq!(d.reject, Reject::TokenInvalid);
    assert_eq!(hits(&idp), 1);
    let d = v
        .verify(&bearer("never-issued"), at(T0 + 5))
        .await
        .unwrap_err();
    assert!(d.detail.contains("cached"), "{}", d.detail);
    assert_eq!(hits(&idp), 1);
    // After the negative TTL the endpoint is asked again.
    answer(
        &idp,
        "never-issued",
        json!({"active": true, "exp": T0 + 600, "aud": AUD}),
    );
    assert!(v.verify(&bearer("never-issued"), at(T0 + 11)).await.is_ok());
    assert_eq!(hits(&idp), 2);
}

#[tokio::test]
async fn introspected_claims_are_checked() {
    let idp = Idp::start(json!({"keys": []})).await;
    let mut s = only_introspection(&idp);
    s.allowed_clients = vec!["tyk-gateway".into()];
    let v = JwtVerifier::new(&s).unwrap();
    for (token, body, want) in [
        (
            "a",
            json!({"active": true, "client_id": "tyk-gateway", "aud": "billing"}),
            "aud does not contain",
        ),
        (
            "b",
            json!({"active": true, "client_id": "tyk-gateway", "iss": "https://evil/"}),
            "iss is not",
        ),
        (
            "c",
            json!({"active": true, "client_id": "mallory"}),
            "client_id is not in",
        ),
        (
            "d",
            json!({"active": true, "client_id": "tyk-gateway", "nbf": T0 + 600}),
            "not yet valid",
        ),
        ("e", json!({"active": "yes"}), "not an RFC 7662 answer"),
    ] {
        answer(&idp, token, body);
        let d = v.verify(&bearer(token), at(T0)).await.unwrap_err();
        assert!(d.detail.contains(want), "{token}: {}", d.detail);
    }
    // Without aud/iss in the answer, the endpoint's word (active) is enough.
    answer(
        &idp,
        "f",
        json!({"active": true, "client_id": "tyk-gateway"}),
    );
    assert!(v.verify(&bearer("f"), at(T0)).await.is_ok());
}

#[tokio::test]
async fn endpoint_failures_are_503_and_not_cached() {
    let idp = Idp::start(json!({"keys": []})).await;
    answer(&idp, "tok", json!({"active": true}));
    idp.state.failing.store(true, Ordering::SeqCst);
    let v = JwtVerifier::new(&only_introspection(&idp)).unwrap();
    let d = v.verify(&bearer("tok"), at(T0)).await.unwrap_err();
    assert_eq!(d.reject, Reject::JwksUnavailable);
    idp.state.failing.store(false, Ordering::SeqCst);
    assert!(v.verify(&bearer("tok"), at(T0)).await.is_ok());

    // Wrong client credentials: the endpoint says 401, which is our problem, so 503.
    let mut s = only_introspection(&idp);
    s.introspection.as_mut().unwrap().client_secret = "wrong".into();
    let v = JwtVerifier::new(&s).unwrap();
    let d = v.verify(&bearer("tok"), at(T0)).await.unwrap_err();
    assert_eq!(d.reject, Reject::JwksUnavailable);
    assert!(d.detail.contains("401"), "{}", d.detail);

    // The endpoint gone.
    let url = format!("{}/introspect", idp.base());
    idp.stop().await;
    let mut s = only_introspection_at(&url);
    s.introspection.as_mut().unwrap().cache_size = 0;
    let v = JwtVerifier::new(&s).unwrap();
    assert_eq!(
        v.verify(&bearer("tok"), at(T0)).await.unwrap_err().reject,
        Reject::JwksUnavailable
    );
}

fn only_introspection_at(url: &str) -> JwtSettings {
    let mut s = settings(None, "https://as.example/");
    s.introspection = Some(IntrospectionSettings {
        url: url.to_string(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        cache_size: 10,
        cache_ttl: Duration::from_secs(300),
    });
    s
}

#[tokio::test]
async fn with_a_jwks_too_only_opaque_tokens_are_introspected() {
    let key = Arc::new(TestKey::ec("k", "ES256"));
    let idp = Idp::start(jwks_of(&[&key])).await;
    let mut s = settings(Some(idp.jwks_url()), &idp.base());
    s.introspection = Some(introspection(&idp));
    let v = JwtVerifier::new(&s).unwrap();
    let now = super::idp::now_secs();
    let jwt = key.mint(&good_claims(&idp.base(), now));
    assert!(v.verify(&bearer(&jwt), at(now)).await.is_ok());
    assert_eq!(hits(&idp), 0);
    // A JWS that fails is refused, never handed to introspection.
    let bad = format!("{}AAAA", &jwt[..jwt.len() - 4]);
    assert_eq!(
        v.verify(&bearer(&bad), at(now)).await.unwrap_err().reject,
        Reject::TokenInvalid
    );
    assert_eq!(hits(&idp), 0);
    answer(
        &idp,
        "opaque-1",
        json!({"active": true, "aud": AUD, "iss": idp.base(), "exp": now + 60}),
    );
    assert!(v.verify(&bearer("opaque-1"), at(now)).await.is_ok());
    assert_eq!(hits(&idp), 1);
}

#[tokio::test]
async fn introspection_only_sends_jwts_to_the_endpoint_too() {
    let idp = Idp::start(json!({"keys": []})).await;
    let v = JwtVerifier::new(&only_introspection(&idp)).unwrap();
    let key = TestKey::ec("k", "ES256");
    let jwt = key.mint(&good_claims("https://as.example/", T0));
    answer(
        &idp,
        &jwt,
        json!({"active": true, "sub": "via-introspection"}),
    );
    let c = v.verify(&bearer(&jwt), at(T0)).await.unwrap();
    assert_eq!(c.sub.as_deref(), Some("via-introspection"));
    assert_eq!(hits(&idp), 1);
}
