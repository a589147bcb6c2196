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
use crate::registry::remote::RemoteRegistry;
use crate::signature::{RedisReplay, Replay, ReplayStore, Verifier};
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
    /// HTTP/1.1 and HTTP/2 settings for new connections.
    pub http: Arc<crate::serve::Http>,
    /// Counters for requests that match no route.
    pub no_route: RouteMetrics,
    /// Unique per snapshot: connections re-check their certificate once when it changes.
    pub generation: u64,
    /// The key registry (signatures and API keys).
    pub registry: Option<Arc<Registry>>,
    /// Signature verification against the registry.
    pub verifier: Option<Verifier>,
    /// Signatures already accepted (kept across reloads while `signature.replay` is unchanged).
    pub replay: Option<Replay>,
    /// The remote key registry's client and last good document (`keys: https://...`; kept
    /// across reloads while the URL and its settings are unchanged).
    pub remote_keys: Option<Arc<RemoteRegistry>>,
    /// The bearer-token verifier (kept across reloads while `jwt:` is unchanged, so its key set
    /// survives).
    pub jwt: Option<Arc<JwtVerifier>>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Snapshot {
    /// Loads every file the configuration names and builds the runtime state. Opens no socket and
    /// starts no task (see `start_background`). Long-lived parts of `previous` are reused when
    /// their settings did not change.
    ///
    /// A remote key registry is taken from `previous` when its URL and settings are unchanged;
    /// otherwise this fails (use [`Snapshot::load`], which fetches it first).
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigError> {
        Self::build_with(config, previous, None)
    }

    /// Like [`Snapshot::build`], but first fetches what must be fetched before the snapshot can
    /// serve: a remote key registry that `previous` does not already hold. The fetch is bounded by
    /// `keys_timeout`; when it fails the snapshot is not built (at start: the sidecar does not
    /// start, exit 2; on reload: the last good snapshot stays).
    pub async fn load(
        config: Config,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let fetched = match &config.keys {
            Some(KeySource::Url(url)) if reusable_remote(&config, previous).is_none() => {
                let at = format!("{}: keys", config.source.display());
                let remote = RemoteRegistry::new(url, &config.keys_fetch)
                    .map_err(|m| ConfigError::one(at.clone(), m))?;
                remote
                    .fetch(&config.signature)
                    .await
                    .map_err(|m| ConfigError::one(at, format!("{url}: {m}")))?;
                Some(Arc::new(remote))
            }
            _ => None,
        };
        Self::build_with(config, previous, fetched)
    }

    fn build_with(
        config: Config,
        previous: Option<&Snapshot>,
        fetched: Option<Arc<RemoteRegistry>>,
    ) -> Result<Snapshot, ConfigError> {
        let (registry, remote_keys) = match &config.keys {
            None => (None, None),
            Some(KeySource::File(path)) => (
                Some(Arc::new(Registry::load(path, &config.signature)?)),
                None,
            ),
            Some(KeySource::Url(url)) => {
                let Some(r) = fetched.or_else(|| reusable_remote(&config, previous)) else {
                    return Err(ConfigError::one(
                        format!("{}: keys", config.source.display()),
                        format!("the remote registry {url} has not been fetched yet"),
                    ));
                };
                (Some(Arc::new(r.registry(&config.signature)?)), Some(r))
            }
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
                _ => Some(Replay::Memory(Arc::new(ReplayStore::new(
                    config.signature.replay_capacity,
                )))),
            },
            ReplaySetting::Redis(r) => match previous.and_then(|p| p.replay.as_ref()) {
                Some(Replay::Redis(prev)) if prev.serves(r) => Some(Replay::Redis(prev.clone())),
                _ => {
                    let at = format!("{}: signature.replay", config.source.display());
                    let store = RedisReplay::new(r).map_err(|m| ConfigError::one(at, m))?;
                    Some(Replay::Redis(Arc::new(store)))
                }
            },
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
            http: Arc::new(crate::serve::Http::new(&config.limits)),
            no_route: RouteMetrics::new("-"),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            jwt,
            registry,
            verifier,
            replay,
            remote_keys,
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

/// The remote registry of `previous`, when it serves the same URL with the same settings.
fn reusable_remote(config: &Config, previous: Option<&Snapshot>) -> Option<Arc<RemoteRegistry>> {
    let Some(KeySource::Url(url)) = &config.keys else {
        return None;
    };
    previous
        .and_then(|p| p.remote_keys.as_ref())
        .filter(|r| r.serves(url, &config.keys_fetch))
        .cloned()
}

/// The published snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;

/// Woken each time a reload publishes a snapshot (in any sidecar of the process), for what must
/// look again at once rather than at its next request: the open WebSocket tunnels.
pub static PUBLISHED: tokio::sync::Notify = tokio::sync::Notify::const_new();
