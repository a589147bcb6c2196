//! The JWS algorithms countersign accepts and the ring verification algorithm behind each.
//!
//! Only asymmetric algorithms exist here: `none` and `HS*` have no variant, so no configuration
//! and no token can select them against a JWKS of public keys.

use ring::signature::{self, VerificationAlgorithm};

/// A JWS `alg` value countersign can verify (RFC 7518 section 3.1, RFC 8037 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519 (the only EdDSA curve accepted).
    EdDsa,
}

/// Which kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: EC`, `crv: P-384`.
    P384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl Alg {
    /// Every algorithm, in the order the defaults list them.
    pub const ALL: [Alg; 9] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// Parses a JWS `alg` value (case-sensitive, as RFC 7515 requires).
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    /// The JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The key this algorithm needs.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                KeyKind::Rsa
            }
            Alg::Es256 => KeyKind::P256,
            Alg::Es384 => KeyKind::P384,
            Alg::EdDsa => KeyKind::Ed25519,
        }
    }

    /// The RSA parameters (2048 to 8192 bits) for the RSA algorithms.
    pub(crate) fn rsa_params(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 | Alg::Es384 | Alg::EdDsa => return None,
        })
    }

    /// The ring algorithm for the point-keyed algorithms (ECDSA with the JWS `r || s` encoding, Ed25519).
    pub(crate) fn point_algorithm(self) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match self {
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::EdDsa => &signature::ED25519,
            _ => return None,
        })
    }

    /// The exact signature length for fixed-size algorithms.
    pub(crate) fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Alg::Es256 | Alg::EdDsa => Some(64),
            Alg::Es384 => Some(96),
            _ => None,
        }
    }
}

/// A set of accepted algorithms (the `jwt.algorithms` allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    /// Adds an algorithm.
    pub fn insert(&mut self, alg: Alg) {
        self.0 |= 1 << alg as u16;
    }

    /// True when the algorithm is accepted.
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & (1 << alg as u16) != 0
    }

    /// True when nothing is accepted.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Alg> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Alg>>(iter: I) -> Self {
        let mut s = AlgSet::default();
        for a in iter {
            s.insert(a);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_symmetric_algorithms_do_not_exist() {
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.as_str()), Some(a));
        }
        for bad in [
            "none", "None", "NONE", "HS256", "HS384", "HS512", "ES512", "rs256", "Ed25519", "",
        ] {
            assert_eq!(Alg::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn alg_set() {
        let s: AlgSet = [Alg::Rs256, Alg::EdDsa].into_iter().collect();
        assert!(s.contains(Alg::Rs256) && s.contains(Alg::EdDsa));
        assert!(!s.contains(Alg::Ps256));
        assert!(AlgSet::default().is_empty());
    }
}
