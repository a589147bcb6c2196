//! Hostile input over HTTP/1.1: forged and malformed signatures, algorithm confusion, replay, path
//! tricks, request smuggling, oversized and slow requests, non-TLS bytes on the TLS port and forged
//! identity headers. Each case asserts its exact status (or that the connection is refused), that
//! nothing reached the backend, and that a good request is still served afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use countersign::registry::Algorithm;
use countersign::signature::Message;
use countersign::signature::date;
use countersign::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A backend that records every complete request reaching it (HTTP/1.1 and h2c), answering 200
/// with `{"target": ...}`; a request whose body breaks off is not recorded.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = CancellationToken::new();
        let (s2, stop2) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = stop2.cancelled() => return,
                    r = l.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                };
                let seen = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (p, b) = req.into_parts();
                            // A body that breaks off is not a request the backend would act on.
                            let body = match b.collect().await {
                                Ok(c) => c.to_bytes(),
                                Err(e) => return Err(e),
                            };
                            let target = p.uri.path_and_query().map_or("/", |x| x.as_str());
                            let out = serde_json::json!({"target": target}).to_string();
                            seen.lock().unwrap().push(Seen {
                                method: p.method.to_string(),
                                target: target.to_string(),
                                version: p.version,
                                headers: p.headers,
                                body,
                            });
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(out))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Recorder { addr, seen, stop }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    pub fn targets(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.target.clone())
            .collect()
    }
}

/// The shared HMAC secret of key `hmac-1`.
pub const SECRET: &[u8] = b"hostile-suite-hmac-secret-0123456789";

pub fn fixture(p: &str) -> String {
    format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// The RFC 9421 test RSA key (SPKI PEM), registered as `rsa-1`.
pub fn rsa_pub_path() -> String {
    fixture("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem")
}

pub fn keys_yaml() -> String {
    format!(
        "keys:\n  - id: hmac-1\n    algorithm: hmac-sha256\n    secret_base64: {}\n  - id: rsa-1\n    algorithm: rsa-sha256\n    public_key: {}\n  - id: rsa-9421\n    algorithm: rsa-v1_5-sha256\n    public_key: {}\n",
        STANDARD.encode(SECRET),
        rsa_pub_path(),
        rsa_pub_path()
    )
}

/// A sidecar with mTLS optional, signatures on `/` and `/admin` (the latter with mTLS), `/public`
/// open, replay protection on, and a short drain (raw clients do not answer a GOAWAY's PING);
/// `extra` goes before `routes:`.
pub async fn start(pki: &Pki, up: SocketAddr, extra: &str, routes: &str) -> Sidecar {
    pki.write("keys.yaml", &keys_yaml());
    let yaml = format!(
        "upstream: http://{{UP}}\nshutdown_timeout: 2s\nlog:\n  access: off\ntls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  client_auth: optional\n  crl: [crl.pem]\nkeys: keys.yaml\nsignature:\n  replay: memory\n{extra}routes:\n{routes}"
    );
    Sidecar::start(pki, up, &yaml).await
}

pub const ROUTES: &str = "  - path: /public\n    require: []\n  - path: /admin\n    require: [mtls, signature]\n  - path: /\n    require: [signature]\n";

/// Header pairs, in order (repeats kept).
pub fn header_map(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

pub fn now_date() -> String {
    date::format_imf(SystemTime::now())
}

pub fn now_unix() -> i64 {
    date::unix(SystemTime::now())
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A value no other request of this test binary carries.
pub fn nonce() -> String {
    format!(
        "n-{}-{}",
        std::process::id(),
        NONCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// The draft-cavage parameter list for a request, signed by `signer` as key `key_id`.
pub fn cavage_params(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    signer: &Signer,
    key_id: &str,
    algorithm: Option<&str>,
    covered: &[&str],
) -> String {
    let h = header_map(headers);
    let msg = Message {
        method,
        target,
        scheme: "https",
        authority: Some("localhost"),
        headers: &h,
        status: None,
    };
    sign::cavage(
        &msg,
        signer,
        &CavageSpec {
            key_id,
            algorithm,
            headers: covered.iter().map(|s| s.to_string()).collect(),
            created: None,
            expires: None,
            tyk: false,
        },
    )
    .unwrap()
    .0
}

pub fn hmac() -> Signer {
    Signer::hmac(Algorithm::HmacSha256, SECRET).unwrap()
}

pub fn rsa_signer(alg: Algorithm) -> Signer {
    let pem = std::fs::read(fixture(
        "vectors/rfc9421/keys/derived/test-key-rsa-pss.priv.pkcs8-rsaEncryption.pem",
    ))
    .unwrap();
    Signer::from_pem(alg, &pem).unwrap()
}

/// The usual covered list: the target, the date and a per-request nonce.
pub const COVER: &[&str] = &["(request-target)", "date", "x-nonce"];

/// A raw HTTP/1.1 request with `Connection: close` (and `Content-Length` when there is a body).
pub fn raw(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// A correctly signed GET as raw bytes: `Authorization: Signature ...` over [`COVER`].
pub fn signed_get(target: &str) -> Vec<u8> {
    let d = now_date();
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    let p = cavage_params(
        "GET",
        target,
        &h,
        &hmac(),
        "hmac-1",
        Some("hmac-sha256"),
        COVER,
    );
    let auth = format!("Signature {p}");
    raw(
        "GET",
        target,
        &[h[0], h[1], ("Authorization", auth.as_str())],
        "",
    )
}

/// The sidecar, its backend, and the PKI, with the checks every hostile case shares.
pub struct Bench {
    pub pki: Pki,
    pub be: Recorder,
    pub sc: Sidecar,
}

impl Bench {
    pub async fn new(extra: &str) -> Bench {
        Self::with_routes(extra, ROUTES).await
    }

    pub async fn with_routes(extra: &str, routes: &str) -> Bench {
        let pki = Pki::new();
        let be = Recorder::start().await;
        let sc = start(&pki, be.addr, extra, routes).await;
        Bench { pki, be, sc }
    }

    /// Sends raw bytes over a new TLS connection (with the client certificate when `cert`).
    pub async fn send(&self, cert: bool, bytes: &[u8]) -> std::io::Result<String> {
        let id = cert.then_some(&self.pki.client);
        raw_tls(&self.pki, self.sc.addr, id, b"", bytes).await
    }

    /// Asserts `bytes` is refused with `status` and `code` (`None`: hyper's own bodiless
    /// refusal), that nothing reached the backend, and that a good request is served afterwards.
    pub async fn refused(&self, what: &str, bytes: &[u8], status: u16, code: Option<&str>) {
        self.refused_as(false, what, bytes, status, code).await
    }

    /// [`Bench::refused`], with the client certificate when `cert`.
    pub async fn refused_as(
        &self,
        cert: bool,
        what: &str,
        bytes: &[u8],
        status: u16,
        code: Option<&str>,
    ) {
        {
            let before = self.be.count();
            let resp = self
                .send(cert, bytes)
                .await
                .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
            assert_eq!(status_of(&resp), status, "{what}: {resp}");
            if let Some(code) = code {
                assert_eq!(json_of(&resp)["error"], code, "{what}: {resp}");
            }
            assert_eq!(
                self.be.count(),
                before,
                "{what}: reached the backend: {:?}",
                self.be.targets()
            );
            self.still_serves(what).await;
        }
    }

    /// A correctly signed request is still served (the process is up, nothing is wedged).
    pub async fn still_serves(&self, what: &str) {
        let before = self.be.count();
        let resp = self.send(false, &signed_get("/alive")).await.unwrap();
        assert_eq!(status_of(&resp), 200, "after {what}: {resp}");
        assert_eq!(self.be.count(), before + 1, "after {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[tokio::test]
async fn duplicate_signature_and_authorization_headers_are_malformed() {
    let b = Bench::new("").await;
    let d = now_date();
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    let good = cavage_params("GET", "/x", &h, &hmac(), "hmac-1", None, COVER);
    let other = cavage_params("GET", "/y", &h, &hmac(), "hmac-1", None, COVER);
    let auth = format!("Signature {good}");
    let auth2 = format!("Signature {other}");
    // The accepted twin: one Authorization header.
    let resp = b
        .send(
            false,
            &raw("GET", "/x", &[h[0], h[1], ("Authorization", &auth)], ""),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.be.last().target, "/x");
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    let good = cavage_params("GET", "/x", &h, &hmac(), "hmac-1", None, COVER);
    let auth = format!("Signature {good}");
    b.refused(
        "two Authorization: Signature headers",
        &raw(
            "GET",
            "/x",
            &[
                h[0],
                h[1],
                ("Authorization", &auth),
                ("Authorization", &auth2),
            ],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.refused(
        "the same Authorization header twice",
        &raw(
            "GET",
            "/x",
            &[
                h[0],
                h[1],
                ("Authorization", &auth),
                ("Authorization", &auth),
            ],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.refused(
        "two Signature headers (cavage)",
        &raw(
            "GET",
            "/x",
            &[h[0], h[1], ("Signature", &good), ("Signature", &other)],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    // A Bearer token next to a signature in a second Authorization line is no way around it.
    b.refused(
        "Authorization: Bearer next to Authorization: Signature",
        &raw(
            "GET",
            "/x",
            &[
                h[0],
                h[1],
                ("Authorization", "Bearer abc"),
                ("Authorization", &auth),
            ],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.sc.stop().await;
}

/// RFC 9421 headers for a GET of `target`, covering method, path, query and a nonce header.
fn rfc9421_headers(
    target: &str,
    label: &str,
    signer: &Signer,
    keyid: &str,
    alg: Option<&str>,
    created: i64,
    extra: &[(&str, &str)],
) -> (String, String) {
    let h = header_map(extra);
    let msg = Message {
        method: "GET",
        target,
        scheme: "https",
        authority: Some("localhost"),
        headers: &h,
        status: None,
    };
    let (input, sig, _) = sign::rfc9421(
        &msg,
        signer,
        &Rfc9421Spec {
            label,
            components: vec![
                "@method".into(),
                "@path".into(),
                "@query".into(),
                "x-nonce".into(),
            ],
            created: Some(created),
            keyid,
            alg,
            ..Default::default()
        },
    )
    .unwrap();
    (input, sig)
}

#[tokio::test]
async fn duplicate_rfc9421_fields_cannot_smuggle_a_second_reading() {
    let b = Bench::new("").await;
    let n = nonce();
    let (input, sig) = rfc9421_headers(
        "/r?a=1",
        "sig1",
        &hmac(),
        "hmac-1",
        Some("hmac-sha256"),
        now_unix(),
        &[("X-Nonce", &n)],
    );
    let resp = b
        .send(
            false,
            &raw(
                "GET",
                "/r?a=1",
                &[
                    ("X-Nonce", &n),
                    ("Signature-Input", &input),
                    ("Signature", &sig),
                ],
                "",
            ),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "the accepted twin: {resp}");
    // A second Signature-Input line redefining the label: the dictionary's last member wins, so the
    // genuine signature no longer matches its (attacker-chosen) input.
    let n = nonce();
    let (input, sig) = rfc9421_headers(
        "/r?a=1",
        "sig1",
        &hmac(),
        "hmac-1",
        Some("hmac-sha256"),
        now_unix(),
        &[("X-Nonce", &n)],
    );
    b.refused(
        "a second Signature-Input redefining sig1 with less coverage",
        &raw(
            "GET",
            "/r?a=1",
            &[
                ("X-Nonce", &n),
                ("Signature-Input", &input),
                (
                    "Signature-Input",
                    &format!("sig1=(\"@method\");created={};keyid=\"hmac-1\"", now_unix()),
                ),
                ("Signature", &sig),
            ],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    // A second Signature line replacing the value.
    b.refused(
        "a second Signature line replacing sig1's value",
        &raw(
            "GET",
            "/r?a=1",
            &[
                ("X-Nonce", &n),
                ("Signature-Input", &input),
                ("Signature", &sig),
                ("Signature", "sig1=:AAAA:"),
            ],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    b.sc.stop().await;
}

#[tokio::test]
async fn covered_headers_missing_or_repeated_do_not_verify() {
    let b = Bench::new("").await;
    let d = now_date();
    let n = nonce();
    let covered = ["(request-target)", "date", "x-nonce", "x-amount"];
    let h = [
        ("Date", d.as_str()),
        ("X-Nonce", n.as_str()),
        ("X-Amount", "10"),
    ];
    let p = cavage_params("POST", "/pay", &h, &hmac(), "hmac-1", None, &covered);
    let auth = format!("Signature {p}");
    b.refused(
        "a header named in headers= is missing",
        &raw("POST", "/pay", &[h[0], h[1], ("Authorization", &auth)], ""),
        401,
        Some("signature_invalid"),
    )
    .await;
    b.refused(
        "a covered header repeated with a different value",
        &raw(
            "POST",
            "/pay",
            &[
                h[0],
                h[1],
                h[2],
                ("X-Amount", "1000000"),
                ("Authorization", &auth),
            ],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    b.refused(
        "a covered header repeated with the same value",
        &raw(
            "POST",
            "/pay",
            &[
                h[0],
                h[1],
                h[2],
                ("X-Amount", "10"),
                ("Authorization", &auth),
            ],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    // The accepted twin, sent last (replay protection would refuse it the second time).
    let resp = b
        .send(
            false,
            &raw(
                "POST",
                "/pay",
                &[h[0], h[1], h[2], ("Authorization", &auth)],
                "",
            ),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(
        b.be.last().headers.get_all("x-amount").iter().count(),
        1,
        "the backend sees exactly the verified value"
    );
    b.sc.stop().await;

    // With tyk_compat, only the first line of a repeated header is signed (Go's Header.Get, as
    // Tyk signs): a second, different line is accepted and reaches the backend unverified. A
    // known trade-off of the option (docs/SECURITY.md), pinned here so a change is noticed.
    let b = Bench::new("  tyk_compat: true\n").await;
    let resp = b
        .send(
            false,
            &raw(
                "POST",
                "/pay",
                &[
                    h[0],
                    h[1],
                    h[2],
                    ("X-Amount", "1000000"),
                    ("Authorization", &auth),
                ],
                "",
            ),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    let amounts: Vec<_> =
        b.be.last()
            .headers
            .get_all("x-amount")
            .iter()
            .cloned()
            .collect();
    assert_eq!(amounts, ["10", "1000000"]);
    b.sc.stop().await;
}

#[tokio::test]
async fn algorithm_confusion_and_none_are_refused() {
    let b = Bench::new("").await;
    // HMAC keyed with the RSA public key's PEM bytes, naming an HMAC algorithm for the RSA key.
    let pem = std::fs::read(rsa_pub_path()).unwrap();
    let forged = Signer::hmac(Algorithm::HmacSha256, &pem).unwrap();
    let d = now_date();
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    for alg in [
        Some("hmac-sha256"),
        None,
        Some("hs2019"),
        Some("rsa-sha256"),
    ] {
        let p = cavage_params("GET", "/c", &h, &forged, "rsa-1", alg, COVER);
        b.refused(
            &format!("cavage HMAC keyed with the RSA public key, algorithm {alg:?}"),
            &raw(
                "GET",
                "/c",
                &[h[0], h[1], ("Authorization", &format!("Signature {p}"))],
                "",
            ),
            401,
            Some("signature_invalid"),
        )
        .await;
    }
    for alg in [Some("hmac-sha256"), None, Some("rsa-v1_5-sha256")] {
        let n = nonce();
        let (input, sig) = rfc9421_headers(
            "/c",
            "sig1",
            &forged,
            "rsa-9421",
            alg,
            now_unix(),
            &[("X-Nonce", &n)],
        );
        b.refused(
            &format!("RFC 9421 HMAC keyed with the RSA public key, alg {alg:?}"),
            &raw(
                "GET",
                "/c",
                &[
                    ("X-Nonce", &n),
                    ("Signature-Input", &input),
                    ("Signature", &sig),
                ],
                "",
            ),
            401,
            Some("signature_invalid"),
        )
        .await;
    }
    // algorithm="none" with an empty or any signature.
    let p = cavage_params("GET", "/c", &h, &hmac(), "hmac-1", Some("none"), COVER);
    b.refused(
        "algorithm=\"none\" (a valid HMAC value)",
        &raw(
            "GET",
            "/c",
            &[h[0], h[1], ("Authorization", &format!("Signature {p}"))],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    let none = "keyId=\"hmac-1\",algorithm=\"none\",headers=\"(request-target) date x-nonce\",signature=\"\"";
    b.refused(
        "algorithm=\"none\" with an empty signature",
        &raw(
            "GET",
            "/c",
            &[h[0], h[1], ("Authorization", &format!("Signature {none}"))],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    let n = nonce();
    let (input, sig) = rfc9421_headers(
        "/c",
        "sig1",
        &hmac(),
        "hmac-1",
        Some("none"),
        now_unix(),
        &[("X-Nonce", &n)],
    );
    b.refused(
        "RFC 9421 alg=\"none\"",
        &raw(
            "GET",
            "/c",
            &[
                ("X-Nonce", &n),
                ("Signature-Input", &input),
                ("Signature", &sig),
            ],
            "",
        ),
        401,
        Some("signature_invalid"),
    )
    .await;
    // The accepted twins: the real RSA key, with and without algorithm=.
    for alg in [Some("rsa-sha256"), None] {
        let n = nonce();
        let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
        let p = cavage_params(
            "GET",
            "/c",
            &h,
            &rsa_signer(Algorithm::RsaSha256),
            "rsa-1",
            alg,
            COVER,
        );
        let resp = b
            .send(
                false,
                &raw(
                    "GET",
                    "/c",
                    &[h[0], h[1], ("Authorization", &format!("Signature {p}"))],
                    "",
                ),
            )
            .await
            .unwrap();
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert_eq!(b.be.last().headers["x-countersign-key-id"], "rsa-1");
    }
    b.sc.stop().await;
}

#[tokio::test]
async fn empty_truncated_non_base64_and_huge_signatures() {
    let b = Bench::new("").await;
    let d = now_date();
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    let p = cavage_params(
        "GET",
        "/s",
        &h,
        &hmac(),
        "hmac-1",
        Some("hmac-sha256"),
        COVER,
    );
    let value = p
        .rsplit_once("signature=\"")
        .unwrap()
        .1
        .trim_end_matches('"')
        .to_string();
    let with = |sig: &str| {
        format!(
            "Signature keyId=\"hmac-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) date x-nonce\",signature=\"{sig}\""
        )
    };
    let send = |auth: String| raw("GET", "/s", &[h[0], h[1], ("Authorization", &auth)], "");
    b.refused(
        "an empty signature",
        &send(with("")),
        400,
        Some("malformed_signature"),
    )
    .await;
    // Half the bytes, re-encoded: valid base64, wrong length.
    let bytes = STANDARD.decode(&value).unwrap();
    b.refused(
        "a truncated signature (valid base64)",
        &send(with(&STANDARD.encode(&bytes[..bytes.len() / 2]))),
        401,
        Some("signature_invalid"),
    )
    .await;
    b.refused(
        "a truncated signature (cut base64)",
        &send(with(&value[..value.len() - 5])),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.refused(
        "a non-base64 signature",
        &send(with("!!!not*base64!!!")),
        400,
        Some("malformed_signature"),
    )
    .await;
    // Large but inside the head limit: the parser's own cap.
    b.refused(
        "a 16 KiB signature",
        &send(with(&STANDARD.encode(vec![7u8; 12 * 1024]))),
        400,
        Some("malformed_signature"),
    )
    .await;
    // 1 MB: the head limit (32 KiB by default) answers before any parser runs.
    b.refused(
        "a 1 MB signature",
        &send(with(&"A".repeat(1 << 20))),
        431,
        None,
    )
    .await;
    // The same for RFC 9421.
    let n = nonce();
    let (input, _) = rfc9421_headers(
        "/s",
        "sig1",
        &hmac(),
        "hmac-1",
        None,
        now_unix(),
        &[("X-Nonce", &n)],
    );
    let rfc = |sig: &str| {
        raw(
            "GET",
            "/s",
            &[
                ("X-Nonce", &n),
                ("Signature-Input", &input),
                ("Signature", sig),
            ],
            "",
        )
    };
    b.refused(
        "RFC 9421: an empty byte sequence",
        &rfc("sig1=::"),
        401,
        Some("signature_invalid"),
    )
    .await;
    b.refused(
        "RFC 9421: not a byte sequence",
        &rfc("sig1=:!!!:"),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.refused(
        "RFC 9421: a 1 MB signature",
        &rfc(&format!("sig1=:{}:", "A".repeat(1 << 20))),
        431,
        None,
    )
    .await;
    // The accepted twin.
    let resp = b.send(false, &send(with(&value))).await.unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    b.sc.stop().await;
}

#[tokio::test]
async fn ten_thousand_components_are_refused_at_the_head_limit_or_by_the_parser() {
    let b = Bench::new("").await;
    let comps: Vec<String> = (0..10_000).map(|i| format!("\"h{i}\"")).collect();
    let input = format!(
        "sig1=({});created={};keyid=\"hmac-1\"",
        comps.join(" "),
        now_unix()
    );
    let req = raw(
        "GET",
        "/many",
        &[("Signature-Input", &input), ("Signature", "sig1=:AAAA:")],
        "",
    );
    b.refused("10,000 components (default head limit)", &req, 431, None)
        .await;
    b.sc.stop().await;
    // With a head limit large enough to let it through, the parser's caps refuse it.
    let b = Bench::new("limits:\n  max_header_bytes: 1048576\n").await;
    b.refused("10,000 components", &req, 400, Some("malformed_signature"))
        .await;
    let comps: Vec<String> = (0..1_000).map(|i| format!("\"h{i}\"")).collect();
    let input = format!(
        "sig1=({});created={};keyid=\"hmac-1\"",
        comps.join(" "),
        now_unix()
    );
    b.refused(
        "1,000 components (inside the field size cap)",
        &raw(
            "GET",
            "/many",
            &[("Signature-Input", &input), ("Signature", "sig1=:AAAA:")],
            "",
        ),
        400,
        Some("malformed_signature"),
    )
    .await;
    let many: Vec<String> = (0..10_000).map(|i| format!("h{i}")).collect();
    let auth = format!(
        "Signature keyId=\"hmac-1\",headers=\"{}\",signature=\"AAAA\"",
        many.join(" ")
    );
    b.refused(
        "a cavage headers= list of 10,000 names",
        &raw("GET", "/many", &[("Authorization", &auth)], ""),
        400,
        Some("malformed_signature"),
    )
    .await;
    b.sc.stop().await;
}

#[tokio::test]
async fn created_in_the_future_or_long_expired_and_replays() {
    let b = Bench::new("").await;
    let now = SystemTime::now();
    for (what, t) in [
        (
            "a Date an hour in the future",
            now + Duration::from_secs(3600),
        ),
        ("a Date a day old", now - Duration::from_secs(86_400)),
        ("a Date in 1970", date::from_unix(0)),
    ] {
        let d = date::format_imf(t);
        let n = nonce();
        let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
        let p = cavage_params("GET", "/t", &h, &hmac(), "hmac-1", None, COVER);
        b.refused(
            what,
            &raw(
                "GET",
                "/t",
                &[h[0], h[1], ("Authorization", &format!("Signature {p}"))],
                "",
            ),
            401,
            Some("signature_expired"),
        )
        .await;
    }
    for (what, created) in [
        ("created an hour in the future", now_unix() + 3600),
        ("created a day ago", now_unix() - 86_400),
        ("created at 0", 0),
    ] {
        let n = nonce();
        let (input, sig) = rfc9421_headers(
            "/t",
            "sig1",
            &hmac(),
            "hmac-1",
            None,
            created,
            &[("X-Nonce", &n)],
        );
        b.refused(
            what,
            &raw(
                "GET",
                "/t",
                &[
                    ("X-Nonce", &n),
                    ("Signature-Input", &input),
                    ("Signature", &sig),
                ],
                "",
            ),
            401,
            Some("signature_expired"),
        )
        .await;
    }
    // Replay: the same signed bytes twice, over two connections.
    let req = signed_get("/once");
    let first = b.send(false, &req).await.unwrap();
    assert_eq!(status_of(&first), 200, "{first}");
    b.refused("a replayed request", &req, 401, Some("replayed"))
        .await;
    // A replay with the signature moved to the Signature header is the same signature.
    let text = String::from_utf8(req.clone()).unwrap();
    let moved = text.replace("Authorization: Signature ", "Signature: ");
    b.refused(
        "a replay in the Signature header",
        moved.as_bytes(),
        401,
        Some("replayed"),
    )
    .await;
    b.sc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A raw GET of `target` (no signature).
fn get(target: &str) -> Vec<u8> {
    raw("GET", target, &[], "")
}

#[tokio::test]
async fn path_tricks_get_the_route_the_backend_resolves_or_are_refused_as_ambiguous() {
    let b = Bench::new("").await;
    // Every reading (decoded, undecoded, cut at ? or #, decoded twice) lands on /admin: /admin's
    // policy applies (mtls comes first).
    for trick in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/./../admin/",
        "//admin",
        "/public//..//admin",
        "/%61dmin",
        "/public;x=1/../admin",
    ] {
        b.refused(trick, &get(trick), 403, Some("client_cert_denied"))
            .await;
    }
    // Readings that disagree: a backend keeping %2F, ;, \ or an encoded ? or # inside a segment
    // routes these elsewhere than one decoding them. `/admin/..%2Fpublic` was served as /public
    // (no requirement) while Express and Go 1.22's ServeMux serve it under /admin.
    for trick in [
        "/admin/..%2Fpublic",
        "/admin/..%2fpublic/x",
        "/public/..%2Fadmin",
        "/admin/..%5Cpublic",
        "/admin\\..\\public",
        "/admin;x=1",
        "/admin%3Fx=1",
        "/admin%23top",
        "/public%3F/../admin",
        "/public%23/../admin",
        "/public/%252e%252e/admin",
        "/admin/%252e%252e/public",
    ] {
        b.refused(trick, &get(trick), 400, Some("malformed_request"))
            .await;
    }
    // Escapes that do not change the route are forwarded byte for byte.
    for target in [
        "/public/a%2Fb?x=%3F",
        "/public/tags/%23rust",
        "/public/q%3Fa",
        "/public/x;v=1/y",
        "/public/%25",
    ] {
        let resp = b.send(false, &get(target)).await.unwrap();
        assert_eq!(status_of(&resp), 200, "{target}: {resp}");
        assert_eq!(b.be.last().target, target);
    }
    b.sc.stop().await;
}

#[tokio::test]
async fn the_backend_gets_exactly_the_path_that_was_verified() {
    let b = Bench::new("").await;
    let signed = |target: &str, signed_as: &str| {
        let d = now_date();
        let n = nonce();
        let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
        let p = cavage_params("GET", signed_as, &h, &hmac(), "hmac-1", None, COVER);
        raw(
            "GET",
            target,
            &[h[0], h[1], ("Authorization", &format!("Signature {p}"))],
            "",
        )
    };
    for target in [
        "/public/../admin?x=1",
        "//admin/%2e%2e/admin/x%2Fy?q=%20&r",
        "/admin/x;v=1",
        "/admin/%7Euser",
    ] {
        let resp = b.send(true, &signed(target, target)).await.unwrap();
        assert_eq!(status_of(&resp), 200, "{target}: {resp}");
        let seen = b.be.last();
        assert_eq!(seen.target, target, "byte for byte");
        assert_eq!(seen.headers["x-countersign-key-id"], "hmac-1");
        assert_eq!(seen.headers["x-countersign-cert-subject"], "CN=tyk-edge");
    }
    // A signature over another spelling of the same resource does not verify.
    for (target, signed_as) in [
        ("/public/../admin?x=1", "/admin?x=1"),
        ("/admin/%7Euser", "/admin/~user"),
        ("/admin/%7euser", "/admin/%7Euser"),
        ("//admin", "/admin"),
        ("/admin?b=2&a=1", "/admin?a=1&b=2"),
    ] {
        b.refused_as(
            true,
            &format!("{target} signed as {signed_as}"),
            &signed(target, signed_as),
            401,
            Some("signature_invalid"),
        )
        .await;
    }
    // RFC 9421 @path is the raw path too.
    let n = nonce();
    let (input, sig) = rfc9421_headers(
        "/admin/%2e/x",
        "sig1",
        &hmac(),
        "hmac-1",
        None,
        now_unix(),
        &[("X-Nonce", &n)],
    );
    let h = [
        ("X-Nonce", n.as_str()),
        ("Signature-Input", input.as_str()),
        ("Signature", sig.as_str()),
    ];
    b.refused_as(
        true,
        "RFC 9421 @path with another escape case",
        &raw("GET", "/admin/%2E/x", &h, ""),
        401,
        Some("signature_invalid"),
    )
    .await;
    let resp = b
        .send(true, &raw("GET", "/admin/%2e/x", &h, ""))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.be.last().target, "/admin/%2e/x");
    b.sc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Framing

#[tokio::test]
async fn request_smuggling_is_refused_or_cannot_reach_the_backend() {
    let b = Bench::new("").await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (what, head) in [
        (
            "two different Content-Length values",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "a Content-Length list",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 5\r\n\r\nhello",
        ),
        (
            "a signed Content-Length",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "obs-fold",
            "GET /public/a HTTP/1.1\r\nHost: localhost\r\nX-Foo: a\r\n b\r\n\r\n",
        ),
        (
            "obs-fold hiding Transfer-Encoding",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nX-Foo: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a bare CR",
            "GET /public/a HTTP/1.1\rHost: localhost\r\n\r\n",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding: gzip",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
        ),
        (
            "Transfer-Encoding: xchunked",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a space before the colon",
            "POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST /public/a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a NUL in a header value",
            "GET /public/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n",
        ),
        ("an HTTP/0.9 request", "GET /public/a\r\n\r\n"),
    ] {
        let bytes = format!("{head}{smuggled}");
        b.refused(what, bytes.as_bytes(), 400, None).await;
    }
    // Content-Length and Transfer-Encoding together: hyper lets Transfer-Encoding win and drops
    // Content-Length (RFC 9112 section 6.3), and closes the connection after the response, so
    // whatever the two lengths disagree about is never read as a request.
    for (what, head) in [
        (
            "Content-Length, then Transfer-Encoding",
            "POST /public/clte HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding, then Content-Length",
            "POST /public/tecl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n",
        ),
    ] {
        let before = b.be.count();
        let resp = b
            .send(false, format!("{head}{smuggled}").as_bytes())
            .await
            .unwrap();
        assert_eq!(status_of(&resp), 200, "{what}: {resp}");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{what}: one response");
        assert_eq!(b.be.count(), before + 1, "{what}: {:?}", b.be.targets());
        let seen = b.be.last();
        assert_eq!(seen.method, "POST");
        assert!(seen.target.ends_with("clte") || seen.target.ends_with("tecl"));
        assert!(seen.headers.get("content-length").is_none_or(|v| v == "0"));
        assert!(seen.body.is_empty());
        b.still_serves(what).await;
    }
    // Bare LF line endings: hyper accepts them (RFC 9112 section 2.2 allows it) and the backend
    // gets a request re-framed with CRLF, so it cannot read it any other way than countersign did.
    let resp = b
        .send(
            false,
            b"GET /public/lf HTTP/1.1\nHost: localhost\nX-A: 1\nConnection: close\n\n",
        )
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.be.last().target, "/public/lf");
    assert_eq!(b.be.last().headers["x-a"], "1");
    assert!(!b.be.targets().iter().any(|t| t.contains("smuggled")));
    b.sc.stop().await;
}

#[tokio::test]
async fn oversized_heads_slow_clients_and_non_tls_bytes() {
    let b = Bench::new(
        "limits:\n  handshake_timeout: 500ms\n  header_read_timeout: 500ms\n  body_timeout: 500ms\n  upstream_timeout: 1s\n  stream_idle_timeout: 500ms\n",
    )
    .await;
    let mut many = String::from("GET /public/many HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: 1\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    b.refused(
        "200 header lines (limits.max_headers 100)",
        many.as_bytes(),
        431,
        None,
    )
    .await;
    let big = format!(
        "GET /public/big HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    b.refused("a 64 KiB header", big.as_bytes(), 431, None)
        .await;
    let long_uri = format!(
        "GET /public/{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    b.refused("a 70 KiB request target", long_uri.as_bytes(), 431, None)
        .await;

    // A TCP connection that never starts TLS is closed after handshake_timeout.
    let mut tcp = tokio::net::TcpStream::connect(b.sc.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed within handshake_timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A stalled body on a route that needs nothing streams to the backend, which never answers:
    // stream_idle_timeout bounds it (the client is the one awaited), 408.
    let stalled =
        b"POST /public/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789";
    let text = tokio::time::timeout(
        Duration::from_secs(5),
        raw_tls(&b.pki, b.sc.addr, None, b"", stalled),
    )
    .await
    .expect("answered within stream_idle_timeout")
    .unwrap();
    assert_eq!(status_of(&text), 408, "{text}");
    assert_eq!(json_of(&text)["error"], "request_timeout");
    // A digest that must be checked (a signature covering it, on a signature route), with a body
    // that stalls: 408, and nothing is forwarded.
    let stalled = b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\nDigest: SHA-256=AAAA\r\nSignature: keyId=\"k1\",headers=\"digest\",signature=\"AAAA\"\r\n\r\n0123456789";
    let text = tokio::time::timeout(
        Duration::from_secs(5),
        raw_tls(&b.pki, b.sc.addr, None, b"", stalled),
    )
    .await
    .expect("answered within body_timeout")
    .unwrap();
    assert_eq!(status_of(&text), 408, "{text}");
    assert_eq!(json_of(&text)["error"], "request_timeout");
    assert!(
        !b.be.targets().iter().any(|t| t == "/slow"),
        "{:?}",
        b.be.targets()
    );

    // Garbage and a plain HTTP request on the TLS port: the handshake fails, the connection
    // closes, no HTTP answer is made up.
    for (what, bytes) in [
        (
            "garbage",
            (0..=255u8).cycle().take(4096).collect::<Vec<u8>>(),
        ),
        (
            "a plain HTTP request",
            b"GET /public/plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ] {
        let before = b.be.count();
        let mut tcp = tokio::net::TcpStream::connect(b.sc.addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection is closed"))
            .ok();
        assert!(
            !out.starts_with(b"HTTP/"),
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
        // At most a TLS alert record.
        assert!(out.is_empty() || out[0] == 0x15, "{what}: {out:?}");
        assert_eq!(b.be.count(), before, "{what}");
        b.still_serves(what).await;
    }
    assert!(
        sample(
            &b.sc.metrics().await,
            "countersign_connections_total{result=\"handshake_failed\"}"
        ) >= 2.0
    );
    b.sc.stop().await;
}

#[tokio::test]
async fn a_broken_request_body_is_the_clients_fault_not_the_backends() {
    // It used to be answered 502 upstream_unavailable and counted as a backend failure, so any
    // client could raise the backend alarm.
    let b = Bench::new("").await;
    for (what, bytes) in [
        (
            "a chunk size line ending in a bare LF",
            &b"POST /public/chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "a chunk size that is not hex",
            &b"POST /public/chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        ),
    ] {
        let resp = b.send(false, bytes).await.unwrap();
        assert_eq!(status_of(&resp), 400, "{what}: {resp}");
        assert_eq!(json_of(&resp)["error"], "malformed_request", "{what}");
        assert!(!b.be.targets().iter().any(|t| t == "/public/chunk"));
        b.still_serves(what).await;
    }
    b.sc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Identity headers

#[tokio::test]
async fn forged_identity_headers_never_reach_the_backend() {
    let b = Bench::new("").await;
    let d = now_date();
    let n = nonce();
    let h = [("Date", d.as_str()), ("X-Nonce", n.as_str())];
    let p = cavage_params("GET", "/admin/who", &h, &hmac(), "hmac-1", None, COVER);
    let auth = format!("Signature {p}");
    let forged: &[(&str, &str)] = &[
        ("X-Countersign-Key-Id", "root"),
        ("x-countersign-cert-subject", "CN=root"),
        ("X-COUNTERSIGN-CERT-SHA256", "00"),
        ("X-Countersign-Cert-Uri", "spiffe://evil/root"),
        ("X-Countersign-Client-Ip", "10.0.0.1"),
        ("X-Countersign-Jwt-Sub", "root"),
        ("X-Countersign-Report-Verdict", "allowed"),
        ("X-Countersign-Anything-New", "x"),
        ("x_countersign_key_id", "root"),
        ("X_Countersign_Cert_Subject", "CN=root"),
        ("x-countersign_client_ip", "10.0.0.1"),
        (
            "X-Forwarded-Client-Cert",
            "By=spiffe://evil;Hash=00;Subject=\"CN=root\"",
        ),
        ("Client-Cert", ":AAAA:"),
        ("Client-Cert-Chain", ":AAAA:"),
        // Asking the sidecar to treat its own headers as hop-by-hop, to drop them after they
        // are set.
        (
            "Connection",
            "x-countersign-key-id, X-Countersign-Cert-Subject, x-countersign-client-ip, x-countersign-cert-sha256, x-request-id, close",
        ),
    ];
    let mut headers = vec![h[0], h[1], ("Authorization", auth.as_str())];
    headers.extend_from_slice(forged);
    let resp = b
        .send(true, &raw("GET", "/admin/who", &headers, ""))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = b.be.last();
    let all = |n: &str| -> Vec<String> {
        seen.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("x-countersign-key-id"), ["hmac-1"]);
    assert_eq!(all("x-countersign-cert-subject"), ["CN=tyk-edge"]);
    assert_eq!(all("x-countersign-client-ip"), ["127.0.0.1"]);
    assert_eq!(all("x-countersign-cert-sha256").len(), 1);
    assert_ne!(all("x-countersign-cert-sha256"), ["00"]);
    assert_eq!(
        all("x-countersign-cert-uri"),
        ["spiffe://example.org/ns/edge/sa/tyk"]
    );
    assert_eq!(all("x-request-id").len(), 1, "made by the sidecar");
    for gone in [
        "x-countersign-jwt-sub",
        "x-countersign-report-verdict",
        "x-countersign-anything-new",
        "x_countersign_key_id",
        "x_countersign_cert_subject",
        "x-countersign_client_ip",
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
        "connection",
    ] {
        assert!(
            all(gone).is_empty(),
            "{gone} reached the backend: {:?}",
            all(gone)
        );
    }
    // An unauthenticated request to an open route carries no identity at all, whatever it forges.
    let resp = b
        .send(false, &raw("GET", "/public/who", forged, ""))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = b.be.last();
    let names: Vec<&str> = seen
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.contains("countersign") || k.contains("client-cert"))
        .collect();
    assert_eq!(names, ["x-countersign-client-ip"], "{:?}", seen.headers);
    b.sc.stop().await;
}

#[tokio::test]
async fn forged_client_addresses_are_not_believed() {
    // client_ip.from: peer (the default): X-Forwarded-For and a PROXY header are the client's words.
    let pki = Pki::new();
    let be = Recorder::start().await;
    let yaml = "upstream: http://{UP}\nlog:\n  access: off\nip_allow: [203.0.113.0/24]\nroutes:\n  - path: /\n    require: [ip]\n";
    let sc = Sidecar::start(&pki, be.addr, yaml).await;
    for (what, bytes) in [
        (
            "X-Forwarded-For",
            b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "X-Real-IP and Forwarded",
            b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ] {
        let resp = raw_plain(sc.addr, &bytes).await.unwrap();
        assert_eq!(status_of(&resp), 403, "{what}: {resp}");
        assert_eq!(json_of(&resp)["error"], "ip_denied");
    }
    // A PROXY header where none is expected is not HTTP: 400, nothing forwarded.
    let resp = raw_plain(
        sc.addr,
        b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\nGET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&resp), 400, "{resp}");
    let v2 = countersign::proxy_protocol::encode_v2(
        "203.0.113.9:1000".parse().unwrap(),
        "10.0.0.1:443".parse().unwrap(),
    );
    let mut bytes = v2.to_vec();
    bytes.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let resp = raw_plain(sc.addr, &bytes).await.unwrap();
    assert_eq!(status_of(&resp), 400, "a binary PROXY v2 header: {resp}");
    assert_eq!(be.count(), 0, "{:?}", be.targets());
    sc.stop().await;
    // The accepted twin: the peer itself allowed, the forged header passed through as data, and
    // the address the backend is told is the peer's.
    let sc = Sidecar::start(
        &pki,
        be.addr,
        &yaml.replace("203.0.113.0/24", "127.0.0.0/8"),
    )
    .await;
    let resp = raw_plain(
        sc.addr,
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(be.last().headers["x-countersign-client-ip"], "127.0.0.1");
    // X-Forwarded-For itself passes through untouched: backends must read X-Countersign-Client-Ip.
    assert_eq!(be.last().headers["x-forwarded-for"], "203.0.113.9");
    sc.stop().await;
}
