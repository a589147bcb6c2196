//! `X-Request-Id`: kept when the caller sent a sane one, made when not.
//!
//! Made ids are 32 hex digits: a random per-thread prefix and a per-thread counter, so making one
//! needs no system call, lock or shared atomic.

use std::cell::Cell;

use http::{HeaderMap, HeaderValue};

use crate::headers::X_REQUEST_ID;

thread_local! {
    static NEXT: Cell<(u64, u64)> = Cell::new((random_u64(), 0));
}

fn random_u64() -> u64 {
    // getrandom does not fail on Linux; the clock is a last resort that still keeps threads apart.
    ring::rand::generate::<[u8; 8]>(&ring::rand::SystemRandom::new())
        .map(|r| u64::from_le_bytes(r.expose()))
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        })
}

/// A new id.
pub fn make() -> HeaderValue {
    let (prefix, n) = NEXT.with(|c| {
        let (p, n) = c.get();
        c.set((p, n.wrapping_add(1)));
        (p, n)
    });
    let mut buf = [0u8; 32];
    hex::encode_to_slice(prefix.to_be_bytes(), &mut buf[..16]).expect("16 hex digits fit");
    hex::encode_to_slice(n.to_be_bytes(), &mut buf[16..]).expect("16 hex digits fit");
    HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
}

/// The caller's id when it is 1..=200 visible ASCII characters, otherwise a new one.
pub fn get_or_make(h: &HeaderMap) -> HeaderValue {
    match h.get(X_REQUEST_ID) {
        Some(v)
            if (1..=200).contains(&v.len())
                && v.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
        {
            v.clone()
        }
        _ => make(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_hex() {
        let a = make();
        let b = make();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn sane_ids_are_kept_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(get_or_make(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(get_or_make(&h), "has space");
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(201)).unwrap(),
        );
        assert_eq!(get_or_make(&h).len(), 32);
    }
}
