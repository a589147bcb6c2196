//! draft-cavage parameters: `strip_scheme`, `parse`, `decode_signature`, and the signing string
//! built from what was parsed. Input: one header value (with or without `Signature `).
#![no_main]

use countersign::signature::Message;
use countersign::signature::cavage::{self, Quirks};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn message(headers: &HeaderMap) -> Message<'_> {
    Message {
        method: "POST",
        target: "/foo?param=value&pet=dog",
        scheme: "https",
        authority: Some("example.com"),
        headers,
        status: None,
    }
}

fuzz_target!(|data: &[u8]| {
    // What a header value can hold: no CR, LF or NUL.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if HeaderValue::from_str(text).is_err() {
        return;
    }
    let params = cavage::strip_scheme(text).unwrap_or(text);
    if let Ok(p) = cavage::parse(params) {
        assert!(!p.key_id.is_empty());
        assert!(!p.headers.is_empty() && p.headers.len() <= cavage::MAX_HEADERS);
        for h in &p.headers {
            assert!(!h.is_empty());
            assert!(
                !h.bytes()
                    .any(|b| b.is_ascii_uppercase() || b == b' ' || b == b'\t')
            );
        }
        if let Ok(sig) = cavage::decode_signature(&p.signature, &mut [0; cavage::SIG_BUF_LEN]) {
            assert!(sig.len() <= cavage::MAX_SIGNATURE / 4 * 3);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "date",
            HeaderValue::from_static("Sun, 05 Jan 2014 21:31:40 GMT"),
        );
        headers.append("x-dup", HeaderValue::from_static("a"));
        headers.append("x-dup", HeaderValue::from_static(" b "));
        headers.insert("x-aux-date", HeaderValue::from_static(""));
        let msg = message(&headers);
        for tyk_compat in [false, true] {
            let q = Quirks {
                tyk_compat,
                absent_empty: tyk_compat,
            };
            let mut notes = Vec::new();
            if let Ok(s) = cavage::signing_string(&msg, &p, q, &mut notes) {
                // One line per covered entry: header values hold no line feed.
                assert_eq!(
                    s.base.iter().filter(|&&b| b == b'\n').count() + 1,
                    p.headers.len()
                );
                // The date handed to the freshness check is the covered one.
                assert_eq!(s.date.is_some(), p.headers.iter().any(|h| h == "date"));
            }
        }
    }
    if let Ok(sig) = cavage::decode_signature(text, &mut [0; cavage::SIG_BUF_LEN]) {
        assert!(sig.len() <= cavage::MAX_SIGNATURE / 4 * 3);
    }
});
