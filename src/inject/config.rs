//! The webhook's configuration file (`countersign webhook -c webhook.yaml`): raw serde shapes with
//! unknown fields refused, validated into a [`WebhookConfig`] with every problem collected as
//! `file: field: message`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use super::patch::{InjectSettings, is_object_name};
use crate::config::{ConfigError, Problems, parse_duration, read_error};

/// The whole `webhook.yaml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhookConfig {
    listen: Option<String>,
    tls: Option<RawTls>,
    image: Option<String>,
    image_pull_policy: Option<String>,
    native_sidecar: Option<bool>,
    rewrite_app_probes: Option<bool>,
    #[serde(default)]
    sidecar: RawSidecar,
    reload_interval: Option<String>,
    shutdown_timeout: Option<String>,
    idle_timeout: Option<String>,
}

/// `tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
}

/// `sidecar:` what the injected container looks like.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    listen_port: Option<u16>,
    admin_port: Option<u16>,
    config_map: Option<String>,
    tls_secret: Option<String>,
    keys_secret: Option<String>,
    run_as_user: Option<i64>,
    log_format: Option<String>,
    resources: Option<RawResources>,
}

/// `sidecar.resources:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    requests: BTreeMap<String, RawQuantity>,
    #[serde(default)]
    limits: BTreeMap<String, RawQuantity>,
}

/// A quantity as YAML gives it: `50m` is a string, `1` and `0.5` are numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawQuantity {
    Text(String),
    Whole(u64),
    Fraction(f64),
}

impl RawQuantity {
    fn into_string(self) -> String {
        match self {
            RawQuantity::Text(s) => s,
            RawQuantity::Whole(n) => n.to_string(),
            RawQuantity::Fraction(f) => f.to_string(),
        }
    }
}

/// The validated webhook configuration.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where the HTTPS server listens.
    pub listen: SocketAddr,
    /// The serving certificate chain (PEM).
    pub cert: PathBuf,
    /// The serving private key (PEM).
    pub key: PathBuf,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
    /// How long in-flight reviews may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// A connection with no request open for this long is closed (HTTP/1.1 and HTTP/2); a request
    /// head must arrive within it too.
    pub idle_timeout: Duration,
    /// What gets injected.
    pub inject: InjectSettings,
}

/// The sidecar's default TLS port (the contract's `listen`).
pub const DEFAULT_LISTEN_PORT: u16 = 8443;
/// The sidecar's default admin port.
pub const DEFAULT_ADMIN_PORT: u16 = 9901;
/// The non-root UID of the image.
pub const DEFAULT_UID: i64 = 65532;

impl WebhookConfig {
    /// Reads and validates a webhook configuration file.
    pub fn load(path: &Path) -> Result<WebhookConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), read_error(&e)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml_str(&text, path, base)
    }

    /// Parses and validates YAML text; `source` names it in messages, `base_dir` resolves paths.
    pub fn from_yaml_str(
        text: &str,
        source: &Path,
        base_dir: &Path,
    ) -> Result<WebhookConfig, ConfigError> {
        let name = source.display().to_string();
        let raw: RawWebhookConfig = crate::config::parse_yaml(text, &name)?;
        validate(raw, &name, base_dir)
    }
}

fn validate(raw: RawWebhookConfig, name: &str, base: &Path) -> Result<WebhookConfig, ConfigError> {
    let mut p = Problems::new(name);
    let listen_s = raw.listen.as_deref().unwrap_or("0.0.0.0:9443");
    let listen = match listen_s.trim().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            p.field(
                "listen",
                format!("`{listen_s}` is not an address:port (write e.g. 0.0.0.0:9443)"),
            );
            SocketAddr::from(([0, 0, 0, 0], 9443))
        }
    };
    let tls = raw.tls.unwrap_or_default();
    let mut file = |v: Option<String>, field: &str| match v {
        Some(s) if !s.trim().is_empty() => {
            let path = PathBuf::from(s.trim());
            if path.is_absolute() {
                path
            } else {
                base.join(path)
            }
        }
        _ => {
            p.field(field, "is required (the webhook serves HTTPS only)");
            PathBuf::new()
        }
    };
    let cert = file(tls.cert, "tls.cert");
    let key = file(tls.key, "tls.key");

    let image = match raw.image {
        Some(i) if !i.is_empty() && !i.chars().any(char::is_whitespace) => i,
        Some(i) => {
            p.field("image", format!("`{i}` is not an image reference"));
            String::new()
        }
        None => {
            p.field("image", "is required: the sidecar image to inject");
            String::new()
        }
    };
    if let Some(pp) = &raw.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&pp.as_str())
    {
        p.field(
            "image_pull_policy",
            format!("`{pp}` is not Always, IfNotPresent or Never"),
        );
    }

    let sc = raw.sidecar;
    let listen_port = port(
        sc.listen_port,
        DEFAULT_LISTEN_PORT,
        "sidecar.listen_port",
        &mut p,
    );
    let admin_port = port(
        sc.admin_port,
        DEFAULT_ADMIN_PORT,
        "sidecar.admin_port",
        &mut p,
    );
    if listen_port == admin_port {
        p.field("sidecar.admin_port", "must differ from sidecar.listen_port");
    }
    let mut object = |v: Option<String>, default: &str, field: &str| {
        let v = v.unwrap_or_else(|| default.to_string());
        if !is_object_name(&v) {
            p.field(
                field,
                format!(
                    "`{v}` is not a valid object name (lower-case letters, digits, '-' and '.')"
                ),
            );
        }
        v
    };
    let config_map = object(sc.config_map, "countersign-config", "sidecar.config_map");
    let tls_secret = object(sc.tls_secret, "countersign-tls", "sidecar.tls_secret");
    let keys_secret = object(sc.keys_secret, "countersign-keys", "sidecar.keys_secret");
    let run_as_user = sc.run_as_user.unwrap_or(DEFAULT_UID);
    if run_as_user <= 0 {
        p.field(
            "sidecar.run_as_user",
            "must be a non-root UID (the sidecar runs as non-root)",
        );
    }
    let log_format = sc.log_format.unwrap_or_else(|| "json".into());
    if log_format != "json" && log_format != "text" {
        p.field(
            "sidecar.log_format",
            format!("`{log_format}` is not json or text"),
        );
    }
    let resources = resources(sc.resources, &mut p);

    let duration = |v: Option<String>, field: &str, default: u64, p: &mut Problems| match v {
        None => Duration::from_secs(default),
        Some(s) => match parse_duration(&s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                p.field(field, "must be more than zero");
                Duration::from_secs(default)
            }
            Err(m) => {
                p.field(field, m);
                Duration::from_secs(default)
            }
        },
    };
    let reload_interval = duration(raw.reload_interval, "reload_interval", 10, &mut p);
    let shutdown_timeout = duration(raw.shutdown_timeout, "shutdown_timeout", 15, &mut p);
    let idle_timeout = duration(raw.idle_timeout, "idle_timeout", 10, &mut p);

    p.finish(WebhookConfig {
        listen,
        cert,
        key,
        reload_interval,
        shutdown_timeout,
        idle_timeout,
        inject: InjectSettings {
            image,
            image_pull_policy: raw.image_pull_policy,
            native_sidecar: raw.native_sidecar.unwrap_or(true),
            listen_port,
            admin_port,
            config_map,
            tls_secret,
            keys_secret,
            resources,
            run_as_user,
            log_format,
            rewrite_probes: raw.rewrite_app_probes.unwrap_or(true),
        },
    })
}

fn port(v: Option<u16>, default: u16, field: &str, p: &mut Problems) -> u16 {
    match v {
        Some(0) => {
            p.field(field, "must be a port (1-65535)");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// Checks a Kubernetes resource quantity (`50m`, `128Mi`, `1.5`, `2e3`).
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
    ];
    let number_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(number_end);
    let digits_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit())
        && !number.starts_with('.');
    let suffix_ok = suffix.is_empty()
        || SUFFIXES.contains(&suffix)
        || ["P", "E"].contains(&suffix)
        || suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        });
    digits_ok && suffix_ok
}

fn resources(raw: Option<RawResources>, p: &mut Problems) -> ResourceRequirements {
    let raw = raw.unwrap_or_else(|| RawResources {
        requests: BTreeMap::from([
            ("cpu".into(), RawQuantity::Text("50m".into())),
            ("memory".into(), RawQuantity::Text("32Mi".into())),
        ]),
        limits: BTreeMap::from([
            ("cpu".into(), RawQuantity::Text("500m".into())),
            ("memory".into(), RawQuantity::Text("128Mi".into())),
        ]),
    });
    let mut convert = |m: BTreeMap<String, RawQuantity>, field: &str| {
        let mut out = BTreeMap::new();
        for (k, v) in m {
            let v = v.into_string();
            if !["cpu", "memory", "ephemeral-storage"].contains(&k.as_str()) {
                p.field(
                    &format!("{field}.{k}"),
                    "is not cpu, memory or ephemeral-storage",
                );
            } else if !is_quantity(&v) {
                p.field(
                    &format!("{field}.{k}"),
                    format!("`{v}` is not a quantity (write e.g. 50m, 1, 128Mi)"),
                );
            } else {
                out.insert(k, Quantity(v));
            }
        }
        (!out.is_empty()).then_some(out)
    };
    ResourceRequirements {
        requests: convert(raw.requests, "sidecar.resources.requests"),
        limits: convert(raw.limits, "sidecar.resources.limits"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(s: &str) -> Result<WebhookConfig, ConfigError> {
        WebhookConfig::from_yaml_str(s, Path::new("w.yaml"), Path::new("/etc/wh"))
    }

    const MIN: &str =
        "tls: {cert: tls.crt, key: /abs/tls.key}\nimage: ghcr.io/countersign/countersign:0.1.0\n";

    #[test]
    fn minimal_config_takes_the_contract_defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(c.cert, PathBuf::from("/etc/wh/tls.crt"));
        assert_eq!(c.key, PathBuf::from("/abs/tls.key"));
        let i = &c.inject;
        assert!(i.native_sidecar && i.rewrite_probes);
        assert_eq!((i.listen_port, i.admin_port), (8443, 9901));
        assert_eq!(i.run_as_user, 65532);
        let limits = i.resources.limits.as_ref().unwrap();
        assert_eq!(limits["memory"], Quantity("128Mi".into()));
        assert_eq!(c.reload_interval, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
    }

    #[test]
    fn numeric_quantities_are_taken_as_yaml_writes_them() {
        let c = load(&format!(
            "{MIN}sidecar:\n  resources:\n    requests: {{cpu: 0.5, memory: 64Mi}}\n    limits: {{cpu: 1}}\n"
        ))
        .unwrap();
        let r = c.inject.resources;
        assert_eq!(r.requests.unwrap()["cpu"], Quantity("0.5".into()));
        assert_eq!(r.limits.unwrap()["cpu"], Quantity("1".into()));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = load(&format!("{MIN}sidecar:\n  admin_prot: 1\n")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("w.yaml: sidecar"), "{s}");
        assert!(s.contains("unknown field `admin_prot`"), "{s}");
    }

    #[test]
    fn every_problem_is_collected() {
        let e = load(
            "listen: nowhere\nimage: \"a b\"\nimage_pull_policy: Sometimes\nsidecar:\n  listen_port: 9901\n  config_map: Bad_Name\n  resources:\n    requests: {cpu: lots, gpu: \"1\"}\nreload_interval: 0s\nidle_timeout: soon\n",
        )
        .unwrap_err();
        let s = e.to_string();
        for want in [
            "w.yaml: listen: `nowhere`",
            "w.yaml: tls.cert: is required",
            "w.yaml: tls.key: is required",
            "w.yaml: image: `a b`",
            "w.yaml: image_pull_policy: `Sometimes`",
            "w.yaml: sidecar.admin_port: must differ",
            "w.yaml: sidecar.config_map: `Bad_Name`",
            "w.yaml: sidecar.resources.requests.cpu: `lots`",
            "w.yaml: sidecar.resources.requests.gpu: is not cpu",
            "w.yaml: reload_interval: must be more than zero",
            "w.yaml: idle_timeout: ",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["50m", "1", "0.5", "128Mi", "1Gi", "2e3", "1E-2", "100k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1.2.3", ".5", "12MB", "1 Gi", "-1", "1e", "lots"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
