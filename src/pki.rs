//! A small development PKI on rcgen: a CA, server and client certificates, CRLs. Used by
//! `quickstart` and by the tests; never by the request path.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// A certificate authority that issues certificates and CRLs.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, Default)]
pub struct LeafSpec {
    /// Subject common name.
    pub cn: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// URI SANs (SPIFFE IDs).
    pub uris: Vec<String>,
    /// Usable as a TLS server certificate.
    pub server: bool,
    /// Usable as a TLS client certificate.
    pub client: bool,
    /// Validity start (default: an hour ago).
    pub not_before: Option<OffsetDateTime>,
    /// Validity end (default: a year from now).
    pub not_after: Option<OffsetDateTime>,
}

/// An issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The serial number (for CRLs).
    pub serial: SerialNumber,
}

fn random_serial() -> SerialNumber {
    let mut b = ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new())
        .map(|r| r.expose())
        .unwrap_or([7u8; 16]);
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

impl DevCa {
    /// A new self-signed CA named `cn`, valid for ten years.
    pub fn new(cn: &str) -> Result<DevCa, rcgen::Error> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "countersign dev");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.key_identifier_method = KeyIdMethod::Sha256;
        p.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        Ok(DevCa {
            issuer: CertifiedIssuer::self_signed(p, key)?,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issues a leaf certificate.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, rcgen::Error> {
        let mut p = CertificateParams::new(spec.dns.clone())?;
        p.distinguished_name
            .push(DnType::CommonName, spec.cn.as_str());
        for ip in &spec.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for u in &spec.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into()?));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.server {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let now = OffsetDateTime::now_utc();
        p.not_before = spec.not_before.unwrap_or(now - Duration::hours(1));
        p.not_after = spec.not_after.unwrap_or(now + Duration::days(365));
        let serial = random_serial();
        p.serial_number = Some(serial.clone());
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            serial,
        })
    }

    /// A server certificate for `localhost` and 127.0.0.1/::1 plus `extra` DNS names.
    pub fn server(&self, cn: &str, extra: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut dns = vec!["localhost".to_string()];
        dns.extend(extra.iter().map(|s| s.to_string()));
        self.issue(&LeafSpec {
            cn: cn.to_string(),
            dns,
            ips: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
            server: true,
            ..LeafSpec::default()
        })
    }

    /// A client certificate with subject CN `cn`.
    pub fn client(&self, cn: &str) -> Result<Issued, rcgen::Error> {
        self.issue(&LeafSpec {
            cn: cn.to_string(),
            client: true,
            ..LeafSpec::default()
        })
    }

    /// A CRL revoking `revoked`, valid until `next_update`, PEM.
    pub fn crl(
        &self,
        revoked: &[&Issued],
        next_update: OffsetDateTime,
    ) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let p = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update,
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|i| RevokedCertParams {
                    serial_number: i.serial.clone(),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer)?.pem()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_chain_rustls_accepts() {
        let ca = DevCa::new("test CA").unwrap();
        let leaf = ca.client("tyk-edge").unwrap();
        let id = crate::tls::PeerIdentity::from_chain(std::slice::from_ref(&leaf.der)).unwrap();
        assert_eq!(id.cn.as_deref(), Some("tyk-edge"));
        let crl = ca
            .crl(&[&leaf], OffsetDateTime::now_utc() + Duration::days(1))
            .unwrap();
        assert!(crl.contains("BEGIN X509 CRL"));
    }
}
