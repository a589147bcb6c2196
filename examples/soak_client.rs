//! The soak (`bench/soak.sh MINUTES`): makes a dev PKI, a key registry and a config in `--dir`,
//! starts the sidecar binary given by `--sidecar` in front of an in-process echo backend, and drives
//! steady mTLS + signed load at `--rate` requests per second for `--warmup-minutes` and then
//! `--minutes`, a fresh signature per request (draft-cavage GETs and RFC 9421 POSTs with
//! Content-Digest, alternately; replay protection on). Every `--rotate-every` seconds the HMAC
//! key rotates (the new key is added to keys.yaml, the signer switches to it, the old key is
//! removed and must then be refused), and half a period later the server certificate rotates (a
//! Kubernetes-style `..data` symlink swap); each step waits for the sidecar's metrics to show the
//! reload. The HTTP client is rebuilt every `--reconnect-every` seconds, so new TLS connections
//! meet the new certificate.
//!
//! Prints per-minute requests, errors, latency percentiles and the sidecar's RSS (all of it, and
//! its anonymous part: heap and stacks, without the binary's file-backed pages), then a summary.
//! Exit 1 when a request failed (warm-up included), a rotation did not take, or RSS grew 10 % or
//! more over the measured minutes (from the end of the `--warmup-minutes`, default 1, to the end).
//! Stops everything it started (the sidecar also dies with it).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;
use clap::Parser;
use countersign::pki::{DevCa, Issued, LeafSpec};
use countersign::registry::Algorithm;
use countersign::signature::digest::{DigestAlg, content_digest_value};
use countersign::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use countersign::signature::{Message, date};
use http::{HeaderMap, HeaderValue, Method, header};
use support::{Error, Sidecar, client_tls, free_port};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// The countersign binary to soak (a release build).
    #[arg(long)]
    sidecar: PathBuf,
    /// Where to write the PKI, keys, config and the sidecar's log (created; should be empty).
    #[arg(long)]
    dir: PathBuf,
    /// How long the measured load runs (after the warm-up).
    #[arg(long)]
    minutes: u64,
    /// Minutes of the same load before the measured ones (the replay store fills, connections and
    /// TLS sessions are made); RSS growth and p99 drift are taken from the end of the warm-up.
    #[arg(long, default_value_t = 1)]
    warmup_minutes: u64,
    /// Requests per second, spread over the workers.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// Concurrent workers (each waits for its answer before its next tick).
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Seconds between key rotations (and between certificate rotations).
    #[arg(long, default_value_t = 60)]
    rotate_every: u64,
    /// Seconds between rebuilds of the HTTP client (fresh TLS connections).
    #[arg(long, default_value_t = 10)]
    reconnect_every: u64,
}

/// The HMAC key the client signs with.
struct SigningKey {
    id: String,
    secret_b64: String,
    signer: Signer,
}

impl SigningKey {
    fn generate(id: String) -> Result<SigningKey, Error> {
        let secret = ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
            .map_err(|_| "no randomness")?
            .expose();
        Ok(SigningKey {
            secret_b64: base64::engine::general_purpose::STANDARD.encode(secret),
            signer: Signer::hmac(Algorithm::HmacSha256, &secret)?,
            id,
        })
    }
}

/// What happened in one minute of load.
#[derive(Default)]
struct Minute {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latest_cert: u64,
    earlier_cert: u64,
    rss: Option<Rss>,
}

struct Shared {
    key: ArcSwap<SigningKey>,
    client: ArcSwap<reqwest::Client>,
    latest_cert: ArcSwap<Vec<u8>>,
    minutes: Mutex<Vec<Minute>>,
    started: Instant,
    seq: AtomicU64,
    host: String,
    base: String,
}

impl Shared {
    fn minute(&self) -> usize {
        (self.started.elapsed().as_secs() / 60) as usize
    }

    fn with_minute(&self, f: impl FnOnce(&mut Minute)) {
        let m = self.minute();
        let mut all = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() <= m {
            all.resize_with(m + 1, Minute::default);
        }
        f(&mut all[m]);
    }
}

/// Writes `name` in `dir` by renaming a temporary file over it (readers never see half a file).
fn write_atomic(dir: &Path, name: &str, content: &str) -> Result<(), Error> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn write_keys(dir: &Path, keys: &[&SigningKey]) -> Result<(), Error> {
    let mut text = String::from("keys:\n");
    for k in keys {
        text.push_str(&format!(
            "  - id: {}\n    algorithm: hmac-sha256\n    secret_base64: {}\n",
            k.id, k.secret_b64
        ));
    }
    write_atomic(&dir.join("keys"), "keys.yaml", &text)
}

/// Installs generation `n` of the server certificate the way the kubelet updates a Secret volume:
/// files in a new directory, then one rename of the `..data` symlink.
fn write_tls(dir: &Path, n: u64, issued: &Issued) -> Result<(), Error> {
    let tls = dir.join("tls");
    let generation = format!("gen-{n}");
    std::fs::create_dir_all(tls.join(&generation))?;
    std::fs::write(tls.join(&generation).join("tls.crt"), &issued.cert_pem)?;
    std::fs::write(tls.join(&generation).join("tls.key"), &issued.key_pem)?;
    let tmp = tls.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&generation, &tmp)?;
    std::fs::rename(&tmp, tls.join("..data"))?;
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(tls.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), tls.join(f))?;
        }
    }
    if n >= 2 {
        let _ = std::fs::remove_dir_all(tls.join(format!("gen-{}", n - 2)));
    }
    Ok(())
}

fn server_cert(ca: &DevCa, not_after: time::OffsetDateTime) -> Result<Issued, Error> {
    Ok(ca.issue(&LeafSpec {
        cn: "countersign".into(),
        dns: vec!["localhost".into()],
        ips: vec![[127, 0, 0, 1].into()],
        server: true,
        not_after: Some(not_after),
        ..LeafSpec::default()
    })?)
}

fn config_text(listen: u16, admin: u16, upstream: u16) -> String {
    format!(
        r#"# Written by examples/soak_client.rs (bench/soak.sh).
listen: 127.0.0.1:{listen}
upstream: http://127.0.0.1:{upstream}
admin: 127.0.0.1:{admin}
mode: enforce
log:
  access: denied
tls:
  cert: tls/tls.crt
  key: tls/tls.key
  client_ca: ca.crt
  client_auth: required
  allow_clients:
    - subject_cn: soak-client
keys: keys/keys.yaml
signature:
  schemes: [cavage, rfc9421]
  required: ["(request-target)", date]
  clock_skew: 60s
  digest: optional
  replay: memory
reload:
  poll_interval: 1s
routes:
  - path: /
    require: [mtls, signature]
"#
    )
}

fn http_client(ca: &DevCa, id: &Issued, sidecar: SocketAddr) -> Result<reqwest::Client, Error> {
    let tls = client_tls(ca, id, b"http/1.1")?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .tls_info(true)
        .resolve("localhost", sidecar)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The value of the first metric sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sums the samples of `name` whose labels include `label`.
fn sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

async fn metrics(admin: &str) -> String {
    match reqwest::get(format!("http://{admin}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls the admin metrics until `ok` holds; how long that took, or `None` after `limit`.
async fn wait_metrics(admin: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if ok(&metrics(admin).await) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The sidecar's resident size in KiB: all of it (`VmRSS`), and its anonymous part (`RssAnon`:
/// heap, stacks; what a leak grows). The rest is file-backed: the binary's pages, mapped in as
/// code paths first run, bounded by the binary's size.
#[derive(Clone, Copy)]
struct Rss {
    total_kb: u64,
    anon_kb: u64,
}

fn rss(pid: u32) -> Option<Rss> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Rss {
        total_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:")?,
    })
}

fn growth_pct(first: Option<u64>, last: Option<u64>) -> f64 {
    match (first, last) {
        (Some(a), Some(b)) if a > 0 => 100.0 * (b as f64 - a as f64) / a as f64,
        _ => f64::NAN,
    }
}

/// Signs and sends one request; `Ok(())` for a 200 from the backend, else the failure's name.
async fn one_request(shared: &Shared, key: &SigningKey, seq: u64) -> Result<(), String> {
    let now = SystemTime::now();
    let rid = format!("soak-{seq}");
    let mut headers = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|e| format!("header: {e}"));
    headers.insert(header::HOST, hv(&shared.host)?);
    headers.insert(header::DATE, hv(&date::format_imf(now))?);
    headers.insert("x-request-id", hv(&rid)?);
    let (method, target, body) = if seq.is_multiple_of(2) {
        (Method::GET, format!("/orders/{}?page=2", seq % 1000), None)
    } else {
        let body = format!("{{\"order\":{seq},\"items\":[1,2,3]}}");
        headers.insert(header::CONTENT_TYPE, hv("application/json")?);
        headers.insert(
            "content-digest",
            hv(&content_digest_value(DigestAlg::Sha256, body.as_bytes()))?,
        );
        (Method::POST, "/orders?src=soak".to_string(), Some(body))
    };
    let msg = Message {
        method: method.as_str(),
        target: &target,
        scheme: "https",
        authority: Some(&shared.host),
        headers: &headers,
        status: None,
    };
    if body.is_none() {
        let (params, _) = sign::cavage(
            &msg,
            &key.signer,
            &CavageSpec {
                key_id: &key.id,
                algorithm: Some("hmac-sha256"),
                headers: ["(request-target)", "host", "date", "x-request-id"]
                    .map(String::from)
                    .to_vec(),
                created: None,
                expires: None,
                tyk: false,
            },
        )?;
        headers.insert(header::AUTHORIZATION, hv(&format!("Signature {params}"))?);
    } else {
        let (input, signature, _) = sign::rfc9421(
            &msg,
            &key.signer,
            &Rfc9421Spec {
                label: "sig1",
                components: [
                    "@method",
                    "@authority",
                    "@path",
                    "@query",
                    "content-digest",
                    "content-type",
                ]
                .map(String::from)
                .to_vec(),
                created: Some(date::unix(now)),
                nonce: Some(&rid),
                keyid: &key.id,
                alg: Some("hmac-sha256"),
                ..Rfc9421Spec::default()
            },
        )?;
        sign::append_rfc9421(&mut headers, &input, &signature)?;
    }
    let client = shared.client.load_full();
    let mut rb = client
        .request(method, format!("{}{target}", shared.base))
        .headers(headers);
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_string()
        } else if e.is_connect() {
            "connect".to_string()
        } else {
            "transport".to_string()
        }
    })?;
    let status = resp.status();
    let latest = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(|der| der == shared.latest_cert.load().as_slice());
    let text = resp.text().await.map_err(|_| "body".to_string())?;
    shared.with_minute(|m| match latest {
        Some(true) => m.latest_cert += 1,
        _ => m.earlier_cert += 1,
    });
    if status == 200 {
        Ok(())
    } else {
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        Err(format!("{} {code}", status.as_u16()))
    }
}

async fn worker(
    shared: Arc<Shared>,
    interval: Duration,
    offset: Duration,
    stop: CancellationToken,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let key = shared.key.load_full();
        let t0 = Instant::now();
        let r = one_request(&shared, &key, seq).await;
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        shared.with_minute(|m| match r {
            Ok(()) => {
                m.ok += 1;
                m.latencies_us.push(us);
            }
            Err(e) => *m.errors.entry(e).or_default() += 1,
        });
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// One rotation step's outcome, for the summary.
struct Rotations {
    log: Vec<String>,
    failures: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn rotate(
    shared: Arc<Shared>,
    ca: Arc<DevCa>,
    client_id: Arc<Issued>,
    dir: PathBuf,
    admin: String,
    sidecar: SocketAddr,
    every: Duration,
    stop: CancellationToken,
) -> Rotations {
    let mut r = Rotations {
        log: Vec::new(),
        failures: Vec::new(),
    };
    let limit = Duration::from_secs(20);
    let mut n = 1u64;
    loop {
        // The key, at every full period.
        let at = shared.started + every * n as u32;
        tokio::select! {
            _ = stop.cancelled() => return r,
            _ = tokio::time::sleep_until(at.into()) => {}
        }
        let old = shared.key.load_full();
        let new = match SigningKey::generate(format!("soak-{n}")) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                r.failures.push(format!("key {n}: {e}"));
                return r;
            }
        };
        let t = shared.started.elapsed().as_secs();
        if let Err(e) = write_keys(&dir, &[&old, &new]) {
            r.failures.push(format!("key {n}: {e}"));
        }
        let added = wait_metrics(&admin, limit, |m| {
            sample(m, "countersign_keys_loaded ") == Some(2.0)
        })
        .await;
        shared.key.store(new.clone());
        // Requests already signed with the old key are in flight: give them time.
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Err(e) = write_keys(&dir, &[&new]) {
            r.failures.push(format!("key {n}: {e}"));
        }
        let removed = wait_metrics(&admin, limit, |m| {
            sample(m, "countersign_keys_loaded ") == Some(1.0)
        })
        .await;
        // The old key must now be refused.
        let probe = one_request(&shared, &old, u64::MAX - n).await;
        let refused = matches!(&probe, Err(e) if e == "401 unknown_key");
        match (added, removed, refused) {
            (Some(a), Some(b), true) => r.log.push(format!(
                "t={t}s key {} -> {}: added in {} ms, old removed in {} ms, old key refused (401 unknown_key)",
                old.id,
                new.id,
                a.as_millis(),
                b.as_millis()
            )),
            _ => r.failures.push(format!(
                "t={t}s key {} -> {}: added {added:?}, removed {removed:?}, old key probe {probe:?}",
                old.id, new.id
            )),
        }

        // The server certificate, half a period later.
        let at = shared.started + every * n as u32 + every / 2;
        tokio::select! {
            _ = stop.cancelled() => return r,
            _ = tokio::time::sleep_until(at.into()) => {}
        }
        let t = shared.started.elapsed().as_secs();
        let not_after = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            + time::Duration::days(30)
            + time::Duration::minutes(n as i64);
        let cert = match server_cert(&ca, not_after) {
            Ok(c) => c,
            Err(e) => {
                r.failures.push(format!("cert {n}: {e}"));
                return r;
            }
        };
        if let Err(e) = write_tls(&dir, n, &cert) {
            r.failures.push(format!("cert {n}: {e}"));
        }
        shared.latest_cert.store(Arc::new(cert.der.to_vec()));
        let want = not_after.unix_timestamp() as f64;
        let loaded = wait_metrics(&admin, limit, |m| {
            sample(
                m,
                "countersign_certificate_expiry_timestamp_seconds{cert=\"server\"}",
            ) == Some(want)
        })
        .await;
        match loaded {
            Some(d) => r.log.push(format!(
                "t={t}s server certificate gen-{n} (not_after {not_after}) loaded in {} ms",
                d.as_millis()
            )),
            None => r
                .failures
                .push(format!("t={t}s server certificate gen-{n} not loaded")),
        }
        // Connections made from now on meet the new certificate.
        if let Ok(c) = http_client(&ca, &client_id, sidecar) {
            shared.client.store(Arc::new(c));
        }
        n += 1;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, Error> {
    countersign::tls::install_default_provider();
    let dir = std::path::absolute(&args.dir)?;
    for d in ["tls", "keys"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let ca = Arc::new(DevCa::new("countersign soak CA")?);
    let client_id = Arc::new(ca.client("soak-client")?);
    std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
    let first_cert = server_cert(
        &ca,
        time::OffsetDateTime::now_utc() + time::Duration::days(30),
    )?;
    write_tls(&dir, 0, &first_cert)?;
    let key0 = Arc::new(SigningKey::generate("soak-0".into())?);
    write_keys(&dir, &[&key0])?;
    let (listen, admin_port, upstream) = (free_port()?, free_port()?, free_port()?);
    std::fs::write(
        dir.join("countersign.yaml"),
        config_text(listen, admin_port, upstream),
    )?;
    let admin = format!("127.0.0.1:{admin_port}");
    let sidecar_addr = SocketAddr::from(([127, 0, 0, 1], listen));

    let stop_echo = CancellationToken::new();
    countersign::echo::spawn(
        SocketAddr::from(([127, 0, 0, 1], upstream)),
        stop_echo.clone(),
    )
    .await?;

    let log = dir.join("sidecar.log");
    let mut child = Sidecar::spawn(&args.sidecar, &dir.join("countersign.yaml"), &log)?;
    let pid = child.id();
    if !child.wait_ready(&admin, Duration::from_secs(30)).await {
        return Err(format!("the sidecar did not become ready; see {}", log.display()).into());
    }
    println!(
        "sidecar pid {pid} on {sidecar_addr} (admin {admin}), backend 127.0.0.1:{upstream}; {} rps over {} workers for {} min of warm-up and {} min measured; files in {}",
        args.rate,
        args.concurrency,
        args.warmup_minutes,
        args.minutes,
        dir.display()
    );

    let shared = Arc::new(Shared {
        key: ArcSwap::new(key0),
        client: ArcSwap::new(Arc::new(http_client(&ca, &client_id, sidecar_addr)?)),
        latest_cert: ArcSwap::new(Arc::new(first_cert.der.to_vec())),
        minutes: Mutex::new(Vec::new()),
        started: Instant::now(),
        seq: AtomicU64::new(0),
        host: format!("localhost:{listen}"),
        base: format!("https://localhost:{listen}"),
    });
    let rss_start = rss(pid);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let interval = Duration::from_secs_f64(f64::from(args.concurrency) / f64::from(args.rate));
    for i in 0..args.concurrency {
        let offset = interval * i / args.concurrency;
        tasks.push(tokio::spawn(worker(
            shared.clone(),
            interval,
            offset,
            stop.clone(),
        )));
    }
    // Fresh connections every few seconds.
    {
        let (shared, ca, id, stop) = (shared.clone(), ca.clone(), client_id.clone(), stop.clone());
        let every = Duration::from_secs(args.reconnect_every.max(1));
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Ok(c) = http_client(&ca, &id, sidecar_addr) {
                    shared.client.store(Arc::new(c));
                }
            }
        }));
    }
    let rotation = tokio::spawn(rotate(
        shared.clone(),
        ca.clone(),
        client_id.clone(),
        dir.clone(),
        admin.clone(),
        sidecar_addr,
        Duration::from_secs(args.rotate_every.max(10)),
        stop.clone(),
    ));

    // Per-minute report, RSS read at each minute's end.
    println!(
        "{:>6} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}  errors",
        "minute",
        "requests",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS MB",
        "anon MB",
        "new-cert %"
    );
    let mut rows = Vec::new();
    let warmup = args.warmup_minutes as usize;
    for m in 0..warmup + args.minutes as usize {
        let end = shared.started + Duration::from_secs(60 * (m as u64 + 1));
        tokio::time::sleep_until(end.into()).await;
        let rss = rss(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut all = shared.minutes.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() <= m {
            all.resize_with(m + 1, Minute::default);
        }
        let row = &mut all[m];
        row.rss = rss;
        row.latencies_us.sort_unstable();
        let errors: u64 = row.errors.values().sum();
        let seen = row.latest_cert + row.earlier_cert;
        let line = format!(
            "{:>6} {:>8} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>10.1}  {:?}",
            if m < warmup {
                format!("w{}", m + 1)
            } else {
                (m + 1 - warmup).to_string()
            },
            row.ok + errors,
            errors,
            percentile(&row.latencies_us, 0.50),
            percentile(&row.latencies_us, 0.99),
            percentile(&row.latencies_us, 1.0),
            rss.map_or(0, |r| r.total_kb) as f64 / 1024.0,
            rss.map_or(0, |r| r.anon_kb) as f64 / 1024.0,
            if seen == 0 {
                0.0
            } else {
                100.0 * row.latest_cert as f64 / seen as f64
            },
            row.errors
        );
        println!("{line}");
        rows.push((
            row.ok + errors,
            errors,
            percentile(&row.latencies_us, 0.50),
            percentile(&row.latencies_us, 0.99),
            rss,
        ));
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let rotations = rotation.await?;
    let final_metrics = metrics(&admin).await;

    // Stop the sidecar as an orchestrator would, and the backend.
    let clean_exit = child
        .stop(Duration::from_secs(20))
        .await
        .is_some_and(|s| s.success());
    stop_echo.cancel();

    // Summary.
    let total_requests: u64 = rows.iter().map(|r| r.0).sum();
    let errors: u64 = rows.iter().map(|r| r.1).sum();
    // Growth and drift over the measured minutes: from the end of the warm-up to the end.
    let rss_first = match warmup {
        0 => rss_start,
        w => rows.get(w - 1).and_then(|r| r.4),
    };
    let rss_end = rows.last().and_then(|r| r.4);
    let growth = growth_pct(rss_first.map(|r| r.total_kb), rss_end.map(|r| r.total_kb));
    let anon_growth = growth_pct(rss_first.map(|r| r.anon_kb), rss_end.map(|r| r.anon_kb));
    let p99_first = rows.get(warmup).map_or(0.0, |r| r.3);
    let p99_last = rows.last().map_or(0.0, |r| r.3);
    let allowed = sum(
        &final_metrics,
        "countersign_requests_total{",
        "outcome=\"allowed\"",
    );
    println!();
    println!("rotations:");
    for l in &rotations.log {
        println!("  {l}");
    }
    for f in &rotations.failures {
        println!("  FAILED {f}");
    }
    println!("the sidecar's counters at the end:");
    for l in final_metrics.lines().filter(|l| {
        l.starts_with("countersign_reloads_total") || l.starts_with("countersign_requests_total")
    }) {
        println!("  {l}");
    }
    let mb = |k: Option<u64>| k.map_or(0.0, |k| k as f64 / 1024.0);
    let total = |r: Option<Rss>| mb(r.map(|r| r.total_kb));
    let anon = |r: Option<Rss>| mb(r.map(|r| r.anon_kb));
    println!(
        "summary: {total_requests} requests, {errors} errors; sidecar counted {allowed} allowed; RSS {:.1} MB at load start, {:.1} MB after the warm-up, {:.1} MB at the end ({growth:+.1} % over the {} measured minutes); anonymous RSS {:.1} / {:.1} / {:.1} MB ({anon_growth:+.1} %); p99 {p99_first:.2} ms in the first measured minute, {p99_last:.2} ms in the last; {} key and {} certificate rotations ok, {} failed; sidecar exit on SIGTERM {}",
        total(rss_start),
        total(rss_first),
        total(rss_end),
        args.minutes,
        anon(rss_start),
        anon(rss_first),
        anon(rss_end),
        rotations.log.iter().filter(|l| l.contains(" key ")).count(),
        rotations
            .log
            .iter()
            .filter(|l| l.contains("certificate"))
            .count(),
        rotations.failures.len(),
        if clean_exit { "clean (0)" } else { "NOT clean" },
    );
    let pass = errors == 0 && rotations.failures.is_empty() && growth < 10.0 && clean_exit;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
