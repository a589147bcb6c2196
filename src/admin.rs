//! The admin listener, beside the request path: `/healthz`, `/readyz`, `/metrics`. Never on the
//! main listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Config, keys and certificates are loaded and the listener is bound.
    pub started: AtomicBool,
    /// Shutdown began.
    pub draining: AtomicBool,
}

impl Readiness {
    /// True when the sidecar should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// The admin routes.
pub fn router(ready: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn readyz(State(ready): State<Arc<Readiness>>) -> impl IntoResponse {
    if ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if ready.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics() -> impl IntoResponse {
    let body = crate::metrics::init().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
