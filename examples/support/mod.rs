//! What the example programs that drive a real sidecar binary share (`soak_client`, `pgo_train`):
//! free ports, the sidecar as a child process, and the mTLS client configuration. Each example
//! compiles its own copy and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use countersign::pki::{DevCa, Issued};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The examples' error type.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The sidecar process; killed when dropped (an early return), and with this process.
pub struct Sidecar(std::process::Child);

impl Sidecar {
    /// Starts `binary run -c config --log-format json`, its output into `log`.
    pub fn spawn(binary: &Path, config: &Path, log: &Path) -> Result<Sidecar, Error> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(log)?;
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it makes the sidecar die with this process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(Sidecar(cmd.spawn()?))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Polls `http://{admin}/readyz` until it answers 200 (true), the process exits or `limit`
    /// passes (false).
    pub async fn wait_ready(&mut self, admin: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("http://{admin}/readyz")).await
                && r.status() == 200
            {
                return true;
            }
            if t0.elapsed() > limit || !matches!(self.0.try_wait(), Ok(None)) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it as an orchestrator would: SIGTERM, then up to `limit` for the exit (`None` when
    /// it did not exit in time; it is then killed when dropped).
    pub async fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A client TLS configuration trusting `ca`, presenting `id`, offering `alpn`.
pub fn client_tls(ca: &DevCa, id: &Issued, alpn: &[u8]) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der())?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(id.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(countersign::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}
