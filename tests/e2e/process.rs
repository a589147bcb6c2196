//! The real binary as a child process: exit codes, `check`, SIGTERM drain, memory while streaming,
//! the connection limit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;

use crate::support::*;

fn spawn_child(pki: &Pki, yaml: &str) -> SidecarProcess {
    SidecarProcess::start(pki, yaml, |_| {})
}

fn check(dir: &std::path::Path, yaml: &str) -> (i32, String, String) {
    let path = dir.join("check.yaml");
    std::fs::write(&path, yaml).unwrap();
    let o = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn check_reports_every_problem_as_path_message() {
    let pki = Pki::new();
    let ok = child_yaml(
        "127.0.0.1:8080".parse().unwrap(),
        "ip_allow: [127.0.0.0/8]\n",
    );
    let (code, out, err) = check(pki.path(), &ok);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid") && out.contains("certificates:") && out.contains("server"),
        "{out}"
    );

    let cases: &[(&str, &str)] = &[
        (
            "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:1\nroutes:\n  - path: /\n    require: []\n    requires: [ip]\n",
            "routes[0]: unknown field `requires`",
        ),
        (
            "upstream: http://127.0.0.1:1\nip_allow: [10.0.0.0/33]\nroutes:\n  - path: /\n    require: [ip]\n",
            "check.yaml: ip_allow[0]:",
        ),
        (
            "upstream: http://127.0.0.1:1\nroutes:\n  - path: /\n    require: [ip]\n",
            "ip_allow is empty",
        ),
        (
            "upstream: http://192.0.2.10:80\nroutes:\n  - path: /\n    require: []\n",
            "not a loopback address",
        ),
        (
            "upstream: http://127.0.0.1:1\ntls:\n  cert: missing.crt\n  key: server.key\nroutes:\n  - path: /\n    require: []\n",
            "missing.crt: file not found",
        ),
    ];
    for (yaml, want) in cases {
        let (code, out, err) = check(pki.path(), yaml);
        assert_eq!(code, 2, "{yaml}\n{out}{err}");
        assert!(err.contains(want), "want `{want}` in:\n{err}");
    }
    // A key that does not match the certificate.
    let other = pki.ca.client("someone").unwrap();
    pki.write("other.key", &other.key_pem);
    let (code, _, err) = check(
        pki.path(),
        "upstream: http://127.0.0.1:1\ntls:\n  cert: server.crt\n  key: other.key\nroutes:\n  - path: /\n    require: []\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("other.key: the private key does not match the certificate"),
        "{err}"
    );
}

#[test]
fn run_exits_2_on_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "upstream: nope\nroutes: []\n").unwrap();
    let o = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.yaml: upstream"));
}

async fn slow_backend(delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"done"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    a
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let pki = Pki::new();
    let up = slow_backend(Duration::from_millis(1500)).await;
    let mut c = spawn_child(&pki, &child_yaml(up, "shutdown_timeout: 20s\n"));
    let http = c.client(&pki, Duration::from_secs(60));
    let url = c.url("/slow");
    let mut inflight = Vec::new();
    for _ in 0..20 {
        let http = http.clone();
        let url = url.clone();
        inflight.push(tokio::spawn(async move {
            http.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    unsafe {
        libc::kill(c.child.id() as i32, libc::SIGTERM);
    }
    // Readiness turns 503 while draining.
    let ready = format!("http://{}/readyz", c.admin);
    let mut saw_503 = false;
    for _ in 0..40 {
        match plain_client().get(&ready).send().await {
            Ok(r) if r.status() == 503 => {
                saw_503 = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    assert!(saw_503, "/readyz should say 503 while draining");
    // New connections are refused.
    assert!(
        tokio::net::TcpStream::connect(c.addr).await.is_err(),
        "the listener is closed during the drain"
    );
    for h in inflight {
        assert_eq!(h.await.unwrap().expect("in-flight request completes"), 200);
    }
    let status = tokio::task::spawn_blocking(move || c.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_256_mib_upload_streams_in_constant_memory() {
    let pki = Pki::new();
    let be = echo().await;
    let c = spawn_child(&pki, &child_yaml(be.addr, ""));
    let http = c.client(&pki, Duration::from_secs(60));
    let r = http
        .post(c.url("/upload"))
        .body(stream_body(256, Bytes::from(vec![0x5au8; 1 << 20])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["body_bytes"], 256u64 << 20);
    let hwm = vm_hwm_kib(c.child.id());
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB: the body was buffered");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_open_ones_still_served() {
    let pki = Pki::new();
    let be = echo().await;
    let c = spawn_child(
        &pki,
        &child_yaml(be.addr, "limits:\n  max_connections: 3\n"),
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tls_connect(&pki, c.addr, Some(&pki.client), b"")
                .await
                .unwrap(),
        );
    }
    let over = raw_tls(
        &pki,
        c.addr,
        Some(&pki.client),
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(over.is_err(), "a fourth connection must be refused");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = &mut held[0];
    s.write_all(b"GET /still HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 200);
    let m = plain_client()
        .get(format!("http://{}/metrics", c.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample(&m, "countersign_connections_total{result=\"over_limit\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn quickstart_serves_what_it_prints_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["quickstart", "--port", "0", "--admin-port", "0", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let done = line.starts_with("Press Ctrl-C");
            lines.push(line);
            if done {
                let _ = tx.send(lines.clone());
            }
        }
    });
    let lines = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("quickstart prints its instructions");
    let text = lines.join("\n");
    let port: u16 = text
        .split("https://localhost:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the instructions");
    assert!(text.contains("curl --cacert"), "{text}");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let mk = |id: Option<(&str, &str)>| {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(read("ca.crt").as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(countersign::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = match id {
            Some((c, k)) => {
                let certs = rustls_pki_types::CertificateDer::pem_slice_iter(read(c).as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
                let key =
                    rustls_pki_types::PrivateKeyDer::from_pem_slice(read(k).as_bytes()).unwrap();
                b.with_client_auth_cert(certs, key).unwrap()
            }
            None => b.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(cfg)
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{port}/hello");
    let r = mk(Some(("client.crt", "client.key")))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed(&v, "x-countersign-cert-subject"), ["CN=tyk-edge"]);
    assert!(
        mk(None).get(&url).send().await.is_err(),
        "no certificate: refused at the handshake"
    );
    let r = mk(Some(("intruder.crt", "intruder.key")))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The signed examples it prints: HMAC and RSA accepted, a wrong secret refused.
    assert!(
        text.contains("sign --scheme tyk --alg hmac-sha256"),
        "{text}"
    );
    let d = dir.path().display().to_string();
    let sign = |extra: &[&str]| {
        let mut args: Vec<String> = ["sign", "--scheme", "tyk", "--url"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("https://localhost:{port}/signed/orders"));
        args.extend(extra.iter().map(|s| s.to_string()));
        for (flag, file) in [
            ("--cacert", "ca.crt"),
            ("--cert", "client.crt"),
            ("--key", "client.key"),
        ] {
            args.push(flag.to_string());
            args.push(format!("{d}/{file}"));
        }
        args.push("--send".to_string());
        Command::new(BIN).args(&args).output().unwrap()
    };
    let hmac_file = format!("{d}/hmac.secret");
    let rsa_file = format!("{d}/tyk-rsa.key.pem");
    let ok = sign(&[
        "--alg",
        "hmac-sha256",
        "--key-id",
        "tyk-hmac",
        "--secret-file",
        &hmac_file,
    ]);
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("HTTP 200"),
        "{ok:?}"
    );
    let ok = sign(&[
        "--alg",
        "rsa-sha256",
        "--key-id",
        "tyk-rsa",
        "--key-file",
        &rsa_file,
    ]);
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("HTTP 200"),
        "{ok:?}"
    );
    let bad = sign(&[
        "--alg",
        "hmac-sha256",
        "--key-id",
        "tyk-hmac",
        "--secret",
        "not-the-secret",
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("signature_invalid"),
        "{bad:?}"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
