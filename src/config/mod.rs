//! The typed configuration: parse the YAML (`file.rs`), then validate every field into typed values.
//!
//! Every problem is collected (not just the first) and reported as `file: field: message`, so
//! `countersign check` can list all of them at once. Nothing here opens a socket or reads a
//! certificate: that is `state::Snapshot::build`'s job.

pub mod file;
pub mod remote;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;

use file::RawConfig;
pub use remote::{KeysFetch, RedisReplaySettings, ReplayOnError};

/// One problem found in a configuration or a file it names, printed as `where: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file and field (`countersign.yaml: tls.cert`) or just the file.
    pub at: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem found while loading a configuration; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A single problem.
    pub fn one(at: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                at: at.into(),
                message: message.into(),
            }],
        }
    }
}

/// Collects problems while validating, each prefixed with the file name.
pub struct Problems {
    file: String,
    list: Vec<Problem>,
}

impl Problems {
    /// Starts an empty collection for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Problems {
            file: file.into(),
            list: Vec::new(),
        }
    }

    /// Records a problem with the field at `field` (e.g. `tls.cert`).
    pub fn field(&mut self, field: &str, message: impl Into<String>) {
        let at = if field.is_empty() {
            self.file.clone()
        } else {
            format!("{}: {}", self.file, field)
        };
        self.list.push(Problem {
            at,
            message: message.into(),
        });
    }

    /// Records a problem found in another file.
    pub fn file(&mut self, path: &Path, message: impl Into<String>) {
        self.list.push(Problem {
            at: path.display().to_string(),
            message: message.into(),
        });
    }

    /// Appends problems found elsewhere.
    pub fn extend(&mut self, other: ConfigError) {
        self.list.extend(other.problems);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }
}

/// Whether denials are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deny what fails.
    Enforce,
    /// Decide, log and count, but forward everything.
    Report,
}

impl Mode {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

/// Which requests get an access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// Every request.
    All,
    /// Only requests denied (or that report mode would have denied), and requests that passed
    /// but were answered by countersign's own 502, 504, 408 or 400 (the backend failed or did
    /// not answer, the upload stalled or broke off).
    Denied,
    /// None.
    Off,
}

/// `log:`
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Which requests are logged.
    pub access: AccessLog,
    /// The tracing filter, e.g. `info` or `countersign=debug`.
    pub level: String,
}

/// Whether a client certificate is demanded at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails without a valid client certificate.
    Required,
    /// A certificate is verified when presented; routes requiring `mtls` refuse requests without one.
    Optional,
}

/// Which certificates of a client chain are checked against the CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlCheck {
    /// Every certificate of the chain; a certificate whose issuer has no CRL fails.
    Chain,
    /// Only the client's own certificate; its issuer must have a CRL.
    EndEntity,
}

/// One `tls.allow_clients` entry: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowClient {
    /// The subject common name, exactly.
    pub subject_cn: Option<String>,
    /// A DNS subject alternative name, exactly (case-insensitive).
    pub san_dns: Option<String>,
    /// A URI subject alternative name (a SPIFFE ID), exactly.
    pub san_uri: Option<String>,
    /// The SHA-256 of the certificate's DER.
    pub sha256: Option<[u8; 32]>,
}

/// `tls:`
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The server certificate chain (PEM); `None` on a plain listener that only verifies
    /// certificates passed by a proxy in `client_ip.client_cert_header`.
    pub cert: Option<PathBuf>,
    /// The server private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA bundle client certificates must chain to; set turns mTLS on.
    pub client_ca: Option<PathBuf>,
    /// Whether the handshake demands a certificate.
    pub client_auth: ClientAuth,
    /// CRL files (PEM or DER).
    pub crl: Vec<PathBuf>,
    /// Which certificates the CRLs are checked for.
    pub crl_check: CrlCheck,
    /// Refuse clients when a CRL is past its next update.
    pub crl_enforce_expiry: bool,
    /// Client identities admitted; empty admits any valid certificate.
    pub allow_clients: Vec<AllowClient>,
    /// Warn when a certificate expires within this.
    pub expiry_warning: Duration,
}

impl TlsSettings {
    /// True when the listener itself speaks TLS.
    pub fn terminates(&self) -> bool {
        self.cert.is_some()
    }
}

/// Where the client IP comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpFrom {
    /// The TCP peer.
    Peer,
    /// A PROXY protocol v1/v2 header (AWS NLB, HAProxy); connections without one are refused.
    ProxyProtocol,
    /// `X-Forwarded-For`, walked right to left past `trusted_proxies` only.
    XForwardedFor,
}

/// `client_ip:`
#[derive(Debug, Clone)]
pub struct ClientIpSettings {
    /// Where the client IP comes from.
    pub from: ClientIpFrom,
    /// Proxies trusted to append to `X-Forwarded-For` and to pass `client_cert_header`.
    pub trusted_proxies: Vec<IpNet>,
    /// A header (RFC 9440 `Client-Cert`) carrying a client certificate from a trusted proxy.
    pub client_cert_header: Option<HeaderName>,
}

/// Where the key registry comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A YAML file, relative to the config file.
    File(PathBuf),
    /// An `https://` URL, polled.
    Url(String),
}

/// One of the signature schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes {
    /// draft-cavage-http-signatures-10 (what Tyk sends).
    pub cavage: bool,
    /// RFC 9421 HTTP Message Signatures.
    pub rfc9421: bool,
}

/// `signature.digest`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPolicy {
    /// Digest headers are not checked.
    Off,
    /// Checked when present and covered by the signature.
    Optional,
    /// A covered `Digest` or `Content-Digest` is required.
    Required,
}

/// `signature.replay`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySetting {
    /// No replay detection.
    Off,
    /// An in-process, bounded set of accepted signatures.
    Memory,
    /// A Redis server shared by several sidecars.
    Redis(RedisReplaySettings),
}

/// `signature:`
#[derive(Debug, Clone)]
pub struct SignatureSettings {
    /// Which schemes are accepted.
    pub schemes: Schemes,
    /// Components every signature must cover (cavage names, lower case).
    pub required: Vec<String>,
    /// Tolerance around signed timestamps.
    pub clock_skew: Duration,
    /// The oldest a `created` timestamp may be (defaults to `clock_skew`).
    pub max_age: Duration,
    /// Digest checking.
    pub digest: DigestPolicy,
    /// Replay detection.
    pub replay: ReplaySetting,
    /// At most this many remembered signatures (memory replay store).
    pub replay_capacity: usize,
    /// The header carrying cavage parameters besides `Signature`.
    pub cavage_header: HeaderName,
    /// Tyk's quirks: `X-Aux-Date` for `Date`, first value of repeated headers.
    pub tyk_compat: bool,
    /// With `tyk_compat`: a header listed in `headers=` but absent reads as empty (Tyk's verifier).
    pub tyk_absent_headers_empty: bool,
    /// A path prefix the gateway added and never signed.
    pub strip_path_prefix: Option<String>,
    /// The smallest RSA modulus accepted, in bits.
    pub min_rsa_bits: usize,
    /// RFC 9421 signatures must carry `created`.
    pub require_created: bool,
    /// RFC 9421: only signatures with this `tag` are considered.
    pub rfc9421_tag: Option<String>,
    /// Extra time-zone abbreviations accepted in `Date` (e.g. `CET` at +3600 s), for gateways
    /// whose clock is not on UTC; `GMT`, `UTC` and numeric offsets are always accepted.
    pub date_zones: Vec<(String, i32)>,
}

impl Default for SignatureSettings {
    /// The settings of a config file with no `signature:` section.
    fn default() -> Self {
        validate_signature(
            &RawConfig::default(),
            Path::new("."),
            &mut Problems::new("<defaults>"),
        )
    }
}

/// `jwt:` (validated shape; the token module builds its verifier from it).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// The JWKS URL.
    pub jwks_url: Option<String>,
    /// A JWKS file, relative to the config file.
    pub jwks_file: Option<PathBuf>,
    /// The exact `iss` required (and the OIDC discovery base when no JWKS is given).
    pub issuer: Option<String>,
    /// A value `aud` must contain.
    pub audience: Option<String>,
    /// Accepted JWS algorithms.
    pub algorithms: Vec<String>,
    /// How often the JWKS is refreshed.
    pub jwks_refresh: Duration,
    /// The least time between two fetches caused by an unknown `kid`.
    pub jwks_min_refetch: Duration,
    /// Leeway for `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// Tokens whose `exp - iat` exceeds this are refused.
    pub max_lifetime: Option<Duration>,
    /// `azp`/`client_id` values admitted; empty admits any.
    pub allowed_clients: Vec<String>,
    /// Whether the bearer token is forwarded to the backend.
    pub forward_token: bool,
    /// Claims copied into headers for the backend.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// RFC 7662 introspection for opaque tokens.
    pub introspection: Option<IntrospectionSettings>,
    /// PEM CA certificates trusted (instead of the system roots) for the IdP's HTTPS endpoints.
    pub ca_file: Option<PathBuf>,
}

/// `jwt.introspection:`
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionSettings {
    /// The introspection endpoint.
    pub url: String,
    /// The client id used to authenticate to it.
    pub client_id: String,
    /// The client secret, read from the environment or a file at load.
    pub client_secret: String,
    /// Cached results, at most.
    pub cache_size: usize,
    /// The longest an active result is cached (it is never cached past the token's `exp`).
    pub cache_ttl: Duration,
}

/// A verification method a route may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// A verified client certificate (matching `allow_clients`).
    Mtls,
    /// The client IP inside `ip_allow`.
    Ip,
    /// An HTTP message signature.
    Signature,
    /// A bearer JWT.
    Jwt,
    /// An API key.
    ApiKey,
}

impl Requirement {
    /// The name used in the config and the `verify_duration` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Mtls => "mtls",
            Requirement::Ip => "ip",
            Requirement::Signature => "signature",
            Requirement::Jwt => "jwt",
            Requirement::ApiKey => "api_key",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mtls" => Requirement::Mtls,
            "ip" => Requirement::Ip,
            "signature" => Requirement::Signature,
            "jwt" => Requirement::Jwt,
            "api_key" => Requirement::ApiKey,
            _ => return None,
        })
    }
}

/// One `routes:` entry.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// The metric label (`name`, or the path).
    pub name: String,
    /// The path prefix, matched on whole segments.
    pub path: String,
    /// Methods matched; empty matches any.
    pub methods: Vec<Method>,
    /// Methods that must all pass, in evaluation order.
    pub require: Vec<Requirement>,
    /// JWT scopes required.
    pub scopes: Vec<String>,
    /// Overrides the global mode for this route.
    pub mode: Mode,
}

/// `limits:`
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS handshake (and PROXY header) deadline.
    pub handshake_timeout: Duration,
    /// Deadline for a request head; also the keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// The largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// The most header lines in a request.
    pub max_headers: usize,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The largest body buffered to check a digest.
    pub max_digest_body: usize,
    /// Deadline for receiving a body that must be buffered.
    pub body_timeout: Duration,
    /// Deadline to connect to the backend.
    pub upstream_connect_timeout: Duration,
    /// Deadline for the backend's response head.
    pub upstream_timeout: Duration,
    /// The longest a streamed body (either way) may go without data.
    pub stream_idle_timeout: Duration,
    /// The longest an upgraded (WebSocket) connection may carry nothing either way.
    pub tunnel_idle_timeout: Duration,
    /// The most concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
}

/// `reload:`
#[derive(Debug, Clone)]
pub struct ReloadSettings {
    /// How often watched files are polled when no file event arrives.
    pub poll_interval: Duration,
}

/// The backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `scheme://host:port` with no path.
    pub uri: http::Uri,
    /// Speak HTTP/2 with prior knowledge (h2c, gRPC).
    pub http2: bool,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (`<inline>` for strings).
    pub source: PathBuf,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The main listener.
    pub listen: SocketAddr,
    /// The backend.
    pub upstream: Upstream,
    /// The admin listener.
    pub admin: Option<SocketAddr>,
    /// Enforce or report, for routes that do not override it.
    pub mode: Mode,
    /// Logging.
    pub log: LogSettings,
    /// TLS and client certificates.
    pub tls: Option<TlsSettings>,
    /// Where the client IP comes from.
    pub client_ip: ClientIpSettings,
    /// The IP allow-list for routes requiring `ip`.
    pub ip_allow: Vec<IpNet>,
    /// The key registry.
    pub keys: Option<KeySource>,
    /// How a remote (`https://`) key registry is fetched.
    pub keys_fetch: KeysFetch,
    /// Signature verification.
    pub signature: SignatureSettings,
    /// Bearer JWT validation.
    pub jwt: Option<JwtSettings>,
    /// The API key header.
    pub api_key_header: HeaderName,
    /// `api_key.forward`: the API key header reaches the backend (false: removed from every
    /// forwarded request).
    pub api_key_forward: bool,
    /// Routes, first match wins.
    pub routes: Vec<RouteSettings>,
    /// Sizes and timeouts.
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Reload polling.
    pub reload: ReloadSettings,
    /// The `--upstream` flag that replaced the file's `upstream`, kept for reloads.
    pub upstream_override: Option<String>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), read_error(&e)))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_yaml_str(&text, path, &base)
    }

    /// Reads a configuration file whose `upstream` is replaced by `upstream` when given (the
    /// `--upstream` flag); the replacement is validated like the file's own.
    pub fn load_with_upstream(path: &Path, upstream: Option<&str>) -> Result<Config, ConfigError> {
        let Some(up) = upstream else {
            return Self::load(path);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), read_error(&e)))?;
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| ConfigError::one(path.display().to_string(), e.to_string()))?;
        match doc.as_mapping_mut() {
            Some(m) => {
                m.insert("upstream".into(), up.into());
            }
            None => {
                return Err(ConfigError::one(
                    path.display().to_string(),
                    "not a YAML mapping",
                ));
            }
        }
        let text = serde_yaml_ng::to_string(&doc)
            .map_err(|e| ConfigError::one(path.display().to_string(), e.to_string()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut c = Self::from_yaml_str(&text, path, &base)?;
        c.upstream_override = Some(up.to_string());
        Ok(c)
    }

    /// Reads this configuration's file again, with the same `--upstream` override.
    pub fn reread(&self) -> Result<Config, ConfigError> {
        Self::load_with_upstream(&self.source, self.upstream_override.as_deref())
    }

    /// Parses and validates YAML text; `source` names it in messages, `base_dir` resolves paths.
    pub fn from_yaml_str(
        text: &str,
        source: &Path,
        base_dir: &Path,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_yaml(text, &source.display().to_string())?;
        validate(raw, source, base_dir)
    }

    /// Resolves a path named in the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve(&self.base_dir, p)
    }

    /// The routes' requirements, all of them.
    pub fn any_route_requires(&self, r: Requirement) -> bool {
        self.routes.iter().any(|route| route.require.contains(&r))
    }
}

/// Where a deserialization error is: `file: field.path`, or just `file` at the top.
fn error_at(file: &str, field: String) -> String {
    if field == "." || field.is_empty() {
        file.to_string()
    } else {
        format!("{file}: {field}")
    }
}

/// Deserializes a YAML document (refusing an empty one), naming the file and the field of the
/// first error: the one way every countersign file (config, key registry, webhook config) is read.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::one(file, "the file is empty"));
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_yaml_ng starts a nested field's message with its path too: name it once.
        let message = match message
            .strip_prefix(path.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
        {
            Some(rest) => rest.to_string(),
            None => message,
        };
        ConfigError::one(error_at(file, path), message)
    })
}

/// Deserializes a JSON document, naming the file and the field of the first error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    file: &str,
) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ConfigError::one(
            error_at(file, e.path().to_string()),
            e.into_inner().to_string(),
        )
    })
}

/// A short message for an I/O error reading a file.
pub fn read_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => format!("cannot read: {e}"),
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Parses a humantime duration (`300s`, `5m`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("not a duration ({e}); write e.g. 300s or 5m"))
}

/// Parses a CIDR or a bare address (as a /32 or /128).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    Err(format!(
        "`{s}` is not an IP network (write e.g. 203.0.113.0/24 or 2001:db8::/32)"
    ))
}

/// Parses a list of networks, recording a problem per bad entry.
pub fn parse_nets(list: &[String], field: &str, p: &mut Problems) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        match parse_net(s) {
            Ok(n) => out.push(n),
            Err(m) => p.field(&format!("{field}[{i}]"), m),
        }
    }
    out
}

/// True for an upstream host that is on this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

fn duration_or(v: &Option<String>, field: &str, default: Duration, p: &mut Problems) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s) {
            Ok(d) => d,
            Err(m) => {
                p.field(field, m);
                default
            }
        },
    }
}

/// A `limits:` timeout: a duration, and never zero (that would refuse or cut every request).
fn limit_timeout(v: &Option<String>, field: &str, default: Duration, p: &mut Problems) -> Duration {
    let d = duration_or(v, field, default, p);
    if d.is_zero() {
        p.field(field, "must be more than 0");
        return default;
    }
    d
}

fn header_name(s: &str, field: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.trim().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.field(field, format!("`{s}` is not a valid header name"));
            None
        }
    }
}

fn socket_addr(s: &str, field: &str, p: &mut Problems) -> Option<SocketAddr> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.field(
                field,
                format!("`{s}` is not an address:port (write e.g. 0.0.0.0:8443 or [::]:8443)"),
            );
            None
        }
    }
}

fn parse_mode(s: &str, field: &str, p: &mut Problems) -> Mode {
    match s {
        "enforce" => Mode::Enforce,
        "report" => Mode::Report,
        _ => {
            p.field(field, format!("`{s}` is not a mode; use enforce or report"));
            Mode::Enforce
        }
    }
}

/// The default connection limit: 90% of the open-file limit left after a reserve for
/// backend connections, files and the admin listener.
pub fn default_max_connections() -> usize {
    let soft = crate::sys::open_file_limit().unwrap_or(1024);
    let usable = soft.saturating_sub(256) / 2;
    usable.clamp(64, 50_000)
}

fn validate(raw: RawConfig, source: &Path, base: &Path) -> Result<Config, ConfigError> {
    let mut p = Problems::new(source.display().to_string());

    let listen = socket_addr(
        raw.listen.as_deref().unwrap_or("0.0.0.0:8443"),
        "listen",
        &mut p,
    );
    let admin = socket_addr(
        raw.admin.as_deref().unwrap_or("127.0.0.1:9901"),
        "admin",
        &mut p,
    );
    if let (Some(l), Some(a)) = (listen, admin)
        && l.port() == a.port()
        && l.port() != 0
        && (l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified())
    {
        p.field("admin", "must not share the main listener's port");
    }

    let upstream = validate_upstream(&raw, &mut p);
    let mode = parse_mode(raw.mode.as_deref().unwrap_or("enforce"), "mode", &mut p);

    let access = match raw.log.access.as_deref().unwrap_or("all") {
        "all" => AccessLog::All,
        "denied" => AccessLog::Denied,
        "off" => AccessLog::Off,
        other => {
            p.field(
                "log.access",
                format!("`{other}` is not one of all, denied, off"),
            );
            AccessLog::All
        }
    };
    let log = LogSettings {
        access,
        level: raw.log.level.clone().unwrap_or_else(|| "info".to_string()),
    };

    let client_ip = validate_client_ip(&raw, &mut p);
    let tls = raw
        .tls
        .as_ref()
        .map(|t| validate_tls(t, base, &client_ip, &mut p));
    let ip_allow = parse_nets(&raw.ip_allow, "ip_allow", &mut p);

    let keys = raw.keys.as_deref().map(|k| {
        let k = k.trim();
        if k.starts_with("https://") {
            KeySource::Url(k.to_string())
        } else if k.starts_with("http://") {
            p.field(
                "keys",
                "a remote key registry must be fetched over https://",
            );
            KeySource::Url(k.to_string())
        } else {
            KeySource::File(resolve(base, Path::new(k)))
        }
    });

    let signature = validate_signature(&raw, base, &mut p);
    let jwt = raw.jwt.as_ref().map(|j| validate_jwt(j, base, &mut p));
    let api_key_header = raw
        .api_key
        .header
        .as_deref()
        .and_then(|h| header_name(h, "api_key.header", &mut p))
        .unwrap_or_else(|| HeaderName::from_static("x-api-key"));
    let api_key_forward = raw.api_key.forward.unwrap_or(true);

    let routes = validate_routes(&raw, mode, &mut p);
    let limits = validate_limits(&raw, &mut p);
    let shutdown_timeout = duration_or(
        &raw.shutdown_timeout,
        "shutdown_timeout",
        Duration::from_secs(30),
        &mut p,
    );
    let reload = ReloadSettings {
        poll_interval: duration_or(
            &raw.reload.poll_interval,
            "reload.poll_interval",
            Duration::from_secs(30),
            &mut p,
        ),
    };
    if reload.poll_interval < Duration::from_millis(100) {
        p.field("reload.poll_interval", "must be at least 100ms");
    }
    let keys_fetch =
        remote::validate_keys_fetch(&raw, keys.as_ref(), reload.poll_interval, base, &mut p);

    // Cross-field rules: fail closed.
    for (i, r) in routes.iter().enumerate() {
        let f = format!("routes[{i}].require");
        if r.require.contains(&Requirement::Ip) && ip_allow.is_empty() {
            p.field(&f, "requires `ip` but ip_allow is empty (every request would be refused); list the allowed networks in ip_allow");
        }
        if r.require.contains(&Requirement::Mtls) {
            let verifies = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            if !verifies {
                p.field(&f, "requires `mtls` but tls.client_ca is not set");
            }
        }
        if (r.require.contains(&Requirement::Signature) || r.require.contains(&Requirement::ApiKey))
            && keys.is_none()
        {
            p.field(
                &f,
                format!(
                    "requires `{}` but no key registry is configured (keys:)",
                    if r.require.contains(&Requirement::Signature) {
                        "signature"
                    } else {
                        "api_key"
                    }
                ),
            );
        }
        if r.require.contains(&Requirement::Jwt) && jwt.is_none() {
            p.field(&f, "requires `jwt` but there is no jwt: section");
        }
        if !r.scopes.is_empty() && !r.require.contains(&Requirement::Jwt) {
            p.field(
                &format!("routes[{i}].scopes"),
                "scopes need `jwt` in require",
            );
        }
    }

    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        return Err(ConfigError { problems: p.list });
    };
    let cfg = Config {
        source: source.to_path_buf(),
        base_dir: base.to_path_buf(),
        listen,
        upstream,
        admin,
        mode,
        log,
        tls,
        client_ip,
        ip_allow,
        keys,
        keys_fetch,
        signature,
        jwt,
        api_key_header,
        api_key_forward,
        routes,
        limits,
        shutdown_timeout,
        reload,
        upstream_override: None,
    };
    p.finish(cfg)
}

fn validate_upstream(raw: &RawConfig, p: &mut Problems) -> Option<Upstream> {
    let Some(s) = raw.upstream.as_deref() else {
        p.field(
            "upstream",
            "required: the backend's URL, e.g. http://127.0.0.1:8080",
        );
        return None;
    };
    let uri: http::Uri = match s.trim().parse() {
        Ok(u) => u,
        Err(_) => {
            p.field(
                "upstream",
                format!("`{s}` is not a URL (write e.g. http://127.0.0.1:8080)"),
            );
            return None;
        }
    };
    if uri.scheme_str() != Some("http") {
        p.field(
            "upstream",
            "must be an http:// URL (the backend is reached in clear text on loopback)",
        );
        return None;
    }
    let Some(auth) = uri.authority() else {
        p.field("upstream", "has no host");
        return None;
    };
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        p.field(
            "upstream",
            "must not have a path or query: the request path is forwarded byte for byte",
        );
    }
    if !is_loopback_host(auth.host()) && !raw.allow_remote_upstream {
        p.field(
            "upstream",
            format!("`{}` is not a loopback address; the backend should listen on 127.0.0.1 so nothing reaches it around the sidecar (set allow_remote_upstream: true to allow it)", auth.host()),
        );
    }
    let uri = match http::Uri::builder()
        .scheme("http")
        .authority(auth.as_str())
        .path_and_query("/")
        .build()
    {
        Ok(u) => u,
        Err(e) => {
            p.field("upstream", e.to_string());
            return None;
        }
    };
    Some(Upstream {
        uri,
        http2: raw.upstream_http2,
    })
}

fn validate_client_ip(raw: &RawConfig, p: &mut Problems) -> ClientIpSettings {
    let c = &raw.client_ip;
    let from = match c.from.as_deref().unwrap_or("peer") {
        "peer" => ClientIpFrom::Peer,
        "proxy_protocol" => ClientIpFrom::ProxyProtocol,
        "x_forwarded_for" => ClientIpFrom::XForwardedFor,
        other => {
            p.field(
                "client_ip.from",
                format!("`{other}` is not one of peer, proxy_protocol, x_forwarded_for"),
            );
            ClientIpFrom::Peer
        }
    };
    let trusted_proxies = parse_nets(&c.trusted_proxies, "client_ip.trusted_proxies", p);
    if from == ClientIpFrom::XForwardedFor && trusted_proxies.is_empty() {
        p.field("client_ip.trusted_proxies", "x_forwarded_for needs the proxies that append to it listed here (otherwise the header is never used)");
    }
    let client_cert_header = c
        .client_cert_header
        .as_deref()
        .and_then(|h| header_name(h, "client_ip.client_cert_header", p));
    if client_cert_header.is_some() && trusted_proxies.is_empty() {
        p.field(
            "client_ip.client_cert_header",
            "needs client_ip.trusted_proxies: the header is accepted only from them",
        );
    }
    ClientIpSettings {
        from,
        trusted_proxies,
        client_cert_header,
    }
}

fn validate_tls(
    t: &file::RawTls,
    base: &Path,
    client_ip: &ClientIpSettings,
    p: &mut Problems,
) -> TlsSettings {
    let cert = t.cert.as_deref().map(|c| resolve(base, Path::new(c)));
    let key = t.key.as_deref().map(|c| resolve(base, Path::new(c)));
    match (&cert, &key) {
        (Some(_), None) => p.field("tls.key", "required with tls.cert"),
        (None, Some(_)) => p.field("tls.cert", "required with tls.key"),
        (None, None) if client_ip.client_cert_header.is_none() => p.field(
            "tls.cert",
            "required (a tls block without cert/key is only for verifying certificates a proxy passes in client_ip.client_cert_header)",
        ),
        _ => {}
    }
    let client_ca = t.client_ca.as_deref().map(|c| resolve(base, Path::new(c)));
    let client_auth = match t.client_auth.as_deref().unwrap_or("required") {
        "required" => ClientAuth::Required,
        "optional" => ClientAuth::Optional,
        other => {
            p.field(
                "tls.client_auth",
                format!("`{other}` is not one of required, optional"),
            );
            ClientAuth::Required
        }
    };
    if t.client_auth.is_some() && client_ca.is_none() {
        p.field(
            "tls.client_auth",
            "needs tls.client_ca (the CA client certificates must chain to)",
        );
    }
    let crl: Vec<PathBuf> = t.crl.iter().map(|c| resolve(base, Path::new(c))).collect();
    if !crl.is_empty() && client_ca.is_none() {
        p.field("tls.crl", "needs tls.client_ca");
    }
    let crl_check = match t.crl_check.as_deref().unwrap_or("chain") {
        "chain" => CrlCheck::Chain,
        "end_entity" => CrlCheck::EndEntity,
        other => {
            p.field(
                "tls.crl_check",
                format!("`{other}` is not one of chain, end_entity"),
            );
            CrlCheck::Chain
        }
    };
    let mut allow_clients = Vec::with_capacity(t.allow_clients.len());
    for (i, a) in t.allow_clients.iter().enumerate() {
        let f = format!("tls.allow_clients[{i}]");
        let sha256 = a.sha256.as_deref().and_then(|h| {
            let clean: String = h.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
            match hex::decode(&clean) {
                Ok(b) if b.len() == 32 => {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(&b);
                    Some(out)
                }
                _ => {
                    p.field(&format!("{f}.sha256"), "must be 64 hex digits (the SHA-256 of the certificate's DER; colons allowed)");
                    None
                }
            }
        });
        let entry = AllowClient {
            subject_cn: a.subject_cn.clone(),
            san_dns: a.san_dns.clone(),
            san_uri: a.san_uri.clone(),
            sha256,
        };
        if entry == AllowClient::default() && a.sha256.is_none() {
            p.field(
                &f,
                "names nothing: give subject_cn, san_dns, san_uri or sha256",
            );
        }
        allow_clients.push(entry);
    }
    if !allow_clients.is_empty() && client_ca.is_none() {
        p.field("tls.allow_clients", "needs tls.client_ca");
    }
    TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        crl,
        crl_check,
        crl_enforce_expiry: t.crl_enforce_expiry,
        allow_clients,
        expiry_warning: duration_or(
            &t.expiry_warning,
            "tls.expiry_warning",
            Duration::from_secs(14 * 86400),
            p,
        ),
    }
}

/// The cavage component names accepted in `required` lists.
pub fn validate_component_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty component name".to_string());
    }
    let lower = s.to_ascii_lowercase();
    let ok = match lower.as_str() {
        "(request-target)" | "(created)" | "(expires)" => true,
        n if n.starts_with('@') => matches!(
            n,
            "@method"
                | "@target-uri"
                | "@authority"
                | "@scheme"
                | "@request-target"
                | "@path"
                | "@query"
        ),
        n => n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b)),
    };
    if ok {
        Ok(lower)
    } else {
        Err(format!("`{s}` is not a component name"))
    }
}

fn validate_signature(raw: &RawConfig, base: &Path, p: &mut Problems) -> SignatureSettings {
    let s = &raw.signature;
    let mut schemes = Schemes {
        cavage: true,
        rfc9421: true,
    };
    if let Some(list) = &s.schemes {
        schemes = Schemes {
            cavage: false,
            rfc9421: false,
        };
        for (i, name) in list.iter().enumerate() {
            match name.as_str() {
                "cavage" | "tyk" => schemes.cavage = true,
                "rfc9421" => schemes.rfc9421 = true,
                other => p.field(
                    &format!("signature.schemes[{i}]"),
                    format!("`{other}` is not one of cavage, rfc9421"),
                ),
            }
        }
        if !schemes.cavage && !schemes.rfc9421 {
            p.field("signature.schemes", "must name at least one scheme");
        }
    }
    let mut required = Vec::new();
    let req_list = s
        .required
        .clone()
        .unwrap_or_else(|| vec!["(request-target)".to_string(), "date".to_string()]);
    for (i, c) in req_list.iter().enumerate() {
        match validate_component_name(c) {
            Ok(n) => required.push(n),
            Err(m) => p.field(&format!("signature.required[{i}]"), m),
        }
    }
    let clock_skew = duration_or(
        &s.clock_skew,
        "signature.clock_skew",
        Duration::from_secs(300),
        p,
    );
    let max_age = duration_or(&s.max_age, "signature.max_age", clock_skew, p);
    let digest = match s.digest.as_deref().unwrap_or("optional") {
        "off" => DigestPolicy::Off,
        "optional" => DigestPolicy::Optional,
        "required" => DigestPolicy::Required,
        other => {
            p.field(
                "signature.digest",
                format!("`{other}` is not one of off, optional, required"),
            );
            DigestPolicy::Optional
        }
    };
    let replay = match s.replay.as_deref().unwrap_or("off") {
        "off" => ReplaySetting::Off,
        "memory" => ReplaySetting::Memory,
        r if r.starts_with("redis://") || r.starts_with("rediss://") => {
            ReplaySetting::Redis(remote::validate_redis(r, s, base, p))
        }
        other => {
            p.field(
                "signature.replay",
                format!("`{other}` is not one of off, memory, redis://host:port/db"),
            );
            ReplaySetting::Off
        }
    };
    if !matches!(replay, ReplaySetting::Redis(_)) {
        remote::refuse_redis_fields(s, p);
    }
    let cavage_header = s
        .cavage_header
        .as_deref()
        .and_then(|h| header_name(h, "signature.cavage_header", p))
        .unwrap_or(http::header::AUTHORIZATION);
    let strip_path_prefix = s
        .strip_path_prefix
        .as_ref()
        .map(|x| x.trim_end_matches('/').to_string());
    if let Some(pre) = &strip_path_prefix
        && !pre.starts_with('/')
    {
        p.field("signature.strip_path_prefix", "must start with /");
    }
    let min_rsa_bits = s.min_rsa_bits.unwrap_or(2048);
    if !(1024..=8192).contains(&min_rsa_bits) {
        p.field("signature.min_rsa_bits", "must be between 1024 and 8192");
    }
    if s.tyk_absent_headers_empty && !s.tyk_compat {
        p.field(
            "signature.tyk_absent_headers_empty",
            "only applies with tyk_compat: true",
        );
    }
    SignatureSettings {
        schemes,
        required,
        clock_skew,
        max_age,
        digest,
        replay,
        replay_capacity: s.replay_capacity.unwrap_or(1_000_000),
        cavage_header,
        tyk_compat: s.tyk_compat,
        tyk_absent_headers_empty: s.tyk_absent_headers_empty,
        strip_path_prefix,
        min_rsa_bits,
        require_created: s.require_created.unwrap_or(true),
        rfc9421_tag: s.rfc9421_tag.clone(),
        date_zones: validate_date_zones(s.date_zones.as_deref().unwrap_or_default(), p),
    }
}

/// `signature.date_zones`: entries like `CET=+01:00` (abbreviation = UTC offset).
fn validate_date_zones(list: &[String], p: &mut Problems) -> Vec<(String, i32)> {
    let mut out = Vec::with_capacity(list.len());
    for (i, z) in list.iter().enumerate() {
        let parsed = z.split_once('=').and_then(|(name, off)| {
            let name = name.trim();
            let off = off.trim();
            let valid_name =
                (2..=6).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_uppercase());
            let sign = match off.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (h, m) = off[1..].split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            (valid_name
                && h.to_string().len() <= 2
                && (0..=14).contains(&h)
                && (0..60).contains(&m))
            .then(|| (name.to_string(), sign * (h * 3600 + m * 60)))
        });
        match parsed {
            Some(z) => out.push(z),
            None => p.field(
                &format!("signature.date_zones[{i}]"),
                format!("`{z}` is not ABBREVIATION=+HH:MM (e.g. CET=+01:00)"),
            ),
        }
    }
    out
}

fn validate_jwt(j: &file::RawJwt, base: &Path, p: &mut Problems) -> JwtSettings {
    if j.jwks_url.is_some() && j.jwks_file.is_some() {
        p.field("jwt.jwks_file", "give jwks_url or jwks_file, not both");
    }
    if j.jwks_url.is_none()
        && j.jwks_file.is_none()
        && j.issuer.is_none()
        && j.introspection.is_none()
    {
        p.field(
            "jwt",
            "needs jwks_url, jwks_file, an issuer (for OIDC discovery) or introspection",
        );
    }
    if j.audience.is_none() {
        p.field(
            "jwt.audience",
            "required: without it a token the issuer minted for any other service would be accepted",
        );
    }
    if let Some(u) = &j.jwks_url
        && !url_allowed(u)
    {
        p.field(
            "jwt.jwks_url",
            "must be https:// (http:// only to a loopback address)",
        );
    }
    if j.jwks_url.is_none()
        && j.jwks_file.is_none()
        && j.introspection.is_none()
        && let Some(issuer) = &j.issuer
        && !url_allowed(issuer)
    {
        p.field(
            "jwt.issuer",
            "OIDC discovery needs an https:// issuer (http:// only to a loopback address)",
        );
    }
    let algorithms = j.algorithms.clone().unwrap_or_else(|| {
        [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    });
    for (i, a) in algorithms.iter().enumerate() {
        if !matches!(
            a.as_str(),
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA"
        ) {
            p.field(&format!("jwt.algorithms[{i}]"), format!("`{a}` is not accepted (RS256/384/512, PS256/384/512, ES256/384, EdDSA; never none or HS*)"));
        }
    }
    let mut forward_claims = Vec::new();
    for (i, fc) in j.forward_claims.iter().enumerate() {
        if let Some(h) = header_name(&fc.header, &format!("jwt.forward_claims[{i}].header"), p) {
            forward_claims.push((fc.claim.clone(), h));
        }
    }
    let introspection = j.introspection.as_ref().and_then(|i| {
        if !url_allowed(&i.url) {
            p.field(
                "jwt.introspection.url",
                "must be https:// (http:// only to a loopback address)",
            );
        }
        let secret = match (&i.client_secret_env, &i.client_secret_file) {
            (Some(env), None) => {
                std::env::var(env).map_err(|_| format!("environment variable {env} is not set"))
            }
            (None, Some(f)) => std::fs::read_to_string(resolve(base, Path::new(f)))
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("{f}: {}", read_error(&e))),
            _ => Err("give client_secret_env or client_secret_file".to_string()),
        };
        let cache_ttl = duration_or(
            &i.cache_ttl,
            "jwt.introspection.cache_ttl",
            Duration::from_secs(300),
            p,
        );
        match secret {
            Ok(client_secret) => Some(IntrospectionSettings {
                url: i.url.clone(),
                client_id: i.client_id.clone(),
                client_secret,
                cache_size: i.cache_size.unwrap_or(10_000),
                cache_ttl,
            }),
            Err(m) => {
                p.field("jwt.introspection", m);
                None
            }
        }
    });
    let clock_skew = duration_or(&j.clock_skew, "jwt.clock_skew", Duration::from_secs(60), p);
    JwtSettings {
        jwks_url: j.jwks_url.clone(),
        jwks_file: j.jwks_file.as_deref().map(|f| resolve(base, Path::new(f))),
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        algorithms,
        jwks_refresh: duration_or(
            &j.jwks_refresh,
            "jwt.jwks_refresh",
            Duration::from_secs(600),
            p,
        ),
        jwks_min_refetch: duration_or(
            &j.jwks_min_refetch,
            "jwt.jwks_min_refetch",
            Duration::from_secs(5),
            p,
        ),
        clock_skew,
        max_lifetime: j
            .max_lifetime
            .as_ref()
            .map(|s| duration_or(&Some(s.clone()), "jwt.max_lifetime", Duration::ZERO, p)),
        allowed_clients: j.allowed_clients.clone(),
        forward_token: j.forward_token.unwrap_or(true),
        forward_claims,
        introspection,
        ca_file: j.ca_file.as_deref().map(|f| resolve(base, Path::new(f))),
    }
}

/// True for an https:// URL, or an http:// URL to a loopback host.
pub fn url_allowed(u: &str) -> bool {
    if u.starts_with("https://") {
        return true;
    }
    match u.strip_prefix("http://") {
        Some(rest) => {
            let hostport = rest.split('/').next().unwrap_or("");
            let host = match hostport.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => hostport,
            };
            is_loopback_host(host)
        }
        None => false,
    }
}

fn validate_routes(raw: &RawConfig, default_mode: Mode, p: &mut Problems) -> Vec<RouteSettings> {
    if raw.routes.is_empty() {
        p.field(
            "routes",
            "at least one route is required (a request that matches no route is refused)",
        );
    }
    let mut out = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let f = format!("routes[{i}]");
        let path = match r.path.as_deref() {
            Some(path) if path.starts_with('/') => path.to_string(),
            Some(path) => {
                p.field(&format!("{f}.path"), format!("`{path}` must start with /"));
                continue;
            }
            None => {
                p.field(&format!("{f}.path"), "required");
                continue;
            }
        };
        let mut methods = Vec::with_capacity(r.methods.len());
        for (j, m) in r.methods.iter().enumerate() {
            match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => p.field(
                    &format!("{f}.methods[{j}]"),
                    format!("`{m}` is not an HTTP method"),
                ),
            }
        }
        let Some(req) = &r.require else {
            p.field(
                &format!("{f}.require"),
                "required (write require: [] for a route that needs no credentials)",
            );
            continue;
        };
        let mut require = Vec::with_capacity(req.len());
        for (j, name) in req.iter().enumerate() {
            match Requirement::parse(name.trim()) {
                Some(x) if !require.contains(&x) => require.push(x),
                Some(_) => {}
                None => p.field(
                    &format!("{f}.require[{j}]"),
                    format!("`{name}` is not one of mtls, ip, signature, jwt, api_key"),
                ),
            }
        }
        let mode = match r.mode.as_deref() {
            Some(m) => parse_mode(m, &format!("{f}.mode"), p),
            None => default_mode,
        };
        out.push(RouteSettings {
            name: r.name.clone().unwrap_or_else(|| path.clone()),
            path,
            methods,
            require,
            scopes: r.scopes.clone(),
            mode,
        });
    }
    out
}

fn validate_limits(raw: &RawConfig, p: &mut Problems) -> Limits {
    let l = &raw.limits;
    let max_header_bytes = l.max_header_bytes.unwrap_or(32 * 1024);
    if !(1024..=1024 * 1024).contains(&max_header_bytes) {
        p.field(
            "limits.max_header_bytes",
            "must be between 1024 and 1048576",
        );
    }
    let max_connections = match l.max_connections {
        Some(n) => {
            let cap = crate::sys::open_file_limit().map(|f| f.saturating_sub(64) / 2);
            if let Some(cap) = cap
                && n > cap
            {
                p.field(
                    "limits.max_connections",
                    format!("{n} is more than the open-file limit allows (each connection may use two descriptors; at most {cap})"),
                );
            }
            n
        }
        None => default_max_connections(),
    };
    Limits {
        handshake_timeout: limit_timeout(
            &l.handshake_timeout,
            "limits.handshake_timeout",
            Duration::from_secs(10),
            p,
        ),
        header_read_timeout: limit_timeout(
            &l.header_read_timeout,
            "limits.header_read_timeout",
            Duration::from_secs(30),
            p,
        ),
        max_header_bytes,
        max_headers: l.max_headers.unwrap_or(100).clamp(8, 1000),
        max_connections,
        max_digest_body: l.max_digest_body.unwrap_or(8 * 1024 * 1024),
        body_timeout: limit_timeout(
            &l.body_timeout,
            "limits.body_timeout",
            Duration::from_secs(30),
            p,
        ),
        upstream_connect_timeout: limit_timeout(
            &l.upstream_connect_timeout,
            "limits.upstream_connect_timeout",
            Duration::from_secs(5),
            p,
        ),
        upstream_timeout: limit_timeout(
            &l.upstream_timeout,
            "limits.upstream_timeout",
            Duration::from_secs(60),
            p,
        ),
        stream_idle_timeout: limit_timeout(
            &l.stream_idle_timeout,
            "limits.stream_idle_timeout",
            Duration::from_secs(60),
            p,
        ),
        tunnel_idle_timeout: limit_timeout(
            &l.tunnel_idle_timeout,
            "limits.tunnel_idle_timeout",
            Duration::from_secs(3600),
            p,
        ),
        max_h2_streams: l.max_h2_streams.unwrap_or(100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(s: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(s, Path::new("c.yaml"), Path::new("/etc/cs"))
    }

    const MIN: &str = "upstream: http://127.0.0.1:8080\nroutes:\n  - path: /\n    require: []\n";

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.mode, Mode::Enforce);
        assert!(c.tls.is_none());
        assert_eq!(c.signature.clock_skew, Duration::from_secs(300));
        assert_eq!(c.signature.required, vec!["(request-target)", "date"]);
    }

    #[test]
    fn a_wrong_type_names_the_field_once() {
        let e = load(&format!("{MIN}api_key:\n  forward: maybe\n")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with(
                "c.yaml: api_key.forward: invalid type: string \"maybe\", expected a boolean"
            ),
            "{s}"
        );
        assert!(
            load(&format!("{MIN}api_key:\n  forward: false\n")).is_ok_and(|c| !c.api_key_forward)
        );
        assert!(load(MIN).is_ok_and(|c| c.api_key_forward));
    }

    #[test]
    fn unknown_field_names_the_field() {
        let e =
            load("upstream: http://127.0.0.1:8080\ntls:\n  certt: x\nroutes: []\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("c.yaml: tls"), "{s}");
        assert!(s.contains("unknown field `certt`"), "{s}");
    }

    #[test]
    fn collects_every_problem() {
        let e = load(
            "upstream: http://10.0.0.1:8080\nip_allow: [300.1.1.1/8]\nroutes:\n  - path: /\n    require: [ip, magic]\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("c.yaml: upstream: `10.0.0.1` is not a loopback"),
            "{s}"
        );
        assert!(s.contains("c.yaml: ip_allow[0]:"), "{s}");
        assert!(s.contains("c.yaml: routes[0].require[1]: `magic`"), "{s}");
        assert!(s.contains("ip_allow is empty"), "{s}");
    }

    #[test]
    fn limits_timeouts_default_parse_and_refuse_zero() {
        let l = load(MIN).unwrap().limits;
        assert_eq!(l.upstream_timeout, Duration::from_secs(60));
        assert_eq!(l.stream_idle_timeout, Duration::from_secs(60));
        assert_eq!(l.tunnel_idle_timeout, Duration::from_secs(3600));
        let l = load(&format!(
            "{MIN}limits:\n  stream_idle_timeout: 5m\n  tunnel_idle_timeout: 90s\n"
        ))
        .unwrap()
        .limits;
        assert_eq!(l.stream_idle_timeout, Duration::from_secs(300));
        assert_eq!(l.tunnel_idle_timeout, Duration::from_secs(90));
        let e = load(&format!(
            "{MIN}limits:\n  stream_idle_timeout: 0s\n  upstream_timeout: 0ms\n  handshake_timeout: soon\n  tunnel_idle_timeout: 0s\n"
        ))
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("c.yaml: limits.stream_idle_timeout: must be more than 0"),
            "{s}"
        );
        assert!(
            s.contains("c.yaml: limits.upstream_timeout: must be more than 0"),
            "{s}"
        );
        assert!(
            s.contains("c.yaml: limits.handshake_timeout: not a duration"),
            "{s}"
        );
        assert!(
            s.contains("c.yaml: limits.tunnel_idle_timeout: must be more than 0"),
            "{s}"
        );
        // Never a setting: the PROXY header is bounded by handshake_timeout.
        let e = load(&format!("{MIN}limits:\n  proxy_protocol_timeout: 1s\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown field `proxy_protocol_timeout`"),
            "{e}"
        );
    }

    #[test]
    fn remote_upstream_needs_opt_in() {
        let c = load(
            "upstream: http://10.0.0.1:8080\nallow_remote_upstream: true\nroutes:\n  - path: /\n    require: []\n",
        );
        assert!(c.is_ok());
    }

    #[test]
    fn paths_resolve_against_config_dir() {
        let c = load(&format!("{MIN}tls:\n  cert: a.crt\n  key: /abs/a.key\n")).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert.unwrap(), PathBuf::from("/etc/cs/a.crt"));
        assert_eq!(t.key.unwrap(), PathBuf::from("/abs/a.key"));
    }

    #[test]
    fn mtls_route_needs_client_ca() {
        let e = load("upstream: http://127.0.0.1:1\ntls: {cert: a, key: b}\nroutes:\n  - path: /\n    require: [mtls]\n").unwrap_err();
        assert!(e.to_string().contains("tls.client_ca is not set"));
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(load("  \n").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn url_rules() {
        assert!(url_allowed("https://idp.example/jwks"));
        assert!(url_allowed("http://127.0.0.1:8080/jwks"));
        assert!(url_allowed("http://localhost/jwks"));
        assert!(url_allowed("http://[::1]:80/x"));
        assert!(!url_allowed("http://idp.example/jwks"));
        assert!(!url_allowed("ftp://x"));
    }
}
