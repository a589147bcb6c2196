//! `countersign webhook`: the Kubernetes mutating admission webhook that injects the sidecar.
//!
//! An HTTPS server (rustls, ring) with `POST /mutate` taking an `AdmissionReview`
//! (admission.k8s.io/v1) and `GET /healthz`. The decision and the patch come from the pure
//! [`patch::build_patch`]; this module owns the listener, the TLS certificate (re-read when its
//! files change, as cert-manager rotates it) and the review envelope.

pub mod config;
pub mod patch;
pub mod probes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use http::StatusCode;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::WebhookConfig;
use self::patch::{InjectSettings, Outcome, build_patch};
use crate::keep_alive::{self, Activity, Counted};
use crate::listen::Listener;
use crate::serve::drive;

/// The largest AdmissionReview accepted (the API server caps requests near 3 MiB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading a request's headers and body may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// `countersign webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// The webhook configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// json or text; json by default when stdout is not a terminal.
    #[arg(long = "log-format", value_enum)]
    pub log_format: Option<crate::logging::LogFormat>,
}

/// Why the webhook could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The serving certificate or key cannot be used.
    #[error("{path}: {message}")]
    Certificate {
        /// The file at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The TLS server configuration could not be built.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the listener failed.
    #[error("listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the webhook until SIGTERM or SIGINT; 0 after a clean stop, 2 on an invalid config or
/// an unusable certificate or key, 1 when it cannot start otherwise.
pub async fn run(args: WebhookArgs) -> ExitCode {
    let config = match WebhookConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(args.log_format, "info");
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            eprintln!(
                "{}",
                WebhookError::Bind {
                    addr: config.listen,
                    source
                }
            );
            return ExitCode::from(1);
        }
    };
    match serve(config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            match e {
                WebhookError::Certificate { .. } => ExitCode::from(2),
                WebhookError::Tls(_) | WebhookError::Bind { .. } => ExitCode::from(1),
            }
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serves the webhook on `listener` until `shutdown` completes, then drains in-flight reviews
/// for at most the config's `shutdown_timeout`.
pub async fn serve(
    config: WebhookConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = Arc::new(CertStore::load(
        config.cert.clone(),
        config.key.clone(),
        provider.clone(),
    )?);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));

    let reloader = tokio::spawn(certs.clone().watch(config.reload_interval));
    let app = router(Arc::new(config.inject));
    let close = CancellationToken::new();
    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let idle_limit = config.idle_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_limit);
    let builder = Arc::new(builder);
    tracing::info!(listen = %config.listen, "webhook listening");

    let mut incoming = Listener::new(listener, "webhook", None);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            c = incoming.next() => c,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let close = close.clone();
        let builder = builder.clone();
        connections.spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            // Reviews are counted in and out, so a connection with none open for `idle_timeout`
            // closes (hyper's header timer does this for HTTP/1.1 only; an HTTP/2 connection,
            // or one that never sent the HTTP/2 preface, would hold its slot for ever).
            let activity = Arc::new(Activity::default());
            let counted = activity.clone();
            let svc = service_fn(move |req| Counted::new(&counted, service.call(req)));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let idle = || keep_alive::idle(&activity, idle_limit);
            if let Err(e) = drive(conn, &close, idle, peer).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(incoming);
    reloader.abort();
    tracing::info!("webhook draining");
    close.cancel();
    connections.close();
    if tokio::time::timeout(config.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    Ok(())
}

/// The webhook's routes: `POST /mutate` and `GET /healthz`.
pub fn router(settings: Arc<InjectSettings>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(settings)
}

async fn mutate(State(settings): State<Arc<InjectSettings>>, req: Request) -> Response {
    let body = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "review too large or unreadable\n",
            )
                .into_response();
        }
        Err(_) => {
            return (StatusCode::REQUEST_TIMEOUT, "review not read in time\n").into_response();
        }
    };
    let (status, review) = review(&body, &settings);
    match serde_json::to_vec(&review) {
        Ok(json) => Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(json))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Answers one AdmissionReview body: the HTTP status and the review to send back, its patch
/// base64-encoded as the API server expects. A body that is not an AdmissionReview gets 400
/// and a refusal; every review gets 200 and its response.
pub fn review(body: &[u8], settings: &InjectSettings) -> (StatusCode, serde_json::Value) {
    let (status, review) = answer(body, settings);
    let mut json = match serde_json::to_value(&review) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the review");
            return (StatusCode::INTERNAL_SERVER_ERROR, serde_json::Value::Null);
        }
    };
    if let Some(patch) = review.response.and_then(|r| r.patch)
        && let Some(resp) = json.get_mut("response").and_then(|r| r.as_object_mut())
    {
        resp.insert(
            "patch".into(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch)),
        );
    }
    (status, json)
}

fn answer(
    body: &[u8],
    settings: &InjectSettings,
) -> (StatusCode, AdmissionReview<kube_core::DynamicObject>) {
    let parsed: AdmissionReview<Pod> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "not an AdmissionReview");
            return (
                StatusCode::BAD_REQUEST,
                AdmissionResponse::invalid(format!("not an AdmissionReview: {e}")).into_review(),
            );
        }
    };
    let req: AdmissionRequest<Pod> = match parsed.try_into() {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                AdmissionResponse::invalid(e.to_string()).into_review(),
            );
        }
    };
    (StatusCode::OK, respond(&req, settings).into_review())
}

fn respond(req: &AdmissionRequest<Pod>, settings: &InjectSettings) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    let ns = req.namespace.as_deref().unwrap_or("");
    let is_pod_create = req.resource.resource == "pods"
        && req.resource.group.is_empty()
        && req.sub_resource.is_none()
        && req.operation == Operation::Create;
    let Some(pod) = req.object.as_ref().filter(|_| is_pod_create) else {
        tracing::debug!(uid = %req.uid, resource = %req.resource.resource, "not a pod creation; admitted unchanged");
        return resp;
    };
    let name = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("");
    match build_patch(pod, settings) {
        Ok(Outcome::Skip(why)) => {
            tracing::info!(uid = %req.uid, namespace = ns, pod = name, outcome = why.as_str(), "admitted unchanged");
            resp
        }
        Ok(Outcome::Inject(patch)) => {
            let ops = patch.0.len();
            match resp.clone().with_patch(patch) {
                Ok(r) => {
                    tracing::info!(uid = %req.uid, namespace = ns, pod = name, ops, outcome = "injected", "sidecar injected");
                    r
                }
                Err(e) => {
                    tracing::error!(uid = %req.uid, error = %e, "cannot encode the patch");
                    refuse(resp, format!("countersign: cannot encode the patch: {e}"))
                }
            }
        }
        Err(e) => {
            tracing::info!(uid = %req.uid, namespace = ns, pod = name, outcome = "refused", reason = %e, "pod refused");
            refuse(resp, format!("countersign: {e}"))
        }
    }
}

fn refuse(resp: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut r = resp.deny(message);
    r.result.code = 400;
    r.result.reason = "BadRequest".into();
    r
}

/// The serving certificate, swapped when its files change; the last good one is kept when a
/// new one does not load.
#[derive(Debug)]
struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    digest: std::sync::Mutex<Vec<u8>>,
}

impl CertStore {
    fn load(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<CertStore, WebhookError> {
        let (ck, digest) = load_pair(&cert, &key, &provider)?;
        Ok(CertStore {
            cert,
            key,
            provider,
            current: ArcSwap::from_pointee(ck),
            digest: std::sync::Mutex::new(digest),
        })
    }

    /// Re-reads the files every `interval`; swaps in a changed pair that loads.
    async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            let outcome = tokio::task::spawn_blocking(move || me.reload()).await;
            match outcome {
                Ok(Ok(true)) => {
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "serving certificate not reloaded; keeping the last good one")
                }
                Err(e) => tracing::warn!(error = %e, "certificate reload task failed"),
            }
        }
    }

    /// Loads the pair when its bytes changed; true when a new one was swapped in.
    fn reload(&self) -> Result<bool, WebhookError> {
        let digest = pair_digest(&self.cert, &self.key)?;
        let mut last = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        if *last == digest {
            return Ok(false);
        }
        let (ck, digest) = load_pair(&self.cert, &self.key, &self.provider)?;
        self.current.store(Arc::new(ck));
        *last = digest;
        Ok(true)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, WebhookError> {
    std::fs::read(path).map_err(|e| WebhookError::Certificate {
        path: path.display().to_string(),
        message: crate::config::read_error(&e),
    })
}

fn pair_digest(cert: &Path, key: &Path) -> Result<Vec<u8>, WebhookError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&read(cert)?);
    ctx.update(&read(key)?);
    Ok(ctx.finish().as_ref().to_vec())
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Vec<u8>), WebhookError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let bad = |path: &Path, message: String| WebhookError::Certificate {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let pk = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let ck = CertifiedKey::from_der(chain, pk, provider)
        .map_err(|e| bad(key, format!("cannot be used with the certificate: {e}")))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&cert_pem);
    ctx.update(&key_pem);
    Ok((ck, ctx.finish().as_ref().to_vec()))
}
