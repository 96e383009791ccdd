//! The user's side: `verify`, `manifest`, `status`, `certificate`, `secret`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use attest::evidence::Verifiers;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use launcher::verify::{Expectations, Statement, check_bundle, verify_online};
use time::OffsetDateTime;

use crate::cmd::conn::{Conn, runtime};
use crate::output::{Format, outln, print_data};

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The coordinator's URL.
    #[arg(long, env = "CLOISTER_COORDINATOR")]
    coordinator: Option<String>,
    /// The package the coordinator must match (a manifest package, JSON or YAML).
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Accept a coordinator running on simulated hardware (this machine's simulated platform).
    #[arg(long)]
    accept_simulation: bool,
    /// Save the attested root certificate here, to pin later calls.
    #[arg(long)]
    save_root: Option<PathBuf>,
    /// With --coordinator: write an offline-verifiable bundle here. Without: check this bundle,
    /// with no network.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Refuse a coordinator whose sealed state is older than this version (the `state version`
    /// an earlier `verify` printed): it would run on a rolled-back copy of its state.
    #[arg(long, value_name = "VERSION")]
    expect_min_version: Option<u64>,
}

/// The verifiers for `simulation` (a simulated platform's directory) or for hardware.
pub(crate) fn verifiers(
    simulation: Option<&std::path::Path>,
    now: OffsetDateTime,
) -> Result<Verifiers> {
    Ok(match simulation {
        Some(dir) => {
            let (dcap, snp) = attest::sim::SimPlatform::open(dir, now)?.anchors(now)?;
            Verifiers::with_anchors(dcap, snp)
        }
        None => Verifiers::production(),
    })
}

/// Run `verify`.
pub(crate) fn verify(args: VerifyArgs, format: Format) -> Result<ExitCode> {
    let package = match &args.expect {
        Some(path) => Some(read_package(path)?),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let sim_dir = args
        .accept_simulation
        .then(attest::sim::SimPlatform::default_dir);
    let verifiers = verifiers(sim_dir.as_deref(), now)?;
    let expect = Expectations {
        verifiers: &verifiers,
        package: package.as_ref(),
        simulation: args.accept_simulation,
        min_version: args.expect_min_version,
        now,
    };
    let checked = match (&args.coordinator, &args.bundle) {
        (Some(url), bundle_out) => match runtime()?.block_on(verify_online(url, &expect)) {
            Ok((statement, root, bundle)) => {
                if let Some(path) = bundle_out {
                    std::fs::write(path, serde_json::to_vec_pretty(&bundle)?)
                        .with_context(|| format!("writing the bundle {}", path.display()))?;
                }
                Ok((statement, root))
            }
            Err(e) => Err(e),
        },
        (None, Some(path)) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let bundle: api::AttestationBundle = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not an attestation bundle", path.display()))?;
            check_bundle(&bundle, &expect)
        }
        (None, None) => {
            bail!("pass --coordinator URL, or --bundle FILE to check a saved bundle offline")
        }
    };
    let (statement, root) = match checked {
        Ok(checked) => checked,
        // Not reaching the coordinator is an I/O error (2); a coordinator that does not
        // verify is a rejection (1).
        Err(launcher::verify::CoordinatorRejected::Client(e)) => return Err(e.into()),
        Err(rejected) => return Ok(print_rejection(&rejected, format)),
    };
    if let Some(path) = &args.save_root {
        std::fs::write(path, attest::dcap::to_pem_string(&root))
            .with_context(|| format!("saving the root to {}", path.display()))?;
    }
    match format {
        Format::Json | Format::Yaml => print_data(format, &statement),
        Format::Text => print_statement(&statement, args.save_root.as_deref()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Say why the coordinator is not trusted; exit status 1.
fn print_rejection(rejected: &launcher::verify::CoordinatorRejected, format: Format) -> ExitCode {
    let reason = crate::output::error_chain(rejected);
    match format {
        Format::Json | Format::Yaml => print_data(
            format,
            &serde_json::json!({ "verified": false, "error": reason }),
        ),
        Format::Text => eprintln!("coordinator REJECTED: {reason}"),
    }
    ExitCode::from(1)
}

pub(crate) fn print_statement(s: &Statement, saved: Option<&std::path::Path>) {
    if s.simulated {
        outln!(
            "SIMULATION: this coordinator runs on simulated hardware; nothing here is protected"
        );
    }
    outln!(
        "coordinator verified ({} evidence, TCB {})",
        s.tee,
        s.tcb_status.as_deref().unwrap_or("n/a")
    );
    outln!("  root certificate   sha256:{}", s.root_sha256);
    outln!(
        "  manifest           {}",
        s.manifest_hash
            .as_deref()
            .map_or("none set yet".to_string(), |h| format!("sha256:{h}"))
    );
    match &s.state {
        Some(state) => {
            outln!(
                "  state version      {} (later: --expect-min-version {} refuses a rollback)",
                state.version,
                state.version
            );
            outln!(
                "  audit log          {} entries, head {}",
                state.audit_entries,
                state.audit_head
            );
        }
        None => outln!("  state version      not bound (an older coordinator)"),
    }
    if !s.measurement_checked {
        outln!("  measurement        NOT CHECKED: pass --expect PACKAGE.json to pin it");
    }
    if let Some(path) = saved {
        outln!(
            "  root saved to      {} (later commands pin it)",
            path.display()
        );
    }
}

pub(crate) fn read_package(path: &std::path::Path) -> Result<manifest::Package> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // A package file is a manifest with one package and nothing else.
    let wrapped = format!(
        "{{\"packages\": {{\"expected\": {}}}}}",
        String::from_utf8_lossy(&text)
    );
    let parsed = manifest::Manifest::parse(wrapped.as_bytes())
        .with_context(|| format!("{} is not a package (JSON)", path.display()))?;
    parsed
        .manifest
        .packages
        .get("expected")
        .cloned()
        .context("no package")
}

/// `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Upload a manifest (the first one, or a replacement by a user with UpdateManifest when
    /// one acknowledgement is enough).
    Set {
        /// The manifest file (JSON or YAML, cloister or MarbleRun format).
        file: PathBuf,
        /// Write the recovery key holders' encrypted shares here (JSON, holder → base64).
        #[arg(long)]
        recovery_secrets: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change the manifest in force: package updates at once, full updates once enough users
    /// acknowledged them.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Print the manifest in force.
    Get {
        #[command(flatten)]
        conn: Conn,
    },
    /// Validate a manifest file locally: every error with its path.
    Verify {
        /// The manifest file.
        file: PathBuf,
    },
    /// Convert a manifest (e.g. MarbleRun's) to cloister's canonical JSON or YAML.
    Convert {
        /// The manifest file.
        file: PathBuf,
        /// Convert it even if it breaks the manifest's rules (it is still refused when set).
        #[arg(long)]
        skip_validation: bool,
    },
}

/// Run a `manifest` subcommand.
pub(crate) fn manifest(command: ManifestCommand, format: Format) -> Result<ExitCode> {
    match command {
        ManifestCommand::Set {
            file,
            recovery_secrets,
            conn,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let client = conn.client()?;
            let answer: Option<api::ManifestSetResponse> =
                runtime()?.block_on(client.post("/manifest", bytes))?;
            let answer = answer.context("empty answer")?;
            save_recovery_secrets(&answer.recovery_secrets, recovery_secrets.as_deref())?;
            match format {
                Format::Json | Format::Yaml => print_data(format, &answer),
                Format::Text => {
                    outln!("manifest set: sha256:{}", answer.manifest_hash);
                    for w in &answer.warnings {
                        outln!("  warning: {w}");
                    }
                    print_recovery_secrets(&answer.recovery_secrets, recovery_secrets.as_deref());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Update(command) => update(command, format),
        ManifestCommand::Get { conn } => {
            let answer: api::ManifestResponse =
                runtime()?.block_on(conn.client()?.get("/manifest"))?;
            let raw = B64
                .decode(&answer.manifest)
                .context("the manifest is not base64")?;
            match format {
                Format::Json | Format::Yaml => print_data(format, &answer),
                Format::Text => outln!("{}", String::from_utf8_lossy(&raw)),
            }
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Verify { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = manifest::Manifest::parse(&bytes)?;
            for w in &parsed.warnings {
                eprintln!("warning: {w}");
            }
            match parsed.manifest.validate() {
                Ok(()) => {
                    outln!("{}: valid", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    outln!("{}: invalid\n{errors}", file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        ManifestCommand::Convert {
            file,
            skip_validation,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = manifest::Manifest::parse(&bytes)?;
            for w in &parsed.warnings {
                eprintln!("warning: {w}");
            }
            if !skip_validation && let Err(errors) = parsed.manifest.validate() {
                eprintln!(
                    "{}: invalid, not converted (--skip-validation converts it anyway)\n{errors}",
                    file.display()
                );
                return Ok(ExitCode::from(1));
            }
            match format {
                Format::Yaml => crate::output::out!("{}", parsed.manifest.to_yaml()?),
                Format::Text | Format::Json => outln!("{}", parsed.manifest.to_json()?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `manifest update` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum UpdateCommand {
    /// Propose a full update (needs UpdateManifest; it counts as your acknowledgement), or
    /// apply a package update (a manifest of packages with only `security_version`; needs
    /// UpdateSecurityVersion).
    Apply {
        /// The new manifest, or the package update.
        file: PathBuf,
        /// Write new recovery shares here (JSON), if the update changes the recovery keys.
        #[arg(long)]
        recovery_secrets: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Acknowledge the pending update: the file you reviewed must be the pending manifest.
    Acknowledge {
        /// The manifest you reviewed.
        file: PathBuf,
        /// Write new recovery shares here (JSON), if this acknowledgement applies an update
        /// that changes the recovery keys.
        #[arg(long)]
        recovery_secrets: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel the pending update (needs UpdateManifest).
    Cancel {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show the pending update, who acknowledged it and who may still.
    Status {
        /// Write the pending manifest here, to review it.
        #[arg(long)]
        save: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Run a `manifest update` subcommand.
fn update(command: UpdateCommand, format: Format) -> Result<ExitCode> {
    let rt = runtime()?;
    let (answer, secrets_file): (api::UpdateResponse, _) = match command {
        UpdateCommand::Apply {
            file,
            recovery_secrets,
            conn,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let answer: Option<api::UpdateResponse> =
                rt.block_on(conn.client()?.post("/manifest/update", bytes))?;
            (answer.context("empty answer")?, recovery_secrets)
        }
        UpdateCommand::Acknowledge {
            file,
            recovery_secrets,
            conn,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let body = api::Acknowledgement {
                manifest_hash: hex::encode(attest::crypto::sha256(&bytes)),
            };
            let answer: Option<api::UpdateResponse> = rt.block_on(
                conn.client()?
                    .post("/manifest/update/acknowledge", serde_json::to_vec(&body)?),
            )?;
            (answer.context("empty answer")?, recovery_secrets)
        }
        UpdateCommand::Cancel { conn } => {
            let _: Option<serde_json::Value> =
                rt.block_on(conn.client()?.post("/manifest/update/cancel", Vec::new()))?;
            outln!("the pending update is cancelled");
            return Ok(ExitCode::SUCCESS);
        }
        UpdateCommand::Status { save, conn } => {
            let status: api::UpdateStatus = rt.block_on(conn.client()?.get("/manifest/update"))?;
            if let (Some(path), Some(p)) = (&save, &status.pending) {
                let raw = B64
                    .decode(&p.manifest)
                    .context("the manifest is not base64")?;
                std::fs::write(path, raw).with_context(|| format!("writing {}", path.display()))?;
            }
            match (format, &status.pending) {
                (Format::Json | Format::Yaml, _) => print_data(format, &status),
                (Format::Text, None) => outln!("no update is pending"),
                (Format::Text, Some(p)) => {
                    outln!("pending update sha256:{}", p.manifest_hash);
                    outln!("  proposed by     {}", p.initiator);
                    outln!("  acknowledged by {}", p.acknowledged.join(", "));
                    outln!(
                        "  missing         {} (may acknowledge: {})",
                        p.missing_acknowledgements,
                        p.missing_users.join(", ")
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    save_recovery_secrets(&answer.recovery_secrets, secrets_file.as_deref())?;
    match format {
        Format::Json | Format::Yaml => print_data(format, &answer),
        Format::Text => {
            outln!("{}", answer.message);
            if !answer.missing_users.is_empty() {
                outln!("  may acknowledge: {}", answer.missing_users.join(", "));
            }
            print_recovery_secrets(&answer.recovery_secrets, secrets_file.as_deref());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write the encrypted recovery shares to `path`, if any came and a path was given.
fn save_recovery_secrets(
    secrets: &std::collections::BTreeMap<String, String>,
    path: Option<&std::path::Path>,
) -> Result<()> {
    if let (Some(path), false) = (path, secrets.is_empty()) {
        std::fs::write(path, serde_json::to_vec_pretty(secrets)?)
            .with_context(|| format!("writing the recovery secrets to {}", path.display()))?;
    }
    Ok(())
}

/// Say where the recovery shares went (they are shown only once).
fn print_recovery_secrets(
    secrets: &std::collections::BTreeMap<String, String>,
    path: Option<&std::path::Path>,
) {
    if secrets.is_empty() {
        return;
    }
    match path {
        Some(path) => outln!(
            "recovery secrets for {} holder(s) written to {}: give each holder theirs",
            secrets.len(),
            path.display()
        ),
        None => {
            outln!("recovery secrets (shown once; each is encrypted to its holder's key):");
            for (holder, secret) in secrets {
                outln!("  {holder}: {secret}");
            }
        }
    }
}

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The first entry to print.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How many entries at most (the coordinator sends up to 1000 a page).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    #[command(flatten)]
    conn: Conn,
}

/// Run `audit`: the audit log, page by page, for a user the manifest names.
pub(crate) fn audit(args: AuditArgs, format: Format) -> Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = runtime()?;
    let mut entries = Vec::new();
    let mut from = Some(args.from);
    let mut total = 0;
    while let Some(at) = from.filter(|_| (entries.len() as u64) < args.limit) {
        let want = (args.limit - entries.len() as u64).min(api::MAX_AUDIT_PAGE as u64);
        let page: api::AuditLog =
            rt.block_on(client.get(&format!("/audit?from={at}&limit={want}")))?;
        total = page.total;
        from = page.next;
        entries.extend(page.entries);
    }
    let broken = chain_breaks(&entries);
    match format {
        Format::Json | Format::Yaml => print_data(
            format,
            &serde_json::json!({
                "entries": entries,
                "total": total,
                "next": from,
                "chain_verified": broken.is_none(),
                "chain_error": broken,
            }),
        ),
        Format::Text => {
            for e in &entries {
                outln!(
                    "{:>6}  {}  {:<24} {}  {}",
                    e.seq,
                    e.time,
                    e.event,
                    e.actor,
                    e.details
                );
            }
            outln!(
                "{} of {total} entries{}",
                entries.len(),
                from.map_or(String::new(), |n| format!(" (more from --from {n})"))
            );
            match &broken {
                None => outln!("hash chain verified over these entries"),
                Some(why) => outln!("HASH CHAIN BROKEN: {why}"),
            }
        }
    }
    Ok(if broken.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where the hash chain over `entries` (consecutive, oldest first) breaks, if it does.
fn chain_breaks(entries: &[api::AuditEntry]) -> Option<String> {
    let mut previous: Option<&api::AuditEntry> = None;
    for e in entries {
        if e.hash != e.computed_hash() {
            return Some(format!(
                "entry {}: its hash does not match its contents",
                e.seq
            ));
        }
        if let Some(p) = previous
            && (e.seq != p.seq + 1 || e.prev_hash != p.hash)
        {
            return Some(format!(
                "entry {}: it does not link to entry {}",
                e.seq, p.seq
            ));
        }
        if e.seq == 0 && e.prev_hash != hex::encode([0u8; 32]) {
            return Some("entry 0: it does not start the chain".into());
        }
        previous = Some(e);
    }
    None
}

/// Run `status`.
pub(crate) fn status(conn: Conn, format: Format) -> Result<ExitCode> {
    let status: api::StatusResponse = runtime()?.block_on(conn.client()?.get("/status"))?;
    match format {
        Format::Json | Format::Yaml => print_data(format, &status),
        Format::Text => {
            if status.simulation {
                outln!("SIMULATION: the coordinator runs on simulated hardware");
            }
            outln!("state     {}", status.state.as_str());
            outln!(
                "manifest  {}",
                status.manifest_hash.as_deref().unwrap_or("none")
            );
            outln!("sealing   {}", status.sealing);
            outln!("version   {}", status.version);
            if let Some(r) = &status.recovery {
                outln!(
                    "recovery  {} of {} shares needed; received from: {}",
                    r.threshold,
                    r.holders.len(),
                    if r.received.is_empty() {
                        "nobody yet".to_string()
                    } else {
                        r.received.join(", ")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which certificate to print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Which {
    /// The deployment root.
    Root,
    /// The intermediate that signs workload certificates.
    Intermediate,
    /// Intermediate then root.
    Chain,
}

/// Run `certificate`.
pub(crate) fn certificate(which: Which, conn: Conn) -> Result<ExitCode> {
    let path = match which {
        Which::Root => "/certificates/root",
        Which::Intermediate => "/certificates/intermediate",
        Which::Chain => "/certificates/chain",
    };
    let pem = runtime()?.block_on(conn.client()?.get_text(path))?;
    crate::output::out!("{pem}");
    Ok(ExitCode::SUCCESS)
}

/// `secret` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Read secrets (needs ReadSecret).
    Get {
        /// Secret names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a user-defined secret (needs WriteSecret).
    Set {
        /// The secret's name.
        name: String,
        /// The key bytes, from a file (symmetric-key, plain).
        #[arg(long, conflicts_with = "cert_pem")]
        key_file: Option<PathBuf>,
        /// A certificate (PEM) for a certificate secret.
        #[arg(long)]
        cert_pem: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "cert_pem")]
        private_pem: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Run a `secret` subcommand.
pub(crate) fn secret(command: SecretCommand, format: Format) -> Result<ExitCode> {
    match command {
        SecretCommand::Get { names, conn } => {
            let query: Vec<String> = names.iter().map(|n| format!("name={n}")).collect();
            let secrets: api::Secrets = runtime()?
                .block_on(conn.client()?.get(&format!("/secrets?{}", query.join("&"))))?;
            match format {
                Format::Json | Format::Yaml => print_data(format, &secrets),
                Format::Text => {
                    for (name, value) in &secrets.secrets {
                        outln!("{name} ({})", value.kind);
                        if let Some(key) = &value.key {
                            outln!("  key (base64)  {key}");
                        }
                        if let Some(cert) = &value.cert_pem {
                            outln!("{cert}");
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Set {
            name,
            key_file,
            cert_pem,
            private_pem,
            conn,
        } => {
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let value = api::SecretValue {
                kind: String::new(),
                key: key_file
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .map(|k| B64.encode(k)),
                cert_pem: cert_pem
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                private_pem: private_pem
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
            };
            let mut body = api::Secrets::default();
            body.secrets.insert(name.clone(), value);
            let bytes = serde_json::to_vec(&body)?;
            let _: Option<serde_json::Value> =
                runtime()?.block_on(conn.client()?.post("/secrets", bytes))?;
            outln!("secret {name} set");
            Ok(ExitCode::SUCCESS)
        }
    }
}
