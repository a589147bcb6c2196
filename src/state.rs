//! The hot state every request reads: built from a `Config` off the request path, published as one
//! `Arc` and swapped atomically on reload, so a request sees one consistent snapshot from start to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError, KeySource, ReplaySetting};
use crate::metrics::RouteMetrics;
use crate::policy::ipset::IpSet;
use crate::policy::routes::Routes;
use crate::registry::Registry;
use crate::signature::{ReplayStore, Verifier};
use crate::tls::{self, TlsState};
use crate::token::JwtVerifier;

/// Everything derived from one configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// TLS acceptor and client verifier.
    pub tls: Option<TlsState>,
    /// `ip_allow`.
    pub ip_allow: IpSet,
    /// `client_ip.trusted_proxies`.
    pub trusted_proxies: IpSet,
    /// The route table.
    pub routes: Routes,
    /// Counters for requests that match no route.
    pub no_route: RouteMetrics,
    /// Unique per snapshot: connections re-check their certificate once when it changes.
    pub generation: u64,
    /// The key registry (signatures and API keys).
    pub registry: Option<Arc<Registry>>,
    /// Signature verification against the registry.
    pub verifier: Option<Verifier>,
    /// Signatures already accepted (kept across reloads while `signature.replay` is unchanged).
    pub replay: Option<Arc<ReplayStore>>,
    /// The bearer-token verifier (kept across reloads while `jwt:` is unchanged, so its key set
    /// survives).
    pub jwt: Option<Arc<JwtVerifier>>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Snapshot {
    /// Loads every file the configuration names and builds the runtime state. Opens no socket and
    /// starts no task (see `start_background`). Long-lived parts of `previous` are reused when
    /// their settings did not change.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigError> {
        let registry = match &config.keys {
            None => None,
            Some(KeySource::File(path)) => Some(Arc::new(Registry::load(path, &config.signature)?)),
            Some(KeySource::Url(url)) => match previous.and_then(|p| p.registry.clone()) {
                Some(r) => Some(r),
                None => {
                    return Err(ConfigError::one(
                        config.source.display().to_string(),
                        format!("keys: the remote registry {url} has not been fetched yet"),
                    ));
                }
            },
        };
        let verifier = registry
            .as_ref()
            .map(|r| Verifier::new(&config.signature, r.clone()));
        let replay = match &config.signature.replay {
            ReplaySetting::Off => None,
            ReplaySetting::Memory => match previous {
                Some(p)
                    if p.config.signature.replay == ReplaySetting::Memory
                        && p.config.signature.replay_capacity
                            == config.signature.replay_capacity =>
                {
                    p.replay.clone()
                }
                _ => Some(Arc::new(ReplayStore::new(config.signature.replay_capacity))),
            },
            ReplaySetting::Redis(_) => {
                return Err(ConfigError::one(
                    format!("{}: signature.replay", config.source.display()),
                    "redis:// replay stores are not available in this build; use memory",
                ));
            }
        };
        let jwt = match (&config.jwt, previous) {
            (None, _) => None,
            (Some(s), Some(p)) if p.config.jwt.as_ref() == Some(s) => p.jwt.clone(),
            (Some(s), _) => Some(JwtVerifier::new(s)?),
        };
        let tls = match &config.tls {
            Some(t) => Some(tls::build(t)?),
            None => None,
        };
        Ok(Snapshot {
            ip_allow: IpSet::new(&config.ip_allow),
            trusted_proxies: IpSet::new(&config.client_ip.trusted_proxies),
            routes: Routes::new(&config.routes),
            no_route: RouteMetrics::new("-"),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            jwt,
            registry,
            verifier,
            replay,
            tls,
            config: Arc::new(config),
        })
    }
}

impl Snapshot {
    /// Starts what fetches in the background (JWKS refresh); idempotent. Needs a tokio runtime.
    pub fn start_background(&self) {
        if let Some(j) = &self.jwt {
            j.spawn_refresh();
        }
    }

    /// True when every verifier a route needs has what it needs (a JWKS loaded).
    pub fn verifiers_ready(&self) -> bool {
        self.jwt.as_ref().is_none_or(|j| j.is_ready())
    }
}

/// The published snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;
