//! Test harness: rcgen PKI, the sidecar in-process on port 0, real backends on 127.0.0.1, real TLS
//! clients (reqwest on rustls, and a raw tokio-rustls client for byte-level requests).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use countersign::config::Config;
use countersign::pki::{DevCa, Issued, LeafSpec};
use countersign::server::Running;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A CA with the usual cast of client certificates, written to a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    pub server: Issued,
    /// CN tyk-edge, SAN dns gw.example.com, SAN uri spiffe://example.org/ns/edge/sa/tyk.
    pub client: Issued,
    /// CN intruder, same CA.
    pub intruder: Issued,
    /// CN revoked, same CA, listed in crl.pem.
    pub revoked: Issued,
    /// CN expired, same CA, expired yesterday.
    pub expired: Issued,
    /// CN future, same CA, valid from tomorrow.
    pub future: Issued,
    /// CN tyk-edge, from another CA.
    pub foreign: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        countersign::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new("test CA").unwrap();
        let server = ca.server("countersign", &[]).unwrap();
        let client = ca
            .issue(&LeafSpec {
                cn: "tyk-edge".into(),
                dns: vec!["gw.example.com".into()],
                uris: vec!["spiffe://example.org/ns/edge/sa/tyk".into()],
                client: true,
                ..Default::default()
            })
            .unwrap();
        let intruder = ca.client("intruder").unwrap();
        let revoked = ca.client("revoked").unwrap();
        let now = time::OffsetDateTime::now_utc();
        let expired = ca
            .issue(&LeafSpec {
                cn: "expired".into(),
                client: true,
                not_before: Some(now - time::Duration::days(30)),
                not_after: Some(now - time::Duration::days(1)),
                ..Default::default()
            })
            .unwrap();
        let future = ca
            .issue(&LeafSpec {
                cn: "future".into(),
                client: true,
                not_before: Some(now + time::Duration::days(1)),
                not_after: Some(now + time::Duration::days(30)),
                ..Default::default()
            })
            .unwrap();
        let other = DevCa::new("foreign CA").unwrap();
        let foreign = other.client("tyk-edge").unwrap();
        let crl = ca.crl(&[&revoked], now + time::Duration::days(7)).unwrap();
        let p = Pki {
            dir,
            ca,
            server,
            client,
            intruder,
            revoked,
            expired,
            future,
            foreign,
        };
        p.write("ca.crt", &p.ca.cert_pem());
        p.write("server.crt", &p.server.cert_pem);
        p.write("server.key", &p.server.key_pem);
        p.write("crl.pem", &crl);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

/// The standard mTLS block (client certificate required, the CRL loaded).
pub const TLS_MTLS: &str =
    "tls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  crl: [crl.pem]\n";

/// A running sidecar and where it listens.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub running: Option<Running>,
    pub config_path: PathBuf,
}

impl Sidecar {
    /// Starts a sidecar with `yaml` (which may use `{UP}` for the backend address) written as
    /// `countersign.yaml` in the PKI's directory. `listen` and `admin` default to 127.0.0.1:0.
    pub async fn start(pki: &Pki, upstream: SocketAddr, yaml: &str) -> Sidecar {
        let mut text = yaml.replace("{UP}", &upstream.to_string());
        if !text.contains("listen:") {
            text = format!("listen: 127.0.0.1:0\n{text}");
        }
        if !text.contains("admin:") {
            text = format!("admin: 127.0.0.1:0\n{text}");
        }
        let path = pki.path().join("countersign.yaml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{text}"));
        let running = countersign::server::start(config).await.unwrap();
        Sidecar {
            addr: running.addr,
            admin: running.admin_addr.unwrap(),
            running: Some(running),
            config_path: path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    pub fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.addr.port(), path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await;
        }
    }
}

/// The value of a Prometheus sample whose line starts with `prefix` (labels included), or 0.
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A rustls client config trusting the PKI's CA, with an optional client certificate.
pub fn client_tls(pki: &Pki, id: Option<&Issued>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(countersign::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match id {
        Some(i) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(i.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    cfg
}

/// An HTTP client for the sidecar: `localhost` resolves to its address.
pub fn client(pki: &Pki, sc: &Sidecar, id: Option<&Issued>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(pki, id, &[b"http/1.1"]))
        .resolve("localhost", sc.addr)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An HTTP/2 client for the sidecar.
pub fn client_h2(pki: &Pki, sc: &Sidecar, id: Option<&Issued>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(pki, id, &[b"h2"]))
        .resolve("localhost", sc.addr)
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A plain-HTTP client.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Opens a TLS connection to the sidecar (after writing `prefix`, e.g. a PROXY header).
pub async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    id: Option<&Issued>,
    prefix: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    if !prefix.is_empty() {
        tcp.write_all(prefix).await?;
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(pki, id, &[b"http/1.1"])));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Sends raw request bytes on a new TLS connection and reads the whole response (the request
/// should carry `Connection: close`). Err when the connection fails or is closed without a byte.
pub async fn raw_tls(
    pki: &Pki,
    addr: SocketAddr,
    id: Option<&Issued>,
    prefix: &[u8],
    request: &[u8],
) -> std::io::Result<String> {
    let mut s = tls_connect(pki, addr, id, prefix).await?;
    s.write_all(request).await?;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if out.is_empty() => return Err(e),
        Ok(Err(_)) => {}
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no response",
            ));
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a response",
        ));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Sends raw bytes over plain TCP and reads until close.
pub async fn raw_plain(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of a raw HTTP/1.1 response (content-length framed).
pub fn json_of(raw: &str) -> serde_json::Value {
    let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// The echo backend (countersign's own demo backend), stopped when the token is dropped.
pub struct Backend {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn echo() -> Backend {
    let stop = CancellationToken::new();
    let addr = countersign::echo::spawn("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    Backend { addr, stop }
}

/// A loopback address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// The header values the echo backend received.
pub fn echoed<'a>(v: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    v["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default()
}

/// Waits until `f` is true (polling), panicking after `secs`.
pub async fn eventually<F, Fut>(secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A streamed request body of `n` copies of `chunk` (chunked transfer, no length known up front).
pub fn stream_body(n: usize, chunk: bytes::Bytes) -> reqwest::Body {
    use futures_util::StreamExt;
    let s = futures_util::stream::iter(0..n)
        .map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone())));
    reqwest::Body::wrap(http_body_util::StreamBody::new(s))
}
