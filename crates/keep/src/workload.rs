//! From an activation to a run: the workload's files on a memory filesystem, its environment
//! and command line, and the host directories the manifest allows.

use std::path::{Path, PathBuf};

use launcher::WorkloadKey;
use launcher::ttls::TlsIdentity;

use crate::{KeepError, MemoryDir, RunConfig};

/// A host directory the operator asks to mount: `HOST:GUEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirBind {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
}

impl std::str::FromStr for DirBind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, guest) = text
            .rsplit_once(':')
            .filter(|(host, guest)| !host.is_empty() && guest.starts_with('/'))
            .ok_or_else(|| format!("{text:?} is not HOST:GUEST (GUEST absolute)"))?;
        Ok(Self {
            host: PathBuf::from(host),
            guest: guest.to_string(),
        })
    }
}

/// A workload ready to run: its files (kept in memory until dropped) and how to run it.
#[derive(Debug)]
pub struct Prepared {
    /// The memory directory holding the files; removed on drop.
    pub files: MemoryDir,
    /// The run's configuration.
    pub config: RunConfig,
}

/// Place what `activation` gave `workload` for a keep: files into `files` (a memory directory,
/// made before activating so that a machine without one fails early), mounted read-only at the
/// guest's `/`;
/// the manifest's argv, or `program` then `args`; the host directories of the manifest's
/// `wasm.dirs` that name a host path, and those of `binds` that it allows.
pub fn prepare(
    activation: &api::ActivationResponse,
    key: &WorkloadKey,
    workload: &str,
    program: &str,
    args: &[String],
    binds: &[DirBind],
    files: MemoryDir,
) -> Result<Prepared, KeepError> {
    let spec = activation
        .wasm
        .clone()
        .ok_or_else(|| KeepError::NotWasmWorkload(workload.to_string()))?;
    let dirs = resolve_dirs(workload, &spec, binds)?;
    let rendered = launcher::render(activation, key, workload, Path::new("/"))
        .map_err(|e| KeepError::Activation(e.to_string()))?;
    files.write(&rendered.files)?;
    let argv = if rendered.prepared.argv.is_empty() {
        std::iter::once(program.to_string())
            .chain(args.iter().cloned())
            .collect()
    } else {
        rendered.prepared.argv
    };
    let identity = if activation.tls.is_empty() {
        None
    } else {
        Some(TlsIdentity::new(activation, key).map_err(|e| KeepError::Activation(e.to_string()))?)
    };
    let config = RunConfig {
        argv,
        env: rendered.prepared.env,
        files_root: Some(files.path().to_path_buf()),
        dirs,
        spec,
        tls: activation.tls.clone(),
        identity,
    };
    Ok(Prepared { files, config })
}

/// The directories to preopen: the manifest's that name a host path, and the operator's binds,
/// each of which the manifest must allow at that guest path (and host path, when it names one).
fn resolve_dirs(
    workload: &str,
    spec: &api::WasmSpec,
    binds: &[DirBind],
) -> Result<Vec<(PathBuf, String, bool)>, KeepError> {
    let mut dirs = Vec::new();
    for bind in binds {
        let allowed = spec.dirs.get(&bind.guest).ok_or_else(|| {
            KeepError::DirectoryNotAllowed(format!(
                "the manifest allows no host directory at {} for workload {workload}; add it to \
                 the workload's wasm.dirs",
                bind.guest
            ))
        })?;
        if !allowed.host.is_empty() && Path::new(&allowed.host) != bind.host {
            return Err(KeepError::DirectoryNotAllowed(format!(
                "the manifest mounts {} at {} for workload {workload}, not {}",
                allowed.host,
                bind.guest,
                bind.host.display()
            )));
        }
        dirs.push((bind.host.clone(), bind.guest.clone(), allowed.writable));
    }
    for (guest, dir) in &spec.dirs {
        if !dir.host.is_empty() && !binds.iter().any(|b| &b.guest == guest) {
            dirs.push((PathBuf::from(&dir.host), guest.clone(), dir.writable));
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> api::WasmSpec {
        let mut spec = api::WasmSpec::default();
        let mut fixed = api::WasmDir::default();
        fixed.host = "/srv/data".into();
        spec.dirs.insert("/data".into(), fixed);
        let mut open = api::WasmDir::default();
        open.writable = true;
        spec.dirs.insert("/scratch".into(), open);
        spec
    }

    fn bind(text: &str) -> DirBind {
        text.parse().unwrap()
    }

    #[test]
    fn the_manifest_decides_which_directories_are_mounted() {
        assert_eq!(
            resolve_dirs("w", &spec(), &[]).unwrap(),
            vec![(PathBuf::from("/srv/data"), "/data".to_string(), false)]
        );
        let dirs = resolve_dirs("w", &spec(), &[bind("/tmp/s:/scratch")]).unwrap();
        assert!(dirs.contains(&(PathBuf::from("/tmp/s"), "/scratch".to_string(), true)));
        let refused = resolve_dirs("w", &spec(), &[bind("/etc:/etc")]).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("allows no host directory at /etc")
        );
        let moved = resolve_dirs("w", &spec(), &[bind("/elsewhere:/data")]).unwrap_err();
        assert!(moved.to_string().contains("mounts /srv/data at /data"));
        assert!("nocolon".parse::<DirBind>().is_err());
        assert!("/a:relative".parse::<DirBind>().is_err());
    }
}
