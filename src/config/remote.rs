//! Settings for state that lives on other machines: the Redis replay store several sidecars share
//! (`signature.replay: redis://...`) and the key registry fetched over HTTPS (`keys: https://...`).
//! Validated here; nothing is contacted (`countersign check` parses the Redis URL, never connects).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::file::{RawConfig, RawSignature};
use super::{KeySource, Problems, duration_or, resolve};

/// What a request gets when the Redis replay store cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOnError {
    /// Refuse it: 503 `replay_store_unavailable` (the default).
    FailClosed,
    /// Forward it unrecorded, count `countersign_replay_store_errors_total` and log.
    FailOpen,
}

impl ReplayOnError {
    /// `fail_closed` or `fail_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOnError::FailClosed => "fail_closed",
            ReplayOnError::FailOpen => "fail_open",
        }
    }
}

/// `signature.replay: redis://host:port/db` and its companions.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisReplaySettings {
    /// The URL as written (it may hold a password: print [`RedisReplaySettings::redacted`]).
    pub url: String,
    /// `signature.replay_on_error`.
    pub on_error: ReplayOnError,
    /// `signature.replay_timeout`: the most one check may take, connecting included.
    pub timeout: Duration,
    /// `signature.replay_key_prefix`: prepended to the hex SHA-256 of each signature.
    pub key_prefix: String,
    /// `signature.replay_ca_file`: PEM CA certificates trusted for `rediss://` instead of the
    /// system roots.
    pub ca_file: Option<PathBuf>,
}

impl RedisReplaySettings {
    /// The URL with any password replaced by `***`, for logs and summaries.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for RedisReplaySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplaySettings")
            .field("url", &self.redacted())
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A URL with its password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// The default `signature.replay_timeout`.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = Duration::from_millis(200);
/// The default `signature.replay_key_prefix`.
pub const DEFAULT_REPLAY_KEY_PREFIX: &str = "countersign:replay:";

/// Validates `signature.replay: redis://...` with its companion fields.
pub(super) fn validate_redis(
    url: &str,
    s: &RawSignature,
    base: &Path,
    p: &mut Problems,
) -> RedisReplaySettings {
    match url.into_connection_info() {
        Ok(info) => match info.addr() {
            redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. }
                if host.is_empty() =>
            {
                p.field("signature.replay", "the Redis URL names no host");
            }
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => p.field(
                "signature.replay",
                "#insecure turns off the Redis server's certificate check; trust its CA with signature.replay_ca_file instead",
            ),
            _ => {}
        },
        Err(e) => p.field(
            "signature.replay",
            format!(
                "`{}` is not a Redis URL ({}); write redis://host:6379/0 or rediss://host:6380/0",
                redact(url),
                e.detail().unwrap_or("invalid")
            ),
        ),
    }
    let on_error = match s.replay_on_error.as_deref().unwrap_or("fail_closed") {
        "fail_closed" => ReplayOnError::FailClosed,
        "fail_open" => ReplayOnError::FailOpen,
        other => {
            p.field(
                "signature.replay_on_error",
                format!("`{other}` is not one of fail_closed, fail_open"),
            );
            ReplayOnError::FailClosed
        }
    };
    let timeout = duration_or(
        &s.replay_timeout,
        "signature.replay_timeout",
        DEFAULT_REPLAY_TIMEOUT,
        p,
    );
    if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&timeout) {
        p.field(
            "signature.replay_timeout",
            "must be between 10ms and 10s (every signed request waits for it)",
        );
    }
    let key_prefix = s
        .replay_key_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_REPLAY_KEY_PREFIX.to_string());
    if key_prefix.len() > 128 {
        p.field("signature.replay_key_prefix", "must be at most 128 bytes");
    }
    let ca_file = s
        .replay_ca_file
        .as_deref()
        .map(|f| resolve(base, Path::new(f)));
    if ca_file.is_some() && !url.starts_with("rediss://") {
        p.field(
            "signature.replay_ca_file",
            "applies only to a rediss:// (TLS) replay store",
        );
    }
    RedisReplaySettings {
        url: url.to_string(),
        on_error,
        timeout,
        key_prefix,
        ca_file,
    }
}

/// Refuses the Redis companion fields when the replay store is not Redis.
pub(super) fn refuse_redis_fields(s: &RawSignature, p: &mut Problems) {
    for (name, set) in [
        ("replay_on_error", s.replay_on_error.is_some()),
        ("replay_timeout", s.replay_timeout.is_some()),
        ("replay_key_prefix", s.replay_key_prefix.is_some()),
        ("replay_ca_file", s.replay_ca_file.is_some()),
    ] {
        if set {
            p.field(
                &format!("signature.{name}"),
                "applies only to a redis:// replay store",
            );
        }
    }
}

/// How a remote key registry (`keys: https://...`) is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFetch {
    /// `keys_ca_file`: PEM CA certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// `keys_refresh`: how often the registry is polled (default `reload.poll_interval`).
    pub refresh: Duration,
    /// `keys_timeout`: the most one fetch may take, body included.
    pub timeout: Duration,
    /// `keys_max_bytes`: the largest registry document accepted.
    pub max_bytes: usize,
}

/// The default `keys_timeout`.
pub const DEFAULT_KEYS_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `keys_max_bytes` (1 MiB).
pub const DEFAULT_KEYS_MAX_BYTES: usize = 1 << 20;

/// Validates `keys_ca_file`, `keys_refresh`, `keys_timeout` and `keys_max_bytes`, which apply only
/// to an `https://` registry.
pub(super) fn validate_keys_fetch(
    raw: &RawConfig,
    keys: Option<&KeySource>,
    poll_interval: Duration,
    base: &Path,
    p: &mut Problems,
) -> KeysFetch {
    if !matches!(keys, Some(KeySource::Url(_))) {
        for (name, set) in [
            ("keys_ca_file", raw.keys_ca_file.is_some()),
            ("keys_refresh", raw.keys_refresh.is_some()),
            ("keys_timeout", raw.keys_timeout.is_some()),
            ("keys_max_bytes", raw.keys_max_bytes.is_some()),
        ] {
            if set {
                p.field(name, "applies only when keys: is an https:// URL");
            }
        }
    }
    let refresh = duration_or(&raw.keys_refresh, "keys_refresh", poll_interval, p);
    if refresh < Duration::from_millis(100) {
        p.field("keys_refresh", "must be at least 100ms");
    }
    let timeout = duration_or(&raw.keys_timeout, "keys_timeout", DEFAULT_KEYS_TIMEOUT, p);
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&timeout) {
        p.field("keys_timeout", "must be between 100ms and 60s");
    }
    let max_bytes = raw.keys_max_bytes.unwrap_or(DEFAULT_KEYS_MAX_BYTES);
    if !(1024..=64 << 20).contains(&max_bytes) {
        p.field("keys_max_bytes", "must be between 1024 and 67108864");
    }
    KeysFetch {
        ca_file: raw
            .keys_ca_file
            .as_deref()
            .map(|f| resolve(base, Path::new(f))),
        refresh,
        timeout,
        max_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, ReplaySetting};
    use super::*;

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "upstream: http://127.0.0.1:8080\nroutes:\n  - path: /\n    require: []\n{extra}"
        );
        Config::from_yaml_str(&text, Path::new("c.yaml"), Path::new("/etc/cs"))
    }

    #[test]
    fn redis_replay_defaults() {
        let c = load("signature:\n  replay: redis://127.0.0.1:6379/2\n").unwrap();
        let ReplaySetting::Redis(r) = &c.signature.replay else {
            panic!("{:?}", c.signature.replay)
        };
        assert_eq!(r.url, "redis://127.0.0.1:6379/2");
        assert_eq!(r.on_error, ReplayOnError::FailClosed);
        assert_eq!(r.timeout, DEFAULT_REPLAY_TIMEOUT);
        assert_eq!(r.key_prefix, DEFAULT_REPLAY_KEY_PREFIX);
        assert_eq!(r.ca_file, None);
    }

    #[test]
    fn redis_replay_settings_and_redaction() {
        let c = load("signature:\n  replay: rediss://:hunter2@redis.example:6380/0\n  replay_on_error: fail_open\n  replay_timeout: 50ms\n  replay_key_prefix: \"orders:\"\n  replay_ca_file: redis-ca.pem\n").unwrap();
        let ReplaySetting::Redis(r) = &c.signature.replay else {
            panic!()
        };
        assert_eq!(r.on_error, ReplayOnError::FailOpen);
        assert_eq!(r.timeout, Duration::from_millis(50));
        assert_eq!(r.key_prefix, "orders:");
        assert_eq!(r.ca_file, Some(PathBuf::from("/etc/cs/redis-ca.pem")));
        assert_eq!(r.redacted(), "rediss://:***@redis.example:6380/0");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn redis_replay_problems() {
        let e = load("signature:\n  replay: redis://127.0.0.1:6379/notadb\n  replay_on_error: maybe\n  replay_timeout: 1h\n  replay_ca_file: ca.pem\n").unwrap_err().to_string();
        assert!(
            e.contains(
                "c.yaml: signature.replay: `redis://127.0.0.1:6379/notadb` is not a Redis URL"
            ),
            "{e}"
        );
        assert!(e.contains("signature.replay_on_error: `maybe`"), "{e}");
        assert!(
            e.contains("signature.replay_timeout: must be between"),
            "{e}"
        );
        assert!(
            e.contains("signature.replay_ca_file: applies only to a rediss://"),
            "{e}"
        );
        let e = load("signature:\n  replay: \"rediss://127.0.0.1:6380/0#insecure\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("#insecure turns off"), "{e}");
        let e = load("signature:\n  replay: memory\n  replay_on_error: fail_open\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("signature.replay_on_error: applies only to a redis:// replay store"),
            "{e}"
        );
    }

    #[test]
    fn keys_fetch_settings() {
        let c = load("keys: https://keys.example/registry.yaml\nkeys_ca_file: ca.pem\nkeys_refresh: 5s\nreload:\n  poll_interval: 2s\n").unwrap();
        assert_eq!(
            c.keys_fetch,
            KeysFetch {
                ca_file: Some(PathBuf::from("/etc/cs/ca.pem")),
                refresh: Duration::from_secs(5),
                timeout: DEFAULT_KEYS_TIMEOUT,
                max_bytes: DEFAULT_KEYS_MAX_BYTES,
            }
        );
        let c = load("keys: https://keys.example/registry.yaml\nreload:\n  poll_interval: 2s\n")
            .unwrap();
        assert_eq!(c.keys_fetch.refresh, Duration::from_secs(2));
        let e = load("keys: keys.yaml\nkeys_ca_file: ca.pem\nkeys_max_bytes: 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.yaml: keys_ca_file: applies only when keys: is an https:// URL"),
            "{e}"
        );
        assert!(e.contains("keys_max_bytes: must be between"), "{e}");
    }
}
