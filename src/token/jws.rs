//! JWS compact serialization (RFC 7515 section 7.1): split, read the protected header, verify the
//! signature with a key from the JWKS, and only then hand out the payload.
//!
//! The header decides nothing on its own: `alg` must be in the configured allow-list and allowed
//! by the key (its type, curve and own `alg`), `crit` is refused (no extension is understood),
//! and `jku`, `x5u`, `jwk` and `x5c` are never followed.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::alg::{Alg, AlgSet};
use super::jwk::{MAX_KID_LEN, VerifyingKey};

/// Why a token is not a usable JWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts with a JSON object header: maybe an opaque token.
    #[error("not a JWS ({0})")]
    NotJws(&'static str),
    /// A JWS whose header breaks a rule.
    #[error("JWS header: {0}")]
    Header(Cow<'static, str>),
    /// The header names an algorithm outside the allow-list (or `none`, `HS*`).
    #[error("alg {0:?} is not accepted")]
    AlgNotAccepted(String),
    /// The signature or payload is not base64url.
    #[error("JWS {0} is not base64url")]
    Encoding(&'static str),
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    BadSignature,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    crit: Option<serde::de::IgnoredAny>,
}

/// A compact JWS whose header passed the checks; its signature is not verified yet.
#[derive(Debug)]
pub struct Jws<'t> {
    /// The algorithm the header names, inside the allow-list.
    pub alg: Alg,
    /// The header's `kid`.
    pub kid: Option<String>,
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
}

fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

impl<'t> Jws<'t> {
    /// Splits a token and reads its protected header.
    pub fn parse(token: &'t str, allowed: AlgSet) -> Result<Jws<'t>, JwsError> {
        let mut parts = token.splitn(4, '.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::NotJws("not three dot-separated parts"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(JwsError::NotJws("an empty part"));
        }
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwsError::NotJws("header is not base64url"))?;
        if header_json.first() != Some(&b'{') {
            return Err(JwsError::NotJws("header is not a JSON object"));
        }
        let raw: RawHeader<'_> = serde_json::from_slice(&header_json).map_err(|e| {
            JwsError::Header(Cow::Owned(format!(
                "not a valid JSON object (column {})",
                e.column()
            )))
        })?;
        if raw.crit.is_some() {
            return Err(JwsError::Header(Cow::Borrowed(
                "crit names extensions countersign does not understand",
            )));
        }
        let alg_name = raw.alg.ok_or(JwsError::Header(Cow::Borrowed("no alg")))?;
        let alg = match Alg::parse(&alg_name) {
            Some(a) if allowed.contains(a) => a,
            _ => return Err(JwsError::AlgNotAccepted(truncated(&alg_name))),
        };
        let kid = match raw.kid {
            Some(k) if k.len() > MAX_KID_LEN => {
                return Err(JwsError::Header(Cow::Borrowed(
                    "kid is longer than 256 bytes",
                )));
            }
            Some(k) => Some(k.into_owned()),
            None => None,
        };
        Ok(Jws {
            alg,
            kid,
            signing_input: &token[..header.len() + 1 + payload.len()],
            payload,
            signature,
        })
    }

    /// Verifies the signature with `key` and returns the decoded payload.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, JwsError> {
        let sig = URL_SAFE_NO_PAD
            .decode(self.signature)
            .map_err(|_| JwsError::Encoding("signature"))?;
        if !key.verify(self.alg, self.signing_input.as_bytes(), &sig) {
            return Err(JwsError::BadSignature);
        }
        URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| JwsError::Encoding("payload"))
    }
}

#[cfg(test)]
mod tests {
    //! Published vectors: RFC 7515 appendix A, RFC 7520 section 4, RFC 8037 appendix A.4.

    use super::super::jwk::{KeySet, Lookup};
    use super::*;

    const VECTORS: &str = include_str!("../../tests/fixtures/jwt/rfc-vectors.json");

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        jwks: serde_json::Value,
        token: String,
        /// The decoded payload, for accepted vectors.
        payload: Option<String>,
        /// `accept`, or the step that must refuse it: `alg`, `lookup`, `verify`.
        expect: String,
    }

    fn all() -> AlgSet {
        Alg::ALL.into_iter().collect()
    }

    #[derive(Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }

    fn run(v: &Vector, token: &str) -> Result<Vec<u8>, String> {
        let jws = Jws::parse(token, all()).map_err(|e| format!("alg: {e}"))?;
        let (set, _) =
            KeySet::parse(v.jwks.to_string().as_bytes()).map_err(|e| format!("jwks: {e}"))?;
        let key = match set.lookup(jws.kid.as_deref(), jws.alg) {
            Lookup::Found(k) => k,
            other => return Err(format!("lookup: {other:?}")),
        };
        jws.verify(key).map_err(|e| format!("verify: {e}"))
    }

    fn vectors() -> Vec<Vector> {
        serde_json::from_str::<File>(VECTORS).unwrap().vectors
    }

    #[test]
    fn published_vectors_verify_or_are_refused_as_expected() {
        let vs = vectors();
        assert!(vs.len() >= 8);
        for v in &vs {
            let got = run(v, &v.token);
            match v.expect.as_str() {
                "accept" => {
                    let payload = got.unwrap_or_else(|e| panic!("{}: {e}", v.name));
                    assert_eq!(
                        Some(String::from_utf8(payload).unwrap()),
                        v.payload,
                        "{}",
                        v.name
                    );
                }
                reason => {
                    let e = got.expect_err(&v.name);
                    assert!(e.starts_with(reason), "{}: {e}", v.name);
                }
            }
        }
    }

    #[test]
    fn every_tampered_accepted_vector_is_refused() {
        for v in vectors().iter().filter(|v| v.expect == "accept") {
            let t = &v.token;
            let dots: Vec<usize> = t.match_indices('.').map(|(i, _)| i).collect();
            // One character changed in the header, the payload and the signature in turn.
            for at in [1, dots[0] + 2, dots[1] + 2, t.len() - 2] {
                let mut b = t.clone().into_bytes();
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(b).unwrap();
                assert!(run(v, &tampered).is_err(), "{} tampered at {at}", v.name);
            }
            // The signature of another vector.
            let swapped = format!("{}.AAAA", &t[..dots[1]]);
            assert!(run(v, &swapped).is_err(), "{}", v.name);
        }
    }

    #[test]
    fn allow_list_is_enforced() {
        let v = vectors()
            .into_iter()
            .find(|v| v.name.contains("RFC 7515 A.2"))
            .unwrap();
        let only_es: AlgSet = [Alg::Es256].into_iter().collect();
        assert!(matches!(
            Jws::parse(&v.token, only_es),
            Err(JwsError::AlgNotAccepted(_))
        ));
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_rules() {
        let p =
            |h: &str| Jws::parse(&format!("{}.{}.sig", b64(h), b64("{}")), all()).map(|j| j.alg);
        assert!(p(r#"{"alg":"RS256","kid":"k"}"#).is_ok());
        assert!(matches!(
            p(r#"{"alg":"none"}"#),
            Err(JwsError::AlgNotAccepted(_))
        ));
        assert!(matches!(
            p(r#"{"alg":"HS256"}"#),
            Err(JwsError::AlgNotAccepted(_))
        ));
        assert!(matches!(p(r#"{"kid":"k"}"#), Err(JwsError::Header(_))));
        assert!(matches!(
            p(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#),
            Err(JwsError::Header(_))
        ));
        assert!(matches!(
            p(r#"{"alg":"RS256","alg":"none"}"#),
            Err(JwsError::Header(_))
        ));
        assert!(matches!(p("[1]"), Err(JwsError::NotJws(_))));
        let long_kid = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300));
        assert!(matches!(p(&long_kid), Err(JwsError::Header(_))));
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "..",
            ".b.c",
            "a..c",
            "opaque-token-123",
        ] {
            assert!(
                matches!(Jws::parse(bad, all()), Err(JwsError::NotJws(_))),
                "{bad}"
            );
        }
        // Padding is not base64url as JWS uses it.
        let padded = format!("{}=.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert!(matches!(
            Jws::parse(&padded, all()),
            Err(JwsError::NotJws(_))
        ));
    }
}
