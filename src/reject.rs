//! Every way a request can be refused, its status and its contract code, and the JSON body.
//!
//! The caller gets the code and a fixed sentence, never a hint of what was expected; the operator
//! gets the detail in the access log (`Denial::detail`).

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

/// A refusal, one variant per contract code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// 400: a signature header that cannot be parsed.
    MalformedSignature,
    /// 400: a request that cannot be processed safely.
    MalformedRequest,
    /// 401: no signature where one is required.
    SignatureMissing,
    /// 401: the signature does not verify.
    SignatureInvalid,
    /// 401: the signed time is outside the allowed window.
    SignatureExpired,
    /// 401: the key id is not in the registry (or not valid now).
    UnknownKey,
    /// 401: the body does not match its covered digest.
    DigestMismatch,
    /// 401: this signature was already accepted.
    Replayed,
    /// 401: no bearer token.
    TokenMissing,
    /// 401: the bearer token is not valid.
    TokenInvalid,
    /// 401: no API key.
    ApiKeyMissing,
    /// 401: the API key is not known.
    ApiKeyInvalid,
    /// 403: the client IP is outside `ip_allow`.
    IpDenied,
    /// 403: the client certificate is missing, or valid but not allowed.
    ClientCertDenied,
    /// 403: the key may not be used from this IP.
    KeyNotAllowedFromIp,
    /// 403: the token lacks a scope the route needs.
    InsufficientScope,
    /// 403: no route matches.
    NoRoute,
    /// 408: the request took too long to arrive.
    RequestTimeout,
    /// 413: the body is larger than may be buffered.
    BodyTooLarge,
    /// 431: the request head is too large.
    HeadersTooLarge,
    /// 502: the backend could not be reached or failed.
    UpstreamUnavailable,
    /// 504: the backend did not answer in time.
    UpstreamTimeout,
    /// 503: the JWKS cannot be fetched and nothing is cached.
    JwksUnavailable,
    /// 503: the replay store cannot be reached.
    ReplayStoreUnavailable,
    /// 503: the sidecar is shutting down.
    Draining,
}

/// Every variant, in declaration order (for pre-registered metrics).
pub const ALL: [Reject; 25] = [
    Reject::MalformedSignature,
    Reject::MalformedRequest,
    Reject::SignatureMissing,
    Reject::SignatureInvalid,
    Reject::SignatureExpired,
    Reject::UnknownKey,
    Reject::DigestMismatch,
    Reject::Replayed,
    Reject::TokenMissing,
    Reject::TokenInvalid,
    Reject::ApiKeyMissing,
    Reject::ApiKeyInvalid,
    Reject::IpDenied,
    Reject::ClientCertDenied,
    Reject::KeyNotAllowedFromIp,
    Reject::InsufficientScope,
    Reject::NoRoute,
    Reject::RequestTimeout,
    Reject::BodyTooLarge,
    Reject::HeadersTooLarge,
    Reject::UpstreamUnavailable,
    Reject::UpstreamTimeout,
    Reject::JwksUnavailable,
    Reject::ReplayStoreUnavailable,
    Reject::Draining,
];

impl Reject {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Reject::MalformedSignature | Reject::MalformedRequest => StatusCode::BAD_REQUEST,
            Reject::SignatureMissing
            | Reject::SignatureInvalid
            | Reject::SignatureExpired
            | Reject::UnknownKey
            | Reject::DigestMismatch
            | Reject::Replayed
            | Reject::TokenMissing
            | Reject::TokenInvalid
            | Reject::ApiKeyMissing
            | Reject::ApiKeyInvalid => StatusCode::UNAUTHORIZED,
            Reject::IpDenied
            | Reject::ClientCertDenied
            | Reject::KeyNotAllowedFromIp
            | Reject::InsufficientScope
            | Reject::NoRoute => StatusCode::FORBIDDEN,
            Reject::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::JwksUnavailable | Reject::ReplayStoreUnavailable | Reject::Draining => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The contract code, also the `outcome` metric label.
    pub fn code(self) -> &'static str {
        match self {
            Reject::MalformedSignature => "malformed_signature",
            Reject::MalformedRequest => "malformed_request",
            Reject::SignatureMissing => "signature_missing",
            Reject::SignatureInvalid => "signature_invalid",
            Reject::SignatureExpired => "signature_expired",
            Reject::UnknownKey => "unknown_key",
            Reject::DigestMismatch => "digest_mismatch",
            Reject::Replayed => "replayed",
            Reject::TokenMissing => "token_missing",
            Reject::TokenInvalid => "token_invalid",
            Reject::ApiKeyMissing => "api_key_missing",
            Reject::ApiKeyInvalid => "api_key_invalid",
            Reject::IpDenied => "ip_denied",
            Reject::ClientCertDenied => "client_cert_denied",
            Reject::KeyNotAllowedFromIp => "key_not_allowed_from_ip",
            Reject::InsufficientScope => "insufficient_scope",
            Reject::NoRoute => "no_route",
            Reject::RequestTimeout => "request_timeout",
            Reject::BodyTooLarge => "body_too_large",
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::JwksUnavailable => "jwks_unavailable",
            Reject::ReplayStoreUnavailable => "replay_store_unavailable",
            Reject::Draining => "draining",
        }
    }

    /// The fixed sentence the caller sees.
    pub fn message(self) -> &'static str {
        match self {
            Reject::MalformedSignature => "the request signature could not be parsed",
            Reject::MalformedRequest => "the request could not be processed",
            Reject::SignatureMissing => "this route requires a request signature",
            Reject::SignatureInvalid => "the request signature is not valid",
            Reject::SignatureExpired => "the request signature is outside the allowed time window",
            Reject::UnknownKey => "the signing key is not known",
            Reject::DigestMismatch => "the request body does not match its digest",
            Reject::Replayed => "this signed request was already received",
            Reject::TokenMissing => "this route requires a bearer token",
            Reject::TokenInvalid => "the bearer token is not valid",
            Reject::ApiKeyMissing => "this route requires an API key",
            Reject::ApiKeyInvalid => "the API key is not valid",
            Reject::IpDenied => "requests from this address are not allowed",
            Reject::ClientCertDenied => "the client certificate is not allowed",
            Reject::KeyNotAllowedFromIp => "this key may not be used from this address",
            Reject::InsufficientScope => "the token lacks a scope this route requires",
            Reject::NoRoute => "no route allows this request",
            Reject::RequestTimeout => "the request was not received in time",
            Reject::BodyTooLarge => "the request body is too large",
            Reject::HeadersTooLarge => "the request headers are too large",
            Reject::UpstreamUnavailable => "the backend is unavailable",
            Reject::UpstreamTimeout => "the backend did not answer in time",
            Reject::JwksUnavailable => "token keys are unavailable",
            Reject::ReplayStoreUnavailable => "the replay store is unavailable",
            Reject::Draining => "the service is shutting down",
        }
    }

    /// The `WWW-Authenticate` challenge for token refusals (RFC 6750).
    pub fn www_authenticate(self) -> Option<HeaderValue> {
        match self {
            Reject::TokenMissing => Some(HeaderValue::from_static("Bearer")),
            Reject::TokenInvalid => Some(HeaderValue::from_static(
                "Bearer error=\"invalid_token\", error_description=\"the bearer token is not valid\"",
            )),
            Reject::InsufficientScope => Some(HeaderValue::from_static(
                "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a scope this route requires\"",
            )),
            _ => None,
        }
    }

    /// The JSON body, `{"error": CODE, "message": TEXT}` (made once per code).
    pub fn body(self) -> Bytes {
        static BODIES: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
            ALL.iter()
                .map(|r| {
                    Bytes::from(
                        serde_json::json!({"error": r.code(), "message": r.message()}).to_string(),
                    )
                })
                .collect()
        });
        BODIES[self as usize].clone()
    }

    /// The complete refusal response.
    pub fn response<B: From<Bytes>>(self, request_id: Option<&HeaderValue>) -> http::Response<B> {
        let body = self.body();
        let mut r = http::Response::new(B::from(body.clone()));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.www_authenticate() {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(id) = request_id {
            h.insert(crate::headers::X_REQUEST_ID, id.clone());
        }
        r
    }
}

/// A refusal with the operator-facing detail that goes to the log.
#[derive(Debug, Clone)]
pub struct Denial {
    /// What the caller is told.
    pub reject: Reject,
    /// Why, for the log (which component was missing, which key, ...). Never a secret.
    pub detail: Cow<'static, str>,
}

impl Denial {
    /// A denial with a static detail.
    pub fn new(reject: Reject, detail: impl Into<Cow<'static, str>>) -> Self {
        Denial {
            reject,
            detail: detail.into(),
        }
    }
}

impl From<Reject> for Denial {
    fn from(reject: Reject) -> Self {
        Denial {
            reject,
            detail: Cow::Borrowed(reject.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            assert!(seen.insert(r.code()), "duplicate {}", r.code());
            assert!(
                r.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(r.status().is_client_error() || r.status().is_server_error());
            let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
            assert_eq!(v["error"], r.code());
        }
    }

    #[test]
    fn body_is_the_contract_json() {
        let v: serde_json::Value = serde_json::from_slice(&Reject::NoRoute.body()).unwrap();
        assert_eq!(v["error"], "no_route");
        assert_eq!(Reject::NoRoute.status(), 403);
        assert_eq!(Reject::HeadersTooLarge.status(), 431);
    }
}
