//! The key-registry loader, as a local file (YAML and JSON) and as fetched from a URL.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use countersign::config::SignatureSettings;
use countersign::registry::{Format, Registry};
use libfuzzer_sys::fuzz_target;

static SETTINGS: LazyLock<SignatureSettings> = LazyLock::new(SignatureSettings::default);

fn check(r: Result<Registry, countersign::config::ConfigError>) {
    match r {
        Ok(reg) => {
            let summary = reg.summary();
            assert_eq!(summary.len(), reg.len());
            for k in reg.keys() {
                assert!(reg.get(&k.id).is_some() || k.is_api_key());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/interop");
    let source = base.join("keys.yaml");
    for format in [Format::Yaml, Format::Json] {
        check(Registry::from_bytes(
            data, format, &source, &base, &SETTINGS,
        ));
        check(Registry::from_remote_bytes(
            data,
            format,
            "https://keys.example/registry",
            &SETTINGS,
        ));
    }
});
