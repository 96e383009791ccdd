//! Layers unpacked into a root filesystem, as the OCI image spec's changeset rules say:
//! entries in order, later layers over earlier ones, `.wh.NAME` whiteouts deleting `NAME` and
//! `.wh..wh..opq` emptying its directory of what earlier layers put there.
//!
//! Every path is resolved inside the root by the kernel (`openat2` with `RESOLVE_BENEATH`):
//! an entry whose path climbs out with `..`, or whose parent is a symbolic link that leads
//! out of the root (relative or absolute), or a hard link to something outside, is refused
//! with its name. Files are created with `O_NOFOLLOW | O_EXCL` after removing whatever was
//! there, so no entry writes through a link. Device nodes need root; without it they are
//! refused. Ownership is applied only when running as root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, openat2,
};
use rustix::io::Errno;

use crate::ImageError;

/// The longest entry path accepted (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A root directory being unpacked into.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    privileged: bool,
}

impl Root {
    /// Open `path`, an existing directory, as the root.
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            privileged: rustix::process::geteuid().is_root(),
        })
    }

    /// Apply one layer's tar stream. `layer` names it in errors.
    pub fn apply(&self, tar: impl Read, layer: &str) -> Result<(), ImageError> {
        let mut apply = Layer {
            root: self,
            layer,
            created: HashSet::new(),
            directories: Vec::new(),
            parent: None,
        };
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().map_err(ImageError::Read)?;
        for entry in entries {
            let entry = entry.map_err(ImageError::Read)?;
            apply.entry(entry)?;
        }
        apply.finish()
    }
}

/// A directory's metadata, applied when its layer ends (a read-only directory must stay
/// writable while the layer fills it).
struct DirectoryMeta {
    path: PathBuf,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The extended attributes a PAX header gives an entry (`SCHILY.xattr.NAME`).
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return Vec::new();
    };
    extensions
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.key().ok()?.strip_prefix("SCHILY.xattr.")?;
            Some((name.to_string(), e.value_bytes().to_vec()))
        })
        .collect()
}

struct Layer<'a> {
    root: &'a Root,
    layer: &'a str,
    /// What this layer created: an opaque marker spares these.
    created: HashSet<PathBuf>,
    directories: Vec<DirectoryMeta>,
    /// The last parent directory opened, kept while only files are added to it.
    parent: Option<(PathBuf, OwnedFd)>,
}

impl Layer<'_> {
    fn refuse(&self, entry: &Path, reason: impl Into<String>) -> ImageError {
        ImageError::Entry {
            layer: self.layer.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry.path().map_err(ImageError::Read)?.into_owned();
        let xattrs = xattrs(&mut entry);
        let Some(path) = self.normalize(&raw)? else {
            return Ok(()); // the root itself
        };
        let (parent, name) = split(&path);
        let name_text = name.to_string_lossy();
        if name_text == OPAQUE {
            self.parent = None;
            return self.make_opaque(&parent, &raw);
        }
        if let Some(hidden) = name_text.strip_prefix(WHITEOUT) {
            self.parent = None;
            if hidden.starts_with(WHITEOUT) || hidden.is_empty() {
                return Ok(()); // other aufs metadata (.wh..wh.plnk, …)
            }
            let dir = self.open_parent(&parent, &raw, false)?;
            if let Some(dir) = dir {
                remove(&dir, OsStr::new(hidden)).map_err(|e| self.io(&raw, e))?;
            }
            return Ok(());
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(ImageError::Read)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let owner = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );
        if !matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link
        ) {
            self.parent = None;
        }
        let dir = self.cached_parent(&parent, &raw)?;
        match kind {
            tar::EntryType::Directory => {
                self.directory(&dir, name, &raw)?;
                self.chown(&dir, name, owner, &raw)?;
                self.directories.push(DirectoryMeta {
                    path: path.clone(),
                    mode,
                    mtime,
                    xattrs,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove(&dir, name).map_err(|e| self.io(&raw, e))?;
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io(&raw, e.into()))?;
                let mut file = std::fs::File::from(fd);
                io::copy(&mut entry, &mut file).map_err(ImageError::Read)?;
                if self.root.privileged {
                    rustix::fs::fchown(&file, Some(uid(owner.0)), Some(gid(owner.1)))
                        .map_err(|e| self.io(&raw, e.into()))?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| self.io(&raw, e.into()))?;
                self.set_xattrs(&file, &xattrs, &raw)?;
                rustix::fs::futimens(&file, &times(mtime)).map_err(|e| self.io(&raw, e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ImageError::Read)?
                    .ok_or_else(|| self.refuse(&raw, "is a symbolic link without a target"))?;
                remove(&dir, name).map_err(|e| self.io(&raw, e))?;
                rustix::fs::symlinkat(target.as_os_str(), &dir, name)
                    .map_err(|e| self.io(&raw, e.into()))?;
                self.chown(&dir, name, owner, &raw)?;
                rustix::fs::utimensat(&dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io(&raw, e.into()))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(ImageError::Read)?
                    .ok_or_else(|| self.refuse(&raw, "is a hard link without a target"))?
                    .into_owned();
                let target = self
                    .normalize(&target_raw)?
                    .ok_or_else(|| self.refuse(&raw, "is a hard link to the root directory"))?;
                let (target_parent, target_name) = split(&target);
                let target_dir =
                    self.open_parent(&target_parent, &raw, false)?
                        .ok_or_else(|| {
                            self.refuse(
                                &raw,
                                format!("links to {} which does not exist", target.display()),
                            )
                        })?;
                if target == path {
                    return Ok(());
                }
                remove(&dir, name).map_err(|e| self.io(&raw, e))?;
                rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty())
                    .map_err(|e| {
                        if e == Errno::NOENT {
                            self.refuse(
                                &raw,
                                format!("links to {} which does not exist", target.display()),
                            )
                        } else {
                            self.io(&raw, e.into())
                        }
                    })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.root.privileged {
                    return Err(self.refuse(&raw, "is a device node, which only root may create: unpack as root or use an image without devices"));
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove(&dir, name).map_err(|e| self.io(&raw, e))?;
                rustix::fs::mknodat(
                    &dir,
                    name,
                    file_type,
                    Mode::from_raw_mode(mode),
                    makedev(major, minor),
                )
                .map_err(|e| self.io(&raw, e.into()))?;
                self.chown(&dir, name, owner, &raw)?;
                rustix::fs::utimensat(&dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io(&raw, e.into()))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                return Ok(());
            }
            other => {
                return Err(self.refuse(
                    &raw,
                    format!("has an entry type this unpacker does not create ({other:?})"),
                ));
            }
        }
        self.created.insert(path);
        // Keep the directory open for the files that usually follow it.
        if matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link
        ) {
            self.parent = Some((parent, dir));
        }
        Ok(())
    }

    /// The path inside the root: no `..`, no leading `/` or `./`; `None` for the root.
    fn normalize(&self, raw: &Path) -> Result<Option<PathBuf>, ImageError> {
        if raw.as_os_str().len() > MAX_PATH {
            return Err(self.refuse(raw, "has a path longer than 4096 bytes"));
        }
        let mut path = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => path.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir => {
                    return Err(self.refuse(raw, "climbs out of the root with '..'"));
                }
                Component::Prefix(_) => return Err(self.refuse(raw, "has a path prefix")),
            }
        }
        Ok((!path.as_os_str().is_empty()).then_some(path))
    }

    fn io(&self, entry: &Path, error: io::Error) -> ImageError {
        let reason = match error.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::XDEV) => {
                "goes through a symbolic link that leads out of the root".to_string()
            }
            Some(Errno::LOOP) => "goes through a symbolic link loop".to_string(),
            Some(Errno::NOTDIR) => "is under something that is not a directory".to_string(),
            _ => format!("could not be written: {error}"),
        };
        self.refuse(entry, reason)
    }

    fn cached_parent(&mut self, parent: &Path, entry: &Path) -> Result<OwnedFd, ImageError> {
        if let Some((cached, fd)) = self.parent.take()
            && cached == parent
        {
            return Ok(fd);
        }
        self.open_parent(parent, entry, true)?
            .ok_or_else(|| self.refuse(entry, "has no parent directory"))
    }

    /// Open `parent` (relative to the root) beneath the root; create missing directories when
    /// `create`, else `None` when it does not exist.
    fn open_parent(
        &self,
        parent: &Path,
        entry: &Path,
        create: bool,
    ) -> Result<Option<OwnedFd>, ImageError> {
        match beneath(&self.root.fd, parent) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.io(entry, e.into())),
        }
        // Create the missing directories one at a time, each resolved beneath the root.
        let mut so_far = PathBuf::new();
        let mut dir =
            beneath(&self.root.fd, Path::new("")).map_err(|e| self.io(entry, e.into()))?;
        for part in parent.components() {
            so_far.push(part);
            dir = match beneath(&self.root.fd, &so_far) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rustix::fs::mkdirat(&dir, part.as_os_str(), Mode::from_raw_mode(0o755))
                        .map_err(|e| self.io(entry, e.into()))?;
                    beneath(&self.root.fd, &so_far).map_err(|e| self.io(entry, e.into()))?
                }
                Err(e) => return Err(self.io(entry, e.into())),
            };
        }
        Ok(Some(dir))
    }

    fn directory(&self, dir: &OwnedFd, name: &OsStr, entry: &Path) -> Result<(), ImageError> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Ok(());
            }
            Ok(_) => remove(dir, name).map_err(|e| self.io(entry, e))?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.io(entry, e.into())),
        }
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
            .map_err(|e| self.io(entry, e.into()))
    }

    fn chown(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        (user, group): (u32, u32),
        entry: &Path,
    ) -> Result<(), ImageError> {
        if !self.root.privileged {
            return Ok(());
        }
        rustix::fs::chownat(
            dir,
            name,
            Some(uid(user)),
            Some(gid(group)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(entry, e.into()))
    }

    /// Set extended attributes (after the owner and mode: a `security.capability` survives
    /// neither a chown nor a chmod). Without root, those of namespaces only root may set are
    /// skipped, as rootless unpackers do.
    fn set_xattrs(
        &self,
        fd: &impl AsFd,
        xattrs: &[(String, Vec<u8>)],
        entry: &Path,
    ) -> Result<(), ImageError> {
        for (name, value) in xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::OPNOTSUPP)
                    if !self.root.privileged && !name.starts_with("user.") => {}
                Err(e) => {
                    return Err(self.refuse(
                        entry,
                        format!("could not get extended attribute {name}: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Empty `parent` of everything earlier layers put there.
    fn make_opaque(&mut self, parent: &Path, entry: &Path) -> Result<(), ImageError> {
        let Some(dir) = self.open_parent(parent, entry, true)? else {
            return Ok(());
        };
        let listing = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(entry, e.into()))?;
        let names = list(&listing).map_err(|e| self.io(entry, e))?;
        for name in names {
            if !self.created.contains(&parent.join(&name)) {
                remove(&dir, name.as_os_str()).map_err(|e| self.io(entry, e))?;
            }
        }
        Ok(())
    }

    /// Set the directories' modes and times, deepest first.
    fn finish(mut self) -> Result<(), ImageError> {
        self.parent = None;
        let mut directories = std::mem::take(&mut self.directories);
        directories.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for meta in directories {
            let fd = beneath(&self.root.fd, &meta.path)
                .and_then(|path| {
                    rustix::fs::openat(
                        &path,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                })
                .map_err(|e| self.io(&meta.path, e.into()))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .map_err(|e| self.io(&meta.path, e.into()))?;
            self.set_xattrs(&fd, &meta.xattrs, &meta.path)?;
            rustix::fs::futimens(&fd, &times(meta.mtime))
                .map_err(|e| self.io(&meta.path, e.into()))?;
        }
        Ok(())
    }
}

/// Open `path` (relative; empty for the root) beneath `root`, never leaving it.
fn beneath(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

fn split(path: &Path) -> (PathBuf, &OsStr) {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().unwrap_or(path.as_os_str());
    (parent, name)
}

/// The names in a directory, without `.` and `..`.
fn list(dir: &impl AsFd) -> io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(PathBuf::from(OsStr::from_bytes(name)));
        }
    }
    Ok(names)
}

/// Remove `name` in `dir` if it exists, a directory with everything in it, never following a
/// link.
fn remove(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(Into::into);
    }
    let inner = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list(&inner)? {
        remove(&inner, child.as_os_str())?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(Into::into)
}

fn times(mtime: u64) -> Timestamps {
    let time = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

fn makedev(major: u32, minor: u32) -> Dev {
    rustix::fs::makedev(major, minor)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};

    use tar::EntryType;

    use super::*;

    /// A tar of raw entries: (name, type, link target, data, mode); names are written as given,
    /// `..` and all.
    fn tar(entries: &[(&str, EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, data, mode) in entries {
            let mut header = tar::Header::new_gnu();
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn file<'a>(
        name: &'a str,
        data: &'static [u8],
    ) -> (&'a str, EntryType, &'static str, &'static [u8], u32) {
        (name, EntryType::Regular, "", data, 0o644)
    }

    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("cloister-unpack-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.join("outside"), "outside").unwrap();
        (dir, root)
    }

    fn refused(root: &Root, layer: &[u8]) -> String {
        match root.apply(layer, "sha256:test") {
            Err(e @ ImageError::Entry { .. }) => e.to_string(),
            other => panic!("expected a refused entry, got {other:?}"),
        }
    }

    #[test]
    fn entries_that_would_leave_the_root_are_refused_by_name() {
        let (dir, path) = scratch("escape");
        let root = Root::open(&path).unwrap();
        let climb = refused(&root, &tar(&[file("a/../../outside", b"x")]));
        assert!(
            climb.contains("\"a/../../outside\" climbs out of the root"),
            "{climb}"
        );

        // A parent that is a link out of the root, absolute or relative.
        for (link, target) in [("abs", "/"), ("rel", "../..")] {
            let through = format!("{link}/outside");
            let error = refused(
                &root,
                &tar(&[
                    (link, EntryType::Symlink, target, b"", 0o777),
                    file(&through, b"x"),
                ]),
            );
            assert!(error.contains("leads out of the root"), "{error}");
        }
        // A hard link may only name something in the root.
        let hard = refused(
            &root,
            &tar(&[("h", EntryType::Link, "../outside", b"", 0o644)]),
        );
        assert!(hard.contains("climbs out"), "{hard}");
        let absolute = refused(
            &root,
            &tar(&[("h", EntryType::Link, "/outside", b"", 0o644)]),
        );
        assert!(absolute.contains("which does not exist"), "{absolute}");
        // A whiteout through a link out of the root deletes nothing outside.
        let whiteout = refused(
            &root,
            &tar(&[
                ("up", EntryType::Symlink, "..", b"", 0o777),
                file("up/.wh.outside", b""),
            ]),
        );
        assert!(whiteout.contains("leads out of the root"), "{whiteout}");
        assert_eq!(
            std::fs::read_to_string(dir.join("outside")).unwrap(),
            "outside"
        );
    }

    #[test]
    fn a_file_replaces_a_link_instead_of_writing_through_it() {
        let (dir, path) = scratch("through");
        let root = Root::open(&path).unwrap();
        let target = dir.join("outside").display().to_string();
        let link = tar(&[("x", EntryType::Symlink, target.as_str(), b"", 0o777)]);
        root.apply(&link[..], "l1").unwrap();
        root.apply(&tar(&[file("x", b"inside")])[..], "l2").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("outside")).unwrap(),
            "outside"
        );
        assert_eq!(std::fs::read_to_string(path.join("x")).unwrap(), "inside");
        assert!(std::fs::symlink_metadata(path.join("x")).unwrap().is_file());
    }

    #[test]
    fn devices_need_root_and_fifos_do_not() {
        let (_dir, path) = scratch("devices");
        let root = Root {
            privileged: false,
            ..Root::open(&path).unwrap()
        };
        let error = refused(
            &root,
            &tar(&[("dev/null", EntryType::Char, "", b"", 0o666)]),
        );
        assert!(error.contains("\"dev/null\" is a device node"), "{error}");
        root.apply(&tar(&[("fifo", EntryType::Fifo, "", b"", 0o600)])[..], "l")
            .unwrap();
        assert!(
            std::fs::metadata(path.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn whiteouts_and_opaque_directories_follow_the_changeset_rules() {
        let (_dir, path) = scratch("whiteouts");
        let root = Root::open(&path).unwrap();
        let lower = tar(&[
            ("d/", EntryType::Directory, "", b"", 0o755),
            file("d/old", b"1"),
            file("gone", b"1"),
            file("kept", b"1"),
            ("ro/", EntryType::Directory, "", b"", 0o555),
            file("ro/inside", b"1"),
            ("hard", EntryType::Link, "kept", b"", 0o644),
        ]);
        root.apply(&lower[..], "l1").unwrap();
        let upper = tar(&[
            file("d/new", b"2"),
            file("d/.wh..wh..opq", b""),
            file(".wh.gone", b""),
            file(".wh.never-existed", b""),
        ]);
        root.apply(&upper[..], "l2").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(path.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["new"],
            "the opaque marker spares its own layer's entries"
        );
        assert!(!path.join("gone").exists());
        let kept = std::fs::metadata(path.join("kept")).unwrap();
        assert_eq!(
            kept.ino(),
            std::fs::metadata(path.join("hard")).unwrap().ino()
        );
        assert_eq!(
            std::fs::metadata(path.join("ro")).unwrap().mode() & 0o777,
            0o555
        );
    }
}
