//! `cloister kbs attest|get-resource`: the guest side of the key-broker protocol, with CoCo's
//! client defaults (a P-256 TEE key; RSA or P-521 selectable).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use attest::TeeKind;
use attest::attester::{Attester, SimulatedAttester};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand, ValueEnum};
use kbs::jwe::{Curve, TeeKeyPair};
use launcher::client::certs_from_pem;
use launcher::kbs_client::{Credential, KbsClient, Prover};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;

use crate::cmd::conn::runtime;
use crate::output::{Format, outln, print_data};

/// `kbs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KbsCommand {
    /// Attest to the key broker and print the attestation token.
    Attest(Common),
    /// Attest (or use a token) and fetch one resource; prints it base64-encoded.
    GetResource {
        /// The resource, `repo/type/tag`.
        #[arg(long)]
        path: String,
        /// An attestation token to send as a Bearer instead of attesting (needs --tee-key-file).
        #[arg(long, requires = "tee_key_file")]
        attestation_token: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

/// What every `kbs` command needs.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The key broker (the coordinator's URL).
    #[arg(long, env = "CLOISTER_COORDINATOR")]
    url: String,
    /// The root certificate the broker's TLS certificate must chain to.
    #[arg(long, env = "CLOISTER_ROOT_CA", default_value = "cloister-root.pem")]
    root_ca: PathBuf,
    /// The TEE key (PKCS#8 PEM: P-256, P-521 or RSA) instead of a fresh one.
    #[arg(long)]
    tee_key_file: Option<PathBuf>,
    /// The algorithm of a fresh TEE key.
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::P256)]
    tee_key_algorithm: KeyAlgorithm,
    /// Write the TEE key here (PKCS#8 PEM), to fetch later with the token.
    #[arg(long)]
    save_tee_key: Option<PathBuf>,
    /// Init-data (TOML) the TEE was launched with.
    #[arg(long)]
    init_data: Option<PathBuf>,
    /// Prove with the simulated attester: sgx, tdx, snp, or CoCo's `sample`.
    #[arg(long)]
    simulation: Option<SimulatedTee>,
}

/// TEE key algorithms, as CoCo's attestation agent names them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyAlgorithm {
    /// ECDH-ES+A256KW on P-256 (the default).
    P256,
    /// ECDH-ES+A256KW on P-521.
    P521,
    /// RSA-OAEP-256.
    Rsa,
}

/// Simulated provers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SimulatedTee {
    /// Simulated SGX.
    Sgx,
    /// Simulated TDX.
    Tdx,
    /// Simulated SEV-SNP.
    Snp,
    /// CoCo's sample attester.
    Sample,
}

impl Common {
    fn client(&self) -> Result<KbsClient> {
        let pem = std::fs::read_to_string(&self.root_ca)
            .with_context(|| format!("reading the root certificate {}", self.root_ca.display()))?;
        let root = certs_from_pem("root certificate", &pem)?
            .into_iter()
            .next()
            .context("the root certificate file holds no certificate")?;
        Ok(KbsClient::new(&self.url, &root)?)
    }

    fn key(&self) -> Result<TeeKeyPair> {
        let key = match &self.tee_key_file {
            Some(path) => {
                let der = PrivatePkcs8KeyDer::from_pem_file(path)
                    .with_context(|| format!("{} is not a PKCS#8 PEM key", path.display()))?;
                TeeKeyPair::from_pkcs8(der.secret_pkcs8_der())?
            }
            None => match self.tee_key_algorithm {
                KeyAlgorithm::P256 => TeeKeyPair::generate_ec(Curve::P256)?,
                KeyAlgorithm::P521 => TeeKeyPair::generate_ec(Curve::P521)?,
                KeyAlgorithm::Rsa => TeeKeyPair::generate_rsa()?,
            },
        };
        if let Some(path) = &self.save_tee_key {
            let der = key.private_pkcs8()?;
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                B64.encode(&*der)
                    .as_bytes()
                    .chunks(64)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            launcher::write_private(path, pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(key)
    }

    fn init_data(&self) -> Result<Option<kbs_types::InitData>> {
        self.init_data
            .as_ref()
            .map(|path| {
                Ok(kbs_types::InitData {
                    format: "toml".into(),
                    body: std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                })
            })
            .transpose()
    }
}

/// The attester to prove with: simulated when asked, else this machine's.
fn attester(simulation: Option<SimulatedTee>) -> Result<Option<Box<dyn Attester>>> {
    let tee = match simulation {
        Some(SimulatedTee::Sample) => return Ok(None),
        Some(SimulatedTee::Sgx) => TeeKind::Sgx,
        Some(SimulatedTee::Tdx) => TeeKind::Tdx,
        Some(SimulatedTee::Snp) => TeeKind::Snp,
        None => {
            return Ok(Some(
                attest::attester::detect(std::path::Path::new("/"))
                    .attester()
                    .context(
                        "no TEE attester on this machine; pass --simulation sgx|tdx|snp|sample",
                    )?,
            ));
        }
    };
    let now = OffsetDateTime::now_utc();
    let platform = attest::sim::SimPlatform::open(&attest::sim::SimPlatform::default_dir(), now)?;
    Ok(Some(Box::new(SimulatedAttester::on_platform(
        tee, &platform, now,
    )?)))
}

/// Run a `kbs` subcommand.
pub(crate) fn run(command: KbsCommand, format: Format) -> Result<ExitCode> {
    let rt = runtime()?;
    match command {
        KbsCommand::Attest(common) => {
            let key = common.key()?;
            let attester = attester(common.simulation)?;
            let prover = attester.as_deref().map_or(Prover::Sample, Prover::Attester);
            let attested =
                rt.block_on(common.client()?.attest(&prover, &key, common.init_data()?))?;
            match format {
                Format::Text => outln!("{}", attested.token),
                Format::Json | Format::Yaml => {
                    print_data(format, &serde_json::json!({ "token": attested.token }));
                }
            }
        }
        KbsCommand::GetResource {
            path,
            attestation_token,
            common,
        } => {
            let key = common.key()?;
            let client = common.client()?;
            let credential = match &attestation_token {
                Some(file) => Credential::Bearer(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?
                        .trim()
                        .to_string(),
                ),
                None => {
                    let attester = attester(common.simulation)?;
                    let prover = attester.as_deref().map_or(Prover::Sample, Prover::Attester);
                    let attested =
                        rt.block_on(client.attest(&prover, &key, common.init_data()?))?;
                    Credential::Cookie(attested.cookie)
                }
            };
            if !manifest::is_kbs_path(&path) {
                bail!("--path must be repo/type/tag");
            }
            let resource = rt.block_on(client.get_resource(&path, &key, &credential))?;
            match format {
                Format::Text => outln!("{}", B64.encode(&*resource)),
                Format::Json | Format::Yaml => print_data(
                    format,
                    &serde_json::json!({ "path": path, "resource_base64": B64.encode(&*resource) }),
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Attest once to the broker at `url` (simulated when asked) and fetch each resource at
/// `paths` (`repo/type/tag`), in order.
pub(crate) async fn fetch_resources(
    url: &str,
    root_ca: &std::path::Path,
    simulation: Option<SimulatedTee>,
    paths: &[String],
) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>> {
    let common = Common {
        url: url.to_string(),
        root_ca: root_ca.to_path_buf(),
        tee_key_file: None,
        tee_key_algorithm: KeyAlgorithm::P256,
        save_tee_key: None,
        init_data: None,
        simulation,
    };
    let key = common.key()?;
    let client = common.client()?;
    let attester = attester(simulation)?;
    let prover = attester.as_deref().map_or(Prover::Sample, Prover::Attester);
    let attested = client
        .attest(&prover, &key, None)
        .await
        .with_context(|| format!("attesting to the key broker {url}"))?;
    let credential = Credential::Cookie(attested.cookie);
    let mut resources = Vec::with_capacity(paths.len());
    for path in paths {
        let resource = client
            .get_resource(path, &key, &credential)
            .await
            .with_context(|| format!("fetching kbs:///{path} from the key broker"))?;
        resources.push(resource);
    }
    Ok(resources)
}
