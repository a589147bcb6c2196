//! Opaque tokens: OAuth 2.0 Token Introspection (RFC 7662) with client credentials, and a bounded
//! cache keyed by the SHA-256 of the token (the token itself is never stored or logged).
//!
//! An active answer is cached until its `exp` (at most `cache_ttl`), a refusal for
//! [`NEGATIVE_TTL`]; an endpoint failure is not cached and answers 503.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ring::digest;

use super::INTROSPECTION_TOTAL;
use super::claims::{self, Claims, Policy};
use super::fetch::{Fetcher, form_encode};
use crate::config::IntrospectionSettings;
use crate::reject::{Denial, Reject};

/// How long a refusal (inactive, or failing a claim check) is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// The largest introspection answer accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type Verdict = Result<Claims, Cow<'static, str>>;

struct Entry {
    /// Unix seconds after which the entry is stale.
    until: i64,
    verdict: Verdict,
}

/// The introspection client of one verifier.
pub struct Introspector {
    url: String,
    client_id: String,
    client_secret: String,
    fetcher: Fetcher,
    capacity: usize,
    max_ttl: i64,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn result_label(v: &Verdict) -> &'static str {
    if v.is_ok() { "active" } else { "inactive" }
}

impl Introspector {
    /// A client for `settings` that talks through `fetcher` (no network yet).
    pub fn new(settings: &IntrospectionSettings, fetcher: Fetcher) -> Introspector {
        Introspector {
            url: settings.url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            fetcher,
            capacity: settings.cache_size,
            max_ttl: i64::try_from(settings.cache_ttl.as_secs()).unwrap_or(i64::MAX),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Asks the endpoint about `token` (or the cache), then checks the answer's claims at `now`.
    pub async fn introspect(
        &self,
        token: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<Claims, Denial> {
        let key: [u8; 32] = digest::digest(&digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        if let Some(verdict) = self.cached(&key, now) {
            metrics::counter!(INTROSPECTION_TOTAL, "result" => "cached").increment(1);
            return verdict.map_err(|d| {
                Denial::new(
                    Reject::TokenInvalid,
                    format!("{d} (cached introspection result)"),
                )
            });
        }
        let form = format!("token={}&token_type_hint=access_token", form_encode(token));
        let body = match self
            .fetcher
            .post_form(
                &self.url,
                &self.client_id,
                &self.client_secret,
                form,
                MAX_RESPONSE_BYTES,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => {
                metrics::counter!(INTROSPECTION_TOTAL, "result" => "error").increment(1);
                return Err(Denial::new(
                    Reject::JwksUnavailable,
                    format!("introspection endpoint {}: {e}", self.url),
                ));
            }
        };
        let (verdict, until) = match claims::parse(&body) {
            Err(e) => {
                metrics::counter!(INTROSPECTION_TOTAL, "result" => "error").increment(1);
                return Err(Denial::new(
                    Reject::JwksUnavailable,
                    format!(
                        "introspection endpoint {}: not an RFC 7662 answer: {e}",
                        self.url
                    ),
                ));
            }
            Ok(raw) if raw.active != Some(true) => (
                Err(Cow::Borrowed("introspection: the token is not active")),
                now.saturating_add(NEGATIVE_TTL.as_secs() as i64),
            ),
            Ok(raw) => match claims::check(&raw, policy, now, false) {
                Err(e) => (
                    Err(Cow::Owned(format!("introspection: {e}"))),
                    now.saturating_add(NEGATIVE_TTL.as_secs() as i64),
                ),
                Ok(()) => {
                    let cap = now.saturating_add(self.max_ttl);
                    let until = raw.exp().map_or(cap, |exp| exp.min(cap));
                    (Ok(claims::claims(&raw, &body, policy)), until)
                }
            },
        };
        metrics::counter!(INTROSPECTION_TOTAL, "result" => result_label(&verdict)).increment(1);
        self.store(key, until, &verdict, now);
        verdict.map_err(|d| Denial::new(Reject::TokenInvalid, d))
    }

    fn cached(&self, key: &[u8; 32], now: i64) -> Option<Verdict> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|e| now < e.until)
            .map(|e| e.verdict.clone())
    }

    fn store(&self, key: [u8; 32], until: i64, verdict: &Verdict, now: i64) {
        if self.capacity == 0 || until <= now {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= self.capacity && !cache.contains_key(&key) {
            cache.retain(|_, e| now < e.until);
            if cache.len() >= self.capacity
                && let Some(soonest) = cache.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k)
            {
                cache.remove(&soonest);
            }
        }
        cache.insert(
            key,
            Entry {
                until,
                verdict: verdict.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn introspector(capacity: usize) -> Introspector {
        let settings = IntrospectionSettings {
            url: "http://127.0.0.1:1/introspect".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            cache_size: capacity,
            cache_ttl: Duration::from_secs(300),
        };
        Introspector::new(&settings, Fetcher::new(None).unwrap())
    }

    fn key(i: u8) -> [u8; 32] {
        [i; 32]
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_expired_then_soonest() {
        let c = introspector(3);
        let ok: Verdict = Ok(Claims::default());
        c.store(key(1), 100, &ok, 0);
        c.store(key(2), 50, &ok, 0);
        c.store(key(3), 200, &ok, 0);
        c.store(key(4), 300, &ok, 0);
        // Full: the entry expiring soonest (2) made room.
        assert!(c.cached(&key(2), 0).is_none());
        for k in [1, 3, 4] {
            assert!(c.cached(&key(k), 0).is_some(), "{k}");
        }
        // Later, expired entries (1) go first.
        c.store(key(5), 400, &Err(Cow::Borrowed("inactive")), 150);
        assert!(c.cached(&key(1), 150).is_none());
        assert!(c.cached(&key(3), 150).is_some());
        assert!(matches!(c.cached(&key(5), 150), Some(Err(_))));
        assert_eq!(c.cache.lock().unwrap().len(), 3);
        // Stale entries are not served.
        assert!(c.cached(&key(3), 200).is_none());
    }

    #[test]
    fn a_zero_sized_cache_and_past_expiry_store_nothing() {
        let c = introspector(0);
        c.store(key(1), 100, &Ok(Claims::default()), 0);
        assert!(c.cached(&key(1), 0).is_none());
        let c = introspector(10);
        c.store(key(1), 100, &Ok(Claims::default()), 100);
        assert!(c.cached(&key(1), 100).is_none());
    }
}
