//! The key registry fetched over HTTPS (`keys: https://...`): a real TLS server on 127.0.0.1 (its
//! certificate from an rcgen CA the sidecar trusts through `keys_ca_file`) serves the registry
//! with an ETag, then fails in every way (500, an oversized body, a broken document, connection
//! refused), then changes it. The sidecar keeps the last good registry through the failures,
//! counts them, sends `If-None-Match` and rebuilds nothing on a 304, and follows the change within
//! 2 s. A registry that cannot be fetched at start stops the sidecar from starting (exit 2).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use countersign::config::Config;
use countersign::registry::Algorithm;
use countersign::server::StartError;
use countersign::signature::sign::{self, CavageSpec, Signer};
use countersign::signature::{Message, date};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;

use crate::support::*;

const SECRET_A: &[u8] = b"key-a-secret-key-a-secret-key-a-secret!!";
const SECRET_B: &[u8] = b"key-b-secret-key-b-secret-key-b-secret!!";

fn registry(keys: &[(&str, &[u8])]) -> String {
    let mut out = String::from("keys:\n");
    for (id, secret) in keys {
        out.push_str(&format!(
            "  - id: {id}\n    algorithm: hmac-sha256\n    secret_base64: {}\n",
            base64::engine::general_purpose::STANDARD.encode(secret)
        ));
    }
    out
}

/// What the registry server answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this body and ETag (304 when `If-None-Match` matches the ETag).
    Serve {
        body: String,
        etag: &'static str,
        content_type: &'static str,
    },
    /// This status, no body.
    Fail(StatusCode),
}

#[derive(Default)]
struct Seen {
    requests: u64,
    not_modified: u64,
    failed: u64,
    if_none_match: Vec<Option<String>>,
}

/// An HTTPS registry server that can be reconfigured, stopped and started again on its port.
struct RegistryServer {
    addr: SocketAddr,
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Seen>>,
    task: Option<JoinHandle<()>>,
}

impl RegistryServer {
    async fn start(answer: Answer) -> RegistryServer {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test registry CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let mut s = RegistryServer {
            addr: dead_addr().await,
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            answer: Arc::new(Mutex::new(answer)),
            seen: Arc::new(Mutex::new(Seen::default())),
            task: None,
        };
        s.listen().await;
        s
    }

    fn url(&self) -> String {
        format!("https://{}/registry", self.addr)
    }

    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Stops listening: connections are refused.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens (again) on its address.
    async fn listen(&mut self) {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), self.key.clone_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let (answer, seen) = (self.answer.clone(), self.seen.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, answer, seen) = (acceptor.clone(), answer.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let inm = req
                            .headers()
                            .get(http::header::IF_NONE_MATCH)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let answer = answer.lock().unwrap().clone();
                        let mut seen = seen.lock().unwrap();
                        seen.requests += 1;
                        seen.if_none_match.push(inm.clone());
                        let resp = match answer {
                            Answer::Serve { etag, .. } if inm.as_deref() == Some(etag) => {
                                seen.not_modified += 1;
                                Response::builder()
                                    .status(StatusCode::NOT_MODIFIED)
                                    .header("etag", etag)
                                    .body(Full::new(Bytes::new()))
                            }
                            Answer::Serve {
                                body,
                                etag,
                                content_type,
                            } => Response::builder()
                                .header("etag", etag)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body))),
                            Answer::Fail(status) => {
                                seen.failed += 1;
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                            }
                        };
                        async move { Ok::<_, std::convert::Infallible>(resp.unwrap()) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }));
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Headers of `GET /orders` signed with `key_id` and `secret` (a new request id each time).
fn signed(key_id: &str, secret: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "date",
        HeaderValue::from_str(&date::format_imf(SystemTime::now())).unwrap(),
    );
    h.insert(
        "x-request-id",
        HeaderValue::from_str(&format!("r{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))).unwrap(),
    );
    let msg = Message {
        method: "GET",
        target: "/orders",
        scheme: "http",
        authority: None,
        headers: &h,
        status: None,
    };
    let signer = Signer::hmac(Algorithm::HmacSha256, secret).unwrap();
    let (params, _) = sign::cavage(
        &msg,
        &signer,
        &CavageSpec {
            key_id,
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

async fn send(sc: &Sidecar, headers: HeaderMap) -> (u16, String) {
    let r = plain_client()
        .get(sc.plain_url("/orders"))
        .headers(headers)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

fn config(server: &RegistryServer, extra: &str) -> String {
    format!(
        "upstream: http://{{UP}}\nkeys: {}\nkeys_ca_file: registry-ca.pem\nkeys_refresh: 200ms\n{extra}signature:\n  required: [\"(request-target)\", date, x-request-id]\nroutes:\n  - path: /\n    require: [signature]\n",
        server.url()
    )
}

fn generation(sc: &Sidecar) -> u64 {
    sc.running.as_ref().unwrap().state.load().generation
}

async fn fetch_errors(sc: &Sidecar) -> f64 {
    sample(
        &sc.metrics().await,
        "countersign_keys_fetches_total{result=\"error\"}",
    )
}

/// Waits until the server has seen `n` more requests than `from`.
async fn polls(server: &RegistryServer, from: u64, n: u64) {
    eventually(5, || async { server.seen(|s| s.requests) >= from + n }).await;
}

#[tokio::test]
async fn remote_registry_survives_failures_and_follows_changes() {
    let mut server = RegistryServer::start(Answer::Serve {
        body: registry(&[("key-a", SECRET_A)]),
        etag: "\"v1\"",
        content_type: "application/yaml",
    })
    .await;
    let pki = Pki::new();
    pki.write("registry-ca.pem", &server.ca_pem);
    let be = echo().await;
    let sc = Sidecar::start(&pki, be.addr, &config(&server, "")).await;

    // Started with the fetched registry: A passes, B is unknown.
    assert_eq!(send(&sc, signed("key-a", SECRET_A)).await.0, 200);
    assert_eq!(
        send(&sc, signed("key-b", SECRET_B)).await,
        (401, "unknown_key".into())
    );
    assert_eq!(
        send(&sc, signed("key-a", SECRET_B)).await,
        (401, "signature_invalid".into())
    );

    // Polls carry If-None-Match, get 304, and rebuild nothing.
    let gen_before = generation(&sc);
    let nm = server.seen(|s| s.not_modified);
    eventually(5, || async { server.seen(|s| s.not_modified) >= nm + 3 }).await;
    assert_eq!(generation(&sc), gen_before, "a 304 rebuilt the snapshot");
    server.seen(|s| {
        assert_eq!(s.if_none_match[0], None, "the first fetch is unconditional");
        assert!(
            s.if_none_match[1..]
                .iter()
                .all(|v| v.as_deref() == Some("\"v1\"")),
            "{:?}",
            s.if_none_match
        );
    });

    // Failures of every kind: the last good registry stays, each failure is counted.
    let errors = fetch_errors(&sc).await;
    let failures = [
        Answer::Fail(StatusCode::INTERNAL_SERVER_ERROR),
        Answer::Serve {
            body: format!("{}# {}\n", registry(&[]), "x".repeat(2 << 20)),
            etag: "\"huge\"",
            content_type: "application/yaml",
        },
        Answer::Serve {
            body: "keys: [ {id: broken".to_string(),
            etag: "\"broken\"",
            content_type: "application/yaml",
        },
        Answer::Serve {
            body: "keys:\n  - id: key-c\n    algorithm: ed25519\n    public_key: /etc/countersign/c.pem\n"
                .to_string(),
            etag: "\"file\"",
            content_type: "application/yaml",
        },
    ];
    let n = failures.len() as f64;
    for a in failures {
        let at = server.seen(|s| s.requests);
        server.set(a);
        polls(&server, at, 2).await;
        assert_eq!(send(&sc, signed("key-a", SECRET_A)).await.0, 200);
    }
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(send(&sc, signed("key-a", SECRET_A)).await.0, 200);
    assert_eq!(
        send(&sc, signed("key-c", SECRET_A)).await,
        (401, "unknown_key".into())
    );
    assert!(fetch_errors(&sc).await >= errors + n + 1.0);
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_reloads_total{what=\"keys\",result=\"error\"}"
        ) >= n + 1.0
    );
    assert_eq!(
        generation(&sc),
        gen_before,
        "a failed fetch rebuilt the snapshot"
    );

    // The registry changes (B added, A removed) and the server comes back: within 2 s.
    server.set(Answer::Serve {
        body: format!(
            "{{\"keys\": [{{\"id\": \"key-b\", \"algorithm\": \"hmac-sha256\", \"secret_base64\": \"{}\"}}]}}",
            base64::engine::general_purpose::STANDARD.encode(SECRET_B)
        ),
        etag: "\"v2\"",
        content_type: "application/json",
    });
    server.listen().await;
    eventually(2, || async {
        send(&sc, signed("key-b", SECRET_B)).await.0 == 200
    })
    .await;
    assert_eq!(
        send(&sc, signed("key-a", SECRET_A)).await,
        (401, "unknown_key".into())
    );
    assert_ne!(generation(&sc), gen_before);
    let last = server.seen(|s| s.if_none_match.last().cloned().flatten());
    assert!(
        matches!(last.as_deref(), Some("\"v1\"") | Some("\"v2\"")),
        "{last:?}"
    );
    let m = sc.metrics().await;
    assert!(
        sample(
            &m,
            "countersign_reloads_total{what=\"keys\",result=\"success\"}"
        ) >= 1.0
    );
    assert!(sample(&m, "countersign_keys_last_fetch_success_timestamp_seconds") > 0.0);
    sc.stop().await;
}

#[tokio::test]
async fn a_remote_registry_that_cannot_be_fetched_at_start_stops_the_start() {
    let server = RegistryServer::start(Answer::Fail(StatusCode::SERVICE_UNAVAILABLE)).await;
    let pki = Pki::new();
    pki.write("registry-ca.pem", &server.ca_pem);
    let be = echo().await;
    let path = pki.path().join("countersign.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{}",
        config(&server, "").replace("{UP}", &be.addr.to_string())
    );
    std::fs::write(&path, &text).unwrap();
    let start = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        countersign::server::start(c)
    };
    let e = match start(&text).await {
        Err(StartError::Config(e)) => e.to_string(),
        Err(e) => panic!("not a config error: {e}"),
        Ok(_) => panic!("started without its key registry"),
    };
    assert!(e.contains("countersign.yaml: keys: "), "{e}");
    assert!(e.contains(&server.url()), "{e}");
    assert!(e.contains("503"), "{e}");

    // Another CA: the TLS handshake fails.
    pki.write("other-ca.pem", &pki.ca.cert_pem());
    server.set(Answer::Serve {
        body: registry(&[("key-a", SECRET_A)]),
        etag: "\"v1\"",
        content_type: "application/yaml",
    });
    let e = match start(&text.replace("registry-ca.pem", "other-ca.pem")).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("trusted a registry server from another CA"),
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // A registry naming files on the sidecar's machine is refused.
    server.set(Answer::Serve {
        body: "keys:\n  - id: k\n    algorithm: hmac-sha256\n    secret_file: /etc/hostname\n"
            .to_string(),
        etag: "\"f\"",
        content_type: "application/yaml",
    });
    let e = match start(&text).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted a remote registry naming a local file"),
    };
    assert!(e.contains("must carry its key material inline"), "{e}");

    // Served properly, it starts.
    server.set(Answer::Serve {
        body: registry(&[("key-a", SECRET_A)]),
        etag: "\"v1\"",
        content_type: "application/yaml",
    });
    let running = start(&text).await.unwrap();
    assert_eq!(
        running.state.load().registry.as_ref().map(|r| r.len()),
        Some(1)
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fetches_the_remote_registry_once() {
    let server = RegistryServer::start(Answer::Serve {
        body: registry(&[("key-a", SECRET_A), ("key-b", SECRET_B)]),
        etag: "\"v1\"",
        content_type: "application/yaml",
    })
    .await;
    let pki = Pki::new();
    pki.write("registry-ca.pem", &server.ca_pem);
    let path = pki.path().join("check.yaml");
    std::fs::write(&path, config(&server, "").replace("{UP}", "127.0.0.1:8080")).unwrap();
    let run = |path: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            let o = Command::new(BIN)
                .args(["check", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
    };
    let (code, out, err) = run(path.clone()).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("keys: {} (2 keys)", server.url())),
        "{out}"
    );
    assert!(out.contains("key-a") && out.contains("key-b"), "{out}");
    assert_eq!(server.seen(|s| s.requests), 1);

    server.set(Answer::Fail(StatusCode::NOT_FOUND));
    let (code, out, err) = run(path).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "check.yaml: keys: {}: HTTP status 404",
            server.url()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn sighup_fetches_at_once_and_a_changed_url_is_followed() {
    let one = RegistryServer::start(Answer::Serve {
        body: registry(&[("key-a", SECRET_A)]),
        etag: "\"v1\"",
        content_type: "application/yaml",
    })
    .await;
    let pki = Pki::new();
    pki.write("registry-ca.pem", &one.ca_pem);
    let be = echo().await;
    let yaml = config(&one, "").replace("keys_refresh: 200ms", "keys_refresh: 1h");
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let running = sc.running.as_ref().unwrap();
    assert_eq!(send(&sc, signed("key-a", SECRET_A)).await.0, 200);

    // No poll for an hour: the reload (SIGHUP) asks the registry itself.
    one.set(Answer::Serve {
        body: registry(&[("key-b", SECRET_B)]),
        etag: "\"v2\"",
        content_type: "application/yaml",
    });
    running.reload().await.unwrap();
    assert_eq!(send(&sc, signed("key-b", SECRET_B)).await.0, 200);
    assert_eq!(
        send(&sc, signed("key-a", SECRET_A)).await,
        (401, "unknown_key".into())
    );

    // keys: pointed at a server that fails: the reload fails and the last good state stays.
    let broken = RegistryServer::start(Answer::Fail(StatusCode::BAD_GATEWAY)).await;
    pki.write("registry-ca.pem", &broken.ca_pem);
    let text = std::fs::read_to_string(&sc.config_path).unwrap();
    std::fs::write(&sc.config_path, text.replace(&one.url(), &broken.url())).unwrap();
    let e = running.reload().await.unwrap_err().to_string();
    assert!(e.contains(&broken.url()) && e.contains("502"), "{e}");
    assert_eq!(send(&sc, signed("key-b", SECRET_B)).await.0, 200);

    // ... and once it serves, the next reload switches to it.
    broken.set(Answer::Serve {
        body: registry(&[("key-a", SECRET_A)]),
        etag: "\"w1\"",
        content_type: "application/yaml",
    });
    running.reload().await.unwrap();
    assert_eq!(send(&sc, signed("key-a", SECRET_A)).await.0, 200);
    assert_eq!(
        send(&sc, signed("key-b", SECRET_B)).await,
        (401, "unknown_key".into())
    );
    sc.stop().await;
}
