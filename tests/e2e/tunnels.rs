//! Upgraded (WebSocket) connections: they pass only after verification, keep their connection
//! slot, and are closed when idle, at shutdown, and when their certificate no longer admits them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use countersign::pki::Issued;

use crate::support::*;

fn yaml(extra: &str) -> String {
    format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}{extra}ip_allow: [127.0.0.0/8]\nroutes:\n  - path: /\n    require: [mtls, ip]\n"
    )
}

/// A backend that switches protocols and then echoes bytes upper-cased; `bye` makes it close.
async fn upgrade_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(
                    |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        let ok = req
                            .headers()
                            .get("upgrade")
                            .is_some_and(|v| v == "echo-proto")
                            && req.headers().get("x-countersign-cert-subject").is_some();
                        if !ok {
                            return Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(400)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        tokio::spawn(async move {
                            let up = hyper::upgrade::on(&mut req).await.unwrap();
                            let mut io = TokioIo::new(up);
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || &buf[..n] == b"bye" {
                                    break;
                                }
                                let _ = io.write_all(&buf[..n].to_ascii_uppercase()).await;
                            }
                        });
                        Ok(hyper::Response::builder()
                            .status(101)
                            .header("connection", "upgrade")
                            .header("upgrade", "echo-proto")
                            .body(Full::new(Bytes::new()))
                            .unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    a
}

#[tokio::test]
async fn upgrades_pass_after_verification() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("")).await;
    let mut t = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut t, b"hello").await;
    sc.stop().await;

    // The refused twin: without an allowed certificate the upgrade never reaches the backend.
    let sc = Sidecar::start(&pki, be, &format!("upstream: http://{{UP}}\n{TLS_MTLS}  allow_clients:\n    - subject_cn: nobody\nroutes:\n  - path: /\n    require: [mtls]\n")).await;
    let mut s = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8_lossy(&buf[..n]).to_string();
    assert_eq!(status_of(&raw), 403, "{raw}");
    sc.stop().await;
}

/// Opens a TLS connection as `id` and switches it to the backend's echo protocol.
async fn open_tunnel(pki: &Pki, sc: &Sidecar, id: &Issued) -> TlsStream<TcpStream> {
    let mut s = tls_connect(pki, sc.addr, Some(id), b"").await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    s
}

/// Sends `msg` through the tunnel and expects it back upper-cased.
async fn round_trip(s: &mut TlsStream<TcpStream>, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("the tunnel answers")
        .unwrap();
    assert_eq!(got, msg.to_ascii_uppercase());
}

/// Waits up to `secs` for the sidecar to close the tunnel (end of stream or a reset).
async fn closed_within(s: &mut TlsStream<TcpStream>, secs: u64) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(secs), s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("tunnel still open after {secs} s"));
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot_until_it_closes() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("limits:\n  max_connections: 1\n")).await;
    let mut t = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut t, b"one").await;
    // The one slot is the tunnel's: a second connection is closed unserved.
    let second = raw_tls(
        &pki,
        sc.addr,
        Some(&pki.client),
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(second.is_err(), "{second:?}");
    round_trip(&mut t, b"two").await;
    drop(t);
    eventually(5, || async {
        raw_tls(
            &pki,
            sc.addr,
            Some(&pki.client),
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .is_ok()
    })
    .await;
    sc.stop().await;
}

#[tokio::test]
async fn a_tunnel_carrying_nothing_for_its_idle_limit_is_closed() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("limits:\n  tunnel_idle_timeout: 400ms\n")).await;
    let mut t = open_tunnel(&pki, &sc, &pki.client).await;
    // Traffic every 150 ms for well over the limit keeps it open.
    for i in 0..8u8 {
        round_trip(&mut t, &[b'a' + i]).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let quiet = Instant::now();
    closed_within(&mut t, 5).await;
    assert!(
        quiet.elapsed() >= Duration::from_millis(250),
        "{:?}",
        quiet.elapsed()
    );
    sc.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_tunnels_at_once() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("shutdown_timeout: 30s\n")).await;
    let mut t = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut t, b"hi").await;
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), sc.stop())
        .await
        .expect("the drain does not wait out shutdown_timeout for a tunnel");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    closed_within(&mut t, 5).await;
}

#[tokio::test]
async fn a_revoked_or_disallowed_certificate_closes_its_tunnel() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, crate::rotation::YAML).await;
    let victim = pki.ca.client("revoked").unwrap();
    let mut doomed = open_tunnel(&pki, &sc, &victim).await;
    let mut kept = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut doomed, b"before").await;

    // A broken CRL is refused and changes nothing: the tunnels carry on.
    pki.write("crl.pem", "not a CRL\n");
    let running = sc.running.as_ref().unwrap();
    let e = running.reload().await.unwrap_err().to_string();
    assert!(e.contains("crl.pem"), "{e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    round_trip(&mut doomed, b"after a bad reload").await;

    // A new CRL revoking the victim: its tunnel closes, the other carries on.
    pki.revoke(&victim);
    closed_within(&mut doomed, 5).await;
    round_trip(&mut kept, b"still here").await;

    // tyk-edge taken out of allow_clients on the mtls route: its tunnel closes too.
    sc.edit_config("subject_cn: tyk-edge", "subject_cn: someone-else");
    closed_within(&mut kept, 5).await;
    sc.stop().await;
}

#[tokio::test]
async fn a_tunnel_the_backend_closes_is_closed_to_the_client() {
    let pki = Pki::new();
    let be = upgrade_backend().await;
    let sc = Sidecar::start(&pki, be, &yaml("")).await;
    let mut t = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut t, b"hi").await;
    t.write_all(b"bye").await.unwrap();
    closed_within(&mut t, 5).await;
    // The connection's slot and the sidecar are free for the next one.
    let mut next = open_tunnel(&pki, &sc, &pki.client).await;
    round_trip(&mut next, b"again").await;
    sc.stop().await;
}
