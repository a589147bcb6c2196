//! RFC 9421: `Signature-Input` + `Signature` parsing and the signature base, over a raw HTTP/1.1
//! request (the format of `countersign verify --request`), without the cryptography.
#![no_main]

use countersign::signature::{Message, rfc9421};
use countersign::tools::verify::parse_raw_request;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_raw_request(data) else {
        return;
    };
    let authority = req.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let msg = Message {
        method: req.method.as_str(),
        target: &req.target,
        scheme: "https",
        authority,
        headers: &req.headers,
        status: None,
    };
    let Ok(sigs) = rfc9421::parse(&msg) else {
        return;
    };
    assert!(!sigs.is_empty() && sigs.len() <= rfc9421::MAX_SIGNATURES);
    for s in &sigs {
        assert!(s.components.len() <= rfc9421::MAX_COMPONENTS);
        if let (Some(c), Some(e)) = (s.created, s.expires) {
            assert!(e >= c);
        }
        if let Ok(base) = rfc9421::signature_base(&msg, s) {
            // One line per component, then `@signature-params`; every line names its component.
            let text = String::from_utf8_lossy(&base);
            let lines: Vec<&str> = text.split('\n').collect();
            assert_eq!(lines.len(), s.components.len() + 1, "{text}");
            for (line, c) in lines.iter().zip(&s.components) {
                assert!(
                    line.starts_with(&format!("{}: ", c.id)),
                    "{line} / {}",
                    c.id
                );
            }
            assert_eq!(
                lines[lines.len() - 1],
                format!("\"@signature-params\": {}", s.params)
            );
        }
        // The serialized parameters read back as the same signature.
        let mut h = HeaderMap::new();
        let input = format!("{}={}", s.label, s.params);
        let value = format!(
            "{}=:{}:",
            s.label,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &s.value)
        );
        let (Ok(i), Ok(v)) = (HeaderValue::from_str(&input), HeaderValue::from_str(&value)) else {
            panic!("a serialized signature is not a header value: {input} / {value}");
        };
        h.insert("signature-input", i);
        h.insert("signature", v);
        let again = rfc9421::parse(&Message { headers: &h, ..msg })
            .unwrap_or_else(|e| panic!("{input} does not parse again: {e}"));
        assert_eq!(again.len(), 1);
        assert_eq!(&again[0], s, "{input}");
    }
});
