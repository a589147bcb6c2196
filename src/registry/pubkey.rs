//! Public keys from the forms operators have: SPKI PEM, PKCS#1 PEM, an X.509 certificate PEM, or a
//! JWK, parsed once into the bytes ring verifies with.
//!
//! RSA keys published with the RSASSA-PSS identifier (`id-RSASSA-PSS`) are unwrapped to the plain
//! RSA key (ring's parsers refuse that identifier) and may then only be used with `rsa-pss-sha512`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::algorithm::KeyType;

/// `rsaEncryption`
pub const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-RSASSA-PSS`
pub const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// `id-ecPublicKey`
pub const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1` (P-256)
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` (P-384)
pub const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-Ed25519`
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A validated public key in the form ring verifies with.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// What kind of key this is.
    pub key_type: KeyType,
    /// RSA: PKCS#1 `RSAPublicKey` DER; EC: the uncompressed point; Ed25519: the 32 raw bytes.
    pub ring_bytes: Box<[u8]>,
    /// The RSA modulus size in bits (0 for other keys).
    pub rsa_bits: usize,
    /// The key was published with the RSASSA-PSS identifier: only usable for RSA-PSS.
    pub pss_only: bool,
    /// The key re-encoded as SubjectPublicKeyInfo DER (for the fingerprint).
    pub spki_der: Vec<u8>,
}

/// Parses a public key file: PEM (the first public key or certificate in it) or a JWK / JWKS
/// in JSON. `kid` picks a key out of a JWKS.
pub fn from_file_bytes(bytes: &[u8], kid: &str) -> Result<PublicKey, String> {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("not a JSON JWK: {e}"))?;
        return from_jwk_or_set(&v, kid);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("not a PEM file: {e}"))?;
    if blocks.is_empty() {
        return Err(
            "not a PEM public key (expected -----BEGIN PUBLIC KEY-----, RSA PUBLIC KEY or CERTIFICATE, or a JWK in JSON)"
                .to_string(),
        );
    }
    let mut private = false;
    for b in &blocks {
        match b.tag() {
            "PUBLIC KEY" => return from_spki_der(b.contents()),
            "RSA PUBLIC KEY" => return from_pkcs1_der(b.contents(), false),
            "CERTIFICATE" => return from_cert_der(b.contents()),
            t if t.contains("PRIVATE KEY") => private = true,
            _ => {}
        }
    }
    if private {
        Err("holds a private key, not a public key: give the public key (countersign never needs the private key)".to_string())
    } else {
        Err(format!(
            "not a PEM public key (found {}; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)",
            blocks
                .iter()
                .map(|b| b.tag().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Parses an X.509 certificate's public key.
pub fn from_cert_der(der: &[u8]) -> Result<PublicKey, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    from_spki_der(cert.tbs_certificate.subject_pki.raw)
}

/// Parses a SubjectPublicKeyInfo.
pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
    let spki = SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the public key bit string has unused bits")?;
    let oid = spki.algorithm.oid;
    if oid == OID_RSA || oid == OID_RSA_PSS {
        from_pkcs1_der(key, oid == OID_RSA_PSS)
    } else if oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or("an EC key without a named curve")?;
        if curve == OID_P256 {
            ec_point(key, KeyType::P256)
        } else if curve == OID_P384 {
            ec_point(key, KeyType::P384)
        } else {
            Err(format!(
                "an EC key on curve {curve}, which is not supported (P-256 and P-384 are)"
            ))
        }
    } else if oid == OID_ED25519 {
        ed25519_raw(key)
    } else {
        Err(format!(
            "a public key of type {oid}, which is not supported (RSA, EC P-256/P-384 and Ed25519 are)"
        ))
    }
}

/// Parses a PKCS#1 `RSAPublicKey`.
pub fn from_pkcs1_der(der: &[u8], pss_only: bool) -> Result<PublicKey, String> {
    let k = pkcs1::RsaPublicKey::<UintRef<'_>>::from_der(der)
        .map_err(|e| format!("not an RSA public key: {e}"))?;
    let n = k.modulus.as_bytes();
    let e = k.public_exponent.as_bytes();
    if n.is_empty() || n[n.len() - 1] & 1 == 0 {
        return Err("the RSA modulus is not odd".to_string());
    }
    if e.is_empty() || e[e.len() - 1] & 1 == 0 || (e.len() == 1 && e[0] < 3) || e.len() > 4 {
        return Err(
            "the RSA public exponent is not usable (must be odd, at least 3, at most 32 bits)"
                .to_string(),
        );
    }
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    let pkcs1 = k.to_der().map_err(|e| e.to_string())?;
    let null = AnyRef::NULL;
    let spki_der = spki_der(OID_RSA, Some(null), &pkcs1)?;
    Ok(PublicKey {
        key_type: KeyType::Rsa,
        ring_bytes: pkcs1.into_boxed_slice(),
        rsa_bits: bits,
        pss_only,
        spki_der,
    })
}

fn ec_point(point: &[u8], key_type: KeyType) -> Result<PublicKey, String> {
    let (len, curve) = match key_type {
        KeyType::P256 => (65, OID_P256),
        _ => (97, OID_P384),
    };
    if point.len() != len || point[0] != 4 {
        return Err(format!(
            "the {key_type} point is not an uncompressed point of {len} bytes"
        ));
    }
    let curve_der = curve.to_der().map_err(|e| e.to_string())?;
    let param = AnyRef::from_der(&curve_der).map_err(|e| e.to_string())?;
    let spki_der = spki_der(OID_EC, Some(param), point)?;
    Ok(PublicKey {
        key_type,
        ring_bytes: point.into(),
        rsa_bits: 0,
        pss_only: false,
        spki_der,
    })
}

fn ed25519_raw(raw: &[u8]) -> Result<PublicKey, String> {
    if raw.len() != 32 {
        return Err("an Ed25519 public key must be 32 bytes".to_string());
    }
    let spki_der = spki_der(OID_ED25519, None, raw)?;
    Ok(PublicKey {
        key_type: KeyType::Ed25519,
        ring_bytes: raw.into(),
        rsa_bits: 0,
        pss_only: false,
        spki_der,
    })
}

fn spki_der(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// A JWK, or the key with `kid` (or the only key) of a JWKS.
pub fn from_jwk_or_set(v: &serde_json::Value, kid: &str) -> Result<PublicKey, String> {
    if let Some(keys) = v.get("keys").and_then(|k| k.as_array()) {
        let chosen = match keys
            .iter()
            .find(|k| k.get("kid").and_then(|x| x.as_str()) == Some(kid))
        {
            Some(k) => k,
            None if keys.len() == 1 => &keys[0],
            None => {
                return Err(format!(
                    "a JWKS with {} keys and none with kid `{kid}`",
                    keys.len()
                ));
            }
        };
        return from_jwk(chosen);
    }
    from_jwk(v)
}

fn b64url(v: &serde_json::Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("the JWK has no `{field}`"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("the JWK's `{field}` is not base64url"))
}

/// A public JWK (`kty` RSA, EC or OKP).
pub fn from_jwk(v: &serde_json::Value) -> Result<PublicKey, String> {
    if !v.is_object() {
        return Err("a JWK must be a JSON object".to_string());
    }
    if v.get("d").is_some() {
        return Err("the JWK holds a private key (`d`): publish only the public part".to_string());
    }
    match v.get("kty").and_then(|k| k.as_str()) {
        Some("RSA") => {
            let n = b64url(v, "n")?;
            let e = b64url(v, "e")?;
            let k = pkcs1::RsaPublicKey {
                modulus: UintRef::new(&n).map_err(|e| e.to_string())?,
                public_exponent: UintRef::new(&e).map_err(|e| e.to_string())?,
            };
            let der = k.to_der().map_err(|e| e.to_string())?;
            let pss = v.get("alg").and_then(|a| a.as_str()).is_some_and(|a| a.starts_with("PS"));
            from_pkcs1_der(&der, pss)
        }
        Some("EC") => {
            let (t, len) = match v.get("crv").and_then(|c| c.as_str()) {
                Some("P-256") => (KeyType::P256, 32),
                Some("P-384") => (KeyType::P384, 48),
                other => {
                    return Err(format!(
                        "the JWK curve {other:?} is not supported (P-256 and P-384 are)"
                    ));
                }
            };
            let x = b64url(v, "x")?;
            let y = b64url(v, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("the JWK's x and y must be {len} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_point(&point, t)
        }
        Some("OKP") => match v.get("crv").and_then(|c| c.as_str()) {
            Some("Ed25519") => ed25519_raw(&b64url(v, "x")?),
            other => Err(format!(
                "the JWK curve {other:?} is not supported (Ed25519 is)"
            )),
        },
        Some("oct") => Err("a symmetric JWK (kty oct) is a secret: give it as secret_base64, or use a jwk with an HMAC algorithm".to_string()),
        other => Err(format!("the JWK kty {other:?} is not supported (RSA, EC, OKP)")),
    }
}

/// The secret of a symmetric JWK (`kty: oct`).
pub fn oct_secret(v: &serde_json::Value) -> Result<Vec<u8>, String> {
    if v.get("kty").and_then(|k| k.as_str()) != Some("oct") {
        return Err("an HMAC key given as a JWK must have kty oct".to_string());
    }
    b64url(v, "k")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const V: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors");

    fn read(p: &str) -> Vec<u8> {
        std::fs::read(format!("{V}/{p}")).unwrap()
    }

    fn encodings() -> serde_json::Value {
        serde_json::from_slice(&read("rfc9421/keys/derived/encodings.json")).unwrap()
    }

    #[test]
    fn pkcs1_and_spki_pem_give_the_same_key() {
        let a = from_file_bytes(&read("rfc9421/keys/test-key-rsa.pub.pem"), "").unwrap();
        let b =
            from_file_bytes(&read("rfc9421/keys/derived/test-key-rsa.pub.spki.pem"), "").unwrap();
        assert_eq!(a.ring_bytes, b.ring_bytes);
        assert_eq!(a.spki_der, b.spki_der);
        assert_eq!(a.rsa_bits, 2048);
        let enc = encodings();
        let spki = STANDARD
            .decode(enc["test-key-rsa"]["public_spki_der_b64"].as_str().unwrap())
            .unwrap();
        assert_eq!(a.spki_der, spki);
    }

    #[test]
    fn pss_identifier_is_unwrapped() {
        // Re-wrap the published PSS key's RSAPublicKey under id-RSASSA-PSS, as some tools publish it.
        let plain = from_file_bytes(&read("rfc9421/keys/test-key-rsa-pss.pub.pem"), "").unwrap();
        let wrapped = spki_der(OID_RSA_PSS, None, &plain.ring_bytes).unwrap();
        let k = from_spki_der(&wrapped).unwrap();
        assert!(k.pss_only);
        assert_eq!(k.ring_bytes, plain.ring_bytes);
        assert!(!plain.pss_only);
    }

    #[test]
    fn ec_ed25519_and_jwk() {
        let ec = from_file_bytes(&read("rfc9421/keys/test-key-ecc-p256.pub.pem"), "").unwrap();
        assert_eq!(ec.key_type, KeyType::P256);
        let ed = from_file_bytes(&read("rfc9421/keys/test-key-ed25519.pub.pem"), "").unwrap();
        assert_eq!(ed.key_type, KeyType::Ed25519);
        let jwks: serde_json::Value =
            serde_json::from_slice(&read("rfc9421/keys/jwks.json")).unwrap();
        // The published JWKS holds private keys: refused with a clear message.
        let e = from_jwk_or_set(&jwks, "test-key-ecc-p256").unwrap_err();
        assert!(e.contains("private key"), "{e}");
        for (kid, expect) in [("test-key-ecc-p256", &ec), ("test-key-ed25519", &ed)] {
            let mut k = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap()
                .clone();
            k.as_object_mut().unwrap().remove("d");
            let parsed = from_jwk(&k).unwrap();
            assert_eq!(parsed.ring_bytes, expect.ring_bytes, "{kid}");
            assert_eq!(parsed.spki_der, expect.spki_der, "{kid}");
        }
        let mut rsa = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == "test-key-rsa")
            .unwrap()
            .clone();
        let o = rsa.as_object_mut().unwrap();
        for f in ["d", "p", "q", "dp", "dq", "qi"] {
            o.remove(f);
        }
        let parsed = from_jwk(&rsa).unwrap();
        let pem = from_file_bytes(&read("rfc9421/keys/test-key-rsa.pub.pem"), "").unwrap();
        assert_eq!(parsed.ring_bytes, pem.ring_bytes);
    }

    #[test]
    fn private_keys_and_junk_are_refused() {
        let e = from_file_bytes(&read("rfc9421/keys/test-key-rsa.priv.pem"), "").unwrap_err();
        assert!(e.contains("private key"), "{e}");
        let e = from_file_bytes(b"hello", "").unwrap_err();
        assert!(e.contains("not a PEM public key"), "{e}");
        let e = from_file_bytes(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "",
        )
        .unwrap_err();
        assert!(e.contains("SubjectPublicKeyInfo"), "{e}");
    }

    #[test]
    fn certificate_public_key() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let k = from_file_bytes(cert.pem().as_bytes(), "").unwrap();
        assert_eq!(k.key_type, KeyType::P256);
        assert_eq!(
            k.spki_der,
            pem::parse(kp.public_key_pem()).unwrap().contents()
        );
    }
}
