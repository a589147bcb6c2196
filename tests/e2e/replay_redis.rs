//! Replay protection shared through a real `redis-server` (`signature.replay: redis://...`): two
//! sidecars in front of two replicas refuse a request replayed from one to the other; entries
//! expire with the signature's window; Redis killed mid-test gives 503 `replay_store_unavailable`
//! (fail_closed) or forwards and counts (fail_open); Redis back means service back, no restart.
//!
//! Each test starts its own `redis-server` on a free port. Where none is on the PATH (a bare
//! `cargo test` on a machine without the Debian package), the tests say so and pass without
//! running; `.ci/run` installs it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use countersign::config::{RedisReplaySettings, ReplayOnError};
use countersign::registry::Algorithm;
use countersign::reject::Reject;
use countersign::signature::RedisReplay;
use countersign::signature::sign::{self, CavageSpec, Signer};
use countersign::signature::{Message, date};
use http::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A `redis-server` of our own on 127.0.0.1, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// True when `redis-server` is on the PATH; otherwise says that the caller skips.
pub fn have_redis(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: no redis-server on the PATH (apt-get install redis-server)");
    }
    found
}

pub async fn free_port() -> u16 {
    dead_addr().await.port()
}

impl RedisServer {
    /// Starts a plain-TCP server on a free port; `None` (after saying so) without `redis-server`.
    pub async fn start(test: &str) -> Option<RedisServer> {
        if !have_redis(test) {
            return None;
        }
        let port = free_port().await;
        let args = vec!["--port".to_string(), port.to_string()];
        Some(RedisServer::launch(port, args).await)
    }

    /// Starts a server with `args` (besides the common ones) that answers on `port`.
    pub async fn launch(port: u16, args: Vec<String>) -> RedisServer {
        let mut s = RedisServer {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            args,
        };
        s.restart().await;
        s
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(&self.args)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends one command (plain TCP, RESP) and returns the raw reply.
    pub async fn command(&self, args: &[&str]) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// An integer reply's value.
    pub async fn int(&self, args: &[&str]) -> i64 {
        let r = self.command(args).await;
        r.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?}: not an integer reply: {r:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const SECRET: &[u8] = b"replicas-share-this-hmac-secret-32b!";

/// Writes the key registry (one HMAC key, `replica-gw`) into the PKI's directory.
fn write_keys(pki: &Pki) {
    pki.write(
        "keys.yaml",
        &format!(
            "keys:\n  - id: replica-gw\n    algorithm: hmac-sha256\n    secret_base64: {}\n",
            base64::engine::general_purpose::STANDARD.encode(SECRET)
        ),
    );
}

/// A plain-HTTP sidecar requiring a signature, replay in Redis at `url` with `extra` settings.
async fn sidecar(pki: &Pki, backend: SocketAddr, url: &str, extra: &str) -> Sidecar {
    write_keys(pki);
    let yaml = format!(
        "upstream: http://{{UP}}\nkeys: keys.yaml\nsignature:\n  required: [\"(request-target)\", date, x-request-id]\n  replay: {url}\n{extra}routes:\n  - path: /\n    require: [signature]\n"
    );
    Sidecar::start(pki, backend, &yaml).await
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The headers of a freshly signed `GET path` (a new request id each time).
fn signed(path: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "date",
        HeaderValue::from_str(&date::format_imf(SystemTime::now())).unwrap(),
    );
    let id = format!(
        "req-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    h.insert("x-request-id", HeaderValue::from_str(&id).unwrap());
    let msg = Message {
        method: "GET",
        target: path,
        scheme: "http",
        authority: None,
        headers: &h,
        status: None,
    };
    let signer = Signer::hmac(Algorithm::HmacSha256, SECRET).unwrap();
    let (params, _) = sign::cavage(
        &msg,
        &signer,
        &CavageSpec {
            key_id: "replica-gw",
            algorithm: Some("hmac-sha256"),
            headers: vec![
                "(request-target)".into(),
                "date".into(),
                "x-request-id".into(),
            ],
            created: None,
            expires: None,
            tyk: false,
        },
    )
    .unwrap();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Signature {params}")).unwrap(),
    );
    h
}

/// Sends `GET path` with `headers` to the sidecar; the status and the `error` code (if any).
async fn send(sc: &Sidecar, path: &str, headers: &HeaderMap) -> (u16, String) {
    let r = plain_client()
        .get(sc.plain_url(path))
        .headers(headers.clone())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

fn store_settings(url: &str, on_error: ReplayOnError) -> RedisReplaySettings {
    RedisReplaySettings {
        url: url.to_string(),
        on_error,
        timeout: Duration::from_millis(200),
        key_prefix: "t:".to_string(),
        ca_file: None,
    }
}

#[tokio::test]
async fn store_records_once_and_forgets_after_the_window() {
    let Some(redis) = RedisServer::start("store_records_once_and_forgets_after_the_window").await
    else {
        return;
    };
    let store = RedisReplay::new(&store_settings(&redis.url(), ReplayOnError::FailClosed)).unwrap();
    let now = SystemTime::now();
    let until = now + Duration::from_millis(700);
    let token = [0x5a; 32];
    store.check_and_record(token, until, now).await.unwrap();
    let e = store.check_and_record(token, until, now).await.unwrap_err();
    assert_eq!(e.reject, Reject::Replayed);
    // Another signature is its own entry.
    let mut other = token;
    other[31] ^= 1;
    store.check_and_record(other, until, now).await.unwrap();
    // Stored under the prefix, hex, with the signature's remaining lifetime as its TTL.
    let key = format!("t:{}", hex::encode(token));
    let ttl = redis.int(&["PTTL", &key]).await;
    assert!((1..=700).contains(&ttl), "PTTL {ttl}");
    assert_eq!(redis.int(&["DBSIZE"]).await, 2);
    // After the window the entry is gone and the token is accepted (the verifier would refuse a
    // stale signature by then; the store itself holds nothing longer than it has to).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(redis.int(&["EXISTS", &key]).await, 0);
    store
        .check_and_record(
            token,
            SystemTime::now() + Duration::from_secs(5),
            SystemTime::now(),
        )
        .await
        .unwrap();
    // A signature already stale is not recorded at all.
    store
        .check_and_record([1; 32], now - Duration::from_secs(1), now)
        .await
        .unwrap();
    assert_eq!(
        redis
            .int(&["EXISTS", &format!("t:{}", hex::encode([1u8; 32]))])
            .await,
        0
    );
}

#[tokio::test]
async fn unreachable_store_fails_closed_or_open_within_the_timeout() {
    if !have_redis("unreachable_store_fails_closed_or_open_within_the_timeout") {
        return;
    }
    let url = format!("redis://127.0.0.1:{}/0", free_port().await);
    let now = SystemTime::now();
    let until = now + Duration::from_secs(60);
    let closed = RedisReplay::new(&store_settings(&url, ReplayOnError::FailClosed)).unwrap();
    let t = std::time::Instant::now();
    let e = closed
        .check_and_record([2; 32], until, now)
        .await
        .unwrap_err();
    assert_eq!(e.reject, Reject::ReplayStoreUnavailable);
    assert!(e.detail.contains("127.0.0.1"), "{}", e.detail);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let open = RedisReplay::new(&store_settings(&url, ReplayOnError::FailOpen)).unwrap();
    open.check_and_record([2; 32], until, now).await.unwrap();
    // A server that accepts the connection but never answers: bounded by the timeout too.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("redis://{}/0", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let hung = RedisReplay::new(&store_settings(&silent_url, ReplayOnError::FailClosed)).unwrap();
    let t = std::time::Instant::now();
    let e = hung
        .check_and_record([3; 32], until, now)
        .await
        .unwrap_err();
    assert_eq!(e.reject, Reject::ReplayStoreUnavailable);
    assert!(e.detail.contains("replay_timeout"), "{}", e.detail);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_request_replayed_to_another_replica_is_refused() {
    let Some(redis) = RedisServer::start("a_request_replayed_to_another_replica_is_refused").await
    else {
        return;
    };
    let (be_a, be_b) = (echo().await, echo().await);
    let (pki_a, pki_b) = (Pki::new(), Pki::new());
    let a = sidecar(&pki_a, be_a.addr, &redis.url(), "").await;
    let b = sidecar(&pki_b, be_b.addr, &redis.url(), "").await;

    let captured = signed("/orders/1");
    assert_eq!(send(&a, "/orders/1", &captured).await, (200, String::new()));
    // The same bytes to the other replica, and again to the first: both refused.
    assert_eq!(
        send(&b, "/orders/1", &captured).await,
        (401, "replayed".into())
    );
    assert_eq!(
        send(&a, "/orders/1", &captured).await,
        (401, "replayed".into())
    );
    // A tampered copy is refused for what is wrong with it, and burns nothing.
    let mut tampered = captured.clone();
    tampered.insert("x-request-id", HeaderValue::from_static("req-forged"));
    assert_eq!(
        send(&b, "/orders/1", &tampered).await,
        (401, "signature_invalid".into())
    );
    // New requests pass on either replica; each once.
    let fresh = signed("/orders/2");
    assert_eq!(send(&b, "/orders/2", &fresh).await, (200, String::new()));
    assert_eq!(
        send(&a, "/orders/2", &fresh).await,
        (401, "replayed".into())
    );
    assert_eq!(redis.int(&["DBSIZE"]).await, 2);
    // /readyz does not involve Redis.
    let ready = plain_client()
        .get(format!("http://{}/readyz", b.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn recorded_signatures_expire_with_their_window() {
    let Some(redis) = RedisServer::start("recorded_signatures_expire_with_their_window").await
    else {
        return;
    };
    let be = echo().await;
    let pki = Pki::new();
    let sc = sidecar(
        &pki,
        be.addr,
        &redis.url(),
        "  clock_skew: 1s\n  max_age: 2s\n  replay_key_prefix: \"orders:\"\n",
    )
    .await;
    let h = signed("/x");
    assert_eq!(send(&sc, "/x", &h).await.0, 200);
    let keys = redis.command(&["KEYS", "orders:*"]).await;
    assert!(keys.starts_with("*1\r\n"), "{keys:?}");
    let key = keys.lines().nth(2).unwrap().to_string();
    assert_eq!(key.len(), "orders:".len() + 64);
    // The signed Date has one-second resolution, and the verifier accepts through the whole of
    // its last second: the entry lives at most max_age + 1 s past the signed second.
    let ttl = redis.int(&["PTTL", &key]).await;
    assert!((1..=3000).contains(&ttl), "PTTL {ttl}");
    assert_eq!(send(&sc, "/x", &h).await, (401, "replayed".into()));
    // Replayed all through the window, up to the moment the entry expires.
    while redis.int(&["PTTL", &key]).await > 150 {
        assert_eq!(send(&sc, "/x", &h).await, (401, "replayed".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(5, || async { redis.int(&["EXISTS", &key]).await == 0 }).await;
    // By then the signature itself is stale: refused for that, not as a replay.
    assert_eq!(send(&sc, "/x", &h).await, (401, "signature_expired".into()));
    sc.stop().await;
}

async fn store_errors(sc: &Sidecar, on_error: &str) -> f64 {
    sample(
        &sc.metrics().await,
        &format!("countersign_replay_store_errors_total{{on_error=\"{on_error}\"}}"),
    )
}

#[tokio::test]
async fn redis_killed_fail_closed_refuses_then_recovers_without_restart() {
    let Some(mut redis) =
        RedisServer::start("redis_killed_fail_closed_refuses_then_recovers_without_restart").await
    else {
        return;
    };
    let be = echo().await;
    let pki = Pki::new();
    let sc = sidecar(&pki, be.addr, &redis.url(), "").await;
    assert_eq!(send(&sc, "/a", &signed("/a")).await.0, 200);
    let before = store_errors(&sc, "fail_closed").await;

    redis.kill();
    let t = std::time::Instant::now();
    assert_eq!(
        send(&sc, "/a", &signed("/a")).await,
        (503, "replay_store_unavailable".into())
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        send(&sc, "/a", &signed("/a")).await,
        (503, "replay_store_unavailable".into())
    );
    assert!(store_errors(&sc, "fail_closed").await >= before + 2.0);
    // The replica stays ready: Redis is not its health.
    let ready = plain_client()
        .get(format!("http://{}/readyz", sc.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    redis.restart().await;
    eventually(5, || async {
        send(&sc, "/a", &signed("/a")).await.0 == 200
    })
    .await;
    // Replay protection is back too.
    let h = signed("/a");
    assert_eq!(send(&sc, "/a", &h).await.0, 200);
    assert_eq!(send(&sc, "/a", &h).await, (401, "replayed".into()));
    sc.stop().await;
}

#[tokio::test]
async fn redis_killed_fail_open_forwards_and_counts() {
    let Some(mut redis) = RedisServer::start("redis_killed_fail_open_forwards_and_counts").await
    else {
        return;
    };
    let be = echo().await;
    let pki = Pki::new();
    let sc = sidecar(
        &pki,
        be.addr,
        &redis.url(),
        "  replay_on_error: fail_open\n  replay_timeout: 100ms\n",
    )
    .await;
    let h = signed("/b");
    assert_eq!(send(&sc, "/b", &h).await.0, 200);
    assert_eq!(send(&sc, "/b", &h).await, (401, "replayed".into()));
    let before = store_errors(&sc, "fail_open").await;

    redis.kill();
    // Forwarded without replay protection: even the same request twice.
    let h = signed("/b");
    assert_eq!(send(&sc, "/b", &h).await.0, 200);
    assert_eq!(send(&sc, "/b", &h).await.0, 200);
    assert!(store_errors(&sc, "fail_open").await >= before + 2.0);

    redis.restart().await;
    let fresh = signed("/b");
    eventually(5, || async {
        send(&sc, "/b", &fresh).await == (401, "replayed".into())
    })
    .await;
    let h = signed("/b");
    assert_eq!(send(&sc, "/b", &h).await.0, 200);
    assert_eq!(send(&sc, "/b", &h).await, (401, "replayed".into()));
    sc.stop().await;
}

#[tokio::test]
async fn the_sidecar_starts_and_is_ready_while_redis_is_down() {
    if !have_redis("the_sidecar_starts_and_is_ready_while_redis_is_down") {
        return;
    }
    let port = free_port().await;
    let be = echo().await;
    let pki = Pki::new();
    let sc = sidecar(&pki, be.addr, &format!("redis://127.0.0.1:{port}/0"), "").await;
    let ready = plain_client()
        .get(format!("http://{}/readyz", sc.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        send(&sc, "/c", &signed("/c")).await,
        (503, "replay_store_unavailable".into())
    );
    let redis = RedisServer::launch(port, vec!["--port".into(), port.to_string()]).await;
    eventually(5, || async {
        send(&sc, "/c", &signed("/c")).await.0 == 200
    })
    .await;
    assert!(redis.int(&["DBSIZE"]).await >= 1);
    sc.stop().await;
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    if !have_redis("rediss_with_a_private_ca") {
        return;
    }
    let pki = Pki::new();
    let port = free_port().await;
    let p = |f: &str| pki.path().join(f).display().to_string();
    let redis = RedisServer::launch(
        port,
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            p("server.crt"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    )
    .await;
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let now = SystemTime::now();
    let until = now + Duration::from_secs(60);
    let mut settings = store_settings(&url, ReplayOnError::FailClosed);
    settings.timeout = Duration::from_secs(2);
    settings.ca_file = Some(pki.path().join("ca.crt"));
    let store = RedisReplay::new(&settings).unwrap();
    store.check_and_record([7; 32], until, now).await.unwrap();
    let e = store
        .check_and_record([7; 32], until, now)
        .await
        .unwrap_err();
    assert_eq!(e.reject, Reject::Replayed);
    // Trusting another CA (or only the system roots), the handshake fails: unavailable.
    let other = countersign::pki::DevCa::new("other CA").unwrap();
    pki.write("other-ca.crt", &other.cert_pem());
    for ca in [Some(pki.path().join("other-ca.crt")), None] {
        settings.ca_file = ca;
        let store = RedisReplay::new(&settings).unwrap();
        let e = store
            .check_and_record([8; 32], until, now)
            .await
            .unwrap_err();
        assert_eq!(e.reject, Reject::ReplayStoreUnavailable, "{}", e.detail);
    }
    // Not a certificate: refused when built.
    pki.write("junk.crt", "not a certificate");
    settings.ca_file = Some(pki.path().join("junk.crt"));
    let e = RedisReplay::new(&settings).unwrap_err();
    assert!(e.contains("no PEM certificate"), "{e}");
}

fn check(dir: &std::path::Path, replay: &str) -> (i32, String, String) {
    let path = dir.join("check.yaml");
    std::fs::write(
        &path,
        format!("listen: 127.0.0.1:8443\nupstream: http://127.0.0.1:8080\nkeys: keys.yaml\nsignature:\n  required: [\"(request-target)\", date, x-request-id]\n  replay: {replay}\nroutes:\n  - path: /\n    require: [signature]\n"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_validates_the_redis_url_without_connecting() {
    let pki = Pki::new();
    write_keys(&pki);
    // Nothing listens there: check must not care, and must not print the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out, err) = check(pki.path(), &format!("redis://:s3cret@127.0.0.1:{port}/3"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "replay:   redis://:***@127.0.0.1:{port}/3 (shared; fail_closed on error; check does not connect)"
        )),
        "{out}"
    );
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    let (code, out, err) = check(pki.path(), "redis://127.0.0.1:6379/x");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("check.yaml: signature.replay: `redis://127.0.0.1:6379/x` is not a Redis URL"),
        "{err}"
    );
}
