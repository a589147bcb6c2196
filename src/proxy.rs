//! Step 8: forward to the backend over one pooled keep-alive client. Hop-by-hop headers out,
//! spoofable identity headers out, countersign's identity headers in; bodies stream both ways.
//! Last step: the response goes back through `app.rs` for logging.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use smallvec::SmallVec;

use crate::stream_idle::{IdleBody, Upload};
use crate::upstream::{Pool, PooledBody, SendError};

use crate::config::{Limits, Upstream};
use crate::headers::{SPOOFABLE, is_countersign_owned};
use crate::reject::{Denial, Reject};

/// The body sent upstream: streamed from the client (within `limits.stream_idle_timeout`), or
/// buffered (when a digest was checked).
pub type ReqBody = Either<IdleBody<Incoming>, Full<Bytes>>;

/// True for a hop-by-hop header name, in any case (RFC 9110 section 7.6.1 and the usual
/// non-standard ones: `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
/// `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`). One length dispatch
/// per name: most names of a request compare against nothing.
fn is_hop_by_hop(s: &str) -> bool {
    let is = |name: &str| s.eq_ignore_ascii_case(name);
    match s.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// True when the request asks to switch protocols (WebSocket) over HTTP/1.1.
pub fn is_upgrade(version: Version, h: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && h.contains_key(header::UPGRADE)
        && connection_tokens(h).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those named in `Connection`. With `upgrade`, keeps
/// `Upgrade` and sets `Connection: upgrade`.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // Find what to remove in one pass over the names (most requests carry none of these, and a
    // removal hashes the name even when it is absent), then remove only that. The names are
    // kept on the stack: a response carries one (`Connection: keep-alive`) as a rule.
    let keep_upgrade = |n: &HeaderName| upgrade && *n == header::UPGRADE;
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    let mut connection = false;
    for k in h.keys() {
        connection |= *k == header::CONNECTION;
        let hop = is_hop_by_hop(k.as_str())
            && (*k != header::TE
                || h.get(header::TE)
                    .is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers")));
        if hop && !keep_upgrade(k) {
            doomed.push(k.clone());
        }
    }
    if connection {
        for t in connection_tokens(h) {
            // A hop-by-hop name but `TE` was dealt with above (`keep-alive`, the usual token, among
            // them). Others are looked up by text first: most (`close`) name no header present,
            // and making a `HeaderName` of one that is not standard allocates.
            if (!is_hop_by_hop(t) || t.eq_ignore_ascii_case("te"))
                && h.contains_key(t)
                && let Ok(n) = HeaderName::from_bytes(t.as_bytes())
                && !keep_upgrade(&n)
            {
                doomed.push(n);
            }
        }
    }
    for n in doomed {
        h.remove(n);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes every incoming header only countersign may set: `x-countersign-*`/`x_countersign_*`
/// in any case, and the client-certificate headers.
pub fn strip_spoofable(h: &mut HeaderMap) {
    let spoofed = |n: &HeaderName| SPOOFABLE.contains(n) || is_countersign_owned(n);
    if !h.keys().any(spoofed) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|n| spoofed(n)).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

/// The client to the one backend.
#[derive(Clone)]
pub struct Proxy {
    pool: Pool,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    version: Version,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("authority", &self.authority)
            .finish()
    }
}

impl Proxy {
    /// A client for `upstream`.
    pub fn new(upstream: &Upstream) -> Proxy {
        let parts = upstream.uri.clone().into_parts();
        let authority = parts
            .authority
            .expect("validated upstream has an authority");
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Proxy {
            pool: Pool::new(addr, upstream.http2),
            scheme: parts.scheme.unwrap_or(http::uri::Scheme::HTTP),
            authority,
            version: if upstream.http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
        }
    }

    /// Points the request at the backend, keeping the path and query byte for byte: origin-form
    /// for HTTP/1.1, the absolute form HTTP/2 needs for its pseudo-headers. Gives back the URI the
    /// request came with.
    pub fn retarget(&self, parts: &mut http::request::Parts) -> Uri {
        // An HTTP/2 request carries its host in :authority; the backend wants a Host header.
        if !parts.headers.contains_key(header::HOST) {
            let host = parts.uri.authority().unwrap_or(&self.authority);
            if let Ok(v) = HeaderValue::from_str(host.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
        let mut u = http::uri::Parts::default();
        if self.version == Version::HTTP_2 {
            u.scheme = Some(self.scheme.clone());
            u.authority = Some(self.authority.clone());
        }
        u.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        parts.version = self.version;
        match Uri::from_parts(u) {
            Ok(uri) => std::mem::replace(&mut parts.uri, uri),
            Err(_) => parts.uri.clone(),
        }
    }

    /// Sends the request; the response head must arrive within the upstream timeout of the last
    /// byte the backend was handed (a client slow to upload is bounded by
    /// `limits.stream_idle_timeout` instead). The timeouts come from `limits` of the request's
    /// snapshot, so a reload changes them. A failure says why, for the access line.
    pub async fn send(
        &self,
        req: Request<ReqBody>,
        limits: &Limits,
    ) -> Result<Response<PooledBody>, Denial> {
        let upload = match req.body() {
            Either::Left(b) => b.upload().cloned(),
            Either::Right(_) => None,
        };
        let send = std::pin::pin!(self.pool.send(req, limits.upstream_connect_timeout));
        match answered(send, limits.upstream_timeout, upload).await {
            Some(Ok(resp)) => Ok(resp),
            Some(Err(SendError::Http(e))) if crate::stream_idle::is_idle(&e) => Err(Denial::new(
                Reject::RequestTimeout,
                "the request body stalled for limits.stream_idle_timeout",
            )),
            Some(Err(SendError::Http(e))) if client_body_failed(&e) => {
                tracing::info!(target: "countersign::upstream", error = %error_chain(&e), "the client's request body failed while it was forwarded");
                Err(Denial::new(
                    Reject::MalformedRequest,
                    "the request body failed while forwarded",
                ))
            }
            Some(Err(e)) => {
                let kind = match e {
                    SendError::Connect { .. } => "connect",
                    SendError::Http(_) => "protocol",
                };
                crate::metrics::upstream_error(kind);
                tracing::warn!(target: "countersign::upstream", kind, error = %error_chain(&e), "backend request failed");
                Err(Denial::new(
                    Reject::UpstreamUnavailable,
                    "backend request failed",
                ))
            }
            None => {
                crate::metrics::upstream_error("timeout");
                tracing::warn!(target: "countersign::upstream", kind = "timeout", timeout_ms = limits.upstream_timeout.as_millis() as u64, "backend did not answer in time");
                Err(Denial::new(
                    Reject::UpstreamTimeout,
                    "the backend did not answer within limits.upstream_timeout",
                ))
            }
        }
    }
}

/// Runs `send` until the backend's head arrives; `None` when it did not within `timeout`, counted
/// from the last byte of an upload when there is one.
async fn answered<F: Future>(
    mut send: Pin<&mut F>,
    timeout: Duration,
    upload: Option<Arc<Upload>>,
) -> Option<F::Output> {
    let mut deadline = Instant::now() + timeout;
    loop {
        if let Ok(out) = tokio::time::timeout_at(deadline, send.as_mut()).await {
            return Some(out);
        }
        let now = Instant::now();
        deadline = upload.as_ref()?.deadline(timeout, now);
        if deadline <= now {
            return None;
        }
    }
}

/// True when sending failed because the client's body did (a broken chunk, a client gone
/// mid-upload): hyper reports an error of the request body it was given as a user error with the
/// body's error as its source. The backend is not at fault.
fn client_body_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>()
            && h.is_user()
            && std::error::Error::source(h).is_some()
        {
            return true;
        }
        cur = c.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, X-Countersign-Key-Id"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn connection_tokens_in_any_case_remove_what_they_name_te_trailers_included() {
        let mut h = map(&[
            ("connection", "Close, TE, KEEP-ALIVE, Proxy-Connection"),
            ("te", "trailers"),
            ("close", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn every_hop_by_hop_name_is_known_and_no_other() {
        for n in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "Transfer-Encoding",
        ] {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in [
            "host",
            "user-agent",
            "trailers",
            "tE2",
            "proxy-connections",
            "x-upgrade",
            "",
        ] {
            assert!(!is_hop_by_hop(n), "{n}");
        }
    }

    #[test]
    fn te_trailers_survives_and_upgrade_is_kept_for_upgrades() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn spoofable_headers_are_removed_in_every_spelling() {
        let mut h = map(&[
            ("x-countersign-key-id", "forged"),
            ("X_Countersign_Cert_Subject", "forged"),
            ("x-forwarded-client-cert", "forged"),
            ("client-cert", ":AAAA:"),
            ("client-cert-chain", ":AAAA:"),
            ("x-request-id", "keep"),
        ]);
        strip_spoofable(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-request-id"));
    }
}
