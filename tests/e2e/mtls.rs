//! mTLS at the handshake and `tls.allow_clients` per request.

use crate::support::*;

const ROUTES: &str = "ip_allow: [127.0.0.0/8]\nroutes:\n  - path: /\n    require: [mtls]\n";

async fn sidecar(pki: &Pki, up: std::net::SocketAddr, allow: &str) -> Sidecar {
    Sidecar::start(
        pki,
        up,
        &format!("upstream: http://{{UP}}\n{TLS_MTLS}{allow}{ROUTES}"),
    )
    .await
}

#[tokio::test]
async fn allowed_client_reaches_backend_with_identity_headers() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = sidecar(
        &pki,
        be.addr,
        "  allow_clients:\n    - subject_cn: tyk-edge\n",
    )
    .await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed(&v, "x-countersign-cert-subject"), ["CN=tyk-edge"]);
    assert_eq!(
        echoed(&v, "x-countersign-cert-uri"),
        ["spiffe://example.org/ns/edge/sa/tyk"]
    );
    let sha = echoed(&v, "x-countersign-cert-sha256")[0].to_string();
    assert_eq!(
        sha,
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &pki.client.der))
    );
    assert_eq!(echoed(&v, "x-countersign-client-ip"), ["127.0.0.1"]);
    sc.stop().await;
}

#[tokio::test]
async fn cn_not_allowed_is_403_client_cert_denied() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = sidecar(
        &pki,
        be.addr,
        "  allow_clients:\n    - subject_cn: tyk-edge\n",
    )
    .await;
    let r = client(&pki, &sc, Some(&pki.intruder))
        .get(sc.url("/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "client_cert_denied");
    assert!(v.get("message").is_some());
    sc.stop().await;
}

#[tokio::test]
async fn allow_by_san_dns_san_uri_and_pin() {
    let pki = Pki::new();
    let be = echo().await;
    let pin = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &pki.intruder.der,
    ));
    for (entry, ok, denied) in [
        (
            "san_dns: GW.example.com".to_string(),
            &pki.client,
            &pki.intruder,
        ),
        (
            "san_uri: spiffe://example.org/ns/edge/sa/tyk".to_string(),
            &pki.client,
            &pki.intruder,
        ),
        (format!("sha256: \"{pin}\""), &pki.intruder, &pki.client),
    ] {
        let sc = sidecar(&pki, be.addr, &format!("  allow_clients:\n    - {entry}\n")).await;
        let r = client(&pki, &sc, Some(ok))
            .get(sc.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{entry}");
        let r = client(&pki, &sc, Some(denied))
            .get(sc.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{entry}");
        sc.stop().await;
    }
}

#[tokio::test]
async fn handshake_refuses_missing_foreign_revoked_expired_and_future_certs() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = sidecar(&pki, be.addr, "").await;
    // The accepted twin: a good certificate from the CA passes (allow_clients empty).
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (name, id) in [
        ("none", None),
        ("foreign CA", Some(&pki.foreign)),
        ("revoked", Some(&pki.revoked)),
        ("expired", Some(&pki.expired)),
        ("not yet valid", Some(&pki.future)),
    ] {
        let raw = raw_tls(
            &pki,
            sc.addr,
            id,
            b"",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            raw.is_err(),
            "{name}: expected the handshake to fail, got {raw:?}"
        );
    }
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_connections_total{result=\"handshake_failed\"}"
        ) >= 5.0,
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_routes_through() {
    let pki = Pki::new();
    let be = echo().await;
    let yaml = "upstream: http://{UP}\ntls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  client_auth: optional\nroutes:\n  - path: /public\n    require: []\n  - path: /\n    require: [mtls]\n";
    let sc = Sidecar::start(&pki, be.addr, yaml).await;
    let anon = client(&pki, &sc, None);
    assert_eq!(
        anon.get(sc.url("/public/x")).send().await.unwrap().status(),
        200
    );
    let r = anon.get(sc.url("/private")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "client_cert_denied"
    );
    assert_eq!(
        client(&pki, &sc, Some(&pki.client))
            .get(sc.url("/private"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A certificate from another CA still fails the handshake.
    assert!(
        client(&pki, &sc, Some(&pki.foreign))
            .get(sc.url("/public"))
            .send()
            .await
            .is_err()
    );
    sc.stop().await;
}

#[tokio::test]
async fn http2_over_alpn() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = sidecar(&pki, be.addr, "").await;
    let r = client_h2(&pki, &sc, Some(&pki.client))
        .get(sc.url("/h2?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["target"], "/h2?q=1");
    // The backend gets a Host header made from :authority.
    assert_eq!(
        echoed(&v, "host"),
        [format!("localhost:{}", sc.addr.port())]
    );
    let r = client_h2(&pki, &sc, Some(&pki.foreign))
        .get(sc.url("/"))
        .send()
        .await;
    assert!(r.is_err());
    sc.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &format!(
            "upstream: http://{{UP}}\n{TLS_MTLS}limits:\n  handshake_timeout: 300ms\n{ROUTES}"
        ),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "the connection should be closed, got {r:?}"
    );
    eventually(5, || async {
        sample(
            &sc.metrics().await,
            "countersign_connections_total{result=\"handshake_timeout\"}",
        ) >= 1.0
    })
    .await;
    // A client that does the handshake in time is served.
    assert_eq!(
        client(&pki, &sc, Some(&pki.client))
            .get(sc.url("/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sc.stop().await;
}
