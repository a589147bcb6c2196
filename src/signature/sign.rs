//! Signing, as a client or gateway does: private keys from PEM (PKCS#8, PKCS#1, SEC1), HMAC
//! secrets, and the header values of each scheme. Used by `countersign sign` and the tests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use http::{HeaderMap, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use super::{Message, Scheme, cavage, rfc9421};
use crate::registry::pubkey::{OID_EC, OID_ED25519, OID_P256, OID_P384, OID_RSA, OID_RSA_PSS};
use crate::registry::{Algorithm, KeyType};

enum Material {
    Secret(ring::hmac::Key),
    Rsa(RsaKeyPair),
    Ec(Vec<u8>),
    Ed25519(Ed25519KeyPair),
}

/// A key that signs, with its algorithm.
pub struct Signer {
    algorithm: Algorithm,
    material: Material,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn pkcs8_ec(sec1: &[u8], curve: ObjectIdentifier) -> Result<Vec<u8>, String> {
    let curve_der = curve.to_der().map_err(|e| e.to_string())?;
    let info = pkcs8::PrivateKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_EC,
            parameters: Some(AnyRef::from_der(&curve_der).map_err(|e| e.to_string())?),
        },
        private_key: OctetStringRef::new(sec1).map_err(|e| e.to_string())?,
        public_key: None,
    };
    info.to_der().map_err(|e| e.to_string())
}

impl Signer {
    /// An HMAC signer from the secret's bytes.
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Signer, String> {
        let a = algorithm
            .hmac()
            .ok_or_else(|| format!("{} is not an HMAC algorithm", algorithm.name()))?;
        if secret.is_empty() {
            return Err("the secret is empty".to_string());
        }
        Ok(Signer {
            algorithm,
            material: Material::Secret(ring::hmac::Key::new(a, secret)),
        })
    }

    /// A signer from a private key PEM (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    pub fn from_pem(algorithm: Algorithm, pem_bytes: &[u8]) -> Result<Signer, String> {
        let blocks = pem::parse_many(pem_bytes).map_err(|e| format!("not a PEM file: {e}"))?;
        let block = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or("no PRIVATE KEY in the PEM file")?;
        let want = algorithm.key_type();
        let bad_type = |t: KeyType| {
            Err(format!(
                "the private key is {t}, but {} needs {want}",
                algorithm.name()
            ))
        };
        let der = block.contents();
        let material = match block.tag() {
            "RSA PRIVATE KEY" => {
                if want != KeyType::Rsa {
                    return bad_type(KeyType::Rsa);
                }
                Material::Rsa(RsaKeyPair::from_der(der).map_err(|e| format!("RSA key: {e}"))?)
            }
            "EC PRIVATE KEY" => {
                let k = sec1::EcPrivateKey::from_der(der).map_err(|e| format!("EC key: {e}"))?;
                let curve = k
                    .parameters
                    .map(|p| match p {
                        sec1::EcParameters::NamedCurve(o) => o,
                    })
                    .unwrap_or(if want == KeyType::P384 {
                        OID_P384
                    } else {
                        OID_P256
                    });
                let t = if curve == OID_P256 {
                    KeyType::P256
                } else if curve == OID_P384 {
                    KeyType::P384
                } else {
                    return Err(format!("EC curve {curve} is not supported"));
                };
                if t != want {
                    return bad_type(t);
                }
                Material::Ec(pkcs8_ec(der, curve)?)
            }
            "PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfoRef::from_der(der)
                    .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
                let oid = info.algorithm.oid;
                if oid == OID_RSA || oid == OID_RSA_PSS {
                    if want != KeyType::Rsa {
                        return bad_type(KeyType::Rsa);
                    }
                    // Unwrap the PKCS#1 key: ring refuses the RSASSA-PSS identifier.
                    Material::Rsa(
                        RsaKeyPair::from_der(info.private_key.as_bytes())
                            .map_err(|e| format!("RSA key: {e}"))?,
                    )
                } else if oid == OID_EC {
                    let curve = info
                        .algorithm
                        .parameters
                        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                    let t = match curve {
                        Some(c) if c == OID_P256 => KeyType::P256,
                        Some(c) if c == OID_P384 => KeyType::P384,
                        _ => return Err("EC key on an unsupported curve".to_string()),
                    };
                    if t != want {
                        return bad_type(t);
                    }
                    Material::Ec(der.to_vec())
                } else if oid == OID_ED25519 {
                    if want != KeyType::Ed25519 {
                        return bad_type(KeyType::Ed25519);
                    }
                    Material::Ed25519(
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                            .map_err(|e| format!("Ed25519 key: {e}"))?,
                    )
                } else {
                    return Err(format!("private key type {oid} is not supported"));
                }
            }
            other => return Err(format!("{other} is not supported")),
        };
        let s = Signer {
            algorithm,
            material,
        };
        // Fail now, not at the first signature.
        s.sign(Scheme::Rfc9421, b"countersign self-test")?;
        Ok(s)
    }

    /// The algorithm this signer uses.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// True for HMAC signers.
    pub fn is_hmac(&self) -> bool {
        matches!(self.material, Material::Secret(_))
    }

    /// Signs `msg`. ECDSA signatures are raw `r || s` for RFC 9421 and DER for cavage.
    pub fn sign(&self, scheme: Scheme, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Secret(k) => Ok(ring::hmac::sign(k, msg).as_ref().to_vec()),
            Material::Rsa(k) => {
                let pad: &'static dyn sig::RsaEncoding = match self.algorithm {
                    Algorithm::RsaSha256 => &sig::RSA_PKCS1_SHA256,
                    Algorithm::RsaSha512 => &sig::RSA_PKCS1_SHA512,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(pad, &rng, msg, &mut out)
                    .map_err(|_| "RSA signing failed".to_string())?;
                Ok(out)
            }
            Material::Ec(pkcs8) => {
                let alg = match (self.algorithm, scheme) {
                    (Algorithm::EcdsaP256Sha256, Scheme::Rfc9421) => {
                        &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                    }
                    (Algorithm::EcdsaP256Sha256, Scheme::Cavage) => {
                        &sig::ECDSA_P256_SHA256_ASN1_SIGNING
                    }
                    (_, Scheme::Rfc9421) => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                    (_, Scheme::Cavage) => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                };
                let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng)
                    .map_err(|e| format!("EC key: {e}"))?;
                Ok(kp
                    .sign(&rng, msg)
                    .map_err(|_| "ECDSA signing failed".to_string())?
                    .as_ref()
                    .to_vec())
            }
            Material::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

/// What a cavage (or Tyk) signature covers and says.
#[derive(Debug, Clone)]
pub struct CavageSpec<'a> {
    /// `keyId`
    pub key_id: &'a str,
    /// `algorithm=` as sent (`None` leaves it out).
    pub algorithm: Option<&'a str>,
    /// `headers=`, in order.
    pub headers: Vec<String>,
    /// `created` (sent when `Some`).
    pub created: Option<i64>,
    /// `expires` (sent when `Some`).
    pub expires: Option<i64>,
    /// Tyk's form: HMAC values URL-escaped, only the first value of repeated headers.
    pub tyk: bool,
}

/// URL query escaping as Go's `url.QueryEscape` does it, for a base64 value.
pub fn query_escape(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + 8);
    for c in b64.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// Signs as draft-cavage-10 / Tyk: the parameter list (`keyId=…,algorithm=…,headers=…,
/// signature=…`, Tyk's order, no spaces) and the signing string that was signed.
pub fn cavage(
    msg: &Message<'_>,
    signer: &Signer,
    spec: &CavageSpec<'_>,
) -> Result<(String, Vec<u8>), String> {
    let params = cavage::Params {
        key_id: spec.key_id.into(),
        algorithm: spec.algorithm.map(Into::into),
        headers: spec
            .headers
            .iter()
            .map(|h| h.to_ascii_lowercase().into())
            .collect(),
        headers_given: true,
        signature: "".into(),
        created: spec.created,
        expires: spec.expires,
    };
    let quirks = cavage::Quirks {
        tyk_compat: spec.tyk,
        absent_empty: false,
    };
    let base = cavage::signing_string(msg, &params, quirks, &mut Vec::new())
        .map_err(|e| match e {
            cavage::BuildError::Absent(h) => format!("the request has no `{h}` header to sign"),
            cavage::BuildError::MissingParam(p) => format!("({p}) is listed but no {p} is set"),
        })?
        .base;
    let raw = STANDARD.encode(signer.sign(Scheme::Cavage, &base)?);
    let value = if spec.tyk && signer.is_hmac() {
        query_escape(&raw)
    } else {
        raw
    };
    let mut out = format!("keyId=\"{}\"", spec.key_id);
    if let Some(a) = spec.algorithm {
        out.push_str(&format!(",algorithm=\"{a}\""));
    }
    if let Some(c) = spec.created {
        out.push_str(&format!(",created={c}"));
    }
    if let Some(e) = spec.expires {
        out.push_str(&format!(",expires={e}"));
    }
    // Tyk writes the header list as configured (case kept).
    out.push_str(&format!(",headers=\"{}\"", spec.headers.join(" ")));
    out.push_str(&format!(",signature=\"{value}\""));
    Ok((out, base))
}

/// What an RFC 9421 signature covers and says.
#[derive(Debug, Clone, Default)]
pub struct Rfc9421Spec<'a> {
    /// The label (`sig1`).
    pub label: &'a str,
    /// Component identifiers, e.g. `@method`, `content-digest`, `@query-param;name=Pet`,
    /// `example-dict;key=a`, `x-list;sf`.
    pub components: Vec<String>,
    /// `created`
    pub created: Option<i64>,
    /// `expires`
    pub expires: Option<i64>,
    /// `nonce`
    pub nonce: Option<&'a str>,
    /// `keyid`
    pub keyid: &'a str,
    /// `alg` (sent when `Some`).
    pub alg: Option<&'a str>,
    /// `tag`
    pub tag: Option<&'a str>,
}

fn sf_string(s: &str) -> Result<String, String> {
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("`{s}` must be printable ASCII"));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Turns `name;param=value;flag` into a structured-field item: `"name";param="value";flag`.
fn component_item(spec: &str) -> Result<String, String> {
    let mut parts = spec.split(';');
    let name = parts.next().unwrap_or_default().trim().trim_matches('"');
    let mut out = sf_string(name)?;
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) => {
                out.push(';');
                out.push_str(k.trim());
                out.push('=');
                out.push_str(&sf_string(v.trim().trim_matches('"'))?);
            }
            None => {
                out.push(';');
                out.push_str(p.trim());
            }
        }
    }
    Ok(out)
}

/// Signs as RFC 9421: the `Signature-Input` and `Signature` members, and the signature base.
pub fn rfc9421(
    msg: &Message<'_>,
    signer: &Signer,
    spec: &Rfc9421Spec<'_>,
) -> Result<(String, String, Vec<u8>), String> {
    let items = spec
        .components
        .iter()
        .map(|c| component_item(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut input = format!("{}=({})", spec.label, items.join(" "));
    if let Some(c) = spec.created {
        input.push_str(&format!(";created={c}"));
    }
    if let Some(e) = spec.expires {
        input.push_str(&format!(";expires={e}"));
    }
    if let Some(n) = spec.nonce {
        input.push_str(&format!(";nonce={}", sf_string(n)?));
    }
    input.push_str(&format!(";keyid={}", sf_string(spec.keyid)?));
    if let Some(a) = spec.alg {
        input.push_str(&format!(";alg={}", sf_string(a)?));
    }
    if let Some(t) = spec.tag {
        input.push_str(&format!(";tag={}", sf_string(t)?));
    }
    // Parse what we wrote with the verifier's parser, so both sides agree on the base.
    let mut h = msg.headers.clone();
    h.remove("signature-input");
    h.remove("signature");
    h.insert(
        "signature-input",
        HeaderValue::from_str(&input).map_err(|e| e.to_string())?,
    );
    h.insert(
        "signature",
        HeaderValue::from_str(&format!("{}=:AA==:", spec.label)).map_err(|e| e.to_string())?,
    );
    let probe = Message {
        headers: &h,
        ..*msg
    };
    let parsed = rfc9421::parse(&probe)?;
    let s = parsed.first().ok_or("nothing to sign")?;
    let base = rfc9421::signature_base(msg, s).map_err(|e| match e {
        rfc9421::BaseError::Absent(w) => format!("the request has no {w} to sign"),
        rfc9421::BaseError::Invalid(m) => m,
    })?;
    let value = STANDARD.encode(signer.sign(Scheme::Rfc9421, &base)?);
    Ok((
        format!("{}={}", spec.label, s.params),
        format!("{}=:{value}:", spec.label),
        base,
    ))
}

/// Adds the headers of an RFC 9421 signature, keeping other labels already present.
pub fn append_rfc9421(headers: &mut HeaderMap, input: &str, signature: &str) -> Result<(), String> {
    for (name, v) in [("signature-input", input), ("signature", signature)] {
        headers.append(name, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
    }
    Ok(())
}
