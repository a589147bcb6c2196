//! The JWKS over HTTPS (rustls with the ring provider on both ends), trusting `jwt.ca_file`: an
//! IdP certificate from that CA is accepted, one from another CA is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use countersign::reject::Reject;
use countersign::token::JwtVerifier;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

use super::idp::{TestKey, bearer, good_claims, jwks_of, now_secs, settings};

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test IdP CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// Serves `jwks` at any path over TLS; returns the base URL and a hit counter.
async fn https_idp(pki: &Pki, jwks: Value) -> (String, Arc<AtomicUsize>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(pki.chain.clone(), pki.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let body = jwks.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let body = body.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), hits)
}

#[tokio::test]
async fn jwks_over_https_with_the_configured_ca() {
    let key = TestKey::ec("tls", "ES256");
    let server_pki = pki();
    let (base, hits) = https_idp(&server_pki, jwks_of(&[&key])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("idp-ca.pem");
    std::fs::write(&ca, &server_pki.ca_pem).unwrap();
    let token = key.mint(&good_claims(&base, now_secs()));

    let mut s = settings(Some(format!("{base}/jwks.json")), &base);
    s.ca_file = Some(ca);
    let v = JwtVerifier::new(&s).unwrap();
    assert!(v.verify(&bearer(&token), SystemTime::now()).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Another CA: the handshake fails, nothing is fetched, and the caller gets 503.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, pki().ca_pem).unwrap();
    s.ca_file = Some(other);
    let v = JwtVerifier::new(&s).unwrap();
    let d = v
        .verify(&bearer(&token), SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(d.reject, Reject::JwksUnavailable);
    assert!(
        d.detail.to_lowercase().contains("certificate"),
        "{}",
        d.detail
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Not a PEM file: a configuration error naming the field.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    s.ca_file = Some(junk);
    let e = JwtVerifier::new(&s).unwrap_err().to_string();
    assert!(e.starts_with("jwt.ca_file: "), "{e}");
}
