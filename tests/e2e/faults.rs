//! Faults around the sidecar: a backend that goes away and comes back, stalls, resets mid-body or
//! answers garbage; a config rewritten under load; SIGTERM with 100 requests in flight; running
//! out of file descriptors; the JWKS server going away. (A remote key registry going away is in
//! `remote_keys.rs`, Redis going away in `replay_redis.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::support::*;

fn yaml(extra: &str) -> String {
    format!(
        "upstream: http://{{UP}}\nshutdown_timeout: 2s\nlog:\n  access: off\n{TLS_MTLS}{extra}routes:\n  - path: /\n    require: [mtls]\n"
    )
}

/// A backend answering `ok` after `delay`, counting arrivals; `stop` closes the listener and
/// every open connection.
struct Killable {
    addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Killable {
    async fn start(addr: SocketAddr, delay: Duration) -> Killable {
        let l = TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let arrived = Arc::new(AtomicUsize::new(0));
        let a = arrived.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let a = a.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let a = a.clone();
                        async move {
                            a.fetch_add(1, Ordering::SeqCst);
                            let _ = req.into_body().collect().await;
                            tokio::time::sleep(delay).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Killable {
            addr,
            arrived,
            task,
        }
    }

    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Reads a request head (up to the blank line) and returns how many body bytes came with it.
async fn read_head(s: &mut TcpStream) -> usize {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return 0;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return buf.len() - i - 4;
        }
    }
}

/// How a raw backend misbehaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Closes the connection without a byte.
    CloseAtOnce,
    /// Reads 64 KiB of the request body, then resets the connection.
    ResetReadingBody,
    /// Sends a head promising 1 MiB (or chunked), 64 KiB of body, then resets.
    ResetMidResponse { chunked: bool },
    /// Sends a head at once and the body in 10 pieces over a second.
    TrickleBody,
    /// Sends a head promising 10 bytes, 5 of them, then nothing (the connection stays open).
    StallMidResponse,
    /// Reads the request head, then neither reads the body nor answers.
    NeverReadsBody,
}

async fn raw_backend(fault: Fault) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let reset = |s: TcpStream| {
                    // A zero linger makes the close an RST at once; nothing blocks on drop.
                    #[allow(deprecated)]
                    let _ = s.set_linger(Some(Duration::ZERO));
                    drop(s);
                };
                match fault {
                    Fault::Garbage => {
                        read_head(&mut s).await;
                        let _ = s.write_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n").await;
                    }
                    Fault::CloseAtOnce => {}
                    Fault::ResetReadingBody => {
                        let mut got = read_head(&mut s).await;
                        let mut chunk = [0u8; 16384];
                        while got < 64 * 1024 {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                        }
                        reset(s);
                    }
                    Fault::ResetMidResponse { chunked } => {
                        read_head(&mut s).await;
                        let body = vec![b'x'; 64 * 1024];
                        if chunked {
                            let _ = s
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
                                )
                                .await;
                        } else {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
                                .await;
                        }
                        let _ = s.write_all(&body).await;
                        let _ = s.flush().await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        reset(s);
                    }
                    Fault::StallMidResponse => {
                        read_head(&mut s).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxxxxx")
                            .await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Fault::NeverReadsBody => {
                        read_head(&mut s).await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Fault::TrickleBody => {
                        read_head(&mut s).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                            .await;
                        for _ in 0..10 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = s.write_all(b"x").await;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn backend_down_then_back_is_502_then_served_again() {
    let pki = Pki::new();
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO).await;
    let addr = be.addr;
    let sc = Sidecar::start(&pki, addr, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    assert_eq!(c.get(sc.url("/a")).send().await.unwrap().status(), 200);
    // Down, with a pooled keep-alive connection to it: 502, never a hang.
    be.stop().await;
    for _ in 0..3 {
        let t = Instant::now();
        let r = c.get(sc.url("/a")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["error"],
            "upstream_unavailable"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    // Back on the same port: served again.
    let be = Killable::start(addr, Duration::ZERO).await;
    eventually(5, || async {
        c.get(sc.url("/a"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(be.arrived() >= 1);
    sc.stop().await;
    be.stop().await;
}

#[tokio::test]
async fn with_access_denied_a_passed_request_countersign_answers_itself_gets_a_line() {
    // `log.access: denied` writes no line for a request that passed and was served, and one for a
    // request that passed and then got countersign's own 502: the caller was refused all the same.
    let pki = Pki::new();
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO).await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("").replace("access: off", "access: denied"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    let served = traced_id();
    let r = c
        .get(sc.url("/served"))
        .header("x-request-id", &served)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    be.stop().await;
    let failed = traced_id();
    let r = c
        .get(sc.url("/failed?q=1"))
        .header("x-request-id", &failed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let line = access_line(&failed).await;
    assert_eq!(line["verdict"], "upstream_failed", "{line}");
    assert_eq!(line["code"], "upstream_unavailable", "{line}");
    assert_eq!(line["status"], 502, "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/failed", "{line}");
    assert_eq!(line["request_id"], failed.as_str(), "{line}");
    assert!(
        line["cert_sha256"].as_str().is_some_and(|s| s.len() == 64),
        "{line}"
    );
    assert!(
        captured_line(&served).is_none(),
        "a served request has no line with log.access: denied"
    );
    sc.stop().await;
}

#[tokio::test]
async fn with_access_denied_a_backend_too_slow_to_answer_gets_a_line_too() {
    // The same branch as the 502 above, reached through the timeout: 504 and its own code.
    let pki = Pki::new();
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(5)).await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("limits:\n  upstream_timeout: 300ms\n").replace("access: off", "access: denied"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    let slow = traced_id();
    let r = c
        .post(sc.url("/slow"))
        .header("x-request-id", &slow)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let line = access_line(&slow).await;
    assert_eq!(line["verdict"], "upstream_failed", "{line}");
    assert_eq!(line["code"], "upstream_timeout", "{line}");
    assert_eq!(line["status"], 504, "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/slow", "{line}");
    sc.stop().await;
    be.stop().await;
}

#[tokio::test]
async fn a_backend_answering_garbage_or_closing_is_502() {
    let pki = Pki::new();
    for fault in [Fault::Garbage, Fault::CloseAtOnce] {
        let up = raw_backend(fault).await;
        let sc = Sidecar::start(&pki, up, &yaml("")).await;
        let c = client(&pki, &sc, Some(&pki.client));
        for _ in 0..2 {
            let r = c.get(sc.url("/g")).send().await.unwrap();
            assert_eq!(r.status(), 502, "{fault:?}");
            assert_eq!(
                r.json::<serde_json::Value>().await.unwrap()["error"],
                "upstream_unavailable",
                "{fault:?}"
            );
        }
        let m = sc.metrics().await;
        assert!(
            sample(&m, "countersign_upstream_errors_total{kind=\"protocol\"}") >= 1.0,
            "{m}"
        );
        sc.stop().await;
    }
}

#[tokio::test]
async fn a_backend_resetting_mid_request_body_is_502() {
    let pki = Pki::new();
    let up = raw_backend(Fault::ResetReadingBody).await;
    let sc = Sidecar::start(&pki, up, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    for body in [
        reqwest::Body::from(vec![1u8; 4 << 20]),
        stream_body(256, Bytes::from(vec![2u8; 16384])),
    ] {
        let t = Instant::now();
        let r = c.post(sc.url("/upload")).body(body).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["error"],
            "upstream_unavailable"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    // The sidecar is fine: the same client, a good backend.
    sc.stop().await;
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &yaml("")).await;
    let c = client(&pki, &sc, Some(&pki.client));
    assert_eq!(c.get(sc.url("/")).send().await.unwrap().status(), 200);
    sc.stop().await;
}

#[tokio::test]
async fn a_backend_resetting_mid_response_body_breaks_the_clients_response_too() {
    let pki = Pki::new();
    for chunked in [false, true] {
        let up = raw_backend(Fault::ResetMidResponse { chunked }).await;
        let sc = Sidecar::start(&pki, up, &yaml("")).await;
        for (proto, c) in [
            ("h1", client(&pki, &sc, Some(&pki.client))),
            ("h2", client_h2(&pki, &sc, Some(&pki.client))),
        ] {
            let t = Instant::now();
            let r = c.get(sc.url("/dl")).send().await.unwrap();
            assert_eq!(
                r.status(),
                200,
                "chunked {chunked} {proto}: the head was sent"
            );
            // The body must not look complete: a short body that ended cleanly would be taken
            // for the whole response.
            let body = r.bytes().await;
            assert!(
                body.is_err(),
                "chunked {chunked} {proto}: {} bytes arrived as if complete",
                body.map(|b| b.len()).unwrap_or(0)
            );
            assert!(t.elapsed() < Duration::from_secs(10));
        }
        sc.stop().await;
    }
}

#[tokio::test]
async fn a_slow_backend_body_streams_after_a_timely_head() {
    // upstream_timeout bounds the response head only, and stream_idle_timeout each gap in the
    // body: a body that keeps coming (10 bytes over a second) streams through both (300ms each).
    let pki = Pki::new();
    let up = raw_backend(Fault::TrickleBody).await;
    let sc = Sidecar::start(
        &pki,
        up,
        &yaml("limits:\n  upstream_timeout: 300ms\n  stream_idle_timeout: 300ms\n"),
    )
    .await;
    let c = client(&pki, &sc, Some(&pki.client));
    let r = c.get(sc.url("/sse")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"xxxxxxxxxx");
    sc.stop().await;
}

#[tokio::test]
async fn a_backend_body_that_stalls_is_cut_after_stream_idle_timeout() {
    let pki = Pki::new();
    let up = raw_backend(Fault::StallMidResponse).await;
    let sc = Sidecar::start(&pki, up, &yaml("limits:\n  stream_idle_timeout: 300ms\n")).await;
    for (proto, c) in [
        ("h1", client(&pki, &sc, Some(&pki.client))),
        ("h2", client_h2(&pki, &sc, Some(&pki.client))),
    ] {
        let t = Instant::now();
        let r = c.get(sc.url("/dl")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{proto}: the head was sent");
        // Five bytes of ten, then the cut: never a body that looks complete, never a hang.
        let body = r.bytes().await;
        assert!(
            body.is_err(),
            "{proto}: {} bytes arrived as if complete",
            body.map(|b| b.len()).unwrap_or(0)
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{proto}: {took:?}"
        );
    }
    let m = sc.metrics().await;
    assert!(
        sample(&m, "countersign_upstream_errors_total{kind=\"timeout\"}") >= 2.0,
        "{m}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn an_upload_longer_than_upstream_timeout_is_served_while_it_keeps_coming() {
    // 10 pieces 100ms apart: a second of upload against upstream_timeout 300ms, which counts from
    // the last byte the backend was handed, and stream_idle_timeout 300ms, which each gap is under.
    let pki = Pki::new();
    let be = echo().await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("limits:\n  upstream_timeout: 300ms\n  stream_idle_timeout: 300ms\n"),
    )
    .await;
    for (proto, c) in [
        ("h1", client(&pki, &sc, Some(&pki.client))),
        ("h2", client_h2(&pki, &sc, Some(&pki.client))),
    ] {
        let r = c
            .post(sc.url("/upload"))
            .body(slow_body(10, Duration::from_millis(100)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["body_bytes"], 10 * 1024, "{proto}: {v}");
    }
    sc.stop().await;
}

#[tokio::test]
async fn an_upload_that_stalls_is_408_after_stream_idle_timeout() {
    let pki = Pki::new();
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO).await;
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml("limits:\n  upstream_timeout: 30s\n  stream_idle_timeout: 300ms\n")
            .replace("access: off", "access: all"),
    )
    .await;
    // h1: ten bytes of a hundred, then nothing.
    let t = Instant::now();
    let stalled = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789";
    let text = tokio::time::timeout(
        Duration::from_secs(5),
        raw_tls(&pki, sc.addr, Some(&pki.client), b"", stalled),
    )
    .await
    .expect("answered within stream_idle_timeout")
    .unwrap();
    assert_eq!(status_of(&text), 408, "{text}");
    assert_eq!(json_of(&text)["error"], "request_timeout");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(be.arrived(), 1, "the head went on, the body stopped");
    // h2: a body stream that yields once and then waits for ever; the access line says why.
    let c = client_h2(&pki, &sc, Some(&pki.client));
    let rid = traced_id();
    let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
        Bytes::from_static(b"x"),
    ))])
    .chain(futures_util::stream::pending());
    let r = c
        .post(sc.url("/up"))
        .header("x-request-id", &rid)
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(
            stalled,
        )))
        .send();
    let r = tokio::time::timeout(Duration::from_secs(5), r)
        .await
        .expect("answered within stream_idle_timeout")
        .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(
        detail_of(&rid).await,
        "the request body stalled for limits.stream_idle_timeout"
    );
    sc.stop().await;
    be.stop().await;
}

#[tokio::test]
async fn a_backend_that_stops_reading_an_upload_is_504_after_upstream_timeout() {
    // The backend takes the head and then neither reads nor answers: once the sockets between are
    // full the sidecar has nothing left to hand it, and upstream_timeout runs from the last byte.
    let pki = Pki::new();
    let up = raw_backend(Fault::NeverReadsBody).await;
    let sc = Sidecar::start(
        &pki,
        up,
        &yaml("limits:\n  upstream_timeout: 500ms\n  stream_idle_timeout: 30s\n")
            .replace("access: off", "access: all"),
    )
    .await;
    let c = client_h2(&pki, &sc, Some(&pki.client));
    let rid = traced_id();
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.post(sc.url("/up"))
            .header("x-request-id", &rid)
            .body(stream_body(1024, Bytes::from(vec![7u8; 64 * 1024])))
            .send(),
    )
    .await
    .expect("answered within upstream_timeout of the last byte")
    .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "upstream_timeout"
    );
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        detail_of(&rid).await,
        "the backend did not answer within limits.upstream_timeout"
    );
    sc.stop().await;
}

/// `n` pieces of 1 KiB, `gap` apart.
fn slow_body(n: usize, gap: Duration) -> reqwest::Body {
    let s = futures_util::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(gap).await;
        Some((
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'u'; 1024]))),
            i + 1,
        ))
    });
    reqwest::Body::wrap(http_body_util::StreamBody::new(s))
}

/// Clients hammering a URL until stopped; every failure is kept.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(c: reqwest::Client, url: String, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (c, url, stop, ok, failures) = (
                    c.clone(),
                    url.clone(),
                    stop.clone(),
                    ok.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", r.status())),
                            Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test]
async fn rewriting_the_config_under_load_fails_no_request() {
    let pki = Pki::new();
    let be = echo().await;
    let base = yaml("reload:\n  poll_interval: 100ms\nip_allow: [10.0.0.0/8]\n");
    let sc = Sidecar::start(&pki, be.addr, &base).await;
    let path = sc.config_path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let with_block = text.replace(
        "routes:\n",
        "routes:\n  - path: /blocked\n    require: [ip]\n",
    );
    let c = client(&pki, &sc, Some(&pki.client));
    let load = Load::start(c.clone(), sc.url("/steady"), 4);
    let reloads = || async {
        sample(
            &sc.metrics().await,
            "countersign_reloads_total{what=\"config\",result=\"success\"}",
        )
    };
    let failed_reloads = || async {
        sample(
            &sc.metrics().await,
            "countersign_reloads_total{what=\"config\",result=\"error\"}",
        )
    };
    let blocked = |want: u16| {
        let c = c.clone();
        let url = sc.url("/blocked/x");
        async move {
            eventually(5, || async {
                c.get(&url).send().await.is_ok_and(|r| r.status() == want)
            })
            .await
        }
    };
    for round in 0..3 {
        let before = reloads().await;
        std::fs::write(&path, &with_block).unwrap();
        blocked(403).await;
        std::fs::write(&path, &text).unwrap();
        blocked(200).await;
        // Touching it with the same bytes, and rewriting it in place byte by byte.
        std::fs::write(&path, &text).unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            for chunk in text.as_bytes().chunks(16) {
                f.write_all(chunk).unwrap();
                f.flush().unwrap();
            }
        }
        assert!(reloads().await >= before + 2.0, "round {round}");
    }
    // A broken rewrite changes nothing and is counted.
    let before = failed_reloads().await;
    std::fs::write(&path, "routes: [oops\n").unwrap();
    eventually(5, || async { failed_reloads().await > before }).await;
    std::fs::write(&path, &text).unwrap();
    blocked(200).await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 20, "only {ok} requests");
    sc.stop().await;
}

#[tokio::test]
async fn the_jwks_server_going_away_keeps_the_cached_keys_verifying() {
    use crate::jwt::idp::{AUD, Idp, TestKey, good_claims, jwks_of, now_secs};
    let key = TestKey::ec("k1", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let issuer = idp.base();
    let addr: SocketAddr = issuer.trim_start_matches("http://").parse().unwrap();
    let pki = Pki::new();
    let be = echo().await;
    let text = format!(
        "upstream: http://{{UP}}\nlog:\n  access: off\n{TLS_MTLS}jwt:\n  jwks_url: {}\n  issuer: {issuer}\n  audience: {AUD}\n  jwks_refresh: 300ms\n  jwks_min_refetch: 100ms\nroutes:\n  - path: /\n    require: [mtls, jwt]\n",
        idp.jwks_url()
    );
    let sc = Sidecar::start(&pki, be.addr, &text).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let ready = || async {
        plain_client()
            .get(format!("http://{}/readyz", sc.admin))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    eventually(5, || async { ready().await == 200 }).await;
    let token = key.mint(&good_claims(&issuer, now_secs()));
    let get = |t: String| {
        let c = c.clone();
        let url = sc.url("/orders");
        async move { c.get(url).bearer_auth(t).send().await.unwrap().status() }
    };
    assert_eq!(get(token.clone()).await, 200);
    let hits = idp.jwks_hits();
    idp.stop().await;
    // Several refresh periods without the IdP: the cached keys keep verifying, readiness holds,
    // a token from an unknown key is invalid (401), not an outage (503).
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(get(token.clone()).await, 200);
        assert_eq!(ready().await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stranger = TestKey::ec("k2", "ES256");
    assert_eq!(
        get(stranger.mint(&good_claims(&issuer, now_secs()))).await,
        401
    );
    // The IdP comes back with a rotated key: picked up by the next refresh.
    let idp = Idp::start_on(addr, jwks_of(&[&key, &stranger])).await;
    let fresh = stranger.mint(&good_claims(&issuer, now_secs()));
    eventually(5, || async { get(fresh.clone()).await == 200 }).await;
    assert!(idp.jwks_hits() >= 1 && hits >= 1);
    sc.stop().await;
    idp.stop().await;
}

/// Starts the binary on `yaml`, with the open-file limit set to `nofile` when given.
fn spawn_child(pki: &Pki, yaml: &str, nofile: Option<u64>) -> SidecarProcess {
    SidecarProcess::start(pki, yaml, |cmd| {
        use std::os::unix::process::CommandExt;
        if let Some(n) = nofile {
            // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    })
}

/// The number of open file descriptors of the child.
fn open_fds(c: &SidecarProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", c.child.id()))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn sigterm_with_100_requests_in_flight_loses_none() {
    let pki = Pki::new();
    // Drained in time: all 100 complete.
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::from_millis(1500)).await;
    let c = spawn_child(&pki, &child_yaml(be.addr, "shutdown_timeout: 20s\n"), None);
    let outcomes = in_flight(&c, &pki, &be, 100).await;
    let results = outcomes.await;
    let ok = results.iter().filter(|r| matches!(r, Ok(200))).count();
    assert_eq!(ok, 100, "{results:?}");
    let status = stop(c).await;
    assert_eq!(status.code(), Some(0));
    be.stop().await;

    // Outliving shutdown_timeout: each fails with a clean error when the drain ends, none hangs,
    // none is answered with anything but its response or a closed connection.
    let be = Killable::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let c = spawn_child(&pki, &child_yaml(be.addr, "shutdown_timeout: 1s\n"), None);
    let t = Instant::now();
    let outcomes = in_flight(&c, &pki, &be, 100).await;
    let status = stop(c).await;
    let results = outcomes.await;
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(results.len(), 100);
    for r in &results {
        assert!(
            matches!(r, Err(e) if e.contains("connection") || e.contains("closed") || e.contains("reset")),
            "{r:?}"
        );
    }
    assert_eq!(status.code(), Some(0));
    be.stop().await;
}

/// Sends `n` requests at once and waits until the backend holds all of them, then SIGTERMs the
/// child; the returned future gives each request's status or error.
async fn in_flight(
    c: &SidecarProcess,
    pki: &Pki,
    be: &Killable,
    n: usize,
) -> impl std::future::Future<Output = Vec<Result<u16, String>>> + use<> {
    let http = c.client(pki, Duration::from_secs(30));
    let before = be.arrived();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), c.url(&format!("/slow/{i}")));
            tokio::spawn(async move {
                http.get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| format!("{e:?}"))
            })
        })
        .collect();
    eventually(20, || async { be.arrived() - before >= n }).await;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(c.child.id() as i32, libc::SIGTERM);
    }
    async move {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

async fn stop(mut c: SidecarProcess) -> std::process::ExitStatus {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pid = c.child.id();
    std::thread::spawn(move || {
        let _ = tx.send(c.child.wait().unwrap());
        drop(c);
    });
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap_or_else(|_| panic!("child {pid} did not exit"))
        .unwrap()
}

#[tokio::test]
async fn running_out_of_file_descriptors_refuses_new_connections_and_serves_open_ones() {
    let pki = Pki::new();
    let be = echo().await;
    // 64 descriptors: fewer than the default connection limit (64) needs, so the descriptors run
    // out first.
    let c = spawn_child(
        &pki,
        &child_yaml(be.addr, "limits:\n  handshake_timeout: 2s\n"),
        Some(64),
    );
    let http = c.client(&pki, Duration::from_secs(30));
    // One pooled connection to the backend, for the requests made while descriptors are short.
    assert_eq!(http.get(c.url("/warm")).send().await.unwrap().status(), 200);
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() < 64, "descriptors never ran out");
        let t = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(5),
            tls_connect(&pki, c.addr, Some(&pki.client), b""),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => break (e, t.elapsed()),
            Err(_) => panic!(
                "connection {} hangs instead of being refused ({} descriptors open)",
                held.len(),
                open_fds(&c)
            ),
        }
    };
    assert!(held.len() >= 20, "only {} connections", held.len());
    assert!(refused.1 < Duration::from_secs(1), "{refused:?}");
    // Refused again, promptly, while nothing changes.
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tls_connect(&pki, c.addr, Some(&pki.client), b""),
        )
        .await
        .expect("refused, not hung");
        assert!(r.is_err());
    }
    // The open connections are still served.
    for s in held.iter_mut().take(3) {
        s.write_all(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    }
    // Connections close: the process recovers.
    held.truncate(5);
    eventually(5, || async {
        http.get(c.url("/after"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let m = plain_client()
        .get(format!("http://{}/metrics", c.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample(&m, "countersign_connections_total{result=\"over_limit\"}") >= 4.0,
        "{m}"
    );
}
