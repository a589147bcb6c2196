//! Signature verification as the request path does it (parse the headers, rebuild the signing
//! string or signature base, look the key up, verify) beside the bare ring operation on the same
//! bytes with the same key, in the same run: the ratio is countersign's overhead.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use countersign::config::SignatureSettings;
use countersign::registry::Registry;
use countersign::signature::{SignedRequest, Verifier};
use countersign::tools::{keygen, sign};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use ring::signature::{self as sig, KeyPair, UnparsedPublicKey};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    sign: sign::SignArgs,
}

const AT: u64 = 1_764_842_400;
/// The Tyk HMAC key's secret, in the registry, the signer and the bare and floor HMACs.
const HMAC_SECRET: &str = "9879879878787878";
const URL: &str = "https://api.internal:8443/orders/42?expand=items&page=2";

struct Case {
    name: &'static str,
    verifier: Verifier,
    method: Method,
    target: String,
    headers: HeaderMap,
    base: Vec<u8>,
    signature: Vec<u8>,
}

fn signed(args: &[&str]) -> sign::Signed {
    let mut v = vec![
        "sign",
        "--url",
        URL,
        "--at",
        "1764842400",
        "-H",
        "X-Request-Id: r-1",
        "-H",
        "Accept: application/json",
    ];
    v.extend_from_slice(args);
    sign::build(&Args::try_parse_from(v).unwrap().sign).unwrap()
}

fn case(name: &'static str, verifier: &Verifier, s: sign::Signed, raw_sig: Vec<u8>) -> Case {
    let mut headers = HeaderMap::new();
    for (k, v) in &s.headers {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    headers.insert(
        http::header::HOST,
        HeaderValue::from_static("api.internal:8443"),
    );
    Case {
        name,
        verifier: verifier.clone(),
        method: Method::GET,
        target: "/orders/42?expand=items&page=2".to_string(),
        headers,
        base: s.base,
        signature: raw_sig,
    }
}

fn sig_from(s: &sign::Signed, rfc9421: bool) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    if rfc9421 {
        let v = &s.added.iter().find(|(k, _)| k == "Signature").unwrap().1;
        let inner = v.split_once(":").unwrap().1.trim_end_matches(':');
        b64.decode(inner).unwrap()
    } else {
        let v = &s
            .added
            .iter()
            .find(|(k, _)| k == "Authorization")
            .unwrap()
            .1;
        let q = v
            .split("signature=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        let q = percent_encoding::percent_decode_str(q)
            .decode_utf8()
            .unwrap();
        b64.decode(q.as_bytes()).unwrap()
    }
}

/// The bare ring check: message, signature → verifies.
type Bare = Box<dyn Fn(&[u8], &[u8]) -> bool>;

fn setup(dir: &Path) -> Vec<(Case, Bare)> {
    let make = |alg: &str, id: &str| -> (Vec<u8>, String) {
        let g = keygen::generate(alg, Some(id), 2048, true).unwrap();
        let mut private = Vec::new();
        let mut public = String::new();
        for (name, content, is_private) in &g.files {
            std::fs::write(dir.join(name), content).unwrap();
            if *is_private && name.ends_with(".key.pem") {
                private = content.clone();
            } else if !is_private {
                public = name.clone();
            }
        }
        (private, public)
    };
    let (rsa_priv, rsa_pub) = make("rsa-sha256", "rsa");
    let (ed_priv, ed_pub) = make("ed25519", "ed");
    let (p256_priv, p256_pub) = make("ecdsa-p256-sha256", "p256");
    for (n, c) in [
        ("rsa.key.pem", &rsa_priv),
        ("ed.key.pem", &ed_priv),
        ("p256.key.pem", &p256_priv),
    ] {
        std::fs::write(dir.join(n), c).unwrap();
    }
    let yaml = format!(
        "keys:\n  - id: hmac\n    algorithm: hmac-sha256\n    secret: {HMAC_SECRET}\n  - id: rsa\n    algorithm: rsa-sha256\n    public_key: {rsa_pub}\n  - id: ed\n    algorithm: ed25519\n    public_key: {ed_pub}\n  - id: p256\n    algorithm: ecdsa-p256-sha256\n    public_key: {p256_pub}\n"
    );
    let mut settings = SignatureSettings::default();
    settings.clock_skew = Duration::from_secs(u32::MAX as u64);
    settings.max_age = settings.clock_skew;
    let registry =
        Arc::new(Registry::from_yaml_str(&yaml, &dir.join("keys.yaml"), dir, &settings).unwrap());
    let verifier = Verifier::new(&settings, registry);

    let der = |pem: &[u8]| pem::parse(pem).unwrap().into_contents();
    let rsa_kp = sig::RsaKeyPair::from_pkcs8(&der(&rsa_priv)).unwrap();
    let rsa_pub_der = rsa_kp.public().as_ref().to_vec();
    let ed_kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der(&ed_priv)).unwrap();
    let ed_pub_raw = ed_kp.public_key().as_ref().to_vec();
    let rng = ring::rand::SystemRandom::new();
    let p256_kp = sig::EcdsaKeyPair::from_pkcs8(
        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der(&p256_priv),
        &rng,
    )
    .unwrap();
    let p256_pub_raw = p256_kp.public_key().as_ref().to_vec();
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
    let path = |p: &Path| p.display().to_string();

    let tyk = signed(&[
        "--scheme",
        "tyk",
        "--alg",
        "hmac-sha256",
        "--key-id",
        "hmac",
        "--secret",
        HMAC_SECRET,
    ]);
    let rsa = signed(&[
        "--scheme",
        "tyk",
        "--alg",
        "rsa-sha256",
        "--key-id",
        "rsa",
        "--key-file",
        &path(&dir.join("rsa.key.pem")),
    ]);
    let comps = "@method @authority @path @query x-request-id";
    let ed = signed(&[
        "--scheme",
        "rfc9421",
        "--alg",
        "ed25519",
        "--key-id",
        "ed",
        "--key-file",
        &path(&dir.join("ed.key.pem")),
        "--components",
        comps,
    ]);
    let p256 = signed(&[
        "--scheme",
        "rfc9421",
        "--alg",
        "ecdsa-p256-sha256",
        "--key-id",
        "p256",
        "--key-file",
        &path(&dir.join("p256.key.pem")),
        "--components",
        comps,
    ]);
    vec![
        (
            case(
                "tyk hmac-sha256",
                &verifier,
                tyk.clone(),
                sig_from(&tyk, false),
            ),
            Box::new(move |m: &[u8], s: &[u8]| ring::hmac::verify(&hmac_key, m, s).is_ok()) as Bare,
        ),
        (
            case(
                "tyk rsa-sha256 (2048)",
                &verifier,
                rsa.clone(),
                sig_from(&rsa, false),
            ),
            Box::new(move |m: &[u8], s: &[u8]| {
                UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, &rsa_pub_der)
                    .verify(m, s)
                    .is_ok()
            }),
        ),
        (
            case(
                "rfc9421 ed25519, 5 components",
                &verifier,
                ed.clone(),
                sig_from(&ed, true),
            ),
            Box::new(move |m: &[u8], s: &[u8]| {
                UnparsedPublicKey::new(&sig::ED25519, &ed_pub_raw)
                    .verify(m, s)
                    .is_ok()
            }),
        ),
        (
            case(
                "rfc9421 ecdsa-p256, 5 components",
                &verifier,
                p256.clone(),
                sig_from(&p256, true),
            ),
            Box::new(move |m: &[u8], s: &[u8]| {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &p256_pub_raw)
                    .verify(m, s)
                    .is_ok()
            }),
        ),
    ]
}

/// The least any verifier of the Tyk HMAC request must do with it as `http` holds it, given in
/// advance everything a parser would find (the signature's position, the covered names): read
/// `Authorization` as text, percent- and base64-decode the signature, rebuild the signing string
/// from the target and three header lookups, and the HMAC. No parameter parsing, key lookup,
/// coverage or `Date` check, so its ratio to the bare HMAC is a lower bound for any verifier.
fn hmac_floor(
    headers: &HeaderMap,
    target: &str,
    sig_at: std::ops::Range<usize>,
    key: &ring::hmac::Key,
) -> bool {
    let Some(Some(value)) = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(|t| t.get(sig_at)))
    else {
        return false;
    };
    let mut buf = [0; countersign::signature::cavage::SIG_BUF_LEN];
    let Ok(sig) = countersign::signature::cavage::decode_signature(value, &mut buf) else {
        return false;
    };
    let mut base = Vec::with_capacity(256);
    base.extend_from_slice(b"(request-target): get ");
    base.extend_from_slice(target.as_bytes());
    for name in ["x-request-id", "accept", "date"] {
        let Some(v) = headers.get(name) else {
            return false;
        };
        base.push(b'\n');
        base.extend_from_slice(name.as_bytes());
        base.extend_from_slice(b": ");
        base.extend_from_slice(v.as_bytes());
    }
    ring::hmac::verify(key, &base, &sig).is_ok()
}

fn signatures(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(AT + 1);
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    for (case, bare) in setup(dir.path()) {
        let req = SignedRequest {
            method: &case.method,
            target: &case.target,
            scheme: "https",
            authority: Some("api.internal:8443"),
            headers: &case.headers,
            body: None,
            client_ip: ip,
        };
        assert!(
            case.verifier.verify(&req, now).is_ok(),
            "{} does not verify",
            case.name
        );
        assert!(
            bare(&case.base, &case.signature),
            "{}: bare ring verify fails",
            case.name
        );
        let mut g = c.benchmark_group(case.name);
        g.bench_function("countersign: parse + canonicalize + verify", |b| {
            b.iter(|| {
                black_box(
                    case.verifier
                        .verify(black_box(&req), black_box(now))
                        .is_ok(),
                )
            })
        });
        g.bench_function("bare ring verify of the same bytes", |b| {
            b.iter(|| black_box(bare(black_box(&case.base), black_box(&case.signature))))
        });
        if case.name == "tyk hmac-sha256" {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
            let auth = case.headers[http::header::AUTHORIZATION].to_str().unwrap();
            let start = auth.find("signature=\"").unwrap() + "signature=\"".len();
            let sig_at = start..auth.len() - 1;
            assert!(hmac_floor(
                &case.headers,
                &case.target,
                sig_at.clone(),
                &key
            ));
            g.bench_function("floor: read, decode, rebuild, HMAC; nothing parsed", |b| {
                b.iter(|| {
                    black_box(hmac_floor(
                        black_box(&case.headers),
                        black_box(&case.target),
                        black_box(sig_at.clone()),
                        &key,
                    ))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, signatures);
criterion_main!(benches);
