//! CoCo's `snp` evidence: `{"attestation_report": {...}, "cert_chain": [...]}`, where the report
//! is the `sev` crate's serde form (numbers, and byte arrays as JSON arrays) rather than raw
//! bytes. The signature covers the raw layout, so the report is re-encoded byte for byte; a
//! wrong encoding can only make the signature fail, never pass.

use serde::{Deserialize, Serialize};

use super::{Product, REPORT_LEN, Report, SnpError};

/// One entry of `cert_chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertEntry {
    /// `VCEK`, `VLEK`, `ASK`, `ARK`, ...
    pub cert_type: String,
    /// The certificate, DER.
    pub data: Vec<u8>,
}

/// CoCo `snp` evidence, decoded: the raw report and any certificates it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoSnpEvidence {
    /// The report in its hardware layout.
    pub report: Vec<u8>,
    /// Certificates from `cert_chain`.
    pub certs: Vec<CertEntry>,
}

#[derive(Serialize, Deserialize)]
struct Evidence {
    attestation_report: ReportJson,
    #[serde(default)]
    cert_chain: Option<Vec<CertEntry>>,
}

#[derive(Serialize, Deserialize)]
struct TcbJson {
    #[serde(default)]
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Serialize, Deserialize)]
struct VersionJson {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Serialize, Deserialize)]
struct SignatureJson {
    r: Vec<u8>,
    s: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ReportJson {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: TcbJson,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: TcbJson,
    #[serde(default)]
    cpuid_fam_id: Option<u8>,
    #[serde(default)]
    cpuid_mod_id: Option<u8>,
    #[serde(default)]
    cpuid_step: Option<u8>,
    chip_id: Vec<u8>,
    committed_tcb: TcbJson,
    current: VersionJson,
    committed: VersionJson,
    launch_tcb: TcbJson,
    #[serde(default)]
    launch_mit_vector: Option<u64>,
    #[serde(default)]
    current_mit_vector: Option<u64>,
    signature: SignatureJson,
}

fn bad(reason: impl Into<String>) -> SnpError {
    SnpError::BadVek {
        reason: format!("CoCo snp evidence: {}", reason.into()),
    }
}

/// Writes fields into a report-sized buffer, checking every length.
struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, at: usize, value: &[u8], len: usize, what: &str) -> Result<(), SnpError> {
        if value.len() > len {
            return Err(bad(format!(
                "{what} is {} bytes, the field holds {len}",
                value.len()
            )));
        }
        self.0[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }
    fn tcb(&mut self, at: usize, t: &TcbJson) {
        let raw = match t.fmc {
            Some(fmc) => [fmc, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode],
            None => [t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode],
        };
        self.0[at..at + 8].copy_from_slice(&raw);
    }
}

/// Decode CoCo `snp` evidence into the raw report and its certificates.
pub fn parse(json: &[u8]) -> Result<CocoSnpEvidence, SnpError> {
    let e: Evidence = serde_json::from_slice(json).map_err(|err| bad(err.to_string()))?;
    let r = &e.attestation_report;
    let mut w = Writer(vec![0u8; REPORT_LEN]);
    w.bytes(0x00, &r.version.to_le_bytes(), 4, "version")?;
    w.bytes(0x04, &r.guest_svn.to_le_bytes(), 4, "guest_svn")?;
    w.bytes(0x08, &r.policy.to_le_bytes(), 8, "policy")?;
    w.bytes(0x10, &r.family_id, 16, "family_id")?;
    w.bytes(0x20, &r.image_id, 16, "image_id")?;
    w.bytes(0x30, &r.vmpl.to_le_bytes(), 4, "vmpl")?;
    w.bytes(0x34, &r.sig_algo.to_le_bytes(), 4, "sig_algo")?;
    w.tcb(0x38, &r.current_tcb);
    w.bytes(0x40, &r.plat_info.to_le_bytes(), 8, "plat_info")?;
    w.bytes(0x48, &r.key_info.to_le_bytes(), 4, "key_info")?;
    w.bytes(0x50, &r.report_data, 64, "report_data")?;
    w.bytes(0x90, &r.measurement, 48, "measurement")?;
    w.bytes(0xC0, &r.host_data, 32, "host_data")?;
    w.bytes(0xE0, &r.id_key_digest, 48, "id_key_digest")?;
    w.bytes(0x110, &r.author_key_digest, 48, "author_key_digest")?;
    w.bytes(0x140, &r.report_id, 32, "report_id")?;
    w.bytes(0x160, &r.report_id_ma, 32, "report_id_ma")?;
    w.tcb(0x180, &r.reported_tcb);
    if r.version >= 3 {
        let cpuid = [r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step].map(Option::unwrap_or_default);
        w.bytes(0x188, &cpuid, 3, "cpuid")?;
    }
    w.bytes(0x1A0, &r.chip_id, 64, "chip_id")?;
    w.tcb(0x1E0, &r.committed_tcb);
    w.bytes(
        0x1E8,
        &[r.current.build, r.current.minor, r.current.major],
        3,
        "current",
    )?;
    w.bytes(
        0x1EC,
        &[r.committed.build, r.committed.minor, r.committed.major],
        3,
        "committed",
    )?;
    w.tcb(0x1F0, &r.launch_tcb);
    if r.version >= 5 {
        w.bytes(
            0x1F8,
            &r.launch_mit_vector.unwrap_or(0).to_le_bytes(),
            8,
            "launch_mit_vector",
        )?;
        w.bytes(
            0x200,
            &r.current_mit_vector.unwrap_or(0).to_le_bytes(),
            8,
            "current_mit_vector",
        )?;
    }
    w.bytes(0x2A0, &r.signature.r, 72, "signature.r")?;
    w.bytes(0x2E8, &r.signature.s, 72, "signature.s")?;
    Ok(CocoSnpEvidence {
        report: w.0,
        certs: e.cert_chain.unwrap_or_default(),
    })
}

/// Encode a report (and certificates) as CoCo `snp` evidence, the form CoCo's attester sends.
pub fn to_json(
    report: &Report,
    product: Product,
    certs: Vec<CertEntry>,
) -> Result<String, SnpError> {
    let tcb = |t: super::TcbVersion| {
        let d = t.decode(product);
        TcbJson {
            fmc: d.fmc,
            bootloader: d.bootloader,
            tee: d.tee,
            snp: d.snp,
            microcode: d.microcode,
        }
    };
    let version = |v: [u8; 3]| VersionJson {
        build: v[0],
        minor: v[1],
        major: v[2],
    };
    let json = ReportJson {
        version: report.version,
        guest_svn: report.guest_svn,
        policy: report.policy,
        family_id: report.family_id.to_vec(),
        image_id: report.image_id.to_vec(),
        vmpl: report.vmpl,
        sig_algo: report.sig_algo,
        current_tcb: tcb(report.current_tcb),
        plat_info: report.platform_info,
        key_info: report.key_info,
        report_data: report.report_data.to_vec(),
        measurement: report.measurement.to_vec(),
        host_data: report.host_data.to_vec(),
        id_key_digest: report.id_key_digest.to_vec(),
        author_key_digest: report.author_key_digest.to_vec(),
        report_id: report.report_id.to_vec(),
        report_id_ma: report.report_id_ma.to_vec(),
        reported_tcb: tcb(report.reported_tcb),
        cpuid_fam_id: report.cpuid.map(|c| c[0]),
        cpuid_mod_id: report.cpuid.map(|c| c[1]),
        cpuid_step: report.cpuid.map(|c| c[2]),
        chip_id: report.chip_id.to_vec(),
        committed_tcb: tcb(report.committed_tcb),
        current: version(report.current_version),
        committed: version(report.committed_version),
        launch_tcb: tcb(report.launch_tcb),
        launch_mit_vector: report.launch_mit_vector,
        current_mit_vector: report.current_mit_vector,
        signature: SignatureJson {
            r: report.signature_r.to_vec(),
            s: report.signature_s.to_vec(),
        },
    };
    serde_json::to_string(&Evidence {
        attestation_report: json,
        cert_chain: Some(certs),
    })
    .map_err(|e| bad(e.to_string()))
}
