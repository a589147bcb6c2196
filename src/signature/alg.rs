//! The cryptographic check, on ring: HMAC (constant-time, on raw bytes), RSASSA-PKCS1-v1_5,
//! RSASSA-PSS, ECDSA and Ed25519, with the key's registered algorithm.
//!
//! ECDSA signatures are the raw `r || s` in RFC 9421; cavage signers (Joyent's library) send the
//! ASN.1 DER form, which is accepted there too.

use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

use super::Scheme;
use crate::registry::{Algorithm, Key, KeyKind};

fn rsa_alg(a: Algorithm, bits: usize) -> Option<&'static dyn VerificationAlgorithm> {
    let legacy = bits < 2048;
    Some(match (a, legacy) {
        (Algorithm::RsaSha256, false) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (Algorithm::RsaSha256, true) => &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        (Algorithm::RsaSha512, false) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (Algorithm::RsaSha512, true) => &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        (Algorithm::RsaPssSha512, false) => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// True when `signature` is `key`'s signature over `message`.
pub fn verify(key: &Key, scheme: Scheme, message: &[u8], signature: &[u8]) -> bool {
    match &key.kind {
        KeyKind::Hmac { key, .. } => ring::hmac::verify(key, message, signature).is_ok(),
        KeyKind::Public { algorithm, key } => {
            let check = |alg: &'static dyn VerificationAlgorithm| {
                UnparsedPublicKey::new(alg, &key.ring_bytes[..])
                    .verify(message, signature)
                    .is_ok()
            };
            match algorithm {
                Algorithm::RsaSha256 | Algorithm::RsaSha512 | Algorithm::RsaPssSha512 => {
                    rsa_alg(*algorithm, key.rsa_bits).is_some_and(check)
                }
                Algorithm::EcdsaP256Sha256 => {
                    (signature.len() == 64 && check(&sig::ECDSA_P256_SHA256_FIXED))
                        || (scheme == Scheme::Cavage
                            && signature.first() == Some(&0x30)
                            && check(&sig::ECDSA_P256_SHA256_ASN1))
                }
                Algorithm::EcdsaP384Sha384 => {
                    (signature.len() == 96 && check(&sig::ECDSA_P384_SHA384_FIXED))
                        || (scheme == Scheme::Cavage
                            && signature.first() == Some(&0x30)
                            && check(&sig::ECDSA_P384_SHA384_ASN1))
                }
                Algorithm::Ed25519 => check(&sig::ED25519),
                Algorithm::HmacSha1
                | Algorithm::HmacSha256
                | Algorithm::HmacSha384
                | Algorithm::HmacSha512 => false,
            }
        }
        KeyKind::ApiKey { .. } => false,
    }
}
