//! The configuration file as written: raw serde shapes, unknown fields refused so typos are caught.
//!
//! Nothing here is validated beyond its YAML type; `config::Config::try_from` turns these into
//! typed, checked values.

use serde::Deserialize;

/// The whole `countersign.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    #[serde(default)]
    pub allow_remote_upstream: bool,
    #[serde(default)]
    pub upstream_http2: bool,
    pub admin: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub log: RawLog,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub client_ip: RawClientIp,
    #[serde(default)]
    pub ip_allow: Vec<String>,
    pub keys: Option<String>,
    pub keys_ca_file: Option<String>,
    pub keys_refresh: Option<String>,
    pub keys_timeout: Option<String>,
    pub keys_max_bytes: Option<usize>,
    #[serde(default)]
    pub signature: RawSignature,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub api_key: RawApiKey,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub limits: RawLimits,
    pub shutdown_timeout: Option<String>,
    #[serde(default)]
    pub reload: RawReload,
}

/// `log:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<String>,
    pub level: Option<String>,
}

/// `tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    #[serde(default)]
    pub crl: Vec<String>,
    pub crl_check: Option<String>,
    #[serde(default)]
    pub crl_enforce_expiry: bool,
    #[serde(default)]
    pub allow_clients: Vec<RawAllowClient>,
    pub expiry_warning: Option<String>,
}

/// One `tls.allow_clients` entry: every field given must match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowClient {
    pub subject_cn: Option<String>,
    pub san_dns: Option<String>,
    pub san_uri: Option<String>,
    pub sha256: Option<String>,
}

/// `client_ip:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub from: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub client_cert_header: Option<String>,
}

/// `signature:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignature {
    pub schemes: Option<Vec<String>>,
    pub required: Option<Vec<String>>,
    pub clock_skew: Option<String>,
    pub max_age: Option<String>,
    pub digest: Option<String>,
    pub replay: Option<String>,
    pub replay_capacity: Option<usize>,
    pub replay_on_error: Option<String>,
    pub replay_timeout: Option<String>,
    pub replay_key_prefix: Option<String>,
    pub replay_ca_file: Option<String>,
    pub cavage_header: Option<String>,
    #[serde(default)]
    pub tyk_compat: bool,
    #[serde(default)]
    pub tyk_absent_headers_empty: bool,
    pub strip_path_prefix: Option<String>,
    pub min_rsa_bits: Option<usize>,
    pub require_created: Option<bool>,
    pub rfc9421_tag: Option<String>,
    pub date_zones: Option<Vec<String>>,
}

/// `jwt:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub jwks_refresh: Option<String>,
    pub jwks_min_refetch: Option<String>,
    pub clock_skew: Option<String>,
    pub max_lifetime: Option<String>,
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    pub forward_token: Option<bool>,
    #[serde(default)]
    pub forward_claims: Vec<RawForwardClaim>,
    pub introspection: Option<RawIntrospection>,
    pub ca_file: Option<String>,
}

/// One `jwt.forward_claims` entry: a claim copied into a header for the backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardClaim {
    pub claim: String,
    pub header: String,
}

/// `jwt.introspection:` (RFC 7662) for opaque tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub url: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    pub cache_size: Option<usize>,
    pub cache_ttl: Option<String>,
}

/// `api_key:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub header: Option<String>,
    pub forward: Option<bool>,
}

/// One `routes:` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub require: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub mode: Option<String>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub handshake_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_digest_body: Option<usize>,
    pub body_timeout: Option<String>,
    pub upstream_connect_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub tunnel_idle_timeout: Option<String>,
    pub max_h2_streams: Option<u32>,
}

/// `reload:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub poll_interval: Option<String>,
}
