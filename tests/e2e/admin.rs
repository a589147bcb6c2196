//! The admin listener.

use crate::support::*;

#[tokio::test]
async fn health_ready_and_metrics() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &format!("upstream: http://{{UP}}\n{TLS_MTLS}routes:\n  - path: /\n    require: [mtls]\n"),
    )
    .await;
    let c = plain_client();
    assert_eq!(
        c.get(format!("http://{}/healthz", sc.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("http://{}/readyz", sc.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    let m = sc.metrics().await;
    for name in [
        "countersign_requests_total",
        "countersign_request_duration_seconds_bucket",
        "countersign_verify_duration_seconds_bucket",
        "countersign_certificate_expiry_timestamp_seconds{cert=\"server\"}",
        "countersign_connections_total",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }
    // The admin routes are not on the main listener.
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/metrics"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["target"], "/metrics",
        "the main listener forwards /metrics to the backend"
    );
    sc.stop().await;
}
