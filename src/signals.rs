//! Signals: SIGTERM and SIGINT drain and stop; SIGHUP reloads.

use tokio::signal::unix::{SignalKind, signal};

use crate::server::Running;

/// Serves SIGHUP reloads until SIGTERM or SIGINT arrives.
pub async fn wait_for_shutdown(running: &Running) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = running.reload().await;
            }
        }
    }
}
