//! Manifests in any format: parsing, validation (with the template dry run), conversion and
//! reading a package update must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = manifest::Manifest::parse(data) {
        let _ = parsed.manifest.validate();
        let _ = parsed.manifest.as_package_update();
        let _ = parsed.manifest.to_json();
        let _ = parsed.manifest.to_yaml();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = manifest::Template::parse(text);
    }
});
