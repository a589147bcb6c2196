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

/// The admin listener is bounded like the main one: a silent connection, or a head that never
/// completes, is closed after `limits.header_read_timeout`; past `admin::MAX_CONNECTIONS` open at
/// once, more are closed at once; and once the silent ones are gone, probes are answered again.
#[tokio::test]
async fn silent_admin_connections_are_bounded_in_time_and_number() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        "upstream: http://{UP}\nlimits:\n  header_read_timeout: 600ms\nroutes:\n  - path: /\n    require: []\n",
    )
    .await;
    let healthz = || async {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .get(format!("http://{}/healthz", sc.admin))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    assert_eq!(healthz().await.unwrap(), 200);

    let mut silent = Vec::new();
    for i in 0..countersign::admin::MAX_CONNECTIONS {
        let mut s = TcpStream::connect(sc.admin).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        }
        silent.push(s);
    }
    // Let the sidecar accept them all before the one over the limit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(sc.admin).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_millis(400), over.read_to_end(&mut got)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "a connection over the admin limit was not closed at once: {closed:?}"
    );

    let start = std::time::Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(closed.is_ok(), "silent admin connection {i} was kept open");
    }
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(healthz().await.unwrap(), 200, "probes answered again");
    sc.stop().await;
}
