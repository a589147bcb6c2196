//! A demo backend that answers every request with what it received, as JSON: method, the raw
//! request target, the headers (countersign's identity headers among them), and the body's size
//! and SHA-256, read as a stream so large uploads take no memory. Used by `quickstart` and tests.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `addr` and serves until `stop` is cancelled; returns the bound address.
pub async fn spawn(addr: SocketAddr, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(echo))
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                    ctx.update(d);
                }
            }
            Err(_) => break,
        }
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        let entry = headers
            .entry(k.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(a) = entry {
            a.push(serde_json::Value::String(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    let out = serde_json::json!({
        "method": parts.method.as_str(),
        "target": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": n,
        "body_sha256": hex::encode(ctx.finish()),
    });
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&out).unwrap_or_default(),
    )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
