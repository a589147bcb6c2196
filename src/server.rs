//! Starting and stopping the sidecar: build the state, bind the listeners, run the accept loop and
//! the admin server, reload on request, drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::proxy::Proxy;
use crate::reload;
use crate::state::{Shared, Snapshot};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration or a file it names is invalid (exit 2).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A listener could not be bound (exit 1).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started sidecar.
pub struct Running {
    /// The bound main listener address.
    pub addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: Option<SocketAddr>,
    /// The published state (for reloads and tests).
    pub state: Shared,
    accept_stop: CancellationToken,
    admin_stop: CancellationToken,
    readiness: Arc<Readiness>,
    accept: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
}

/// Builds everything from `config`, binds, and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    crate::tls::install_default_provider();
    crate::metrics::init();
    let watch = reload::Watch::new(&config);
    let snapshot = Snapshot::load(config, None).await?;
    let probes = Arc::new(
        crate::inject::probes::AppProbes::from_env()
            .map_err(|m| ConfigError::one(crate::inject::probes::APP_PROBES_ENV, m))?,
    );
    reload::publish(&snapshot);
    let config = snapshot.config.clone();
    let state: Shared = Arc::new(ArcSwap::from_pointee(snapshot));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;

    let readiness = Arc::new(Readiness::new(state.clone()));
    let admin_stop = CancellationToken::new();
    let accept_stop = CancellationToken::new();
    let (admin_addr, admin) = match config.admin {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| StartError::Bind { addr: a, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr: a, source })?;
            let router = admin::router(readiness.clone(), probes);
            // The admin listener outlives the drain so /readyz can say "draining".
            let h = tokio::spawn(admin::serve(
                l,
                router,
                config.limits.header_read_timeout,
                admin_stop.clone(),
            ));
            (Some(bound), Some(h))
        }
        None => (None, None),
    };

    let app = Arc::new(App {
        state: state.clone(),
        proxy: Proxy::new(&config.upstream),
    });
    let accept = tokio::spawn(crate::listen::accept_loop(
        listener,
        app.clone(),
        accept_stop.clone(),
        config.shutdown_timeout,
    ));
    state.load().start_background();
    tokio::spawn(watch.run(
        state.clone(),
        config.reload.poll_interval,
        admin_stop.clone(),
    ));
    tokio::spawn(reload::poll_remote_keys(state.clone(), admin_stop.clone()));
    readiness.started.store(true, Ordering::Release);
    tracing::info!(listen = %addr, admin = %admin_addr.map_or("off".to_string(), |a| a.to_string()), upstream = %config.upstream.uri, tls = config.tls.as_ref().is_some_and(|t| t.terminates()), "countersign started");
    Ok(Running {
        addr,
        admin_addr,
        state,
        accept_stop,
        admin_stop,
        readiness,
        accept,
        admin,
    })
}

impl Running {
    /// Rebuilds the state from the config file (SIGHUP), after fetching a remote key registry;
    /// on any error the last good state stays.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        // A remote key registry is asked at once rather than at its next poll.
        let current = self.state.load_full();
        if let Some(r) = &current.remote_keys
            && let Err(e) = r.fetch(&current.config.signature).await
        {
            tracing::error!(url = %r.url(), problem = %e, "remote key registry fetch failed; keeping the last good registry");
        }
        drop(current);
        let mut whats: Vec<reload::What> = reload::watched_files(&self.state.load().config)
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        whats.sort_unstable();
        whats.dedup();
        reload::rebuild(&self.state, &whats).await
    }

    /// Begins shutdown: `/readyz` turns 503, accepting stops, open connections drain.
    pub fn shutdown(&self) {
        self.readiness.draining.store(true, Ordering::Release);
        // The admin server keeps answering until `wait` returns, so /readyz can say "draining".
        self.accept_stop.cancel();
    }

    /// Waits for the drain to finish, then stops the admin listener.
    pub async fn wait(self) {
        let _ = self.accept.await;
        self.admin_stop.cancel();
        if let Some(a) = self.admin {
            let _ = a.await;
        }
        tracing::info!("countersign stopped");
    }
}
