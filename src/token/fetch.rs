//! Outbound HTTP for the token step (JWKS, OIDC discovery, introspection) and the remote key
//! registry: reqwest over rustls with the ring provider, with timeouts, a response size cap, and
//! redirects only to URLs `config::url_allowed` admits (https, or http to loopback).

use std::path::Path;
use std::time::Duration;

use http::HeaderValue;
use reqwest::{StatusCode, redirect};

use crate::config::url_allowed;

/// Deadline for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for a whole request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most redirects followed.
const MAX_REDIRECTS: usize = 3;

/// Why a fetch failed (logged; never shown to callers).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection, TLS, timeout or redirect failure.
    #[error("{0}")]
    Transport(String),
    /// A status other than 200.
    #[error("HTTP status {0}")]
    Status(StatusCode),
    /// The body is larger than allowed.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// The answer to [`Fetcher::get_conditional`].
#[derive(Debug)]
pub enum Conditional {
    /// 304: what the caller has is current.
    NotModified,
    /// 200.
    Modified {
        /// The body.
        body: Vec<u8>,
        /// Its `ETag`, for the next request's `If-None-Match`.
        etag: Option<HeaderValue>,
        /// Its `Content-Type`, lower-cased.
        content_type: Option<String>,
    },
}

/// A reqwest client set up for token fetches.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

fn transport(e: reqwest::Error) -> FetchError {
    // reqwest's Display omits the cause ("error sending request"); name the innermost one too.
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        msg.push_str(": ");
        msg.push_str(&cause);
    }
    FetchError::Transport(msg)
}

impl Fetcher {
    /// Builds the client, trusting the system roots, or only the PEM certificates in `ca_file`.
    /// Installs ring as rustls' process default provider when none is.
    pub fn new(ca_file: Option<&Path>) -> Result<Fetcher, String> {
        // Fails only when a provider is already installed, which is what we want either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if !url_allowed(attempt.url().as_str()) {
                attempt.error("redirect to a URL that is neither https nor loopback http")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate", path.display()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(policy)
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Fetcher { client })
    }

    /// GETs `url` and returns a 200 body of at most `limit` bytes.
    pub async fn get(&self, url: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
        let resp = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        read_limited(resp, limit).await
    }

    /// GETs `url` within `timeout`, sending `If-None-Match: etag` when given: a 304 answers
    /// [`Conditional::NotModified`]; a 200 its body (at most `limit` bytes), `ETag` and
    /// `Content-Type`; anything else is an error.
    pub async fn get_conditional(
        &self,
        url: &str,
        etag: Option<&HeaderValue>,
        accept: &'static str,
        limit: usize,
        timeout: Duration,
    ) -> Result<Conditional, FetchError> {
        let mut req = self
            .client
            .get(url)
            .timeout(timeout)
            .header(http::header::ACCEPT, accept);
        if let Some(e) = etag {
            req = req.header(http::header::IF_NONE_MATCH, e.clone());
        }
        let resp = req.send().await.map_err(transport)?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        let etag = resp.headers().get(http::header::ETAG).cloned();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let body = read_limited(resp, limit).await?;
        Ok(Conditional::Modified {
            body,
            etag,
            content_type,
        })
    }

    /// POSTs a form body with HTTP Basic client authentication (RFC 6749 section 2.3.1: id and
    /// secret form-encoded first) and returns a 200 body of at most `limit` bytes.
    pub async fn post_form(
        &self,
        url: &str,
        client_id: &str,
        client_secret: &str,
        form: String,
        limit: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let resp = self
            .client
            .post(url)
            .basic_auth(form_encode(client_id), Some(form_encode(client_secret)))
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(transport)?;
        read_limited(resp, limit).await
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, FetchError> {
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status(resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `application/x-www-form-urlencoded` for one value (unreserved characters kept).
pub fn form_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a+b/c=d e~f"), "a%2Bb%2Fc%3Dd%20e~f");
        assert_eq!(form_encode("plain-id_1.x"), "plain-id_1.x");
    }
}
