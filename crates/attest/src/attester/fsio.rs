//! File access for kernel and Gramine pseudo-files, with errors mapped to [`AttesterError`].
//!
//! Pseudo-files are never created or truncated by us: the driver owns them, and a write to one
//! that does not exist must fail rather than leave an ordinary file behind.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;

use super::error::{AttesterError, io_error};

/// Read a whole pseudo-file. Their reported size is often 0, so read to the end.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, AttesterError> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut out))
        .map_err(|e| io_error("reading", path, e))?;
    Ok(out)
}

/// Read a pseudo-file that may legitimately be absent.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AttesterError> {
    match read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(AttesterError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Read a text attribute, trimmed of whitespace and the NULs some drivers append.
pub(crate) fn read_text(path: &Path) -> Result<String, AttesterError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned())
}

/// Read a decimal number attribute.
pub(crate) fn read_u64(path: &Path) -> Result<u64, AttesterError> {
    let text = read_text(path)?;
    text.parse().map_err(|_| AttesterError::BadAttribute {
        path: path.to_path_buf(),
        value: text.clone(),
        reason: "expected a decimal number".to_owned(),
    })
}

/// Write `bytes` to an existing pseudo-file in one `write`, then close it.
///
/// configfs binary attributes commit on close, so the file must be closed before anything
/// that depends on the write is read.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), AttesterError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error("writing", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|e| io_error("writing", path, e))
}

/// Whether `path` exists (a dangling or unreadable parent counts as absent).
pub(crate) fn exists(path: &Path) -> io::Result<bool> {
    path.try_exists()
}
