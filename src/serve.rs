//! Step 3: HTTP on one connection: hyper-util's automatic HTTP/1.1 and HTTP/2, with the head-size,
//! header-timeout and stream limits, the keep-alive idle limit, and graceful shutdown. Next:
//! `app.rs`, once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::app::{App, ConnInfo};
use crate::config::Limits;
use crate::keep_alive::{self, Activity, Counted, Watched};
use crate::metrics;

/// hyper's own limit on header lines per HTTP/1.1 request.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The HTTP settings for connections, built once per snapshot.
#[derive(Clone)]
pub struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
    /// How long a connection may wait for its next request (`limits.header_read_timeout`): hyper
    /// keeps it for HTTP/1.1, [`keep_alive`] for HTTP/2.
    keep_alive_idle: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

/// What a connection speaks: known from TLS ALPN, or detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 (ALPN `http/1.1`, or a TLS client that offered no ALPN).
    Http1,
    /// HTTP/2 (ALPN `h2`).
    Http2,
    /// A plain connection: HTTP/1.1, or HTTP/2 with prior knowledge.
    Detect,
}

impl Proto {
    /// The protocol a TLS handshake agreed on.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Proto {
        match alpn {
            Some(b"h2") => Proto::Http2,
            _ => Proto::Http1,
        }
    }
}

impl Http {
    /// Builders with the configured limits.
    pub fn new(limits: &Limits) -> Http {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true);
        // hyper parses up to 100 headers on the stack; naming any other count moves the parse
        // buffer to the heap for every request, so only a non-default limit is passed on.
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            h1.max_headers(limits.max_headers);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(64))
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
            .keep_alive_timeout(std::time::Duration::from_secs(20));
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            auto.http1().max_headers(limits.max_headers);
        }
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(64))
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
            .keep_alive_timeout(std::time::Duration::from_secs(20));
        Http {
            h1,
            h2,
            auto,
            keep_alive_idle: limits.header_read_timeout,
        }
    }
}

/// A connection future that can be asked to finish what is in flight and close.
pub(crate) trait Graceful: Future {
    fn begin_graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn begin_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> Graceful for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives a connection until it ends; when `close` is cancelled, lets in-flight requests finish
/// and closes. When a future from `idle` resolves, closes the same way; if the connection is then
/// still open when `idle` resolves a second time (nothing in flight and nothing new for another
/// limit: a client that never sent the HTTP/2 preface, whose close hyper would otherwise wait on
/// for ever, or one that does not answer the GOAWAY), drops it.
pub(crate) async fn drive<F, E, I>(
    c: F,
    close: &CancellationToken,
    idle: impl Fn() -> I,
    peer: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    F: Graceful<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: Future<Output = ()>,
{
    tokio::pin!(c);
    let r = tokio::select! {
        r = c.as_mut() => r,
        _ = close.cancelled() => {
            c.as_mut().begin_graceful();
            c.await
        }
        _ = idle() => {
            tracing::debug!(%peer, "no request for the keep-alive idle limit; closing the connection");
            c.as_mut().begin_graceful();
            tokio::select! {
                r = c.as_mut() => r,
                _ = idle() => {
                    tracing::debug!(%peer, "idle connection did not close within another idle limit; dropped");
                    Ok(())
                }
            }
        }
    };
    r.map_err(Into::into)
}

/// Serves HTTP on `io` until the client leaves, or until `conn.close` is cancelled (shutdown, or
/// the client's certificate was revoked): then in-flight requests finish and the connection closes.
/// A TLS connection's protocol is known from ALPN, so its bytes go straight to the HTTP/1.1 or
/// HTTP/2 state machine; a plain one is detected from its first bytes. Requests are counted in and
/// out ([`keep_alive`]): an HTTP/2 connection closes once it has had none for the keep-alive idle
/// limit (hyper does this itself for HTTP/1.1), and an HTTP/1.1 connection closed idle is not
/// counted as a slow head.
pub async fn serve<I>(io: I, http: &Http, proto: Proto, app: Arc<App>, conn: Arc<ConnInfo>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let close = conn.close.clone();
    let activity = Arc::new(Activity::default());
    let counted = activity.clone();
    let (tunnel_app, tunnel_conn) = (app.clone(), conn.clone());
    let svc = service_fn(move |req| Counted::new(&counted, app.clone().handle(req, conn.clone())));
    let result = match proto {
        Proto::Http1 => {
            let io = TokioIo::new(Watched::new(io, activity.clone()));
            let c = http.h1.serve_connection(io, svc).with_upgrades();
            drive(c, &close, std::future::pending::<()>, peer).await
        }
        Proto::Http2 => {
            let idle = || keep_alive::idle(&activity, http.keep_alive_idle);
            let c = http.h2.serve_connection(TokioIo::new(io), svc);
            drive(c, &close, idle, peer).await
        }
        Proto::Detect => {
            let io = TokioIo::new(Watched::new(io, activity.clone()));
            let idle = || keep_alive::idle(&activity, http.keep_alive_idle);
            let c = http.auto.serve_connection_with_upgrades(io, svc);
            drive(c, &close, idle, peer).await
        }
    };
    if let Err(e) = result {
        classify(&*e, peer, &activity);
    }
    // An upgraded HTTP/1.1 connection: hyper has handed it over; it stays this task's (and keeps
    // its connection slot) until the tunnel closes.
    if let Some(t) = tunnel_conn.take_tunnel() {
        t.run(&tunnel_app, &tunnel_conn).await;
    }
}

/// Counts and logs what ended a connection badly. hyper's header timeout on a keep-alive
/// connection that was at rest (served, and sent nothing since) is the idle limit doing its job,
/// not a slow head: logged, not counted.
fn classify(
    e: &(dyn std::error::Error + 'static),
    peer: std::net::SocketAddr,
    activity: &Activity,
) {
    let Some(h) = e.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, error = %e, "connection ended");
        return;
    };
    if h.is_timeout() && activity.at_rest() {
        tracing::debug!(%peer, "no request for limits.header_read_timeout; keep-alive connection closed");
    } else if h.is_timeout() {
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
