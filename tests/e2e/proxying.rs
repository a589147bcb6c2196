//! Forwarding: header hygiene, request ids, bodies both ways, backend failures. (Upgrades: tunnels.rs.)

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn yaml(extra: &str) -> String {
    format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}{extra}ip_allow: [127.0.0.0/8]\nroutes:\n  - path: /\n    require: [mtls, ip]\n"
    )
}

#[tokio::test]
async fn spoofable_headers_are_stripped_and_connection_cannot_remove_ours() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml("")).await;
    let raw = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"",
        b"GET /h HTTP/1.1\r\nHost: localhost\r\nX-Countersign-Key-Id: forged\r\nx_countersign_cert_subject: forged\r\nX-COUNTERSIGN-CLIENT-IP: 6.6.6.6\r\nX-Forwarded-Client-Cert: forged\r\nClient-Cert: :AAAA:\r\nClient-Cert-Chain: :AAAA:\r\nConnection: close, X-Countersign-Cert-Subject, X-Countersign-Client-Ip, x-hop\r\nx-hop: gone\r\nKeep-Alive: timeout=5\r\nX-Keep: kept\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&raw), 200, "{raw}");
    let v = json_of(&raw);
    assert!(echoed(&v, "x-countersign-key-id").is_empty());
    assert!(echoed(&v, "x_countersign_cert_subject").is_empty());
    assert!(echoed(&v, "x-forwarded-client-cert").is_empty());
    assert!(echoed(&v, "client-cert").is_empty());
    assert!(echoed(&v, "client-cert-chain").is_empty());
    assert!(echoed(&v, "x-hop").is_empty());
    assert!(echoed(&v, "keep-alive").is_empty());
    assert_eq!(echoed(&v, "x-countersign-cert-subject"), ["CN=tyk-edge"]);
    assert_eq!(echoed(&v, "x-countersign-client-ip"), ["127.0.0.1"]);
    assert_eq!(echoed(&v, "x-keep"), ["kept"]);
    sc.stop().await;
}

#[tokio::test]
async fn request_id_is_kept_or_made() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let v: serde_json::Value = c
        .get(sc.url("/"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed(&v, "x-request-id"), ["abc-123"]);
    let v: serde_json::Value = c
        .get(sc.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made = echoed(&v, "x-request-id");
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].len(), 32);
    sc.stop().await;
    // Refusals carry it too.
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("ip_allow: [10.0.0.0/8]\n").replace("ip_allow: [127.0.0.0/8]\n", ""),
    )
    .await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .header("X-Request-Id", "r-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers().get("x-request-id").unwrap(), "r-9");
    sc.stop().await;
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml("")).await;
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let want = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let c = client(&pki, &sc, Some(&pki.client));
    let v: serde_json::Value = c
        .post(sc.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["body_bytes"], 5_000_000);
    assert_eq!(v["body_sha256"], want);
    // Chunked (unknown length) too.
    let v: serde_json::Value = c
        .post(sc.url("/chunked"))
        .body(stream_body(64, Bytes::from(vec![7u8; 16384])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["body_bytes"], 64 * 16384);
    sc.stop().await;
}

/// A backend that answers after `delay`.
async fn slow_backend(delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"slow"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    a
}

#[tokio::test]
async fn backend_down_is_502_and_slow_is_504() {
    let pki = Pki::new();
    let dead = dead_addr().await;
    let sc = Sidecar::start(&pki, dead, &yaml("")).await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "upstream_unavailable"
    );
    let m = sc.metrics().await;
    assert!(
        sample(&m, "countersign_upstream_errors_total{kind=\"connect\"}") >= 1.0,
        "{m}"
    );
    sc.stop().await;

    let slow = slow_backend(Duration::from_secs(3)).await;
    let sc = Sidecar::start(&pki, slow, &yaml("limits:\n  upstream_timeout: 500ms\n")).await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "upstream_timeout"
    );
    sc.stop().await;

    // The accepted twin: a slow backend inside the timeout answers.
    let slowish = slow_backend(Duration::from_millis(100)).await;
    let reloading = "reload:\n  poll_interval: 100ms\nlimits:\n  upstream_timeout: 5s\n";
    let sc = Sidecar::start(&pki, slowish, &yaml(reloading)).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let r = c.get(sc.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "slow");
    // The timeout follows a reload: the same backend is now too slow.
    sc.edit_config("upstream_timeout: 5s", "upstream_timeout: 20ms");
    eventually(5, || async {
        c.get(sc.url("/"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 504)
    })
    .await;
    sc.stop().await;
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml("limits:\n  max_header_bytes: 8192\n")).await;
    let big = "a".repeat(20_000);
    let raw = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&raw), 431, "{raw}");
    let small = "a".repeat(2_000);
    let raw = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {small}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&raw), 200);
    sc.stop().await;
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_counted() {
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("limits:\n  header_read_timeout: 500ms\n"),
    )
    .await;
    let mut s = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok(),
        "the sidecar must close a connection whose head never completes"
    );
    eventually(5, || async {
        sample(
            &sc.metrics().await,
            "countersign_connection_errors_total{kind=\"header_timeout\"}",
        ) >= 1.0
    })
    .await;
    sc.stop().await;
}

/// A keep-alive connection with no next request is closed after `header_read_timeout` (the
/// keep-alive idle limit) and not counted as a slow head; half a head after a served request
/// still is.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_not_counted() {
    const LIMIT: Duration = Duration::from_millis(400);
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("limits:\n  header_read_timeout: 400ms\n"),
    )
    .await;
    let timeouts = || async {
        sample(
            &sc.metrics().await,
            "countersign_connection_errors_total{kind=\"header_timeout\"}",
        )
    };

    let mut idle = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    idle.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().status, 200);
    let quiet = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection was not closed"
    );
    assert!(
        quiet.elapsed() >= LIMIT,
        "closed after {:?}",
        quiet.elapsed()
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

    let mut slow = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    slow.write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut slow).await.unwrap().status, 200);
    slow.write_all(b"GET /three HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a head that never completes was not cut");
    eventually(5, || async { timeouts().await >= 1.0 }).await;
    assert_eq!(
        timeouts().await,
        1.0,
        "the idle close was counted as a slow head"
    );
    sc.stop().await;
}

/// An h2c backend (HTTP/2 with prior knowledge, as gRPC servers are) that reports what it got.
async fn h2c_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let te = req
                        .headers()
                        .get("te")
                        .map(|v| v.to_str().unwrap_or("").to_string())
                        .unwrap_or_default();
                    let body = format!("{:?} te={te} path={}", req.version(), req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
            });
        }
    });
    a
}

#[tokio::test]
async fn upstream_http2_speaks_h2c_to_the_backend_and_keeps_te_trailers() {
    let pki = Pki::new();
    let be = h2c_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("upstream_http2: true\n")).await;
    for c in [
        client(&pki, &sc, Some(&pki.client)),
        client_h2(&pki, &sc, Some(&pki.client)),
    ] {
        let r = c
            .post(sc.url("/pkg.Service/Method"))
            .header("te", "trailers")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "HTTP/2.0 te=trailers path=/pkg.Service/Method"
        );
    }
    sc.stop().await;
    // The refused twin: without upstream_http2 the sidecar speaks HTTP/1.1, which an h2c-only
    // backend cannot answer.
    let sc = Sidecar::start(&pki, be, &yaml("")).await;
    let r = client(&pki, &sc, Some(&pki.client))
        .get(sc.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    sc.stop().await;
}

/// A backend that counts the connections it accepted; `keep_alive: false` closes each after one
/// response (as a backend with a short keep-alive timeout does).
async fn counting_backend(
    keep_alive: bool,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = vec![
                        b'z';
                        if req.uri().path() == "/big" {
                            1 << 20
                        } else {
                            2
                        }
                    ];
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (a, n)
}

#[tokio::test]
async fn backend_connections_are_reused_and_closed_ones_replaced() {
    use std::sync::atomic::Ordering;
    let pki = Pki::new();
    let (be, conns) = counting_backend(true).await;
    let sc = Sidecar::start(&pki, be, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    for _ in 0..50 {
        assert_eq!(
            c.get(sc.url("/small"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "zz"
        );
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "sequential requests share one backend connection"
    );
    // A response the client abandons half-read leaves its connection out of the pool; the next
    // request gets a fresh one and nothing hangs.
    let r = c.get(sc.url("/big")).send().await.unwrap();
    drop(r);
    assert_eq!(
        c.get(sc.url("/small"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "zz"
    );
    sc.stop().await;

    // A backend that closes every connection after one response: no request fails.
    let (be, conns) = counting_backend(false).await;
    let sc = Sidecar::start(&pki, be, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    for _ in 0..20 {
        let r = c.get(sc.url("/small")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "zz");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 20);
    sc.stop().await;
}
