//! The admin listener, beside the request path: `/healthz`, `/readyz`, `/metrics`. Never on the
//! main listener. Bounded like it: at most [`MAX_CONNECTIONS`] open at once, and a request head
//! (or the next one on a keep-alive connection) must come within `limits.header_read_timeout`,
//! so clients that connect and stay silent cannot use up the process's file descriptors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::inject::probes::AppProbes;
use crate::listen::Listener;
use crate::state::Shared;

/// The most admin connections open at once (probes and scrapes need a few); more are closed at
/// once. Within the 256 descriptors `limits.max_connections` leaves aside.
pub const MAX_CONNECTIONS: usize = 64;

/// How long open admin requests get to finish once the admin listener stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (HTTP/1.1) until `stop` is cancelled, then lets open requests
/// finish for up to five seconds. `header_timeout` bounds a request head and a keep-alive
/// connection's wait for its next request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut incoming = Listener::new(listener, "admin", None);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            c = incoming.next() => c,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "admin connection limit reached; connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            }
            drop(permit);
        });
    }
    drop(incoming);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// What `/readyz` reports.
#[derive(Debug)]
pub struct Readiness {
    /// Config, keys and certificates are loaded and the listener is bound.
    pub started: AtomicBool,
    /// Shutdown began.
    pub draining: AtomicBool,
    state: Shared,
}

impl Readiness {
    /// Not started, not draining, for the published `state`.
    pub fn new(state: Shared) -> Self {
        Readiness {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            state,
        }
    }

    /// Why the sidecar should not receive traffic, or `None` when it should.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("draining")
        } else if !self.started.load(Ordering::Acquire) {
            Some("starting")
        } else if !self.state.load().verifiers_ready() {
            Some("waiting for the JWKS")
        } else {
            None
        }
    }
}

#[derive(Clone)]
struct AdminState {
    ready: Arc<Readiness>,
    probes: Arc<AppProbes>,
}

/// The admin routes; `probes` answers `/app-health/<container>/<probe>` for probes the injection
/// webhook rewrote.
pub fn router(ready: Arc<Readiness>, probes: Arc<AppProbes>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/app-health/{*name}", get(app_health))
        .with_state(AdminState { ready, probes })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    match s.ready.not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn app_health(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> axum::response::Response {
    s.probes.probe(&name).await
}

async fn metrics() -> impl IntoResponse {
    let body = crate::metrics::init().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
