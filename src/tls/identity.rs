//! Who the client certificate says the caller is, read once per connection from the verified chain.

use http::HeaderValue;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::config::AllowClient;

/// The verified client certificate's identity, with its backend headers ready to clone.
#[derive(Debug)]
pub struct PeerIdentity {
    /// The end-entity certificate.
    pub cert: CertificateDer<'static>,
    /// Intermediates the client sent.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// SHA-256 of the end-entity DER.
    pub sha256: [u8; 32],
    /// The subject, RFC 4514 style.
    pub subject: String,
    /// The subject's common name.
    pub cn: Option<String>,
    /// DNS subject alternative names.
    pub san_dns: Vec<String>,
    /// URI subject alternative names (SPIFFE IDs).
    pub san_uri: Vec<String>,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// `X-Countersign-Cert-Subject`.
    pub subject_header: HeaderValue,
    /// `X-Countersign-Cert-Sha256` (hex).
    pub sha256_header: HeaderValue,
    /// `X-Countersign-Cert-Uri` (the first URI SAN).
    pub uri_header: Option<HeaderValue>,
}

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No certificate at all.
    #[error("no certificate")]
    Empty,
    /// Not parseable X.509.
    #[error("not an X.509 certificate: {0}")]
    Parse(String),
}

/// A header value from arbitrary text: control characters and non-ASCII escaped as `\xNN`.
fn header_text(s: &str) -> HeaderValue {
    if let Ok(v) = HeaderValue::from_str(s) {
        return v;
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

impl PeerIdentity {
    /// Reads the identity of `chain[0]`; the rest are intermediates.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<PeerIdentity, IdentityError> {
        let (ee, rest) = chain.split_first().ok_or(IdentityError::Empty)?;
        let (_, x) = X509Certificate::from_der(ee.as_ref())
            .map_err(|e| IdentityError::Parse(e.to_string()))?;
        let subject = x.subject().to_string();
        let cn = x
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_string);
        let mut san_dns = Vec::new();
        let mut san_uri = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => san_dns.push(d.to_string()),
                    GeneralName::URI(u) => san_uri.push(u.to_string()),
                    _ => {}
                }
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, ee.as_ref());
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        let hex = hex::encode(sha256);
        Ok(PeerIdentity {
            cert: ee.clone().into_owned(),
            intermediates: rest.iter().map(|c| c.clone().into_owned()).collect(),
            sha256,
            subject_header: header_text(&subject),
            sha256_header: HeaderValue::from_str(&hex).expect("hex is a valid header value"),
            uri_header: san_uri.first().map(|u| header_text(u)),
            subject,
            cn,
            san_dns,
            san_uri,
            not_after: x.validity().not_after.timestamp(),
        })
    }

    /// The SHA-256 in hex, for logs.
    pub fn sha256_hex(&self) -> &str {
        self.sha256_header.to_str().unwrap_or("")
    }

    /// True when every field the entry names matches this identity.
    pub fn matches(&self, a: &AllowClient) -> bool {
        use subtle::ConstantTimeEq;
        a.subject_cn
            .as_ref()
            .is_none_or(|cn| self.cn.as_deref() == Some(cn.as_str()))
            && a.san_dns
                .as_ref()
                .is_none_or(|d| self.san_dns.iter().any(|x| x.eq_ignore_ascii_case(d)))
            && a.san_uri
                .as_ref()
                .is_none_or(|u| self.san_uri.iter().any(|x| x == u))
            && a.sha256
                .as_ref()
                .is_none_or(|h| bool::from(self.sha256.ct_eq(h)))
    }

    /// True when `list` is empty or an entry matches.
    pub fn allowed_by(&self, list: &[AllowClient]) -> bool {
        list.is_empty() || list.iter().any(|a| self.matches(a))
    }
}
