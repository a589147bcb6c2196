//! Body digests: `Digest` (RFC 3230, `SHA-256=` / `SHA-512=` base64) and `Content-Digest`
//! (RFC 9530, a structured dictionary with `sha-256=:…:` / `sha-512=:…:`), recomputed from the
//! received body. Every supported algorithm present must match, and at least one must be present.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, SHA512, digest};
use subtle::ConstantTimeEq;

/// Which digest header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestField {
    /// `Digest` (RFC 3230).
    Digest,
    /// `Content-Digest` (RFC 9530).
    ContentDigest,
}

impl DigestField {
    /// The lower-case header name.
    pub fn name(self) -> &'static str {
        match self {
            DigestField::Digest => "digest",
            DigestField::ContentDigest => "content-digest",
        }
    }
}

/// A digest algorithm countersign computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    fn compute(self, body: &[u8]) -> ring::digest::Digest {
        digest(
            match self {
                DigestAlg::Sha256 => &SHA256,
                DigestAlg::Sha512 => &SHA512,
            },
            body,
        )
    }
}

fn compare(alg_name: &str, expected: &[u8], body: &[u8], alg: DigestAlg) -> Result<(), String> {
    let actual = alg.compute(body);
    if bool::from(actual.as_ref().ct_eq(expected)) {
        Ok(())
    } else {
        Err(format!(
            "the body ({} bytes) does not match its {alg_name} digest",
            body.len()
        ))
    }
}

/// Checks a `Digest` header value against the body.
pub fn check_digest(value: &[u8], body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(value).map_err(|_| "Digest is not ASCII".to_string())?;
    let mut checked = 0;
    for (i, part) in text.split(',').enumerate() {
        if i >= 8 {
            return Err("Digest lists more than 8 algorithms".to_string());
        }
        let Some((alg, b64)) = part.trim().split_once('=') else {
            return Err(format!(
                "Digest entry `{}` is not ALGORITHM=VALUE",
                part.trim()
            ));
        };
        let alg = alg.trim();
        let which = if alg.eq_ignore_ascii_case("sha-256") {
            DigestAlg::Sha256
        } else if alg.eq_ignore_ascii_case("sha-512") {
            DigestAlg::Sha512
        } else {
            continue;
        };
        let expected = STANDARD
            .decode(b64.trim())
            .map_err(|_| format!("Digest {alg} value is not base64"))?;
        compare(&format!("Digest {alg}"), &expected, body, which)?;
        checked += 1;
    }
    if checked == 0 {
        return Err("Digest has no SHA-256 or SHA-512 value".to_string());
    }
    Ok(())
}

/// Checks a `Content-Digest` header value against the body.
pub fn check_content_digest(value: &[u8], body: &[u8]) -> Result<(), String> {
    let dict: sfv::Dictionary = sfv::Parser::new(value)
        .parse()
        .map_err(|e| format!("Content-Digest is not a structured dictionary: {e}"))?;
    let mut checked = 0;
    for (k, v) in &dict {
        let which = match k.as_str() {
            "sha-256" => DigestAlg::Sha256,
            "sha-512" => DigestAlg::Sha512,
            _ => continue,
        };
        let sfv::ListEntry::Item(item) = v else {
            return Err(format!(
                "Content-Digest {} is not a byte sequence",
                k.as_str()
            ));
        };
        let Some(expected) = item.bare_item.as_byte_sequence() else {
            return Err(format!(
                "Content-Digest {} is not a byte sequence",
                k.as_str()
            ));
        };
        compare(
            &format!("Content-Digest {}", k.as_str()),
            expected,
            body,
            which,
        )?;
        checked += 1;
    }
    if checked == 0 {
        return Err("Content-Digest has no sha-256 or sha-512 value".to_string());
    }
    Ok(())
}

/// Checks one digest header value against the body.
pub fn check(field: DigestField, value: &[u8], body: &[u8]) -> Result<(), String> {
    match field {
        DigestField::Digest => check_digest(value, body),
        DigestField::ContentDigest => check_content_digest(value, body),
    }
}

/// The `Digest` value a signer sends: `SHA-256=<base64>`.
pub fn digest_value(alg: DigestAlg, body: &[u8]) -> String {
    let name = match alg {
        DigestAlg::Sha256 => "SHA-256",
        DigestAlg::Sha512 => "SHA-512",
    };
    format!("{name}={}", STANDARD.encode(alg.compute(body)))
}

/// The `Content-Digest` value a signer sends: `sha-256=:<base64>:`.
pub fn content_digest_value(alg: DigestAlg, body: &[u8]) -> String {
    let name = match alg {
        DigestAlg::Sha256 => "sha-256",
        DigestAlg::Sha512 => "sha-512",
    };
    format!("{name}=:{}:", STANDARD.encode(alg.compute(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = b"{\"hello\": \"world\"}";

    #[test]
    fn published_values_match() {
        // draft-cavage-10 Appendix C and RFC 9421 test-request.
        check_digest(
            b"SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            BODY,
        )
        .unwrap();
        check_content_digest(
            b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            BODY,
        )
        .unwrap();
        // The RFC's misprinted response digest does not match its body.
        assert!(check_content_digest(
            b"sha-512=:JlEy2bfUz7WrWIjc1qV6KVLpdr/7L5/L4h7Sxvh6sNHpDQWDCL+GauFQWcZBvVDhiyOnAQsxzZFYwi0wDH+1pw==:",
            b"{\"message\": \"good dog\"}"
        )
        .is_err());
    }

    #[test]
    fn tampered_bodies_and_junk_fail() {
        let d = digest_value(DigestAlg::Sha256, BODY);
        assert!(check_digest(d.as_bytes(), b"{\"hello\": \"World\"}").is_err());
        let c = content_digest_value(DigestAlg::Sha512, BODY);
        check_content_digest(c.as_bytes(), BODY).unwrap();
        assert!(check_content_digest(c.as_bytes(), b"").is_err());
        assert!(
            check_digest(b"MD5=abc", BODY)
                .unwrap_err()
                .contains("no SHA-256")
        );
        assert!(check_content_digest(b"md5=:AAAA:", BODY).is_err());
        assert!(check_content_digest(b"sha-256=abc", BODY).is_err());
        // A correct and a wrong value together: refused.
        let both = format!("{d}, SHA-512=AAAA");
        assert!(check_digest(both.as_bytes(), BODY).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            for alg in [DigestAlg::Sha256, DigestAlg::Sha512] {
                prop_assert!(check_digest(digest_value(alg, &body).as_bytes(), &body).is_ok());
                prop_assert!(check_content_digest(content_digest_value(alg, &body).as_bytes(), &body).is_ok());
            }
        }

        #[test]
        fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = check_digest(&v, b"x");
            let _ = check_content_digest(&v, b"x");
        }
    }
}
