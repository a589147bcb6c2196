//! A key registry fetched over HTTPS (`keys: https://...`), for teams that keep it centrally.
//!
//! Polled every `keys_refresh` with `If-None-Match`: a 304, or a body identical to the last good
//! one, changes nothing; a new body that parses becomes the last good document and the snapshot is
//! rebuilt from it (`reload::poll_remote_keys`). A failed fetch, an oversized or unparseable body
//! keeps the last good document, is logged and counted. The first fetch happens before the
//! sidecar serves (`state::Snapshot::load`): without it there is nothing to verify against.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;

use super::{Format, Registry};
use crate::config::{ConfigError, KeysFetch, SignatureSettings, read_error};
use crate::metrics;
use crate::token::fetch::{Conditional, Fetcher};

/// What a registry server is asked for.
const ACCEPT: &str = "application/yaml, application/json;q=0.9, */*;q=0.5";

/// The last good registry document (it may hold secrets: no `Debug`).
#[derive(Clone)]
struct Document {
    bytes: Arc<[u8]>,
    format: Format,
    etag: Option<HeaderValue>,
}

/// What one fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A new document that parses: the snapshot must be rebuilt.
    Changed,
    /// 304 Not Modified.
    NotModified,
    /// 200 with the same bytes as the last good document (a server without ETags).
    Unchanged,
}

impl Fetched {
    fn label(self) -> &'static str {
        match self {
            Fetched::Changed => "changed",
            Fetched::NotModified => "not_modified",
            Fetched::Unchanged => "unchanged",
        }
    }
}

/// A registry URL, its HTTP client and the last good document.
pub struct RemoteRegistry {
    url: String,
    settings: KeysFetch,
    /// The content of `keys_ca_file` the client trusts, to notice when the file changes.
    ca_pem: Option<Vec<u8>>,
    fetcher: Fetcher,
    last: Mutex<Option<Document>>,
}

impl std::fmt::Debug for RemoteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.last();
        f.debug_struct("RemoteRegistry")
            .field("url", &self.url)
            .field("settings", &self.settings)
            .field("document_bytes", &last.as_ref().map(|d| d.bytes.len()))
            .field("etag", &last.as_ref().and_then(|d| d.etag.clone()))
            .finish_non_exhaustive()
    }
}

fn read_ca(path: &Option<PathBuf>) -> Result<Option<Vec<u8>>, String> {
    path.as_ref()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| format!("keys_ca_file {}: {}", p.display(), read_error(&e)))
        })
        .transpose()
}

/// The syntax of a fetched document: by `Content-Type`, else JSON when it starts like JSON.
fn format_of(content_type: Option<&str>, body: &[u8]) -> Format {
    match content_type {
        Some(t) if t.contains("json") => Format::Json,
        Some(t) if t.contains("yaml") || t.contains("yml") => Format::Yaml,
        _ => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Yaml,
        },
    }
}

impl RemoteRegistry {
    /// A client for `url` (trusting `keys_ca_file` when set, the system roots otherwise). Fetches
    /// nothing yet.
    pub fn new(url: &str, settings: &KeysFetch) -> Result<RemoteRegistry, String> {
        let ca_pem = read_ca(&settings.ca_file)?;
        let fetcher = Fetcher::new(settings.ca_file.as_deref())?;
        Ok(RemoteRegistry {
            url: url.to_string(),
            settings: settings.clone(),
            ca_pem,
            fetcher,
            last: Mutex::new(None),
        })
    }

    /// True when this client fetches `url` with `settings` and its CA file is unchanged, so a
    /// rebuilt snapshot can keep it (and its last good document).
    pub fn serves(&self, url: &str, settings: &KeysFetch) -> bool {
        self.url == url
            && self.settings == *settings
            && read_ca(&settings.ca_file).is_ok_and(|pem| pem == self.ca_pem)
    }

    /// The registry URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How often it is polled.
    pub fn refresh(&self) -> Duration {
        self.settings.refresh
    }

    fn last(&self) -> Option<Document> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches once. A new document must parse (with `signature`, as the snapshot will) before it
    /// replaces the last good one. Counts `countersign_keys_fetches_total{result}`; an error also
    /// counts `countersign_reloads_total{what="keys",result="error"}`.
    pub async fn fetch(&self, signature: &SignatureSettings) -> Result<Fetched, String> {
        let r = self.fetch_inner(signature).await;
        match &r {
            Ok(f) => metrics::keys_fetch(f.label()),
            Err(_) => {
                metrics::keys_fetch("error");
                metrics::reload("keys", false);
            }
        }
        r
    }

    async fn fetch_inner(&self, signature: &SignatureSettings) -> Result<Fetched, String> {
        let last = self.last();
        let answer = self
            .fetcher
            .get_conditional(
                &self.url,
                last.as_ref().and_then(|d| d.etag.as_ref()),
                ACCEPT,
                self.settings.max_bytes,
                self.settings.timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (body, etag, content_type) = match answer {
            Conditional::NotModified if last.is_some() => return Ok(Fetched::NotModified),
            Conditional::NotModified => {
                return Err("304 Not Modified to a request without If-None-Match".to_string());
            }
            Conditional::Modified {
                body,
                etag,
                content_type,
            } => (body, etag, content_type),
        };
        if let Some(d) = &last
            && *d.bytes == *body
        {
            if etag != d.etag {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Document { etag, ..d.clone() });
            }
            return Ok(Fetched::Unchanged);
        }
        let format = format_of(content_type.as_deref(), &body);
        Registry::from_remote_bytes(&body, format, &self.url, signature).map_err(|e| {
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Document {
            bytes: body.into(),
            format,
            etag,
        });
        Ok(Fetched::Changed)
    }

    /// The registry from the last good document, parsed with `signature`.
    pub fn registry(&self, signature: &SignatureSettings) -> Result<Registry, ConfigError> {
        let Some(d) = self.last() else {
            return Err(ConfigError::one(
                self.url.clone(),
                "the remote registry has not been fetched yet",
            ));
        };
        Registry::from_remote_bytes(&d.bytes, d.format, &self.url, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_by_content_type_then_sniffing() {
        assert_eq!(
            format_of(Some("application/json; charset=utf-8"), b"keys: []"),
            Format::Json
        );
        assert_eq!(format_of(Some("application/yaml"), b"{}"), Format::Yaml);
        assert_eq!(format_of(Some("text/x-yaml"), b"{}"), Format::Yaml);
        assert_eq!(
            format_of(Some("text/plain"), b"  \n{\"keys\": []}"),
            Format::Json
        );
        assert_eq!(format_of(None, b"keys: []"), Format::Yaml);
    }

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    fn parse(yaml: &str) -> Result<Registry, ConfigError> {
        Registry::from_remote_bytes(
            yaml.as_bytes(),
            Format::Yaml,
            "https://keys.example/r.yaml",
            &SignatureSettings::default(),
        )
    }

    #[test]
    fn remote_registry_takes_inline_material() {
        let yaml = format!(
            "keys:\n  - id: h\n    algorithm: hmac-sha256\n    secret_base64: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==\n  - id: e\n    algorithm: ed25519\n    public_key: |\n{}  - id: a\n    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
            PEM.lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        );
        let r = parse(&yaml).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.get("e").is_some());
    }

    #[test]
    fn remote_registry_refuses_local_files_and_environment() {
        for (field, value) in [
            ("secret_file", "/etc/hostname"),
            ("secret_env", "HOME"),
            ("public_key", "key.pem"),
            ("jwk", "key.json"),
        ] {
            let alg = if field.starts_with("secret") {
                "hmac-sha256"
            } else {
                "ed25519"
            };
            let e = parse(&format!(
                "keys:\n  - id: k\n    algorithm: {alg}\n    {field}: {value}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("https://keys.example/r.yaml: keys[0].{field}: {value}: a remote registry must carry its key material inline")),
                "{field}: {e}"
            );
        }
    }
}
