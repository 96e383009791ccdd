//! Verifying a coordinator: its evidence, the package it must match, and that the evidence
//! binds the root certificate, the manifest, the state head and the nonce it served. Online
//! (fresh nonce) or offline from a saved [`api::AttestationBundle`].

use attest::crypto::sha256;
use attest::evidence::Verifiers;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use time::OffsetDateTime;

use crate::client::{Client, ClientError, certs_from_pem};

/// Why a coordinator is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorRejected {
    /// The evidence bundle is malformed.
    #[error(transparent)]
    Bundle(#[from] api::BundleError),
    /// The evidence does not verify.
    #[error("the coordinator's evidence does not verify: {0}")]
    Evidence(#[from] attest::evidence::VerifyError),
    /// The evidence is not from the expected coordinator.
    #[error("the coordinator is not the expected one: {}", list(.0))]
    NotExpected(Vec<manifest::Mismatch>),
    /// The answer lacks the root certificate or a well-formed manifest hash.
    #[error("the coordinator's answer is malformed: {0}")]
    Malformed(String),
    /// The evidence binds something else than what was served.
    #[error(
        "the coordinator's evidence does not bind the root certificate, manifest and nonce it \
         served: do not trust this coordinator"
    )]
    NotBound,
    /// The bundled manifest is not the one the evidence binds.
    #[error("the bundled manifest's hash is not the attested manifest hash")]
    ManifestMismatch,
    /// The coordinator's state is older than the caller has seen.
    #[error(
        "the coordinator's state is at version {found}, older than the {expected} expected: it \
         may run on an older copy of its state (a rollback); do not trust it"
    )]
    StateTooOld {
        /// The attested version (0 when the answer bound none).
        found: u64,
        /// The least version expected.
        expected: u64,
    },
    /// Talking to the coordinator failed, or its TLS chain is not under the attested root.
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn list(items: &[manifest::Mismatch]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The deployment's attestation statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Whether the coordinator was verified.
    pub verified: bool,
    /// The coordinator's TEE.
    pub tee: String,
    /// Whether it rests on simulation.
    pub simulated: bool,
    /// Its TCB status.
    pub tcb_status: Option<String>,
    /// SHA-256 of the root certificate every workload certificate chains to, hex.
    pub root_sha256: String,
    /// The manifest it enforces (SHA-256, hex).
    pub manifest_hash: Option<String>,
    /// Its sealed state's version and audit head, as its evidence binds them.
    pub state: Option<api::StateHead>,
    /// Whether the measurement was checked against an expected package.
    pub measurement_checked: bool,
}

/// What to hold a coordinator to.
#[derive(Debug)]
pub struct Expectations<'a> {
    /// The verifiers (production roots, or a simulated platform's).
    pub verifiers: &'a Verifiers,
    /// The package the coordinator must match.
    pub package: Option<&'a manifest::Package>,
    /// Whether simulated evidence may pass.
    pub simulation: bool,
    /// The least state version to accept (what the caller saw before).
    pub min_version: Option<u64>,
    /// Verification time.
    pub now: OffsetDateTime,
}

/// Check an attestation answer for `nonce`; return the statement and the root (DER).
pub fn check(
    response: &api::AttestationResponse,
    nonce: &[u8],
    expect: &Expectations<'_>,
) -> Result<(Statement, Vec<u8>), CoordinatorRejected> {
    let (evidence, inputs) = response.evidence.decode()?;
    let (_, claims) = expect.verifiers.verify(&evidence, &inputs, expect.now)?;
    if let Some(package) = expect.package {
        package
            .appraise(&claims, expect.simulation)
            .map_err(CoordinatorRejected::NotExpected)?;
    } else if claims.simulated && !expect.simulation {
        return Err(CoordinatorRejected::Malformed(
            "the evidence is simulated and simulation was not accepted".into(),
        ));
    }
    let root = bound_root(response, nonce, &claims.report_data)?;
    if let Some(expected) = expect.min_version {
        let found = response.state.as_ref().map_or(0, |s| s.version);
        if found < expected {
            return Err(CoordinatorRejected::StateTooOld { found, expected });
        }
    }
    let statement = Statement {
        verified: true,
        tee: claims.tee.as_str().to_string(),
        simulated: claims.simulated,
        tcb_status: claims.tcb_status.map(|s| s.as_str().to_string()),
        root_sha256: hex::encode(sha256(&root)),
        manifest_hash: response.manifest_hash.clone(),
        state: response.state.clone(),
        measurement_checked: expect.package.is_some(),
    };
    Ok((statement, root))
}

/// The root certificate (DER) an attestation answer serves, if the evidence's `report_data`
/// binds it together with the manifest hash, state head and `nonce` the answer names.
pub fn bound_root(
    response: &api::AttestationResponse,
    nonce: &[u8],
    report_data: &[u8; 64],
) -> Result<Vec<u8>, CoordinatorRejected> {
    let root = certs_from_pem(
        "coordinator certificate chain",
        &response.certificate_chain_pem,
    )?
    .into_iter()
    .next()
    .ok_or_else(|| CoordinatorRejected::Malformed("no root certificate".into()))?;
    let manifest_hash = response
        .manifest_hash
        .as_deref()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    CoordinatorRejected::Malformed(
                        "the manifest hash is not 32 bytes of hex".into(),
                    )
                })
        })
        .transpose()?;
    let expected = api::coordinator_report_data(
        &sha256(&root),
        manifest_hash.as_ref(),
        response.state.as_ref(),
        nonce,
        sha256,
    )
    .map_err(|e| CoordinatorRejected::Malformed(e.to_string()))?;
    if *report_data != expected {
        return Err(CoordinatorRejected::NotBound);
    }
    Ok(root)
}

/// Verify the coordinator at `url` with a fresh nonce. Returns the statement, the root (DER)
/// and a bundle that [`check_bundle`] verifies again offline.
pub async fn verify_online(
    url: &str,
    expect: &Expectations<'_>,
) -> Result<(Statement, Vec<u8>, api::AttestationBundle), CoordinatorRejected> {
    let nonce = fresh_nonce()?;
    let (client, first_contact) = Client::first_contact(url)?;
    let response: api::AttestationResponse = client
        .get(&format!("/attestation?nonce={}", hex::encode(nonce)))
        .await?;
    let (statement, root) = check(&response, &nonce, expect)?;
    first_contact.check(&root, host_of(url))?;
    // Now pinned: fetch the manifest the evidence binds, for the bundle.
    let pinned = Client::pinned(url, &root, None)?;
    let manifest = match &response.manifest_hash {
        Some(_) => {
            let m: api::ManifestResponse = pinned.get("/manifest").await?;
            Some(m.manifest)
        }
        None => None,
    };
    let bundle = api::AttestationBundle {
        attestation: response,
        nonce_hex: hex::encode(nonce),
        manifest,
    };
    Ok((statement, root, bundle))
}

/// Verify a saved bundle with no network: the evidence, its bindings, and that the bundled
/// manifest is the attested one.
pub fn check_bundle(
    bundle: &api::AttestationBundle,
    expect: &Expectations<'_>,
) -> Result<(Statement, Vec<u8>), CoordinatorRejected> {
    let nonce = hex::decode(&bundle.nonce_hex)
        .map_err(|_| CoordinatorRejected::Malformed("the bundle's nonce is not hex".into()))?;
    let checked = check(&bundle.attestation, &nonce, expect)?;
    if let Some(manifest) = &bundle.manifest {
        let raw = B64.decode(manifest).map_err(|_| {
            CoordinatorRejected::Malformed("the bundled manifest is not base64".into())
        })?;
        if Some(hex::encode(sha256(&raw))) != bundle.attestation.manifest_hash {
            return Err(CoordinatorRejected::ManifestMismatch);
        }
    }
    Ok(checked)
}

fn fresh_nonce() -> Result<[u8; 16], CoordinatorRejected> {
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| CoordinatorRejected::Malformed("no randomness for a nonce".into()))?;
    Ok(nonce)
}

/// The host part of an `https://host:port/…` URL (IPv6 in brackets is kept without them).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
}
