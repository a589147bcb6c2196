//! The key registry: keyId -> a ready key (an HMAC key or a validated public key) in an `Arc`,
//! plus API keys by their SHA-256. Parsed and checked once at load, never per request.
//!
//! The file (YAML, or JSON of the same shape):
//! ```yaml
//! keys:
//!   - id: tyk-edge-hmac
//!     algorithm: hmac-sha256
//!     secret_env: TYK_SIGNING_SECRET   # or secret_file, secret_base64, secret (inline UTF-8), jwk (kty oct)
//!   - id: tyk-edge-rsa
//!     algorithm: rsa-sha256
//!     public_key: tyk-edge.pub.pem     # SPKI, PKCS#1 or certificate PEM (a file, or inline), or a JWK/JWKS .json file
//!     ip_allow: [203.0.113.0/24]
//!     required: ["(request-target)", date, digest]
//!     not_before: 2026-01-01T00:00:00Z
//!     not_after: 2027-06-30T00:00:00Z
//!   - id: legacy-batch-job
//!     api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```

pub mod algorithm;
pub mod pubkey;
pub mod remote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub use algorithm::{Algorithm, KeyType};
pub use pubkey::PublicKey;

use crate::config::{ConfigError, Problems, SignatureSettings, parse_nets, read_error};
use crate::policy::ipset::IpSet;

/// The registry file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    keys: Vec<RawKey>,
}

/// One `keys:` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: Option<String>,
    algorithm: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    secret_base64: Option<String>,
    public_key: Option<String>,
    jwk: Option<serde_json::Value>,
    api_key_sha256: Option<String>,
    #[serde(default)]
    legacy_sha1: bool,
    #[serde(default)]
    ip_allow: Vec<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    description: Option<String>,
}

/// What a key verifies.
#[derive(Debug)]
pub enum KeyKind {
    /// A shared secret for an HMAC algorithm.
    Hmac {
        /// The registered algorithm.
        algorithm: Algorithm,
        /// The ready ring key.
        key: ring::hmac::Key,
    },
    /// A public key for an asymmetric algorithm.
    Public {
        /// The registered algorithm.
        algorithm: Algorithm,
        /// The validated key.
        key: PublicKey,
    },
    /// An API key, known only by its SHA-256.
    ApiKey {
        /// SHA-256 of the key.
        sha256: [u8; 32],
    },
}

/// One registered key, ready to use.
#[derive(Debug)]
pub struct Key {
    /// The key id (`keyId` / `keyid` in requests).
    pub id: Arc<str>,
    /// The id as a header value, for `X-Countersign-Key-Id`.
    pub id_header: HeaderValue,
    /// Networks the key may be used from; `None` means anywhere.
    pub ip_allow: Option<IpSet>,
    /// The same networks as written (for summaries and messages).
    pub ip_allow_nets: Vec<ipnet::IpNet>,
    /// Not valid before this time.
    pub not_before: Option<SystemTime>,
    /// Not valid after this time.
    pub not_after: Option<SystemTime>,
    /// Components this key's signatures must cover on top of `signature.required`.
    pub required: Vec<String>,
    /// `sha256:` and 16 hex digits of the SHA-256 of the secret, SPKI or API-key hash.
    pub fingerprint: String,
    /// The operator's note.
    pub description: Option<String>,
    /// What the key verifies.
    pub kind: KeyKind,
}

impl Key {
    /// The registered signature algorithm (`None` for API keys).
    pub fn algorithm(&self) -> Option<Algorithm> {
        match &self.kind {
            KeyKind::Hmac { algorithm, .. } | KeyKind::Public { algorithm, .. } => Some(*algorithm),
            KeyKind::ApiKey { .. } => None,
        }
    }

    /// True for an API-key entry.
    pub fn is_api_key(&self) -> bool {
        matches!(self.kind, KeyKind::ApiKey { .. })
    }

    /// `Err(why)` when the key is outside `not_before`..`not_after` at `now`.
    pub fn check_validity(&self, now: SystemTime) -> Result<(), String> {
        if let Some(nb) = self.not_before
            && now < nb
        {
            return Err(format!(
                "key `{}` is not valid before {}",
                self.id,
                rfc3339(nb)
            ));
        }
        if let Some(na) = self.not_after
            && now > na
        {
            return Err(format!(
                "key `{}` expired at {} (not_after)",
                self.id,
                rfc3339(na)
            ));
        }
        Ok(())
    }
}

/// A time as RFC 3339 (UTC, seconds); a time outside years 0-9999 (a client's `expires`, a
/// `--at`) as its Unix seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|odt| {
            odt.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("Unix time {secs} (outside years 0-9999)"))
}

/// One line of `countersign check`'s key summary. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    /// The key id.
    pub id: String,
    /// The algorithm name, or `api-key`.
    pub algorithm: String,
    /// `sha256:` + 16 hex digits.
    pub fingerprint: String,
    /// `always`, or the validity window in RFC 3339.
    pub validity: String,
    /// The networks the key is limited to (empty: anywhere).
    pub ip_allow: Vec<String>,
}

/// The registry file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON (the same shape).
    Json,
}

impl Format {
    /// JSON for a `.json` path, YAML otherwise.
    pub fn from_path(p: &Path) -> Format {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Every loaded key, by id, and the API keys.
#[derive(Debug, Default)]
pub struct Registry {
    keys: Vec<Arc<Key>>,
    /// foldhash rather than SipHash: the map is built from the operator's file, so a client's
    /// `keyId` can only look up, never fill it with colliding entries.
    by_id: HashMap<Arc<str>, Arc<Key>, foldhash::fast::RandomState>,
    api_keys: Vec<Arc<Key>>,
    warnings: Vec<String>,
    files: Vec<(PathBuf, [u8; 32])>,
}

impl Registry {
    /// Reads and validates a registry file (YAML, or JSON for `.json`).
    pub fn load(path: &Path, settings: &SignatureSettings) -> Result<Registry, ConfigError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), read_error(&e)))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_bytes(&bytes, Format::from_path(path), path, &base, settings)
    }

    /// Parses YAML text; `source` names it in messages, `base_dir` resolves key files.
    pub fn from_yaml_str(
        text: &str,
        source: &Path,
        base_dir: &Path,
        settings: &SignatureSettings,
    ) -> Result<Registry, ConfigError> {
        Self::from_bytes(text.as_bytes(), Format::Yaml, source, base_dir, settings)
    }

    /// Parses a registry in either format; `public_key`, `jwk` and `secret_file` name files
    /// relative to `base_dir`.
    pub fn from_bytes(
        bytes: &[u8],
        format: Format,
        source: &Path,
        base_dir: &Path,
        settings: &SignatureSettings,
    ) -> Result<Registry, ConfigError> {
        Self::parse(
            bytes,
            format,
            &source.display().to_string(),
            Some(base_dir),
            settings,
        )
    }

    /// Parses a registry fetched from `url`: key material must be inline (`secret_base64`,
    /// `secret`, `jwk` objects, `public_key` PEM text, `api_key_sha256`); names of files or
    /// environment variables on this machine are refused.
    pub fn from_remote_bytes(
        bytes: &[u8],
        format: Format,
        url: &str,
        settings: &SignatureSettings,
    ) -> Result<Registry, ConfigError> {
        Self::parse(bytes, format, url, None, settings)
    }

    fn parse(
        bytes: &[u8],
        format: Format,
        name: &str,
        base_dir: Option<&Path>,
        settings: &SignatureSettings,
    ) -> Result<Registry, ConfigError> {
        let name = name.to_string();
        let raw: RawRegistry = match format {
            Format::Yaml => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| ConfigError::one(name.clone(), "not UTF-8 text"))?;
                crate::config::parse_yaml(text, &name)?
            }
            Format::Json => crate::config::parse_json(bytes, &name)?,
        };
        build(raw, &name, base_dir, settings)
    }

    /// The key with this id.
    pub fn get(&self, key_id: &str) -> Option<&Arc<Key>> {
        self.by_id.get(key_id)
    }

    /// The API-key entry whose SHA-256 matches the presented key (compared in constant time
    /// against every entry).
    pub fn find_api_key(&self, presented: &[u8]) -> Option<&Arc<Key>> {
        let digest = ring::digest::digest(&ring::digest::SHA256, presented);
        let mut found = None;
        for k in &self.api_keys {
            if let KeyKind::ApiKey { sha256 } = &k.kind
                && bool::from(sha256.ct_eq(digest.as_ref()))
            {
                found = Some(k);
            }
        }
        found
    }

    /// The files key material was read from (`secret_file`, `public_key`, a `jwk` file), each
    /// with the SHA-256 of what was read, so the reload watch follows a rotated key file even
    /// when the registry file itself does not change.
    pub fn files(&self) -> &[(PathBuf, [u8; 32])] {
        &self.files
    }

    /// How many keys (of every kind) are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in file order.
    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// Things `check` should warn about (inline secrets, short secrets, legacy algorithms).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One line per key for `countersign check`.
    pub fn summary(&self) -> Vec<KeySummary> {
        self.keys
            .iter()
            .map(|k| KeySummary {
                id: k.id.to_string(),
                algorithm: k
                    .algorithm()
                    .map(|a| a.name().to_string())
                    .unwrap_or_else(|| "api-key".to_string()),
                fingerprint: k.fingerprint.clone(),
                validity: match (k.not_before, k.not_after) {
                    (None, None) => "always".to_string(),
                    (nb, na) => format!(
                        "{} .. {}",
                        nb.map(rfc3339).unwrap_or_default(),
                        na.map(rfc3339).unwrap_or_default()
                    ),
                },
                ip_allow: k.ip_allow_nets.iter().map(|n| n.to_string()).collect(),
            })
            .collect()
    }
}

fn fingerprint(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(&d.as_ref()[..8]))
}

fn parse_time(s: &str, field: &str, p: &mut Problems) -> Option<SystemTime> {
    match time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339) {
        Ok(t) => Some(SystemTime::from(t)),
        Err(_) => {
            p.field(
                field,
                format!("`{s}` is not an RFC 3339 time (write e.g. 2026-01-01T00:00:00Z)"),
            );
            None
        }
    }
}

fn resolve(base: &Path, f: &str) -> PathBuf {
    let p = Path::new(f);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Removes one trailing line break (`echo secret > file` adds one).
fn strip_newline(mut b: Vec<u8>) -> Vec<u8> {
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    b
}

struct Ctx<'a> {
    file: &'a str,
    /// `None` for a remote registry: no file may be named.
    base: Option<&'a Path>,
    settings: &'a SignatureSettings,
    /// Every key file read, with the SHA-256 of its bytes.
    read: std::cell::RefCell<Vec<(PathBuf, [u8; 32])>>,
}

impl Ctx<'_> {
    /// Reads a key file named in the registry (relative to it) and remembers it for the watch;
    /// a remote registry may not name files.
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        let path = self.local_file(file)?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{file}: {}", read_error(&e)))?;
        let mut print = [0u8; 32];
        print.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|(p, _)| *p == path) {
            read.push((path, print));
        }
        Ok(bytes)
    }
}

impl Ctx<'_> {
    /// The local file `f` names, or why a remote registry may not name one.
    fn local_file(&self, f: &str) -> Result<PathBuf, String> {
        match self.base {
            Some(base) => Ok(resolve(base, f)),
            None => Err(format!("{f}: {INLINE_ONLY}")),
        }
    }
}

/// Why a remote registry may not name files or environment variables.
const INLINE_ONLY: &str = "a remote registry must carry its key material inline (secret_base64, jwk, public_key as PEM text, api_key_sha256), not name files or environment variables of the sidecar";

fn build(
    raw: RawRegistry,
    file: &str,
    base: Option<&Path>,
    settings: &SignatureSettings,
) -> Result<Registry, ConfigError> {
    let mut p = Problems::new(file);
    let ctx = Ctx {
        file,
        base,
        settings,
        read: std::cell::RefCell::new(Vec::new()),
    };
    let mut reg = Registry::default();
    if raw.keys.is_empty() {
        reg.warnings.push(format!(
            "{file}: keys: the registry has no keys (every signature and API key will be refused)"
        ));
    }
    for (i, rk) in raw.keys.into_iter().enumerate() {
        let f = format!("keys[{i}]");
        let Some(key) = build_key(rk, &f, &ctx, &mut p, &mut reg.warnings) else {
            continue;
        };
        if reg.by_id.contains_key(&key.id) {
            p.field(
                &format!("{f}.id"),
                format!("`{}` is already used by another entry", key.id),
            );
            continue;
        }
        if let KeyKind::ApiKey { sha256 } = &key.kind
            && let Some(other) = reg
                .api_keys
                .iter()
                .find(|k| matches!(&k.kind, KeyKind::ApiKey { sha256: o } if o == sha256))
        {
            p.field(
                &format!("{f}.api_key_sha256"),
                format!("is the same API key as `{}`", other.id),
            );
            continue;
        }
        let key = Arc::new(key);
        reg.by_id.insert(key.id.clone(), key.clone());
        if key.is_api_key() {
            reg.api_keys.push(key.clone());
        }
        reg.keys.push(key);
    }
    reg.files = ctx.read.into_inner();
    p.finish(reg)
}

fn build_key(
    rk: RawKey,
    f: &str,
    ctx: &Ctx<'_>,
    outer: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Key> {
    let mut p = Problems::new(ctx.file);
    let id = match rk.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            outer.field(&format!("{f}.id"), "required");
            return None;
        }
    };
    let printable = id
        .bytes()
        .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
    let id_header = match HeaderValue::from_str(&id) {
        Ok(h) if printable => h,
        _ => {
            outer.field(
                &format!("{f}.id"),
                "must be printable ASCII without spaces, quotes or backslashes (it travels in headers)",
            );
            return None;
        }
    };
    let ip_allow_nets = parse_nets(&rk.ip_allow, &format!("{f}.ip_allow"), &mut p);
    let ip_allow = (!ip_allow_nets.is_empty()).then(|| IpSet::new(&ip_allow_nets));
    let not_before = rk
        .not_before
        .as_deref()
        .and_then(|s| parse_time(s, &format!("{f}.not_before"), &mut p));
    let not_after = rk
        .not_after
        .as_deref()
        .and_then(|s| parse_time(s, &format!("{f}.not_after"), &mut p));
    if let (Some(a), Some(b)) = (not_before, not_after)
        && a >= b
    {
        p.field(&format!("{f}.not_after"), "must be after not_before");
    }
    let mut required = Vec::with_capacity(rk.required.len());
    for (j, c) in rk.required.iter().enumerate() {
        match crate::config::validate_component_name(c) {
            Ok(n) => {
                if !required.contains(&n) {
                    required.push(n);
                }
            }
            Err(m) => p.field(&format!("{f}.required[{j}]"), m),
        }
    }
    let (kind, fingerprint) = match key_kind(&rk, f, &id, ctx, &mut p, warnings) {
        Some(k) => k,
        None => {
            outer.extend(p.finish(()).err()?);
            return None;
        }
    };
    if matches!(kind, KeyKind::ApiKey { .. }) && !required.is_empty() {
        p.field(&format!("{f}.required"), "applies to signing keys only");
    }
    let key = Key {
        id: Arc::from(id.as_str()),
        id_header,
        ip_allow,
        ip_allow_nets,
        not_before,
        not_after,
        required,
        fingerprint,
        description: rk.description,
        kind,
    };
    match p.finish(key) {
        Ok(k) => Some(k),
        Err(e) => {
            outer.extend(e);
            None
        }
    }
}

/// The key material and its fingerprint; `None` after recording why not.
fn key_kind(
    rk: &RawKey,
    f: &str,
    id: &str,
    ctx: &Ctx<'_>,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<(KeyKind, String)> {
    let secret_fields = [
        ("secret", rk.secret.is_some()),
        ("secret_env", rk.secret_env.is_some()),
        ("secret_file", rk.secret_file.is_some()),
        ("secret_base64", rk.secret_base64.is_some()),
    ];
    if let Some(h) = &rk.api_key_sha256 {
        let others = [
            ("algorithm", rk.algorithm.is_some()),
            ("public_key", rk.public_key.is_some()),
            ("jwk", rk.jwk.is_some()),
            ("legacy_sha1", rk.legacy_sha1),
        ];
        for (name, set) in secret_fields.iter().chain(others.iter()) {
            if *set {
                p.field(
                    &format!("{f}.{name}"),
                    "an API-key entry (api_key_sha256) takes no signing-key fields",
                );
            }
        }
        let clean = h.trim().to_ascii_lowercase();
        return match hex::decode(&clean) {
            Ok(b) if b.len() == 32 => {
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&b);
                Some((
                    KeyKind::ApiKey { sha256 },
                    format!("sha256:{}", hex::encode(&sha256[..8])),
                ))
            }
            _ => {
                p.field(
                    &format!("{f}.api_key_sha256"),
                    "must be 64 hex digits: the SHA-256 of the API key (countersign keygen --alg api-key prints it)",
                );
                None
            }
        };
    }
    let Some(alg_name) = rk.algorithm.as_deref() else {
        p.field(
            &format!("{f}.algorithm"),
            "required (or api_key_sha256 for an API key)",
        );
        return None;
    };
    let Some(algorithm) = Algorithm::from_name(alg_name) else {
        p.field(
            &format!("{f}.algorithm"),
            format!(
                "`{alg_name}` is not one of {}",
                algorithm::ALL
                    .iter()
                    .map(|a| a.names().join("/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    };
    if algorithm == Algorithm::HmacSha1 && !rk.legacy_sha1 {
        p.field(
            &format!("{f}.algorithm"),
            "hmac-sha1 is a legacy algorithm: set legacy_sha1: true on this key to accept Tyk's hmac-sha1 signatures (better: switch Tyk to hmac-sha256)",
        );
        return None;
    }
    if rk.legacy_sha1 && algorithm != Algorithm::HmacSha1 {
        p.field(
            &format!("{f}.legacy_sha1"),
            "only applies to algorithm: hmac-sha1",
        );
    }
    let wanted = algorithm.key_type();
    if wanted == KeyType::Secret {
        if rk.public_key.is_some() {
            p.field(
                &format!("{f}.public_key"),
                format!(
                    "{} takes a shared secret, not a public key",
                    algorithm.name()
                ),
            );
            return None;
        }
        let secret = hmac_secret(rk, f, id, ctx, p, warnings)?;
        if algorithm == Algorithm::HmacSha1 {
            warnings.push(format!(
                "{}: {f} ({id}): accepts legacy hmac-sha1 signatures (legacy_sha1: true)",
                ctx.file
            ));
        }
        if secret.len() < 32 {
            warnings.push(format!(
                "{}: {f} ({id}): the secret is {} bytes; use at least 32 random bytes (countersign keygen --alg {})",
                ctx.file,
                secret.len(),
                algorithm.name()
            ));
        }
        let hmac_alg = algorithm.hmac()?;
        return Some((
            KeyKind::Hmac {
                algorithm,
                key: ring::hmac::Key::new(hmac_alg, &secret),
            },
            fingerprint(&secret),
        ));
    }
    for (name, set) in secret_fields {
        if set {
            p.field(
                &format!("{f}.{name}"),
                format!(
                    "{} takes a public key (public_key or jwk), not a secret",
                    algorithm.name()
                ),
            );
        }
    }
    let (field, label, key) = match (&rk.public_key, &rk.jwk) {
        (Some(_), Some(_)) => {
            p.field(&format!("{f}.jwk"), "give public_key or jwk, not both");
            return None;
        }
        (Some(pem), None) if pem.trim_start().starts_with("-----BEGIN") => (
            format!("{f}.public_key"),
            "inline PEM".to_string(),
            pubkey::from_file_bytes(pem.as_bytes(), id).map_err(|m| format!("inline PEM: {m}")),
        ),
        (Some(file), None) => {
            let field = format!("{f}.public_key");
            let bytes = match ctx.read(file) {
                Ok(b) => b,
                Err(m) => {
                    p.field(&field, m);
                    return None;
                }
            };
            (
                field,
                file.clone(),
                pubkey::from_file_bytes(&bytes, id).map_err(|m| format!("{file}: {m}")),
            )
        }
        (None, Some(v)) => {
            let field = format!("{f}.jwk");
            let parsed = match v {
                serde_json::Value::String(file) => ctx.read(file).and_then(|bytes| {
                    pubkey::from_file_bytes(&bytes, id).map_err(|m| format!("{file}: {m}"))
                }),
                v => pubkey::from_jwk_or_set(v, id),
            };
            (field, "jwk".to_string(), parsed)
        }
        (None, None) => {
            p.field(
                &format!("{f}.public_key"),
                format!("required for {} (a PEM file, or jwk)", algorithm.name()),
            );
            return None;
        }
    };
    let key = match key {
        Ok(k) => k,
        Err(m) => {
            p.field(&field, m);
            return None;
        }
    };
    if key.key_type != wanted {
        p.field(
            &field,
            format!(
                "{label}: a {} key cannot be used with {}",
                key.key_type,
                algorithm.name()
            ),
        );
        return None;
    }
    if key.key_type == KeyType::Rsa {
        let min = ctx.settings.min_rsa_bits;
        let problem = if key.rsa_bits < min {
            Some(format!(
                "a {}-bit RSA key is below signature.min_rsa_bits ({min})",
                key.rsa_bits
            ))
        } else if key.rsa_bits > 8192 {
            Some("RSA keys above 8192 bits are not supported".to_string())
        } else if algorithm == Algorithm::RsaPssSha512 && key.rsa_bits < 2048 {
            Some("rsa-pss-sha512 needs an RSA key of at least 2048 bits".to_string())
        } else if key.pss_only && algorithm != Algorithm::RsaPssSha512 {
            Some(
                "is published as an RSASSA-PSS key: register it with algorithm: rsa-pss-sha512"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(m) = problem {
            p.field(&field, format!("{label}: {m}"));
            return None;
        }
    }
    let fp = fingerprint(&key.spki_der);
    Some((KeyKind::Public { algorithm, key }, fp))
}

/// The HMAC secret from exactly one source.
fn hmac_secret(
    rk: &RawKey,
    f: &str,
    id: &str,
    ctx: &Ctx<'_>,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let given: Vec<&str> = [
        ("secret", rk.secret.is_some()),
        ("secret_env", rk.secret_env.is_some()),
        ("secret_file", rk.secret_file.is_some()),
        ("secret_base64", rk.secret_base64.is_some()),
        ("jwk", rk.jwk.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    if given.len() != 1 {
        p.field(
            f,
            if given.is_empty() {
                "an HMAC key needs one of secret_env, secret_file, secret_base64, secret or jwk"
                    .to_string()
            } else {
                format!("give only one of {}", given.join(", "))
            },
        );
        return None;
    }
    let (field, result): (&str, Result<Vec<u8>, String>) = if let Some(s) = &rk.secret {
        warnings.push(format!(
            "{}: {f} ({id}): the secret is written inline; prefer secret_env or secret_file",
            ctx.file
        ));
        ("secret", Ok(s.as_bytes().to_vec()))
    } else if let Some(var) = &rk.secret_env {
        (
            "secret_env",
            if ctx.base.is_none() {
                Err(format!("{var}: {INLINE_ONLY}"))
            } else {
                std::env::var_os(var.trim())
                    .map(|v| v.into_encoded_bytes())
                    .ok_or_else(|| format!("environment variable {var} is not set"))
            },
        )
    } else if let Some(file) = &rk.secret_file {
        ("secret_file", ctx.read(file).map(strip_newline))
    } else if let Some(b) = &rk.secret_base64 {
        (
            "secret_base64",
            STANDARD
                .decode(b.trim())
                .map_err(|_| "not standard base64 (with padding)".to_string()),
        )
    } else if let Some(v) = &rk.jwk {
        ("jwk", pubkey::oct_secret(v))
    } else {
        return None;
    };
    match result {
        Ok(s) if s.is_empty() => {
            p.field(&format!("{f}.{field}"), "the secret is empty");
            None
        }
        Ok(s) => Some(s),
        Err(m) => {
            p.field(&format!("{f}.{field}"), m);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> SignatureSettings {
        SignatureSettings::default()
    }

    fn keys_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vectors/rfc9421/keys")
    }

    fn load(yaml: &str) -> Result<Registry, ConfigError> {
        Registry::from_yaml_str(yaml, Path::new("keys.yaml"), &keys_dir(), &settings())
    }

    fn err(yaml: &str) -> String {
        load(yaml).unwrap_err().to_string()
    }

    #[test]
    fn rfc3339_shows_any_time_without_panicking() {
        // Found with fuzz/fuzz_targets/date.rs: a time past year 9999 (a signed `Date` with a
        // negative offset, a client's `expires`, `verify --at`) panicked in `time`.
        use crate::signature::date::from_unix;
        assert_eq!(rfc3339(from_unix(1764842400)), "2025-12-04T10:00:00Z");
        assert_eq!(rfc3339(from_unix(253402300799)), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(from_unix(253402300800)),
            "Unix time 253402300800 (outside years 0-9999)"
        );
        assert!(rfc3339(from_unix(i64::MAX)).contains(&i64::MAX.to_string()));
        let before = std::time::UNIX_EPOCH - Duration::from_secs(86400);
        assert_eq!(rfc3339(before), "1969-12-31T00:00:00Z");
    }

    #[test]
    fn key_files_are_listed_with_what_was_read() {
        let r = load(
            "keys:
  - id: shared
    algorithm: hmac-sha256
    secret_file: test-shared-secret.bin
  - id: ed
    algorithm: ed25519
    public_key: test-key-ed25519.pub.pem
  - id: ed-again
    algorithm: ed25519
    public_key: test-key-ed25519.pub.pem
  - id: inline
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
",
        )
        .unwrap();
        let want: Vec<(PathBuf, [u8; 32])> = ["test-shared-secret.bin", "test-key-ed25519.pub.pem"]
            .iter()
            .map(|f| {
                let p = keys_dir().join(f);
                let mut d = [0u8; 32];
                d.copy_from_slice(
                    ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&p).unwrap())
                        .as_ref(),
                );
                (p, d)
            })
            .collect();
        assert_eq!(r.files(), &want[..]);
    }

    #[test]
    fn every_source_of_key_material() {
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var("COUNTERSIGN_TEST_SECRET_A", "from-env") };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "from-file\n").unwrap();
        let spki = std::fs::read(keys_dir().join("test-key-ed25519.pub.pem")).unwrap();
        std::fs::write(dir.path().join("ed.pem"), &spki).unwrap();
        std::fs::write(
            dir.path().join("jwks.json"),
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"jwk-file","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}]}"#,
        )
        .unwrap();
        let yaml = "keys:
  - id: env
    algorithm: hmac-sha256
    secret_env: COUNTERSIGN_TEST_SECRET_A
  - id: file
    algorithm: hmac-sha512
    secret_file: s.txt
  - id: inline
    algorithm: hmac-sha384
    secret: \"9879879878787878\"
  - id: b64
    algorithm: hmac-sha256
    secret_base64: AAECAw==
  - id: pem
    algorithm: ed25519
    public_key: ed.pem
    ip_allow: [10.0.0.0/8, \"2001:db8::/32\"]
    not_before: 2026-01-01T00:00:00Z
    not_after: 2027-06-30T00:00:00Z
    required: [\"(request-target)\", Digest]
  - id: jwk-file
    algorithm: ed25519
    jwk: jwks.json
  - id: jwk-inline
    algorithm: ed25519
    jwk: {kty: OKP, crv: Ed25519, x: JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs}
  - id: job
    api_key_sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08
    ip_allow: [10.1.2.0/24]
";
        let r =
            Registry::from_yaml_str(yaml, Path::new("keys.yaml"), dir.path(), &settings()).unwrap();
        assert_eq!(r.len(), 8);
        let env = r.get("env").unwrap();
        assert_eq!(env.fingerprint, fingerprint(b"from-env"));
        // The trailing newline of the file is not part of the secret.
        assert_eq!(
            r.get("file").unwrap().fingerprint,
            fingerprint(b"from-file")
        );
        assert_eq!(
            r.get("b64").unwrap().fingerprint,
            fingerprint(&[0, 1, 2, 3])
        );
        let pem = r.get("pem").unwrap();
        assert_eq!(pem.required, vec!["(request-target)", "digest"]);
        assert!(
            pem.ip_allow
                .as_ref()
                .unwrap()
                .contains("10.9.9.9".parse().unwrap())
        );
        assert!(
            pem.check_validity(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
                .is_err()
        );
        assert!(
            pem.check_validity(SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000))
                .is_ok()
        );
        assert_eq!(pem.fingerprint, r.get("jwk-file").unwrap().fingerprint);
        assert_eq!(pem.fingerprint, r.get("jwk-inline").unwrap().fingerprint);
        assert_eq!(pem.id_header, "pem");
        // API keys: SHA-256 of "test", in any hex case.
        assert_eq!(&*r.find_api_key(b"test").unwrap().id, "job");
        assert!(r.find_api_key(b"tesT").is_none());
        assert!(r.get("job").unwrap().is_api_key());
        // The summary never holds a secret.
        let s = r.summary();
        assert_eq!(s[0].algorithm, "hmac-sha256");
        assert_eq!(
            s[4].validity,
            "2026-01-01T00:00:00Z .. 2027-06-30T00:00:00Z"
        );
        assert_eq!(s[7].algorithm, "api-key");
        assert_eq!(s[7].ip_allow, vec!["10.1.2.0/24"]);
        assert!(!format!("{s:?}").contains("from-env"));
        // Warnings: the inline secret and short secrets.
        let w = r.warnings().join("\n");
        assert!(
            w.contains("keys[2] (inline): the secret is written inline"),
            "{w}"
        );
        assert!(w.contains("keys[0] (env): the secret is 8 bytes"), "{w}");
    }

    #[test]
    fn json_has_the_same_shape() {
        let json = r#"{"keys":[{"id":"a","algorithm":"hmac-sha256","secret_base64":"AAECAw=="},{"id":"b","algorithm":"rsa-sha256","public_key":"test-key-rsa.pub.pem"}]}"#;
        let r = Registry::from_bytes(
            json.as_bytes(),
            Format::Json,
            Path::new("keys.json"),
            &keys_dir(),
            &settings(),
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        let e = Registry::from_bytes(
            br#"{"keys":[{"id":"a","algoritm":"x"}]}"#,
            Format::Json,
            Path::new("keys.json"),
            &keys_dir(),
            &settings(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("keys.json: keys[0]"), "{e}");
        assert!(e.contains("unknown field `algoritm`"), "{e}");
        assert_eq!(Format::from_path(Path::new("/x/k.JSON")), Format::Json);
        assert_eq!(Format::from_path(Path::new("/x/k.yaml")), Format::Yaml);
    }

    #[test]
    fn problems_name_the_entry_and_field() {
        let cases = [
            (
                "keys:\n  - id: a\n    algoritm: hmac-sha256\n",
                "unknown field `algoritm`",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n  - id: a\n    algorithm: hmac-sha256\n    secret: y\n",
                "keys.yaml: keys[1].id: `a` is already used by another entry",
            ),
            (
                "keys:\n  - algorithm: hmac-sha256\n    secret: x\n",
                "keys.yaml: keys[0].id: required",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-md5\n    secret: x\n",
                "keys.yaml: keys[0].algorithm: `hmac-md5` is not one of",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha1\n    secret: x\n",
                "keys.yaml: keys[0].algorithm: hmac-sha1 is a legacy algorithm: set legacy_sha1: true",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    legacy_sha1: true\n    secret: x\n",
                "keys.yaml: keys[0].legacy_sha1: only applies",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n",
                "keys.yaml: keys[0]: an HMAC key needs one of",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n    secret_base64: AA==\n",
                "give only one of secret, secret_base64",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret_env: COUNTERSIGN_TEST_UNSET_VAR\n",
                "keys.yaml: keys[0].secret_env: environment variable COUNTERSIGN_TEST_UNSET_VAR is not set",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret_base64: \"not base64!\"\n",
                "keys.yaml: keys[0].secret_base64: not standard base64",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret_file: nope.txt\n",
                "keys.yaml: keys[0].secret_file: nope.txt: file not found",
            ),
            (
                "keys:\n  - id: a\n    algorithm: rsa-sha256\n    public_key: test-key-rsa.priv.pem\n",
                "keys.yaml: keys[0].public_key: test-key-rsa.priv.pem: holds a private key",
            ),
            (
                "keys:\n  - id: a\n    algorithm: rsa-sha256\n    public_key: test-shared-secret.b64\n",
                "keys.yaml: keys[0].public_key: test-shared-secret.b64: not a PEM public key",
            ),
            (
                "keys:\n  - id: a\n    algorithm: rsa-sha256\n    public_key: test-key-ecc-p256.pub.pem\n",
                "a EC P-256 key cannot be used with rsa-v1_5-sha256",
            ),
            (
                "keys:\n  - id: a\n    algorithm: ed25519\n    secret: x\n",
                "keys[0].secret: ed25519 takes a public key",
            ),
            (
                "keys:\n  - id: a\n    algorithm: ed25519\n",
                "keys[0].public_key: required for ed25519",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n    ip_allow: [300.0.0.0/8]\n",
                "keys.yaml: keys[0].ip_allow[0]:",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n    not_after: tomorrow\n",
                "keys.yaml: keys[0].not_after: `tomorrow` is not an RFC 3339 time",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n    not_before: 2027-01-01T00:00:00Z\n    not_after: 2026-01-01T00:00:00Z\n",
                "keys[0].not_after: must be after not_before",
            ),
            (
                "keys:\n  - id: a\n    algorithm: hmac-sha256\n    secret: x\n    required: [\"@bogus\"]\n",
                "keys.yaml: keys[0].required[0]: `@bogus` is not a component name",
            ),
            (
                "keys:\n  - id: \"a b\"\n    algorithm: hmac-sha256\n    secret: x\n",
                "keys[0].id: must be printable ASCII",
            ),
            (
                "keys:\n  - id: a\n    api_key_sha256: abc\n",
                "keys[0].api_key_sha256: must be 64 hex digits",
            ),
            (
                "keys:\n  - id: a\n    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n    secret: x\n",
                "keys[0].secret: an API-key entry (api_key_sha256) takes no signing-key fields",
            ),
            ("  \n", "keys.yaml: the file is empty"),
            (
                "keys:\n  - id: a\n    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n  - id: b\n    api_key_sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\n",
                "keys[1].api_key_sha256: is the same API key as `a`",
            ),
        ];
        for (yaml, want) in cases {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml}\n=> {e}");
        }
        // Every problem is reported, not just the first.
        let e =
            err("keys:\n  - id: a\n    algorithm: nope\n  - id: b\n    algorithm: hmac-sha256\n");
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn rsa_size_and_pss_rules() {
        let dir = tempfile::tempdir().unwrap();
        let pss = std::fs::read(keys_dir().join("test-key-rsa-pss.pub.pem")).unwrap();
        let plain = pubkey::from_file_bytes(&pss, "").unwrap();
        // Re-publish the same key under id-RSASSA-PSS.
        let spki = spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: pubkey::OID_RSA_PSS,
                parameters: None,
            },
            subject_public_key: der::asn1::BitStringRef::from_bytes(&plain.ring_bytes).unwrap(),
        };
        let der = der::Encode::to_der(&spki).unwrap();
        std::fs::write(
            dir.path().join("pss.pem"),
            pem::encode(&pem::Pem::new("PUBLIC KEY", der)),
        )
        .unwrap();
        let ok = Registry::from_yaml_str(
            "keys:\n  - id: p\n    algorithm: rsa-pss-sha512\n    public_key: pss.pem\n",
            Path::new("keys.yaml"),
            dir.path(),
            &settings(),
        );
        assert!(ok.is_ok());
        let e = Registry::from_yaml_str(
            "keys:\n  - id: p\n    algorithm: rsa-sha256\n    public_key: pss.pem\n",
            Path::new("keys.yaml"),
            dir.path(),
            &settings(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("register it with algorithm: rsa-pss-sha512"),
            "{e}"
        );
        let big = SignatureSettings {
            min_rsa_bits: 3072,
            ..settings()
        };
        let e = Registry::from_yaml_str(
            "keys:\n  - id: p\n    algorithm: rsa-pss-sha512\n    public_key: pss.pem\n",
            Path::new("keys.yaml"),
            dir.path(),
            &big,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a 2048-bit RSA key is below signature.min_rsa_bits (3072)"),
            "{e}"
        );
    }
}
