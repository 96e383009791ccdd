//! OCI references: parsing never panics, and what parses prints back to a reference that
//! parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = image::Reference::parse(text) {
        let _ = reference.is_loopback();
        let again = image::Reference::parse(&reference.to_string());
        assert_eq!(again.as_ref(), Ok(&reference), "{text:?} → {reference}");
    }
});
