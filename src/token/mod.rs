//! 7 Bearer tokens: the JWT in `Authorization: Bearer`, verified against a JWKS (URL with
//! refresh, OIDC discovery, or file), or an opaque token asked about by introspection; next, the
//! request goes to the proxy.
//!
//! JWS signatures are verified with ring (the README says why not `jsonwebtoken`). Keys are
//! parsed once per JWKS load; a request does one atomic load of the key set, one map lookup and
//! one signature check. A failed refresh keeps the last good set; with no set at all a token gets
//! 503 `jwks_unavailable`, not 401.

pub mod alg;
pub mod bearer;
pub mod claims;
pub mod fetch;
pub mod introspect;
pub mod jwk;
pub mod jwks;
pub mod jws;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

pub use bearer::strip as strip_bearer;
pub use claims::Claims;

use crate::config::{ConfigError, JwtSettings, url_allowed};
use crate::reject::{Denial, Reject};
use alg::{Alg, AlgSet};
use claims::Policy;
use fetch::Fetcher;
use introspect::Introspector;
use jwk::Lookup;
use jwks::{Jwks, Source, Trigger};
use jws::{Jws, JwsError};

/// JWKS fetches by `trigger` (`refresh`, `cold`, `unknown_kid`) and `result` (`ok`, `error`,
/// `rate_limited`: an on-demand fetch skipped inside `jwks_min_refetch`).
pub const JWKS_FETCH_TOTAL: &str = "countersign_jwks_fetch_total";
/// Usable keys in the current JWKS.
pub const JWKS_KEYS: &str = "countersign_jwks_keys_loaded";
/// Unix time of the last successful JWKS fetch or file load.
pub const JWKS_LAST_SUCCESS: &str = "countersign_jwks_last_success_timestamp_seconds";
/// Introspection results by `result` (`active`, `inactive`, `cached`, `error`).
pub const INTROSPECTION_TOTAL: &str = "countersign_jwt_introspection_total";

/// Describes this module's metrics (call once at start, beside the others).
pub fn describe_metrics() {
    metrics::describe_counter!(
        JWKS_FETCH_TOTAL,
        "JWKS fetches by trigger (refresh, cold, unknown_kid) and result (ok, error, rate_limited)"
    );
    metrics::describe_gauge!(JWKS_KEYS, "Usable keys in the current JWKS");
    metrics::describe_gauge!(
        JWKS_LAST_SUCCESS,
        "Unix time of the last successful JWKS fetch or file load"
    );
    metrics::describe_counter!(
        INTROSPECTION_TOTAL,
        "Token introspection results (active, inactive, cached, error)"
    );
}

/// The longest wait between retries of a failing JWKS fetch.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Verifies bearer tokens for routes requiring `jwt`. Build one per configuration; it is cheap
/// to share (`Arc`) and safe to call from any number of requests at once.
#[derive(Debug)]
pub struct JwtVerifier {
    jwks: Option<Jwks>,
    introspection: Option<Introspector>,
    algorithms: AlgSet,
    policy: Policy,
    refresh: Duration,
    spawned: AtomicBool,
}

fn invalid(detail: impl Into<std::borrow::Cow<'static, str>>) -> Denial {
    Denial::new(Reject::TokenInvalid, detail)
}

impl JwtVerifier {
    /// Builds a verifier from validated settings. Opens no connection; loads `jwks_file` when
    /// given (an unreadable or unusable file is an error).
    pub fn new(settings: &JwtSettings) -> Result<Arc<JwtVerifier>, ConfigError> {
        let mut algorithms = AlgSet::default();
        for (i, name) in settings.algorithms.iter().enumerate() {
            match Alg::parse(name) {
                Some(a) => algorithms.insert(a),
                None => {
                    return Err(ConfigError::one(
                        format!("jwt.algorithms[{i}]"),
                        format!("`{name}` is not accepted"),
                    ));
                }
            }
        }
        if algorithms.is_empty() {
            return Err(ConfigError::one(
                "jwt.algorithms",
                "must name at least one algorithm",
            ));
        }
        let source = match (&settings.jwks_url, &settings.jwks_file, &settings.issuer) {
            (Some(url), _, _) => Some(Source::Url(url.clone())),
            (None, Some(file), _) => Some(Source::File(file.clone())),
            (None, None, Some(issuer)) if settings.introspection.is_none() => {
                Some(Source::Discovery {
                    issuer: issuer.clone(),
                })
            }
            _ => None,
        };
        let urls = [
            ("jwt.jwks_url", settings.jwks_url.as_deref()),
            (
                "jwt.issuer",
                match &source {
                    Some(Source::Discovery { issuer }) => Some(issuer.as_str()),
                    _ => None,
                },
            ),
            (
                "jwt.introspection.url",
                settings.introspection.as_ref().map(|i| i.url.as_str()),
            ),
        ];
        for (field, url) in urls {
            if let Some(u) = url
                && !url_allowed(u)
            {
                return Err(ConfigError::one(
                    field,
                    "must be https:// (http:// only to a loopback address)",
                ));
            }
        }
        let needs_http = settings.introspection.is_some()
            || matches!(source, Some(Source::Url(_) | Source::Discovery { .. }));
        let fetcher = if needs_http {
            let field = if settings.ca_file.is_some() {
                "jwt.ca_file"
            } else {
                "jwt"
            };
            Some(
                Fetcher::new(settings.ca_file.as_deref())
                    .map_err(|e| ConfigError::one(field, e))?,
            )
        } else {
            None
        };
        let field = match &source {
            Some(Source::File(_)) => "jwt.jwks_file",
            Some(Source::Discovery { .. }) => "jwt.issuer",
            _ => "jwt.jwks_url",
        };
        let jwks = source
            .map(|s| Jwks::new(s, settings.jwks_min_refetch, fetcher.clone()))
            .transpose()
            .map_err(|e| ConfigError::one(field, e))?;
        let introspection = match (&settings.introspection, fetcher) {
            (Some(i), Some(f)) => Some(Introspector::new(i, f)),
            _ => None,
        };
        if jwks.is_none() && introspection.is_none() {
            return Err(ConfigError::one(
                "jwt",
                "needs jwks_url, jwks_file, an issuer (for OIDC discovery) or introspection",
            ));
        }
        Ok(Arc::new(JwtVerifier {
            jwks,
            introspection,
            algorithms,
            policy: Policy::new(settings),
            refresh: settings.jwks_refresh.max(Duration::from_secs(1)),
            spawned: AtomicBool::new(false),
        }))
    }

    /// Starts fetching the JWKS now and every `jwks_refresh` (a tokio task that ends when the
    /// verifier is dropped). Does nothing for a file JWKS or introspection only, or when called
    /// again. Must be called inside a tokio runtime.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let fetches = matches!(
            self.jwks.as_ref().map(Jwks::source),
            Some(Source::Url(_) | Source::Discovery { .. })
        );
        if !fetches || self.spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("JWKS refresh not started: no tokio runtime");
            self.spawned.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(refresh_loop(Arc::downgrade(self), self.refresh));
    }

    /// True when tokens can be checked: a key set is loaded (or, with no JWKS configured,
    /// introspection is). `/readyz` stays 503 until then when a route requires `jwt`.
    pub fn is_ready(&self) -> bool {
        match &self.jwks {
            Some(j) => j.current().is_some(),
            None => self.introspection.is_some(),
        }
    }

    /// The JWKS file, for the file watcher (which calls [`JwtVerifier::reload`] when it changes).
    pub fn jwks_file(&self) -> Option<&Path> {
        match self.jwks.as_ref().map(Jwks::source) {
            Some(Source::File(p)) => Some(p),
            _ => None,
        }
    }

    /// Re-reads the JWKS file; returns the number of usable keys. On error the last good set
    /// stays in use. Without a JWKS file there is nothing to do: `Ok(0)`.
    pub fn reload(&self) -> Result<usize, String> {
        match &self.jwks {
            Some(j) if matches!(j.source(), Source::File(_)) => j.reload_file(),
            _ => Ok(0),
        }
    }

    /// Checks the request's bearer token at `now`. Refusals: `token_missing` (no bearer
    /// credential), `token_invalid` (anything wrong with it), `jwks_unavailable` (no key set could
    /// be loaded, or the introspection endpoint failed). The detail names the failing check.
    pub async fn verify(&self, headers: &HeaderMap, now: SystemTime) -> Result<Claims, Denial> {
        let token = match bearer::extract(headers) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(Denial::new(
                    Reject::TokenMissing,
                    "no Authorization: Bearer credential",
                ));
            }
            Err(e) => return Err(invalid(e.to_string())),
        };
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Some(jwks) = &self.jwks {
            match Jws::parse(token, self.algorithms) {
                Ok(jws) => return self.verify_jws(jwks, &jws, now).await,
                Err(JwsError::NotJws(_)) if self.introspection.is_some() => {}
                Err(e) => return Err(invalid(e.to_string())),
            }
        }
        match &self.introspection {
            Some(i) => i.introspect(token, &self.policy, now).await,
            None => Err(invalid("not a JWS and no introspection is configured")),
        }
    }

    async fn verify_jws(&self, jwks: &Jwks, jws: &Jws<'_>, now: i64) -> Result<Claims, Denial> {
        let seen = jwks.generation();
        let mut set = match jwks.current() {
            Some(s) => s,
            None => {
                jwks.refetch(Trigger::Cold, seen).await;
                jwks.current().ok_or_else(|| {
                    let why = jwks.last_error();
                    Denial::new(
                        Reject::JwksUnavailable,
                        format!(
                            "no JWKS loaded yet: {}",
                            why.as_deref().unwrap_or("no fetch has finished")
                        ),
                    )
                })?
            }
        };
        let kid = jws.kid.as_deref();
        if matches!(set.lookup(kid, jws.alg), Lookup::UnknownKid) {
            jwks.refetch(Trigger::UnknownKid, seen).await;
            if let Some(s) = jwks.current() {
                set = s;
            }
        }
        let which = || match kid {
            Some(k) => format!("kid {k:?}, alg {}", jws.alg.as_str()),
            None => format!("no kid, alg {}", jws.alg.as_str()),
        };
        let key = match set.lookup(kid, jws.alg) {
            Lookup::Found(k) => k,
            Lookup::UnknownKid => return Err(invalid(format!("unknown {}", which()))),
            Lookup::NoMatch(why) => return Err(invalid(format!("{why} ({})", which()))),
        };
        let payload = jws
            .verify(key)
            .map_err(|e| invalid(format!("{e} ({})", which())))?;
        let raw = claims::parse(&payload).map_err(invalid)?;
        claims::check(&raw, &self.policy, now, true).map_err(invalid)?;
        Ok(claims::claims(&raw, &payload, &self.policy))
    }
}

async fn refresh_loop(verifier: Weak<JwtVerifier>, every: Duration) {
    let mut retry = Duration::from_secs(1);
    loop {
        let Some(v) = verifier.upgrade() else {
            return;
        };
        let ok = match &v.jwks {
            Some(j) => j.refresh().await,
            None => return,
        };
        drop(v);
        let delay = if ok {
            retry = Duration::from_secs(1);
            every
        } else {
            let d = retry.min(every);
            retry = (retry * 2).min(MAX_RETRY);
            d
        };
        tokio::time::sleep(delay).await;
    }
}
