//! Signed dates: `date::parse` with configured zones; what parses formats back to itself and
//! can be shown in a message (`registry::rfc3339`), as the verifier's refusals do.
#![no_main]

use countersign::registry::rfc3339;
use countersign::signature::date;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zones = [("CET".to_string(), 3600), ("PST".to_string(), -8 * 3600)];
    let Ok(t) = date::parse(text, &zones) else {
        return;
    };
    let shown = rfc3339(t);
    assert!(shown.ends_with('Z'), "{shown}");
    let imf = date::format_imf(t);
    assert_eq!(date::parse(&imf, &[]), Ok(t), "{text} -> {imf}");
    let tyk = date::format_tyk(t);
    assert_eq!(date::parse(&tyk, &[]), Ok(t), "{text} -> {tyk}");
});
