//! The bearer credential in `Authorization` (RFC 6750 section 2.1), and removing it.
//!
//! Only `Authorization` header values whose scheme is `Bearer` (any case) are considered, so an
//! `Authorization: Signature ...` beside them is left to the signature step. Form and query
//! tokens (RFC 6750 sections 2.2 and 2.3) are never read.

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};

/// The longest bearer token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why the bearer credential is unusable (the `token_invalid` detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// More than one `Authorization: Bearer` value.
    #[error("more than one Authorization: Bearer credential")]
    Several,
    /// `Bearer` with nothing after it.
    #[error("Authorization: Bearer carries no token")]
    Empty,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the bearer token is longer than 16 KiB")]
    TooLong,
    /// Characters outside RFC 6750's b64token syntax.
    #[error("the bearer token has characters outside the b64token syntax")]
    Syntax,
}

/// The scheme of an `Authorization` value is `Bearer` (case-insensitive) followed by a space, or
/// the value is exactly `Bearer`. Returns what follows the scheme.
fn bearer_rest(value: &HeaderValue) -> Option<&[u8]> {
    let b = value.as_bytes();
    if b.len() < 6 || !b[..6].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    match b.get(6) {
        None => Some(&[]),
        Some(b' ') => Some(&b[7..]),
        Some(_) => None,
    }
}

/// The one bearer token in `headers`: `Ok(None)` when there is none, an error when the
/// credential is present but unusable.
pub fn extract(headers: &HeaderMap) -> Result<Option<&str>, BearerError> {
    let mut found = None;
    for value in headers.get_all(AUTHORIZATION) {
        if let Some(rest) = bearer_rest(value) {
            if found.is_some() {
                return Err(BearerError::Several);
            }
            found = Some(rest);
        }
    }
    let Some(rest) = found else {
        return Ok(None);
    };
    let start = rest.iter().take_while(|b| **b == b' ').count();
    let token = rest[start..].trim_ascii_end();
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(BearerError::TooLong);
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body_len = token.iter().take_while(|b| is_b64token_char(**b)).count();
    if body_len == 0 || token[body_len..].iter().any(|b| *b != b'=') {
        return Err(BearerError::Syntax);
    }
    // Every byte is ASCII, checked above.
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| BearerError::Syntax)
}

fn is_b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// Removes the bearer credential (every `Authorization: Bearer` value) and keeps any other
/// `Authorization` value, for `jwt.forward_token: false`.
pub fn strip(headers: &mut HeaderMap) {
    if !headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| bearer_rest(v).is_some())
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|v| bearer_rest(v).is_none())
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for v in kept {
        headers.append(AUTHORIZATION, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_token_is_exact() {
        for v in [
            "Bearer abc.def-_~+/==",
            "bearer abc.def-_~+/==",
            "BEARER   abc.def-_~+/==",
        ] {
            assert_eq!(extract(&map(&[v])), Ok(Some("abc.def-_~+/==")), "{v}");
        }
    }

    #[test]
    fn absent_or_other_schemes_are_no_token() {
        assert_eq!(extract(&HeaderMap::new()), Ok(None));
        assert_eq!(extract(&map(&["Basic dXNlcjpwYXNz"])), Ok(None));
        assert_eq!(
            extract(&map(&["Signature keyId=\"k\",signature=\"x\""])),
            Ok(None)
        );
        assert_eq!(extract(&map(&["Bearerabc"])), Ok(None));
    }

    #[test]
    fn a_bearer_beside_a_signature_is_found() {
        let h = map(&["Signature keyId=\"k\",signature=\"x\"", "Bearer t0k"]);
        assert_eq!(extract(&h), Ok(Some("t0k")));
    }

    #[test]
    fn unusable_credentials() {
        assert_eq!(extract(&map(&["Bearer"])), Err(BearerError::Empty));
        assert_eq!(extract(&map(&["Bearer   "])), Err(BearerError::Empty));
        assert_eq!(
            extract(&map(&["Bearer a", "Bearer b"])),
            Err(BearerError::Several)
        );
        assert_eq!(extract(&map(&["Bearer a b"])), Err(BearerError::Syntax));
        assert_eq!(extract(&map(&["Bearer a=b"])), Err(BearerError::Syntax));
        assert_eq!(extract(&map(&["Bearer ==="])), Err(BearerError::Syntax));
        assert_eq!(extract(&map(&["Bearer a,b"])), Err(BearerError::Syntax));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(extract(&map(&[&long])), Err(BearerError::TooLong));
        let max = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(extract(&map(&[&max])).unwrap().is_some());
        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xc3\xa9").unwrap(),
        );
        assert_eq!(extract(&h), Err(BearerError::Syntax));
    }

    #[test]
    fn strip_removes_only_the_bearer() {
        let mut h = map(&["Signature keyId=\"k\"", "Bearer t0k"]);
        h.insert("x-other", HeaderValue::from_static("1"));
        strip(&mut h);
        let left: Vec<_> = h.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(left, vec!["Signature keyId=\"k\""]);
        assert!(h.contains_key("x-other"));
        let mut h = map(&["bearer t0k"]);
        strip(&mut h);
        assert!(!h.contains_key(AUTHORIZATION));
        let mut h = map(&["Basic x"]);
        strip(&mut h);
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Basic x");
    }
}
