//! Step 8a: the connections to the one backend. HTTP/1.1 keep-alive connections wait in a
//! last-in-first-out idle list (there is one backend, so no per-host map and no key hashing per
//! request), and go back on it when their response body has been read to the end; an HTTP/2
//! (h2c) backend gets one shared connection, re-made when it closes.
//!
//! A request that fails on a reused connection before any of it was written (the backend closed
//! the idle connection at the same moment) is sent again once on a fresh connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::proxy::ReqBody;

/// Idle connections kept at most.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the backend could be made.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The backend address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

struct Inner {
    addr: String,
    idle: Mutex<Vec<Idle>>,
    h2: Option<Mutex<Option<http2::SendRequest<ReqBody>>>>,
}

/// The backend's connections.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl Pool {
    /// Connections to `addr` (`host:port`); `http2` speaks h2c with prior knowledge.
    pub fn new(addr: String, http2: bool) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                addr,
                idle: Mutex::new(Vec::new()),
                h2: http2.then(|| Mutex::new(None)),
            }),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<TokioIo<TcpStream>, SendError> {
        let err = |source| SendError::Connect {
            addr: self.inner.addr.clone(),
            source,
        };
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&self.inner.addr)).await {
            Ok(r) => r.map_err(err)?,
            Err(_) => {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(TokioIo::new(tcp))
    }

    async fn new_http1(
        &self,
        connect_timeout: Duration,
    ) -> Result<http1::SendRequest<ReqBody>, SendError> {
        let io = self.connect(connect_timeout).await?;
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(target: "countersign::upstream", error = %e, "backend connection ended");
            }
        });
        Ok(sender)
    }

    /// The most recently used idle connection that is still open and ready.
    async fn reuse_http1(&self) -> Option<http1::SendRequest<ReqBody>> {
        loop {
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            if idle.since.elapsed() > IDLE_TIMEOUT || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_back(inner: &Inner, sender: http1::SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Sends `req` and returns the response head; the body streams from the backend. A new
    /// connection must be made within `connect_timeout`.
    pub async fn send(
        &self,
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<Response<PooledBody>, SendError> {
        if let Some(h2) = &self.inner.h2 {
            return self.send_http2(h2, req, connect_timeout).await;
        }
        let (mut sender, reused) = match self.reuse_http1().await {
            Some(s) => (s, true),
            None => (self.new_http1(connect_timeout).await?, false),
        };
        let resp = match sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                // Nothing was written: the reused connection had been closed by the backend.
                Some(req) if reused => {
                    let mut fresh = self.new_http1(connect_timeout).await?;
                    let resp = fresh.send_request(req).await?;
                    return Ok(self.pooled(resp, fresh));
                }
                _ => return Err(SendError::Http(e.into_error())),
            },
        };
        Ok(self.pooled(resp, sender))
    }

    fn pooled(
        &self,
        resp: Response<Incoming>,
        sender: http1::SendRequest<ReqBody>,
    ) -> Response<PooledBody> {
        // After a 101 the connection belongs to the upgrade.
        let back = (resp.status() != StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (sender, Arc::downgrade(&self.inner)));
        resp.map(|body| PooledBody::new(body, back))
    }

    async fn send_http2(
        &self,
        slot: &Mutex<Option<http2::SendRequest<ReqBody>>>,
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<Response<PooledBody>, SendError> {
        let current = slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match current {
            Some(s) => s,
            None => {
                let io = self.connect(connect_timeout).await?;
                let mut b = http2::Builder::new(TokioExecutor::new());
                b.timer(TokioTimer::new());
                let (sender, conn) = b.handshake(io).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(target: "countersign::upstream", error = %e, "backend h2 connection ended");
                    }
                });
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
                sender
            }
        };
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|body| PooledBody::new(body, None)))
    }
}

pin_project_lite::pin_project! {
    /// A backend response body that returns its connection to the idle list once read to the end.
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        back: Option<(http1::SendRequest<ReqBody>, Weak<Inner>)>,
    }
}

impl PooledBody {
    fn new(
        inner: Incoming,
        back: Option<(http1::SendRequest<ReqBody>, Weak<Inner>)>,
    ) -> PooledBody {
        let mut b = PooledBody { inner, back };
        // A body that is already complete (no content) may never be polled.
        if b.inner.is_end_stream() {
            release(&mut b.back);
        }
        b
    }
}

fn release(back: &mut Option<(http1::SendRequest<ReqBody>, Weak<Inner>)>) {
    if let Some((sender, pool)) = back.take()
        && let Some(inner) = pool.upgrade()
    {
        Pool::put_back(&inner, sender);
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let r = inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(None) => release(this.back),
            Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => release(this.back),
            // A body that failed leaves its connection unusable: it is dropped, not pooled.
            Poll::Ready(Some(Err(_))) => {
                this.back.take();
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
