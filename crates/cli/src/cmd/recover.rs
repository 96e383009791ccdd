//! `recover`: a recovery key holder uploads their share to a coordinator in recovery mode,
//! after verifying its evidence (the share is sent only to an attested coordinator).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{
    KeyPair, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use launcher::client::Client;
use launcher::verify::{Expectations, verify_online};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::cmd::conn::runtime;
use crate::output::{Format, outln, print_data};

/// Arguments of `recover`.
#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "CLOISTER_COORDINATOR",
        default_value = "https://127.0.0.1:4433"
    )]
    coordinator: String,
    /// The holder's RSA private key (PKCS#8 PEM), whose public key is in the manifest's
    /// `recovery_keys`.
    #[arg(long)]
    key: PathBuf,
    /// The holder's recovery secret as `manifest set` returned it (base64 or raw bytes,
    /// encrypted to the key), or the share already decrypted.
    #[arg(long)]
    secret: PathBuf,
    /// The package the coordinator must match (a manifest package, JSON or YAML).
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Accept a coordinator running on simulated hardware (this machine's simulated platform).
    #[arg(long)]
    accept_simulation: bool,
}

/// Run `recover`.
pub(crate) fn recover(args: RecoverArgs, format: Format) -> Result<ExitCode> {
    let holder = Holder::read(&args.key)?;
    let secret = std::fs::read(&args.secret)
        .with_context(|| format!("reading {}", args.secret.display()))?;
    let rt = runtime()?;
    let now = OffsetDateTime::now_utc();
    let package = args
        .expect
        .as_deref()
        .map(crate::cmd::deploy::read_package)
        .transpose()?;
    let sim_dir = args
        .accept_simulation
        .then(attest::sim::SimPlatform::default_dir);
    let verifiers = crate::cmd::deploy::verifiers(sim_dir.as_deref(), now)?;
    let expect = Expectations {
        verifiers: &verifiers,
        package: package.as_ref(),
        simulation: args.accept_simulation,
        min_version: None,
        now,
    };
    let (statement, root, _) = rt
        .block_on(verify_online(&args.coordinator, &expect))
        .context("the coordinator did not verify: the share was not sent")?;
    let client = Client::pinned(&args.coordinator, &root, None)?;
    let status: api::StatusResponse = rt.block_on(client.get("/status"))?;
    let Some(recovery) = status.recovery else {
        bail!(
            "the coordinator is not waiting for recovery shares (state {}): nothing to do",
            status.state.as_str()
        );
    };
    let fingerprint = hex::encode(attest::crypto::sha256(&holder.spki));
    let name = recovery
        .holders
        .iter()
        .find(|(_, key)| **key == fingerprint)
        .map(|(name, _)| name.clone())
        .with_context(|| {
            format!(
                "{} is not one of the recovery keys ({})",
                args.key.display(),
                recovery
                    .holders
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let share = holder.share(&secret)?;
    let session = hex::decode(&recovery.session).context("the recovery session is not hex")?;
    let request = api::RecoverRequest {
        holder: name,
        share: B64.encode(&*share),
        signature: B64.encode(holder.sign(&api::recovery_message(&session, &share))?),
    };
    let answer: Option<api::RecoverResponse> =
        rt.block_on(client.post("/recover", serde_json::to_vec(&request)?))?;
    let answer = answer.context("empty answer")?;
    match format {
        Format::Json | Format::Yaml => print_data(format, &answer),
        Format::Text => {
            if statement.simulated {
                outln!("SIMULATION: the coordinator runs on simulated hardware");
            }
            outln!("{}", answer.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A recovery key holder's RSA key.
struct Holder {
    pkcs8: Zeroizing<Vec<u8>>,
    spki: Vec<u8>,
}

impl Holder {
    fn read(path: &std::path::Path) -> Result<Self> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).with_context(|| {
            format!(
                "{} holds no PKCS#8 private key (PEM PRIVATE KEY); convert one with `openssl \
                 pkcs8 -topk8 -nocrypt`",
                path.display()
            )
        })?;
        let pkcs8 = Zeroizing::new(der.secret_pkcs8_der().to_vec());
        let spki = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .ok()
            .and_then(|k| k.public_key().as_der().ok())
            .map(|d| d.as_ref().to_vec())
            .with_context(|| format!("{} is not an RSA key", path.display()))?;
        Ok(Self { pkcs8, spki })
    }

    /// The share in `secret`: base64 or raw, encrypted to this key or already decrypted.
    fn share(&self, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let text = String::from_utf8_lossy(secret);
        let bytes = Zeroizing::new(B64.decode(text.trim()).unwrap_or_else(|_| secret.to_vec()));
        let key = OaepPrivateDecryptingKey::new(
            PrivateDecryptingKey::from_pkcs8(&self.pkcs8).context("not an RSA key")?,
        )
        .context("the key cannot decrypt RSA-OAEP")?;
        if bytes.len() != key.key_size_bytes() {
            return Ok(bytes);
        }
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(&OAEP_SHA256_MGF1SHA256, &bytes, &mut out, None)
            .map_err(|_| {
                anyhow::anyhow!("the secret does not decrypt with this key: is it this holder's?")
            })?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// RSA PKCS#1 v1.5 SHA-256 over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let key = KeyPair::from_pkcs8(&self.pkcs8).context("not an RSA key")?;
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            message,
            &mut signature,
        )
        .map_err(|_| anyhow::anyhow!("signing the share failed"))?;
        Ok(signature)
    }
}
