//! Step 2: TLS. Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN h2 and
//! http/1.1) and the client-certificate verifier (CA bundle, CRLs, validity); reads the peer's
//! identity after the handshake. Next: `serve.rs`.

pub mod identity;

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::*;

use crate::config::{ClientAuth, ConfigError, CrlCheck, Problems, TlsSettings, read_error};
pub use identity::PeerIdentity;

/// The crypto provider everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process default provider (for reqwest and anything else that asks).
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One loaded certificate's or CRL's expiry, for metrics and `check`.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// Metric label: `server`, `client_ca:<CN>`, `crl:<file>`.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// `notAfter` (CRLs: `nextUpdate`), Unix seconds.
    pub unix: i64,
}

/// Everything TLS needs at runtime, rebuilt as a whole on reload.
pub struct TlsState {
    /// Terminates TLS on the listener (absent on a plain listener).
    pub acceptor: Option<TlsAcceptor>,
    /// Verifies client certificates (at the handshake, and passed by a proxy in a header).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Whether the handshake demands a certificate.
    pub client_auth: ClientAuth,
    /// Expiry of every certificate and CRL loaded.
    pub expiries: Vec<Expiry>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("terminates", &self.acceptor.is_some())
            .field("verifies_clients", &self.client_verifier.is_some())
            .finish()
    }
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| read_error(&e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(
            "no certificate found (expected PEM `-----BEGIN CERTIFICATE-----`)".to_string(),
        );
    }
    Ok(certs)
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1 PEM).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| read_error(&e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no private key found (expected a PEM block of type PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_string()
        }
        other => format!("not a PEM private key: {other}"),
    })
}

/// Reads a CRL (PEM or DER) and its next update.
fn load_crl(path: &Path) -> Result<(CertificateRevocationListDer<'static>, Option<i64>), String> {
    let bytes = std::fs::read(path).map_err(|e| read_error(&e))?;
    let der = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(&bytes)
            .map_err(|e| format!("not a PEM CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(bytes)
    };
    let (_, crl) =
        CertificateRevocationList::from_der(der.as_ref()).map_err(|e| format!("not a CRL: {e}"))?;
    let next = crl.next_update().map(|t| t.timestamp());
    Ok((der, next))
}

fn cert_info(der: &CertificateDer<'_>) -> Option<(String, i64)> {
    let (_, x) = X509Certificate::from_der(der.as_ref()).ok()?;
    let cn = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| x.subject().to_string());
    Some((cn, x.validity().not_after.timestamp()))
}

/// Builds the TLS state; every problem names the file (and the config field) it came from.
pub fn build(settings: &TlsSettings) -> Result<TlsState, ConfigError> {
    let mut p = Problems::new("tls");
    let provider = provider();
    let mut expiries = Vec::new();

    let verifier = match &settings.client_ca {
        None => None,
        Some(ca_path) => build_verifier(settings, ca_path, &provider, &mut expiries, &mut p),
    };

    let acceptor = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert).map_err(|m| p.file(cert, m)).ok();
            let key_der = load_key(key).map_err(|m| p.file(key, m)).ok();
            if let Some(leaf) = certs.as_ref().and_then(|c| c.first())
                && let Some((_, not_after)) = cert_info(leaf)
            {
                expiries.push(Expiry {
                    name: "server".to_string(),
                    file: cert.display().to_string(),
                    unix: not_after,
                });
            }
            match (certs, key_der) {
                (Some(certs), Some(key_der)) => {
                    server_config(certs, key_der, verifier.clone(), &provider)
                        .map_err(|m| p.file(key, m))
                        .ok()
                        .map(|c| TlsAcceptor::from(Arc::new(c)))
                }
                _ => None,
            }
        }
        _ => None,
    };

    p.finish(TlsState {
        acceptor,
        client_verifier: verifier,
        client_auth: settings.client_auth,
        expiries,
    })
}

fn build_verifier(
    settings: &TlsSettings,
    ca_path: &Path,
    provider: &Arc<CryptoProvider>,
    expiries: &mut Vec<Expiry>,
    p: &mut Problems,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let cas = match load_certs(ca_path) {
        Ok(c) => c,
        Err(m) => {
            p.file(ca_path, m);
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.iter().enumerate() {
        if let Err(e) = roots.add(ca.clone()) {
            p.file(
                ca_path,
                format!("certificate {}: not usable as a CA: {e}", i + 1),
            );
        }
        if let Some((cn, not_after)) = cert_info(ca) {
            expiries.push(Expiry {
                name: format!("client_ca:{cn}"),
                file: ca_path.display().to_string(),
                unix: not_after,
            });
        }
    }
    let mut crls = Vec::with_capacity(settings.crl.len());
    for path in &settings.crl {
        match load_crl(path) {
            Ok((der, next)) => {
                if let Some(next) = next {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    expiries.push(Expiry {
                        name: format!("crl:{name}"),
                        file: path.display().to_string(),
                        unix: next,
                    });
                }
                crls.push(der);
            }
            Err(m) => p.file(path, m),
        }
    }
    if !p.is_empty() {
        return None;
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls);
    if settings.client_auth == ClientAuth::Optional {
        b = b.allow_unauthenticated();
    }
    if settings.crl_check == CrlCheck::EndEntity {
        b = b.only_check_end_entity_revocation();
    }
    if settings.crl_enforce_expiry {
        b = b.enforce_revocation_expiration();
    }
    match b.build() {
        Ok(v) => Some(v),
        Err(e) => {
            p.file(ca_path, format!("cannot build the client verifier: {e}"));
            None
        }
    }
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate (tls.cert / tls.key)".to_string()
        }
        other => format!("cannot use this certificate and key: {other}"),
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(4096);
    if let Ok(t) = rustls::crypto::ring::Ticketer::new() {
        cfg.ticketer = t;
    }
    Ok(cfg)
}

/// Verifies a certificate chain passed by a proxy (RFC 9440), as the handshake would.
pub fn verify_chain(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let (ee, rest) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier
        .verify_client_cert(ee, rest, UnixTime::now())
        .map(|_| ())
}

/// Decodes RFC 9440 `Client-Cert` (a structured-field byte sequence) and `Client-Cert-Chain`.
pub fn certs_from_headers(
    cert: &[u8],
    chain: Option<&[u8]>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let item: sfv::Item = sfv::Parser::new(cert)
        .parse()
        .map_err(|e| format!("Client-Cert is not a structured-field byte sequence: {e}"))?;
    let der = item
        .bare_item
        .as_byte_sequence()
        .ok_or("Client-Cert is not a byte sequence (:base64:)")?
        .to_vec();
    let mut out = vec![CertificateDer::from(der)];
    if let Some(chain) = chain {
        let list: sfv::List = sfv::Parser::new(chain)
            .parse()
            .map_err(|e| format!("Client-Cert-Chain is not a structured-field list: {e}"))?;
        for entry in list.iter().take(8) {
            match entry {
                sfv::ListEntry::Item(i) => match i.bare_item.as_byte_sequence() {
                    Some(b) => out.push(CertificateDer::from(b.to_vec())),
                    None => {
                        return Err("Client-Cert-Chain has a member that is not a byte sequence"
                            .to_string());
                    }
                },
                sfv::ListEntry::InnerList(_) => {
                    return Err("Client-Cert-Chain has an inner list".to_string());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_key_reads_a_key_and_names_what_is_missing_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::DevCa::new("test ca").unwrap();
        let leaf = ca.server("localhost", &[]).unwrap();
        let key = dir.path().join("tls.key");
        std::fs::write(&key, &leaf.key_pem).unwrap();
        assert!(load_key(&key).is_ok());

        // A certificate where the key should be: the message says what was expected.
        let cert_only = dir.path().join("cert-as-key.pem");
        std::fs::write(&cert_only, &leaf.cert_pem).unwrap();
        let e = load_key(&cert_only).unwrap_err();
        assert!(e.starts_with("no private key found"), "{e}");
        assert!(e.contains("PRIVATE KEY"), "{e}");

        let missing = dir.path().join("absent.key");
        assert!(load_key(&missing).is_err());
    }
}
