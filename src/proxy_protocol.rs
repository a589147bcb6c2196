//! Step 1a: the PROXY protocol header (v1 text, v2 binary) that AWS NLB and HAProxy put before the
//! TLS bytes. Read exactly the header, never a byte more, so the TLS handshake that follows is intact.
//! Parsing is `ppp`'s. Next: the TLS handshake (`tls`).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line (spec: 107 bytes with CRLF).
const V1_MAX: usize = 107;
/// The longest v2 header accepted (16 fixed bytes and addresses/TLVs).
const V2_MAX: usize = 16 + 2048;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection did not start with a PROXY header.
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    /// The header could not be parsed.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The header is longer than accepted.
    #[error("PROXY protocol header too long")]
    TooLong,
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one PROXY header; `Ok(None)` for `LOCAL`/`UNKNOWN` (a health check from the balancer
/// itself: use the TCP peer).
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut first = [0u8; 6];
    s.read_exact(&mut first).await?;
    if &first == b"PROXY " {
        let mut line = Vec::with_capacity(V1_MAX);
        line.extend_from_slice(&first);
        loop {
            if line.len() >= V1_MAX {
                return Err(ProxyHeaderError::TooLong);
            }
            let b = s.read_u8().await?;
            line.push(b);
            if line.ends_with(b"\r\n") {
                break;
            }
        }
        return parse_v1(&line);
    }
    if first != V2_SIG[..6] {
        return Err(ProxyHeaderError::Missing);
    }
    let mut head = [0u8; 16];
    head[..6].copy_from_slice(&first);
    s.read_exact(&mut head[6..]).await?;
    if head[..12] != V2_SIG {
        return Err(ProxyHeaderError::Missing);
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if 16 + len > V2_MAX {
        return Err(ProxyHeaderError::TooLong);
    }
    let mut buf = vec![0u8; 16 + len];
    buf[..16].copy_from_slice(&head);
    s.read_exact(&mut buf[16..]).await?;
    parse_v2(&buf)
}

/// Parses a complete v1 line (with CRLF).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let h =
        ppp::v1::Header::try_from(line).map_err(|e| ProxyHeaderError::Invalid(e.to_string()))?;
    Ok(match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Unknown => None,
    })
}

/// Parses a complete v2 header.
pub fn parse_v2(buf: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let h = ppp::v2::Header::try_from(buf).map_err(|e| ProxyHeaderError::Invalid(e.to_string()))?;
    if h.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match h.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

/// Encodes a v2 PROXY header for `src` → `dst` (for tests and the benchmark client).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_reads_exactly_the_line() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n\x16\x03\x01";
        let a = read_header(&mut input).await.unwrap().unwrap();
        assert_eq!(a, "203.0.113.7:51000".parse().unwrap());
        assert_eq!(input, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn v2_reads_exactly_the_header() {
        let mut bytes = encode_v2(
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        bytes.extend_from_slice(b"\x16\x03\x01");
        let mut input: &[u8] = &bytes;
        let a = read_header(&mut input).await.unwrap().unwrap();
        assert_eq!(a, "[2001:db8::7]:40000".parse().unwrap());
        assert_eq!(input, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn unknown_and_local_give_none() {
        let mut input: &[u8] = b"PROXY UNKNOWN\r\n";
        assert!(read_header(&mut input).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn tls_without_header_is_refused() {
        let mut input: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc";
        assert!(matches!(
            read_header(&mut input).await,
            Err(ProxyHeaderError::Missing)
        ));
        let mut input: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_header(&mut input).await,
            Err(ProxyHeaderError::Missing)
        ));
    }

    #[tokio::test]
    async fn garbage_v1_is_invalid_and_long_v1_is_cut() {
        let mut input: &[u8] = b"PROXY TCP4 nonsense\r\n";
        assert!(matches!(
            read_header(&mut input).await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        let mut input: &[u8] = long.as_bytes();
        assert!(matches!(
            read_header(&mut input).await,
            Err(ProxyHeaderError::TooLong)
        ));
    }
}
