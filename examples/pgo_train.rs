//! The training load of a profile-guided build (`bench/pgo.sh`): the requests a sidecar in front
//! of a backend sees, sent to an instrumented build so the compiler learns which paths are hot.
//!
//! Makes a dev PKI, a key registry (HMAC, RSA-2048, Ed25519, ECDSA P-256), a JWKS file and a config
//! in `--dir`, starts the sidecar binary given by `--sidecar` in front of an in-process echo backend,
//! and sends `--requests` requests over `--concurrency` workers, in this mix (out of 20):
//!
//! - 6 GETs and 1 16 KiB POST on an mTLS + IP route (HTTP/1.1, keep-alive);
//! - 4 GETs signed as Tyk signs them with HMAC-SHA256 and 2 with RSA-SHA256 (draft-cavage);
//! - 1 GET signed per RFC 9421 with Ed25519, 1 POST with ECDSA P-256 over its `Content-Digest`;
//! - 1 GET with a bearer JWT (ES256, checked against the JWKS file);
//! - 2 over HTTP/2 (one plain, one HMAC-signed);
//! - 2 on new TLS connections without session resumption (full handshakes); in every fourth
//!   round of 20 these two are Tyk HMAC signatures over another query instead, refused with 401.
//!
//! Every answer is checked (200, or 401 for the tampered ones): a profile taken from failing
//! requests would teach the compiler the wrong paths. Then the sidecar is stopped with SIGTERM and
//! must exit 0, which is when an instrumented build writes its profile. Exit 1 when any answer was
//! not the expected one or the sidecar did not exit cleanly; 2 when the setup failed.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use countersign::pki::{DevCa, Issued};
use countersign::registry::Algorithm;
use countersign::signature::digest::{DigestAlg, content_digest_value};
use countersign::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use countersign::signature::{Message, date};
use countersign::tools::keygen;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use support::{Error, Sidecar, client_tls, free_port};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// The countersign binary to train (built with `-Cprofile-generate`).
    #[arg(long)]
    sidecar: std::path::PathBuf,
    /// Where to write the PKI, keys, config and the sidecar's log (created; should be empty).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Requests in all.
    #[arg(long, default_value_t = 40_000)]
    requests: u64,
    /// Concurrent workers (each waits for its answer before sending the next request).
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
}

const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "orders-api";
/// What a request is (the kinds of the module comment's mix).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Upload,
    TykHmac,
    TykRsa,
    Ed25519,
    Ecdsa,
    Jwt,
    H2Plain,
    H2Hmac,
    Handshake,
    Tampered,
}

impl Kind {
    /// The mix of the module comment: request `seq`'s kind.
    fn of(seq: u64) -> Kind {
        match seq % 20 {
            0..=5 => Kind::Plain,
            6 => Kind::Upload,
            7..=10 => Kind::TykHmac,
            11 | 12 => Kind::TykRsa,
            13 => Kind::Ed25519,
            14 => Kind::Ecdsa,
            15 => Kind::Jwt,
            16 => Kind::H2Plain,
            17 => Kind::H2Hmac,
            _ if (seq / 20).is_multiple_of(4) => Kind::Tampered,
            _ => Kind::Handshake,
        }
    }
}

/// Signing keys and clients, shared by the workers.
struct Load {
    hmac: Signer,
    rsa: Signer,
    ed25519: Signer,
    ecdsa: Signer,
    token: String,
    h1: reqwest::Client,
    h2: reqwest::Client,
    fresh: reqwest::Client,
    host: String,
    base: String,
    seq: AtomicU64,
    total: u64,
    upload: Vec<u8>,
}

/// Which client sends a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// HTTP/1.1, kept-alive connections.
    H1,
    /// HTTP/2 (ALPN `h2`).
    H2,
    /// A new connection each time.
    Fresh,
}

/// What one request is, and the status it must get.
struct Plan {
    client: Via,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    expect: StatusCode,
}

fn hv(s: &str) -> Result<HeaderValue, Error> {
    Ok(HeaderValue::from_str(s)?)
}

impl Plan {
    /// The request as the signers see it, sent to `host` over HTTPS.
    fn message<'a>(&'a self, host: &'a str) -> Message<'a> {
        Message {
            method: self.method.as_str(),
            target: &self.target,
            scheme: "https",
            authority: Some(host),
            headers: &self.headers,
            status: None,
        }
    }
}

impl Load {
    fn plan(&self, seq: u64) -> Result<Plan, Error> {
        let kind = Kind::of(seq);
        let now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, hv(&self.host)?);
        headers.insert("x-request-id", hv(&format!("train-{seq}"))?);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let mut plan = Plan {
            client: Via::H1,
            method: Method::GET,
            target: format!("/orders/{}?page={}", seq % 997, seq % 7),
            headers,
            body: None,
            expect: StatusCode::OK,
        };
        match kind {
            Kind::Plain | Kind::H2Plain | Kind::Handshake => {
                plan.target = format!("/plain/items/{}", seq % 997);
            }
            Kind::Upload => {
                plan.method = Method::POST;
                plan.target = "/plain/upload".into();
                plan.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                plan.body = Some(self.upload.clone());
            }
            Kind::TykHmac | Kind::H2Hmac | Kind::TykRsa => self.tyk(&mut plan, kind, now)?,
            Kind::Ed25519 => self.rfc9421(&mut plan, &self.ed25519, "edge-ed25519", now)?,
            Kind::Ecdsa => {
                let body = format!("{{\"order\":{seq},\"items\":[1,2,3]}}").into_bytes();
                plan.method = Method::POST;
                plan.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                plan.headers.insert(
                    "content-digest",
                    hv(&content_digest_value(DigestAlg::Sha256, &body))?,
                );
                plan.body = Some(body);
                self.rfc9421(&mut plan, &self.ecdsa, "edge-p256", now)?;
            }
            Kind::Jwt => {
                plan.target = format!("/jwt/orders/{}", seq % 997);
                plan.headers.insert(
                    header::AUTHORIZATION,
                    hv(&format!("Bearer {}", self.token))?,
                );
            }
            Kind::Tampered => {
                self.tyk(&mut plan, kind, now)?;
                plan.target.push_str("&tampered=1");
                plan.expect = StatusCode::UNAUTHORIZED;
            }
        }
        plan.client = match kind {
            Kind::H2Plain | Kind::H2Hmac => Via::H2,
            Kind::Handshake => Via::Fresh,
            _ => Via::H1,
        };
        Ok(plan)
    }

    /// Signs `plan` as Tyk's request signing does (the `Date` it adds, URL-escaped HMAC values).
    fn tyk(&self, plan: &mut Plan, kind: Kind, now: SystemTime) -> Result<(), Error> {
        let (signer, key_id, alg) = if kind == Kind::TykRsa {
            (&self.rsa, "tyk-rsa", "rsa-sha256")
        } else {
            (&self.hmac, "tyk-hmac", "hmac-sha256")
        };
        plan.headers
            .insert(header::DATE, hv(&date::format_tyk(now))?);
        let msg = plan.message(&self.host);
        let (params, _) = sign::cavage(
            &msg,
            signer,
            &CavageSpec {
                key_id,
                algorithm: Some(alg),
                headers: ["(request-target)", "x-request-id", "accept", "date"]
                    .map(String::from)
                    .to_vec(),
                created: None,
                expires: None,
                tyk: true,
            },
        )?;
        plan.headers
            .insert(header::AUTHORIZATION, hv(&format!("Signature {params}"))?);
        Ok(())
    }

    /// Signs `plan` per RFC 9421: method, authority, path and query, and with a body its
    /// `Content-Digest` and `Content-Type`.
    fn rfc9421(
        &self,
        plan: &mut Plan,
        signer: &Signer,
        keyid: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let mut components: Vec<String> = ["@method", "@authority", "@path", "@query"]
            .map(String::from)
            .to_vec();
        if plan.body.is_some() {
            components.extend(["content-digest", "content-type"].map(String::from));
        }
        let msg = plan.message(&self.host);
        let (input, signature, _) = sign::rfc9421(
            &msg,
            signer,
            &Rfc9421Spec {
                label: "sig1",
                components,
                created: Some(date::unix(now)),
                keyid,
                ..Rfc9421Spec::default()
            },
        )?;
        sign::append_rfc9421(&mut plan.headers, &input, &signature)?;
        Ok(())
    }

    /// Sends one request; `Err` names what was wrong with the answer.
    async fn send(&self, seq: u64) -> Result<(), String> {
        let plan = self.plan(seq).map_err(|e| format!("signing: {e}"))?;
        let client = match plan.client {
            Via::H2 => &self.h2,
            Via::Fresh => &self.fresh,
            Via::H1 => &self.h1,
        };
        let mut rb = client
            .request(plan.method, format!("{}{}", self.base, plan.target))
            .headers(plan.headers);
        if let Some(b) = plan.body {
            rb = rb.body(b);
        }
        let resp = rb.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let version = resp.version();
        let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
        if plan.client == Via::H2 && version != http::Version::HTTP_2 {
            return Err(format!("{version:?} where HTTP/2 was asked for"));
        }
        if status == plan.expect {
            Ok(())
        } else {
            Err(format!(
                "{status} ({:?}) where {} was expected: {text}",
                Kind::of(seq),
                plan.expect
            ))
        }
    }
}

async fn worker(load: Arc<Load>, stop: CancellationToken) -> Vec<String> {
    let mut errors = Vec::new();
    while !stop.is_cancelled() {
        let seq = load.seq.fetch_add(1, Ordering::Relaxed);
        if seq >= load.total {
            break;
        }
        if let Err(e) = load.send(seq).await {
            errors.push(e);
            if errors.len() >= 10 {
                stop.cancel();
            }
        }
    }
    errors
}

fn client(
    ca: &DevCa,
    id: &Issued,
    sidecar: SocketAddr,
    alpn: &[u8],
    pool: bool,
) -> Result<reqwest::Client, Error> {
    let mut tls = client_tls(ca, id, alpn)?;
    if !pool {
        // A full handshake every time, as a client without session resumption makes.
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("localhost", sidecar)
        .timeout(Duration::from_secs(10));
    if !pool {
        b = b.pool_max_idle_per_host(0);
    }
    Ok(b.build()?)
}

/// Writes the key registry: one key of each algorithm the load signs with.
fn write_keys(dir: &Path) -> Result<(Signer, Signer, Signer, Signer), Error> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let mut registry = String::from("keys:\n");
    let mut signers = Vec::new();
    for (alg, id) in [
        ("hmac-sha256", "tyk-hmac"),
        ("rsa-sha256", "tyk-rsa"),
        ("ed25519", "edge-ed25519"),
        ("ecdsa-p256-sha256", "edge-p256"),
    ] {
        let generated = keygen::generate(alg, Some(id), 2048, true)?;
        for (name, content, _) in &generated.files {
            std::fs::write(keys.join(name), content)?;
        }
        registry.push_str(&generated.entry);
        let algorithm = Algorithm::from_name(alg).ok_or("unknown algorithm")?;
        let signer = if alg.starts_with("hmac") {
            Signer::hmac(
                algorithm,
                &std::fs::read(keys.join(format!("{id}.secret")))?,
            )?
        } else {
            Signer::from_pem(
                algorithm,
                &std::fs::read(keys.join(format!("{id}.key.pem")))?,
            )?
        };
        signers.push(signer);
    }
    std::fs::write(keys.join("keys.yaml"), registry)?;
    let mut s = signers.into_iter();
    let mut next = || s.next().ok_or("a signer is missing");
    Ok((next()?, next()?, next()?, next()?))
}

/// Writes a JWKS file with one ES256 key; returns a token signed with it, valid for an hour.
fn write_jwks(dir: &Path) -> Result<String, Error> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "EC key generation failed")?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "EC key")?;
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "kid": "idp-1", "crv": "P-256", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..]),
    }]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string())?;
    let now = date::unix(SystemTime::now());
    let header = serde_json::json!({"alg": "ES256", "kid": "idp-1", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "svc-orders", "client_id": "tyk-gateway",
        "scope": "orders:read orders:write", "iat": now, "nbf": now, "exp": now + 3600,
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = pair
        .sign(&rng, input.as_bytes())
        .map_err(|_| "ES256 signing failed")?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

fn config_text(listen: u16, admin: u16, upstream: u16) -> String {
    format!(
        r#"# Written by examples/pgo_train.rs (bench/pgo.sh).
listen: 127.0.0.1:{listen}
upstream: http://127.0.0.1:{upstream}
admin: 127.0.0.1:{admin}
mode: enforce
log:
  access: denied
tls:
  cert: server.crt
  key: server.key
  client_ca: ca.crt
ip_allow: [127.0.0.0/8]
keys: keys/keys.yaml
signature:
  schemes: [cavage, rfc9421]
  required: ["(request-target)", date]
  clock_skew: 5m
  digest: optional
jwt:
  jwks_file: jwks.json
  issuer: {ISSUER}
  audience: {AUDIENCE}
routes:
  - path: /plain
    require: [mtls, ip]
  - path: /jwt
    require: [mtls, jwt]
    scopes: [orders:read]
  - path: /
    require: [mtls, ip, signature]
"#
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("pgo_train: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, Error> {
    countersign::tls::install_default_provider();
    let dir = std::path::absolute(&args.dir)?;
    std::fs::create_dir_all(&dir)?;
    let ca = DevCa::new("countersign training CA")?;
    let server = ca.server("localhost", &[])?;
    let client_id = ca.client("tyk-gateway")?;
    std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
    std::fs::write(dir.join("server.crt"), &server.cert_pem)?;
    std::fs::write(dir.join("server.key"), &server.key_pem)?;
    let (hmac, rsa, ed25519, ecdsa) = write_keys(&dir)?;
    let token = write_jwks(&dir)?;
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
    if !child.wait_ready(&admin, Duration::from_secs(30)).await {
        return Err(format!("the sidecar did not become ready; see {}", log.display()).into());
    }

    let load = Arc::new(Load {
        hmac,
        rsa,
        ed25519,
        ecdsa,
        token,
        h1: client(&ca, &client_id, sidecar_addr, b"http/1.1", true)?,
        h2: client(&ca, &client_id, sidecar_addr, b"h2", true)?,
        fresh: client(&ca, &client_id, sidecar_addr, b"http/1.1", false)?,
        host: format!("localhost:{listen}"),
        base: format!("https://localhost:{listen}"),
        seq: AtomicU64::new(0),
        total: args.requests,
        upload: (0..16 * 1024).map(|i| (i % 251) as u8).collect(),
    });
    let stop = CancellationToken::new();
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| tokio::spawn(worker(load.clone(), stop.clone())))
        .collect();
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await?);
    }
    let elapsed = started.elapsed();
    let sent = load.seq.load(Ordering::Relaxed).min(args.requests);

    let exit = child.stop(Duration::from_secs(30)).await;
    stop_echo.cancel();

    println!(
        "pgo_train: {sent} requests in {:.1} s ({:.0}/s), {} unexpected answers; sidecar exit: {}",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64().max(0.001),
        errors.len(),
        exit.map_or("none (killed)".to_string(), |s| s.to_string())
    );
    for e in errors.iter().take(10) {
        println!("  {e}");
    }
    Ok(errors.is_empty() && exit.is_some_and(|s| s.success()))
}
