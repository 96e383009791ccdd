//! The launcher: a key generated here, evidence that binds it, activation with the coordinator
//! over mTLS with that key, then the workload's files, environment and command line.
//!
//! [`client`] is the HTTPS client for the coordinator the CLI uses as well; [`verify`] checks a
//! coordinator's attestation, online or from a saved bundle.
#![forbid(unsafe_code)]

pub mod client;
pub mod kbs_client;
pub mod ttls;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use attest::attester::Attester;
use attest::crypto::sha256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _};
use zeroize::Zeroizing;

use crate::client::{Client, ClientError, Identity};

/// Why launching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The key or its certificate could not be made.
    #[error("workload key: {0}")]
    Key(#[from] rcgen::Error),
    /// The attester failed.
    #[error("obtaining evidence: {0}")]
    Attester(#[from] attest::attester::AttesterError),
    /// Talking to the coordinator failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The coordinator's answer is unusable.
    #[error("the coordinator's answer is unusable: {0}")]
    Answer(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A workload key and the self-signed certificate that carries it in the TLS handshake.
pub struct WorkloadKey {
    key: KeyPair,
    self_signed_der: Vec<u8>,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKey").finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// Generate a P-256 key.
    pub fn generate() -> Result<Self, LaunchError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let self_signed_der = CertificateParams::new(vec!["cloister-workload".to_string()])?
            .self_signed(&key)?
            .der()
            .to_vec();
        Ok(Self {
            key,
            self_signed_der,
        })
    }

    /// The report data that binds this key (SHA-256 of its SubjectPublicKeyInfo), and the
    /// module a keep runs when there is one: [`api::workload_report_data`].
    pub fn report_data_for(&self, module_sha256: Option<&[u8; 32]>) -> [u8; 64] {
        api::workload_report_data(&sha256(&self.spki_der()), module_sha256)
    }

    /// The report data of a native workload: this key and no module.
    pub fn report_data(&self) -> [u8; 64] {
        self.report_data_for(None)
    }

    /// The key's SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    /// The self-signed certificate the key is presented with in the TLS handshake, DER.
    pub fn self_signed_der(&self) -> &[u8] {
        &self.self_signed_der
    }

    /// The key, PKCS#8 DER.
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    /// The key, PKCS#8 PEM.
    pub fn private_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    fn identity(&self) -> Identity {
        Identity {
            chain: vec![self.self_signed_der.clone()],
            key_pkcs8: self.pkcs8_der(),
        }
    }
}

/// What to activate as.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The coordinator's base URL (`https://host:port`).
    pub coordinator: &'a str,
    /// The deployment root (DER) the coordinator's certificate must chain to.
    pub root_der: &'a [u8],
    /// The workload type.
    pub workload: &'a str,
    /// The instance UUID, if it has one already.
    pub uuid: Option<&'a str>,
    /// The SHA-256 of the WebAssembly module a keep runs; none for a native workload.
    pub module_sha256: Option<[u8; 32]>,
}

/// Attest `key` with `attester` and activate. The evidence binds `binding`'s key, which is
/// `key` itself except in tests that prove the coordinator refuses a mismatch.
pub async fn activate(
    request: &Request<'_>,
    attester: &dyn Attester,
    key: &WorkloadKey,
    binding: &WorkloadKey,
) -> Result<api::ActivationResponse, LaunchError> {
    let evidence = attester.evidence(&binding.report_data_for(request.module_sha256.as_ref()))?;
    let body = api::ActivationRequest {
        workload: request.workload.to_string(),
        uuid: request.uuid.map(str::to_string),
        evidence: api::EvidenceBundle::from_evidence(&evidence),
    };
    let client = Client::pinned(request.coordinator, request.root_der, Some(&key.identity()))?;
    let bytes = serde_json::to_vec(&body).map_err(|e| LaunchError::Answer(e.to_string()))?;
    client
        .post("/activate", bytes)
        .await?
        .ok_or_else(|| LaunchError::Answer("empty activation response".into()))
}

/// A workload ready to exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Environment to add.
    pub env: BTreeMap<String, String>,
    /// The command line from the manifest, if it sets one.
    pub argv: Vec<String>,
}

/// What an activation gives a workload, ready to be placed: files (credentials first, then
/// the manifest's) by path relative to the workload's root, and the environment that names
/// them there. The workload's own key is in place of its placeholder.
pub struct Rendered {
    /// Relative path → contents. May hold secrets.
    pub files: Vec<(PathBuf, Zeroizing<Vec<u8>>)>,
    /// The environment and the command line.
    pub prepared: Prepared,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.files.iter().map(|(path, _)| path).collect();
        f.debug_struct("Rendered")
            .field("files", &paths)
            .field("prepared", &self.prepared)
            .finish()
    }
}

/// The credentials, the manifest's files and the environment of `activation`, for a
/// workload that sees its files under `root` (a directory of the host for `launch`, the
/// guest's `/` for a keep). Absolute manifest paths are placed under `root` as well.
pub fn render(
    activation: &api::ActivationResponse,
    key: &WorkloadKey,
    workload: &str,
    root: &Path,
) -> Result<Rendered, LaunchError> {
    let key_pem = key.private_pem();
    let credentials = [
        (
            "workload-chain.pem",
            api::env::CERT_FILE,
            activation.certificate_chain_pem.as_bytes(),
        ),
        ("workload-key.pem", api::env::KEY_FILE, key_pem.as_bytes()),
        (
            "root-ca.pem",
            api::env::ROOT_CA_FILE,
            activation.root_ca_pem.as_bytes(),
        ),
    ];
    let mut files = Vec::with_capacity(credentials.len() + activation.parameters.files.len());
    let mut env = BTreeMap::new();
    for (name, variable, contents) in credentials {
        files.push((PathBuf::from(name), Zeroizing::new(contents.to_vec())));
        env.insert(variable.to_string(), root.join(name).display().to_string());
    }
    let substitutions = placeholder_substitutions(key);
    for (path, contents) in &activation.parameters.files {
        let bytes = B64
            .decode(contents)
            .map_err(|_| LaunchError::Answer(format!("file {path} is not base64")))?;
        let relative = PathBuf::from(path.trim_start_matches('/'));
        files.push((relative, Zeroizing::new(substitute(&bytes, &substitutions))));
    }
    for (name, value) in &activation.parameters.env {
        let value = substitute(value.as_bytes(), &substitutions);
        env.insert(name.clone(), String::from_utf8_lossy(&value).into_owned());
    }
    if let Some(policy) = &activation.image_policy {
        let name = "image-policy.json";
        files.push((
            PathBuf::from(name),
            Zeroizing::new(policy.to_string().into_bytes()),
        ));
        env.insert(
            api::env::IMAGE_POLICY_FILE.into(),
            root.join(name).display().to_string(),
        );
    }
    env.insert(api::env::WORKLOAD.into(), workload.to_string());
    env.insert(api::env::UUID.into(), activation.uuid.clone());
    Ok(Rendered {
        files,
        prepared: Prepared {
            env,
            argv: activation.parameters.argv.clone(),
        },
    })
}

/// Write the credentials to `dir` and the manifest's files to their paths (relative paths
/// under `dir`), with the placeholder for the workload's key replaced by `key`; return the
/// environment to set.
pub fn prepare(
    activation: &api::ActivationResponse,
    key: &WorkloadKey,
    workload: &str,
    dir: &Path,
) -> Result<Prepared, LaunchError> {
    let rendered = render(activation, key, workload, dir)?;
    write_tree(dir, &rendered.files)?;
    Ok(rendered.prepared)
}

/// Write `files` under `dir`, creating directories, each file readable by its owner only.
pub fn write_tree(dir: &Path, files: &[(PathBuf, Zeroizing<Vec<u8>>)]) -> Result<(), LaunchError> {
    for (relative, contents) in files {
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| LaunchError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        write(&target, contents)?;
    }
    Ok(())
}

/// Bytes to find and what replaces them.
type Substitution = (Vec<u8>, Zeroizing<Vec<u8>>);

/// Every encoding of the placeholder a template can produce, and what replaces it.
fn placeholder_substitutions(key: &WorkloadKey) -> Vec<Substitution> {
    let placeholder = api::WORKLOAD_KEY_PLACEHOLDER;
    let der = Zeroizing::new(key.key.serialize_der());
    let pem_of = |bytes: &[u8]| {
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(bytes)
        )
    };
    vec![
        (
            pem_of(placeholder).into_bytes(),
            Zeroizing::new(key.private_pem().as_bytes().to_vec()),
        ),
        (
            B64.encode(placeholder).into_bytes(),
            Zeroizing::new(B64.encode(&*der).into_bytes()),
        ),
        (
            hex::encode(placeholder).into_bytes(),
            Zeroizing::new(hex::encode(&*der).into_bytes()),
        ),
        (placeholder.to_vec(), der),
    ]
}

fn substitute(input: &[u8], substitutions: &[Substitution]) -> Vec<u8> {
    let mut out = input.to_vec();
    for (from, to) in substitutions {
        let mut next = Vec::with_capacity(out.len());
        let mut rest = out.as_slice();
        while let Some(at) = find(rest, from) {
            next.extend_from_slice(&rest[..at]);
            next.extend_from_slice(to);
            rest = &rest[at + from.len()..];
        }
        next.extend_from_slice(rest);
        out = next;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Write a file only its owner can read (credentials, keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), LaunchError> {
    write_private(path, bytes).map_err(|source| LaunchError::Write {
        path: path.to_path_buf(),
        source,
    })
}
