//! draft-cavage-http-signatures-10, as Tyk sends it: the parameter list of `Authorization:
//! Signature …`, `Signature: …` or a configured header, and the signing string it covers.
//!
//! Parameter names are case-insensitive, whitespace around `,` and `=` is tolerated, `=` inside
//! quoted values is kept, `headers` defaults to `date`. The signature value is percent-decoded when
//! it holds `%` (Tyk URL-escapes HMAC values, either hex case), then strict standard base64.

use std::borrow::Cow;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use super::Message;

/// The longest parameter list accepted.
pub const MAX_LEN: usize = 8 * 1024;
/// The most parameters accepted.
pub const MAX_PARAMS: usize = 16;
/// The most entries in `headers=`.
pub const MAX_HEADERS: usize = 64;
/// The longest signature value accepted (an 8192-bit RSA signature, URL-escaped, fits).
pub const MAX_SIGNATURE: usize = 4096;

/// Why a parameter list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The list is longer than `MAX_LEN`.
    #[error("the signature parameters are longer than {MAX_LEN} bytes")]
    TooLong,
    /// More than `MAX_PARAMS` parameters.
    #[error("more than {MAX_PARAMS} signature parameters")]
    TooMany,
    /// Not `name="value"` pairs.
    #[error(
        "the signature parameters are not name=\"value\" pairs separated by commas (at byte {0})"
    )]
    Syntax(usize),
    /// A quoted value without its closing quote.
    #[error("a quoted value is not closed")]
    Unterminated,
    /// The same parameter twice.
    #[error("the parameter `{0}` appears twice")]
    Duplicate(&'static str),
    /// A required parameter is absent.
    #[error("the `{0}` parameter is missing")]
    Missing(&'static str),
    /// `created`/`expires` is not an integer.
    #[error("`{0}` is not a whole number of seconds")]
    NotInteger(&'static str),
    /// `headers` is empty or too long.
    #[error("`headers` {0}")]
    Headers(&'static str),
    /// The signature value is not (percent-escaped) base64.
    #[error("the signature value {0}")]
    Signature(&'static str),
}

/// The parameters of one cavage signature, borrowed from the header where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params<'a> {
    /// `keyId`
    pub key_id: Cow<'a, str>,
    /// `algorithm`, if sent.
    pub algorithm: Option<Cow<'a, str>>,
    /// `headers`, lower-cased, in order; `["date"]` when absent.
    pub headers: Vec<Cow<'a, str>>,
    /// `headers` was sent.
    pub headers_given: bool,
    /// `signature` as sent (possibly percent-escaped).
    pub signature: Cow<'a, str>,
    /// `created`, if sent.
    pub created: Option<i64>,
    /// `expires`, if sent.
    pub expires: Option<i64>,
}

/// Strips an optional `Signature ` auth-scheme prefix (any case).
pub fn strip_scheme(v: &str) -> Option<&str> {
    let t = v.trim_start();
    if t.len() > 9 && t.as_bytes()[..9].eq_ignore_ascii_case(b"signature") {
        let rest = &t[9..];
        if rest.starts_with([' ', '\t']) {
            return Some(rest.trim_start());
        }
    }
    None
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The bytes of a parameter name (`A-Z a-z 0-9 - _`), looked up instead of compared.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        c += 1;
    }
    t
};

/// Parses `keyId="…",algorithm="…",headers="…",signature="…"` (no scheme prefix).
pub fn parse(input: &str) -> Result<Params<'_>, ParseError> {
    if input.len() > MAX_LEN {
        return Err(ParseError::TooLong);
    }
    let b = input.as_bytes();
    let mut key_id = None;
    let mut algorithm = None;
    let mut headers: Option<Cow<'_, str>> = None;
    let mut signature = None;
    let mut created = None;
    let mut expires = None;
    let mut i = skip_ws(b, 0);
    let mut count = 0;
    while i < b.len() {
        count += 1;
        if count > MAX_PARAMS {
            return Err(ParseError::TooMany);
        }
        let start = i;
        while i < b.len() && NAME_BYTE[usize::from(b[i])] {
            i += 1;
        }
        if i == start {
            return Err(ParseError::Syntax(i));
        }
        let name = &input[start..i];
        i = skip_ws(b, i);
        if i >= b.len() || b[i] != b'=' {
            return Err(ParseError::Syntax(i));
        }
        i = skip_ws(b, i + 1);
        let value: Cow<'_, str> = if i < b.len() && b[i] == b'"' {
            i += 1;
            let vstart = i;
            let mut escaped = false;
            loop {
                // Jump to the next quote or backslash instead of stepping byte by byte.
                match memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
                    None => return Err(ParseError::Unterminated),
                    Some(off) => {
                        i += off;
                        if b[i] == b'"' {
                            break;
                        }
                        escaped = true;
                        i += 2;
                    }
                }
            }
            if i > b.len() {
                return Err(ParseError::Unterminated);
            }
            let raw = &input[vstart..i];
            i += 1;
            if escaped {
                let mut s = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    } else {
                        s.push(c);
                    }
                }
                Cow::Owned(s)
            } else {
                Cow::Borrowed(raw)
            }
        } else {
            let vstart = i;
            while i < b.len() && b[i] != b',' && !is_ws(b[i]) && b[i] != b'"' {
                i += 1;
            }
            if i == vstart {
                return Err(ParseError::Syntax(i));
            }
            Cow::Borrowed(&input[vstart..i])
        };
        let mut ignored = None;
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        // Dispatched on the length first: one comparison per parameter.
        let slot: (&'static str, &mut Option<Cow<'_, str>>) = match name.len() {
            5 if is("keyid") => ("keyId", &mut key_id),
            7 if is("headers") => ("headers", &mut headers),
            7 if is("created") => ("created", &mut created),
            7 if is("expires") => ("expires", &mut expires),
            9 if is("signature") => ("signature", &mut signature),
            9 if is("algorithm") => ("algorithm", &mut algorithm),
            // The draft: parameters that are not recognised are ignored.
            _ => ("", &mut ignored),
        };
        if !slot.0.is_empty() {
            if slot.1.is_some() {
                return Err(ParseError::Duplicate(slot.0));
            }
            *slot.1 = Some(value);
        }
        i = skip_ws(b, i);
        if i < b.len() {
            if b[i] != b',' {
                return Err(ParseError::Syntax(i));
            }
            i = skip_ws(b, i + 1);
            if i >= b.len() {
                return Err(ParseError::Syntax(i));
            }
        }
    }
    let key_id = key_id.ok_or(ParseError::Missing("keyId"))?;
    let signature = signature.ok_or(ParseError::Missing("signature"))?;
    if key_id.is_empty() {
        return Err(ParseError::Missing("keyId"));
    }
    let int = |v: Option<Cow<'_, str>>, n: &'static str| -> Result<Option<i64>, ParseError> {
        match v {
            None => Ok(None),
            Some(s) => {
                let s = s.trim();
                if s.is_empty() || s.len() > 15 || !s.bytes().all(|c| c.is_ascii_digit()) {
                    Err(ParseError::NotInteger(n))
                } else {
                    s.parse().map(Some).map_err(|_| ParseError::NotInteger(n))
                }
            }
        }
    };
    let created = int(created, "created")?;
    let expires = int(expires, "expires")?;
    let headers_given = headers.is_some();
    let list = match headers {
        None => vec![Cow::Borrowed("date")],
        Some(h) => split_headers(h)?,
    };
    Ok(Params {
        key_id,
        algorithm,
        headers: list,
        headers_given,
        signature,
        created,
        expires,
    })
}

fn split_headers(h: Cow<'_, str>) -> Result<Vec<Cow<'_, str>>, ParseError> {
    let mut out = Vec::with_capacity(8);
    let mut push = |w| {
        if out.len() == MAX_HEADERS {
            return Err(ParseError::Headers("lists more than 64 entries"));
        }
        out.push(w);
        Ok(())
    };
    match h {
        Cow::Borrowed(s) => {
            // Upper case is looked for once over the whole list, then per entry only if found.
            let any_upper = has_upper(s);
            for w in words(s) {
                push(if any_upper && has_upper(w) {
                    Cow::Owned(w.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(w)
                })?;
            }
        }
        Cow::Owned(s) => {
            for w in words(&s) {
                push(Cow::Owned(w.to_ascii_lowercase()))?;
            }
        }
    }
    if out.is_empty() {
        return Err(ParseError::Headers(
            "is empty: a signature must cover something",
        ));
    }
    Ok(out)
}

/// True when `s` holds an upper-case ASCII letter (a fold without a branch per byte).
fn has_upper(s: &str) -> bool {
    s.bytes().fold(false, |u, c| u | c.is_ascii_uppercase())
}

/// The entries of a space- or tab-separated list, empty ones skipped; each entry's end found
/// by `memchr`.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        i = skip_ws(b, i);
        if i >= b.len() {
            return None;
        }
        let start = i;
        i = memchr::memchr2(b' ', b'\t', &b[i..]).map_or(b.len(), |n| i + n);
        Some(&s[start..i])
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The size of `SigBuf`.
pub const SIG_BUF_LEN: usize = 128;

/// Room for a decoded signature on the stack: HMAC (up to SHA-512), Ed25519 and ECDSA (DER
/// included) fit; RSA signatures are decoded on the heap.
pub type SigBuf = [u8; SIG_BUF_LEN];

const NOT_BASE64: ParseError = ParseError::Signature("is not standard base64 with padding");

/// Decodes a signature value: percent-decoding (either hex case) when it holds `%`, then strict
/// standard base64 with padding, into `buf` when it fits.
pub fn decode_signature<'b>(v: &str, buf: &'b mut SigBuf) -> Result<Cow<'b, [u8]>, ParseError> {
    if v.len() > MAX_SIGNATURE {
        return Err(ParseError::Signature("is too long"));
    }
    if v.is_empty() {
        return Err(ParseError::Signature("is empty"));
    }
    let b = v.as_bytes();
    let decode = |text: &[u8], buf: &'b mut SigBuf| {
        if base64::decoded_len_estimate(text.len()) <= buf.len() {
            let n = STANDARD.decode_slice(text, buf).map_err(|_| NOT_BASE64)?;
            Ok(Cow::Borrowed(&buf[..n]))
        } else {
            STANDARD
                .decode(text)
                .map(Cow::Owned)
                .map_err(|_| NOT_BASE64)
        }
    };
    let Some(first) = memchr::memchr(b'%', b) else {
        return decode(b, buf);
    };
    // Escaped values up to 768 bytes (Tyk escapes HMAC values: under 120 characters) are
    // unescaped on the stack, longer ones on the heap.
    let mut stack = [0u8; 768];
    let mut heap = Vec::new();
    let out: &mut [u8] = if b.len() <= stack.len() {
        &mut stack
    } else {
        heap.resize(b.len(), 0);
        &mut heap
    };
    out[..first].copy_from_slice(&b[..first]);
    let mut n = first;
    let mut rest = &b[first..];
    while let Some(i) = memchr::memchr(b'%', rest) {
        out[n..n + i].copy_from_slice(&rest[..i]);
        n += i;
        let (Some(h), Some(l)) = (
            rest.get(i + 1).copied().and_then(hex),
            rest.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(ParseError::Signature(
                "has a `%` that is not followed by two hex digits",
            ));
        };
        out[n] = h << 4 | l;
        n += 1;
        rest = &rest[i + 3..];
    }
    out[n..n + rest.len()].copy_from_slice(rest);
    n += rest.len();
    decode(&out[..n], buf)
}

/// How the signing string treats Tyk's quirks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// Only the first value of a repeated header (Tyk's `Header.Get`), and `X-Aux-Date` for `date`.
    pub tyk_compat: bool,
    /// A listed header that is absent reads as empty (Tyk's own verifier).
    pub absent_empty: bool,
}

/// Why a signing string could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// A listed header is not in the request.
    Absent(String),
    /// `(created)`/`(expires)` is listed but the parameter is missing.
    MissingParam(&'static str),
}

/// Appends the trimmed value(s) of a header: all lines joined with `, `, or the first only.
/// Returns how many lines the header has (0 when absent; the authority stands in for `host`)
/// and its first line.
fn push_field<'m>(
    out: &mut Vec<u8>,
    msg: &Message<'m>,
    name: &str,
    first_only: bool,
) -> (usize, Option<&'m HeaderValue>) {
    let mut lines = 0;
    let mut first = None;
    for v in msg.headers.get_all(name) {
        if lines > 0 {
            lines += 1;
            if first_only {
                continue;
            }
            out.extend_from_slice(b", ");
        } else {
            lines = 1;
            first = Some(v);
        }
        out.extend_from_slice(trim_ows(v.as_bytes()));
    }
    if lines == 0
        && name == "host"
        && let Some(a) = msg.authority
    {
        out.extend_from_slice(a.as_bytes());
        return (1, None);
    }
    (lines, first)
}

/// A value without leading and trailing spaces and tabs.
pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if is_ws(*first) {
            v = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = v {
        if is_ws(*last) {
            v = rest;
        } else {
            break;
        }
    }
    v
}

/// A signing string, and the signed date it holds.
#[derive(Debug)]
pub struct SigningString<'m> {
    /// The bytes that are signed.
    pub base: Vec<u8>,
    /// The covered date for the freshness check: `Date`'s first line, or Tyk's `X-Aux-Date`
    /// where it stood in (`tyk_compat`); `None` when `date` is not covered or is absent.
    pub date: Option<SignedDate<'m>>,
}

/// The header a covered date was read from, and its value.
#[derive(Debug, Clone, Copy)]
pub struct SignedDate<'m> {
    /// `Date` or `X-Aux-Date`.
    pub header: &'static str,
    /// The header's value.
    pub value: &'m HeaderValue,
}

/// Builds the signing string: one `name: value` line per `headers=` entry, joined by `\n`.
/// `notes` collects what a quirk changed (for `--explain` and logs).
pub fn signing_string<'m>(
    msg: &Message<'m>,
    p: &Params<'_>,
    q: Quirks,
    notes: &mut Vec<String>,
) -> Result<SigningString<'m>, BuildError> {
    let mut out = Vec::with_capacity(256);
    let mut date = None;
    for (i, name) in p.headers.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let name: &str = name;
        match name {
            "(request-target)" => {
                out.extend_from_slice(b"(request-target): ");
                for c in msg.method.bytes() {
                    out.push(c.to_ascii_lowercase());
                }
                out.push(b' ');
                out.extend_from_slice(msg.target.as_bytes());
            }
            "(created)" | "(expires)" => {
                let (v, n) = if name == "(created)" {
                    (p.created, "created")
                } else {
                    (p.expires, "expires")
                };
                let v = v.ok_or(BuildError::MissingParam(n))?;
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{v}");
            }
            _ => {
                if q.tyk_compat
                    && name == "date"
                    && let Some(aux) = msg.headers.get(&super::X_AUX_DATE)
                {
                    let text = trim_ows(aux.as_bytes());
                    if !text.is_empty() {
                        out.extend_from_slice(b"x-aux-date: ");
                        out.extend_from_slice(text);
                        date = Some(SignedDate {
                            header: "X-Aux-Date",
                            value: aux,
                        });
                        notes.push("`date` was read from X-Aux-Date (tyk_compat)".to_string());
                        continue;
                    }
                }
                let mark = out.len();
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                let (lines, first) = push_field(&mut out, msg, name, q.tyk_compat);
                if name == "date" {
                    date = first.map(|value| SignedDate {
                        header: "Date",
                        value,
                    });
                }
                if lines == 0 {
                    if q.absent_empty {
                        notes.push(format!(
                            "`{name}` is listed in headers= but absent; read as empty (tyk_absent_headers_empty)"
                        ));
                        if q.tyk_compat && name == "date" {
                            out.truncate(mark);
                            out.extend_from_slice(b": ");
                        }
                        continue;
                    }
                    return Err(BuildError::Absent(name.to_string()));
                }
                if q.tyk_compat && lines > 1 {
                    notes.push(format!(
                        "`{name}` has several lines; only the first was used (tyk_compat)"
                    ));
                }
            }
        }
    }
    Ok(SigningString { base: out, date })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_signature(v: &str) -> Result<Vec<u8>, ParseError> {
        super::decode_signature(v, &mut [0; SIG_BUF_LEN]).map(Cow::into_owned)
    }

    #[test]
    fn tyk_header_parses() {
        let v = "Signature keyId=\"tyk-gw-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) x-request-id accept date\",signature=\"ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D\"";
        let p = parse(strip_scheme(v).unwrap()).unwrap();
        assert_eq!(p.key_id, "tyk-gw-1");
        assert_eq!(p.algorithm.as_deref(), Some("hmac-sha256"));
        assert_eq!(
            p.headers,
            vec!["(request-target)", "x-request-id", "accept", "date"]
        );
        assert_eq!(decode_signature(&p.signature).unwrap().len(), 32);
        assert!(matches!(p.key_id, Cow::Borrowed(_)));
    }

    #[test]
    fn lenient_where_tyk_is() {
        let p = parse(
            " KeyID = \"a=b==\" ,  ALGORITHM=\"hmac-sha256\" , Headers = \"Date X-Request-Id\", SIGNATURE=\"abc=\", created=123, expires=\"456\", ext=\"ignored\"",
        )
        .unwrap();
        assert_eq!(p.key_id, "a=b==");
        assert_eq!(p.headers, vec!["date", "x-request-id"]);
        assert_eq!(p.created, Some(123));
        assert_eq!(p.expires, Some(456));
        let d = parse("keyId=\"k\",signature=\"x\"").unwrap();
        assert_eq!(d.headers, vec!["date"]);
        assert!(!d.headers_given);
        let e = parse(r#"keyId="a\"b\\c",signature="x""#).unwrap();
        assert_eq!(e.key_id, "a\"b\\c");
    }

    #[test]
    fn parameter_names_are_letters_digits_hyphens_and_underscores() {
        for c in (0u8..=127).map(char::from).chain(['é', '\u{a0}']) {
            let input = format!("a{c}b=\"1\",keyId=\"k\",signature=\"x\"");
            let name_byte = c.is_ascii_alphanumeric() || c == '-' || c == '_';
            assert_eq!(
                parse(&input).is_ok(),
                name_byte,
                "{c:?} in a parameter name"
            );
        }
    }

    #[test]
    fn refusals() {
        for (s, e) in [
            ("signature=\"x\"", ParseError::Missing("keyId")),
            ("keyId=\"k\"", ParseError::Missing("signature")),
            (
                "keyId=\"k\",keyid=\"j\",signature=\"x\"",
                ParseError::Duplicate("keyId"),
            ),
            ("keyId=\"k", ParseError::Unterminated),
            (
                "keyId=\"k\",headers=\"\",signature=\"x\"",
                ParseError::Headers("is empty: a signature must cover something"),
            ),
            (
                "keyId=\"k\",created=\"soon\",signature=\"x\"",
                ParseError::NotInteger("created"),
            ),
        ] {
            assert_eq!(parse(s).unwrap_err(), e, "{s}");
        }
        assert!(matches!(parse("keyId \"k\""), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse("keyId=\"k\",,signature=\"x\""),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse("keyId=\"k\",signature=\"x\","),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse("keyId=\"k\" signature=\"x\""),
            Err(ParseError::Syntax(_))
        ));
        let many = (0..20)
            .map(|i| format!("p{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse(&many).unwrap_err(), ParseError::TooMany);
        // At most 64 entries in headers=: borrowed, lower-cased and unescaped (owned) alike.
        for (sep, upper) in [(" ", false), ("\t ", true), (" \\", false)] {
            let list = |n: usize| {
                let names: Vec<String> = (0..n)
                    .map(|i| {
                        if upper {
                            format!("X-H{i}")
                        } else {
                            format!("x-h{i}")
                        }
                    })
                    .collect();
                format!(
                    "keyId=\"k\",headers=\"{}\",signature=\"x\"",
                    names.join(sep)
                )
            };
            let text = list(MAX_HEADERS);
            let p = parse(&text).unwrap();
            assert_eq!(p.headers.len(), MAX_HEADERS, "{sep:?}");
            assert_eq!(p.headers[MAX_HEADERS - 1], "x-h63", "{sep:?}");
            assert_eq!(
                parse(&list(MAX_HEADERS + 1)).unwrap_err(),
                ParseError::Headers("lists more than 64 entries"),
                "{sep:?}"
            );
        }
        assert_eq!(
            parse(&"a".repeat(MAX_LEN + 1)).unwrap_err(),
            ParseError::TooLong
        );
    }

    #[test]
    fn signature_values() {
        // Tyk's test vector: upper- and lower-case escapes decode to the same bytes.
        let up = decode_signature("j27%2FQtZHmlQuWmnQT%2BxLjHcgPl8%3D").unwrap();
        let low = decode_signature("j27%2fQtZHmlQuWmnQT%2bxLjHcgPl8%3d").unwrap();
        let raw = decode_signature("j27/QtZHmlQuWmnQT+xLjHcgPl8=").unwrap();
        assert_eq!(up, raw);
        assert_eq!(low, raw);
        assert_eq!(raw.len(), 20);
        for bad in [
            "j27%2", "j27%zz", "abc", "ab=c", "YWJj\n", "YWI", "YW I=", "",
        ] {
            assert!(decode_signature(bad).is_err(), "{bad}");
        }
        // Non-canonical trailing bits are refused (strict).
        assert!(decode_signature("YWJ=").is_err());
    }

    #[test]
    fn escaped_values_of_every_length_decode() {
        // Escaped values up to 768 bytes are unescaped on the stack, longer ones on the heap:
        // 541 and 546 bytes escape to exactly 768 characters, 545 to 770; 1024 bytes (an
        // 8192-bit RSA signature) to 1,456; 3000 bytes to more than MAX_SIGNATURE. Decoded
        // values up to 126 bytes go to the 128-byte `SigBuf` (127 bytes take 172 base64
        // characters, whose estimate is 129), longer ones to the heap.
        for n in [
            1usize, 32, 126, 127, 256, 540, 541, 545, 546, 560, 600, 1024, 3000,
        ] {
            let raw: Vec<u8> = (0..n).map(|i| (i * 7 + 0xf8) as u8).collect();
            let escaped = STANDARD
                .encode(&raw)
                .replace('+', "%2B")
                .replace('/', "%2f")
                .replace('=', "%3D");
            if escaped.len() > MAX_SIGNATURE {
                assert_eq!(
                    decode_signature(&escaped),
                    Err(ParseError::Signature("is too long"))
                );
            } else {
                assert_eq!(decode_signature(&escaped).unwrap(), raw, "{n} bytes");
            }
        }
        let long_bad = format!("{}%G0", "A".repeat(1000));
        assert!(decode_signature(&long_bad).is_err());
        // Too long for `SigBuf` and not base64 (201 characters): refused on the heap path too.
        assert_eq!(
            decode_signature(&"A".repeat(201)),
            Err(NOT_BASE64),
            "heap path"
        );
    }

    #[test]
    fn scheme_prefix() {
        assert_eq!(strip_scheme("Signature keyId=\"a\""), Some("keyId=\"a\""));
        assert_eq!(strip_scheme("signature   keyId"), Some("keyId"));
        assert_eq!(strip_scheme("SIGNATURE\tx"), Some("x"));
        assert_eq!(strip_scheme("Bearer x"), None);
        assert_eq!(strip_scheme("keyId=\"Signature \""), None);
        assert_eq!(strip_scheme("Signaturex y"), None);
    }

    fn render(p: &Params<'_>) -> String {
        let mut s = format!("keyId=\"{}\"", p.key_id);
        if let Some(a) = &p.algorithm {
            s.push_str(&format!(",algorithm=\"{a}\""));
        }
        if p.headers_given {
            s.push_str(&format!(",headers=\"{}\"", p.headers.join(" ")));
        }
        if let Some(c) = p.created {
            s.push_str(&format!(",created={c}"));
        }
        s.push_str(&format!(",signature=\"{}\"", p.signature));
        s
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            if let Ok(p) = parse(&s) {
                let _ = decode_signature(&p.signature);
            }
            let _ = strip_scheme(&s);
        }

        #[test]
        fn round_trips(
            key in "[A-Za-z0-9=+/_.-]{1,40}",
            alg in proptest::option::of("[a-z0-9-]{1,20}"),
            headers in proptest::option::of(proptest::collection::vec("[a-z(][a-z0-9-)]{0,20}", 1..10)),
            created in proptest::option::of(0i64..100_000_000_000),
            sig in proptest::collection::vec(any::<u8>(), 1..300),
        ) {
            let b64 = STANDARD.encode(&sig);
            let p = Params {
                key_id: key.clone().into(),
                algorithm: alg.map(Into::into),
                headers_given: headers.is_some(),
                headers: headers.unwrap_or_else(|| vec!["date".to_string()]).into_iter().map(Into::into).collect(),
                signature: b64.clone().into(),
                created,
                expires: None,
            };
            let text = render(&p);
            let back = parse(&text).unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(decode_signature(&back.signature).unwrap(), sig.clone());
            // The same value URL-escaped, as Tyk sends HMAC values.
            let escaped = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
            prop_assert_eq!(decode_signature(&escaped).unwrap(), sig);
        }
    }
}
