//! `countersign quickstart`: a working local demo from nothing. Makes a dev CA, a server
//! certificate and two client certificates (one allowed, one not), writes a config, starts the echo
//! backend and the sidecar, and prints commands to paste.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pki::DevCa;

/// `quickstart` options.
#[derive(Debug, Clone, clap::Args)]
pub struct QuickstartArgs {
    /// Where to write the certificates, keys and config.
    #[arg(long, default_value = "countersign-quickstart")]
    pub dir: PathBuf,
    /// The sidecar's port (a free one is used when it is taken).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// The admin port (a free one is used when it is taken).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Write the files and print the config, but start nothing.
    #[arg(long)]
    pub no_start: bool,
}

/// The files quickstart writes, relative to `--dir`.
pub struct Files {
    /// The directory.
    pub dir: PathBuf,
}

impl Files {
    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write(dir: &Path, name: &str, content: &str, private: bool) -> std::io::Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, content)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Writes the dev PKI into `dir`: ca.crt, server.crt/key, client.crt/key (CN tyk-edge, allowed),
/// intruder.crt/key (CN intruder, same CA, not allowed).
pub fn write_pki(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("generating certificates: {e}");
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    let ca = DevCa::new("countersign quickstart CA").map_err(err)?;
    let server = ca.server("countersign", &[]).map_err(err)?;
    let client = ca.client("tyk-edge").map_err(err)?;
    let intruder = ca.client("intruder").map_err(err)?;
    write(dir, "ca.crt", &ca.cert_pem(), false).map_err(io)?;
    write(dir, "server.crt", &server.cert_pem, false).map_err(io)?;
    write(dir, "server.key", &server.key_pem, true).map_err(io)?;
    write(dir, "client.crt", &client.cert_pem, false).map_err(io)?;
    write(dir, "client.key", &client.key_pem, true).map_err(io)?;
    write(dir, "intruder.crt", &intruder.cert_pem, false).map_err(io)?;
    write(dir, "intruder.key", &intruder.key_pem, true).map_err(io)?;
    // Signing keys: an HMAC secret (as Tyk's `secret`) and an RSA pair (as Tyk's `certificate_id`).
    let secret: String = {
        let b = ring::rand::generate::<[u8; 24]>(&ring::rand::SystemRandom::new())
            .map_err(|_| "the system random generator failed".to_string())?
            .expose();
        hex::encode(b)
    };
    write(dir, "hmac.secret", &format!("{secret}\n"), true).map_err(io)?;
    let rsa = crate::tools::keygen::generate("rsa-sha256", Some("tyk-rsa"), 2048, true)?;
    for (name, content, private) in &rsa.files {
        let text = String::from_utf8_lossy(content);
        write(dir, name, &text, *private).map_err(io)?;
    }
    let rsa_pub = rsa
        .files
        .iter()
        .find(|(_, _, private)| !private)
        .map(|(n, _, _)| n.clone())
        .ok_or("keygen made no public key")?;
    let keys = format!(
        "# The key registry: the gateway signs with these; countersign verifies by keyId.\nkeys:\n  - id: tyk-hmac\n    algorithm: hmac-sha256\n    secret_file: hmac.secret\n  - id: tyk-rsa\n    algorithm: rsa-sha256\n    public_key: {rsa_pub}\n"
    );
    write(dir, "keys.yaml", &keys, false).map_err(io)?;
    Ok(())
}

/// The demo config text.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"# countersign quickstart: mTLS + IP allow-list in front of a demo echo backend.
listen: {listen}
upstream: http://{upstream}
admin: {admin}
mode: enforce
log:
  access: all
tls:
  cert: server.crt
  key: server.key
  client_ca: ca.crt
  client_auth: required
  allow_clients:
    - subject_cn: tyk-edge
client_ip:
  from: peer
ip_allow: [127.0.0.0/8, "::1/128"]
keys: keys.yaml
signature:
  required: ["(request-target)", date]
  clock_skew: 300s
routes:
  - path: /signed
    require: [mtls, ip, signature]
  - path: /
    require: [mtls, ip]
"#
    )
}

async fn free_or(port: u16) -> std::io::Result<SocketAddr> {
    let want = SocketAddr::from(([127, 0, 0, 1], port));
    match tokio::net::TcpListener::bind(want).await {
        Ok(l) => l.local_addr(),
        Err(_) => tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?
            .local_addr(),
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: QuickstartArgs) -> ExitCode {
    if let Err(e) = write_pki(&args.dir) {
        eprintln!("quickstart: {e}");
        return ExitCode::from(1);
    }
    let stop = CancellationToken::new();
    let (listen, admin) = match (free_or(args.port).await, free_or(args.admin_port).await) {
        (Ok(l), Ok(a)) => (l, a),
        _ => {
            eprintln!("quickstart: no free port on 127.0.0.1");
            return ExitCode::from(1);
        }
    };
    let echo = match crate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), stop.clone()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("quickstart: cannot start the echo backend: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg_path = args.dir.join("countersign.yaml");
    if let Err(e) = std::fs::write(&cfg_path, config_text(listen, admin, echo)) {
        eprintln!("quickstart: {}: {e}", cfg_path.display());
        return ExitCode::from(1);
    }
    if args.no_start {
        println!("wrote {}", cfg_path.display());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&cfg_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let running = match crate::server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::from(1);
        }
    };
    print_instructions(&args.dir, running.addr, running.admin_addr, echo);
    let _ = tokio::signal::ctrl_c().await;
    println!("\nstopping");
    running.shutdown();
    running.wait().await;
    stop.cancel();
    ExitCode::SUCCESS
}

fn print_instructions(dir: &Path, addr: SocketAddr, admin: Option<SocketAddr>, echo: SocketAddr) {
    let d = dir.display();
    let port = addr.port();
    println!(
        r#"
countersign is listening on https://localhost:{port} in front of a demo echo backend on {echo}.
Files (CA, certificates, keys, config) are in {d}/. Paste these in another terminal:

  # allowed: a client certificate with CN tyk-edge -> 200 and the backend's echo,
  # including the identity headers countersign added (x-countersign-*)
  curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key https://localhost:{port}/hello

  # refused at the TLS handshake: no client certificate
  curl --cacert {d}/ca.crt https://localhost:{port}/hello

  # refused with 403 client_cert_denied: a valid certificate whose CN is not in tls.allow_clients
  curl --cacert {d}/ca.crt --cert {d}/intruder.crt --key {d}/intruder.key https://localhost:{port}/hello

  # forged identity headers are stripped before the backend sees them
  curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key -H 'X-Countersign-Key-Id: forged' https://localhost:{port}/hello
"#
    );
    let me = std::env::current_exe()
        .ok()
        .map(|p| {
            std::env::current_dir()
                .ok()
                .and_then(|cwd| p.strip_prefix(&cwd).ok().map(Path::to_path_buf))
                .unwrap_or(p)
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "countersign".to_string());
    let tls = format!("--cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key");
    println!(
        r#"  # /signed also needs a request signature, made as Tyk's request signing makes it (HMAC, UTC
  # Date, URL-escaped value). `sign` signs like the gateway; --send sends the request:
  {me} sign --scheme tyk --alg hmac-sha256 --key-id tyk-hmac --secret-file {d}/hmac.secret \
    --url 'https://localhost:{port}/signed/orders?page=2' --send {tls}

  # the same as a plain curl command (the signature stays valid for signature.clock_skew, 300 s)
  eval "$({me} sign --scheme tyk --alg hmac-sha256 --key-id tyk-hmac --secret-file {d}/hmac.secret \
    --url https://localhost:{port}/signed/orders --curl {tls})"

  # the same with Tyk's RSA signing
  {me} sign --scheme tyk --alg rsa-sha256 --key-id tyk-rsa --key-file {d}/tyk-rsa.key.pem \
    --url https://localhost:{port}/signed/orders --send {tls}

  # refused with 401 signature_invalid: signed with the wrong secret
  {me} sign --scheme tyk --alg hmac-sha256 --key-id tyk-hmac --secret not-the-secret \
    --url https://localhost:{port}/signed/orders --send {tls}

  # refused with 401 signature_missing: no signature at all
  curl {tls} https://localhost:{port}/signed/orders
"#
    );
    if let Some(a) = admin {
        println!(
            "  # metrics and health on the admin listener\n  curl http://{a}/metrics | grep countersign_requests_total\n"
        );
    }
    println!(
        "Check the config with: cargo run --release -- check -c {d}/countersign.yaml\nPress Ctrl-C to stop."
    );
}
