//! The admin listener, beside the request path: `/healthz`, `/readyz`, `/metrics`. Never on the
//! main listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::inject::probes::AppProbes;
use crate::state::Shared;

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
