//! The AdmissionReview handler: any body gets 200 or 400, never a panic; a returned patch
//! applies to the pod it was made for, and the patched pod is not injected twice.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use base64::Engine as _;
use countersign::inject::config::WebhookConfig;
use countersign::inject::patch::InjectSettings;
use countersign::inject::review;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static SETTINGS: LazyLock<InjectSettings> = LazyLock::new(|| {
    WebhookConfig::from_yaml_str(
        "tls: {cert: tls.crt, key: tls.key}\nimage: ghcr.io/countersign/countersign:0.1.0\n",
        Path::new("webhook.yaml"),
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .inject
});

fn patch_of(answer: &Value) -> Option<json_patch::Patch> {
    let b64 = answer["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&raw).expect("the patch is a JSON patch"))
}

fuzz_target!(|data: &[u8]| {
    let (status, answer) = review(data, &SETTINGS);
    assert!(
        status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
    assert!(answer["response"].is_object(), "{answer}");
    let Some(patch) = patch_of(&answer) else {
        return;
    };
    assert_eq!(status, StatusCode::OK);
    // serde skips ignored fields without checking their UTF-8; a `Value` checks everything.
    let Ok(body) = serde_json::from_str::<Value>(&String::from_utf8_lossy(data)) else {
        panic!("a patch for a body that is not JSON");
    };
    let mut pod = body["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap_or_else(|e| panic!("the patch does not apply: {e}"));
    assert_eq!(
        pod["metadata"]["labels"]["countersign.dev/injected"],
        "true"
    );
    let mut again = body.clone();
    again["request"]["object"] = pod;
    let bytes = serde_json::to_vec(&again).unwrap_or_default();
    let (status, answer) = review(&bytes, &SETTINGS);
    assert_eq!(status, StatusCode::OK);
    assert!(patch_of(&answer).is_none(), "injected twice: {answer}");
    assert_eq!(answer["response"]["allowed"], json!(true));
});
