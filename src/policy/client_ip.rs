//! Step 5a: decide the client IP (from the peer, the PROXY header, or `X-Forwarded-For` walked
//! right to left past trusted proxies). Next: the route (`routes.rs`).

use std::net::IpAddr;

use http::HeaderMap;

use super::ipset::{IpSet, canonical};

/// Why `X-Forwarded-For` could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XffError {
    /// An entry appended by a trusted proxy is not an IP address.
    #[error("X-Forwarded-For has an entry that is not an IP address")]
    Malformed,
    /// More entries than we are willing to walk.
    #[error("X-Forwarded-For has too many entries")]
    TooLong,
}

/// The most `X-Forwarded-For` entries walked.
const MAX_HOPS: usize = 64;

/// The client IP from `X-Forwarded-For`, given the connection's peer.
///
/// From an untrusted peer the header is ignored (the peer is the client). From a trusted peer, the
/// entries are walked right to left; the first one that is not a trusted proxy is the client. If
/// every entry is trusted, the leftmost is the client. A client can prepend anything it likes, but
/// the walk stops at the address the first trusted proxy saw, so a forged left part is never used.
pub fn from_xff(peer: IpAddr, headers: &HeaderMap, trusted: &IpSet) -> Result<IpAddr, XffError> {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return Ok(peer);
    }
    let mut current = peer;
    let mut hops = 0usize;
    // Header lines are in order; the right-most entry of the last line is the nearest hop.
    for value in headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .rev()
    {
        let Ok(s) = value.to_str() else {
            return Err(XffError::Malformed);
        };
        for part in s.rsplit(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(XffError::TooLong);
            }
            let ip = parse_entry(part).ok_or(XffError::Malformed)?;
            current = canonical(ip);
            if !trusted.contains(current) {
                return Ok(current);
            }
        }
    }
    Ok(current)
}

/// An XFF entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hdrs(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
        }
        h
    }
    fn trusted() -> IpSet {
        IpSet::new(&["10.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let ip = from_xff(
            "198.51.100.1".parse().unwrap(),
            &hdrs(&["203.0.113.5"]),
            &trusted(),
        )
        .unwrap();
        assert_eq!(ip, "198.51.100.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forged_left_part_is_skipped() {
        // client 198.51.100.9 forged 203.0.113.5; the LB (10.1.1.1) appended the real address.
        let h = hdrs(&["203.0.113.5, 198.51.100.9"]);
        let ip = from_xff("10.1.1.1".parse().unwrap(), &h, &trusted()).unwrap();
        assert_eq!(ip, "198.51.100.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn walks_past_several_trusted_hops_and_lines() {
        let h = hdrs(&["198.51.100.9, 10.2.2.2", "10.3.3.3"]);
        let ip = from_xff("10.1.1.1".parse().unwrap(), &h, &trusted()).unwrap();
        assert_eq!(ip, "198.51.100.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn all_trusted_gives_leftmost_and_ports_are_ignored() {
        let h = hdrs(&["10.9.9.9:443, [::ffff:10.8.8.8]:80"]);
        let ip = from_xff("10.1.1.1".parse().unwrap(), &h, &trusted()).unwrap();
        assert_eq!(ip, "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_reached_in_the_walk_is_malformed() {
        let h = hdrs(&["nonsense"]);
        assert_eq!(
            from_xff("10.1.1.1".parse().unwrap(), &h, &trusted()),
            Err(XffError::Malformed)
        );
        // but garbage left of the client is never reached
        let h = hdrs(&["nonsense, 198.51.100.9"]);
        assert!(from_xff("10.1.1.1".parse().unwrap(), &h, &trusted()).is_ok());
    }

    #[test]
    fn no_header_from_trusted_peer_gives_peer() {
        let ip = from_xff("10.1.1.1".parse().unwrap(), &HeaderMap::new(), &trusted()).unwrap();
        assert_eq!(ip, "10.1.1.1".parse::<IpAddr>().unwrap());
    }
}
