//! `countersign sign`: sign a request as a client or gateway does — `tyk` (byte-identical to Tyk's
//! request signing), `cavage` (draft-10) or `rfc9421` — then print the headers to add, a complete
//! `curl` command (`--curl`), or send it (`--send`, with `--cert/--key` for mTLS).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::shell_quote;
use crate::registry::{Algorithm, KeyType};
use crate::signature::digest::{DigestAlg, content_digest_value, digest_value};
use crate::signature::sign::{self, CavageSpec, Rfc9421Spec, Signer};
use crate::signature::{Message, date};

/// Which wire format to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeArg {
    /// Exactly what Tyk's request signing sends.
    Tyk,
    /// draft-cavage-http-signatures-10.
    Cavage,
    /// RFC 9421 HTTP Message Signatures.
    Rfc9421,
}

/// Which digest header to add for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestArg {
    /// SHA-256.
    #[value(name = "sha-256")]
    Sha256,
    /// SHA-512.
    #[value(name = "sha-512")]
    Sha512,
    /// No digest header.
    None,
}

/// Arguments of `countersign sign`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("key_source").required(true).args(["key_file", "secret", "secret_env", "secret_file", "secret_base64"])))]
pub struct SignArgs {
    /// The wire format.
    #[arg(long, value_enum, default_value = "tyk")]
    pub scheme: SchemeArg,
    /// The key id (keyId / keyid).
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// The algorithm (hmac-sha256, rsa-sha256, rsa-pss-sha512, ecdsa-p256-sha256, ed25519, ...).
    #[arg(long, value_name = "ALG")]
    pub alg: String,
    /// A private key PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM")]
    pub key_file: Option<PathBuf>,
    /// An HMAC secret, used as its UTF-8 bytes (as Tyk does).
    #[arg(long, value_name = "TEXT")]
    pub secret: Option<String>,
    /// An environment variable holding the HMAC secret.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// A file holding the HMAC secret (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The HMAC secret in standard base64.
    #[arg(long, value_name = "B64")]
    pub secret_base64: Option<String>,
    /// The method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// The URL.
    #[arg(long)]
    pub url: String,
    /// A header to send, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The body.
    #[arg(short = 'd', long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// The body, from a file.
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// cavage: what to sign (default `(request-target) host date`, plus `digest` with a body).
    #[arg(long, value_name = "LIST")]
    pub sign_headers: Option<String>,
    /// tyk: Tyk's `header_list` (comma or space separated), with Tyk's quirks; default: every header.
    #[arg(long, value_name = "LIST")]
    pub header_list: Option<String>,
    /// tyk/cavage: the header carrying the signature instead of Authorization (Tyk's `signature_header`).
    #[arg(long, value_name = "NAME")]
    pub signature_header: Option<String>,
    /// rfc9421: the covered components (default `@method @authority @path @query`, plus
    /// `content-digest` with a body), e.g. `@method @target-uri content-digest x-request-id`.
    #[arg(long, value_name = "LIST")]
    pub components: Option<String>,
    /// rfc9421: the signature label.
    #[arg(long, default_value = "sig1")]
    pub label: String,
    /// rfc9421: leave out `created`.
    #[arg(long)]
    pub no_created: bool,
    /// rfc9421 (and cavage): add `expires`, this many seconds ahead.
    #[arg(long, value_name = "SECONDS")]
    pub expires_in: Option<u64>,
    /// rfc9421: add a random `nonce`.
    #[arg(long)]
    pub nonce: bool,
    /// rfc9421: the `tag` parameter.
    #[arg(long)]
    pub tag: Option<String>,
    /// rfc9421: send the `alg` parameter.
    #[arg(long)]
    pub alg_param: bool,
    /// The digest header for the body (default sha-256 for cavage and rfc9421, none for tyk).
    #[arg(long, value_enum)]
    pub digest: Option<DigestArg>,
    /// Sign at this time (Unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub at: Option<i64>,
    /// Print the signing string / signature base to stderr.
    #[arg(long)]
    pub show_base: bool,
    /// Print a complete curl command instead of the headers.
    #[arg(long, conflicts_with = "send")]
    pub curl: bool,
    /// Send the request and print the response.
    #[arg(long)]
    pub send: bool,
    /// --send and --curl: client certificate PEM (mTLS).
    #[arg(long, value_name = "PEM", requires = "send")]
    pub cert: Option<PathBuf>,
    /// --send and --curl: client private key PEM (mTLS).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// --send and --curl: trust only this CA bundle (PEM).
    #[arg(long, value_name = "PEM", requires = "send")]
    pub cacert: Option<PathBuf>,
    /// --send: give up after this long.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

/// A signed request, ready to print or send.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Every header to send, in order (the caller's and the added ones).
    pub headers: Vec<(String, String)>,
    /// The headers the signer added (Date, Digest, the signature).
    pub added: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The signing string / signature base.
    pub base: Vec<u8>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split([' ', ',', '\t'])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn signer(args: &SignArgs, algorithm: Algorithm) -> Result<Signer, String> {
    if let Some(f) = &args.key_file {
        if algorithm.key_type() == KeyType::Secret {
            return Err(format!(
                "{} takes a secret, not --key-file",
                algorithm.name()
            ));
        }
        let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        return Signer::from_pem(algorithm, &pem).map_err(|e| format!("{}: {e}", f.display()));
    }
    if algorithm.key_type() != KeyType::Secret {
        return Err(format!(
            "{} needs --key-file (a private key PEM)",
            algorithm.name()
        ));
    }
    let secret: Vec<u8> = if let Some(s) = &args.secret {
        s.as_bytes().to_vec()
    } else if let Some(v) = &args.secret_env {
        std::env::var_os(v)
            .ok_or_else(|| format!("environment variable {v} is not set"))?
            .into_encoded_bytes()
    } else if let Some(f) = &args.secret_file {
        let mut b = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        if b.last() == Some(&b'\n') {
            b.pop();
            if b.last() == Some(&b'\r') {
                b.pop();
            }
        }
        b
    } else if let Some(b) = &args.secret_base64 {
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| "--secret-base64 is not standard base64".to_string())?
    } else {
        return Err("give --secret, --secret-env, --secret-file or --secret-base64".to_string());
    };
    Signer::hmac(algorithm, &secret)
}

fn header_map(list: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`{k}` is not a header name"))?,
            HeaderValue::from_str(v)
                .map_err(|_| format!("the value of {k} is not a valid header value"))?,
        );
    }
    Ok(h)
}

fn has(list: &[(String, String)], name: &str) -> bool {
    list.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

fn first(list: &[(String, String)], name: &str) -> String {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// Signs the request described by `args` (no I/O besides reading key and body files).
pub fn build(args: &SignArgs) -> Result<Signed, String> {
    let algorithm = Algorithm::from_name(&args.alg)
        .ok_or_else(|| format!("`{}` is not an algorithm", args.alg))?;
    let signer = signer(args, algorithm)?;
    let url = reqwest::Url::parse(&args.url).map_err(|e| format!("--url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("--url must be http:// or https://".to_string());
    }
    let host = url.host_str().ok_or("--url has no host")?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let method = args.method.to_ascii_uppercase();
    let now = args.at.map(date::from_unix).unwrap_or_else(SystemTime::now);
    let now_s = date::unix(now);

    let mut headers: Vec<(String, String)> = Vec::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("-H `{h}` is not `Name: value`"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let body = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        (None, None) => Vec::new(),
    };
    let mut added: Vec<(String, String)> = Vec::new();

    let digest = args.digest.unwrap_or(match args.scheme {
        SchemeArg::Tyk => DigestArg::None,
        _ if body.is_empty() => DigestArg::None,
        _ => DigestArg::Sha256,
    });
    let dalg = match digest {
        DigestArg::Sha256 => Some(DigestAlg::Sha256),
        DigestArg::Sha512 => Some(DigestAlg::Sha512),
        DigestArg::None => None,
    };
    let digest_field = if let Some(a) = dalg {
        let (name, value) = if args.scheme == SchemeArg::Rfc9421 {
            ("Content-Digest", content_digest_value(a, &body))
        } else {
            ("Digest", digest_value(a, &body))
        };
        added.push((name.to_string(), value));
        Some(name.to_ascii_lowercase())
    } else {
        None
    };

    let mut all: Vec<(String, String)> = headers.clone();
    all.extend(added.iter().cloned());
    // The signer sees the Host the request will carry.
    let mut for_signing = all.clone();
    if !has(&for_signing, "host") {
        for_signing.push(("Host".to_string(), authority.clone()));
    }

    let (sig_header, sig_value, base) = match args.scheme {
        SchemeArg::Tyk => {
            if !matches!(
                algorithm,
                Algorithm::HmacSha1
                    | Algorithm::HmacSha256
                    | Algorithm::HmacSha384
                    | Algorithm::HmacSha512
                    | Algorithm::RsaSha256
            ) {
                return Err(
                    "Tyk signs with hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512 or rsa-sha256"
                        .to_string(),
                );
            }
            let date_now = date::format_tyk(now);
            let list: Vec<String> = match &args.header_list {
                None => {
                    let mut l = vec!["(request-target)".to_string()];
                    for (k, _) in &all {
                        let n = k.trim().to_ascii_lowercase();
                        if n != "host" && !l.contains(&n) {
                            l.push(n);
                        }
                    }
                    if !has(&all, "date") {
                        added.push(("Date".to_string(), date_now.clone()));
                        for_signing.push(("Date".to_string(), date_now));
                        l.push("date".to_string());
                    }
                    l
                }
                Some(hl) => {
                    let mut l: Vec<String> = split_list(hl)
                        .into_iter()
                        .filter(|h| !first(&all, h).is_empty())
                        .collect();
                    if l.is_empty() {
                        l = vec!["(request-target)".to_string(), "date".to_string()];
                        if !has(&all, "date") {
                            added.push(("Date".to_string(), date_now.clone()));
                            for_signing.push(("Date".to_string(), date_now));
                        }
                    }
                    l
                }
            };
            let h = header_map(&for_signing)?;
            let msg = Message {
                method: &method,
                target,
                scheme: url.scheme(),
                authority: Some(&authority),
                headers: &h,
                status: None,
            };
            let tyk_name = if algorithm == Algorithm::RsaSha256 {
                "rsa-sha256"
            } else {
                algorithm.name()
            };
            let (params, base) = sign::cavage(
                &msg,
                &signer,
                &CavageSpec {
                    key_id: &args.key_id,
                    algorithm: Some(tyk_name),
                    headers: list,
                    created: None,
                    expires: None,
                    tyk: true,
                },
            )?;
            let name = args
                .signature_header
                .as_deref()
                .map(go_canonical)
                .unwrap_or_else(|| "Authorization".to_string());
            (name, format!("Signature {params}"), base)
        }
        SchemeArg::Cavage => {
            let mut list = match &args.sign_headers {
                Some(s) => split_list(s),
                None => ["(request-target)", "host", "date"]
                    .map(String::from)
                    .to_vec(),
            };
            if args.sign_headers.is_none()
                && let Some(d) = &digest_field
            {
                list.push(d.clone());
            }
            if list.iter().any(|h| h.eq_ignore_ascii_case("date")) && !has(&all, "date") {
                let d = date::format_imf(now);
                added.push(("Date".to_string(), d.clone()));
                for_signing.push(("Date".to_string(), d));
            }
            let created = list.iter().any(|h| h == "(created)").then_some(now_s);
            let expires = args.expires_in.map(|e| now_s + e as i64);
            if expires.is_some() && !list.iter().any(|h| h == "(expires)") {
                list.push("(expires)".to_string());
            }
            let h = header_map(&for_signing)?;
            let msg = Message {
                method: &method,
                target,
                scheme: url.scheme(),
                authority: Some(&authority),
                headers: &h,
                status: None,
            };
            let (params, base) = sign::cavage(
                &msg,
                &signer,
                &CavageSpec {
                    key_id: &args.key_id,
                    algorithm: Some(&args.alg),
                    headers: list,
                    created,
                    expires,
                    tyk: false,
                },
            )?;
            match args.signature_header.as_deref() {
                Some(n) if n.eq_ignore_ascii_case("signature") => {
                    ("Signature".to_string(), params, base)
                }
                Some(n) => (go_canonical(n), format!("Signature {params}"), base),
                None => (
                    "Authorization".to_string(),
                    format!("Signature {params}"),
                    base,
                ),
            }
        }
        SchemeArg::Rfc9421 => {
            let mut components = match &args.components {
                Some(s) => split_list(s),
                None => ["@method", "@authority", "@path", "@query"]
                    .map(String::from)
                    .to_vec(),
            };
            if args.components.is_none()
                && let Some(d) = &digest_field
            {
                components.push(d.clone());
            }
            let nonce = if args.nonce {
                let mut b = [0u8; 16];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                    .map_err(|_| "the random generator failed".to_string())?;
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            } else {
                None
            };
            let h = header_map(&for_signing)?;
            let msg = Message {
                method: &method,
                target,
                scheme: url.scheme(),
                authority: Some(&authority),
                headers: &h,
                status: None,
            };
            let (input, signature, base) = sign::rfc9421(
                &msg,
                &signer,
                &Rfc9421Spec {
                    label: &args.label,
                    components,
                    created: (!args.no_created).then_some(now_s),
                    expires: args.expires_in.map(|e| now_s + e as i64),
                    nonce: nonce.as_deref(),
                    keyid: &args.key_id,
                    alg: args.alg_param.then(|| algorithm.name()),
                    tag: args.tag.as_deref(),
                },
            )?;
            added.push(("Signature-Input".to_string(), input));
            ("Signature".to_string(), signature, base)
        }
    };
    added.push((sig_header.clone(), sig_value));
    // The full header list to send: the caller's (minus any the signer replaced) and the added ones.
    let mut out: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(&sig_header))
        .collect();
    out.extend(added.iter().cloned());
    Ok(Signed {
        method,
        url: url.to_string(),
        headers: out,
        added,
        body,
        base,
    })
}

/// Go's `CanonicalMIMEHeaderKey`, as Tyk's `r.Header.Set` writes the header name.
fn go_canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let w = w.to_ascii_lowercase();
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The request as a curl command.
pub fn curl_command(s: &Signed, data_file: Option<&std::path::Path>) -> String {
    let mut c = String::from("curl -sS");
    if s.method != "GET" || !s.body.is_empty() {
        c.push_str(&format!(" -X {}", shell_quote(&s.method)));
    }
    c.push(' ');
    c.push_str(&shell_quote(&s.url));
    for (k, v) in &s.headers {
        c.push_str(" \\\n  -H ");
        c.push_str(&shell_quote(&format!("{k}: {v}")));
    }
    if !s.body.is_empty() {
        c.push_str(" \\\n  --data-binary ");
        match data_file {
            Some(f) => c.push_str(&shell_quote(&format!("@{}", f.display()))),
            None => c.push_str(&shell_quote(&String::from_utf8_lossy(&s.body))),
        }
    }
    c
}

async fn send(args: &SignArgs, s: &Signed) -> Result<(u16, Vec<u8>), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &args.cacert {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_only(certs);
    }
    if let Some(cert) = &args.cert {
        let mut pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key_path = args.key.as_ref().ok_or("--cert needs --key")?;
        pem.extend(std::fs::read(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?);
        b = b
            .identity(reqwest::Identity::from_pem(&pem).map_err(|e| format!("--cert/--key: {e}"))?);
    }
    let client = b.build().map_err(|e| format!("client: {e}"))?;
    let method = reqwest::Method::from_bytes(s.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = client.request(method, &s.url);
    for (k, v) in &s.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !s.body.is_empty() {
        req = req.body(s.body.clone());
    }
    let resp = req.send().await.map_err(|e| format!("{}: {e}", s.url))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

/// Runs `countersign sign`.
pub async fn run(args: SignArgs) -> ExitCode {
    let signed = match build(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("countersign sign: {e}");
            return ExitCode::from(2);
        }
    };
    if args.show_base {
        eprintln!(
            "{} ({} bytes):\n{}\n",
            if args.scheme == SchemeArg::Rfc9421 {
                "signature base"
            } else {
                "signing string"
            },
            signed.base.len(),
            String::from_utf8_lossy(&signed.base)
        );
    }
    if args.send {
        return match send(&args, &signed).await {
            Ok((status, body)) => {
                println!("HTTP {status}");
                println!("{}", String::from_utf8_lossy(&body));
                if (200..300).contains(&status) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("countersign sign: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.curl {
        let mut c = curl_command(&signed, args.data_file.as_deref());
        // The TLS files given for --send go into the curl command too, so it can be pasted as is.
        for (flag, path) in [
            ("--cacert", &args.cacert),
            ("--cert", &args.cert),
            ("--key", &args.key),
        ] {
            if let Some(p) = path {
                c.push_str(&format!(
                    " \\\n  {flag} {}",
                    shell_quote(&p.display().to_string())
                ));
            }
        }
        println!("{c}");
    } else {
        for (k, v) in &signed.added {
            println!("{k}: {v}");
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignatureSettings;
    use crate::registry::Registry;
    use crate::signature::{SignedRequest, Verifier};
    use clap::Parser as _;
    use std::path::Path;
    use std::sync::Arc;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SignArgs,
    }

    fn args(list: &[&str]) -> SignArgs {
        let mut v = vec!["sign"];
        v.extend_from_slice(list);
        Cli::try_parse_from(v)
            .unwrap_or_else(|e| panic!("{e}"))
            .args
    }

    fn verify(
        s: &Signed,
        keys: &str,
        base: &Path,
        settings: &SignatureSettings,
        now: i64,
    ) -> Result<String, String> {
        let reg = Registry::from_yaml_str(keys, Path::new("keys.yaml"), base, settings).unwrap();
        let v = Verifier::new(settings, Arc::new(reg));
        let url = reqwest::Url::parse(&s.url).unwrap();
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut h = header_map(&s.headers).unwrap();
        if !h.contains_key("host") {
            h.insert(
                "host",
                HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort])
                    .unwrap(),
            );
        }
        let m = http::Method::from_bytes(s.method.as_bytes()).unwrap();
        let r = SignedRequest {
            method: &m,
            target,
            scheme: url.scheme(),
            authority: None,
            headers: &h,
            body: Some(&s.body),
            client_ip: "127.0.0.1".parse().unwrap(),
        };
        v.verify(&r, date::from_unix(now))
            .map(|ok| ok.key.id.to_string())
            .map_err(|d| format!("{}: {}", d.reject.code(), d.detail))
    }

    const HMAC_KEYS: &str =
        "keys:\n  - id: gw\n    algorithm: hmac-sha256\n    secret: \"9879879878787878\"\n";

    #[test]
    fn tyk_worked_example() {
        let s = build(&args(&[
            "--scheme",
            "tyk",
            "--key-id",
            "tyk-gw-1",
            "--alg",
            "hmac-sha256",
            "--secret",
            "9879879878787878",
            "--url",
            "https://api.example/orders/42?expand=items&page=2",
            "-H",
            "X-Request-Id: r-1",
            "-H",
            "Accept: application/json",
            "--at",
            "1764842400",
        ]))
        .unwrap();
        assert_eq!(
            s.added,
            vec![
                ("Date".to_string(), "Thu, 04 Dec 2025 10:00:00 UTC".to_string()),
                ("Authorization".to_string(), "Signature keyId=\"tyk-gw-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) x-request-id accept date\",signature=\"ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D\"".to_string()),
            ]
        );
        let c = curl_command(&s, None);
        assert!(
            c.starts_with("curl -sS 'https://api.example/orders/42?expand=items&page=2'"),
            "{c}"
        );
        assert!(
            c.contains("-H 'Date: Thu, 04 Dec 2025 10:00:00 UTC'"),
            "{c}"
        );
    }

    #[test]
    fn every_scheme_and_algorithm_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = String::from(HMAC_KEYS);
        for alg in [
            "rsa-sha256",
            "rsa-pss-sha512",
            "ecdsa-p256-sha256",
            "ecdsa-p384-sha384",
            "ed25519",
        ] {
            let g = super::super::keygen::generate(alg, Some(alg), 2048, true).unwrap();
            for (name, contents, _) in &g.files {
                std::fs::write(dir.path().join(name), contents).unwrap();
            }
            keys.push_str(&g.entry);
        }
        let settings = SignatureSettings::default();
        let now = 1764842400;
        for scheme in ["tyk", "cavage", "rfc9421"] {
            for alg in [
                "hmac-sha256",
                "rsa-sha256",
                "rsa-pss-sha512",
                "ecdsa-p256-sha256",
                "ecdsa-p384-sha384",
                "ed25519",
            ] {
                if scheme == "tyk" && !matches!(alg, "hmac-sha256" | "rsa-sha256") {
                    assert!(
                        build(&args(&[
                            "--scheme",
                            scheme,
                            "--key-id",
                            alg,
                            "--alg",
                            alg,
                            "--key-file",
                            "x",
                            "--url",
                            "https://a/"
                        ]))
                        .is_err()
                    );
                    continue;
                }
                let key_file = dir.path().join(format!("{alg}.key.pem"));
                let key_id = if alg.starts_with("hmac") { "gw" } else { alg };
                let mut a = vec![
                    "--scheme",
                    scheme,
                    "--key-id",
                    key_id,
                    "--alg",
                    alg,
                    "-X",
                    "POST",
                    "--url",
                    "https://api.example:8443/orders?id=7",
                    "-H",
                    "Content-Type: application/json",
                    "-H",
                    "X-Request-Id: r-9",
                    "--data",
                    "{\"n\":1}",
                    "--at",
                    "1764842400",
                ];
                let kf = key_file.display().to_string();
                if alg.starts_with("hmac") {
                    a.extend(["--secret", "9879879878787878"]);
                } else {
                    a.extend(["--key-file", &kf]);
                }
                let s = build(&args(&a)).unwrap();
                assert_eq!(
                    verify(&s, &keys, dir.path(), &settings, now),
                    Ok(key_id.to_string()),
                    "{scheme} {alg}"
                );
                // A tampered query is caught by every scheme; a tampered body by the digest (tyk sends none).
                let mut t = s.clone();
                t.url = t.url.replace("id=7", "id=8");
                assert!(
                    verify(&t, &keys, dir.path(), &settings, now).is_err(),
                    "{scheme} {alg}"
                );
                if scheme != "tyk" {
                    let mut t = s.clone();
                    t.body = b"{\"n\":2}".to_vec();
                    let e = verify(&t, &keys, dir.path(), &settings, now).unwrap_err();
                    assert!(e.starts_with("digest_mismatch"), "{e}");
                }
            }
        }
    }

    #[test]
    fn signature_header_and_header_list() {
        let s = build(&args(&[
            "--key-id",
            "gw",
            "--alg",
            "hmac-sha256",
            "--secret",
            "9879879878787878",
            "--url",
            "https://a.example/x",
            "--signature-header",
            "x-tyk-signature",
            "--header-list",
            "date,content-type",
            "-H",
            "Content-Type: text/plain",
            "--at",
            "1764842400",
        ]))
        .unwrap();
        assert_eq!(s.added.len(), 1, "{:?}", s.added);
        assert_eq!(s.added[0].0, "X-Tyk-Signature");
        assert!(s.added[0].1.contains("headers=\"content-type\""));
        let settings = SignatureSettings {
            cavage_header: HeaderName::from_static("x-tyk-signature"),
            required: vec!["content-type".to_string()],
            ..SignatureSettings::default()
        };
        assert_eq!(
            verify(&s, HMAC_KEYS, Path::new("."), &settings, 1764842400),
            Ok("gw".to_string())
        );
        let s = build(&args(&[
            "--scheme",
            "cavage",
            "--key-id",
            "gw",
            "--alg",
            "hmac-sha256",
            "--secret",
            "9879879878787878",
            "--url",
            "https://a.example/x",
            "--signature-header",
            "Signature",
            "--at",
            "1764842400",
        ]))
        .unwrap();
        let sig = s.added.iter().find(|(k, _)| k == "Signature").unwrap();
        assert!(sig.1.starts_with("keyId=\"gw\""));
        assert_eq!(
            verify(
                &s,
                HMAC_KEYS,
                Path::new("."),
                &SignatureSettings::default(),
                1764842400
            ),
            Ok("gw".to_string())
        );
    }

    #[test]
    fn argument_errors() {
        for (a, want) in [
            (
                vec![
                    "--key-id",
                    "k",
                    "--alg",
                    "md5",
                    "--secret",
                    "x",
                    "--url",
                    "https://a/",
                ],
                "not an algorithm",
            ),
            (
                vec![
                    "--key-id",
                    "k",
                    "--alg",
                    "hmac-sha256",
                    "--secret",
                    "x",
                    "--url",
                    "ftp://a/",
                ],
                "http://",
            ),
            (
                vec![
                    "--key-id",
                    "k",
                    "--alg",
                    "hmac-sha256",
                    "--secret",
                    "x",
                    "--url",
                    "https://a/",
                    "-H",
                    "bad",
                ],
                "Name: value",
            ),
            (
                vec![
                    "--key-id",
                    "k",
                    "--alg",
                    "ed25519",
                    "--secret",
                    "x",
                    "--url",
                    "https://a/",
                ],
                "--key-file",
            ),
            (
                vec![
                    "--key-id",
                    "k",
                    "--alg",
                    "hmac-sha256",
                    "--secret-env",
                    "COUNTERSIGN_NOPE_UNSET",
                    "--url",
                    "https://a/",
                ],
                "not set",
            ),
        ] {
            let e = build(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
        let mut v = vec!["sign"];
        v.extend([
            "--key-id",
            "k",
            "--alg",
            "hmac-sha256",
            "--url",
            "https://a/",
        ]);
        assert!(Cli::try_parse_from(v).is_err(), "a key source is required");
    }

    /// Writes a CA, a server certificate for 127.0.0.1 and a client certificate; returns the
    /// server's rustls config (client certificates required).
    fn pki(dir: &Path) -> rustls::ServerConfig {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let srv_key = KeyPair::generate().unwrap();
        let srv = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&srv_key, &issuer)
            .unwrap();
        let cli_key = KeyPair::generate().unwrap();
        let cli = CertificateParams::new(vec!["client.test".to_string()])
            .unwrap()
            .signed_by(&cli_key, &issuer)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), cli.pem()).unwrap();
        std::fs::write(dir.join("client.key"), cli_key.serialize_pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(srv.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(srv_key.serialize_der())),
            )
            .unwrap()
    }

    /// A TLS server that answers every request with the Authorization header it received.
    async fn echo_server(cfg: rustls::ServerConfig) -> std::net::SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.as_bytes().to_vec())
                                .unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(auth)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn send_over_mtls() {
        let dir = tempfile::tempdir().unwrap();
        let addr = echo_server(pki(dir.path())).await;
        let p = |n: &str| dir.path().join(n).display().to_string();
        let url = format!("https://127.0.0.1:{}/orders?x=1", addr.port());
        let mut a = args(&[
            "--key-id",
            "gw",
            "--alg",
            "hmac-sha256",
            "--secret",
            "9879879878787878",
            "--url",
            &url,
            "--send",
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("client.pem"),
            "--key",
            &p("client.key"),
        ]);
        let signed = build(&a).unwrap();
        let (status, body) = send(&a, &signed).await.unwrap();
        assert_eq!(status, 200);
        let sent = signed
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .unwrap();
        assert_eq!(String::from_utf8(body).unwrap(), sent.1);
        // Without the client certificate the handshake fails.
        a.cert = None;
        a.key = None;
        assert!(send(&a, &signed).await.is_err());
        // Without the CA the server is not trusted.
        let mut b = args(&[
            "--key-id",
            "gw",
            "--alg",
            "hmac-sha256",
            "--secret",
            "x",
            "--url",
            &url,
            "--send",
            "--cert",
            &p("client.pem"),
            "--key",
            &p("client.key"),
        ]);
        b.timeout = Duration::from_secs(5);
        assert!(send(&b, &build(&b).unwrap()).await.is_err());
    }
}
