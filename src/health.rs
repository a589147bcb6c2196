//! `countersign health`: asks the admin listener's `/healthz`, for images without curl
//! (the Dockerfile's HEALTHCHECK).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How long the whole check may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// `countersign health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The admin listener's address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
}

/// Exit 0 when `GET /healthz` answers 200 within [`TIMEOUT`], 1 otherwise (with the reason on
/// stderr).
pub async fn run(args: HealthArgs) -> ExitCode {
    match check(args.admin, TIMEOUT).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("countersign health: {}: {why}", args.admin);
            ExitCode::from(1)
        }
    }
}

/// Sends `GET /healthz` to `admin`; `Ok` on a 200 within `timeout`.
pub async fn check(admin: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, get_healthz(admin)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f32())),
    }
}

async fn get_healthz(admin: SocketAddr) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("http handshake failed: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = http::Request::get("/healthz")
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"));
    driver.abort();
    let status = resp?.status();
    if status == http::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("/healthz answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    async fn serve(app: Router) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }

    #[tokio::test]
    async fn healthy_admin_passes() {
        let addr = serve(Router::new().route("/healthz", get(|| async { "ok" }))).await;
        assert_eq!(check(addr, TIMEOUT).await, Ok(()));
    }

    #[tokio::test]
    async fn unhealthy_admin_fails() {
        let addr = serve(Router::new().route(
            "/healthz",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "draining") }),
        ))
        .await;
        let e = check(addr, TIMEOUT).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
    }

    #[tokio::test]
    async fn nothing_listening_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = check(addr, TIMEOUT).await.unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }

    #[tokio::test]
    async fn silent_admin_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let e = check(addr, Duration::from_millis(300)).await.unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        hold.abort();
    }
}
