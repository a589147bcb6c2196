//! Step 3: HTTP on one connection: hyper-util's automatic HTTP/1.1 and HTTP/2, with the head-size,
//! header-timeout and stream limits, and graceful shutdown. Next: `app.rs`, once per request.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::app::{App, ConnInfo};
use crate::config::Limits;
use crate::metrics;

/// The per-connection HTTP settings, built once per snapshot.
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(64))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    b
}

/// Serves HTTP on `io` until the client leaves, or until `conn.close` is cancelled (shutdown, or
/// the client's certificate was revoked): then in-flight requests finish and the connection closes.
pub async fn serve<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    app: Arc<App>,
    conn: Arc<ConnInfo>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let close = conn.close.clone();
    let svc = service_fn(move |req| app.clone().handle(req, conn.clone()));
    let c = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        _ = close.cancelled() => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = result {
        classify(&*e, peer);
    }
}

/// Counts and logs what ended a connection badly.
fn classify(e: &(dyn std::error::Error + 'static), peer: std::net::SocketAddr) {
    let Some(h) = e.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, error = %e, "connection ended");
        return;
    };
    if h.is_timeout() {
        metrics::CONN.header_timeout.increment(1);
        tracing::debug!(%peer, "request head not received within limits.header_read_timeout; connection closed");
    } else if h.is_parse_too_large() {
        metrics::CONN.headers_too_large.increment(1);
        tracing::info!(target: "countersign::access", %peer, code = "headers_too_large", status = 431, "request head larger than limits.max_header_bytes");
    } else if h.is_parse() || h.is_parse_status() {
        metrics::CONN.malformed.increment(1);
        tracing::info!(target: "countersign::access", %peer, code = "malformed_request", status = 400, error = %h, "unparseable HTTP request");
    } else {
        tracing::debug!(%peer, error = %h, "connection ended");
    }
}
