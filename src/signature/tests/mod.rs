//! Tests of the verifier as a whole: the published vectors, Tyk's format, every deny code with
//! its accepted twin, and the fixtures produced by independent signers.

mod deny;
mod interop;
mod tyk;
mod vectors;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{Explanation, SignedRequest, Verified, Verifier, date};
use crate::config::SignatureSettings;
use crate::registry::Registry;
use crate::reject::{Denial, Reject};

/// `tests/fixtures/…`
pub fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

/// A header map from name/value pairs, in order (repeats kept).
pub fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

/// A request to verify, owning its parts.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub target: String,
    pub scheme: String,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub ip: IpAddr,
}

impl Req {
    pub fn new(method: &str, target: &str, h: &[(&str, &str)]) -> Req {
        Req {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            target: target.to_string(),
            scheme: "https".to_string(),
            headers: headers(h),
            body: None,
            ip: "203.0.113.9".parse().unwrap(),
        }
    }

    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = Some(b.to_vec());
        self
    }

    pub fn view(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            target: &self.target,
            scheme: &self.scheme,
            authority: None,
            headers: &self.headers,
            body: self.body.as_deref(),
            client_ip: self.ip,
        }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
}

/// A verifier over a registry written in YAML, with keys resolved against `base`.
pub fn verifier(yaml: &str, base: &Path, settings: &SignatureSettings) -> Verifier {
    let reg = Registry::from_yaml_str(yaml, Path::new("keys.yaml"), base, settings)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    Verifier::new(settings, Arc::new(reg))
}

pub fn at(unix: i64) -> SystemTime {
    date::from_unix(unix)
}

pub fn verify(v: &Verifier, r: &Req, now: i64) -> Result<Verified, Denial> {
    v.verify(&r.view(), at(now))
}

pub fn explain(v: &Verifier, r: &Req, now: i64) -> Explanation {
    v.explain(&r.view(), at(now))
}

/// Asserts a refusal with `code` whose detail contains `needle`, and that `--explain` agrees.
#[track_caller]
pub fn refused(v: &Verifier, r: &Req, now: i64, code: Reject, needle: &str) -> Denial {
    let d = verify(v, r, now).expect_err("expected a refusal");
    assert_eq!(d.reject, code, "detail: {}", d.detail);
    assert!(
        d.detail.contains(needle),
        "detail `{}` does not mention `{needle}`",
        d.detail
    );
    let e = explain(v, r, now);
    let ed = e.verdict.as_ref().expect_err("explain disagrees");
    assert_eq!(ed.reject, code);
    assert_eq!(ed.detail, d.detail);
    d
}

/// Asserts acceptance (and that `--explain` agrees).
#[track_caller]
pub fn accepted(v: &Verifier, r: &Req, now: i64) -> Verified {
    let ok = match verify(v, r, now) {
        Ok(ok) => ok,
        Err(d) => panic!(
            "refused: {} {}\n{}",
            d.reject.code(),
            d.detail,
            explain(v, r, now)
        ),
    };
    assert!(explain(v, r, now).verdict.is_ok());
    ok
}

/// Settings with no required coverage (vectors cover what the spec examples cover).
pub fn lenient() -> SignatureSettings {
    SignatureSettings {
        required: Vec::new(),
        ..SignatureSettings::default()
    }
}

#[test]
fn targets_with_multibyte_characters_are_split_without_panicking() {
    // Found by fuzz/fuzz_targets/rfc9421.rs: the scheme check sliced the target at byte 7/8,
    // inside a character (`countersign verify --request` takes any UTF-8 target).
    let h = HeaderMap::new();
    let m = |target| super::Message {
        method: "GET",
        target,
        scheme: "https",
        authority: None,
        headers: &h,
        status: None,
    };
    assert_eq!(m("/ord?7eˌv=1").path(), "/ord");
    assert_eq!(m("/ord?7eˌv=1").query(), Some("7eˌv=1"));
    assert_eq!(m("/ordˌ").path(), "/ordˌ");
    assert_eq!(m("https://ˌ/a?b").path(), "/a");
    assert_eq!(m("HTTP://h/a?b").query(), Some("b"));
    let r = Req::new(
        "GET",
        "/ord?7eˌv=1",
        &[("Authorization", "Signature keyId=\"k\",signature=\"AAAA\"")],
    );
    let v = verifier(
        "keys:\n  - id: k\n    algorithm: hmac-sha256\n    secret: 0123456789abcdef0123456789abcdef\n",
        Path::new("."),
        &lenient(),
    );
    assert!(verify(&v, &r, 1764842400).is_err());
}
