//! Shared helpers: locating and reading the real-hardware vectors, parsing times.

#![allow(dead_code)]

use std::path::PathBuf;

use time::OffsetDateTime;

/// The attestation testdata directory.
pub(crate) fn testdata() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_TESTDATA") {
        return PathBuf::from(dir);
    }
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation");
    assert!(
        dir.is_dir(),
        "real-hardware vectors not found at {}: check out ../shared beside the repository or set CLOISTER_TESTDATA",
        dir.display()
    );
    dir
}

/// Read a vector file relative to the testdata directory.
pub(crate) fn read(rel: &str) -> Vec<u8> {
    let path = testdata().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parse an RFC 3339 time.
pub(crate) fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("bad time {rfc3339}: {e}"))
}

/// A copy of `bytes` with the byte at `offset` flipped.
pub(crate) fn flip(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] ^= 0x01;
    out
}
