//! Replay detection shared by the sidecars in front of every replica of one backend: an accepted
//! signature is recorded in Redis with `SET <prefix><hex SHA-256> 1 NX PX <ms until stale>`, and a
//! failing `NX` means some replica already accepted it. Like the memory store it is checked last,
//! after a request passed everything else.
//!
//! Bounded: every check (connecting included) finishes within `signature.replay_timeout`; the
//! connection manager reconnects in the background after Redis went away. When Redis cannot
//! answer, `signature.replay_on_error` decides: refuse (`replay_store_unavailable`, the default) or
//! forward unrecorded; either way `countersign_replay_store_errors_total` counts it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{RedisReplaySettings, ReplayOnError};
use crate::reject::{Denial, Reject};

/// While Redis keeps failing, a reminder is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The replay store in Redis. Built without connecting (so `countersign check` never does); the
/// connection is made on the first check and kept across reloads while the settings are unchanged.
pub struct RedisReplay {
    settings: RedisReplaySettings,
    /// The content of `replay_ca_file` the client trusts, to notice when the file changes.
    ca_pem: Option<Vec<u8>>,
    client: redis::Client,
    manager: OnceLock<Result<ConnectionManager, String>>,
    failing: AtomicBool,
    last_logged: AtomicU64,
}

impl std::fmt::Debug for RedisReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn read_ca(settings: &RedisReplaySettings) -> Result<Option<Vec<u8>>, String> {
    settings
        .ca_file
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| {
                format!(
                    "replay_ca_file {}: {}",
                    p.display(),
                    crate::config::read_error(&e)
                )
            })
        })
        .transpose()
}

impl RedisReplay {
    /// Parses the URL and reads `replay_ca_file`; opens no connection.
    pub fn new(settings: &RedisReplaySettings) -> Result<RedisReplay, String> {
        let ca_pem = read_ca(settings)?;
        if let (Some(pem), Some(path)) = (&ca_pem, &settings.ca_file) {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("replay_ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "replay_ca_file {}: no PEM certificate",
                    path.display()
                ));
            }
        }
        let client = match &ca_pem {
            None => redis::Client::open(settings.url.as_str()),
            Some(pem) => redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| format!("{}: {e}", settings.redacted()))?;
        Ok(RedisReplay {
            settings: settings.clone(),
            ca_pem,
            client,
            manager: OnceLock::new(),
            failing: AtomicBool::new(false),
            last_logged: AtomicU64::new(0),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &RedisReplaySettings {
        &self.settings
    }

    /// True when it was built from `settings` and the CA file is unchanged, so a rebuilt snapshot
    /// can keep it (and its connection).
    pub fn serves(&self, settings: &RedisReplaySettings) -> bool {
        self.settings == *settings && read_ca(settings).is_ok_and(|pem| pem == self.ca_pem)
    }

    /// Refuses `token` when some sidecar sharing this Redis already accepted it; otherwise records
    /// it until `until`. When Redis cannot answer within `replay_timeout`: refused
    /// `replay_store_unavailable` (fail_closed) or let through unrecorded (fail_open).
    pub async fn check_and_record(
        &self,
        token: [u8; 32],
        until: SystemTime,
        now: SystemTime,
    ) -> Result<(), Denial> {
        // A signature already stale needs no memory (the verifier refuses it from now on).
        let Ok(left) = until.duration_since(now) else {
            return Ok(());
        };
        let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        let outcome =
            match tokio::time::timeout(self.settings.timeout, self.set_nx(&token, ms)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer within signature.replay_timeout ({:?})",
                    self.settings.timeout
                )),
            };
        match outcome {
            Ok(recorded) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(store = %self.settings.redacted(), "replay store reachable again");
                }
                if recorded {
                    Ok(())
                } else {
                    Err(Denial::new(
                        Reject::Replayed,
                        "this signature was already accepted inside its validity window (shared replay store)",
                    ))
                }
            }
            Err(e) => self.unavailable(e),
        }
    }

    /// `SET key 1 NX PX ms`: true when recorded now, false when the key was already there.
    async fn set_nx(&self, token: &[u8; 32], ms: u64) -> Result<bool, String> {
        let mut conn = self.manager()?.clone();
        let mut hex = [0u8; 64];
        hex::encode_to_slice(token, &mut hex).map_err(|e| e.to_string())?;
        let mut key = Vec::with_capacity(self.settings.key_prefix.len() + hex.len());
        key.extend_from_slice(self.settings.key_prefix.as_bytes());
        key.extend_from_slice(&hex);
        let reply: redis::Value = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        match reply {
            redis::Value::Okay => Ok(true),
            redis::Value::Nil => Ok(false),
            other => Err(format!("unexpected reply to SET NX: {other:?}")),
        }
    }

    /// The connection manager, made on first use (it needs the tokio runtime).
    fn manager(&self) -> Result<&ConnectionManager, String> {
        let t = self.settings.timeout;
        self.manager
            .get_or_init(|| {
                // Reconnect attempts are short and few: a request never waits past `timeout`
                // anyway, and the next request after a failed attempt starts a new one.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    .set_number_of_retries(1)
                    .set_min_delay(t / 4)
                    .set_max_delay(t);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn unavailable(&self, why: String) -> Result<(), Denial> {
        let on_error = self.settings.on_error;
        crate::metrics::replay_store_error(on_error.as_str());
        let first = !self.failing.swap(true, Ordering::AcqRel);
        let now = crate::sys::unix_now_f64() as u64;
        let last = self.last_logged.load(Ordering::Relaxed);
        if first || now.saturating_sub(last) >= LOG_EVERY.as_secs() {
            self.last_logged.store(now, Ordering::Relaxed);
            let consequence = match on_error {
                ReplayOnError::FailClosed => {
                    "signed requests are refused replay_store_unavailable until it answers"
                }
                ReplayOnError::FailOpen => {
                    "signed requests are forwarded WITHOUT replay protection until it answers"
                }
            };
            tracing::error!(
                store = %self.settings.redacted(),
                on_error = on_error.as_str(),
                error = %why,
                "replay store unavailable: {consequence}"
            );
        }
        match on_error {
            ReplayOnError::FailOpen => Ok(()),
            ReplayOnError::FailClosed => Err(Denial::new(
                Reject::ReplayStoreUnavailable,
                format!(
                    "replay store {} unavailable: {why}",
                    self.settings.redacted()
                ),
            )),
        }
    }
}
