//! The route-matching form of a path: `policy::path::for_matching` and its invariants.
#![no_main]

use std::borrow::Cow;

use countersign::policy::path::for_matching;
use libfuzzer_sys::fuzz_target;

/// What a normalized path is: absolute, no empty, `.` or `..` segment, no `\` and no `;`.
fn check_normal(p: &str, raw: &str) {
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    assert!(!p.contains('\\') && !p.contains(';'), "{raw:?} -> {p:?}");
    let inner = p.strip_suffix('/').unwrap_or(p);
    if !inner.is_empty() {
        for seg in inner[1..].split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{raw:?} -> {p:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let once = for_matching(raw);
    if let Cow::Borrowed(b) = &once {
        assert_eq!(*b, raw);
        assert!(!raw.contains('%'));
    }
    check_normal(&once, raw);
    // Normalizing again changes nothing, unless a second level of escapes remains (a backend
    // decoding once would not decode it either).
    if !once.contains('%') {
        assert_eq!(for_matching(&once), once, "{raw:?}");
    }
});
