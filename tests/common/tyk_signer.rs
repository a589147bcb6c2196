//! Tyk's request signing, written from `TYK.md`'s description of `mw_request_signing.go` and
//! independently of countersign's own signer and verifier: Go's canonical header names and random
//! map order, URL-escaped HMAC values, `UTC` dates, `signature_header` and the `header_list`
//! quirks. Shared by the unit tests (`src/signature/tests/tyk.rs`, which verify what it signs) and
//! the end-to-end tests (`tests/e2e/tyk.rs`, which put it on the wire after Tyk's proxy changes);
//! each adds what it needs to `GoRequest`, so either may leave some of this unused.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::RsaKeyPair;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

/// The HMAC secret of every `tyk-gw-*` HMAC key the tests register.
pub const SECRET: &str = "9879879878787878";

/// An API definition's `request_signing` block.
pub struct TykApi {
    pub key_id: &'static str,
    pub algorithm: &'static str,
    pub rsa: Option<RsaKeyPair>,
    pub header_list: Vec<&'static str>,
    pub signature_header: Option<&'static str>,
}

impl TykApi {
    /// An HMAC API signing with `key_id` (secret [`SECRET`]) and the default header list.
    pub fn hmac(key_id: &'static str, algorithm: &'static str) -> TykApi {
        TykApi {
            key_id,
            algorithm,
            rsa: None,
            header_list: Vec::new(),
            signature_header: None,
        }
    }

    /// One API per algorithm Tyk signs with, each with its own key id.
    pub fn every() -> [TykApi; 5] {
        [
            TykApi::hmac("tyk-gw-1", "hmac-sha256"),
            TykApi::hmac("tyk-gw-sha1", "hmac-sha1"),
            TykApi::hmac("tyk-gw-384", "hmac-sha384"),
            TykApi::hmac("tyk-gw-512", "hmac-sha512"),
            TykApi::rsa(),
        ]
    }

    /// The RSA-SHA256 API (`tyk-gw-rsa`), with the RFC 9421 test key's private half.
    pub fn rsa() -> TykApi {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vectors/rfc9421/keys/derived/test-key-rsa-pss.priv.pkcs8-rsaEncryption.pem"
        ))
        .unwrap();
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).unwrap();
        TykApi {
            rsa: Some(RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap()),
            ..TykApi::hmac("tyk-gw-rsa", "rsa-sha256")
        }
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`.
pub fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let w = w.to_ascii_lowercase();
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A Go `http.Request` as Tyk's middleware sees it: canonical names, several values each.
#[derive(Clone)]
pub struct GoRequest {
    pub method: String,
    /// `r.URL.RequestURI()` after the listen path is stripped: what Tyk signs.
    pub path: String,
    pub header: Vec<(String, Vec<String>)>,
    pub body: String,
}

impl GoRequest {
    pub fn new(method: &str, path: &str, h: &[(&str, &str)]) -> GoRequest {
        let mut r = GoRequest {
            method: method.to_string(),
            path: path.to_string(),
            header: Vec::new(),
            body: String::new(),
        };
        for (k, v) in h {
            r.add(k, v);
        }
        r
    }

    pub fn add(&mut self, k: &str, v: &str) {
        let k = canonical(k);
        match self.header.iter_mut().find(|(n, _)| *n == k) {
            Some((_, vs)) => vs.push(v.to_string()),
            None => self.header.push((k, vec![v.to_string()])),
        }
    }

    /// `r.Header.Set`
    pub fn set(&mut self, k: &str, v: &str) {
        let k = canonical(k);
        self.header.retain(|(n, _)| *n != k);
        self.header.push((k, vec![v.to_string()]));
    }

    /// `r.Header.Del`
    pub fn del(&mut self, k: &str) {
        let k = canonical(k);
        self.header.retain(|(n, _)| *n != k);
    }

    /// `r.Header.Get`: the first value, or "".
    pub fn get(&self, k: &str) -> String {
        let k = canonical(k);
        self.header
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v[0].clone())
            .unwrap_or_default()
    }
}

/// Go's map order is random: a small deterministic shuffle per seed.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, ((s >> 33) % (i as u64 + 1)) as usize);
    }
}

/// `time.Now().Format("Mon, 02 Jan 2006 15:04:05 MST")` with TZ=UTC.
pub fn go_date(unix: i64) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&f)
        .unwrap()
}

/// `generateHeaderList` + `generateHMACSignatureStringFromRequest` + the header Tyk sets.
/// `now` is the signer's clock (Unix seconds), for the `Date` it adds; `seed` picks the map order
/// (`None`: insertion order). Returns the signing string.
pub fn tyk_sign(api: &TykApi, r: &mut GoRequest, now: i64, seed: Option<u64>) -> String {
    let date_now = go_date(now);
    let mut list: Vec<String>;
    if api.header_list.is_empty() {
        let mut names: Vec<String> = r.header.iter().map(|(k, _)| k.clone()).collect();
        if let Some(s) = seed {
            shuffle(&mut names, s);
        }
        list = vec!["(request-target)".to_string()];
        list.extend(names.iter().map(|n| n.trim().to_ascii_lowercase()));
        if r.get("Date").is_empty() {
            r.set("Date", &date_now);
            list.push("date".to_string());
        }
    } else {
        list = api
            .header_list
            .iter()
            .filter(|h| !r.get(h).is_empty())
            .map(|h| h.to_string())
            .collect();
        if list.is_empty() {
            list = vec!["(request-target)".to_string(), "date".to_string()];
            if r.get("Date").is_empty() {
                r.set("Date", &date_now);
            }
        }
    }
    let mut lines = Vec::new();
    for h in &list {
        if h == "(request-target)" {
            lines.push(format!(
                "(request-target): {} {}",
                r.method.to_ascii_lowercase(),
                r.path
            ));
            continue;
        }
        let name = h.trim().to_ascii_lowercase();
        if name == "date" {
            let aux = r.get("X-Aux-Date");
            let date = r.get("Date");
            lines.push(if !aux.is_empty() {
                format!("x-aux-date: {aux}")
            } else if !date.is_empty() {
                format!("date: {date}")
            } else {
                ": ".to_string()
            });
            continue;
        }
        lines.push(format!("{name}: {}", r.get(h).trim()));
    }
    let signing_string = lines.join("\n");
    let signature = match &api.rsa {
        Some(k) => {
            let mut out = vec![0; k.public().modulus_len()];
            k.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_string.as_bytes(),
                &mut out,
            )
            .unwrap();
            STANDARD.encode(out)
        }
        None => {
            let alg = match api.algorithm {
                "hmac-sha256" => ring::hmac::HMAC_SHA256,
                "hmac-sha384" => ring::hmac::HMAC_SHA384,
                "hmac-sha512" => ring::hmac::HMAC_SHA512,
                _ => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            };
            let mac = ring::hmac::sign(
                &ring::hmac::Key::new(alg, SECRET.as_bytes()),
                signing_string.as_bytes(),
            );
            // url.QueryEscape of standard base64
            STANDARD
                .encode(mac.as_ref())
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        }
    };
    let value = format!(
        "Signature keyId=\"{}\",algorithm=\"{}\",headers=\"{}\",signature=\"{signature}\"",
        api.key_id,
        api.algorithm,
        list.join(" ")
    );
    r.set(api.signature_header.unwrap_or("Authorization"), &value);
    signing_string
}
