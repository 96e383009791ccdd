//! `cloister evidence-tour`: the trust core end to end on a machine with no TEE.
//!
//! For each TEE kind: simulate evidence in the real format, verify it through the same
//! verifier that checks hardware (simulation root as the anchor), then show that the very same
//! evidence is refused under the production roots.

use std::process::ExitCode;

use anyhow::Result;
use attest::evidence::{Outcome, Verifiers};
use attest::sim::{SimOptions, simulate};
use attest::{Policy, TeeKind, TrustAnchor};
use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use crate::cmd::evidence::print_claims;
use crate::output::{Format, field, outln, print_data};

/// Arguments of `evidence-tour`.
#[derive(Debug, Args)]
pub(crate) struct TourArgs {}

#[derive(Debug, Serialize)]
struct Step {
    tee: TeeKind,
    simulated: bool,
    accepted_under_simulation_root: bool,
    rejected_under_production_roots: bool,
    production_error: Option<String>,
    error: Option<String>,
    claims: Option<attest::Claims>,
}

/// Run the tour.
pub(crate) fn run(_args: TourArgs, format: Format) -> Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let report_data = attest::crypto::sha512(b"cloister quickstart");
    let policy = Policy {
        allow_simulation: true,
        ..Policy::default()
    };
    let mut steps = Vec::new();
    for tee in [
        TeeKind::Sgx,
        TeeKind::Tdx,
        TeeKind::Snp,
        TeeKind::AzSnpVtpm,
        TeeKind::AzTdxVtpm,
    ] {
        if format == Format::Text {
            outln!("\n== {tee}: simulating evidence in the real format");
        }
        let sim = simulate(tee, &report_data, &SimOptions::default(), now)?;
        let inputs = sim.inputs();
        let anchor = TrustAnchor::simulation(sim.anchor_pem.as_bytes())?;
        let outcome = Verifiers::with_anchor(anchor).verify_and_appraise(
            &sim.evidence,
            &inputs,
            &policy,
            now,
        );
        let production = Verifiers::production().verify_and_appraise(
            &sim.evidence,
            &inputs,
            &Policy::default(),
            now,
        );
        let step = step(tee, &outcome, &production);
        if format == Format::Text {
            print_step(&step, sim.evidence.len());
        }
        steps.push(step);
    }
    let ok = steps
        .iter()
        .all(|s| s.accepted_under_simulation_root && s.rejected_under_production_roots);
    match format {
        Format::Json | Format::Yaml => {
            print_data(format, &serde_json::json!({ "ok": ok, "steps": steps }))
        }
        Format::Text => outln!(
            "\n{}",
            if ok {
                "quickstart: every simulated evidence kind verified, and none passed for hardware"
            } else {
                "quickstart: FAILED (see above)"
            }
        ),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn step(tee: TeeKind, outcome: &Outcome, production: &Outcome) -> Step {
    Step {
        tee,
        simulated: outcome.claims.as_ref().is_some_and(|c| c.simulated),
        accepted_under_simulation_root: outcome.accepted(),
        rejected_under_production_roots: !production.accepted(),
        production_error: production.error.as_ref().map(ToString::to_string),
        error: outcome.error.as_ref().map(ToString::to_string),
        claims: outcome.claims.clone(),
    }
}

fn print_step(step: &Step, evidence_len: usize) {
    field("evidence", format!("{evidence_len} bytes"));
    if step.accepted_under_simulation_root {
        outln!("ACCEPTED  {}  [SIMULATED: not hardware evidence]", step.tee);
    } else {
        outln!("REJECTED  {}", step.tee);
    }
    if let Some(e) = &step.error {
        field("reason", e);
    }
    if let Some(c) = &step.claims {
        print_claims(c);
    }
    if let Some(e) = &step.production_error {
        field("under real roots", format!("rejected: {e}"));
    }
}
