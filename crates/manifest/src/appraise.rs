//! Matching verified evidence claims against a package.

use std::fmt;

use attest::TcbStatus;
use attest::claims::{
    Claims, Measurements, SgxMeasurements, SnpMeasurements, SnpTcb, TdxMeasurements,
};

use crate::schema::{Package, PackageTee};

/// One way the claims differ from what the package requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The field, in the TEE's own naming (`MRENCLAVE`, `RTMR2`, `TCB status`).
    pub field: &'static str,
    /// What the package requires.
    pub expected: String,
    /// What the claims say.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.field, self.expected, self.actual
        )
    }
}

const DEFAULT_TCB_STATUSES: [TcbStatus; 2] = [TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded];
const RTMR_NAMES: [&str; 4] = ["RTMR0", "RTMR1", "RTMR2", "RTMR3"];
const PCR_NAMES: [&str; 24] = [
    "PCR0", "PCR1", "PCR2", "PCR3", "PCR4", "PCR5", "PCR6", "PCR7", "PCR8", "PCR9", "PCR10",
    "PCR11", "PCR12", "PCR13", "PCR14", "PCR15", "PCR16", "PCR17", "PCR18", "PCR19", "PCR20",
    "PCR21", "PCR22", "PCR23",
];

#[derive(Default)]
struct Mismatches(Vec<Mismatch>);

impl Mismatches {
    fn add(&mut self, field: &'static str, expected: impl ToString, actual: impl ToString) {
        self.0.push(Mismatch {
            field,
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }

    fn exact(&mut self, field: &'static str, expected: Option<&[u8]>, actual: &[u8]) {
        if let Some(expected) = expected
            && expected != actual
        {
            self.add(field, hex::encode(expected), hex::encode(actual));
        }
    }

    fn minimum(&mut self, field: &'static str, minimum: Option<u64>, actual: u64) {
        if let Some(minimum) = minimum
            && actual < minimum
        {
            self.add(field, format!("at least {minimum}"), actual);
        }
    }
}

impl Package {
    /// Check verified `claims` against this package; `Err` lists every mismatch.
    ///
    /// `simulation_enabled` is the coordinator's switch: without it simulated claims never match,
    /// and `simulation` packages match nothing.
    pub fn appraise(&self, claims: &Claims, simulation_enabled: bool) -> Result<(), Vec<Mismatch>> {
        let mut out = Mismatches::default();
        if claims.simulated && !simulation_enabled {
            out.add(
                "simulation",
                "hardware evidence (simulation is disabled)",
                "simulated evidence",
            );
        }
        match self.tee.tee_kind() {
            None if self.tee == PackageTee::Sample => {
                out.add("TEE", "CoCo sample evidence", claims.tee);
            }
            None => self.appraise_simulation(claims, simulation_enabled, &mut out),
            Some(kind) => {
                if claims.tee != kind {
                    out.add("TEE", kind, claims.tee);
                }
                self.appraise_hardware(claims, &mut out);
            }
        }
        if out.0.is_empty() { Ok(()) } else { Err(out.0) }
    }

    fn appraise_simulation(&self, claims: &Claims, enabled: bool, out: &mut Mismatches) {
        if !enabled {
            out.add(
                "TEE",
                "simulation (enable simulation to use this package)",
                self.tee.as_str(),
            );
        } else if !claims.simulated {
            out.add(
                "TEE",
                "simulated evidence",
                format!("{} hardware evidence", claims.tee),
            );
        }
    }

    fn appraise_hardware(&self, claims: &Claims, out: &mut Mismatches) {
        if self.debug != claims.debug {
            out.add("debug", self.debug, claims.debug);
        }
        self.appraise_tcb(claims, out);
        match &claims.measurements {
            Measurements::Sgx(m) => self.appraise_sgx(m, out),
            Measurements::Tdx(m) => self.appraise_tdx(m, out),
            Measurements::Snp(m) => self.appraise_snp(m, out),
            // Measurements is non_exhaustive: a kind we do not know cannot satisfy a package.
            _ => out.add(
                "measurements",
                self.tee.as_str(),
                "a kind this manifest cannot check",
            ),
        }
        if matches!(self.tee, PackageTee::AzSnpVtpm | PackageTee::AzTdxVtpm) {
            self.appraise_pcrs(claims, out);
        }
    }

    fn appraise_tcb(&self, claims: &Claims, out: &mut Mismatches) {
        if let Some(status) = claims.tcb_status {
            let accepted = self
                .accepted_tcb_statuses
                .as_deref()
                .unwrap_or(&DEFAULT_TCB_STATUSES);
            if status != TcbStatus::UpToDate && !accepted.contains(&status) {
                let list: Vec<&str> = accepted.iter().map(|s| s.as_str()).collect();
                out.add(
                    "TCB status",
                    format!("one of UpToDate, {}", list.join(", ")),
                    status,
                );
            }
        }
        // MarbleRun: an empty list accepts every advisory, like an absent one.
        if let Some(accepted) = self.accepted_advisories.as_ref().filter(|a| !a.is_empty()) {
            for id in claims
                .advisory_ids
                .iter()
                .filter(|id| !accepted.contains(id))
            {
                out.add("advisory", format!("one of {}", accepted.join(", ")), id);
            }
        }
    }

    fn appraise_sgx(&self, m: &SgxMeasurements, out: &mut Mismatches) {
        out.exact(
            "MRENCLAVE",
            self.unique_id.as_ref().map(|h| &h.0[..]),
            &m.mr_enclave,
        );
        out.exact(
            "MRSIGNER",
            self.signer_id.as_ref().map(|h| &h.0[..]),
            &m.mr_signer,
        );
        if let Some(id) = self.product_id
            && id != m.isv_prod_id
        {
            out.add("ISVPRODID", id, m.isv_prod_id);
        }
        out.minimum(
            "ISVSVN",
            self.security_version.map(u64::from),
            u64::from(m.isv_svn),
        );
    }

    fn appraise_tdx(&self, m: &TdxMeasurements, out: &mut Mismatches) {
        out.exact("MRTD", self.mr_td.as_ref().map(|h| &h.0[..]), &m.mr_td);
        if let Some(rtmrs) = &self.rtmrs {
            for ((name, expected), actual) in RTMR_NAMES.iter().zip(rtmrs).zip(&m.rtmr) {
                out.exact(name, expected.as_ref().map(|h| &h.0[..]), &actual.0);
            }
        }
        out.exact(
            "MRCONFIGID",
            self.mr_config_id.as_ref().map(|h| &h.0[..]),
            &m.mr_config_id,
        );
        out.exact(
            "TD_ATTRIBUTES",
            self.td_attributes.as_ref().map(|h| &h.0[..]),
            &m.td_attributes,
        );
        out.exact("XFAM", self.xfam.as_ref().map(|h| &h.0[..]), &m.xfam);
        if let Some(min) = &self.min_tee_tcb_svn
            && m.tee_tcb_svn.iter().zip(min.0.iter()).any(|(a, b)| a < b)
        {
            out.add(
                "TEE_TCB_SVN",
                format!("at least {min} per byte"),
                hex::encode(m.tee_tcb_svn),
            );
        }
    }

    fn appraise_snp(&self, m: &SnpMeasurements, out: &mut Mismatches) {
        out.exact(
            "MEASUREMENT",
            self.measurement.as_ref().map(|h| &h.0[..]),
            &m.measurement,
        );
        out.exact(
            "HOST_DATA",
            self.host_data.as_ref().map(|h| &h.0[..]),
            &m.host_data,
        );
        out.exact(
            "ID_KEY_DIGEST",
            self.id_key_digest.as_ref().map(|h| &h.0[..]),
            &m.id_key_digest,
        );
        if let Some(required) = self.policy
            && m.policy & required != required
        {
            out.add(
                "POLICY",
                format!("bits {required:#x} set"),
                format!("{:#x}", m.policy),
            );
        }
        if let Some(max) = self.max_vmpl
            && m.vmpl > max
        {
            out.add("VMPL", format!("at most {max}"), m.vmpl);
        }
        if let Some(min) = &self.min_reported_tcb
            && !tcb_at_least(&m.reported_tcb, min)
        {
            out.add(
                "REPORTED_TCB",
                format!("at least {}", tcb_text(min)),
                tcb_text(&m.reported_tcb),
            );
        }
    }

    fn appraise_pcrs(&self, claims: &Claims, out: &mut Mismatches) {
        let Some(expected) = &self.pcrs else { return };
        let Some(vtpm) = &claims.vtpm else {
            out.add("vTPM", "PCR values", "no vTPM claims");
            return;
        };
        for (index, value) in expected {
            let name = PCR_NAMES.get(usize::from(*index)).copied().unwrap_or("PCR");
            match vtpm.pcrs.get(usize::from(*index)) {
                Some(actual) => out.exact(name, Some(&value.0), &actual.0),
                None => out.add(name, value, "absent"),
            }
        }
    }
}

fn tcb_at_least(actual: &SnpTcb, min: &SnpTcb) -> bool {
    actual.bootloader >= min.bootloader
        && actual.tee >= min.tee
        && actual.snp >= min.snp
        && actual.microcode >= min.microcode
        && actual.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
}

fn tcb_text(tcb: &SnpTcb) -> String {
    let fmc = tcb.fmc.map(|f| format!(" fmc={f}")).unwrap_or_default();
    format!(
        "bootloader={} tee={} snp={} microcode={}{fmc}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    )
}
