//! Step 1: accept connections: the connection limit, the PROXY header, the TLS handshake under a
//! deadline, the peer's identity; then hand the stream to `serve.rs`. Shutdown stops accepting and
//! drains what is open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, ConnInfo};
use crate::config::ClientIpFrom;
use crate::metrics;
use crate::proxy_protocol;
use crate::serve;
use crate::tls::PeerIdentity;

/// Accepts until `stop` is cancelled, then waits up to `drain` for open connections to finish.
pub async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    stop: CancellationToken,
    drain: Duration,
) {
    let max = app.state.load().config.limits.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let tracker = TaskTracker::new();
    // Cancelled when the drain begins; every connection's own close token is a child of it.
    let drain_now = CancellationToken::new();
    let mut incoming = Listener::new(listener, "main", Some(metrics::CONN.over_limit.clone()));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            c = incoming.next() => c,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::CONN.over_limit.increment(1);
            tracing::warn!(%peer, "connection limit (limits.max_connections) reached; connection closed");
            drop(tcp);
            continue;
        };
        metrics::CONN.accepted.increment(1);
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let close = drain_now.child_token();
        tracker.spawn(async move {
            metrics::CONN.active.increment(1.0);
            handle_connection(tcp, peer, app, close).await;
            metrics::CONN.active.decrement(1.0);
            drop(permit);
        });
    }
    drop(incoming);
    tracing::info!("stopped accepting; draining open connections");
    tracker.close();
    drain_now.cancel();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            timeout_s = drain.as_secs(),
            "connections still open after shutdown_timeout; closing them"
        );
    }
}

/// A listener's accept side, as every listener of the process uses it: an accept error is logged
/// and retried after 50 ms instead of spinning; out of file descriptors (EMFILE, ENFILE), a spare
/// descriptor is freed and the connections waiting in the backlog are taken and closed at once, so
/// their clients learn now instead of hanging until they time out.
pub struct Listener {
    listener: TcpListener,
    spare: Option<std::fs::File>,
    name: &'static str,
    shed: Option<::metrics::Counter>,
}

impl Listener {
    /// Wraps `listener`; `name` goes into the log lines, `shed` counts connections closed unserved.
    pub fn new(
        listener: TcpListener,
        name: &'static str,
        shed: Option<::metrics::Counter>,
    ) -> Self {
        Listener {
            listener,
            spare: std::fs::File::open("/dev/null").ok(),
            name,
            shed,
        }
    }

    /// The next connection (cancel-safe).
    pub async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(c) => return c,
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.shed_waiting();
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Out of file descriptors: frees the spare one, takes the connections waiting in the backlog
    /// and closes them at once, then takes the spare back.
    fn shed_waiting(&mut self) {
        use futures_util::FutureExt;
        if self.spare.take().is_none() {
            self.spare = std::fs::File::open("/dev/null").ok();
            return;
        }
        for _ in 0..256 {
            match self.listener.accept().now_or_never() {
                Some(Ok((tcp, peer))) => {
                    if let Some(c) = &self.shed {
                        c.increment(1);
                    }
                    tracing::warn!(listener = self.name, %peer, "out of file descriptors; connection closed");
                    drop(tcp);
                }
                _ => break,
            }
        }
        self.spare = std::fs::File::open("/dev/null").ok();
    }
}

async fn handle_connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    close: CancellationToken,
) {
    let snap = app.state.load_full();
    let limits = &snap.config.limits;
    let proxied = if snap.config.client_ip.from == ClientIpFrom::ProxyProtocol {
        match tokio::time::timeout(
            limits.handshake_timeout,
            proxy_protocol::read_header(&mut tcp),
        )
        .await
        {
            Ok(Ok(src)) => src,
            Ok(Err(e)) => {
                metrics::CONN.proxy_protocol_invalid.increment(1);
                tracing::info!(%peer, error = %e, "connection refused: client_ip.from is proxy_protocol");
                return;
            }
            Err(_) => {
                metrics::CONN.handshake_timeout.increment(1);
                tracing::info!(%peer, "no PROXY protocol header within limits.handshake_timeout");
                return;
            }
        }
    } else {
        None
    };
    let http = snap.http.clone();
    let Some(acceptor) = snap.tls.as_ref().and_then(|t| t.acceptor.clone()) else {
        let conn = Arc::new(ConnInfo::new(
            peer,
            proxied,
            false,
            None,
            snap.generation,
            close,
        ));
        serve::serve(tcp, &http, serve::Proto::Detect, app, conn).await;
        return;
    };
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            metrics::CONN.handshake_failed.increment(1);
            tracing::info!(target: "countersign::tls", %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics::CONN.handshake_timeout.increment(1);
            tracing::info!(target: "countersign::tls", %peer, "TLS handshake not finished within limits.handshake_timeout");
            return;
        }
    };
    if close.is_cancelled() {
        return;
    }
    let identity = match tls.get_ref().1.peer_certificates() {
        Some(chain) if !chain.is_empty() => match PeerIdentity::from_chain(chain) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "verified client certificate could not be read; connection closed");
                return;
            }
        },
        _ => None,
    };
    let conn = Arc::new(ConnInfo::new(
        peer,
        proxied,
        true,
        identity,
        snap.generation,
        close,
    ));
    drop(snap);
    let proto = serve::Proto::from_alpn(tls.get_ref().1.alpn_protocol());
    serve::serve(tls, &http, proto, app, conn).await;
}
