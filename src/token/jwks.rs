//! Where the JWKS comes from (URL, OIDC discovery, file), the last good key set, and fetching:
//! periodically in the background and on demand (nothing loaded yet, or an unknown `kid`) at most
//! once per `jwks_min_refetch`, with concurrent requests sharing one fetch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use tokio::time::Instant;

use super::fetch::Fetcher;
use super::jwk::KeySet;
use super::{JWKS_FETCH_TOTAL, JWKS_KEYS, JWKS_LAST_SUCCESS};
use crate::config::url_allowed;

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// The largest discovery document accepted.
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// Where keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `jwt.jwks_url`.
    Url(String),
    /// `jwt.issuer` without a JWKS: `{issuer}/.well-known/openid-configuration` names `jwks_uri`.
    Discovery {
        /// The configured issuer (the discovery document must name the same).
        issuer: String,
    },
    /// `jwt.jwks_file`.
    File(PathBuf),
}

/// What caused a fetch (the `trigger` metric label).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The periodic refresh.
    Refresh,
    /// A request while no key set is loaded.
    Cold,
    /// A token with a `kid` the set does not have.
    UnknownKid,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Refresh => "refresh",
            Trigger::Cold => "cold",
            Trigger::UnknownKid => "unknown_kid",
        }
    }
}

#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// The `jwks_uri` from discovery, until a fetch with it fails.
    discovered: Option<String>,
}

/// The JWKS of one verifier.
#[derive(Debug)]
pub struct Jwks {
    source: Source,
    fetcher: Option<Fetcher>,
    min_refetch: Duration,
    current: ArcSwapOption<KeySet>,
    /// Bumped after every finished fetch, so waiters know one happened while they queued.
    generation: AtomicU64,
    state: tokio::sync::Mutex<FetchState>,
    last_error: std::sync::Mutex<Option<Arc<str>>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

impl Jwks {
    /// A JWKS for `source`, fetched with `fetcher` (URL and discovery sources need one); a file
    /// is loaded now (an error is a configuration error).
    pub fn new(
        source: Source,
        min_refetch: Duration,
        fetcher: Option<Fetcher>,
    ) -> Result<Jwks, String> {
        let fetcher = match source {
            Source::File(_) => None,
            Source::Url(_) | Source::Discovery { .. } => {
                Some(fetcher.ok_or("no HTTP client for the JWKS URL")?)
            }
        };
        let jwks = Jwks {
            source,
            fetcher,
            min_refetch,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(FetchState::default()),
            last_error: std::sync::Mutex::new(None),
        };
        if let Source::File(_) = &jwks.source {
            jwks.reload_file()?;
        }
        Ok(jwks)
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The last good key set.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// The fetch generation, read before [`Jwks::current`] so a later [`Jwks::refetch`] can tell
    /// whether a fetch finished in between.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Why the last fetch or reload failed, if it did.
    pub fn last_error(&self) -> Option<Arc<str>> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, e: Option<&str>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e.map(Arc::from);
        }
    }

    fn publish(&self, set: KeySet, skipped: &[String], from: &str) -> usize {
        let n = set.len();
        for s in skipped {
            tracing::warn!(jwks = from, "JWKS key skipped: {s}");
        }
        self.current.store(Some(Arc::new(set)));
        self.set_error(None);
        metrics::gauge!(JWKS_KEYS).set(n as f64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!(JWKS_LAST_SUCCESS).set(now);
        n
    }

    /// Re-reads `jwks_file` (for the file watcher). On error the last good set stays.
    /// Returns how many keys are loaded.
    pub fn reload_file(&self) -> Result<usize, String> {
        let Source::File(path) = &self.source else {
            return Err("the JWKS does not come from a file".to_string());
        };
        let result = read_file(path).and_then(|bytes| {
            KeySet::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        });
        match result {
            Ok((set, skipped)) => Ok(self.publish(set, &skipped, &path.display().to_string())),
            Err(e) => {
                self.set_error(Some(&e));
                Err(e)
            }
        }
    }

    /// An on-demand fetch, at most once per `min_refetch`. `seen` is the [`Jwks::generation`]
    /// the caller's key set came from: when a fetch finished since (or while queueing for the
    /// lock), the caller uses its result instead of starting another.
    pub async fn refetch(&self, trigger: Trigger, seen: u64) {
        if self.fetcher.is_none() {
            return;
        }
        let mut state = self.state.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if let Some(t) = state.last_attempt
            && t.elapsed() < self.min_refetch
        {
            metrics::counter!(JWKS_FETCH_TOTAL, "trigger" => trigger.as_str(), "result" => "rate_limited")
                .increment(1);
            return;
        }
        self.fetch_locked(&mut state, trigger).await;
    }

    /// The periodic refresh: always fetches (after any fetch in progress). Returns success.
    pub async fn refresh(&self) -> bool {
        if self.fetcher.is_none() {
            return true;
        }
        let mut state = self.state.lock().await;
        self.fetch_locked(&mut state, Trigger::Refresh).await
    }

    async fn fetch_locked(&self, state: &mut FetchState, trigger: Trigger) -> bool {
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_once(state).await;
        let ok = match result {
            Ok((set, skipped, url)) => {
                let n = self.publish(set, &skipped, &url);
                tracing::debug!(jwks = %url, keys = n, trigger = trigger.as_str(), "JWKS fetched");
                true
            }
            Err(e) => {
                tracing::warn!(trigger = trigger.as_str(), "JWKS fetch failed: {e}");
                self.set_error(Some(&e));
                false
            }
        };
        let result = if ok { "ok" } else { "error" };
        metrics::counter!(JWKS_FETCH_TOTAL, "trigger" => trigger.as_str(), "result" => result)
            .increment(1);
        self.generation.fetch_add(1, Ordering::Release);
        ok
    }

    async fn fetch_once(
        &self,
        state: &mut FetchState,
    ) -> Result<(KeySet, Vec<String>, String), String> {
        let Some(fetcher) = &self.fetcher else {
            return Err("no URL to fetch".to_string());
        };
        let url = match &self.source {
            Source::Url(u) => u.clone(),
            Source::Discovery { issuer } => match &state.discovered {
                Some(u) => u.clone(),
                None => {
                    let u = discover(fetcher, issuer).await?;
                    state.discovered = Some(u.clone());
                    u
                }
            },
            Source::File(_) => return Err("the JWKS comes from a file".to_string()),
        };
        let fetched = async {
            let body = fetcher
                .get(&url, MAX_JWKS_BYTES)
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
        }
        .await;
        match fetched {
            Ok((set, skipped)) => Ok((set, skipped, url)),
            Err(e) => {
                // The IdP may have moved its keys: ask discovery again next time.
                state.discovered = None;
                Err(e)
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "{}: larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The discovery URL for an issuer (OpenID Connect Discovery 1.0 section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<String, String> {
    let url = discovery_url(issuer);
    let body = fetcher
        .get(&url, MAX_DISCOVERY_BYTES)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let doc: Discovery = serde_json::from_slice(&body)
        .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
    if doc.issuer.as_deref() != Some(issuer) {
        return Err(format!(
            "{url}: the document's issuer is not the configured issuer {issuer:?}"
        ));
    }
    let jwks_uri = doc.jwks_uri.ok_or_else(|| format!("{url}: no jwks_uri"))?;
    if !url_allowed(&jwks_uri) {
        return Err(format!(
            "{url}: jwks_uri {jwks_uri:?} is neither https nor loopback http"
        ));
    }
    Ok(jwks_uri)
}
