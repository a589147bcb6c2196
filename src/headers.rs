//! Header names countersign reads, strips and adds.

use http::HeaderName;

/// `X-Request-Id`: kept when sent, made when not.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The client IP countersign decided on.
pub const CLIENT_IP: HeaderName = HeaderName::from_static("x-countersign-client-ip");
/// The verified client certificate's subject (RFC 4514).
pub const CERT_SUBJECT: HeaderName = HeaderName::from_static("x-countersign-cert-subject");
/// The verified client certificate's SHA-256 (hex).
pub const CERT_SHA256: HeaderName = HeaderName::from_static("x-countersign-cert-sha256");
/// The verified client certificate's first URI SAN (a SPIFFE ID).
pub const CERT_URI: HeaderName = HeaderName::from_static("x-countersign-cert-uri");
/// The key id of the verified signature or API key.
pub const KEY_ID: HeaderName = HeaderName::from_static("x-countersign-key-id");
/// The verified JWT's `sub`.
pub const JWT_SUB: HeaderName = HeaderName::from_static("x-countersign-jwt-sub");
/// Set on requests forwarded in report mode that enforce mode would have denied: the code.
pub const REPORT_VERDICT: HeaderName = HeaderName::from_static("x-countersign-report-verdict");

/// Incoming headers only countersign may vouch for, removed from every request.
pub const SPOOFABLE: [HeaderName; 3] = [
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
];

/// True for a name countersign owns: `x-countersign-*` or `x_countersign_*` in any case.
pub fn is_countersign_owned(name: &HeaderName) -> bool {
    // HeaderName is lower case already.
    let b = name.as_str().as_bytes();
    b.len() > 14
        && b[0] == b'x'
        && matches!(b[1], b'-' | b'_')
        && &b[2..13] == b"countersign"
        && matches!(b[13], b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_prefixes_in_every_spelling() {
        for n in [
            "x-countersign-key-id",
            "X-Countersign-Anything",
            "x_countersign_key_id",
            "x-countersign_x",
            "x_countersign-x",
        ] {
            let h = HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(is_countersign_owned(&h), "{n}");
        }
        for n in [
            "x-countersig-a",
            "countersign-a",
            "x-counter-sign-a",
            "x-countersign",
        ] {
            let h = HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(!is_countersign_owned(&h), "{n}");
        }
    }
}
