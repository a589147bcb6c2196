//! The signature algorithms a key can be registered for, and the names each is known by.
//!
//! A key's registered algorithm is the truth: a request may name it (or `hs2019`, resolved through
//! the key) but never choose another one.

use std::fmt;

/// A signature algorithm, as registered for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-1 (Tyk's `hmac-sha1`; needs `legacy_sha1: true` on the key).
    HmacSha1,
    /// HMAC with SHA-256.
    HmacSha256,
    /// HMAC with SHA-384.
    HmacSha384,
    /// HMAC with SHA-512.
    HmacSha512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (cavage `rsa-sha256`, RFC 9421 `rsa-v1_5-sha256`).
    RsaSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (cavage `rsa-sha512`).
    RsaSha512,
    /// RSASSA-PSS with SHA-512, MGF1 SHA-512 and a 64-byte salt (RFC 9421 `rsa-pss-sha512`).
    RsaPssSha512,
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384Sha384,
    /// Ed25519.
    Ed25519,
}

/// What kind of key material an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A shared secret.
    Secret,
    /// An RSA public key.
    Rsa,
    /// An EC P-256 public key.
    P256,
    /// An EC P-384 public key.
    P384,
    /// An Ed25519 public key.
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Secret => "shared secret",
            KeyType::Rsa => "RSA",
            KeyType::P256 => "EC P-256",
            KeyType::P384 => "EC P-384",
            KeyType::Ed25519 => "Ed25519",
        })
    }
}

/// Every algorithm, for help texts and tests.
pub const ALL: [Algorithm; 10] = [
    Algorithm::HmacSha1,
    Algorithm::HmacSha256,
    Algorithm::HmacSha384,
    Algorithm::HmacSha512,
    Algorithm::RsaSha256,
    Algorithm::RsaSha512,
    Algorithm::RsaPssSha512,
    Algorithm::EcdsaP256Sha256,
    Algorithm::EcdsaP384Sha384,
    Algorithm::Ed25519,
];

impl Algorithm {
    /// Parses a registry name (cavage/Tyk or RFC 9421 spelling, case-insensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        let n = name.trim();
        ALL.into_iter()
            .find(|a| a.names().iter().any(|x| x.eq_ignore_ascii_case(n)))
    }

    /// The canonical name (the RFC 9421 name where one exists).
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// Every name a request may use for this algorithm (besides `hs2019`).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Algorithm::HmacSha1 => &["hmac-sha1"],
            Algorithm::HmacSha256 => &["hmac-sha256"],
            Algorithm::HmacSha384 => &["hmac-sha384"],
            Algorithm::HmacSha512 => &["hmac-sha512"],
            Algorithm::RsaSha256 => &["rsa-v1_5-sha256", "rsa-sha256"],
            Algorithm::RsaSha512 => &["rsa-sha512", "rsa-v1_5-sha512"],
            Algorithm::RsaPssSha512 => &["rsa-pss-sha512"],
            Algorithm::EcdsaP256Sha256 => &["ecdsa-p256-sha256", "ecdsa-sha256"],
            Algorithm::EcdsaP384Sha384 => &["ecdsa-p384-sha384", "ecdsa-sha384"],
            Algorithm::Ed25519 => &["ed25519", "ed25519-sha512"],
        }
    }

    /// True when a request naming `requested` may be verified with this algorithm.
    pub fn accepts_name(self, requested: &str) -> bool {
        // Signers send the lower-case name: compared whole first, then case-insensitively.
        let names = self.names();
        names.contains(&requested)
            || requested.eq_ignore_ascii_case("hs2019")
            || names.iter().any(|n| n.eq_ignore_ascii_case(requested))
    }

    /// The key material this algorithm needs.
    pub fn key_type(self) -> KeyType {
        match self {
            Algorithm::HmacSha1
            | Algorithm::HmacSha256
            | Algorithm::HmacSha384
            | Algorithm::HmacSha512 => KeyType::Secret,
            Algorithm::RsaSha256 | Algorithm::RsaSha512 | Algorithm::RsaPssSha512 => KeyType::Rsa,
            Algorithm::EcdsaP256Sha256 => KeyType::P256,
            Algorithm::EcdsaP384Sha384 => KeyType::P384,
            Algorithm::Ed25519 => KeyType::Ed25519,
        }
    }

    /// The ring HMAC algorithm, for HMAC algorithms.
    pub fn hmac(self) -> Option<ring::hmac::Algorithm> {
        match self {
            Algorithm::HmacSha1 => Some(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            Algorithm::HmacSha256 => Some(ring::hmac::HMAC_SHA256),
            Algorithm::HmacSha384 => Some(ring::hmac::HMAC_SHA384),
            Algorithm::HmacSha512 => Some(ring::hmac::HMAC_SHA512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for a in ALL {
            for n in a.names() {
                assert_eq!(Algorithm::from_name(n), Some(a), "{n}");
                assert_eq!(Algorithm::from_name(&n.to_uppercase()), Some(a), "{n}");
                assert!(a.accepts_name(n));
            }
            assert!(a.accepts_name("hs2019"));
        }
        assert_eq!(Algorithm::from_name("hs2019"), None);
        assert_eq!(Algorithm::from_name("rsa-sha1"), None);
    }

    #[test]
    fn names_never_cross() {
        assert!(!Algorithm::HmacSha256.accepts_name("rsa-sha256"));
        assert!(!Algorithm::RsaSha256.accepts_name("hmac-sha256"));
        assert!(!Algorithm::RsaSha256.accepts_name("rsa-pss-sha512"));
        assert!(Algorithm::RsaSha256.accepts_name("rsa-v1_5-sha256"));
    }
}
