//! A simulated machine that several processes share: the coordinator, the launcher and the
//! user's CLI open the same directory and so sign and verify under the same simulated roots.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::SimError;
use super::amd::AmdPki;
use super::intel::IntelPki;
use crate::TeeKind;
use crate::anchor::TrustAnchor;
use crate::crypto::sha256;

const INTEL_FILE: &str = "intel-pcs.json";
const AMD_FILE: &str = "amd-kds.json";

/// The simulated Intel PCS and AMD KDS of this machine, saved in one directory.
#[derive(Debug)]
pub struct SimPlatform {
    dir: PathBuf,
    intel: Arc<IntelPki>,
    /// Generated on first use: two RSA-4096 keys take a few seconds.
    amd: Mutex<Option<Arc<AmdPki>>>,
}

impl SimPlatform {
    /// Where the platform lives unless told otherwise: `$CLOISTER_SIM_DIR`, else
    /// `$XDG_DATA_HOME/cloister/simulation`, else `~/.local/share/cloister/simulation`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("CLOISTER_SIM_DIR") {
            return dir.into();
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
            .unwrap_or_else(std::env::temp_dir);
        data.join("cloister").join("simulation")
    }

    /// Open the platform saved in `dir`, creating it (valid from `now`) if there is none.
    pub fn open(dir: &Path, now: OffsetDateTime) -> Result<Self, SimError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        let intel = load_or_create(
            &dir.join(INTEL_FILE),
            || IntelPki::generate(now)?.to_saved(),
            IntelPki::from_saved,
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            intel: Arc::new(intel),
            amd: Mutex::new(None),
        })
    }

    /// The directory the platform is saved in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The simulated Intel PCS and quoting enclave (SGX, TDX).
    pub fn intel(&self) -> Arc<IntelPki> {
        Arc::clone(&self.intel)
    }

    /// The simulated AMD KDS (SNP), generated and saved on first use.
    pub fn amd(&self, now: OffsetDateTime) -> Result<Arc<AmdPki>, SimError> {
        let mut slot = self
            .amd
            .lock()
            .map_err(|_| SimError::Persist("the AMD hierarchy lock is poisoned".into()))?;
        if let Some(pki) = slot.as_ref() {
            return Ok(Arc::clone(pki));
        }
        let pki = Arc::new(load_or_create(
            &self.dir.join(AMD_FILE),
            || AmdPki::generate(now)?.to_saved(),
            AmdPki::from_saved,
        )?);
        *slot = Some(Arc::clone(&pki));
        Ok(pki)
    }

    /// The root (PEM) simulated `tee` evidence chains to.
    pub fn anchor_pem(&self, tee: TeeKind, now: OffsetDateTime) -> Result<String, SimError> {
        match tee {
            TeeKind::Sgx | TeeKind::Tdx => Ok(self.intel.root_pem()),
            TeeKind::Snp => Ok(self.amd(now)?.ark_pem()),
            other => Err(SimError::Param(format!(
                "{other} cannot be simulated (sgx, tdx and snp can)"
            ))),
        }
    }

    /// The trust anchors for simulated Intel and AMD evidence: `(dcap, snp)`.
    pub fn anchors(&self, now: OffsetDateTime) -> Result<(TrustAnchor, TrustAnchor), SimError> {
        let anchor = |pem: String| {
            TrustAnchor::simulation(pem.as_bytes()).map_err(|e| SimError::Cert(e.to_string()))
        };
        Ok((
            anchor(self.intel.root_pem())?,
            anchor(self.amd(now)?.ark_pem())?,
        ))
    }

    /// A 32-byte secret only holders of this platform's files know: what simulated sealing
    /// keys derive from (the stand-in for a TEE's sealing key; it protects nothing real).
    pub fn sealing_seed(&self) -> Zeroizing<[u8; 32]> {
        let mut input = Zeroizing::new(b"cloister simulated sealing seed\0".to_vec());
        input.extend_from_slice(&self.intel.root_key_der());
        Zeroizing::new(sha256(&input))
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> SimError {
    SimError::Persist(format!("{}: {e}", path.display()))
}

/// Load `path`, or create it with `create` so that concurrent creators agree on one winner:
/// each writes a private temporary file and hard-links it into place, which fails if another
/// process got there first, and then everyone loads what is there.
fn load_or_create<T>(
    path: &Path,
    create: impl FnOnce() -> Result<Zeroizing<String>, SimError>,
    load: impl Fn(&str) -> Result<T, SimError>,
) -> Result<T, SimError> {
    if !path.exists() {
        let text = create()?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        write_private(&tmp, text.as_bytes())?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(path, &e)),
        }
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| io_error(path, &e))?);
    load(&text)
}

/// Write a file only its owner can read (it holds private keys).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    file.write_all(bytes).map_err(|e| io_error(path, &e))
}
