//! Test harness: rcgen PKI, the sidecar in-process on port 0, real backends on 127.0.0.1, real TLS
//! clients (reqwest on rustls, and a raw tokio-rustls client for byte-level requests).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

    /// Publishes a new `crl.pem` revoking `extra` besides the standard revoked client.
    pub fn revoke(&self, extra: &Issued) {
        let crl = self
            .ca
            .crl(
                &[&self.revoked, extra],
                time::OffsetDateTime::now_utc() + time::Duration::days(7),
            )
            .unwrap();
        self.write("crl.pem", &crl);
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

    /// Rewrites the sidecar's config file with `from` replaced by `to` (the reload follows).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        assert!(text.contains(from), "{from:?} not in the config:\n{text}");
        std::fs::write(&self.config_path, text.replace(from, to)).unwrap();
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

/// An echo backend of our own that counts the requests it served, so a test can prove that a
/// refused request never reached it. Answers like `countersign::echo` (method, raw target, headers,
/// body size and SHA-256) plus the body itself as text.
pub struct Counting {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    checked: AtomicUsize,
    stop: CancellationToken,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn counting_echo_handler(
    hits: Arc<AtomicUsize>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        let entry = headers
            .entry(k.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(a) = entry {
            a.push(String::from_utf8_lossy(v.as_bytes()).into_owned().into());
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let out = serde_json::json!({
        "method": parts.method.as_str(),
        "target": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_bytes": body.len(),
    });
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        serde_json::to_vec(&out).unwrap(),
    )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Starts a counting echo backend on 127.0.0.1.
pub async fn counting_echo() -> Counting {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (h, s) = (hits.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = s.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req| counting_echo_handler(h.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    });
    Counting {
        addr,
        hits,
        checked: AtomicUsize::new(0),
        stop,
    }
}

impl Counting {
    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Asserts `r` was forwarded: 200, and exactly one more request reached the backend since the
    /// last check. Returns what the backend received.
    #[track_caller]
    pub fn allowed<'a>(&self, r: &'a Reply, what: &str) -> &'a serde_json::Value {
        assert_eq!(r.status, 200, "{what}: expected 200, got {r:?}");
        let before = self.checked.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            self.hits(),
            before + 1,
            "{what}: the backend should have served exactly one more request"
        );
        &r.body
    }

    /// Asserts `r` was refused with `status` and `code`, and the backend saw nothing of it.
    #[track_caller]
    pub fn refused(&self, r: &Reply, status: u16, code: &str, what: &str) {
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{what}: expected {status} {code}, got {r:?}"
        );
        assert_eq!(
            self.hits(),
            self.checked.load(Ordering::SeqCst),
            "{what}: a refused request reached the backend"
        );
    }

    /// Accepts the current count as checked (after requests whose outcome is not asserted).
    pub fn sync(&self) {
        self.checked.store(self.hits(), Ordering::SeqCst);
    }
}

/// A response: status, JSON body (Null when not JSON) and headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The refusal code (`error` of the JSON body), or "".
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// The values the echo backend received for `name`.
    pub fn echoed(&self, name: &str) -> Vec<&str> {
        echoed(&self.body, name)
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    async fn from_reqwest(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let bytes = r.bytes().await.unwrap();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            headers,
        }
    }
}

/// Sends a reqwest request and reads the reply.
pub async fn reply(rb: reqwest::RequestBuilder) -> Reply {
    Reply::from_reqwest(rb.send().await.unwrap()).await
}

/// Reads one HTTP/1.1 response (Content-Length framed, or until close) from `s`.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a response head",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = buf[head_end..].to_vec();
        match length {
            Some(n) => {
                while body.len() < n {
                    let r = s.read(&mut chunk).await?;
                    if r == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..r]);
                }
            }
            None => {
                s.read_to_end(&mut body).await?;
            }
        }
        Ok(Reply {
            status: status_of(&head),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            headers,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))?
}

/// Sends raw request bytes on a new TLS connection and reads exactly one response; the request
/// need not carry `Connection: close`.
pub async fn exchange(pki: &Pki, addr: SocketAddr, id: Option<&Issued>, request: &[u8]) -> Reply {
    let mut s = tls_connect(pki, addr, id, b"").await.unwrap();
    s.write_all(request).await.unwrap();
    read_response(&mut s).await.unwrap()
}

/// `countersign sign` in-process: the arguments as on the command line (after `sign`).
pub fn sign(argv: &[&str]) -> countersign::tools::sign::Signed {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: countersign::tools::sign::SignArgs,
    }
    let cli =
        <Cli as clap::Parser>::try_parse_from(std::iter::once("sign").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("sign {argv:?}: {e}"));
    countersign::tools::sign::build(&cli.args).unwrap_or_else(|e| panic!("sign {argv:?}: {e}"))
}

/// A reqwest request carrying a signed request's method, URL, headers and body.
pub fn signed_request(
    c: &reqwest::Client,
    s: &countersign::tools::sign::Signed,
) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(s.method.as_bytes()).unwrap();
    let mut rb = c.request(method, &s.url);
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    if !s.body.is_empty() {
        rb = rb.body(s.body.clone());
    }
    rb
}

/// Sends a signed request.
pub async fn send(c: &reqwest::Client, s: &countersign::tools::sign::Signed) -> Reply {
    reply(signed_request(c, s)).await
}

/// The same signed request with one header's value replaced (or added).
pub fn with_header(
    s: &countersign::tools::sign::Signed,
    name: &str,
    value: &str,
) -> countersign::tools::sign::Signed {
    let mut t = s.clone();
    t.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    t.headers.push((name.to_string(), value.to_string()));
    t
}

/// The value of a header of a signed request.
pub fn header_of<'a>(s: &'a countersign::tools::sign::Signed, name: &str) -> &'a str {
    s.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A file in the repository's test fixtures.
pub fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

/// Access-log lines of requests whose X-Request-Id starts with `chk-`, captured in memory (the
/// subscriber is installed on first use) so a test can read the refusal's `detail`.
static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.windows(17).any(|w| w == b"\"request_id\":\"chk") {
            CAPTURED.lock().unwrap().extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once) and returns a fresh request id to send.
pub fn traced_id() -> String {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(|| CaptureWriter)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() == "countersign::access"
            }));
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    });
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "chk-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The `detail` of the last access line for `request_id` (waiting up to 2 s for one).
pub async fn detail_of(request_id: &str) -> String {
    access_line(request_id).await["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The last access line for `request_id` (waiting up to 2 s for one).
pub async fn access_line(request_id: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(line) = captured_line(request_id) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access line for {request_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last access line for `request_id` captured so far, if any.
pub fn captured_line(request_id: &str) -> Option<serde_json::Value> {
    let needle = format!("\"request_id\":\"{request_id}\"");
    let text = CAPTURED.lock().unwrap();
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().rfind(|l| l.contains(&needle))?;
    Some(serde_json::from_str(line).unwrap())
}

/// Clients hammering the sidecar until stopped; every non-200 is recorded.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Makes the next request of a load worker (a fresh signature each time, say).
pub type MakeRequest = Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>;

impl Load {
    /// `workers` clients sending GET `url` with `c`.
    pub fn start(c: reqwest::Client, url: String, workers: usize) -> Load {
        Load::with(workers, Arc::new(move || c.get(&url)))
    }

    /// `workers` clients sending what `make` builds.
    pub fn with(workers: usize, make: MakeRequest) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (make, stop, ok, failures) =
                    (make.clone(), stop.clone(), ok.clone(), failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match make().send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("status {status} {body}"));
                            }
                            Err(e) => failures.lock().unwrap().push(format!("error {e:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns the successes and the failures.
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}

/// A value of `countersign_reloads_total` (process-wide: compare before and after).
pub async fn reloads(sc: &Sidecar, what: &str, result: &str) -> f64 {
    sample(
        &sc.metrics().await,
        &format!("countersign_reloads_total{{what=\"{what}\",result=\"{result}\"}}"),
    )
}

/// The countersign binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_countersign");

/// A config for a child sidecar: ephemeral ports, `up` as the upstream, mTLS required, access log
/// off, and `extra` lines before the routes.
pub fn child_yaml(up: SocketAddr, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstream: http://{up}\nlog:\n  access: off\n{TLS_MTLS}{extra}routes:\n  - path: /\n    require: [mtls]\n"
    )
}

/// The real binary running `countersign run` as a child process; killed when dropped.
pub struct SidecarProcess {
    /// The process.
    pub child: std::process::Child,
    /// Its main listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SidecarProcess {
    /// Writes `yaml` into the PKI's directory and starts the binary on it with JSON logs on a
    /// pipe; `setup` may adjust the command first (limits). Returns once the `countersign started`
    /// line names the bound addresses (at most 20 s).
    pub fn start(pki: &Pki, yaml: &str, setup: impl FnOnce(&mut std::process::Command)) -> Self {
        use std::io::BufRead;
        let path = pki.path().join("child.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["run", "-c"])
            .arg(&path)
            .args(["--log-format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        setup(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps reading to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if !sent && line.contains("countersign started") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = tx.send((
                        v["listen"].as_str().unwrap().to_string(),
                        v["admin"].as_str().unwrap().to_string(),
                    ));
                    sent = true;
                }
            }
        });
        let (l, a) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the child starts");
        SidecarProcess {
            child,
            addr: l.parse().unwrap(),
            admin: a.parse().unwrap(),
        }
    }

    /// An HTTP/1.1 client with the PKI's client certificate, resolving `localhost` to the child.
    pub fn client(&self, pki: &Pki, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls(pki, Some(&pki.client), &[b"http/1.1"]))
            .resolve("localhost", self.addr)
            .timeout(timeout)
            .build()
            .unwrap()
    }

    /// `https://localhost:PORT{path}` for the child's listener.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}
