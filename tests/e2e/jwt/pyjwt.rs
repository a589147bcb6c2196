//! Interop: tokens and a JWKS written by PyJWT (tests/interop/pyjwt.sh), verified at the clock
//! they were minted for; tampered copies and the tokens PyJWT was asked to get wrong are refused.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use countersign::reject::Reject;
use countersign::token::JwtVerifier;
use serde::Deserialize;

use super::idp::{bearer, settings};

#[derive(Deserialize)]
struct Accepted {
    alg: String,
    kid: String,
    token: String,
}

#[derive(Deserialize)]
struct Refused {
    why: String,
    expect: String,
    token: String,
}

#[derive(Deserialize)]
struct Fixture {
    generator: String,
    issuer: String,
    audience: String,
    pinned_now: u64,
    accept: Vec<Accepted>,
    refuse: Vec<Refused>,
}

/// The committed output, or a fresh one (`.ci/run` sets `COUNTERSIGN_PYJWT_DIR`).
fn dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_PYJWT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/pyjwt")
        })
}

fn tamper(token: &str, at: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn pyjwt_tokens_verify_and_tampered_copies_do_not() {
    let f: Fixture =
        serde_json::from_slice(&std::fs::read(dir().join("tokens.json")).unwrap()).unwrap();
    assert!(f.generator.starts_with("PyJWT"), "{}", f.generator);
    let mut s = settings(None, &f.issuer);
    s.audience = Some(f.audience.clone());
    s.jwks_file = Some(dir().join("jwks.json"));
    s.allowed_clients = vec!["tyk-gateway".into()];
    let v = JwtVerifier::new(&s).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(f.pinned_now);

    let mut algs: Vec<&str> = f.accept.iter().map(|a| a.alg.as_str()).collect();
    algs.sort();
    assert_eq!(
        algs,
        [
            "ES256", "ES384", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"
        ]
    );
    for a in &f.accept {
        let c = v
            .verify(&bearer(&a.token), now)
            .await
            .unwrap_or_else(|d| panic!("{} ({}): {}", a.alg, a.kid, d.detail));
        assert_eq!(c.sub.as_deref(), Some("pyjwt-client"), "{}", a.alg);
        assert!(c.has_scopes(&["orders:read".into(), "orders:write".into()]));

        let dots: Vec<usize> = a.token.match_indices('.').map(|(i, _)| i).collect();
        for at in [5, dots[0] + 5, dots[1] + 5, a.token.len() - 2] {
            let d = match v.verify(&bearer(&tamper(&a.token, at)), now).await {
                Err(d) => d,
                Ok(c) => panic!(
                    "{} tampered at {at} of {}: accepted {c:?}",
                    a.alg,
                    a.token.len()
                ),
            };
            assert_eq!(d.reject, Reject::TokenInvalid, "{} tampered at {at}", a.alg);
        }
        // The same token an hour after it expired.
        let later = now + Duration::from_secs(2 * 3600);
        let d = v.verify(&bearer(&a.token), later).await.unwrap_err();
        assert!(d.detail.contains("expired"), "{}: {}", a.alg, d.detail);
    }
    assert_eq!(f.refuse.len(), 6);
    for r in &f.refuse {
        let d = match v.verify(&bearer(&r.token), now).await {
            Err(d) => d,
            Ok(_) => panic!("accepted: {}", r.why),
        };
        assert_eq!(d.reject, Reject::TokenInvalid, "{}", r.why);
        assert!(d.detail.contains(&r.expect), "{}: {}", r.why, d.detail);
    }
}
