//! Preopened directories opened once and shared by every instance of a server.
//!
//! wasmtime-wasi opens a context's preopens when the context is built; `keep serve` builds one
//! per request, and opening the files directory was a fifth of a warm request's setup. The
//! server opens each directory once (as wasmtime-wasi does: `O_PATH | O_DIRECTORY`, every
//! access relative to it and confined by wasmtime-wasi's sandboxed path resolution) and hands
//! each instance clones of those handles through its own `wasi:filesystem/preopens`. A handle
//! holds no position or other per-user state, so instances cannot see each other through it.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::{Descriptor, Dir};
use wasmtime_wasi::p2::bindings::filesystem::preopens;

use crate::KeepError;
use crate::run::perms;

/// The directories, opened, with the guest paths they appear at.
#[derive(Clone)]
pub(crate) struct SharedPreopens {
    dirs: std::sync::Arc<[(Dir, String)]>,
}

impl std::fmt::Debug for SharedPreopens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.dirs.iter().map(|(_, guest)| guest))
            .finish()
    }
}

impl SharedPreopens {
    /// Open every `(host, guest, writable)` directory.
    pub(crate) fn open<'a>(
        dirs: impl Iterator<Item = (&'a Path, &'a str, bool)>,
    ) -> Result<Self, KeepError> {
        let dirs = dirs
            .map(|(host, guest, writable)| Ok((open_dir(host, writable)?, guest.to_owned())))
            .collect::<Result<Vec<_>, KeepError>>()?;
        Ok(Self { dirs: dirs.into() })
    }

    /// Serve `wasi:filesystem/preopens` in `linker` from these directories (replacing
    /// wasmtime-wasi's, which would serve the context's own, empty list).
    pub(crate) fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        view: fn(&mut T) -> PreopensView<'_>,
    ) -> Result<(), KeepError> {
        linker.allow_shadowing(true);
        let added = preopens::add_to_linker::<T, Shared>(linker, view);
        linker.allow_shadowing(false);
        added.map_err(KeepError::Setup)
    }
}

fn open_dir(host: &Path, writable: bool) -> Result<Dir, KeepError> {
    let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::PATH;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(host)
        .map_err(|source| KeepError::Io {
            path: host.to_path_buf(),
            source,
        })?;
    let open_mode = if writable {
        OpenMode::READ | OpenMode::WRITE
    } else {
        OpenMode::READ
    };
    Ok(Dir::new(file, perms(writable), open_mode, false))
}

/// The linker's marker for the shared `wasi:filesystem/preopens`.
pub(crate) struct Shared;

impl HasData for Shared {
    type Data<'a> = PreopensView<'a>;
}

/// An instance's view: the shared directories and its resource table.
pub(crate) struct PreopensView<'a> {
    pub(crate) preopens: &'a SharedPreopens,
    pub(crate) table: &'a mut ResourceTable,
}

impl preopens::Host for PreopensView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        self.preopens
            .dirs
            .iter()
            .map(|(dir, guest)| {
                Ok((
                    self.table.push(Descriptor::Dir(dir.clone()))?,
                    guest.clone(),
                ))
            })
            .collect()
    }
}
