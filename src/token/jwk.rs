//! A JWKS (RFC 7517) parsed once into ready verification keys, indexed by `kid`.
//!
//! Keys are decoded and checked here, at load, so a request only looks a key up and hands ring the
//! bytes: RSA keys as big-endian `n`/`e` without leading zeros, EC keys as the uncompressed point
//! (validated on the curve), Ed25519 keys as the 32-byte point. Keys countersign cannot or must not
//! use (symmetric, encryption-only, private, unknown curve, too short) are skipped with a reason;
//! a set with no usable key is an error, so a bad fetch never replaces a good set.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ring::{agreement, rand, signature};
use serde::Deserialize;

use super::alg::{Alg, KeyKind};

/// The most keys a JWKS may hold.
pub const MAX_KEYS: usize = 256;
/// The longest `kid` accepted, in bytes (in a JWKS and in a token).
pub const MAX_KID_LEN: usize = 256;

/// JWK members are base64url; tolerate padding there (some IdPs add it), never in tokens.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a JWKS document was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document: {0}")]
    Json(String),
    /// More keys than [`MAX_KEYS`].
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Nothing usable; the reasons each key was skipped.
    #[error("no usable signing key ({})", .0.join("; "))]
    NoUsableKey(Vec<String>),
}

/// Public key bytes in the form ring verifies with.
#[derive(Debug)]
enum Material {
    /// Modulus and exponent, big-endian, no leading zeros.
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
    /// An uncompressed EC point or an Ed25519 point.
    Point(Box<[u8]>),
}

/// One usable verification key.
#[derive(Debug)]
pub struct VerifyingKey {
    kind: KeyKind,
    /// The JWK's own `alg`, when it states one: the only algorithm this key may verify.
    alg: Option<Alg>,
    material: Material,
}

impl VerifyingKey {
    /// True when a token signed with `alg` may be checked with this key: the key type and curve
    /// fit the algorithm and the JWK's `alg`, when given, is the same.
    pub fn allows(&self, alg: Alg) -> bool {
        self.kind == alg.key_kind() && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` over `message`. The caller checked [`VerifyingKey::allows`].
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        if !self.allows(alg) {
            return false;
        }
        match &self.material {
            Material::Rsa { n, e } => alg.rsa_params().is_some_and(|params| {
                signature::RsaPublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                }
                .verify(params, message, sig)
                .is_ok()
            }),
            Material::Point(point) => {
                alg.fixed_signature_len() == Some(sig.len())
                    && alg.point_algorithm().is_some_and(|ring_alg| {
                        signature::UnparsedPublicKey::new(ring_alg, &point[..])
                            .verify(message, sig)
                            .is_ok()
                    })
            }
        }
    }
}

/// The raw JWK members countersign reads; others (`x5c`, `x5t`, ...) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// A parsed JWKS: usable keys by `kid`, and those without one.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<Box<str>, Vec<VerifyingKey>>,
    unnamed: Vec<VerifyingKey>,
    len: usize,
}

/// What looking a key up found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The one key to verify with.
    Found(&'a VerifyingKey),
    /// No key has this `kid` (a refetch may help).
    UnknownKid,
    /// Keys exist for the `kid` (or, without one, for nobody) but none allows the algorithm,
    /// or several could match a token without `kid`.
    NoMatch(&'static str),
}

impl KeySet {
    /// Parses a JWKS document. Returns the set and a reason for every key skipped.
    pub fn parse(json: &[u8]) -> Result<(KeySet, Vec<String>), JwksError> {
        let raw: RawJwks =
            serde_json::from_slice(json).map_err(|e| JwksError::Json(e.to_string()))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let parsed = serde_json::from_value::<RawJwk>(value)
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|jwk| {
                    let kid = jwk.kid.clone();
                    parse_key(jwk).map(|k| (kid, k))
                });
            match parsed {
                Ok((Some(kid), key)) => {
                    set.by_kid
                        .entry(kid.into_boxed_str())
                        .or_default()
                        .push(key);
                    set.len += 1;
                }
                Ok((None, key)) => {
                    set.unnamed.push(key);
                    set.len += 1;
                }
                Err(reason) => skipped.push(format!("keys[{i}]: {reason}")),
            }
        }
        if set.len == 0 {
            return Err(JwksError::NoUsableKey(skipped));
        }
        Ok((set, skipped))
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set holds no key (never true for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finds the key for a token's `kid` and `alg`. A token without `kid` matches only when
    /// exactly one key of the whole set allows its algorithm.
    pub fn lookup(&self, kid: Option<&str>, alg: Alg) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::UnknownKid,
                Some(keys) => match keys.iter().find(|k| k.allows(alg)) {
                    Some(k) => Lookup::Found(k),
                    None => Lookup::NoMatch("the key with this kid does not allow the token's alg"),
                },
            },
            None => {
                let mut found = None;
                for k in self
                    .by_kid
                    .values()
                    .flatten()
                    .chain(self.unnamed.iter())
                    .filter(|k| k.allows(alg))
                {
                    if found.is_some() {
                        return Lookup::NoMatch(
                            "the token has no kid and several keys allow its alg",
                        );
                    }
                    found = Some(k);
                }
                match found {
                    Some(k) => Lookup::Found(k),
                    None => Lookup::NoMatch("the token has no kid and no key allows its alg"),
                }
            }
        }
    }
}

fn parse_key(jwk: RawJwk) -> Result<VerifyingKey, String> {
    if let Some(kid) = &jwk.kid
        && kid.len() > MAX_KID_LEN
    {
        return Err(format!("kid longer than {MAX_KID_LEN} bytes"));
    }
    let name = jwk
        .kid
        .as_deref()
        .map(|k| format!(" ({k:?})"))
        .unwrap_or_default();
    if jwk.d.is_some() {
        return Err(format!(
            "holds private key material{name}; never published, skipped"
        ));
    }
    if let Some(u) = &jwk.use_
        && u != "sig"
    {
        return Err(format!("use is {u:?}, not \"sig\"{name}"));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err(format!("key_ops does not include \"verify\"{name}"));
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| format!("alg {a:?} is not accepted{name}"))?),
    };
    let kty = jwk.kty.as_deref().ok_or_else(|| format!("no kty{name}"))?;
    let (kind, material) = match (kty, jwk.crv.as_deref()) {
        ("RSA", _) => (KeyKind::Rsa, rsa_material(&jwk)?),
        ("EC", Some("P-256")) => (KeyKind::P256, ec_material(&jwk, 32, &agreement::ECDH_P256)?),
        ("EC", Some("P-384")) => (KeyKind::P384, ec_material(&jwk, 48, &agreement::ECDH_P384)?),
        ("OKP", Some("Ed25519")) => {
            let x = b64(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err(format!("Ed25519 x is {} bytes, not 32{name}", x.len()));
            }
            (KeyKind::Ed25519, Material::Point(x.into_boxed_slice()))
        }
        ("EC" | "OKP", crv) => {
            return Err(format!("{kty} curve {crv:?} is not supported{name}"));
        }
        (other, _) => {
            return Err(format!(
                "kty {other:?} is not a supported public key type{name}"
            ));
        }
    };
    if let Some(a) = alg
        && a.key_kind() != kind
    {
        return Err(format!(
            "alg {} does not fit the key type{name}",
            a.as_str()
        ));
    }
    Ok(VerifyingKey {
        kind,
        alg,
        material,
    })
}

fn b64(v: &Option<String>, member: &str) -> Result<Vec<u8>, String> {
    let s = v.as_deref().ok_or_else(|| format!("no {member}"))?;
    JWK_B64
        .decode(s)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(s))
        .map_err(|_| format!("{member} is not base64url"))
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

fn rsa_material(jwk: &RawJwk) -> Result<Material, String> {
    let n = strip_zeros(b64(&jwk.n, "n")?);
    let e = strip_zeros(b64(&jwk.e, "e")?);
    let bits = match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "RSA modulus is {bits} bits (2048 to 8192 accepted)"
        ));
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err("RSA modulus is even".to_string());
    }
    // ring accepts odd exponents from 3 up to 2^33 - 1.
    let e_value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if e.len() > 5 || !(3..1 << 33).contains(&e_value) || e_value & 1 == 0 {
        return Err("RSA exponent is not an odd number from 3 to 2^33-1".to_string());
    }
    Ok(Material::Rsa {
        n: n.into_boxed_slice(),
        e: e.into_boxed_slice(),
    })
}

fn ec_material(
    jwk: &RawJwk,
    coordinate_len: usize,
    curve: &'static agreement::Algorithm,
) -> Result<Material, String> {
    let x = b64(&jwk.x, "x")?;
    let y = b64(&jwk.y, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(format!(
            "EC coordinates must be {coordinate_len} bytes each"
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // ring has no stand-alone point check; an agreement with a throwaway key validates the point.
    let rng = rand::SystemRandom::new();
    let ours = agreement::EphemeralPrivateKey::generate(curve, &rng)
        .map_err(|_| "cannot check the EC point".to_string())?;
    agreement::agree_ephemeral(
        ours,
        &agreement::UnparsedPublicKey::new(curve, &point),
        |_| (),
    )
    .map_err(|_| "EC point is not on the curve".to_string())?;
    Ok(Material::Point(point.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn parse(json: &str) -> Result<(KeySet, Vec<String>), JwksError> {
        KeySet::parse(json.as_bytes())
    }

    #[test]
    fn usable_keys_are_indexed_and_others_skipped_with_reasons() {
        let json = format!(
            r#"{{"keys":[
              {{"kty":"RSA","kid":"r","use":"sig","n":"{RSA_N}","e":"AQAB"}},
              {{"kty":"EC","kid":"e","crv":"P-256","x":"{P256_X}","y":"{P256_Y}"}},
              {{"kty":"oct","kid":"h","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ"}},
              {{"kty":"RSA","kid":"enc","use":"enc","n":"{RSA_N}","e":"AQAB"}},
              {{"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"}},
              {{"kty":"RSA","kid":"priv","n":"{RSA_N}","e":"AQAB","d":"AQAB"}},
              {{"kty":"RSA","kid":"hs","alg":"HS256","n":"{RSA_N}","e":"AQAB"}},
              {{"kty":"EC","kid":"mix","alg":"RS256","crv":"P-256","x":"{P256_X}","y":"{P256_Y}"}},
              "garbage"
            ]}}"#
        );
        let (set, skipped) = parse(&json).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        assert!(matches!(
            set.lookup(Some("r"), Alg::Ps256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("e"), Alg::Es256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("e"), Alg::Es384),
            Lookup::NoMatch(_)
        ));
        assert!(matches!(
            set.lookup(Some("r"), Alg::Es256),
            Lookup::NoMatch(_)
        ));
        assert!(matches!(
            set.lookup(Some("h"), Alg::Rs256),
            Lookup::UnknownKid
        ));
        assert!(matches!(set.lookup(None, Alg::Rs256), Lookup::Found(_)));
        assert!(matches!(set.lookup(None, Alg::EdDsa), Lookup::NoMatch(_)));
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let json = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"r","alg":"RS256","n":"{RSA_N}","e":"AQAB"}}]}}"#
        );
        let (set, _) = parse(&json).unwrap();
        assert!(matches!(
            set.lookup(Some("r"), Alg::Rs256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("r"), Alg::Ps256),
            Lookup::NoMatch(_)
        ));
        assert!(matches!(
            set.lookup(Some("r"), Alg::Rs512),
            Lookup::NoMatch(_)
        ));
    }

    #[test]
    fn no_kid_with_two_candidates_is_ambiguous() {
        let json = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"{RSA_N}","e":"AQAB"}},{{"kty":"RSA","kid":"b","n":"{RSA_N}","e":"AQAB"}}]}}"#
        );
        let (set, _) = parse(&json).unwrap();
        assert!(matches!(set.lookup(None, Alg::Rs256), Lookup::NoMatch(_)));
    }

    #[test]
    fn bad_documents_and_bad_keys() {
        assert!(matches!(parse("[]"), Err(JwksError::Json(_))));
        assert!(matches!(
            parse("{\"keys\":[]}"),
            Err(JwksError::NoUsableKey(_))
        ));
        let off_curve = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{}"}}]}}"#,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"
        );
        let e = parse(&off_curve).unwrap_err().to_string();
        assert!(e.contains("not on the curve"), "{e}");
        let short = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        let e = parse(short).unwrap_err().to_string();
        assert!(e.contains("modulus is 17 bits"), "{e}");
        let even_e = format!(r#"{{"keys":[{{"kty":"RSA","n":"{RSA_N}","e":"AQAA"}}]}}"#);
        assert!(parse(&even_e).is_err());
        let many = format!(
            "{{\"keys\":[{}]}}",
            vec![format!(r#"{{"kty":"RSA","n":"{RSA_N}","e":"AQAB"}}"#); MAX_KEYS + 1].join(",")
        );
        assert!(matches!(parse(&many), Err(JwksError::TooManyKeys)));
    }

    #[test]
    fn padded_members_and_leading_zeros_are_tolerated() {
        let n = general_purpose::URL_SAFE.encode(
            [
                &[0u8][..],
                &general_purpose::URL_SAFE_NO_PAD.decode(RSA_N).unwrap(),
            ]
            .concat(),
        );
        let json = format!(r#"{{"keys":[{{"kty":"RSA","kid":"r","n":"{n}","e":"AQAB"}}]}}"#);
        assert_eq!(parse(&json).unwrap().0.len(), 1);
    }
}
