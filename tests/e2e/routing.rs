//! Routes: first match by segment prefix and method, anonymous routes, no route, path tricks,
//! report mode.

use crate::support::*;

const ROUTES: &str = "ip_allow: [127.0.0.0/8]
routes:
  - path: /healthz
    require: []
  - path: /admin
    methods: [POST, DELETE]
    require: [mtls, ip]
  - path: /admin
    require: [ip]
  - path: /public
    require: []
  - path: /api
    require: [mtls]
";

async fn start(pki: &Pki, up: std::net::SocketAddr, extra: &str) -> Sidecar {
    let yaml = format!(
        "upstream: http://{{UP}}\ntls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  client_auth: optional\n  allow_clients:\n    - subject_cn: tyk-edge\n{extra}{ROUTES}"
    );
    Sidecar::start(pki, up, &yaml).await
}

#[tokio::test]
async fn first_match_by_prefix_and_method_and_no_route() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = start(&pki, be.addr, "").await;
    let anon = client(&pki, &sc, None);
    let good = client(&pki, &sc, Some(&pki.client));
    assert_eq!(
        anon.get(sc.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        anon.get(sc.url("/admin/x")).send().await.unwrap().status(),
        200,
        "GET /admin matches the ip-only route"
    );
    assert_eq!(
        anon.post(sc.url("/admin/x")).send().await.unwrap().status(),
        403,
        "POST /admin needs mtls"
    );
    assert_eq!(
        good.post(sc.url("/admin/x")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        anon.get(sc.url("/api/x")).send().await.unwrap().status(),
        403
    );
    assert_eq!(
        good.get(sc.url("/api/x")).send().await.unwrap().status(),
        200
    );
    // `/apiary` is not below `/api`, and nothing else matches it.
    let r = good.get(sc.url("/apiary")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "no_route"
    );
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_requests_total{route=\"-\",outcome=\"no_route\""
        ) >= 1.0,
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn path_tricks_are_routed_as_the_backend_would_resolve_them_and_forwarded_verbatim() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = start(&pki, be.addr, "").await;
    let anon = client(&pki, &sc, None);
    for trick in ["/public/../api/x", "/public/%2e%2e/api/x", "//api/x"] {
        let raw = raw_tls(
            &pki,
            sc.addr,
            None,
            b"",
            format!("GET {trick} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(
            status_of(&raw),
            403,
            "{trick} must get /api's policy: {raw}"
        );
    }
    // Paths that a backend keeping `%2F`, `;` or `\\` inside a segment would route elsewhere than
    // one decoding them are refused: no single route's policy is the one the backend applies.
    for trick in [
        "/public/..%2Fapi/x",
        "/api;jsessionid=1/x",
        "/public\\..\\api",
    ] {
        let raw = raw_tls(
            &pki,
            sc.addr,
            Some(&pki.client),
            b"",
            format!("GET {trick} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(status_of(&raw), 400, "{trick} is ambiguous: {raw}");
        assert_eq!(json_of(&raw)["error"], "malformed_request");
    }
    // The accepted twin: the same bytes with a certificate reach the backend unchanged.
    let good = client(&pki, &sc, Some(&pki.client));
    let raw = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"",
        b"GET /public/%2e%2e/api/x?a=%20b&c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(json_of(&raw)["target"], "/public/%2e%2e/api/x?a=%20b&c");
    let _ = anon;
    let _ = good;
    sc.stop().await;
}

#[tokio::test]
async fn report_mode_forwards_and_counts_what_it_would_deny() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = start(&pki, be.addr, "mode: report\n").await;
    let anon = client(&pki, &sc, None);
    let r = anon.get(sc.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 200, "report mode forwards");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(echoed(&v, "x-countersign-cert-subject").is_empty());
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_requests_total{route=\"/api\",outcome=\"client_cert_denied\",mode=\"report\"}"
        ) >= 1.0,
        "{m}"
    );
    // What passes is counted as allowed in report mode too.
    let good = client(&pki, &sc, Some(&pki.client));
    assert_eq!(
        good.get(sc.url("/api/x")).send().await.unwrap().status(),
        200
    );
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_requests_total{route=\"/api\",outcome=\"allowed\",mode=\"report\"}"
        ) >= 1.0,
        "{m}"
    );
    // A request matching no route is still refused: report mode never opens unrouted paths.
    assert_eq!(
        anon.get(sc.url("/nothing")).send().await.unwrap().status(),
        403
    );
    sc.stop().await;
}
