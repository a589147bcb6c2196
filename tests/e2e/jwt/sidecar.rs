//! Bearer tokens through the running sidecar: the refusal codes with their challenges, scopes,
//! the headers the backend gets, readiness and the IdP being away.

use super::idp::*;
use crate::support::*;

fn yaml(idp: &Idp, extra_jwt: &str) -> String {
    format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}jwt:\n  jwks_url: {}\n  issuer: {}\n  audience: {AUD}\n  forward_claims:\n    - claim: client_id\n      header: X-Client-Id\n{extra_jwt}routes:\n  - path: /admin\n    require: [mtls, jwt]\n    scopes: [orders:admin]\n  - path: /\n    require: [mtls, jwt]\n    scopes: [orders:read]\n",
        idp.jwks_url(),
        idp.base()
    )
}

#[tokio::test]
async fn tokens_scopes_and_the_backend_headers() {
    let key = TestKey::ed25519("k1");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml(&idp, "")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    crate::support::eventually(5, || async {
        plain_client()
            .get(format!("http://{}/readyz", sc.admin))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;

    let token = key.mint(&good_claims(&idp.base(), now_secs()));
    let r = c
        .get(sc.url("/orders"))
        .bearer_auth(&token)
        .header("X-Client-Id", "forged")
        .header("X-Countersign-Jwt-Sub", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed(&v, "x-countersign-jwt-sub"), ["svc-orders"]);
    assert_eq!(echoed(&v, "x-client-id"), ["tyk-gateway"]);
    assert_eq!(
        echoed(&v, "authorization").len(),
        1,
        "forward_token defaults to true"
    );

    let r = c.get(sc.url("/orders")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "token_missing"
    );

    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = c
        .get(sc.url("/orders"))
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "token_invalid"
    );

    let r = c
        .get(sc.url("/admin/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "insufficient_scope"
    );

    let mut admin_claims = good_claims(&idp.base(), now_secs());
    admin_claims["scope"] = "orders:admin".into();
    let r = c
        .get(sc.url("/admin/x"))
        .bearer_auth(key.mint(&admin_claims))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sc.stop().await;
    idp.stop().await;
}

#[tokio::test]
async fn forward_token_false_strips_only_the_bearer() {
    let key = TestKey::ec("k1", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml(&idp, "  forward_token: false\n")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let token = key.mint(&good_claims(&idp.base(), now_secs()));
    let v: serde_json::Value = c
        .get(sc.url("/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(echoed(&v, "authorization").is_empty(), "{v}");
    assert_eq!(echoed(&v, "x-countersign-jwt-sub"), ["svc-orders"]);
    sc.stop().await;
    idp.stop().await;
}

#[tokio::test]
async fn idp_down_at_start_is_503_and_not_ready_until_it_answers() {
    let key = TestKey::ed25519("k1");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let jwks_url = idp.jwks_url();
    let base = idp.base();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    idp.stop().await;
    let pki = Pki::new();
    let be = echo().await;
    let text = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}jwt:\n  jwks_url: {jwks_url}\n  issuer: {base}\n  audience: {AUD}\n  jwks_min_refetch: 200ms\nroutes:\n  - path: /\n    require: [mtls, jwt]\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &text).await;
    let ready = plain_client()
        .get(format!("http://{}/readyz", sc.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let c = client(&pki, &sc, Some(&pki.client));
    let token = key.mint(&good_claims(&base, now_secs()));
    let r = c
        .get(sc.url("/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "jwks_unavailable"
    );
    // The IdP comes back on the same address: readiness and tokens follow.
    {
        let idp = Idp::start_on(addr, jwks_of(&[&key])).await;
        // A request with a token triggers a fetch (at most once per jwks_min_refetch).
        crate::support::eventually(10, || async {
            let _ = c.get(sc.url("/x")).bearer_auth(&token).send().await;
            plain_client()
                .get(format!("http://{}/readyz", sc.admin))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        })
        .await;
        assert_eq!(
            c.get(sc.url("/x"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        idp.stop().await;
    }
    sc.stop().await;
}
