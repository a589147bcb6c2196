//! The PROXY protocol header: `parse_v1`, `parse_v2`, and `read_header` over the bytes as a
//! connection would deliver them (it must stop at the header's end and agree with the parsers).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use countersign::proxy_protocol::{self, ProxyHeaderError};
use libfuzzer_sys::fuzz_target;

/// The longest header `read_header` may consume (16 fixed bytes and 2048 of addresses/TLVs).
const MAX_CONSUMED: usize = 16 + 2048;

fn same(
    a: &Result<Option<std::net::SocketAddr>, ProxyHeaderError>,
    b: &Result<Option<std::net::SocketAddr>, ProxyHeaderError>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = proxy_protocol::parse_v1(data);
    let _ = proxy_protocol::parse_v2(data);

    // A byte slice never pends, so one poll finishes the read.
    let mut rest: &[u8] = data;
    let result = {
        let fut = pin!(proxy_protocol::read_header(&mut rest));
        let mut cx = Context::from_waker(Waker::noop());
        match fut.poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("read_header pended on a byte slice"),
        }
    };
    let consumed = &data[..data.len() - rest.len()];
    assert!(consumed.len() <= MAX_CONSUMED);
    if result.is_err() {
        return;
    }
    if consumed.starts_with(b"PROXY ") {
        assert!(consumed.len() <= 107);
        assert!(consumed.ends_with(b"\r\n"));
        assert!(same(&result, &proxy_protocol::parse_v1(consumed)));
    } else {
        assert!(same(&result, &proxy_protocol::parse_v2(consumed)));
    }
});
