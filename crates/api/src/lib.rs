//! The coordinator's REST API: every JSON shape the server sends or accepts, shared by the
//! server and its clients (CLI, launcher, benchmarks). No I/O; evidence types come from
//! `attest`.
//!
//! Binary fields are base64 (standard alphabet) unless named `*_pem` or `*_hex`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// The domain string mixed into the coordinator's report data, so its evidence cannot be
/// mistaken for evidence bound to anything else.
pub const ATTESTATION_DOMAIN: &[u8] = b"cloister coordinator attestation v2\0";

/// The longest nonce `GET /attestation` accepts, in bytes.
pub const MAX_NONCE_LEN: usize = 64;

/// What the coordinator's evidence binds in its 64-byte report data: the first 32 bytes are
/// `SHA-256(domain ‖ SHA-256(root certificate DER) ‖ manifest hash or 32 zero bytes ‖
/// state version (u64 LE) ‖ audit entries (u64 LE) ‖ audit head ‖ nonce)`, with zeros for the
/// state where none is bound (the cached, nonce-less evidence); the rest is zero. Anyone holding
/// the root, the manifest, the state head and the nonce recomputes it.
pub fn coordinator_report_data(
    root_sha256: &[u8; 32],
    manifest_hash: Option<&[u8; 32]>,
    state: Option<&StateHead>,
    nonce: &[u8],
    sha256: impl Fn(&[u8]) -> [u8; 32],
) -> Result<[u8; 64], StateHeadError> {
    let (version, entries, head) = match state {
        Some(s) => (s.version, s.audit_entries, s.head_bytes()?),
        None => (0, 0, [0; 32]),
    };
    let mut input = Vec::with_capacity(ATTESTATION_DOMAIN.len() + 112 + nonce.len());
    input.extend_from_slice(ATTESTATION_DOMAIN);
    input.extend_from_slice(root_sha256);
    input.extend_from_slice(manifest_hash.unwrap_or(&[0; 32]));
    input.extend_from_slice(&version.to_le_bytes());
    input.extend_from_slice(&entries.to_le_bytes());
    input.extend_from_slice(&head);
    input.extend_from_slice(nonce);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&sha256(&input));
    Ok(out)
}

/// What a workload's evidence binds in its 64-byte report data: SHA-256 of its TLS key's
/// SubjectPublicKeyInfo (DER), then the SHA-256 of the WebAssembly module a keep runs, or 32
/// zero bytes for a native workload. The coordinator refuses an activation whose second half
/// differs from the digest the manifest names for the workload (zero when it names none).
pub fn workload_report_data(spki_sha256: &[u8; 32], module_sha256: Option<&[u8; 32]>) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(spki_sha256);
    if let Some(digest) = module_sha256 {
        out[32..].copy_from_slice(digest);
    }
    out
}

/// Where the coordinator's sealed state stands: what its fresh evidence binds, so that a user
/// who remembers a version notices a coordinator restarted on an older copy of its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHead {
    /// How many transactions the state has committed; it only grows.
    pub version: u64,
    /// How many entries the audit log holds.
    pub audit_entries: u64,
    /// The last audit entry's hash, hex (zeros for an empty log).
    pub audit_head: String,
}

/// A state head whose audit hash is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state head's audit hash is not 32 bytes of hex")]
pub struct StateHeadError;

impl StateHead {
    /// The audit head's bytes.
    pub fn head_bytes(&self) -> Result<[u8; 32], StateHeadError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.audit_head, &mut out).map_err(|_| StateHeadError)?;
        Ok(out)
    }
}

/// The coordinator's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The sealed state does not open on this platform: the coordinator waits for recovery
    /// shares and serves nothing else.
    Recovery,
    /// Waiting for the first manifest; no workload can activate yet.
    AcceptingManifest,
    /// A manifest is set; workloads activate against it.
    AcceptingWorkloads,
}

impl State {
    /// The name used in JSON and in readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovery => "recovery",
            Self::AcceptingManifest => "accepting-manifest",
            Self::AcceptingWorkloads => "accepting-workloads",
        }
    }
}

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The lifecycle state.
    pub state: State,
    /// Whether the coordinator runs on simulated hardware and accepts simulated evidence.
    pub simulation: bool,
    /// How its state is sealed, in words.
    pub sealing: String,
    /// The hex SHA-256 of the manifest in force, if any.
    pub manifest_hash: Option<String>,
    /// The coordinator's version.
    pub version: String,
    /// In recovery mode: what recovery needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,
}

/// What a coordinator in recovery mode waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStatus {
    /// How many shares open the state.
    pub threshold: u64,
    /// The recovery key holders, by name, with the SHA-256 of their public key
    /// (SubjectPublicKeyInfo DER, hex).
    pub holders: BTreeMap<String, String>,
    /// The holders whose shares arrived in this session.
    pub received: Vec<String>,
    /// This recovery session (hex): shares are signed over it, so an upload cannot be replayed
    /// into another session.
    pub session: String,
}

/// `POST /recover`: one holder's share of the state key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverRequest {
    /// The holder (a `recovery_keys` name in the manifest).
    pub holder: String,
    /// The decrypted share, base64.
    pub share: String,
    /// RSA PKCS#1 v1.5 SHA-256 signature by the holder's key over [`recovery_message`], base64.
    pub signature: String,
}

/// `POST /recover` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverResponse {
    /// Shares still missing (0 once recovered).
    pub remaining: u64,
    /// Whether the state is open again.
    pub recovered: bool,
    /// What happened, in words.
    pub message: String,
}

/// `POST /replicas/join`: a coordinator replica asks a running one for the state key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining replica's evidence; its report data starts with SHA-256 of `public_key`.
    pub evidence: EvidenceBundle,
    /// The key to encrypt the state key to: a CoCo TEE public key (JWK), as JSON text.
    pub public_key: String,
}

/// `POST /replicas/join` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The state key, as a JWE to the joining replica's key (the key broker's format).
    pub state_key: serde_json::Value,
}

/// What a holder signs to upload `share` in recovery session `session`.
pub fn recovery_message(session: &[u8], share: &[u8]) -> Vec<u8> {
    let mut message = b"cloister recovery share v1\0".to_vec();
    message.extend_from_slice(session);
    message.extend_from_slice(share);
    message
}

/// Evidence with what verifies it, as it travels between processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvidenceBundle {
    /// `sgx`, `tdx`, `snp`, `az-snp-vtpm` or `az-tdx-vtpm`.
    pub tee: String,
    /// The quote or report, base64.
    pub evidence: String,
    /// DCAP collateral, the combined JSON object itself (embedded, not a string: no escaping
    /// to undo), when the producer has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<Box<serde_json::value::RawValue>>,
    /// The SNP VCEK or VLEK, base64 DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vek: Option<String>,
    /// The AMD chain (ASK, ARK), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
}

/// Why an [`EvidenceBundle`] cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The TEE kind is not one cloister knows.
    #[error("evidence bundle: unknown tee {0:?} (sgx, tdx, snp, az-snp-vtpm, az-tdx-vtpm)")]
    UnknownTee(String),
    /// A field is not valid base64.
    #[error("evidence bundle: {0} is not valid base64")]
    Base64(&'static str),
}

impl EvidenceBundle {
    /// Evidence as an attester produced it, with what verifies it.
    pub fn from_evidence(evidence: &attest::attester::Evidence) -> Self {
        Self::new(
            evidence.tee,
            &evidence.bytes,
            evidence.verification_inputs(),
        )
    }

    /// `evidence` of kind `tee` with the verification inputs that travel with it.
    pub fn new(tee: attest::TeeKind, evidence: &[u8], inputs: attest::evidence::Inputs) -> Self {
        Self {
            tee: tee.as_str().to_string(),
            evidence: B64.encode(evidence),
            collateral: match (inputs.collateral.first(), &inputs.dcap_collateral) {
                (Some((_, json)), _) => String::from_utf8(json.clone()).ok(),
                (None, Some(parsed)) => parsed.to_combined_json().ok(),
                (None, None) => None,
            }
            .and_then(|text| serde_json::value::RawValue::from_string(text).ok()),
            vek: inputs.vek.as_deref().map(|v| B64.encode(v)),
            chain_pem: inputs.chain.and_then(|c| String::from_utf8(c).ok()),
        }
    }

    /// The evidence bytes and the verification inputs this bundle carries.
    pub fn decode(&self) -> Result<(Vec<u8>, attest::evidence::Inputs), BundleError> {
        let tee = self
            .tee
            .parse::<attest::TeeKind>()
            .map_err(|_| BundleError::UnknownTee(self.tee.clone()))?;
        let evidence = B64
            .decode(&self.evidence)
            .map_err(|_| BundleError::Base64("evidence"))?;
        let vek = self
            .vek
            .as_deref()
            .map(|v| B64.decode(v).map_err(|_| BundleError::Base64("vek")))
            .transpose()?;
        let inputs = attest::evidence::Inputs {
            tee: Some(tee),
            collateral: self
                .collateral
                .iter()
                .map(|c| ("collateral.json".to_string(), c.get().as_bytes().to_vec()))
                .collect(),
            vek,
            chain: self.chain_pem.as_ref().map(|c| c.as_bytes().to_vec()),
            nonce: None,
            dcap_collateral: None,
        };
        Ok((evidence, inputs))
    }
}

/// An offline-verifiable record of a coordinator's attestation: `cloister verify --bundle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationBundle {
    /// What the coordinator answered to `GET /attestation?nonce=…`.
    pub attestation: AttestationResponse,
    /// The nonce asked for, hex.
    pub nonce_hex: String,
    /// The manifest in force (base64), whose hash the evidence binds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// `GET /attestation[?nonce=HEX]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationResponse {
    /// The coordinator's evidence; its report data is [`coordinator_report_data`].
    pub evidence: EvidenceBundle,
    /// The root then the intermediate certificate, PEM.
    pub certificate_chain_pem: String,
    /// The hex SHA-256 of the manifest in force, if any.
    pub manifest_hash: Option<String>,
    /// The nonce the evidence binds, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_hex: Option<String>,
    /// The state head the evidence binds (fresh evidence only, asked for with a nonce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateHead>,
    /// Whether the evidence is simulated.
    pub simulated: bool,
}

/// `POST /manifest` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSetResponse {
    /// The hex SHA-256 of the uploaded bytes, now in force.
    pub manifest_hash: String,
    /// Things the coordinator ignored or wants you to know, with their JSON paths.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Each recovery key holder's share of the state key, RSA-OAEP-SHA256 encrypted to their
    /// key, base64: returned once, when the recovery keys are set or change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recovery_secrets: BTreeMap<String, String>,
}

/// `GET /manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestResponse {
    /// The manifest exactly as uploaded, base64.
    pub manifest: String,
    /// Its hex SHA-256.
    pub manifest_hash: String,
    /// Security versions raised by package updates since, by package (they override the
    /// manifest's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub package_updates: BTreeMap<String, u16>,
}

/// `POST /manifest/update` and `POST /manifest/update/acknowledge` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResponse {
    /// Whether the change is in force now.
    pub applied: bool,
    /// The manifest in force (when applied) or proposed, hex SHA-256.
    pub manifest_hash: String,
    /// Acknowledgements still needed (0 when applied).
    pub missing_acknowledgements: u64,
    /// Users who may still acknowledge.
    #[serde(default)]
    pub missing_users: Vec<String>,
    /// What happened, and what it means for running workloads.
    pub message: String,
    /// New recovery shares, when the update changed the recovery keys (see
    /// [`ManifestSetResponse::recovery_secrets`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recovery_secrets: BTreeMap<String, String>,
}

/// A full manifest update waiting for acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The proposed manifest, base64.
    pub manifest: String,
    /// Its hex SHA-256: what acknowledgements name.
    pub manifest_hash: String,
    /// Who proposed it.
    pub initiator: String,
    /// Who acknowledged it (the initiator first).
    pub acknowledged: Vec<String>,
    /// Acknowledgements still needed.
    pub missing_acknowledgements: u64,
    /// Users who may still acknowledge.
    pub missing_users: Vec<String>,
}

/// `GET /manifest/update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The update waiting for acknowledgements, if any.
    pub pending: Option<PendingUpdate>,
}

/// `POST /manifest/update/acknowledge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// The hex SHA-256 of the manifest acknowledged: it must be the pending one.
    pub manifest_hash: String,
}

/// `POST /activate`: a workload asks to be activated as `workload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivationRequest {
    /// The workload type (a key of the manifest's `workloads`).
    pub workload: String,
    /// The instance UUID; the coordinator picks one when absent. Per-workload secrets derive
    /// from it, so a restarted instance that keeps its UUID gets the same keys.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Evidence whose report data starts with SHA-256 of the TLS client key's
    /// SubjectPublicKeyInfo (DER).
    pub evidence: EvidenceBundle,
}

/// `POST /activate` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationResponse {
    /// The instance UUID.
    pub uuid: String,
    /// The workload's certificate (for the key it presented) then the intermediate, PEM.
    pub certificate_chain_pem: String,
    /// The deployment root certificate, PEM: what the workload trusts for mTLS.
    pub root_ca_pem: String,
    /// The rendered parameters.
    pub parameters: Parameters,
    /// Whether the activation rests on simulated evidence.
    pub simulated: bool,
    /// For a WebAssembly workload: how its keep runs it (directories, network, limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmSpec>,
    /// The connections the runtime wraps in TLS for the workload (its manifest `tls` tags).
    #[serde(default, skip_serializing_if = "TransparentTls::is_empty")]
    pub tls: TransparentTls,
    /// The containers-policy.json the workload pulls images with (its manifest
    /// `image_policy`): attested with the rest of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_policy: Option<serde_json::Value>,
}

/// The manifest's transparent-TLS rules of one workload, its tags resolved: the workload
/// speaks plaintext, the runtime inside its TEE speaks TLS with the workload's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TransparentTls {
    /// Connections the workload makes: the runtime dials them with mTLS, verifying the server
    /// against the deployment root and the rule's address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outgoing: Vec<TlsOutgoing>,
    /// Ports the workload listens on: the runtime terminates TLS there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incoming: Vec<TlsIncoming>,
}

impl TransparentTls {
    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.is_empty()
    }
}

/// An outgoing transparent-TLS rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsOutgoing {
    /// Host name or IP address (also the name the server's certificate must carry).
    pub addr: String,
    /// Port.
    pub port: u16,
}

/// An incoming transparent-TLS rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsIncoming {
    /// Port.
    pub port: u16,
    /// A certificate secret to serve instead of the workload's certificate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert: String,
    /// Accept clients without a deployment certificate.
    pub disable_client_auth: bool,
}

/// How a keep runs a workload's WebAssembly module: the manifest's `wasm` section of a workload,
/// handed to the keep at activation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WasmSpec {
    /// The module's SHA-256, hex: the bytes of the `.wasm` file (a core module or a component),
    /// never of a precompiled artifact.
    pub digest: String,
    /// The OCI reference the module must be pulled from (`registry/repository:tag`, or
    /// `…@sha256:…` to pin the manifest), when the manifest pins one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Guest path → host directory preopened there. Nothing else of the host is visible.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dirs: BTreeMap<String, WasmDir>,
    /// Plain TCP destinations the module may connect to (`ip:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect: Vec<String>,
    /// Addresses the module may listen on (`ip:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    /// Memory, table, instance and time limits.
    pub limits: WasmLimits,
    /// `keep serve` accepts clients without a deployment certificate (server-only TLS; the
    /// server still presents the workload's certificate).
    pub disable_client_auth: bool,
}

impl WasmSpec {
    /// The digest's bytes: 64 hex digits, optionally after `sha256:`.
    pub fn digest_bytes(&self) -> Option<[u8; 32]> {
        let text = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        hex::decode(text).ok()?.try_into().ok()
    }
}

/// A host directory preopened for a keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WasmDir {
    /// The host path.
    pub host: String,
    /// Whether the module may write there (read-only by default).
    pub writable: bool,
}

/// What one run (or one request of `keep serve`) of a module may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WasmLimits {
    /// Largest linear memory, MiB.
    pub memory_mib: u64,
    /// Most elements in one table.
    pub table_elements: u64,
    /// Most instances (a component counts each core instance inside it).
    pub instances: u64,
    /// Wall-clock deadline in milliseconds; 0 is none.
    pub deadline_ms: u64,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            memory_mib: 256,
            table_elements: 100_000,
            instances: 64,
            deadline_ms: 0,
        }
    }
}

/// A workload's rendered parameters. They may carry secrets: `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// Path → contents (base64).
    pub files: BTreeMap<String, String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// The command line, when the manifest replaces it.
    pub argv: Vec<String>,
}

/// A secret as `GET /secrets` returns it. `Debug` redacts the key material.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue {
    /// The secret's type (`symmetric-key`, `cert-ecdsa`, …); uploads may leave it out (the
    /// manifest decides it).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The key bytes (symmetric/plain), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// The private key (PKCS#8), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_pem: Option<String>,
}

impl std::fmt::Debug for Parameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parameters")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("argv", &format_args!("[{} redacted]", self.argv.len()))
            .finish()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |present: bool| if present { "<redacted>" } else { "-" };
        f.debug_struct("SecretValue")
            .field("kind", &self.kind)
            .field("key", &redacted(self.key.is_some()))
            .field("cert_pem", &self.cert_pem)
            .field("private_pem", &redacted(self.private_pem.is_some()))
            .finish()
    }
}

/// `GET /secrets?name=…` response and `POST /secrets` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Secret name → value.
    pub secrets: BTreeMap<String, SecretValue>,
}

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it happened, RFC 3339.
    pub time: String,
    /// What happened (`manifest-set`, `activation`, `secret-set`, …).
    pub event: String,
    /// Who did it: a manifest user, a workload instance, or `coordinator`.
    pub actor: String,
    /// Event details.
    pub details: serde_json::Value,
    /// The previous entry's hash, hex (zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this entry's canonical fields and `prev_hash`, hex.
    pub hash: String,
}

/// The hash of an audit entry: SHA-256 over the compact JSON array
/// `[seq, time, event, actor, details, prev_hash]`, hex.
pub fn audit_entry_hash(
    seq: u64,
    time: &str,
    event: &str,
    actor: &str,
    details: &serde_json::Value,
    prev_hash: &str,
) -> String {
    // A tuple serializes as the compact JSON array without building (and cloning `details`
    // into) a `Value` first. It cannot fail: integers, strings and a `Value` always serialize.
    let canonical =
        serde_json::to_vec(&(seq, time, event, actor, details, prev_hash)).unwrap_or_default();
    hex::encode(attest::crypto::sha256(&canonical))
}

impl AuditEntry {
    /// What [`Self::hash`] must be, computed from the entry's fields.
    pub fn computed_hash(&self) -> String {
        audit_entry_hash(
            self.seq,
            &self.time,
            &self.event,
            &self.actor,
            &self.details,
            &self.prev_hash,
        )
    }
}

/// The most entries one `GET /audit` returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /audit?from=SEQ&limit=N`: one page of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Entries from `from` on, oldest first.
    pub entries: Vec<AuditEntry>,
    /// How many entries the log holds (durably committed ones).
    pub total: u64,
    /// The `from` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// An RFC 9457 problem detail, the body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable URI naming the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time and what to do about it.
    pub detail: String,
    /// Individual errors (for example every invalid manifest path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

/// One item of [`Problem::errors`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemItem {
    /// Where (a JSON path, or a field name).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://cloister.dev/problems/";

/// The environment variables the launcher sets for a workload.
pub mod env {
    /// Path of the workload's certificate chain (PEM).
    pub const CERT_FILE: &str = "CLOISTER_CERT_FILE";
    /// Path of the workload's private key (PKCS#8 PEM).
    pub const KEY_FILE: &str = "CLOISTER_KEY_FILE";
    /// Path of the deployment root certificate (PEM).
    pub const ROOT_CA_FILE: &str = "CLOISTER_ROOT_CA_FILE";
    /// The workload type.
    pub const WORKLOAD: &str = "CLOISTER_WORKLOAD";
    /// The instance UUID.
    pub const UUID: &str = "CLOISTER_UUID";
    /// Path of the containers-policy.json the manifest gives the workload for its images.
    pub const IMAGE_POLICY_FILE: &str = "CLOISTER_IMAGE_POLICY";
}

/// What the coordinator puts where a template asks for the workload's own private key
/// (`.Cloister.WorkloadCert.Private`): the key never leaves the workload's TEE, so the launcher
/// replaces every encoding of these bytes (PEM, hex, base64, raw) with its key (PKCS#8).
pub const WORKLOAD_KEY_PLACEHOLDER: &[u8] = b"cloister: the workload's own key goes here";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secret_material() {
        let secret = SecretValue {
            kind: "symmetric-key".into(),
            key: Some("aHVudGVyMg==".into()),
            cert_pem: None,
            private_pem: Some("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n".into()),
        };
        let parameters = Parameters {
            files: [("/etc/key".to_string(), "aHVudGVyMg==".to_string())].into(),
            env: [("TOKEN".to_string(), "hunter2".to_string())].into(),
            argv: vec!["--password=hunter2".into()],
        };
        let shown = format!("{secret:?} {parameters:?}");
        for leaked in ["aHVudGVyMg", "hunter2", "c2VjcmV0"] {
            assert!(!shown.contains(leaked), "{leaked} in {shown}");
        }
        assert!(
            shown.contains("/etc/key") && shown.contains("TOKEN"),
            "{shown}"
        );
    }

    #[test]
    fn the_report_data_binds_the_state_head() {
        let sha = attest::crypto::sha256;
        let head = StateHead {
            version: 3,
            audit_entries: 5,
            audit_head: "11".repeat(32),
        };
        let with = coordinator_report_data(&[1; 32], None, Some(&head), b"n", sha).unwrap();
        let older = StateHead {
            version: 2,
            ..head.clone()
        };
        let with_older = coordinator_report_data(&[1; 32], None, Some(&older), b"n", sha).unwrap();
        assert_ne!(with, with_older);
        let bad = StateHead {
            audit_head: "zz".into(),
            ..head
        };
        assert!(coordinator_report_data(&[1; 32], None, Some(&bad), b"n", sha).is_err());
    }
}
