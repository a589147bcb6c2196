//! Upgraded (WebSocket) connections. After the backend's `101 Switching Protocols`, bytes are
//! copied both ways until either side closes, or the tunnel is closed for one of three reasons:
//! nothing crossed it for `limits.tunnel_idle_timeout` (looked at four times per limit, so up to a
//! quarter more); the connection was told to close (shutdown, or its client certificate no longer
//! verifies); or, checked as each reload is published, the certificate the connection was
//! accepted with is now revoked, its CA removed, or it fell out of `allow_clients` on a route that
//! requires `mtls`: a tunnel has no next request to be refused. An open tunnel wakes for nothing
//! else.
//!
//! The tunnel runs on the connection's own task, after hyper hands the connection over
//! (`serve.rs`), so it keeps the connection's `limits.max_connections` slot and the shutdown drain
//! waits for it to close.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::app::{App, ConnInfo};
use crate::keep_alive::{Activity, Watched};
use crate::state::PUBLISHED;

/// How long closing a tunnel may wait for each side to take its close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A tunnel agreed with the backend, waiting for the connection to be handed over.
#[derive(Debug)]
pub struct Tunnel {
    client: OnUpgrade,
    backend: OnUpgrade,
    idle_limit: Duration,
    mtls_required: bool,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A side closed, or a read or write failed.
    Done,
    /// Nothing crossed it for the idle limit.
    Idle,
    /// The connection was told to close.
    Closed,
}

impl Tunnel {
    /// A tunnel between the client's connection (`client`, from the request) and the backend's
    /// (`backend`, from its 101 response). `mtls_required`: the route that admitted it requires
    /// `mtls`, so `allow_clients` is checked again after a reload.
    pub fn new(
        client: OnUpgrade,
        backend: OnUpgrade,
        idle_limit: Duration,
        mtls_required: bool,
    ) -> Self {
        Tunnel {
            client,
            backend,
            idle_limit,
            mtls_required,
        }
    }

    /// Copies bytes both ways until the tunnel ends, then closes both sides.
    pub async fn run(self, app: &App, conn: &ConnInfo) {
        let peer = conn.peer;
        let (client, backend) = match tokio::try_join!(self.client, self.backend) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade did not complete");
                return;
            }
        };
        let activity = Arc::new(Activity::default());
        let mut client = Watched::new(TokioIo::new(client), activity.clone());
        let mut backend = Watched::new(TokioIo::new(backend), activity.clone());
        let end = {
            let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
            tokio::pin!(copy);
            let tick = (self.idle_limit / 4).max(Duration::from_millis(1));
            let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reads = activity.reads();
            let mut quiet_since = Instant::now();
            // Registered before the first look, so a reload published in between is not missed.
            let published = PUBLISHED.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let mut admitted = app.recheck_tunnel(conn, self.mtls_required);
            loop {
                if let Err(d) = &admitted {
                    tracing::info!(target: "countersign::access", %peer, code = d.reject.code(), detail = %d.detail, "upgraded connection closed: its client certificate no longer admits it");
                    break End::Closed;
                }
                tokio::select! {
                    r = copy.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "upgraded connection ended with an error");
                        }
                        break End::Done;
                    }
                    _ = conn.close.cancelled() => break End::Closed,
                    _ = published.as_mut() => {
                        published.set(PUBLISHED.notified());
                        published.as_mut().enable();
                        admitted = app.recheck_tunnel(conn, self.mtls_required);
                    }
                    now = ticks.tick() => {
                        let seen = activity.reads();
                        if seen != reads {
                            reads = seen;
                            quiet_since = now;
                        } else if now.duration_since(quiet_since) >= self.idle_limit {
                            break End::Idle;
                        }
                    }
                }
            }
        };
        match end {
            End::Done => {}
            End::Idle => {
                tracing::debug!(%peer, "upgraded connection carried nothing for limits.tunnel_idle_timeout; closed")
            }
            End::Closed => tracing::debug!(%peer, "upgraded connection closed"),
        }
        if end != End::Done {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                let _ = tokio::join!(client.shutdown(), backend.shutdown());
            })
            .await;
        }
    }
}
