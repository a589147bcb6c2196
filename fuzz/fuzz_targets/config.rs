//! The configuration loader: `Config::from_yaml_str`, with files resolved against the test
//! fixtures.
#![no_main]

use std::path::Path;

use countersign::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/interop");
    match Config::from_yaml_str(text, &base.join("countersign.yaml"), &base) {
        Ok(c) => {
            let _ = countersign::signature::config_warnings(&c.signature);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
