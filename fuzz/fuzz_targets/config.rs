//! The configuration loader, `Config::from_yaml_str` (files resolved against the test fixtures);
//! then what a loaded config must also survive at run time: its `signature:` settings verify a
//! few signed requests (no signed time, a signed Date, RFC 9421 created/expires) and feed the
//! in-memory replay store.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use countersign::config::{Config, SignatureSettings};
use countersign::registry::{Algorithm, Registry};
use countersign::signature::digest::{DigestAlg, content_digest_value};
use countersign::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use countersign::signature::{Message, ReplayStore, SignedRequest, Verifier, date};
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1764842400;
const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEYS: &str = "keys:
  - id: k
    algorithm: hmac-sha256
    secret_base64: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
";

struct Signed {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn signed() -> Vec<Signed> {
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(SECRET_B64)
        .unwrap_or_default();
    let Ok(signer) = Signer::hmac(Algorithm::HmacSha256, &secret) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let base = |body: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("api.example"));
        h.insert(
            "date",
            HeaderValue::from_str(&date::format_imf(date::from_unix(NOW)))
                .unwrap_or(HeaderValue::from_static("")),
        );
        h.insert("x-request-id", HeaderValue::from_static("r-1"));
        h.insert(
            "content-digest",
            HeaderValue::from_str(&content_digest_value(DigestAlg::Sha256, body))
                .unwrap_or(HeaderValue::from_static("")),
        );
        h
    };
    for covered in [
        &["(request-target)"][..],
        &["(request-target)", "host", "date", "x-request-id"][..],
    ] {
        let mut headers = base(b"");
        let target = "/api/orders/7?x=1".to_string();
        let msg = Message {
            method: "GET",
            target: &target,
            scheme: "https",
            authority: None,
            headers: &headers,
            status: None,
        };
        let spec = CavageSpec {
            key_id: "k",
            algorithm: Some("hmac-sha256"),
            headers: covered.iter().map(|s| s.to_string()).collect(),
            created: None,
            expires: None,
            tyk: false,
        };
        if let Ok((params, _)) = sign::cavage(&msg, &signer, &spec)
            && let Ok(v) = HeaderValue::from_str(&format!("Signature {params}"))
        {
            headers.insert("authorization", v);
            out.push(Signed {
                method: Method::GET,
                target,
                headers,
                body: Vec::new(),
            });
        }
    }
    let body = b"{}".to_vec();
    let mut headers = base(&body);
    let target = "/orders?x=1".to_string();
    let msg = Message {
        method: "POST",
        target: &target,
        scheme: "https",
        authority: Some("api.example"),
        headers: &headers,
        status: None,
    };
    let spec = Rfc9421Spec {
        label: "sig1",
        components: ["@method", "@authority", "@path", "@query", "content-digest"]
            .map(String::from)
            .to_vec(),
        created: Some(NOW),
        expires: Some(NOW + 600),
        nonce: Some("n-1"),
        keyid: "k",
        alg: Some("hmac-sha256"),
        tag: None,
    };
    if let Ok((input, sig, _)) = sign::rfc9421(&msg, &signer, &spec)
        && sign::append_rfc9421(&mut headers, &input, &sig).is_ok()
    {
        out.push(Signed {
            method: Method::POST,
            target,
            headers,
            body,
        });
    }
    out
}

static REQUESTS: LazyLock<Vec<Signed>> = LazyLock::new(signed);

fn run(settings: &SignatureSettings) {
    let Ok(registry) =
        Registry::from_yaml_str(KEYS, Path::new("keys.yaml"), Path::new("."), settings)
    else {
        return;
    };
    let verifier = Verifier::new(settings, std::sync::Arc::new(registry));
    let store = ReplayStore::new(settings.replay_capacity.min(1024));
    for r in REQUESTS.iter() {
        let req = SignedRequest {
            method: &r.method,
            target: &r.target,
            scheme: "https",
            authority: None,
            headers: &r.headers,
            body: verifier.needs_body(&r.headers).then_some(r.body.as_slice()),
            client_ip: std::net::IpAddr::from([203, 0, 113, 9]),
        };
        for now in [NOW, NOW + 100_000] {
            let now = date::from_unix(now);
            if let Ok(v) = verifier.verify(&req, now) {
                let _ = store.check_and_record(v.replay_token, v.fresh_until, now);
            }
            let _ = verifier.explain(&req, now).to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/interop");
    match Config::from_yaml_str(text, &base.join("countersign.yaml"), &base) {
        Ok(c) => {
            let _ = countersign::signature::config_warnings(&c.signature);
            run(&c.signature);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
