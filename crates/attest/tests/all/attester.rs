//! Attesters against fake file trees: configfs-tsm with a fake kernel, Gramine, the guest
//! devices as ordinary files, detection, and the sev-guest encodings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use attest::TeeKind;
use attest::attester::sev_guest::{
    REPORT_LEN, RESP_LEN, SEALING_FIELDS, cert_table_len, decode_derived_key_resp,
    decode_report_resp, encode_derived_key_req, encode_report_req,
};
use attest::attester::{
    Attester, AttesterError, AttesterKind, AuxKind, ConfigfsTsm, Gramine, ProbeOutcome, SevGuest,
    TdxGuest, TsmHooks, detect,
};

const TSM: &str = "sys/kernel/config/tsm/report";
const RD: [u8; 64] = [0x5a; 64];

/// A unique temporary directory, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cloister-attester-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn root(&self) -> &Path {
        &self.0
    }

    /// Create a file (and its parents) with `contents`.
    fn file(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// The entries left in the configfs-tsm report directory.
    fn tsm_entries(&self) -> Vec<String> {
        fs::read_dir(self.0.join(TSM))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Plays the kernel's configfs-tsm on an ordinary directory.
#[derive(Debug, Default)]
struct FakeKernel {
    /// The `provider` attribute; `None` leaves it out.
    provider: Option<&'static str>,
    /// How many requests see a concurrent writer (an extra generation bump per write).
    conflicts: AtomicU32,
    /// Every hook call, as `created`, `written <name>`, `removing`.
    events: Mutex<Vec<String>>,
}

impl FakeKernel {
    fn new(provider: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            provider,
            ..Self::default()
        })
    }

    fn conflicting(provider: &'static str, requests: u32) -> Arc<Self> {
        let k = Self::new(Some(provider));
        k.conflicts.store(requests, Ordering::Relaxed);
        k
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn log(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    fn bump(entry: &Path, by: u64) -> io::Result<()> {
        let path = entry.join("generation");
        let now: u64 = fs::read_to_string(&path)?.trim().parse().unwrap();
        fs::write(path, format!("{}\n", now + by))
    }
}

impl TsmHooks for FakeKernel {
    fn created(&self, entry: &Path) -> io::Result<()> {
        self.log("created".to_owned());
        if let Some(p) = self.provider {
            fs::write(entry.join("provider"), format!("{p}\n"))?;
        }
        fs::write(entry.join("generation"), "0\n")?;
        fs::write(entry.join("inblob"), b"")?;
        fs::write(entry.join("outblob"), b"")?;
        if self.provider == Some("sev_guest") {
            fs::write(entry.join("privlevel"), b"")?;
            fs::write(entry.join("privlevel_floor"), "1\n")?;
        }
        // Written for every provider: only SNP evidence may pick it up.
        fs::write(entry.join("auxblob"), b"CERT-TABLE")?;
        Ok(())
    }

    fn written(&self, entry: &Path, name: &str) -> io::Result<()> {
        self.log(format!("written {name}"));
        let conflict = name == "inblob"
            && self
                .conflicts
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        Self::bump(entry, if conflict { 2 } else { 1 })?;
        if name == "inblob" {
            let mut out = b"EVIDENCE:".to_vec();
            out.extend(fs::read(entry.join("inblob"))?);
            fs::write(entry.join("outblob"), out)?;
        }
        Ok(())
    }

    fn removing(&self, entry: &Path) -> io::Result<()> {
        self.log("removing".to_owned());
        for file in fs::read_dir(entry)? {
            fs::remove_file(file?.path())?;
        }
        Ok(())
    }
}

fn configfs(tree: &Tree, tee: TeeKind, kernel: &Arc<FakeKernel>) -> ConfigfsTsm {
    tree.dir(TSM);
    ConfigfsTsm::new(tree.root(), tee).with_hooks(kernel.clone())
}

fn expected_outblob() -> Vec<u8> {
    let mut out = b"EVIDENCE:".to_vec();
    out.extend_from_slice(&RD);
    out
}

#[test]
fn attester_configfs_tdx_quote_with_ccel() {
    let tree = Tree::new();
    tree.file("sys/firmware/acpi/tables/data/CCEL", b"event-log");
    let kernel = FakeKernel::new(Some("tdx_guest"));
    let tsm = configfs(&tree, TeeKind::Tdx, &kernel);

    let ev = tsm.evidence(&RD).unwrap();
    assert_eq!(ev.tee, TeeKind::Tdx);
    assert_eq!(ev.bytes, expected_outblob());
    assert_eq!(ev.aux(AuxKind::TdxCcel), Some(&b"event-log"[..]));
    assert_eq!(ev.aux(AuxKind::SnpCertTable), None);
    assert_eq!(
        kernel.events(),
        ["created", "written inblob", "removing"],
        "no privlevel write unless asked"
    );
    assert!(tree.tsm_entries().is_empty(), "entry left behind");
    assert_eq!(tsm.kind(), AttesterKind::ConfigfsTsm);
}

#[test]
fn attester_configfs_snp_report_with_privlevel_and_certs() {
    let tree = Tree::new();
    let kernel = FakeKernel::new(Some("sev_guest"));
    let tsm = configfs(&tree, TeeKind::Snp, &kernel).with_privlevel(2);

    let ev = tsm.evidence(&RD).unwrap();
    assert_eq!(ev.tee, TeeKind::Snp);
    assert_eq!(ev.bytes, expected_outblob());
    assert_eq!(ev.aux(AuxKind::SnpCertTable), Some(&b"CERT-TABLE"[..]));
    assert_eq!(
        kernel.events(),
        ["created", "written privlevel", "written inblob", "removing"]
    );
    assert!(tree.tsm_entries().is_empty());

    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["tee"], "snp");
    assert_eq!(json["aux"][0]["kind"], "snp-cert-table");
    assert_eq!(json["aux"][0]["bytes"], hex::encode(b"CERT-TABLE"));
    let back: attest::attester::Evidence = serde_json::from_value(json).unwrap();
    assert_eq!(back, ev);
}

#[test]
fn attester_configfs_privlevel_checks() {
    let tree = Tree::new();
    let snp = FakeKernel::new(Some("sev_guest"));
    let err = configfs(&tree, TeeKind::Snp, &snp)
        .with_privlevel(0)
        .evidence(&RD)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::PrivlevelOutOfRange {
                requested: 0,
                floor: 1
            }
        ),
        "{err:?}"
    );

    let tdx = FakeKernel::new(Some("tdx_guest"));
    let err = configfs(&tree, TeeKind::Tdx, &tdx)
        .with_privlevel(1)
        .evidence(&RD)
        .unwrap_err();
    assert!(
        matches!(err, AttesterError::PrivlevelUnsupported { .. }),
        "{err:?}"
    );
    assert!(tree.tsm_entries().is_empty());
}

#[test]
fn attester_configfs_generation_conflict_is_retried() {
    let tree = Tree::new();
    let kernel = FakeKernel::conflicting("tdx_guest", 1);
    let ev = configfs(&tree, TeeKind::Tdx, &kernel)
        .evidence(&RD)
        .unwrap();
    assert_eq!(ev.bytes, expected_outblob());
    let creates = kernel.events().iter().filter(|e| *e == "created").count();
    assert_eq!(creates, 2, "one retry in a fresh entry");
    assert!(tree.tsm_entries().is_empty());
}

#[test]
fn attester_configfs_generation_mismatch_detected() {
    let tree = Tree::new();
    let kernel = FakeKernel::conflicting("sev_guest", u32::MAX);
    let err = configfs(&tree, TeeKind::Snp, &kernel)
        .evidence(&RD)
        .unwrap_err();
    match err {
        AttesterError::GenerationMismatch {
            expected,
            found,
            attempts,
            ..
        } => {
            assert_eq!((expected, found, attempts), (1, 2, 3));
        }
        other => panic!("expected a generation mismatch, got {other:?}"),
    }
    assert!(tree.tsm_entries().is_empty());
}

#[test]
fn attester_configfs_missing_and_wrong_provider() {
    let tree = Tree::new();
    let err = configfs(&tree, TeeKind::Tdx, &FakeKernel::new(None))
        .evidence(&RD)
        .unwrap_err();
    match &err {
        AttesterError::Missing { path, what } => {
            assert!(path.ends_with("provider"));
            assert!(what.contains("tdx_guest or sev_guest driver"), "{what}");
        }
        other => panic!("expected a missing provider, got {other:?}"),
    }

    let err = configfs(&tree, TeeKind::Tdx, &FakeKernel::new(Some("arm_cca_guest")))
        .evidence(&RD)
        .unwrap_err();
    assert!(
        matches!(&err, AttesterError::UnsupportedProvider { provider, .. } if provider == "arm_cca_guest"),
        "{err:?}"
    );

    let err = configfs(&tree, TeeKind::Snp, &FakeKernel::new(Some("tdx_guest")))
        .evidence(&RD)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::ProviderMismatch {
                expected: TeeKind::Snp,
                found: TeeKind::Tdx
            }
        ),
        "{err:?}"
    );
    assert!(tree.tsm_entries().is_empty());
}

#[test]
fn attester_configfs_probe_reads_the_provider() {
    let tree = Tree::new();
    tree.dir(TSM);
    let kernel: Arc<dyn TsmHooks> = FakeKernel::new(Some("sev_guest"));
    let tsm = ConfigfsTsm::probe_with_hooks(tree.root(), Some(kernel)).unwrap();
    assert_eq!(tsm.tee(), TeeKind::Snp);
    assert!(tree.tsm_entries().is_empty());
}

#[test]
fn attester_configfs_without_report_dir_is_missing() {
    let tree = Tree::new();
    let err = ConfigfsTsm::new(tree.root(), TeeKind::Tdx)
        .evidence(&RD)
        .unwrap_err();
    match &err {
        AttesterError::Missing { path, what } => {
            assert!(path.ends_with(TSM), "{path:?}");
            assert!(what.contains("Linux 6.7"), "{what}");
        }
        other => panic!("expected configfs-tsm missing, got {other:?}"),
    }
}

fn gramine_tree(kind: &str) -> Tree {
    let tree = Tree::new();
    tree.file(
        "dev/attestation/attestation_type",
        format!("{kind}\n").as_bytes(),
    );
    tree.file("dev/attestation/user_report_data", b"");
    tree.file("dev/attestation/quote", b"SGX-QUOTE");
    tree
}

#[test]
fn attester_gramine_happy_path() {
    let tree = gramine_tree("dcap");
    let ev = Gramine::new(tree.root()).evidence(&RD).unwrap();
    assert_eq!(ev.tee, TeeKind::Sgx);
    assert_eq!(ev.bytes, b"SGX-QUOTE");
    assert!(ev.aux.is_empty());
    let written = fs::read(tree.root().join("dev/attestation/user_report_data")).unwrap();
    assert_eq!(written, RD);
}

#[test]
fn attester_gramine_wrong_attestation_type() {
    let tree = gramine_tree("none");
    let err = Gramine::new(tree.root()).evidence(&RD).unwrap_err();
    assert!(
        matches!(&err, AttesterError::WrongAttestationType { found, .. } if found == "none"),
        "{err:?}"
    );
    assert!(err.to_string().contains("sgx.remote_attestation"), "{err}");
    let untouched = fs::read(tree.root().join("dev/attestation/user_report_data")).unwrap();
    assert!(
        untouched.is_empty(),
        "report data written despite the wrong type"
    );
}

#[test]
fn attester_gramine_missing_quote() {
    let tree = gramine_tree("dcap");
    fs::remove_file(tree.root().join("dev/attestation/quote")).unwrap();
    let err = Gramine::new(tree.root()).evidence(&RD).unwrap_err();
    assert!(
        matches!(&err, AttesterError::Missing { path, .. } if path.ends_with("quote")),
        "{err:?}"
    );
}

#[test]
fn attester_detect_empty_tree() {
    let tree = Tree::new();
    let d = detect(tree.root());
    assert_eq!(d.selected, None);
    assert_eq!(d.probes.len(), 4);
    assert!(d.probes.iter().all(|p| p.outcome == ProbeOutcome::Absent));
    let text = d.to_string();
    assert!(text.starts_with("no TEE device found: "), "{text}");
    for path in ["dev/sev-guest", "dev/tdx_guest", TSM, "dev/attestation"] {
        assert!(text.contains(path), "{path} not named in {text}");
    }
    assert!(text.ends_with("use simulation"), "{text}");

    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["selected"], serde_json::Value::Null);
    assert_eq!(json["probes"][0]["kind"], "configfs-tsm");
    assert_eq!(json["probes"][0]["outcome"]["status"], "absent");

    let err = d.attester().unwrap_err();
    assert!(matches!(err, AttesterError::NoAttester(_)), "{err:?}");
    assert!(err.to_string().contains("use simulation"));
}

#[test]
fn attester_detect_sev_guest() {
    let tree = Tree::new();
    tree.file("dev/sev-guest", b"");
    let d = detect(tree.root());
    let s = d.selected.as_ref().unwrap();
    assert_eq!((s.kind, s.tee), (AttesterKind::SevGuest, TeeKind::Snp));
    let a = d.attester().unwrap();
    assert_eq!((a.kind(), a.tee()), (AttesterKind::SevGuest, TeeKind::Snp));
    let text = d.to_string();
    assert!(text.starts_with("using sev-guest (snp) at "), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("dev/tdx_guest (tdx-guest): absent"), "{text}");
}

#[test]
fn attester_detect_tdx_guest_alone_is_unusable() {
    let tree = Tree::new();
    tree.file("dev/tdx_guest", b"");
    let d = detect(tree.root());
    assert_eq!(d.selected, None);
    let tdx = &d.probes[2];
    assert_eq!(tdx.kind, AttesterKind::TdxGuest);
    assert!(
        matches!(&tdx.outcome, ProbeOutcome::Unusable { reason } if reason.contains("TDREPORT"))
    );
    let text = d.to_string();
    assert!(text.starts_with("no usable TEE attester found:"), "{text}");
    assert!(text.contains("configfs-tsm"), "{text}");
    assert!(
        text.ends_with("fix one of the above, or use simulation"),
        "{text}"
    );
}

#[test]
fn attester_detect_prefers_configfs() {
    for (device, tee) in [
        ("dev/tdx_guest", TeeKind::Tdx),
        ("dev/sev-guest", TeeKind::Snp),
    ] {
        let tree = Tree::new();
        tree.dir(TSM);
        tree.file(device, b"");
        let d = detect(tree.root());
        let s = d.selected.as_ref().unwrap();
        assert_eq!(
            (s.kind, s.tee),
            (AttesterKind::ConfigfsTsm, tee),
            "{device}"
        );
        let a = d.attester().unwrap();
        assert_eq!((a.kind(), a.tee()), (AttesterKind::ConfigfsTsm, tee));
    }
}

#[test]
fn attester_detect_configfs_without_provider() {
    let tree = Tree::new();
    tree.dir(TSM);
    let d = detect(tree.root());
    assert_eq!(d.selected, None);
    assert!(
        matches!(&d.probes[0].outcome, ProbeOutcome::Unusable { reason } if reason.contains("provider")),
        "{:?}",
        d.probes[0]
    );
    assert!(tree.tsm_entries().is_empty(), "probe entry left behind");
}

#[test]
fn attester_detect_gramine() {
    let d = detect(gramine_tree("dcap").root());
    let s = d.selected.as_ref().unwrap();
    assert_eq!((s.kind, s.tee), (AttesterKind::Gramine, TeeKind::Sgx));

    let d = detect(gramine_tree("epid").root());
    assert_eq!(d.selected, None);
    assert!(
        matches!(&d.probes[3].outcome, ProbeOutcome::Unusable { reason } if reason.contains("\"epid\"")),
        "{:?}",
        d.probes[3]
    );
}

/// Whether this process bypasses file permissions (root with CAP_DAC_OVERRIDE).
fn bypasses_permissions(path: &Path) -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_ok()
}

#[test]
fn attester_detect_sev_guest_permission() {
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new();
    let dev = tree.file("dev/sev-guest", b"");
    fs::set_permissions(&dev, fs::Permissions::from_mode(0o000)).unwrap();
    let d = detect(tree.root());
    if bypasses_permissions(&dev) {
        assert_eq!(d.selected.unwrap().kind, AttesterKind::SevGuest);
        return;
    }
    assert_eq!(d.selected, None);
    match &d.probes[1].outcome {
        ProbeOutcome::PermissionDenied { hint } => {
            assert!(hint.contains("run as root"), "{hint}");
            assert!(hint.contains("dev/sev-guest"), "{hint}");
        }
        other => panic!("expected permission denied, got {other:?}"),
    }
    let err = SevGuest::new(tree.root()).evidence(&RD).unwrap_err();
    assert!(
        matches!(err, AttesterError::PermissionDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn attester_devices_on_ordinary_files() {
    let tree = Tree::new();
    tree.file("dev/sev-guest", b"");
    tree.file("dev/tdx_guest", b"");
    let err = SevGuest::new(tree.root()).evidence(&RD).unwrap_err();
    assert!(matches!(err, AttesterError::NotADevice { .. }), "{err:?}");
    let err = SevGuest::new(tree.root())
        .with_extended(false)
        .evidence(&RD)
        .unwrap_err();
    assert!(matches!(err, AttesterError::NotADevice { .. }), "{err:?}");

    let tdx = TdxGuest::new(tree.root());
    let err = tdx.tdreport(&RD).unwrap_err();
    assert!(matches!(err, AttesterError::NotADevice { .. }), "{err:?}");
    let err = tdx.evidence(&RD).unwrap_err();
    assert!(
        matches!(err, AttesterError::TdxQuoteUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("configfs-tsm"));
}

#[test]
fn attester_devices_absent() {
    let tree = Tree::new();
    let err = SevGuest::new(tree.root()).evidence(&RD).unwrap_err();
    assert!(
        matches!(&err, AttesterError::Missing { path, .. } if path.ends_with("dev/sev-guest")),
        "{err:?}"
    );
}

/// A MSG_REPORT_RSP with `status`, `size` and a report of `fill` bytes.
fn report_resp(status: u32, size: u32) -> Vec<u8> {
    let mut resp = vec![0u8; RESP_LEN];
    resp[0..4].copy_from_slice(&status.to_le_bytes());
    resp[4..8].copy_from_slice(&size.to_le_bytes());
    for (i, b) in resp[32..32 + REPORT_LEN].iter_mut().enumerate() {
        *b = i as u8;
    }
    resp
}

#[test]
fn attester_sev_guest_response_decoding() {
    let report = decode_report_resp(&report_resp(0, REPORT_LEN as u32)).unwrap();
    assert_eq!(report.len(), REPORT_LEN);
    assert_eq!(report[..3], [0, 1, 2]);

    let err = decode_report_resp(&report_resp(0x16, REPORT_LEN as u32)).unwrap_err();
    assert!(
        matches!(err, AttesterError::SnpGuestRequest { fw_error: 0x16, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("VMPL"), "{err}");

    for bad in [
        report_resp(0, 100),
        report_resp(0, RESP_LEN as u32),
        report_resp(0, REPORT_LEN as u32)[..20].to_vec(),
    ] {
        let err = decode_report_resp(&bad).unwrap_err();
        assert!(matches!(err, AttesterError::Malformed { .. }), "{err:?}");
    }
}

#[test]
fn attester_sev_guest_request_encoding() {
    let req = encode_report_req(&RD, 3);
    assert_eq!(req.len(), 96);
    assert_eq!(&req[..64], &RD);
    assert_eq!(u32::from_le_bytes(req[64..68].try_into().unwrap()), 3);
    assert!(
        req[68..].iter().all(|&b| b == 0),
        "reserved bytes must be zero"
    );
}

#[test]
fn attester_sev_guest_derived_key_encodings() {
    let req = encode_derived_key_req(2, SEALING_FIELDS);
    assert_eq!(req.len(), 32);
    assert_eq!(req[..8], [0; 8], "VCEK root key, reserved");
    assert_eq!(
        u64::from_le_bytes(req[8..16].try_into().unwrap()),
        0b1001,
        "guest policy and measurement"
    );
    assert_eq!(u32::from_le_bytes(req[16..20].try_into().unwrap()), 2);
    assert_eq!(req[20..], [0; 12], "no guest SVN or TCB version mixed in");

    let mut resp = vec![0u8; 64];
    resp[0x20..].copy_from_slice(&[7; 32]);
    assert_eq!(*decode_derived_key_resp(&resp).unwrap(), vec![7; 32]);
    resp[0] = 0x16;
    let err = decode_derived_key_resp(&resp).unwrap_err();
    assert!(err.to_string().contains("0x16"), "{err}");
    assert!(matches!(
        decode_derived_key_resp(&resp[..40]),
        Err(AttesterError::Malformed { .. })
    ));
}

#[test]
fn attester_sealing_keys_come_only_from_tees_that_have_them() {
    let tree = gramine_tree("dcap");
    let gramine = Gramine::new(tree.root());
    let err = gramine.sealing_key().unwrap_err();
    assert!(matches!(err, AttesterError::Missing { .. }), "{err:?}");
    tree.file("dev/attestation/keys/_sgx_mrsigner", &[9; 16]);
    assert_eq!(*gramine.sealing_key().unwrap(), vec![9; 16]);
    tree.file("dev/attestation/keys/_sgx_mrsigner", &[9; 15]);
    assert!(matches!(
        gramine.sealing_key(),
        Err(AttesterError::Malformed { .. })
    ));

    let tdx = ConfigfsTsm::new(tree.root(), TeeKind::Tdx).sealing_key();
    assert!(
        matches!(
            &tdx,
            Err(AttesterError::NoSealingKey {
                mechanism: "TDX",
                ..
            })
        ),
        "{tdx:?}"
    );
    // An SNP guest derives its key through /dev/sev-guest, which this tree lacks.
    let snp = ConfigfsTsm::new(tree.root(), TeeKind::Snp).sealing_key();
    assert!(
        matches!(&snp, Err(AttesterError::Missing { path, .. }) if path.ends_with("dev/sev-guest")),
        "{snp:?}"
    );
}

/// A certificate table entry: GUID, offset, length.
fn cert_entry(guid: u8, offset: u32, len: u32) -> Vec<u8> {
    let mut e = vec![guid; 16];
    e.extend(offset.to_le_bytes());
    e.extend(len.to_le_bytes());
    e
}

#[test]
fn attester_sev_guest_cert_table_length() {
    // Two entries and the terminator (72 bytes), certificates at 72..172 and 172..272, then
    // the unused rest of the page-sized buffer.
    let mut table = cert_entry(1, 72, 100);
    table.extend(cert_entry(2, 172, 100));
    table.extend([0u8; 24]);
    table.resize(4096, 0);
    assert_eq!(cert_table_len(&table).unwrap(), 272);

    assert_eq!(cert_table_len(&[0u8; 4096]).unwrap(), 0, "no certificates");

    let mut past_end = cert_entry(1, 4000, 200);
    past_end.extend([0u8; 24]);
    past_end.resize(4096, 0);
    assert!(matches!(
        cert_table_len(&past_end),
        Err(AttesterError::Malformed { .. })
    ));

    let unterminated = cert_entry(1, 0, 24);
    assert!(matches!(
        cert_table_len(&unterminated),
        Err(AttesterError::Malformed { .. })
    ));
}
