//! The app's own health probes, forwarded by the sidecar's admin listener.
//!
//! The webhook rewrites each `httpGet` probe of an app container to
//! `GET /app-health/<container>/<probe>` on the sidecar's admin port (the kubelet presents no
//! client certificate, so it cannot probe through the mTLS listener) and hands the original probe
//! to the sidecar in the [`APP_PROBES_ENV`] environment variable. [`AppProbes::probe`] sends it
//! to the app on 127.0.0.1 and answers with the app's status, as the kubelet would have seen it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};

/// The environment variable holding the app probes as JSON: an object mapping
/// `<container>/<probe>` (probe: `livez`, `readyz` or `startupz`) to an [`AppProbe`].
pub const APP_PROBES_ENV: &str = "COUNTERSIGN_APP_PROBES";

/// The most probes one pod may hand over (three per container).
pub const MAX_PROBES: usize = 256;

/// The longest [`APP_PROBES_ENV`] value accepted.
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// The longest a forwarded probe may take, whatever the probe's own timeout says.
pub const MAX_TIMEOUT_SECONDS: u32 = 60;

/// The scheme the kubelet would have used to probe the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Plain HTTP.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTPS without certificate verification (as the kubelet does).
    #[serde(rename = "HTTPS")]
    Https,
}

/// One request header of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeHeader {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: String,
}

/// An app's original `httpGet` probe, with its port resolved to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppProbe {
    /// The app's port on 127.0.0.1.
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// Extra request headers (a `Host` entry sets the Host header).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ProbeHeader>,
    /// The probe's `timeoutSeconds` (the kubelet's default is 1).
    pub timeout_seconds: u32,
}

/// A probe ready to send: its URL and headers parsed once.
#[derive(Debug)]
struct Ready {
    url: reqwest::Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

/// The app probes of one pod and the client that forwards them.
#[derive(Debug, Clone)]
pub struct AppProbes {
    probes: Arc<BTreeMap<String, Ready>>,
    client: reqwest::Client,
}

impl AppProbes {
    /// Reads [`APP_PROBES_ENV`]; unset or empty means no probes.
    pub fn from_env() -> Result<AppProbes, String> {
        match std::env::var(APP_PROBES_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::from_json(&v),
            Ok(_) | Err(std::env::VarError::NotPresent) => Self::new(BTreeMap::new()),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{APP_PROBES_ENV}: not valid UTF-8"))
            }
        }
    }

    /// Parses the JSON form of [`APP_PROBES_ENV`].
    pub fn from_json(json: &str) -> Result<AppProbes, String> {
        if json.len() > MAX_ENV_BYTES {
            return Err(format!(
                "{APP_PROBES_ENV}: longer than {MAX_ENV_BYTES} bytes"
            ));
        }
        let map: BTreeMap<String, AppProbe> = serde_json::from_str(json)
            .map_err(|e| format!("{APP_PROBES_ENV}: not a probe map: {e}"))?;
        Self::new(map)
    }

    /// Checks each probe and builds the forwarding client.
    pub fn new(map: BTreeMap<String, AppProbe>) -> Result<AppProbes, String> {
        if map.len() > MAX_PROBES {
            return Err(format!("{APP_PROBES_ENV}: more than {MAX_PROBES} probes"));
        }
        let mut probes = BTreeMap::new();
        for (name, p) in map {
            let ready = ready(&p).map_err(|m| format!("{APP_PROBES_ENV}: `{name}`: {m}"))?;
            probes.insert(name, ready);
        }
        let tls = insecure_tls().map_err(|e| format!("cannot build the probe client: {e}"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build the probe client: {e}"))?;
        Ok(AppProbes {
            probes: Arc::new(probes),
            client,
        })
    }

    /// The number of probes.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// True when the pod handed over no probes.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Sends the probe `name` (`<container>/<probe>`) to the app and answers with its status:
    /// the app's own status code, 503 when the app cannot be reached or does not answer in
    /// time, 404 for a name this pod has no probe for.
    pub async fn probe(&self, name: &str) -> Response<Body> {
        let Some(p) = self.probes.get(name) else {
            return text(StatusCode::NOT_FOUND, "no such app probe\n");
        };
        let mut req = self.client.get(p.url.clone()).timeout(p.timeout);
        for (n, v) in &p.headers {
            req = req.header(n, v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                tracing::debug!(probe = name, status = status.as_u16(), "app probe");
                text(status, "app probe answered\n")
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                tracing::info!(probe = name, error = %e, "app probe failed");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("app probe {why}\n"),
                )
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn ready(p: &AppProbe) -> Result<Ready, String> {
    if p.port == 0 {
        return Err("port 0".into());
    }
    if !p.path.starts_with('/') {
        return Err(format!("path `{}` does not start with /", p.path));
    }
    if p.timeout_seconds == 0 || p.timeout_seconds > MAX_TIMEOUT_SECONDS {
        return Err(format!(
            "timeout_seconds {} is not within 1..={MAX_TIMEOUT_SECONDS}",
            p.timeout_seconds
        ));
    }
    let scheme = match p.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let url = reqwest::Url::parse(&format!("{scheme}://127.0.0.1:{}{}", p.port, p.path))
        .map_err(|e| format!("path `{}`: {e}", p.path))?;
    let mut headers = Vec::with_capacity(p.headers.len());
    for h in &p.headers {
        let n = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("`{}` is not a header name", h.name))?;
        let v = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("header `{}` has a value that is not allowed", h.name))?;
        headers.push((n, v));
    }
    Ok(Ready {
        url,
        headers,
        timeout: Duration::from_secs(u64::from(p.timeout_seconds)),
    })
}

/// A TLS client config that accepts any server certificate, as the kubelet's HTTPS probes do;
/// only ever used towards the app on 127.0.0.1.
fn insecure_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyServerCert(provider.signature_verification_algorithms));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts every certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyServerCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Request;
    use axum::routing::get;
    use http_body_util::BodyExt;

    /// An app on 127.0.0.1 whose `/ok` answers 200, `/sick` 500, `/moved` 302 with a Location,
    /// `/slow` after 3 s, and `/needs-header` 200 only with `X-Probe: yes` and Host `app.local`.
    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/sick",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "sick") }),
            )
            .route(
                "/moved",
                get(|| async { (StatusCode::FOUND, [(http::header::LOCATION, "/elsewhere")]) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
            .route(
                "/needs-header",
                get(|req: Request| async move {
                    let h = req.headers();
                    if h.get("x-probe").is_some_and(|v| v == "yes")
                        && h.get(http::header::HOST).is_some_and(|v| v == "app.local")
                    {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    }
                }),
            )
    }

    async fn http_app() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app()).await });
        port
    }

    /// The same app behind TLS with a self-signed rcgen certificate.
    async fn https_app() -> u16 {
        let cert = rcgen::generate_simple_self_signed(vec!["app.local".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app());
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        port
    }

    fn probe(port: u16, path: &str, scheme: Scheme, timeout: u32) -> AppProbe {
        AppProbe {
            port,
            path: path.into(),
            scheme,
            headers: vec![],
            timeout_seconds: timeout,
        }
    }

    async fn status(p: &AppProbes, name: &str) -> (StatusCode, String) {
        let r = p.probe(name).await;
        let s = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn forwards_the_apps_status() {
        let port = http_app().await;
        let probes = AppProbes::new(BTreeMap::from([
            ("app/livez".to_string(), probe(port, "/ok", Scheme::Http, 1)),
            (
                "app/readyz".to_string(),
                probe(port, "/sick", Scheme::Http, 1),
            ),
            (
                "app/startupz".to_string(),
                probe(port, "/moved", Scheme::Http, 1),
            ),
        ]))
        .unwrap();
        assert_eq!(status(&probes, "app/livez").await.0, StatusCode::OK);
        assert_eq!(
            status(&probes, "app/readyz").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let moved = probes.probe("app/startupz").await;
        assert_eq!(moved.status(), StatusCode::FOUND);
        assert!(
            moved.headers().get(http::header::LOCATION).is_none(),
            "a Location would send the kubelet to the admin port"
        );
        assert_eq!(status(&probes, "app/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            status(&probes, "../etc/passwd").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn sends_the_probes_headers() {
        let port = http_app().await;
        let mut with = probe(port, "/needs-header", Scheme::Http, 1);
        with.headers = vec![
            ProbeHeader {
                name: "X-Probe".into(),
                value: "yes".into(),
            },
            ProbeHeader {
                name: "Host".into(),
                value: "app.local".into(),
            },
        ];
        let without = probe(port, "/needs-header", Scheme::Http, 1);
        let probes = AppProbes::new(BTreeMap::from([
            ("a/livez".to_string(), with),
            ("b/livez".to_string(), without),
        ]))
        .unwrap();
        assert_eq!(status(&probes, "a/livez").await.0, StatusCode::OK);
        assert_eq!(status(&probes, "b/livez").await.0, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_checks_like_the_kubelet() {
        let port = https_app().await;
        let probes = AppProbes::new(BTreeMap::from([
            (
                "app/livez".to_string(),
                probe(port, "/ok", Scheme::Https, 2),
            ),
            (
                "app/readyz".to_string(),
                probe(port, "/sick", Scheme::Https, 2),
            ),
            (
                "plain/livez".to_string(),
                probe(port, "/ok", Scheme::Http, 2),
            ),
        ]))
        .unwrap();
        assert_eq!(status(&probes, "app/livez").await.0, StatusCode::OK);
        assert_eq!(
            status(&probes, "app/readyz").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let (s, body) = status(&probes, "plain/livez").await;
        assert_ne!(
            s,
            StatusCode::OK,
            "plain HTTP to a TLS port must not pass: {body}"
        );
    }

    #[tokio::test]
    async fn unreachable_or_slow_apps_fail_the_probe() {
        let port = http_app().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let probes = AppProbes::new(BTreeMap::from([
            (
                "app/livez".to_string(),
                probe(port, "/slow", Scheme::Http, 1),
            ),
            (
                "app/readyz".to_string(),
                probe(closed, "/ok", Scheme::Http, 1),
            ),
        ]))
        .unwrap();
        let started = std::time::Instant::now();
        let (s, body) = status(&probes, "app/livez").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("timed out"), "{body}");
        assert!(started.elapsed() < Duration::from_millis(2500));
        let (s, body) = status(&probes, "app/readyz").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("connection failed"), "{body}");
    }

    #[test]
    fn the_env_format_is_checked() {
        assert!(AppProbes::from_json("{}").unwrap().is_empty());
        let ok = r#"{"app/livez":{"port":8080,"path":"/h","scheme":"HTTP","timeout_seconds":1}}"#;
        assert_eq!(AppProbes::from_json(ok).unwrap().len(), 1);
        for (bad, why) in [
            ("[]", "not a probe map"),
            (
                r#"{"a/livez":{"port":0,"path":"/","scheme":"HTTP","timeout_seconds":1}}"#,
                "port 0",
            ),
            (
                r#"{"a/livez":{"port":1,"path":"x","scheme":"HTTP","timeout_seconds":1}}"#,
                "does not start with /",
            ),
            (
                r#"{"a/livez":{"port":1,"path":"/","scheme":"FTP","timeout_seconds":1}}"#,
                "not a probe map",
            ),
            (
                r#"{"a/livez":{"port":1,"path":"/","scheme":"HTTP","timeout_seconds":0}}"#,
                "timeout_seconds 0",
            ),
            (
                r#"{"a/livez":{"port":1,"path":"/","scheme":"HTTP","timeout_seconds":1,"x":1}}"#,
                "unknown field",
            ),
            (
                r#"{"a/livez":{"port":1,"path":"/","scheme":"HTTP","timeout_seconds":1,"headers":[{"name":"a b","value":"v"}]}}"#,
                "not a header name",
            ),
        ] {
            let e = AppProbes::from_json(bad).unwrap_err();
            assert!(
                e.starts_with(APP_PROBES_ENV) && e.contains(why),
                "{bad}: {e}"
            );
        }
        let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_ENV_BYTES));
        assert!(
            AppProbes::from_json(&huge)
                .unwrap_err()
                .contains("longer than")
        );
    }
}
