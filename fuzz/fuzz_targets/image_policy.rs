//! Signature policies (containers-policy.json): parsing never panics, and a parsed policy
//! always names requirements for an image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = image::policy::Policy::parse(data) {
        for name in ["docker://reg.example.com:5000/team/app:1", "oci:/tmp/layout:tag"] {
            if let Ok(name) = image::ImageName::parse(name) {
                let _ = policy.requirements_for(&name);
            }
        }
    }
});
