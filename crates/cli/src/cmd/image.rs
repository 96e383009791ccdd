//! `cloister image`: confidential images — encrypt, pull (attested, signature-checked,
//! digest-checked, unpacked), inspect.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use image::encrypt::Recipients;
use image::ocicrypt::jwe::{DecryptionKey, Recipient};
use image::ocicrypt::provider::KeyId;
use image::policy::{Policy, default_policy};
use image::pull::{Keys, Progress};
use image::signature::{Decision, Lookaside};
use image::{Credentials, Endpoint, ImageName, Registry};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cmd::conn::runtime;
use crate::cmd::kbs::{SimulatedTee, fetch_resources};
use crate::output::{Format, outln, print_data};

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Copy an image with its layers encrypted (ocicrypt, as skopeo writes it) to recipients:
    /// public keys (`jwe:PUBLIC.pem`) and keys the key broker holds (`kbs:///REPO/TYPE/TAG`).
    Encrypt(EncryptArgs),
    /// Pull an image into DEST (`rootfs/`, `image-config.json`, `image-manifest.json`):
    /// policy first, then every layer digest-checked, decrypted and unpacked as it streams;
    /// nothing is left behind when a check fails.
    Pull(PullArgs),
    /// Show an image's layers, their encryption and recipients.
    Inspect(InspectArgs),
}

/// How registries are reached.
#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// A registry that may be spoken to in plain HTTP (host:port; loopback ones always may).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Registry credentials, USER:PASSWORD.
    #[arg(long, env = "CLOISTER_REGISTRY_CREDS", value_name = "USER:PASSWORD")]
    creds: Option<String>,
}

impl RegistryArgs {
    fn registry(&self) -> Result<Registry> {
        let credentials = match &self.creds {
            Some(creds) => {
                let (username, password) =
                    creds.split_once(':').context("--creds is USER:PASSWORD")?;
                Some(Credentials {
                    username: username.to_string(),
                    password: Zeroizing::new(password.to_string()),
                })
            }
            None => None,
        };
        Ok(Registry::new(&self.insecure_registries)?.with_credentials(credentials))
    }

    fn endpoint(&self, name: &str) -> Result<Endpoint> {
        Ok(Endpoint::new(ImageName::parse(name)?, self.registry()?))
    }
}

/// Which images may be pulled.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// A containers-policy.json(5); in a launched workload, the manifest's `image_policy`
    /// [default: reject every image: say what to accept].
    #[arg(long, env = "CLOISTER_IMAGE_POLICY")]
    policy: Option<PathBuf>,
    /// A registries.d directory: where simple signatures are looked up (`lookaside`).
    #[arg(long = "registries-d", value_name = "DIR")]
    registries_d: Option<PathBuf>,
}

impl PolicyArgs {
    fn load(&self) -> Result<(Policy, Lookaside)> {
        let policy = match &self.policy {
            Some(path) => Policy::parse(
                &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )?,
            None => default_policy(),
        };
        Ok((policy, self.lookaside()?))
    }

    fn lookaside(&self) -> Result<Lookaside> {
        Ok(match &self.registries_d {
            Some(dir) => Lookaside::load(dir)?,
            None => Lookaside::default(),
        })
    }

    /// The policy's decision on `manifest`, or why it refuses.
    async fn check(&self, source: &Endpoint, manifest: &image::Manifest) -> Result<Decision> {
        let (policy, lookaside) = self.load()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let decision = image::signature::check(&policy, source, manifest, &lookaside, now).await;
        if decision.is_err() && self.policy.is_none() {
            return decision.context(
                "without --policy every image is refused: give a policy that says which \
                 signatures to require (or, for unsigned images you trust, insecureAcceptAnything)",
            );
        }
        Ok(decision?)
    }
}

/// Arguments of `image encrypt`.
#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// Who may open the layers: `jwe:PUBLIC.pem` (an EC or RSA public key) or
    /// `kbs:///REPO/TYPE/TAG` (a key the key broker holds; its bytes come from --kek).
    #[arg(long = "recipient", required = true)]
    recipients: Vec<String>,
    /// The key-encryption key (32 bytes) of the `kbs:///` recipient, as uploaded to the
    /// broker under that path.
    #[arg(long)]
    kek: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image to encrypt: docker://… or oci:DIR[:TAG].
    source: String,
    /// Where to write the encrypted image: docker://… or oci:DIR[:TAG].
    destination: String,
}

/// Arguments of `image pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Where to unpack: a new or empty directory.
    #[arg(long)]
    dest: PathBuf,
    /// A private key (PEM) for the image's JWE recipients.
    #[arg(long = "decryption-key")]
    decryption_keys: Vec<PathBuf>,
    /// The key broker (a coordinator's URL) to attest to for the image's `kbs:///` keys.
    #[arg(long, requires = "root_ca")]
    kbs: Option<String>,
    /// The root certificate the key broker must present a chain to.
    #[arg(long)]
    root_ca: Option<PathBuf>,
    /// Attest to the key broker with the simulated attester: sgx, tdx, snp or sample.
    #[arg(long)]
    simulation: Option<SimulatedTee>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image: docker://… or oci:DIR[:TAG].
    image: String,
}

/// Arguments of `image inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image: docker://… or oci:DIR[:TAG].
    image: String,
}

/// Run an `image` subcommand.
pub(crate) fn run(command: ImageCommand, format: Format) -> Result<ExitCode> {
    let rt = runtime()?;
    match command {
        ImageCommand::Encrypt(args) => rt.block_on(encrypt(args, format)),
        ImageCommand::Pull(args) => rt.block_on(pull(args, format)),
        ImageCommand::Inspect(args) => rt.block_on(inspect(args, format)),
    }
}

async fn encrypt(args: EncryptArgs, format: Format) -> Result<ExitCode> {
    let source = args.registry.endpoint(&args.source)?;
    let destination = args.registry.endpoint(&args.destination)?;
    let mut recipients = Recipients::default();
    for recipient in &args.recipients {
        if let Some(path) = recipient.strip_prefix("jwe:") {
            let pem = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            recipients
                .jwe
                .push(Recipient::from_pem(&pem).with_context(|| format!("recipient {path}"))?);
        } else if recipient.starts_with("kbs://") {
            let kid = KeyId::parse(recipient)?;
            let Some(kek_path) = &args.kek else {
                bail!(
                    "{recipient} needs the key's bytes: give --kek FILE (32 random bytes, e.g. \
                     `head -c 32 /dev/urandom > kek.bin`), and make the broker serve the same \
                     bytes under {}",
                    kid.path
                );
            };
            let kek = Zeroizing::new(
                std::fs::read(kek_path)
                    .with_context(|| format!("reading {}", kek_path.display()))?,
            );
            if kek.len() != 32 {
                bail!(
                    "{} holds {} bytes; a KEK is 32",
                    kek_path.display(),
                    kek.len()
                );
            }
            recipients.kbs.push((kid, kek));
        } else {
            bail!("--recipient {recipient:?}: write jwe:PUBLIC.pem or kbs:///REPO/TYPE/TAG");
        }
    }
    let progress = progress(format, "encrypting");
    let done =
        image::encrypt::encrypt(&source, &destination, Arc::new(recipients), progress).await?;
    match format {
        Format::Text => outln!(
            "{} → {}: {} layers encrypted, manifest {}",
            source.name,
            destination.name,
            done.layers,
            done.manifest_digest
        ),
        _ => print_data(
            format,
            &json!({
                "source": source.name.to_string(),
                "destination": destination.name.to_string(),
                "encrypted_layers": done.layers,
                "manifest_digest": done.manifest_digest,
            }),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(args: PullArgs, format: Format) -> Result<ExitCode> {
    let source = args.registry.endpoint(&args.image)?;
    let manifest = source.manifest().await?;
    // The policy decides before anything is fetched beyond the manifest and signatures.
    let decision = args.policy.check(&source, &manifest).await?;
    let mut keys = Keys::default();
    for path in &args.decryption_keys {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        keys.jwe.push(
            DecryptionKey::from_pem(&pem)
                .with_context(|| format!("decryption key {}", path.display()))?,
        );
    }
    let kids = image::pull::key_ids(&manifest)?;
    if let (Some(url), false) = (&args.kbs, kids.is_empty()) {
        let root_ca = args.root_ca.as_deref().context("--kbs needs --root-ca")?;
        let paths: Vec<String> = kids.iter().map(|k| k.path.clone()).collect();
        let keks = fetch_resources(url, root_ca, args.simulation, &paths).await?;
        keys.keks = kids
            .iter()
            .map(KeyId::uri)
            .zip(keks)
            .collect::<HashMap<_, _>>();
    }
    let progress = progress(format, "pulling");
    let pulled = image::pull::pull(&source, &manifest, &args.dest, &keys, progress).await?;
    let config = pulled.config.config().clone().unwrap_or_default();
    match format {
        Format::Text => {
            outln!(
                "{} ({}) unpacked into {}",
                source.name,
                pulled.manifest_digest,
                pulled.bundle.join("rootfs").display()
            );
            if let Some(entrypoint) = config.entrypoint() {
                outln!("  entrypoint {}", entrypoint.join(" "));
            }
            if let Some(cmd) = config.cmd() {
                outln!("  cmd        {}", cmd.join(" "));
            }
            outln!(
                "  policy     {}: {}",
                decision.scope,
                decision.reasons.join("; ")
            );
        }
        _ => print_data(
            format,
            &json!({
                "image": source.name.to_string(),
                "manifest_digest": pulled.manifest_digest,
                "rootfs": pulled.bundle.join("rootfs"),
                "entrypoint": config.entrypoint(),
                "cmd": config.cmd(),
                "env": config.env(),
                "working_dir": config.working_dir(),
                "policy": { "scope": decision.scope, "reasons": decision.reasons },
            }),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(args: InspectArgs, format: Format) -> Result<ExitCode> {
    let source = args.registry.endpoint(&args.image)?;
    let manifest = source.manifest().await?;
    let layers: Vec<_> = manifest
        .parsed
        .layers()
        .iter()
        .map(|layer| {
            let annotations = layer.annotations().clone().unwrap_or_default();
            let mut recipients: Vec<String> = annotations
                .keys()
                .filter_map(|k| k.strip_prefix("org.opencontainers.image.enc.keys."))
                .map(str::to_string)
                .collect();
            recipients.sort();
            json!({
                "digest": layer.digest().to_string(),
                "media_type": layer.media_type().to_string(),
                "size": layer.size(),
                "encrypted": layer.media_type().to_string().ends_with(image::media::ENCRYPTED_SUFFIX),
                "recipients": recipients,
            })
        })
        .collect();
    let kids: Vec<String> = image::pull::key_ids(&manifest)?
        .iter()
        .map(KeyId::uri)
        .collect();
    let lookaside = args.policy.lookaside()?;
    let (simple, sigstore) = image::signature::count(&source, &manifest, &lookaside).await?;
    let decision = args.policy.check(&source, &manifest).await;
    let policy = match &decision {
        Ok(d) => json!({ "accepted": true, "scope": d.scope, "reasons": d.reasons }),
        Err(e) => json!({ "accepted": false, "reason": crate::output::error_chain(e.as_ref()) }),
    };
    match format {
        Format::Text => {
            outln!("{} ({})", source.name, manifest.digest);
            for layer in &layers {
                let encrypted = layer["encrypted"].as_bool().unwrap_or(false);
                outln!(
                    "  {} {:>12} bytes  {}{}",
                    layer["digest"].as_str().unwrap_or_default(),
                    layer["size"],
                    layer["media_type"].as_str().unwrap_or_default(),
                    if encrypted {
                        format!("  recipients: {}", layer["recipients"])
                    } else {
                        String::new()
                    }
                );
            }
            for kid in &kids {
                outln!("  key held by the key broker: {kid}");
            }
            outln!("  signatures: {simple} simple (lookaside), {sigstore} sigstore");
            match &decision {
                Ok(d) => outln!("  policy: accepted ({}): {}", d.scope, d.reasons.join("; ")),
                Err(e) => outln!(
                    "  policy: refused: {}",
                    crate::output::error_chain(e.as_ref())
                ),
            }
        }
        _ => print_data(
            format,
            &json!({
                "image": source.name.to_string(),
                "manifest_digest": manifest.digest,
                "media_type": manifest.media_type,
                "layers": layers,
                "broker_keys": kids,
                "signatures": { "simple": simple, "sigstore": sigstore },
                "policy": policy,
            }),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-layer progress on stderr: bars on a terminal, a line per layer otherwise, nothing
/// with `-o json`.
fn progress(format: Format, verb: &'static str) -> Arc<dyn Progress> {
    if format != Format::Text {
        return Arc::new(Quiet);
    }
    if std::io::stderr().is_terminal() {
        return Arc::new(Bars::new(verb));
    }
    Arc::new(Lines { verb })
}

struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: usize, _: usize, _: &str, _: u64) {}
    fn advance(&self, _: usize, _: u64) {}
    fn finish(&self, _: usize) {}
}

struct Lines {
    verb: &'static str,
}

impl Progress for Lines {
    fn start(&self, index: usize, count: usize, digest: &str, size: u64) {
        eprintln!(
            "{} layer {}/{count} {digest} ({size} bytes)",
            self.verb,
            index + 1
        );
    }
    fn advance(&self, _: usize, _: u64) {}
    fn finish(&self, _: usize) {}
}

struct Bars {
    verb: &'static str,
    all: indicatif::MultiProgress,
    bars: Mutex<HashMap<usize, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(verb: &'static str) -> Self {
        Self {
            verb,
            all: indicatif::MultiProgress::new(),
            bars: Mutex::default(),
        }
    }
}

impl Progress for Bars {
    fn start(&self, index: usize, count: usize, digest: &str, size: u64) {
        let bar = self.all.add(indicatif::ProgressBar::new(size));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        let short = digest.get(..19).unwrap_or(digest);
        bar.set_prefix(format!("{} {}/{count} {short}", self.verb, index + 1));
        self.bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index, bar);
    }

    fn advance(&self, index: usize, bytes: u64) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self, index: usize) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&index)
        {
            bar.finish();
        }
    }
}
