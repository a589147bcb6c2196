//! Every input the fuzzers found a bug with (`fuzz/regressions/<target>/`), replayed through the
//! same entry points without the fuzzer. Each fix also has its own unit test beside the code; this
//! keeps the exact crashing bytes exercised by `cargo test`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use countersign::config::{Config, SignatureSettings};
use countersign::inject::config::WebhookConfig;
use countersign::registry::{Algorithm, Format, Registry};
use countersign::signature::sign::{self, CavageSpec, Signer};
use countersign::signature::{Message, SignedRequest, Verifier, cavage, date, rfc9421};
use countersign::tools::verify::parse_raw_request;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The regression inputs of one target (none is fine: the target never failed).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn cavage() {
    for (name, data) in inputs("cavage") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let params = cavage::strip_scheme(text).unwrap_or(text);
        if let Ok(p) = cavage::parse(params) {
            let _ = cavage::decode_signature(&p.signature, &mut [0; cavage::SIG_BUF_LEN]);
        }
        let _ = cavage::decode_signature(text, &mut [0; cavage::SIG_BUF_LEN]);
        eprintln!("{name}: ok");
    }
}

#[test]
fn rfc9421_and_verify() {
    let fixtures = root().join("tests/fixtures/interop");
    let settings = SignatureSettings::default();
    let registry = Arc::new(Registry::load(&fixtures.join("keys.yaml"), &settings).unwrap());
    let verifier = Verifier::new(&settings, registry);
    let mut all = inputs("rfc9421");
    all.extend(inputs("verify"));
    for (name, data) in all {
        let Ok(raw) = parse_raw_request(&data) else {
            continue;
        };
        let msg = Message {
            method: raw.method.as_str(),
            target: &raw.target,
            scheme: "https",
            authority: raw.headers.get("host").and_then(|h| h.to_str().ok()),
            headers: &raw.headers,
            status: None,
        };
        if let Ok(sigs) = rfc9421::parse(&msg) {
            for s in &sigs {
                let _ = rfc9421::signature_base(&msg, s);
            }
        }
        let req = SignedRequest {
            method: &raw.method,
            target: &raw.target,
            scheme: "https",
            authority: None,
            headers: &raw.headers,
            body: Some(&raw.body),
            client_ip: "203.0.113.9".parse().unwrap(),
        };
        for now in [0, 1618884475, 1796417274, i64::MAX / 2] {
            let now = date::from_unix(now);
            let v = verifier.verify(&req, now);
            let e = verifier.explain(&req, now);
            let _ = e.to_string();
            assert_eq!(v.is_ok(), e.verdict.is_ok(), "{name}");
        }
        eprintln!("{name}: ok");
    }
}

#[tokio::test]
async fn proxy_protocol() {
    for (name, data) in inputs("proxy_protocol") {
        let _ = countersign::proxy_protocol::parse_v1(&data);
        let _ = countersign::proxy_protocol::parse_v2(&data);
        let mut rest: &[u8] = &data;
        let _ = countersign::proxy_protocol::read_header(&mut rest).await;
        eprintln!("{name}: ok");
    }
}

#[test]
fn date() {
    let zones = [("CET".to_string(), 3600)];
    for (name, data) in inputs("date") {
        let text = String::from_utf8_lossy(&data);
        if let Ok(t) = date::parse(&text, &zones) {
            let _ = countersign::registry::rfc3339(t);
            assert_eq!(date::parse(&date::format_imf(t), &[]), Ok(t), "{name}");
        }
        eprintln!("{name}: ok");
    }
}

#[test]
fn config_and_registry() {
    let base = root().join("tests/fixtures/interop");
    let settings = SignatureSettings::default();
    for (name, data) in inputs("config") {
        // What loads must also run: its signature settings verify a request with no signed time.
        if let Ok(c) = Config::from_yaml_str(
            &String::from_utf8_lossy(&data),
            &base.join("countersign.yaml"),
            &base,
        ) {
            let registry = Registry::from_yaml_str(
                "keys:\n  - id: k\n    algorithm: hmac-sha256\n    secret: fuzz-secret-fuzz-secret\n",
                Path::new("keys.yaml"),
                &base,
                &c.signature,
            )
            .unwrap();
            let verifier = Verifier::new(&c.signature, Arc::new(registry));
            let signer = Signer::hmac(Algorithm::HmacSha256, b"fuzz-secret-fuzz-secret").unwrap();
            let mut headers = http::HeaderMap::new();
            let target = "/orders/7";
            let msg = Message {
                method: "GET",
                target,
                scheme: "https",
                authority: None,
                headers: &headers,
                status: None,
            };
            let spec = CavageSpec {
                key_id: "k",
                algorithm: None,
                headers: vec!["(request-target)".to_string()],
                created: None,
                expires: None,
                tyk: false,
            };
            let (params, _) = sign::cavage(&msg, &signer, &spec).unwrap();
            headers.insert(
                "authorization",
                format!("Signature {params}").parse().unwrap(),
            );
            let req = SignedRequest {
                method: &http::Method::GET,
                target,
                scheme: "https",
                authority: None,
                headers: &headers,
                body: None,
                client_ip: "203.0.113.9".parse().unwrap(),
            };
            let _ = verifier.verify(&req, date::from_unix(1764842400));
            let _ = verifier
                .explain(&req, date::from_unix(1764842400))
                .to_string();
        }
        eprintln!("{name}: ok");
    }
    for (name, data) in inputs("registry") {
        for format in [Format::Yaml, Format::Json] {
            let _ = Registry::from_bytes(&data, format, &base.join("keys.yaml"), &base, &settings);
            let _ = Registry::from_remote_bytes(&data, format, "https://keys.example/", &settings);
        }
        eprintln!("{name}: ok");
    }
}

#[test]
fn admission() {
    let settings = WebhookConfig::from_yaml_str(
        "tls: {cert: tls.crt, key: tls.key}\nimage: ghcr.io/countersign/countersign:0.1.0\n",
        Path::new("webhook.yaml"),
        Path::new("."),
    )
    .unwrap()
    .inject;
    for (name, data) in inputs("admission") {
        let (status, answer) = countersign::inject::review(&data, &settings);
        assert!(status == 200 || status == 400, "{name}: {status}");
        if let Some(b64) = answer["response"]["patch"].as_str() {
            // A patch must apply to the pod exactly as it was sent.
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
            let body: serde_json::Value =
                serde_json::from_str(&String::from_utf8_lossy(&data)).unwrap();
            let mut pod = body["request"]["object"].clone();
            json_patch::patch(&mut pod, &patch)
                .unwrap_or_else(|e| panic!("{name}: the patch does not apply: {e}"));
        }
        eprintln!("{name}: ok ({status})");
    }
}

#[test]
fn path() {
    for (name, data) in inputs("path") {
        let Ok(raw) = std::str::from_utf8(&data) else {
            continue;
        };
        let once = countersign::policy::path::for_matching(raw);
        assert!(once.starts_with('/'), "{name}");
        if !once.contains('%') {
            assert_eq!(
                countersign::policy::path::for_matching(&once),
                once,
                "{name}"
            );
        }
        eprintln!("{name}: ok");
    }
}
