//! The `cloister` binary end to end: real processes, real files, exit codes and JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod hardening;
mod image;
mod keep;
mod replicas;
mod survive;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

/// The JSON output of a command that must have succeeded.
fn success_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn vector(rel: &str) -> String {
    let base = std::env::var_os("CLOISTER_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation"),
        PathBuf::from,
    );
    let path = base.join(rel);
    assert!(path.exists(), "missing vector {}", path.display());
    path.display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloister-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn evidence_tour_verifies_every_simulated_kind_and_none_passes_for_hardware() {
    let v = success_json(&cloister(&["evidence-tour", "-o", "json"]));
    assert_eq!(v["ok"], true);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "sgx, tdx, snp and both Azure vTPM kinds");
    for step in steps {
        assert_eq!(step["simulated"], true, "{step}");
        assert_eq!(step["accepted_under_simulation_root"], true, "{step}");
        assert_eq!(step["rejected_under_production_roots"], true, "{step}");
    }
}

#[test]
fn verify_real_sgx_quote_reports_status_and_advisories() {
    let quote = vector("sgx/phala_sgx_quote.bin");
    let coll = vector("sgx/phala_sgx_quote_collateral.json");
    let out = cloister(&[
        "evidence",
        "verify",
        "--evidence",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "2025-07-01T00:00:00Z",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["tee"], "sgx");
    assert_eq!(v["simulated"], false);
    assert_eq!(v["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        v["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(
        v["claims"]["measurements"]["mr_enclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert!(v["error"].is_null());
}

#[test]
fn verify_rejects_with_exit_1_and_says_why() {
    let quote = vector("tdx/phala_tdx_quote_outdated.bin");
    let coll = vector("tdx/phala_tdx_quote_outdated_collateral.json");
    let out = cloister(&[
        "evidence",
        "verify",
        "--evidence",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "2026-03-01T00:00:00Z",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["tee"], "tdx");
    let err = v["error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("no matching tcb level"), "{err}");
}

#[test]
fn debug_enclave_is_rejected_unless_allowed() {
    let quote = vector("tdx/trustee_tdx_quote_4.bin");
    let coll = vector("tdx/collateral_50806f000000_2023-06/collateral.json");
    let args = [
        "evidence",
        "verify",
        "--evidence",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "2023-07-01T00:00:00Z",
        "-o",
        "json",
    ];
    let out = cloister(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["error"].as_str().unwrap().contains("debug"));
    let mut allowed = args.to_vec();
    allowed.push("--allow-debug");
    let out = cloister(&allowed);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(v["claims"]["debug"], true);
}

#[test]
fn verify_real_snp_report_from_hex() {
    let out = cloister(&[
        "evidence",
        "verify",
        "--evidence",
        &vector("snp/virtee_report_milan.hex"),
        "--vek",
        &vector("snp/virtee_vcek_milan.der"),
        "--chain",
        &vector("snp/amd_milan_ask_ark.pem"),
        "--at",
        "2025-01-01T00:00:00Z",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["tee"], "snp");
    assert_eq!(v["evidence_encoding"], "hex");
    assert_eq!(
        v["claims"]["measurements"]["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
}

/// `cloister evidence simulate --tee TEE --report-data c0ffee --out DIR -o json`.
fn simulate_into(tee: &str, dir: &Path) -> Value {
    let out = cloister(&[
        "evidence",
        "simulate",
        "--tee",
        tee,
        "--report-data",
        "c0ffee",
        "--out",
        dir.to_str().unwrap(),
        "-o",
        "json",
    ]);
    success_json(&out)
}

#[test]
fn simulated_azure_evidence_verifies_with_the_printed_command() {
    for tee in ["az-snp-vtpm", "az-tdx-vtpm"] {
        let dir = scratch(tee);
        let command = simulate_into(tee, &dir)["verify_command"]
            .as_str()
            .unwrap()
            .to_string();
        let mut argv: Vec<&str> = command.split(' ').skip(1).collect();
        argv.extend(["-o", "json"]);
        let out = cloister(&argv);
        let v = json(&out);
        assert_eq!(out.status.code(), Some(0), "{tee}: {command}: {v}");
        assert_eq!(v["tee"], tee);
        assert_eq!(v["simulated"], true);
        // Without the nonce the quote carries, the same evidence is refused.
        let pos = argv.iter().position(|a| *a == "--nonce").unwrap();
        let mut wrong = argv.clone();
        wrong[pos + 1] = "00";
        assert_eq!(cloister(&wrong).status.code(), Some(1), "{tee}");
    }
}

#[test]
fn simulate_then_verify_each_kind_through_files() {
    for tee in ["sgx", "tdx", "snp"] {
        let dir = scratch(tee);
        let sim = simulate_into(tee, &dir);
        let at = sim["verify_at"].as_str().unwrap().to_string();
        let mut args = vec![
            "evidence".to_string(),
            "verify".into(),
            "--at".into(),
            at.clone(),
            "-o".into(),
            "json".into(),
            "--trust-anchor".into(),
            dir.join("anchor.pem").display().to_string(),
            "--evidence".into(),
            dir.join("evidence.bin").display().to_string(),
        ];
        if tee == "snp" {
            args.extend(["--vek".into(), dir.join("vcek.der").display().to_string()]);
            args.extend([
                "--chain".into(),
                dir.join("chain.pem").display().to_string(),
            ]);
        } else {
            args.extend([
                "--collateral".into(),
                dir.join("collateral.json").display().to_string(),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cloister(&argv);
        let v = json(&out);
        assert_eq!(out.status.code(), Some(0), "{tee}: {v}");
        assert_eq!(v["simulated"], true);
        assert_eq!(v["tee"], tee);
        assert!(
            v["claims"]["report_data"]
                .as_str()
                .unwrap()
                .starts_with("c0ffee00")
        );
        // The same evidence without the simulation anchor is refused.
        let argv: Vec<&str> = argv
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| !(6..8).contains(i))
            .map(|(_, a)| a)
            .collect();
        let out = cloister(&argv);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{tee} accepted without the simulation root"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn inspect_decodes_fields_without_verifying() {
    let out = cloister(&[
        "evidence",
        "inspect",
        "--evidence",
        &vector("tdx/phala_near_quote.hex"),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("287a9242edd8c8429913ec66f44af611b820cf9b574f303a6caeddeb4c9826311aef6e518aaf4a17f55a81154592b7b3"), "RTMR3 missing: {text}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = cloister(&[
        "evidence",
        "verify",
        "--evidence",
        "/nonexistent/q.bin",
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/q.bin"));
    let out = cloister(&["evidence", "verify", "--evidence", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --at must be a usage error"
    );
    let out = cloister(&["evidence", "verify", "--evidence", "x", "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    // An unreachable coordinator: each cause said once.
    let out = cloister(&[
        "verify",
        "--coordinator",
        "https://127.0.0.1:9",
        "--accept-simulation",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.matches("127.0.0.1:9").count(), 1, "{text}");
}

#[test]
fn fetching_what_evidence_lacks_fails_clearly_when_the_service_is_down() {
    let quote = vector("tdx/gotdx_cos-113-tdx-quote.bin");
    let out = cloister(&[
        "evidence",
        "verify",
        "--evidence",
        &quote,
        "--at",
        "2025-11-01T00:00:00Z",
        "--fetch",
        "--pcs-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.0.1:9") && stderr.contains("drop --fetch"),
        "{stderr}"
    );
}

#[test]
fn platform_check_explains_itself_in_json() {
    let out = cloister(&["platform", "check", "-o", "json"]);
    let v = json(&out);
    assert!(v["probes"].as_array().is_some_and(|p| !p.is_empty()), "{v}");
    assert_eq!(out.status.success(), !v["selected"].is_null());
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args([
            "evidence",
            "inspect",
            "--evidence",
            &vector("tdx/phala_tdx_quote.bin"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child has started writing: every write meets a closed
    // pipe (Rust ignores SIGPIPE, so writes fail with EPIPE instead of killing the process).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---- The deployment end to end: a coordinator process, the CLI and launchers on loopback ----

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

/// A coordinator process with its own state and simulated platform, killed on drop.
struct Deployment {
    dir: PathBuf,
    url: String,
    child: Child,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Deployment {
    fn start(name: &str) -> Self {
        Self::start_in(scratch(name))
    }

    fn start_in(dir: PathBuf) -> Self {
        Self::spawn(dir, &[], None)
    }

    /// A coordinator with `extra` flags, logging at info to `coordinator.err`, optionally
    /// limited to `max_files` open files.
    fn spawn(dir: PathBuf, extra: &[&str], max_files: Option<u32>) -> Self {
        let bin = env!("CARGO_BIN_EXE_cloister");
        let mut command = match max_files {
            None => Command::new(bin),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                sh
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("coordinator.err"))
            .unwrap();
        let mut child = command
            .args([
                "coordinator",
                "serve",
                "--simulation",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("CLOISTER_SIM_DIR", dir.join("sim"))
            .env("CLOISTER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        Self { dir, url, child }
    }

    /// What the coordinator logged.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("coordinator.err")).unwrap_or_default()
    }

    fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        std::mem::forget(self);
        Self::start_in(dir)
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(args)
            .env("CLOISTER_SIM_DIR", self.dir.join("sim"))
            .env("CLOISTER_COORDINATOR", &self.url)
            .env("CLOISTER_ROOT_CA", self.dir.join("root.pem"))
            .output()
            .unwrap()
    }

    fn verify(&self) -> Value {
        let root = self.dir.join("root.pem").display().to_string();
        let out = self.cmd(&[
            "verify",
            "--accept-simulation",
            "--save-root",
            &root,
            "-o",
            "json",
        ]);
        success_json(&out)
    }

    fn set_manifest(&self, text: &str) -> Output {
        let path = self.dir.join("manifest.json");
        std::fs::write(&path, text).unwrap();
        self.cmd(&["manifest", "set", &path.display().to_string(), "-o", "json"])
    }

    /// Launch `workload` running `sh -c 'echo $VAR'` under the given simulation flags.
    fn launch(&self, workload: &str, flags: &[&str], script: &str) -> Output {
        let workdir = self.dir.join(format!("w-{workload}-{}", flags.len()));
        let mut args = vec![
            "launch",
            "--simulation",
            "--workload",
            workload,
            "--workdir",
            workdir.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        self.cmd(&args)
    }
}

fn mrenclave() -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            "printf 'cloister simulated enclave' | sha256sum | cut -d' ' -f1",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn manifest_json(extra_package: &str) -> String {
    format!(
        r#"{{
  "packages": {{
    "app": {{ "tee": "sgx", "unique_id": "{m}" {extra_package} }},
    "strict": {{ "tee": "sgx", "unique_id": "{m}", "accepted_tcb_statuses": ["UpToDate"] }}
  }},
  "workloads": {{
    "app": {{ "package": "app", "parameters": {{ "env": {{ "KEY": "{{{{ hex .Secrets.k }}}}", "MINE": "{{{{ hex .Secrets.mine }}}}" }} }} }},
    "once": {{ "package": "app", "max_activations": 1 }},
    "strict": {{ "package": "strict" }}
  }},
  "secrets": {{
    "k": {{ "type": "symmetric-key", "size": 128, "shared": true }},
    "mine": {{ "type": "symmetric-key", "size": 128 }}
  }}
}}"#,
        m = mrenclave()
    )
}

/// Everything a failed command said (errors go to stdout as JSON with `-o json`).
fn stderr(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_deployment_flow_admits_only_what_the_manifest_allows() {
    let d = Deployment::start("flow");
    let statement = d.verify();
    assert_eq!(statement["verified"], true);
    assert_eq!(statement["simulated"], true);
    assert!(statement["manifest_hash"].is_null());

    // A malformed manifest: every error with its path, nothing set.
    let bad = d.set_manifest(
        r#"{"packages": {"p": {"tee": "sgx"}}, "workloads": {"w": {"package": "nope"}}}"#,
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("$.workloads.w.package"),
        "{}",
        stderr(&bad)
    );

    let set = d.set_manifest(&manifest_json(""));
    assert!(set.status.success(), "{}", stderr(&set));
    let hash = json(&set)["manifest_hash"].as_str().unwrap().to_string();
    assert_eq!(
        d.verify()["manifest_hash"],
        hash.as_str(),
        "the statement binds the manifest"
    );

    // The right enclave gets its templated secrets.
    let ok = d.launch("app", &[], "echo $KEY $MINE");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let shared = String::from_utf8_lossy(&ok.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(shared.len(), 32);

    // A wrong measurement, a debug enclave, an out-of-date TCB, an unknown workload type.
    let wrong = d.launch("app", &["--sim-mrenclave", &"ab".repeat(32)], "true");
    assert!(stderr(&wrong).contains("MRENCLAVE"), "{}", stderr(&wrong));
    let debug = d.launch("app", &["--sim-debug"], "true");
    assert!(!debug.status.success());
    assert!(
        stderr(&debug).to_lowercase().contains("debug"),
        "{}",
        stderr(&debug)
    );
    let old = d.launch("strict", &["--sim-tcb", "OutOfDate"], "true");
    assert!(stderr(&old).contains("TCB"), "{}", stderr(&old));
    let unknown = d.launch("ghost", &[], "true");
    assert!(
        stderr(&unknown).contains("unknown workload"),
        "{}",
        stderr(&unknown)
    );

    // Max activations.
    assert!(d.launch("once", &[], "true").status.success());
    let again = d.launch("once", &[], "true");
    assert!(stderr(&again).contains("activations"), "{}", stderr(&again));

    // A restart keeps the CA, the shared secret and the counters.
    let root_before = std::fs::read_to_string(d.dir.join("root.pem")).unwrap();
    let d = d.restart();
    let out = d.cmd(&["certificate", "root"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), root_before);
    let after = d.launch("app", &[], "echo $KEY");
    assert_eq!(String::from_utf8_lossy(&after.stdout).trim(), shared);
    assert!(!d.launch("once", &[], "true").status.success());

    // The audit log recorded it all, hash-chained.
    let status = d.cmd(&["status", "-o", "json"]);
    assert_eq!(json(&status)["state"], "accepting-workloads");
}

#[test]
fn quickstart_runs_the_whole_flow() {
    let dir = scratch("quickstart");
    let out = cloister(&["quickstart", "--dir", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("SIMULATION"), "{text}");
    assert!(text.contains("coordinator verified"), "{text}");
    assert!(text.contains("same greeting key on both sides"), "{text}");
    // The WebAssembly workload got the same key from the coordinator, and the keep spoke
    // mTLS for it to the native server.
    assert!(text.contains("wasm client: same greeting key"), "{text}");
    // Both workloads got a certificate chain from the coordinator and the shared root.
    for workload in ["server", "client"] {
        let chain = std::fs::read_to_string(dir.join(workload).join("workload-chain.pem")).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{workload}");
    }
    // For machines: one JSON object on stdout, the narration on stderr.
    let dir = scratch("quickstart-json");
    let out = cloister(&["quickstart", "--dir", dir.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json(&out);
    assert_eq!(
        (summary["ok"].as_bool(), summary["simulated"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(summary["manifest_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn a_bundle_verifies_offline_and_a_changed_one_does_not() {
    let d = Deployment::start("bundle");
    d.verify();
    assert!(d.set_manifest(&manifest_json("")).status.success());
    let bundle = d.dir.join("bundle.json");
    let out = d.cmd(&[
        "verify",
        "--accept-simulation",
        "--bundle",
        bundle.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let online = json(&out);
    // Offline: no coordinator URL, only the bundle.
    let offline = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args([
            "verify",
            "--accept-simulation",
            "--bundle",
            bundle.to_str().unwrap(),
            "-o",
            "yaml",
        ])
        .env("CLOISTER_SIM_DIR", d.dir.join("sim"))
        .env_remove("CLOISTER_COORDINATOR")
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", stderr(&offline));
    let yaml = String::from_utf8_lossy(&offline.stdout);
    assert!(
        yaml.contains(&format!(
            "manifest_hash: {}",
            online["manifest_hash"].as_str().unwrap()
        )),
        "{yaml}"
    );
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    tampered["manifest"] = Value::String("e30=".into());
    std::fs::write(&bundle, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args([
            "verify",
            "--accept-simulation",
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .env("CLOISTER_SIM_DIR", d.dir.join("sim"))
        .env_remove("CLOISTER_COORDINATOR")
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a rejection, not a usage error"
    );
    assert!(
        stderr(&refused).contains("REJECTED") && stderr(&refused).contains("manifest"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn manifest_convert_turns_a_marblerun_manifest_into_cloisters_form() {
    let dir = scratch("convert");
    let path = dir.join("marblerun.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"Packages": {{"p": {{"UniqueID": "{}"}}}}, "Marbles": {{"m": {{"Package": "p", "MaxActivations": 3}}}}}}"#,
            mrenclave()
        ),
    )
    .unwrap();
    let out = cloister(&["manifest", "convert", path.to_str().unwrap(), "-o", "yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("workloads:") && yaml.contains("max_activations: 3"),
        "{yaml}"
    );
    let check = cloister(&["manifest", "verify", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    // An invalid one is not passed through, unless asked to.
    let invalid = dir.join("invalid.json");
    std::fs::write(&invalid, r#"{"Marbles": {"m": {"Package": "missing"}}}"#).unwrap();
    let out = cloister(&["manifest", "convert", invalid.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--skip-validation"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    let out = cloister(&[
        "manifest",
        "convert",
        invalid.to_str().unwrap(),
        "--skip-validation",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn kbs_commands_fetch_a_resource_by_session_and_by_token() {
    let d = Deployment::start("kbs");
    d.verify();
    let manifest = r#"{
  "packages": { "pod": { "tee": "sample" } },
  "secrets": { "image_key": { "type": "symmetric-key", "size": 256, "shared": true } },
  "kbs": { "resources": { "default/key/1": { "secret": "image_key", "packages": ["pod"] } } }
}"#;
    assert!(d.set_manifest(manifest).status.success());
    let url = d.url.clone();
    let root = d.dir.join("root.pem").display().to_string();
    let common = [
        "--url",
        url.as_str(),
        "--root-ca",
        root.as_str(),
        "--simulation",
        "sample",
    ];
    let mut args = vec!["kbs", "get-resource", "--path", "default/key/1"];
    args.extend_from_slice(&common);
    let out = d.cmd(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let by_session = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(by_session.len(), 44, "32 bytes, base64: {by_session}");

    // kbs-client's passport flow: attest once, keep the key, fetch with the token.
    let key = d.dir.join("tee-key.pem").display().to_string();
    let token_file = d.dir.join("token");
    let mut args = vec![
        "kbs",
        "attest",
        "--tee-key-algorithm",
        "rsa",
        "--save-tee-key",
        key.as_str(),
    ];
    args.extend_from_slice(&common);
    let out = d.cmd(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&token_file, &out.stdout).unwrap();
    let token = token_file.display().to_string();
    let mut args = vec![
        "kbs",
        "get-resource",
        "--path",
        "default/key/1",
        "--attestation-token",
        token.as_str(),
        "--tee-key-file",
        key.as_str(),
        "-o",
        "json",
    ];
    args.extend_from_slice(&common);
    let out = d.cmd(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["resource_base64"], by_session.as_str());

    // A resource that does not exist: a clear refusal, exit 2.
    let mut args = vec!["kbs", "get-resource", "--path", "default/key/404"];
    args.extend_from_slice(&common);
    let out = d.cmd(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}
