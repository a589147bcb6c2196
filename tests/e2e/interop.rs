//! Requests signed by libraries nobody here wrote (PyPI httpsig and http-message-signatures, npm
//! http-signature and http-message-signatures), sent through the running sidecar over TLS: each is
//! accepted and reaches the backend with its key id; tampered copies are refused.
//!
//! By default the committed fixtures are used (signed in the past, so the sidecar runs with a
//! wide clock skew); `.ci/run` regenerates them fresh and points `COUNTERSIGN_INTEROP_DIR` at them,
//! so the live run uses the normal 300 s window.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::*;

const FILES: [&str; 4] = [
    "httpsig-python.json",
    "http-message-signatures-python.json",
    "http-signature-node.json",
    "http-message-signatures-node.json",
];

fn fixtures() -> (PathBuf, bool) {
    match std::env::var_os("COUNTERSIGN_INTEROP_DIR") {
        Some(d) => (PathBuf::from(d), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop"),
            false,
        ),
    }
}

/// The raw request bytes; `path_suffix` and `body_override` tamper with it.
fn raw(c: &Value, path_suffix: &str, body_override: Option<&str>) -> Vec<u8> {
    let r = &c["request"];
    let target = r["target"].as_str().unwrap();
    let target = match target.split_once('?') {
        Some((p, q)) => format!("{p}{path_suffix}?{q}"),
        None => format!("{target}{path_suffix}"),
    };
    let body = body_override.unwrap_or_else(|| r["body"].as_str().unwrap_or(""));
    let mut out = format!("{} {} HTTP/1.1\r\n", r["method"].as_str().unwrap(), target);
    let mut has_length = false;
    for h in r["headers"].as_array().unwrap() {
        let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        if k.eq_ignore_ascii_case("content-length") {
            has_length = true;
            out.push_str(&format!("{k}: {}\r\n", body.len()));
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn covers(c: &Value, any: &[&str]) -> bool {
    c["covers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| any.contains(&x.as_str().unwrap_or("")))
}

#[tokio::test]
async fn independent_signers_through_the_running_sidecar() {
    let (dir, fresh) = fixtures();
    let pki = Pki::new();
    let be = echo().await;
    let window = if fresh { "300s" } else { "36500d" };
    let yaml = format!(
        "upstream: http://{{UP}}\ntls:\n  cert: server.crt\n  key: server.key\nkeys: {}\nsignature:\n  required: []\n  clock_skew: {window}\n  max_age: {window}\nroutes:\n  - path: /\n    require: [signature]\n",
        dir.join("keys.yaml").display()
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    let mut accepted = 0;
    for file in FILES {
        let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        for c in doc["cases"].as_array().unwrap() {
            let name = format!("{file}: {}", c["name"].as_str().unwrap());
            let resp = raw_tls(&pki, sc.addr, None, b"", &raw(c, "", None))
                .await
                .unwrap();
            if let Some(code) = c["expect"]["code"].as_str() {
                assert_eq!(json_of(&resp)["error"], code, "{name}: {resp}");
                continue;
            }
            assert_eq!(status_of(&resp), 200, "{name}: {resp}");
            assert_eq!(
                echoed(&json_of(&resp), "x-countersign-key-id"),
                [c["key_id"].as_str().unwrap()],
                "{name}"
            );
            accepted += 1;
            if covers(
                c,
                &[
                    "(request-target)",
                    "@path",
                    "@request-target",
                    "@target-uri",
                ],
            ) {
                let resp = raw_tls(&pki, sc.addr, None, b"", &raw(c, "x", None))
                    .await
                    .unwrap();
                assert_eq!(status_of(&resp), 401, "{name}, path tampered: {resp}");
            }
            if covers(c, &["digest", "content-digest"]) {
                let resp = raw_tls(
                    &pki,
                    sc.addr,
                    None,
                    b"",
                    &raw(c, "", Some("{\"tampered\": true}")),
                )
                .await
                .unwrap();
                assert_eq!(status_of(&resp), 401, "{name}, body tampered: {resp}");
                assert_eq!(json_of(&resp)["error"], "digest_mismatch", "{name}");
            }
        }
    }
    assert!(accepted >= 70, "only {accepted} fixtures were accepted");
    sc.stop().await;
}
