//! `countersign keygen --alg ALG [--id ID] [--out DIR]`: an HMAC secret, an API key with its
//! SHA-256, or a key pair in PEM, each with the `keys.yaml` entry that registers it.
//!
//! ring cannot generate RSA keys; RSA key pairs come from the pure-Rust `rsa` crate. EC and
//! Ed25519 key pairs come from rcgen (on ring). With `--out`, private files are written mode 0600
//! and existing files are never overwritten.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use super::{write_private, write_public};
use crate::registry::{Algorithm, KeyType};

/// Arguments of `countersign keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// hmac-sha256 (-sha384, -sha512, -sha1), rsa-sha256, rsa-v1_5-sha256, rsa-sha512,
    /// rsa-pss-sha512, ecdsa-p256-sha256, ecdsa-p384-sha384, ed25519, or api-key.
    #[arg(long, value_name = "ALG")]
    pub alg: String,
    /// The key id for the registry entry (default: derived from the algorithm).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Write the files into this directory instead of printing the secret parts.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 2048)]
    pub bits: usize,
}

/// What keygen made, ready to print or write.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The key id.
    pub id: String,
    /// Files: name, contents, private.
    pub files: Vec<(String, Vec<u8>, bool)>,
    /// The registry entry (YAML list item).
    pub entry: String,
    /// Lines for the operator (what goes where).
    pub notes: Vec<String>,
}

fn random(n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(b)
}

fn env_name(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    s.push_str("_SECRET");
    s
}

/// Makes the key material for `alg` (`api-key` or a registry algorithm name).
pub fn generate(
    alg: &str,
    id: Option<&str>,
    bits: usize,
    to_files: bool,
) -> Result<Generated, String> {
    if alg.eq_ignore_ascii_case("api-key") {
        let id = id.unwrap_or("api-client").to_string();
        let key = format!("csk_{}", URL_SAFE_NO_PAD.encode(random(32)?));
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()));
        let entry = format!("  - id: {id}\n    api_key_sha256: {sha}\n");
        let mut notes = vec![
            "give the API key to the client (it sends it in X-Api-Key); only its SHA-256 goes into keys.yaml".to_string(),
        ];
        let mut files = Vec::new();
        if to_files {
            files.push((format!("{id}.apikey"), key.into_bytes(), true));
        } else {
            notes.insert(0, format!("API key: {key}"));
        }
        return Ok(Generated {
            id,
            files,
            entry,
            notes,
        });
    }
    let algorithm = Algorithm::from_name(alg).ok_or_else(|| {
        format!("`{alg}` is not an algorithm (hmac-sha256, rsa-sha256, rsa-pss-sha512, ecdsa-p256-sha256, ecdsa-p384-sha384, ed25519, api-key, ...)")
    })?;
    let name = if algorithm == Algorithm::RsaSha256 && alg.eq_ignore_ascii_case("rsa-sha256") {
        "rsa-sha256"
    } else {
        algorithm.name()
    };
    let id = id
        .map(str::to_string)
        .unwrap_or_else(|| format!("{name}-key"));
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let entry;
    match algorithm.key_type() {
        KeyType::Secret => {
            // Printable, so it can be pasted into Tyk's `secret` (used as raw UTF-8 bytes there).
            let len = if algorithm == Algorithm::HmacSha512 {
                64
            } else {
                32
            };
            let secret = URL_SAFE_NO_PAD.encode(random(len)?);
            let legacy = if algorithm == Algorithm::HmacSha1 {
                "    legacy_sha1: true\n"
            } else {
                ""
            };
            if to_files {
                files.push((format!("{id}.secret"), secret.clone().into_bytes(), true));
                entry = format!(
                    "  - id: {id}\n    algorithm: {name}\n{legacy}    secret_file: {id}.secret\n"
                );
                notes.push(format!(
                    "the secret is in {id}.secret (no newline); the signer uses the same characters as its key (Tyk: request_signing.secret)"
                ));
            } else {
                let var = env_name(&id);
                entry =
                    format!("  - id: {id}\n    algorithm: {name}\n{legacy}    secret_env: {var}\n");
                notes.push(format!("secret: {secret}"));
                notes.push(format!(
                    "the signer uses these exact characters as its key (Tyk: request_signing.secret); where countersign runs: export {var}='{secret}'"
                ));
            }
        }
        KeyType::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(format!("--bits {bits}: use 2048, 3072 or 4096"));
            }
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|e| format!("RSA key generation failed: {e}"))?;
            let private = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?
                .to_string();
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            files.push((format!("{id}.key.pem"), private.clone().into_bytes(), true));
            files.push((format!("{id}.pub.pem"), public.into_bytes(), false));
            if matches!(algorithm, Algorithm::RsaSha256) {
                // Tyk signs with a certificate-store entry holding a certificate and its key.
                let kp = rcgen::KeyPair::from_pem_and_sign_algo(&private, &rcgen::PKCS_RSA_SHA256)
                    .map_err(|e| format!("certificate for Tyk: {e}"))?;
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                    .map_err(|e| e.to_string())?;
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, id.clone());
                let cert = params.self_signed(&kp).map_err(|e| e.to_string())?;
                let mut bundle = cert.pem();
                bundle.push_str(&private);
                files.push((format!("{id}.tyk.pem"), bundle.into_bytes(), true));
                notes.push(format!(
                    "Tyk: upload {id}.tyk.pem (certificate + private key) to the certificate store and set request_signing.certificate_id to its id"
                ));
            }
            entry = format!("  - id: {id}\n    algorithm: {name}\n    public_key: {id}.pub.pem\n");
        }
        t => {
            let sig_alg = match t {
                KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
                _ => &rcgen::PKCS_ED25519,
            };
            let kp = rcgen::KeyPair::generate_for(sig_alg).map_err(|e| e.to_string())?;
            files.push((
                format!("{id}.key.pem"),
                kp.serialize_pem().into_bytes(),
                true,
            ));
            files.push((
                format!("{id}.pub.pem"),
                kp.public_key_pem().into_bytes(),
                false,
            ));
            entry = format!("  - id: {id}\n    algorithm: {name}\n    public_key: {id}.pub.pem\n");
        }
    }
    if algorithm.key_type() != KeyType::Secret {
        notes.push(format!(
            "the signer keeps {id}.key.pem; countersign needs only {id}.pub.pem"
        ));
    }
    Ok(Generated {
        id,
        files,
        entry,
        notes,
    })
}

fn write_all(dir: &Path, g: &Generated) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, contents, private) in &g.files {
        let p = dir.join(name);
        let r = if *private {
            write_private(&p, contents)
        } else {
            write_public(&p, contents)
        };
        r.map_err(|e| format!("{}: {e}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

/// Runs `countersign keygen`.
pub async fn run(args: KeygenArgs) -> ExitCode {
    let g = match generate(&args.alg, args.id.as_deref(), args.bits, args.out.is_some()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("countersign keygen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = String::new();
    match &args.out {
        Some(dir) => match write_all(dir, &g) {
            Ok(paths) => {
                for (p, (_, _, private)) in paths.iter().zip(&g.files) {
                    let _ = writeln!(
                        out,
                        "wrote {}{}",
                        p.display(),
                        if *private { " (mode 0600)" } else { "" }
                    );
                }
            }
            Err(e) => {
                eprintln!("countersign keygen: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            for (name, contents, _) in &g.files {
                let _ = writeln!(out, "# {name}");
                out.push_str(&String::from_utf8_lossy(contents));
                if !contents.ends_with(b"\n") {
                    out.push('\n');
                }
            }
        }
    }
    for n in &g.notes {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "\nkeys.yaml entry:\nkeys:\n{}", g.entry);
    print!("{out}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignatureSettings;
    use crate::registry::Registry;
    use crate::signature::Scheme;
    use crate::signature::sign::Signer;

    /// Every algorithm: the files load as a registry entry and the private key signs what the
    /// registered public key verifies.
    #[test]
    fn every_algorithm_round_trips_through_the_registry() {
        for alg in [
            "hmac-sha256",
            "hmac-sha384",
            "hmac-sha512",
            "hmac-sha1",
            "rsa-sha256",
            "rsa-pss-sha512",
            "ecdsa-p256-sha256",
            "ecdsa-p384-sha384",
            "ed25519",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let g = generate(alg, Some("k"), 2048, true).unwrap();
            write_all(dir.path(), &g).unwrap();
            let yaml = format!("keys:\n{}", g.entry);
            let reg = Registry::from_yaml_str(
                &yaml,
                Path::new("keys.yaml"),
                dir.path(),
                &SignatureSettings::default(),
            )
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
            let key = reg.get("k").unwrap();
            let a = key.algorithm().unwrap();
            let signer = if a.key_type() == KeyType::Secret {
                Signer::hmac(a, &std::fs::read(dir.path().join("k.secret")).unwrap()).unwrap()
            } else {
                use std::os::unix::fs::PermissionsExt as _;
                let p = dir.path().join("k.key.pem");
                assert_eq!(
                    std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                    0o600
                );
                Signer::from_pem(a, &std::fs::read(p).unwrap()).unwrap()
            };
            for scheme in [Scheme::Cavage, Scheme::Rfc9421] {
                let sig = signer.sign(scheme, b"message").unwrap();
                assert!(
                    crate::signature::alg::verify(key, scheme, b"message", &sig),
                    "{alg}"
                );
                assert!(
                    !crate::signature::alg::verify(key, scheme, b"messagE", &sig),
                    "{alg}"
                );
            }
            // Never overwrite.
            assert!(write_all(dir.path(), &g).is_err());
        }
    }

    #[test]
    fn api_key_and_printed_secrets() {
        let g = generate("api-key", Some("job"), 2048, false).unwrap();
        let key = g.notes[0].strip_prefix("API key: ").unwrap();
        let reg = Registry::from_yaml_str(
            &format!("keys:\n{}", g.entry),
            Path::new("keys.yaml"),
            Path::new("."),
            &SignatureSettings::default(),
        )
        .unwrap();
        assert_eq!(&*reg.find_api_key(key.as_bytes()).unwrap().id, "job");
        assert!(reg.find_api_key(b"csk_wrong").is_none());
        let h = generate("hmac-sha256", Some("tyk-edge"), 2048, false).unwrap();
        assert!(
            h.entry.contains("secret_env: TYK_EDGE_SECRET"),
            "{}",
            h.entry
        );
        assert!(generate("md5", None, 2048, false).is_err());
    }

    #[test]
    fn rsa_for_tyk_has_a_certificate_bundle() {
        let g = generate("rsa-sha256", Some("tyk-rsa"), 2048, true).unwrap();
        let bundle = &g.files.iter().find(|f| f.0 == "tyk-rsa.tyk.pem").unwrap().1;
        let blocks = pem::parse_many(bundle).unwrap();
        assert_eq!(blocks[0].tag(), "CERTIFICATE");
        assert_eq!(blocks[1].tag(), "PRIVATE KEY");
        // The certificate's key is the registered public key.
        let pubk = &g.files.iter().find(|f| f.0 == "tyk-rsa.pub.pem").unwrap().1;
        let a = crate::registry::pubkey::from_file_bytes(bundle, "").unwrap();
        let b = crate::registry::pubkey::from_file_bytes(pubk, "").unwrap();
        assert_eq!(a.spki_der, b.spki_der);
    }
}
