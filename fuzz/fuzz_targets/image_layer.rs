//! Layer tars unpacked into a fresh root: any bytes give entries or an error, never a panic,
//! and nothing is written outside the root (a canary beside it stays untouched).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("cloister-fuzz-layer-{}", std::process::id()));
    let root = base.join("root");
    let _ = std::fs::remove_dir_all(&base);
    if std::fs::create_dir_all(&root).is_err() {
        return;
    }
    let canary = base.join("canary");
    let _ = std::fs::write(&canary, b"canary");
    if let Ok(unpacker) = image::unpack::Root::open(&root) {
        let _ = unpacker.apply(data, "sha256:fuzz");
    }
    assert_eq!(std::fs::read(&canary).ok().as_deref(), Some(&b"canary"[..]));
    let outside: Vec<_> = std::fs::read_dir(&base)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(outside.len() <= 2, "written beside the root: {outside:?}");
    let _ = std::fs::remove_dir_all(&base);
});
