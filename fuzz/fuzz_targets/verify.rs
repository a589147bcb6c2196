//! The verifier end to end: a raw HTTP/1.1 request (the format of `countersign verify
//! --request`) checked against a registry holding every algorithm (the published vectors' keys and
//! the interop keys), with two sets of settings. `verify` and `explain` must agree.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use countersign::config::{DigestPolicy, SignatureSettings};
use countersign::registry::Registry;
use countersign::signature::{SignedRequest, Verifier, date};
use countersign::tools::verify::parse_raw_request;
use libfuzzer_sys::fuzz_target;

const KEYS: &str = "keys:
  - id: Test
    algorithm: rsa-sha256
    public_key: vectors/cavage10/test-key-Test.pub.pem
  - id: test-key-rsa-pss
    algorithm: rsa-pss-sha512
    public_key: vectors/rfc9421/keys/test-key-rsa-pss.pub.pem
  - id: test-key-rsa
    algorithm: rsa-v1_5-sha256
    public_key: vectors/rfc9421/keys/test-key-rsa.pub.pem
  - id: test-key-ecc-p256
    algorithm: ecdsa-p256-sha256
    public_key: vectors/rfc9421/keys/test-key-ecc-p256.pub.pem
  - id: test-key-ed25519
    algorithm: ed25519
    public_key: vectors/rfc9421/keys/test-key-ed25519.pub.pem
  - id: test-shared-secret
    algorithm: hmac-sha256
    secret_file: vectors/rfc9421/keys/test-shared-secret.bin
  - id: interop-hmac-sha1
    algorithm: hmac-sha1
    secret_file: interop/keys/hmac.secret
    legacy_sha1: true
  - id: interop-hmac-sha256
    algorithm: hmac-sha256
    secret_file: interop/keys/hmac.secret
    ip_allow: [203.0.113.0/24]
  - id: interop-hmac-sha512
    algorithm: hmac-sha512
    secret_file: interop/keys/hmac.secret
    required: [digest]
  - id: interop-rsa-sha256
    algorithm: rsa-sha256
    public_key: interop/keys/rsa.pub.pem
    not_before: 2026-01-01T00:00:00Z
  - id: interop-rsa-sha512
    algorithm: rsa-sha512
    public_key: interop/keys/rsa.pub.pem
    not_after: 2027-06-30T00:00:00Z
  - id: interop-rsa-v1_5-sha256
    algorithm: rsa-v1_5-sha256
    public_key: interop/keys/rsa.pub.pem
  - id: interop-rsa-pss-sha512
    algorithm: rsa-pss-sha512
    public_key: interop/keys/rsa-pss.pub.pem
  - id: interop-ecdsa-p256-sha256
    algorithm: ecdsa-p256-sha256
    public_key: interop/keys/p256.pub.pem
  - id: interop-ecdsa-p384-sha384
    algorithm: ecdsa-p384-sha384
    public_key: interop/keys/p384.pub.pem
  - id: interop-ed25519
    algorithm: ed25519
    public_key: interop/keys/ed25519.pub.pem
    ip_allow: [10.0.0.0/8]
  - id: tyk-hmac
    algorithm: hmac-sha256
    secret: tyk-shared-secret
  - id: legacy-job
    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
";

/// The RFC 9421 examples' clock.
const RFC_NOW: i64 = 1618884475;
/// The interop fixtures' clock.
const INTEROP_NOW: i64 = 1796417274;

struct Setup {
    verifier: Verifier,
    now: i64,
}

static SETUPS: LazyLock<Vec<Setup>> = LazyLock::new(|| {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let plain = SignatureSettings {
        required: Vec::new(),
        min_rsa_bits: 1024,
        ..SignatureSettings::default()
    };
    let year = Duration::from_secs(365 * 86400);
    let tyk = SignatureSettings {
        digest: DigestPolicy::Required,
        tyk_compat: true,
        tyk_absent_headers_empty: true,
        strip_path_prefix: Some("/api".to_string()),
        require_created: true,
        clock_skew: 20 * year,
        max_age: 20 * year,
        date_zones: vec![("CET".to_string(), 3600), ("PST".to_string(), -8 * 3600)],
        ..plain.clone()
    };
    let registry = Arc::new(
        Registry::from_yaml_str(KEYS, &fixtures.join("keys.yaml"), &fixtures, &plain)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    vec![
        Setup {
            verifier: Verifier::new(&plain, registry.clone()),
            now: RFC_NOW,
        },
        Setup {
            verifier: Verifier::new(&tyk, registry),
            now: INTEROP_NOW,
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = parse_raw_request(data) else {
        return;
    };
    let client_ip: IpAddr = "203.0.113.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    for s in SETUPS.iter() {
        let body = s
            .verifier
            .needs_body(&raw.headers)
            .then_some(raw.body.as_slice());
        let req = SignedRequest {
            method: &raw.method,
            target: &raw.target,
            scheme: "https",
            authority: None,
            headers: &raw.headers,
            body,
            client_ip,
        };
        let now = date::from_unix(s.now);
        let verdict = s.verifier.verify(&req, now);
        let explained = s.verifier.explain(&req, now);
        let _ = explained.to_string();
        match (&verdict, &explained.verdict) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.key.id, b.key.id);
                assert_eq!(a.scheme, b.scheme);
                assert!(!a.key.is_api_key());
            }
            (Err(a), Err(b)) => assert_eq!(a.reject, b.reject),
            (a, b) => panic!("verify and explain disagree: {a:?} / {b:?}"),
        }
    }
});
