//! Hostile input over HTTP/2 (ALPN h2): malformed header blocks written frame by frame (uppercase
//! names, connection-specific headers, CR/LF in values, content-length lies), oversized and endless
//! header lists, rapid reset, and the HTTP/1.1 attacks that still apply (duplicate signatures,
//! forged identity headers, path tricks, replay) sent with the `h2` crate, which leaves `:path`
//! and header names as given.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::h2_idle::ends_gracefully_after;
use crate::hostile::*;
use crate::support::*;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

const PROTOCOL_ERROR: u32 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One HTTP/2 frame.
#[derive(Debug)]
struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of RST_STREAM and GOAWAY.
    fn error_code(&self) -> u32 {
        let at = if self.ty == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literals without indexing, names and values sent as given (no Huffman).
fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// The pseudo-headers of a GET of `path`, then `extra`.
fn request<'a>(method: &'a [u8], path: &'a [u8], extra: &[(&'a [u8], &'a [u8])]) -> Vec<u8> {
    let mut f: Vec<(&[u8], &[u8])> = vec![
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path),
    ];
    f.extend_from_slice(extra);
    hpack(&f)
}

/// Decodes the `:status` of a server's first response on a connection (static index, or a
/// literal whose value is Huffman-coded digits, as h2 writes it).
fn status_of_block(block: &[u8]) -> u16 {
    let b = block[0];
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => 200,
            9 => 204,
            10 => 206,
            11 => 304,
            12 => 400,
            13 => 404,
            14 => 500,
            i => panic!("indexed field {i} is not a static :status"),
        };
    }
    let name_index = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
    assert_eq!(name_index, 8, "the first field is :status");
    let (huffman, len) = (block[1] & 0x80 != 0, (block[1] & 0x7f) as usize);
    let value = &block[2..2 + len];
    let text = if huffman {
        huffman_digits(value)
    } else {
        String::from_utf8(value.to_vec()).unwrap()
    };
    text.parse().unwrap()
}

/// Huffman-decodes a string of ASCII digits (RFC 7541 appendix B).
fn huffman_digits(v: &[u8]) -> String {
    const CODES: [(u32, u32); 10] = [
        (0b00000, 5),
        (0b00001, 5),
        (0b00010, 5),
        (0b011001, 6),
        (0b011010, 6),
        (0b011011, 6),
        (0b011100, 6),
        (0b011101, 6),
        (0b011110, 6),
        (0b011111, 6),
    ];
    let mut out = String::new();
    let (mut code, mut bits) = (0u32, 0u32);
    for byte in v {
        for i in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> i) & 1);
            bits += 1;
            if let Some(d) = CODES.iter().position(|&(c, n)| n == bits && c == code) {
                out.push(char::from(b'0' + d as u8));
                code = 0;
                bits = 0;
            }
        }
    }
    assert_eq!(code, (1 << bits) - 1, "EOS padding");
    out
}

/// A header block as HEADERS (END_STREAM) and CONTINUATION frames of at most 16,000 bytes.
fn header_frames(stream: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(16000).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let ty = if i == 0 { HEADERS } else { CONTINUATION };
        let mut flags = if i == 0 { END_STREAM } else { 0 };
        if i == chunks.len() - 1 {
            flags |= END_HEADERS;
        }
        out.extend(frame(ty, flags, stream, c));
    }
    out
}

/// An HTTP/2 connection written frame by frame.
struct Raw {
    s: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(pki: &Pki, addr: std::net::SocketAddr, cert: bool) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let cfg = client_tls(pki, cert.then_some(&pki.client), &[b"h2"]);
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        Raw { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// The next frame that is not connection housekeeping (SETTINGS are acknowledged, PINGs
    /// answered); `None` when the connection closes or nothing comes within 5 s.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            while self.buf.len() < 9 || self.buf.len() < 9 + self.len() {
                let mut chunk = [0u8; 16384];
                let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            let len = self.len();
            let f = Frame {
                ty: self.buf[3],
                flags: self.buf[4],
                stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                payload: self.buf[9..9 + len].to_vec(),
            };
            self.buf.drain(..9 + len);
            match f.ty {
                SETTINGS if f.flags & ACK == 0 => {
                    let ack = frame(SETTINGS, ACK, 0, &[]);
                    let _ = self.s.write_all(&ack).await;
                }
                SETTINGS | 0x8 => {}
                PING if f.flags & ACK == 0 => {
                    let pong = frame(PING, ACK, 0, &f.payload);
                    let _ = self.s.write_all(&pong).await;
                }
                _ => return Some(f),
            }
        }
    }

    fn len(&self) -> usize {
        if self.buf.len() < 3 {
            return 0;
        }
        (usize::from(self.buf[0]) << 16)
            | (usize::from(self.buf[1]) << 8)
            | usize::from(self.buf[2])
    }

    /// The next frame on `stream` (frames of other streams are skipped).
    async fn on(&mut self, stream: u32) -> Option<Frame> {
        loop {
            let f = self.next().await?;
            if f.stream == stream || f.ty == GOAWAY {
                return Some(f);
            }
        }
    }

    /// Sends a good GET on `stream` and asserts it is answered 200.
    async fn good(&mut self, stream: u32) {
        let block = request(b"GET", b"/public/h2-alive", &[]);
        self.send(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block))
            .await;
        let f = self.on(stream).await.expect("a response");
        assert_eq!(f.ty, HEADERS, "{f:?}");
        assert_eq!(status_of_block(&f.payload), 200);
    }
}

#[tokio::test]
async fn malformed_h2_requests_are_reset_and_never_forwarded() {
    let b = Bench::new("").await;
    let get = |extra: &[(&[u8], &[u8])]| request(b"GET", b"/public/a", extra);
    // Malformed requests (RFC 9113 section 8.1.1): the stream is reset, the connection goes on.
    let stream_errors: Vec<(&str, Vec<u8>)> = vec![
        (
            "connection: x-countersign-key-id",
            get(&[(b"connection", b"x-countersign-key-id")]),
        ),
        (
            "transfer-encoding",
            get(&[(b"transfer-encoding", b"chunked")]),
        ),
        ("keep-alive", get(&[(b"keep-alive", b"timeout=5")])),
        ("upgrade", get(&[(b"upgrade", b"websocket")])),
        ("proxy-connection", get(&[(b"proxy-connection", b"close")])),
        ("te: gzip", get(&[(b"te", b"gzip")])),
        (
            "a pseudo-header after a regular one",
            hpack(&[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b"x-a", b"1"),
                (b":path", b"/public/a"),
            ]),
        ),
        (
            "a :path not in origin form",
            request(b"GET", b"public/a", &[]),
        ),
        ("two :path", get(&[(b":path", b"/admin")])),
    ];
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let mut stream = 1;
    for (what, block) in &stream_errors {
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, stream, block))
            .await;
        let f = raw
            .on(stream)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(
            (f.ty, f.error_code()),
            (RST_STREAM, PROTOCOL_ERROR),
            "{what}"
        );
        stream += 2;
    }
    // Content-length lies (the HTTP/2 form of a CL/TE desync): more or fewer DATA bytes than said.
    for (what, cl, data) in [
        (
            "more DATA than content-length",
            &b"5"[..],
            &b"0123456789"[..],
        ),
        ("less DATA than content-length", &b"10"[..], &b"01234"[..]),
    ] {
        let block = request(b"POST", b"/public/cl", &[(b"content-length", cl)]);
        let mut bytes = frame(HEADERS, END_HEADERS, stream, &block);
        bytes.extend(frame(DATA, END_STREAM, stream, data));
        raw.send(&bytes).await;
        let f = raw
            .on(stream)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(
            (f.ty, f.error_code()),
            (RST_STREAM, PROTOCOL_ERROR),
            "{what}"
        );
        stream += 2;
    }
    raw.good(stream).await;
    drop(raw);
    // Fields that cannot be decoded at all (h2 treats them as an HPACK failure): GOAWAY
    // PROTOCOL_ERROR, the connection closes.
    let connection_errors: Vec<(&str, Vec<u8>)> = vec![
        ("an uppercase header name", get(&[(b"X-Upper", b"1")])),
        (
            "CR LF in a value",
            get(&[(b"x-a", b"1\r\nx-countersign-key-id: root")]),
        ),
        ("a NUL in a value", get(&[(b"x-a", b"a\0b")])),
        ("a space in a name", get(&[(b"x a", b"1")])),
        ("an unknown pseudo-header", get(&[(b":evil", b"1")])),
    ];
    for (what, block) in &connection_errors {
        let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
            .await;
        let f = raw
            .on(1)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!((f.ty, f.error_code()), (GOAWAY, PROTOCOL_ERROR), "{what}");
        assert!(
            raw.next().await.is_none(),
            "{what}: closed after the GOAWAY"
        );
    }
    // No :path at all is not refused by h2: hyper reads it as `/`, which here needs a signature.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &hpack(&[(b":method", b"GET"), (b":scheme", b"https")]),
    ))
    .await;
    let f = raw.on(1).await.expect("an answer");
    assert_eq!(f.ty, HEADERS);
    assert_eq!(status_of_block(&f.payload), 401);
    drop(raw);
    assert_eq!(b.be.targets(), ["/public/h2-alive"]);
    b.still_serves("malformed h2 requests").await;
    b.sc.stop().await;
}

#[tokio::test]
async fn oversized_and_endless_h2_header_lists() {
    let b = Bench::new("").await;
    // 40 KB of headers: over limits.max_header_bytes (32 KiB), which is also the advertised
    // SETTINGS_MAX_HEADER_LIST_SIZE: 431, and the connection goes on.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let big = "a".repeat(1000);
    let names: Vec<String> = (0..40).map(|i| format!("x-big-{i}")).collect();
    let fields: Vec<(&[u8], &[u8])> = names
        .iter()
        .map(|n| (n.as_bytes(), big.as_bytes()))
        .collect();
    raw.send(&header_frames(1, &request(b"GET", b"/public/big", &fields)))
        .await;
    let f = raw.on(1).await.expect("an answer");
    assert_eq!(f.ty, HEADERS, "{f:?}");
    assert_eq!(status_of_block(&f.payload), 431);
    raw.good(3).await;
    drop(raw);

    // 1 MB of headers in CONTINUATION frames: the connection is closed.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let huge = "a".repeat(16000);
    let names: Vec<String> = (0..64).map(|i| format!("x-huge-{i}")).collect();
    let fields: Vec<(&[u8], &[u8])> = names
        .iter()
        .map(|n| (n.as_bytes(), huge.as_bytes()))
        .collect();
    let bytes = header_frames(1, &request(b"GET", b"/public/huge", &fields));
    let _ = raw.s.write_all(&bytes).await;
    let mut goaway = None;
    while let Some(f) = raw.next().await {
        if f.ty == GOAWAY {
            goaway = Some(f.error_code());
        }
    }
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "then the connection closes"
    );

    // A CONTINUATION flood: endless one-byte header block fragments.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let block = request(b"GET", b"/public/flood", &[]);
    let mut bytes = frame(HEADERS, END_STREAM, 1, &block);
    for _ in 0..20_000 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[0x00]));
    }
    let _ = raw.s.write_all(&bytes).await;
    let mut goaway = None;
    while let Some(f) = raw.next().await {
        if f.ty == GOAWAY {
            goaway = Some(f.error_code());
        }
    }
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM));
    assert!(b.be.targets().iter().all(|t| t == "/public/h2-alive"));
    b.still_serves("oversized h2 header lists").await;
    b.sc.stop().await;
}

#[tokio::test]
async fn rapid_reset_is_tolerated_up_to_the_limit_then_the_connection_is_closed() {
    let b = Bench::new("").await;
    // 32 streams opened and reset at once (under max_pending_accept_reset_streams, 64): the
    // connection stays up and serves.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let mut bytes = Vec::new();
    let block = request(b"GET", b"/public/reset", &[]);
    for i in 0..32u32 {
        let id = 1 + 2 * i;
        bytes.extend(frame(HEADERS, END_HEADERS, id, &block));
        bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    raw.send(&bytes).await;
    raw.good(65).await;
    drop(raw);

    // 5,000 at once: GOAWAY ENHANCE_YOUR_CALM and the connection closes.
    let mut raw = Raw::open(&b.pki, b.sc.addr, false).await;
    let mut bytes = Vec::new();
    for i in 0..5_000u32 {
        let id = 1 + 2 * i;
        bytes.extend(frame(HEADERS, END_HEADERS, id, &block));
        bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = raw.s.write_all(&bytes).await;
    let mut goaway = None;
    while let Some(f) = raw.next().await {
        if f.ty == GOAWAY {
            goaway = Some(f.error_code());
        }
    }
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM));
    // Streams are reset before a request body could start: the backend may see a few heads,
    // never thousands.
    let seen = b.be.count();
    assert!(seen < 1_000, "{seen} requests reached the backend");
    b.still_serves("a rapid reset flood").await;
    b.sc.stop().await;
}

/// An `h2` crate connection: `:path` and header names exactly as given.
async fn h2_client(b: &Bench, cert: bool) -> h2::client::SendRequest<Bytes> {
    h2_connection(b, cert).await.0
}

/// [`h2_client`], and the connection's task, which ends when the connection closes.
async fn h2_connection(
    b: &Bench,
    cert: bool,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(b.sc.addr).await.unwrap();
    let cfg = client_tls(&b.pki, cert.then_some(&b.pki.client), &[b"h2"]);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(conn))
}

/// Sends a GET of `path` with `headers`; returns the status and the JSON body.
async fn h2_get(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut req = http::Request::get(format!("https://localhost{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut send = send.clone().ready().await.unwrap();
    let (resp, _) = send.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn the_http1_attacks_over_h2() {
    let b = Bench::new("").await;
    let mut c = h2_client(&b, true).await;
    let sign = |target: &str| {
        let d = now_date();
        let n = nonce();
        let p = cavage_params(
            "GET",
            target,
            &[("Date", d.as_str()), ("X-Nonce", n.as_str())],
            &hmac(),
            "hmac-1",
            None,
            COVER,
        );
        (d, n, format!("Signature {p}"))
    };
    // Duplicate signature headers.
    let (d, n, auth) = sign("/h2");
    let (status, v) = h2_get(
        &mut c,
        "/h2",
        &[
            ("date", &d),
            ("x-nonce", &n),
            ("authorization", &auth),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("malformed_signature"))
    );
    let (status, _) = h2_get(
        &mut c,
        "/h2",
        &[
            ("date", &d),
            ("x-nonce", &n),
            ("signature", auth.trim_start_matches("Signature ")),
            ("signature", auth.trim_start_matches("Signature ")),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // Path tricks, sent as :path verbatim.
    for (path, want) in [
        ("/admin/..%2Fpublic", 400),
        ("/public/..%2Fadmin", 400),
        ("/admin%3Fx", 400),
        ("/public/../admin", 401),
        ("/public/%2e%2e/admin", 401),
        ("//admin", 401),
    ] {
        let (status, v) = h2_get(&mut c, path, &[]).await;
        assert_eq!(status, want, "{path}: {v}");
    }
    assert!(b.be.targets().is_empty(), "{:?}", b.be.targets());
    // Forged identity headers next to a good signature, and the path byte for byte.
    let target = "/public/../admin/x%2Fy?q=1";
    let (d, n, auth) = sign(target);
    let (status, v) = h2_get(
        &mut c,
        target,
        &[
            ("date", &d),
            ("x-nonce", &n),
            ("authorization", &auth),
            ("x-countersign-key-id", "root"),
            ("x_countersign_key_id", "root"),
            ("x-countersign-cert-subject", "CN=root"),
            ("x-forwarded-client-cert", "Hash=00"),
            ("client-cert", ":AAAA:"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let seen = b.be.last();
    assert_eq!(seen.target, target);
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "h2 in front, HTTP/1.1 behind"
    );
    assert_eq!(
        seen.headers
            .get_all("x-countersign-key-id")
            .iter()
            .collect::<Vec<_>>(),
        ["hmac-1"]
    );
    assert_eq!(seen.headers["x-countersign-cert-subject"], "CN=tyk-edge");
    for gone in [
        "x_countersign_key_id",
        "x-forwarded-client-cert",
        "client-cert",
    ] {
        assert!(seen.headers.get(gone).is_none(), "{gone}");
    }
    // The same signed request again, over HTTP/1.1 this time: a replay across protocols.
    let again = raw(
        "GET",
        target,
        &[("Date", &d), ("X-Nonce", &n), ("Authorization", &auth)],
        "",
    );
    b.refused_as(
        true,
        "a replay of an h2 request over HTTP/1.1",
        &again,
        401,
        Some("replayed"),
    )
    .await;
    // And an HTTP/1.1 request replayed over h2.
    let first = signed_get("/public/../x");
    let resp = b.send(false, &first).await.unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    let text = String::from_utf8(first).unwrap();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .to_string()
    };
    let (status, v) = h2_get(
        &mut c,
        "/public/../x",
        &[
            ("date", &header("Date")),
            ("x-nonce", &header("X-Nonce")),
            ("authorization", &header("Authorization")),
        ],
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (401, Some("replayed")));
    b.sc.stop().await;
}

/// The keep-alive idle limit (`limits.header_read_timeout`) closes an HTTP/2 connection that has
/// had no request for that long, as hyper does for HTTP/1.1: gracefully (the client's connection
/// ends without an error), and never while a request is in flight or requests keep coming.
#[tokio::test]
async fn an_idle_h2_connection_is_closed() {
    const IDLE: Duration = Duration::from_secs(1);
    let b = Bench::new("limits:\n  header_read_timeout: 1s\n").await;
    let (mut send, mut conn) = h2_connection(&b, false).await;
    assert_eq!(h2_get(&mut send, "/public/first", &[]).await.0, 200);

    // An upload that trickles for 2.4 s (more than twice the limit) is in flight the whole time.
    let mut ready = send.clone().ready().await.unwrap();
    let req = http::Request::post("https://localhost/public/upload")
        .body(())
        .unwrap();
    let (resp, mut body) = ready.send_request(req, false).unwrap();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        body.send_data(Bytes::from(format!("part {i};")), i == 5)
            .unwrap();
    }
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("the upload's answer")
        .expect("the upload was served on the same connection");
    assert_eq!(resp.status(), 200);
    assert!(!conn.is_finished(), "closed with a request in flight");

    // A request every 200 ms for 1.2 s: never idle for the limit.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _) = h2_get(&mut send, &format!("/public/steady/{i}"), &[]).await;
        assert_eq!(status, 200);
    }
    assert!(!conn.is_finished(), "closed while requests kept coming");

    // Then nothing: the connection is closed after the limit (and at most a quarter more), with
    // a GOAWAY the client's connection ends on without an error.
    ends_gracefully_after(&mut conn, IDLE).await;
    let seen = b.be.targets();
    assert!(seen.contains(&"/public/upload".to_string()), "{seen:?}");
    b.still_serves("an idle HTTP/2 connection closed").await;
    b.sc.stop().await;
}

/// A sidecar without TLS (HTTP/1.1 or HTTP/2 detected from a connection's first bytes) in front of
/// a recorder, every path anonymous, with `header_read_timeout` as given. The PKI holds the
/// config's directory and must outlive the sidecar.
async fn plain_sidecar(header_read_timeout: &str) -> (Pki, Recorder, Sidecar) {
    let pki = Pki::new();
    let be = Recorder::start().await;
    let yaml = format!(
        "upstream: http://{{UP}}\nlog:\n  access: off\nlimits:\n  header_read_timeout: {header_read_timeout}\nroutes:\n  - path: /\n    require: []\n"
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    (pki, be, sc)
}

/// The same over a plain connection, where HTTP/2 is detected from the client's first bytes.
#[tokio::test]
async fn an_idle_h2c_connection_is_closed() {
    let (_pki, be, sc) = plain_sidecar("300ms").await;
    let tcp = TcpStream::connect(sc.addr).await.unwrap();
    let (mut send, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(h2_get(&mut send, "/plain", &[]).await.0, 200);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle h2c connection was not closed");
    ended.unwrap().expect("closed gracefully");
    assert_eq!(be.targets(), vec!["/plain".to_string()]);
    sc.stop().await;
}

/// A TLS connection that agrees on h2 and then never sends the connection preface is closed:
/// hyper would wait for the preface for ever, even after the GOAWAY the idle limit sends, so the
/// connection is dropped once it has been idle for the limit a second time.
#[tokio::test]
async fn an_h2_connection_without_a_preface_is_closed() {
    let b = Bench::new("limits:\n  header_read_timeout: 300ms\n").await;
    let tcp = TcpStream::connect(b.sc.addr).await.unwrap();
    let cfg = client_tls(&b.pki, None, &[b"h2"]);
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "a connection without a preface was kept open"
    );
    b.still_serves("a connection without a preface closed")
        .await;
    b.sc.stop().await;
}

/// A plain connection that sends nothing, or only part of the HTTP/2 preface, is closed by the
/// same limit: hyper-util's protocol detection would wait for the first bytes for ever.
#[tokio::test]
async fn a_plain_connection_that_never_shows_its_protocol_is_closed() {
    let (_pki, be, sc) = plain_sidecar("300ms").await;
    for (what, sent) in [
        ("nothing", &b""[..]),
        ("half a preface", &b"PRI * HTTP/2.0\r\n"[..]),
    ] {
        let mut tcp = TcpStream::connect(sc.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
        assert!(
            closed.is_ok(),
            "a plain connection that sent {what} was kept open"
        );
    }
    let raw = raw_plain(
        sc.addr,
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&raw), 200);
    assert_eq!(be.targets(), vec!["/after".to_string()]);
    sc.stop().await;
}
