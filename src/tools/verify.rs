//! `countersign verify (-c CONFIG | --keys FILE) --request FILE [--at UNIX] [--explain]`: verify one
//! saved HTTP/1.1 request offline, with the config's `signature` settings or the defaults.
//! Exit 0 accepted, 1 refused, 2 when a file cannot be read or parsed.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::{Config, KeySource, SignatureSettings};
use crate::registry::Registry;
use crate::signature::{SignedRequest, Verifier, date};

/// Arguments of `countersign verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The sidecar's config: its `signature:` settings and key registry are used.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "keys",
        required_unless_present = "keys"
    )]
    pub config: Option<PathBuf>,
    /// A key registry, verified with the default `signature:` settings.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// The raw request: request line, headers, blank line, body (CRLF or LF); `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The time to verify at, in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    pub at: Option<i64>,
    /// Print the rebuilt signing string / signature base and every check.
    #[arg(long)]
    pub explain: bool,
    /// The client address, for keys with `ip_allow`.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// The scheme the request arrived over (for `@scheme` and `@target-uri`).
    #[arg(long, default_value = "https", value_parser = ["https", "http"])]
    pub scheme: String,
}

/// A request read from a file.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The method.
    pub method: Method,
    /// The request-target, as written.
    pub target: String,
    /// The headers, in order.
    pub headers: HeaderMap,
    /// The body (cut to Content-Length when it is given).
    pub body: Vec<u8>,
}

/// The largest request file read.
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// Parses a raw HTTP/1.1 request (CRLF or LF line ends).
pub fn parse_raw_request(bytes: &[u8]) -> Result<RawRequest, String> {
    if bytes.len() > MAX_REQUEST {
        return Err(format!("larger than {MAX_REQUEST} bytes"));
    }
    let crlf = find(bytes, b"\r\n\r\n");
    let lf = find(bytes, b"\n\n");
    let (head_end, body_start) = match (crlf, lf) {
        (Some(c), Some(l)) if l < c => (l, l + 2),
        (Some(c), _) => (c, c + 4),
        (None, Some(l)) => (l, l + 2),
        (None, None) => (bytes.len(), bytes.len()),
    };
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| "the request head is not UTF-8 text".to_string())?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .ok_or("the file is empty")?;
    let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "line 1: `{request_line}` is not a request line (METHOD TARGET HTTP/1.1)"
        ));
    };
    if let Some(v) = version
        && !v.starts_with("HTTP/")
    {
        return Err(format!("line 1: `{v}` is not an HTTP version"));
    }
    if parts.next().is_some() {
        return Err(format!("line 1: `{request_line}` has extra words"));
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("line 1: `{method}` is not a method"))?;
    let mut headers = HeaderMap::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(format!("line {n}: folded header lines are not supported"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {n}: `{line}` is not `Name: value`"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("line {n}: `{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
            .map_err(|_| format!("line {n}: the value of {name} is not a valid header value"))?;
        headers.append(name, value);
    }
    let mut body = bytes[body_start.min(bytes.len())..].to_vec();
    if let Some(cl) = headers.get(http::header::CONTENT_LENGTH) {
        let n: usize = cl
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("Content-Length is not a number")?;
        if body.len() < n {
            return Err(format!(
                "Content-Length is {n} but the body after the blank line has {} bytes",
                body.len()
            ));
        }
        body.truncate(n);
    } else if headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(
            "chunked bodies are not supported: save the body decoded, with Content-Length"
                .to_string(),
        );
    }
    Ok(RawRequest {
        method,
        target: target.to_string(),
        headers,
        body,
    })
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().take(MAX_REQUEST as u64 + 1), &mut v)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(v);
    }
    std::fs::read(path)
        .map_err(|e| format!("{}: {}", path.display(), crate::config::read_error(&e)))
}

fn load(args: &VerifyArgs) -> Result<(SignatureSettings, Registry), String> {
    if let Some(c) = &args.config {
        let cfg = Config::load(c).map_err(|e| e.to_string())?;
        let path = match &cfg.keys {
            Some(KeySource::File(p)) => p.clone(),
            Some(KeySource::Url(u)) => {
                return Err(format!(
                    "{}: keys is a URL ({u}); pass --keys FILE to verify offline",
                    c.display()
                ));
            }
            None => return Err(format!("{}: there is no keys: registry", c.display())),
        };
        let reg = Registry::load(&path, &cfg.signature).map_err(|e| e.to_string())?;
        Ok((cfg.signature, reg))
    } else {
        let settings = SignatureSettings::default();
        let path = args.keys.as_ref().ok_or("give -c CONFIG or --keys FILE")?;
        let reg = Registry::load(path, &settings).map_err(|e| e.to_string())?;
        Ok((settings, reg))
    }
}

/// Runs `countersign verify`.
pub async fn run(args: VerifyArgs) -> ExitCode {
    let (settings, registry) = match load(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("countersign verify: {e}");
            return ExitCode::from(2);
        }
    };
    let raw = match read(&args.request)
        .and_then(|b| parse_raw_request(&b).map_err(|e| format!("{}: {e}", args.request.display())))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("countersign verify: {e}");
            return ExitCode::from(2);
        }
    };
    let now = args.at.map(date::from_unix).unwrap_or_else(SystemTime::now);
    let registry = Arc::new(registry);
    let verifier = Verifier::new(&settings, registry.clone());
    let req = SignedRequest {
        method: &raw.method,
        target: &raw.target,
        scheme: &args.scheme,
        authority: None,
        headers: &raw.headers,
        body: Some(&raw.body),
        client_ip: args.client_ip,
    };
    if args.explain {
        let e = verifier.explain(&req, now);
        print!("{e}");
        if let Err(d) = &e.verdict
            && d.reject == crate::reject::Reject::UnknownKey
        {
            let ids: Vec<String> = registry
                .keys()
                .iter()
                .filter(|k| !k.is_api_key())
                .map(|k| k.id.to_string())
                .collect();
            println!("\nregistered signing keys: {}", ids.join(", "));
        }
        return if e.verdict.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match verifier.verify(&req, now) {
        Ok(v) => {
            println!(
                "accepted: {} signature by key `{}` ({}), fresh until {}",
                v.scheme.as_str(),
                v.key.id,
                v.key.algorithm().map(|a| a.name()).unwrap_or_default(),
                crate::registry::rfc3339(v.fresh_until)
            );
            ExitCode::SUCCESS
        }
        Err(d) => {
            println!(
                "refused: {} ({}): {}",
                d.reject.code(),
                d.reject.status().as_u16(),
                d.detail
            );
            eprintln!(
                "(run with --explain to see the signing string that was rebuilt and every check)"
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crlf_and_lf_files() {
        for text in [
            "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody\n",
            "POST /a?b=1 HTTP/1.1\nHost: x\nContent-Length: 4\nX-A: 1\nX-A: 2\n\nbody\n",
        ] {
            let r = parse_raw_request(text.as_bytes()).unwrap();
            assert_eq!(r.method, Method::POST);
            assert_eq!(r.target, "/a?b=1");
            assert_eq!(r.headers.get_all("x-a").iter().count(), 2);
            assert_eq!(r.body, b"body");
        }
        let r = parse_raw_request(b"GET / HTTP/1.1\nHost: x\n").unwrap();
        assert!(r.body.is_empty());
        // Without Content-Length the body is everything after the blank line.
        let r = parse_raw_request(b"PUT / HTTP/1.1\n\nab\n").unwrap();
        assert_eq!(r.body, b"ab\n");
    }

    #[test]
    fn bad_files() {
        for (text, want) in [
            ("", "empty"),
            ("GET\n", "not a request line"),
            ("GET / FTP/1\n", "not an HTTP version"),
            ("G(T / HTTP/1.1\n", "not a method"),
            ("GET / HTTP/1.1\nNoColon\n", "line 2"),
            ("GET / HTTP/1.1\nX: a\n folded\n", "folded"),
            (
                "POST / HTTP/1.1\nContent-Length: 10\n\nabc",
                "Content-Length is 10",
            ),
            (
                "POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
                "chunked",
            ),
        ] {
            let e = parse_raw_request(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_raw_request(&b);
        }

        #[test]
        fn round_trips(target in "/[a-z0-9/?=&%]{0,30}", vals in proptest::collection::vec("[ -~]{0,20}", 0..5), body in proptest::collection::vec(any::<u8>(), 0..50)) {
            let mut text = format!("POST {target} HTTP/1.1\r\n").into_bytes();
            for (i, v) in vals.iter().enumerate() {
                text.extend_from_slice(format!("X-H{i}: {v}\r\n").as_bytes());
            }
            text.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            text.extend_from_slice(&body);
            let r = parse_raw_request(&text).unwrap();
            prop_assert_eq!(r.target, target);
            prop_assert_eq!(r.body, body);
            for (i, v) in vals.iter().enumerate() {
                prop_assert_eq!(r.headers.get(format!("x-h{i}")).unwrap().as_bytes(), v.trim().as_bytes());
            }
        }
    }
}
