//! The workload's files, on a memory filesystem only.
//!
//! The coordinator's rendered files (secrets among them) must not reach a disk. wasmtime's WASI
//! serves files from host directories, so the keep writes them into a private directory on a
//! memory-backed filesystem (tmpfs or ramfs: in a confidential VM that is the guest's encrypted
//! memory) and refuses to start when it finds none. The directory is mounted read-only at the
//! guest's `/` and removed when the keep ends.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::KeepError;

const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// A private directory on a memory filesystem, removed on drop.
#[derive(Debug)]
pub struct MemoryDir {
    path: PathBuf,
}

impl Drop for MemoryDir {
    fn drop(&mut self) {
        // Best effort: the files are in memory either way, and gone with the machine.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl MemoryDir {
    /// A new directory under `base`, or under the first memory-backed of `$XDG_RUNTIME_DIR`,
    /// `/dev/shm` and `/run` when `base` is `None`.
    pub fn create(base: Option<&Path>) -> Result<Self, KeepError> {
        let candidates: Vec<PathBuf> = match base {
            Some(base) => vec![base.to_path_buf()],
            None => std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .into_iter()
                .chain(["/dev/shm", "/run"].map(PathBuf::from))
                .collect(),
        };
        let base = candidates
            .iter()
            .find(|dir| is_memory_backed(dir))
            .ok_or_else(|| KeepError::NoMemoryFilesystem {
                candidates: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let path = base.join(format!("cloister-keep-{}", random_suffix()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| KeepError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `files` (relative paths) into the directory.
    pub fn write(&self, files: &[(PathBuf, Zeroizing<Vec<u8>>)]) -> Result<(), KeepError> {
        launcher::write_tree(&self.path, files).map_err(|e| match e {
            launcher::LaunchError::Write { path, source } => KeepError::Io { path, source },
            other => KeepError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })
    }
}

fn is_memory_backed(dir: &Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|s| {
        let kind = s.f_type as u64 & 0xffff_ffff;
        kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
    })
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 12];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        // A unique name is all that is needed; the directory is private either way.
        Err(_) => format!("{}", std::process::id()),
    }
}
