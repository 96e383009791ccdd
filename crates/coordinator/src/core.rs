//! The coordinator's logic, independent of HTTP: start-up, manifest, activation, secrets.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use attest::attester::{Attester, SimulatedAttester};
use attest::evidence::Verifiers;
use attest::sim::SimPlatform;
use attest::{TeeKind, crypto::sha256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use manifest::{Manifest, Reserved, SecretValue, Values};
use serde_json::json;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ca::Ca;
use crate::collateral::CollateralSource;
use crate::error::ApiError;
use crate::heavy::Heavy;
use crate::metrics::Metrics;
use crate::seal::{SealSource, Sealer};
use crate::secrets::{self, Instance, StoredSecret, spki_of};
use crate::store::{AuditEvent, Change, Store};

/// How to run a coordinator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the sealed state file lives.
    pub data_dir: PathBuf,
    /// DNS names and IP addresses of the coordinator's TLS certificate.
    pub dns_names: Vec<String>,
    /// Run on simulated hardware and accept simulated evidence.
    pub simulation: bool,
    /// The simulated platform's directory.
    pub sim_dir: PathBuf,
    /// The TEE the simulated coordinator runs in.
    pub sim_tee: TeeKind,
    /// Where the TEE's interfaces are found without simulation (production: `/`).
    pub platform_root: PathBuf,
    /// Where DCAP collateral comes from without simulation: Intel's PCS or a PCCS.
    pub pcs_url: String,
    /// Extra CA certificates (DER) to trust for the PCS/PCCS's HTTPS (a PCCS's own CA).
    pub pcs_roots: Vec<Vec<u8>>,
    /// Where AMD's ASK/ARK chains come from without simulation: AMD's KDS or a mirror.
    pub kds_url: String,
    /// What any one caller may spend.
    pub limits: Limits,
    /// Keep the state in etcd, shared with other replicas, instead of a file in `data_dir`.
    pub etcd: Option<crate::store::etcd::Location>,
    /// The URL other replicas reach this one at (default: `https://` and the listening
    /// address).
    pub advertise: Option<String>,
    /// In simulation, the name of the simulated machine: each has its own sealing key (as
    /// real machines do), under the same simulated vendor roots.
    pub sim_machine: Option<String>,
}

/// Bounds on what callers may spend: connections, time, sessions, token lifetimes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this; it is also how long an idle keep-alive
    /// connection is kept.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long ends the connection.
    pub write_stall_timeout: Duration,
    /// Key-broker sessions kept at once; the oldest go first.
    pub kbs_sessions: usize,
    /// The longest lifetime (`exp` − `iat`, or `exp` − now) of an admin JWT.
    pub admin_token_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
            kbs_sessions: 16_384,
            admin_token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Why the coordinator cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// This machine offers no TEE, or none with a sealing key.
    #[error("this machine cannot host a coordinator (`--simulation` runs one on a simulated TEE)")]
    Platform(#[source] attest::attester::AttesterError),
    /// The PCS/PCCS client could not be set up.
    #[error(transparent)]
    Pcs(#[from] pcs::PcsError),
    /// The simulated platform could not be opened.
    #[error("simulated platform: {0}")]
    Simulation(#[from] attest::sim::SimError),
    /// The state could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The CA could not be created or restored.
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// The coordinator's own evidence could not be obtained.
    #[error("the coordinator cannot attest itself: {0}")]
    Attest(String),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A saved record is corrupt.
    #[error("saved state record {0} is corrupt")]
    Corrupt(&'static str),
    /// The threads for CPU-heavy work could not start.
    #[error("cannot start worker threads: {0}")]
    Threads(#[source] std::io::Error),
}

/// A TLS certificate chain (DER, leaf first) and its PKCS#8 key.
pub type ServerIdentity = (Vec<Vec<u8>>, Zeroizing<Vec<u8>>);

/// A workload type's activation count. One per workload name for the coordinator's whole life,
/// shared by every deployment that names it: an activation in flight on a deployment that was
/// just replaced takes its slot from the same count as the next one.
type Counter = Arc<AtomicU64>;

/// The manifest in force and what was generated for it.
#[derive(Clone)]
pub(crate) struct Deployment {
    pub(crate) manifest: Manifest,
    pub(crate) raw: Vec<u8>,
    pub(crate) hash: [u8; 32],
    secrets: BTreeMap<String, StoredSecret>,
    root_secret: Zeroizing<[u8; 32]>,
    counters: HashMap<String, Counter>,
    /// The manifest's key-broker resource policy, compiled.
    kbs_policy: Option<Arc<kbs::policy::ResourcePolicy>>,
    /// Security versions raised by package updates (already applied to `manifest`).
    pub(crate) package_updates: BTreeMap<String, u16>,
}

impl Deployment {
    /// A shared or user-set secret's bytes as the key broker releases them: the key of a
    /// symmetric or plain secret; certificate then private key (PEM) of a certificate secret.
    pub(crate) fn secret_bytes(&self, name: &str) -> Option<Zeroizing<Vec<u8>>> {
        let value = self.secrets.get(name)?.to_value(name).ok()?;
        let Some(cert) = &value.cert_der else {
            return Some(Zeroizing::new(value.public));
        };
        let mut out = pem("CERTIFICATE", cert);
        if let Some(private) = &value.private_pkcs8 {
            out.push_str(&pem("PRIVATE KEY", private));
        }
        Some(Zeroizing::new(out.into_bytes()))
    }

    /// The manifest's resource policy.
    pub(crate) fn kbs_policy(&self) -> Option<Arc<kbs::policy::ResourcePolicy>> {
        self.kbs_policy.clone()
    }
}

/// A manifest read, validated and with its resource policy compiled: the CPU-heavy part of
/// setting one, done on the heavy pool.
pub(crate) struct Prepared {
    parsed: manifest::Parsed,
    kbs_policy: Option<Arc<kbs::policy::ResourcePolicy>>,
}

pub(crate) fn prepare_manifest(raw: &[u8]) -> Result<Prepared, ApiError> {
    let parsed = Manifest::parse(raw).map_err(ApiError::MalformedManifest)?;
    parsed
        .manifest
        .validate()
        .map_err(ApiError::InvalidManifest)?;
    let kbs_policy = compile_kbs_policy(&parsed.manifest)?;
    Ok(Prepared { parsed, kbs_policy })
}

/// Compile the manifest's resource policy, refusing the manifest if it does not compile.
fn compile_kbs_policy(
    manifest: &Manifest,
) -> Result<Option<Arc<kbs::policy::ResourcePolicy>>, ApiError> {
    manifest
        .kbs
        .resource_policy
        .as_deref()
        .map(|text| {
            kbs::policy::ResourcePolicy::new(text)
                .map(Arc::new)
                .map_err(|e| {
                    ApiError::InvalidManifest(manifest::ValidationErrors(vec![
                        manifest::ValidationError {
                            path: "$.kbs.resource_policy".into(),
                            reason: e.to_string(),
                        },
                    ]))
                })
        })
        .transpose()
}

/// What a coordinator runs on: its attester, sealing key and trust anchors.
pub(crate) struct Platform {
    pub(crate) attester: Box<dyn Attester>,
    /// The platform's sealing key, which seals the state key.
    pub(crate) kek: Sealer,
    pub(crate) verifiers: Verifiers,
    pub(crate) collateral: CollateralSource,
}

impl Platform {
    /// The simulated platform or this machine's TEE, as `config` says.
    fn open(config: &Config, now: OffsetDateTime) -> Result<Self, StartError> {
        if config.simulation {
            Self::simulated(config, now)
        } else {
            Self::hardware(config)
        }
    }

    /// Fresh evidence over `report_data`, with what verifies it: what the attester gave, and
    /// what the vendors' services add (so that clients, and offline bundles, need no service).
    pub(crate) async fn evidence(
        &self,
        report_data: &[u8; 64],
    ) -> Result<api::EvidenceBundle, ApiError> {
        let evidence = self
            .attester
            .evidence(report_data)
            .map_err(|e| ApiError::Internal(format!("the coordinator cannot attest: {e}")))?;
        let mut inputs = evidence.verification_inputs();
        if let Err(e) = self.collateral.complete(&evidence.bytes, &mut inputs).await {
            tracing::warn!(
                error = %e,
                "the coordinator's evidence goes out without all that verifies it"
            );
        }
        Ok(api::EvidenceBundle::new(
            evidence.tee,
            &evidence.bytes,
            inputs,
        ))
    }

    /// A simulated TEE: evidence and sealing from the shared simulated platform's keys.
    fn simulated(config: &Config, now: OffsetDateTime) -> Result<Self, StartError> {
        let platform = SimPlatform::open(&config.sim_dir, now)?;
        let mut seed = Zeroizing::new(platform.sealing_seed().to_vec());
        if let Some(machine) = &config.sim_machine {
            seed.extend_from_slice(b"\0simulated machine\0");
            seed.extend_from_slice(machine.as_bytes());
        }
        let sealer = Sealer::derive(&seed, SealSource::Simulation)?;
        tracing::warn!(
            "SIMULATION: state is sealed under a key derived from the simulated platform in {}; \
             it protects nothing from the host",
            platform.dir().display()
        );
        let (dcap, snp) = platform.anchors(now)?;
        let attester = SimulatedAttester::on_platform(config.sim_tee, &platform, now)?
            .with_measurements(simulated_coordinator());
        Ok(Self {
            attester: Box::new(attester),
            kek: sealer,
            verifiers: Verifiers::with_anchors(dcap, snp),
            collateral: CollateralSource::simulated(Arc::new(platform)),
        })
    }

    /// The TEE this machine has, found under `root`, sealing with the key it derives and
    /// verifying evidence under Intel's and AMD's roots.
    fn hardware(config: &Config) -> Result<Self, StartError> {
        let root = &config.platform_root;
        let attester = attest::attester::detect(root)
            .attester()
            .map_err(StartError::Platform)?;
        let seed = attester.sealing_key().map_err(StartError::Platform)?;
        let sealer = Sealer::derive(&seed, SealSource::Tee(attester.tee()))?;
        tracing::info!(
            "running on {} through {}; {}",
            attester.tee(),
            attester.kind().as_str(),
            sealer.source().describe()
        );
        Ok(Self {
            attester,
            kek: sealer,
            verifiers: Verifiers::with_anchors(
                attest::TrustAnchor::intel(),
                attest::TrustAnchor::amd(),
            ),
            collateral: CollateralSource::Services(Box::new(pcs::Services::new(
                &config.pcs_url,
                &config.kds_url,
                &config.pcs_roots,
            )?)),
        })
    }
}

/// The module half of a workload's report data ([`api::workload_report_data`]) must be the
/// digest its manifest names, or zero for a native workload.
fn check_module(
    name: &str,
    workload: &manifest::Workload,
    report_data: &[u8; 64],
) -> Result<(), ApiError> {
    let bound = &report_data[32..];
    let expected = match &workload.wasm {
        Some(wasm) => wasm
            .digest_bytes()
            .ok_or_else(|| ApiError::Internal(format!("workload {name}: bad module digest")))?,
        None => [0; 32],
    };
    if bound == expected {
        return Ok(());
    }
    let bound_hex = (bound != [0; 32]).then(|| hex::encode(bound));
    Err(ApiError::ModuleMismatch {
        workload: name.to_string(),
        expected: workload.wasm.is_some().then(|| hex::encode(expected)),
        bound: bound_hex,
    })
}

/// A running coordinator's state.
pub struct Coordinator {
    pub(crate) ca: Arc<Ca>,
    pub(crate) store: Store,
    simulation: bool,
    sealing: &'static str,
    pub(crate) platform: Platform,
    pub(crate) deployment: ArcSwapOption<Deployment>,
    /// Evidence over the root and current manifest with no nonce, refreshed on manifest set.
    cached_attestation: ArcSwap<api::EvidenceBundle>,
    /// The Confidential Containers key broker.
    pub(crate) broker: crate::broker::Broker,
    /// Serializes manifest and secret updates (admin calls only, never activations).
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// The full update waiting for acknowledgements (changed only under `admin`).
    pending: Mutex<Option<crate::update::Pending>>,
    /// Every workload type's activation count, for the coordinator's whole life (changed only
    /// under `admin`; activations use the deployment's copies of the same counters).
    counters: Mutex<HashMap<String, Counter>>,
    /// Where manifests are parsed, policies compiled and keys generated.
    pub(crate) heavy: Heavy,
    /// Where key-broker policies are evaluated.
    pub(crate) policies: Heavy,
    /// What callers may spend.
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    /// This coordinator's own claims, for comparing joining replicas with.
    pub(crate) own_claims: std::sync::OnceLock<attest::claims::Claims>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("simulation", &self.simulation)
            .finish_non_exhaustive()
    }
}

const CA_RECORD: &str = "ca";
const MANIFEST_RECORD: &str = "manifest";
const SECRETS_RECORD: &str = "secrets";
const ROOT_SECRET_RECORD: &str = "root-secret";
const COUNTER_PREFIX: &str = "activations/";
/// Security versions raised by package updates, JSON `{package: version}` (empty: none).
pub(crate) const PACKAGE_UPDATES_RECORD: &str = "package-updates";
use crate::recovery_mode::COMMITMENTS_RECORD;

fn counter_record(workload: &str) -> String {
    format!("{COUNTER_PREFIX}{workload}")
}

/// A started coordinator, or one waiting for recovery.
#[derive(Debug)]
pub enum Node {
    /// Serving.
    Ready(Arc<Coordinator>),
    /// Waiting for recovery shares.
    Recovery(Arc<crate::recovery_mode::RecoveryMode>),
}

/// The state file.
fn state_path(config: &Config) -> PathBuf {
    config.data_dir.join("state.redb")
}

/// Open the state where `config` keeps it. A replica whose platform has no sealed copy of the
/// state key in etcd joins a running replica; with none to join it is
/// [`crate::store::StoreError::Locked`] (recovery mode).
async fn open_store(
    config: &Config,
    platform: &Platform,
) -> Result<Store, crate::store::StoreError> {
    use crate::store::StoreError;
    let Some(location) = &config.etcd else {
        return Store::open(&state_path(config), &platform.kek);
    };
    match Store::open_etcd(location, &platform.kek).await {
        Err(StoreError::NotJoined { recovery }) => {
            let replicas = location.replicas().await?;
            match crate::replica::join(platform, &replicas).await {
                Ok(key) => Store::adopt_etcd(location, &platform.kek, key).await,
                Err(why) => {
                    tracing::error!(
                        "this platform has no copy of the state key, and no running replica \
                         handed one over ({why}): recovery mode"
                    );
                    Err(StoreError::Locked { recovery })
                }
            }
        }
        other => other,
    }
}

/// Open the state with a rebuilt state key, and seal it for this platform.
pub(crate) async fn adopt_store(
    config: &Config,
    platform: &Platform,
    key: crate::seal::StateKey,
) -> Result<Store, crate::store::StoreError> {
    match &config.etcd {
        Some(location) => Store::adopt_etcd(location, &platform.kek, key).await,
        None => Store::recover(&state_path(config), &platform.kek, key),
    }
}

/// Reload whenever another replica commits, for as long as the coordinator lives.
async fn follow_replicas(
    mut changes: tokio::sync::watch::Receiver<u64>,
    coordinator: std::sync::Weak<Coordinator>,
) {
    while changes.changed().await.is_ok() {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        if let Err(e) = c.reload().await {
            tracing::error!(error = %e, "taking up another replica's changes failed");
        }
    }
}

/// Threads for heavy jobs (a manifest, a policy to compile, key generation) ...
const HEAVY_THREADS: usize = 2;
/// ... each answered within this time.
const HEAVY_DEADLINE: Duration = Duration::from_secs(10);
/// Threads that evaluate key-broker policies, each evaluation answered within this time (the
/// engine itself stops one after `kbs::policy::EVALUATION_LIMIT`).
const POLICY_THREADS: usize = 2;
const POLICY_DEADLINE: Duration = Duration::from_secs(3);

/// Who set the first manifest: anyone may, so the record says what is known of them.
fn first_setter(peer: Option<&[u8]>) -> String {
    match peer {
        Some(der) => format!(
            "first manifest, client certificate sha256:{}",
            hex::encode(sha256(der))
        ),
        None => "first manifest, anonymous".to_string(),
    }
}

impl Coordinator {
    /// Start: unseal the state (or create it), attest, and be ready for requests. A state
    /// sealed on another platform is [`crate::store::StoreError::Locked`]; [`Self::open`]
    /// answers that with recovery mode.
    pub async fn start(config: &Config) -> Result<Arc<Self>, StartError> {
        match Self::open(config).await? {
            Node::Ready(coordinator) => Ok(coordinator),
            Node::Recovery(mode) => Err(StartError::Store(crate::store::StoreError::Locked {
                recovery: mode.commitments_bytes(),
            })),
        }
    }

    /// Start, or enter recovery mode when the state is sealed under another platform's key.
    pub async fn open(config: &Config) -> Result<Node, StartError> {
        let now = OffsetDateTime::now_utc();
        let platform = Platform::open(config, now)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        match open_store(config, &platform).await {
            Ok(store) => Ok(Node::Ready(Self::assemble(config, platform, store).await?)),
            Err(crate::store::StoreError::Locked { recovery }) => {
                tracing::warn!(
                    "the state key does not open with this platform's key: recovery mode"
                );
                Ok(Node::Recovery(Arc::new(
                    crate::recovery_mode::RecoveryMode::new(config, platform, recovery, now)?,
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A coordinator over an open store.
    pub(crate) async fn assemble(
        config: &Config,
        platform: Platform,
        store: Store,
    ) -> Result<Arc<Self>, StartError> {
        let now = OffsetDateTime::now_utc();
        let sealing = platform.kek.source().describe();
        let ca = match store.get(CA_RECORD)? {
            Some(saved) => Ca::from_saved(&saved)?,
            None => {
                let ca = Ca::generate(now)?;
                store
                    .commit(
                        Change::new(AuditEvent {
                            event: "coordinator-initialized",
                            actor: "coordinator".into(),
                            details: json!({ "root_sha256": hex::encode(sha256(ca.root_der())) }),
                        })
                        .put(CA_RECORD, ca.to_saved()?),
                    )
                    .await?;
                ca
            }
        };
        let mut counters = load_counters(&store)?;
        let deployment = load_deployment(&store, &mut counters)?;
        let broker = crate::broker::Broker::open(&store, config.limits.kbs_sessions).await?;
        let pending = crate::update::load_pending(&store)?;
        let coordinator = Self {
            ca: Arc::new(ca),
            store,
            simulation: config.simulation,
            sealing,
            platform,
            deployment: ArcSwapOption::from(deployment.map(Arc::new)),
            cached_attestation: ArcSwap::from_pointee(api::EvidenceBundle::default()),
            broker,
            admin: tokio::sync::Mutex::new(()),
            pending: Mutex::new(pending),
            counters: Mutex::new(counters),
            heavy: Heavy::new("heavy work", HEAVY_THREADS, HEAVY_DEADLINE)
                .map_err(StartError::Threads)?,
            policies: Heavy::new("policy evaluation", POLICY_THREADS, POLICY_DEADLINE)
                .map_err(StartError::Threads)?,
            limits: config.limits.clone(),
            metrics: Metrics::default(),
            own_claims: std::sync::OnceLock::new(),
        };
        coordinator.refresh_cached_attestation().await?;
        let coordinator = Arc::new(coordinator);
        if let Some(shared) = coordinator.store.etcd() {
            tokio::spawn(follow_replicas(
                shared.changes(),
                Arc::downgrade(&coordinator),
            ));
        }
        Ok(coordinator)
    }

    /// The server certificate chain and key for the TLS endpoint.
    pub fn server_identity(&self, names: &[String]) -> Result<ServerIdentity, crate::ca::CaError> {
        let (leaf, key) = self.ca.issue_server(names, OffsetDateTime::now_utc())?;
        Ok((vec![leaf, self.ca.intermediate_der().to_vec()], key))
    }

    /// The deployment root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        self.ca.root_der()
    }

    /// The deployment in force.
    pub(crate) fn deployment(&self) -> Option<Arc<Deployment>> {
        self.deployment.load_full()
    }

    /// Whether simulated evidence is accepted.
    pub(crate) fn simulation(&self) -> bool {
        self.simulation
    }

    /// The evidence verifiers.
    pub(crate) fn verifiers(&self) -> &Verifiers {
        &self.platform.verifiers
    }

    /// Where DCAP collateral comes from for evidence that arrives without it.
    pub(crate) fn collateral(&self) -> &CollateralSource {
        &self.platform.collateral
    }

    /// Commit a state change durably.
    pub(crate) async fn commit(
        &self,
        change: Change,
    ) -> Result<api::AuditEntry, crate::store::StoreError> {
        self.store.commit(change).await
    }

    /// Record an event that changes no state.
    pub(crate) fn record(&self, event: AuditEvent) -> Result<(), crate::store::StoreError> {
        self.store.record(event)
    }

    /// The manifest user `peer` (a client certificate) or `bearer` (a JWT signed by a user's
    /// registered key) authenticates as, if they may do `action` on the key broker.
    pub(crate) fn kbs_admin(
        &self,
        peer: Option<&[u8]>,
        bearer: Option<&str>,
        action: manifest::Action,
    ) -> Result<String, kbs::KbsError> {
        let d = self
            .deployment()
            .ok_or_else(|| kbs::KbsError::AdminAuth("no manifest is set".into()))?;
        let m = &d.manifest;
        let user = match (peer.and_then(|der| m.find_user_by_cert(der)), bearer) {
            (Some((user, _)), _) => user.to_string(),
            (None, Some(token)) => self.admin_token_user(m, token)?,
            (None, None) => {
                return Err(kbs::KbsError::AdminAuth(
                    "admin calls need a manifest user's client certificate or Bearer JWT".into(),
                ));
            }
        };
        if m.user_may(&user, action, manifest::Resource::Kbs) {
            Ok(user)
        } else {
            Err(kbs::KbsError::AdminAuth(format!(
                "user {user} may not {}",
                action.as_str()
            )))
        }
    }

    /// The user whose registered key signed `token`, if its claims hold now.
    fn admin_token_user(&self, m: &Manifest, token: &str) -> Result<String, kbs::KbsError> {
        let rules = kbs::token::AdminTokenRules {
            now: u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0),
            max_lifetime_secs: self.limits.admin_token_lifetime.as_secs(),
        };
        let mut refused = None;
        for (name, pem) in m.users_with_public_keys() {
            match kbs::token::verify_admin(token, pem, &rules) {
                Ok(_) => return Ok(name.to_string()),
                // Signed by this user, but its claims do not hold: say why.
                Err(e @ kbs::token::AdminTokenError::Claims(_)) => refused = Some(e),
                Err(_) => {}
            }
        }
        Err(kbs::KbsError::AdminAuth(refused.map_or_else(
            || "the Bearer token is not signed by a key registered for a manifest user".into(),
            |e| e.to_string(),
        )))
    }

    /// The update waiting for acknowledgements.
    pub(crate) fn pending(&self) -> Option<crate::update::Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replace the update waiting for acknowledgements (under `admin`, after its commit).
    pub(crate) fn set_pending(&self, pending: Option<crate::update::Pending>) {
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pending;
    }

    /// Take up what another replica committed: the deployment, the pending update, the key
    /// broker's policies and resources.
    async fn reload(&self) -> Result<(), StartError> {
        let _admin = self.admin.lock().await;
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let deployment = load_deployment(&self.store, &mut counters)?;
        *self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = counters;
        let changed =
            self.deployment.load().as_ref().map(|d| d.hash) != deployment.as_ref().map(|d| d.hash);
        self.deployment.store(deployment.map(Arc::new));
        self.set_pending(crate::update::load_pending(&self.store)?);
        self.broker.reload(&self.store)?;
        if changed {
            self.refresh_cached_attestation().await?;
        }
        Ok(())
    }

    /// The store this coordinator keeps its state in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn current(&self) -> Result<Arc<Deployment>, ApiError> {
        self.deployment.load_full().ok_or(ApiError::NoManifest)
    }

    /// `GET /status`.
    pub fn status(&self) -> api::StatusResponse {
        let deployment = self.deployment.load();
        api::StatusResponse {
            state: if deployment.is_some() {
                api::State::AcceptingWorkloads
            } else {
                api::State::AcceptingManifest
            },
            simulation: self.simulation,
            sealing: self.sealing.to_string(),
            manifest_hash: deployment.as_ref().map(|d| hex::encode(d.hash)),
            version: env!("CARGO_PKG_VERSION").to_string(),
            recovery: None,
        }
    }

    /// `GET /attestation[?nonce]`. Fresh evidence (with a nonce) also binds the state head.
    pub async fn attestation(
        &self,
        nonce: Option<&[u8]>,
    ) -> Result<api::AttestationResponse, ApiError> {
        let deployment = self.deployment.load();
        let manifest_hash = deployment.as_ref().map(|d| d.hash);
        let (evidence, state) = match nonce {
            None => ((**self.cached_attestation.load()).clone(), None),
            Some(nonce) => {
                let state = self.store.head();
                let evidence = self
                    .attest(manifest_hash.as_ref(), Some(&state), nonce)
                    .await?;
                (evidence, Some(state))
            }
        };
        Ok(api::AttestationResponse {
            evidence,
            certificate_chain_pem: format!("{}{}", self.ca.root_pem(), self.ca.intermediate_pem()),
            manifest_hash: manifest_hash.map(hex::encode),
            nonce_hex: nonce.map(hex::encode),
            state,
            simulated: self.simulation,
        })
    }

    /// Fresh evidence of this coordinator over its root, manifest, state and `nonce`.
    async fn attest(
        &self,
        manifest_hash: Option<&[u8; 32]>,
        state: Option<&api::StateHead>,
        nonce: &[u8],
    ) -> Result<api::EvidenceBundle, ApiError> {
        let report_data = api::coordinator_report_data(
            &sha256(self.ca.root_der()),
            manifest_hash,
            state,
            nonce,
            sha256,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.platform.evidence(&report_data).await
    }

    async fn refresh_cached_attestation(&self) -> Result<(), StartError> {
        let hash = self.deployment.load().as_ref().map(|d| d.hash);
        let bundle = self
            .attest(hash.as_ref(), None, &[])
            .await
            .map_err(|e| StartError::Attest(e.to_string()))?;
        self.cached_attestation.store(Arc::new(bundle));
        Ok(())
    }

    /// `GET /manifest`.
    pub fn manifest(&self) -> Result<api::ManifestResponse, ApiError> {
        let d = self.current()?;
        Ok(api::ManifestResponse {
            manifest: B64.encode(&d.raw),
            manifest_hash: hex::encode(d.hash),
            package_updates: d.package_updates.clone(),
        })
    }

    /// Who may set a manifest now: anyone when none is set (the record names them as far as
    /// they are known), else a user with `UpdateManifest` in the manifest in force. Asked
    /// before the manifest is read.
    pub fn manifest_setter(&self, peer: Option<&[u8]>) -> Result<String, ApiError> {
        match self.deployment.load().as_ref() {
            None => Ok(first_setter(peer)),
            Some(d) => authorize(
                &d.manifest,
                peer,
                manifest::Action::UpdateManifest,
                manifest::Resource::Manifest,
            ),
        }
    }

    /// `POST /manifest`: the first set needs no identity; a replacement needs a user with
    /// `UpdateManifest` in the manifest in force, and is refused when the deployment needs
    /// more than one acknowledgement (`manifest update apply`). The caller is authorized
    /// before anything of the manifest is read; parsing, validation, policy compilation and
    /// key generation run on the heavy pool.
    pub async fn set_manifest(
        &self,
        raw: &[u8],
        peer: Option<&[u8]>,
    ) -> Result<api::ManifestSetResponse, ApiError> {
        self.manifest_setter(peer)?;
        let prepared = self.prepare(raw).await?;
        let _admin = self.admin.lock().await;
        // The manifest in force may have changed while this one was read: authorize again.
        let actor = self.manifest_setter(peer)?;
        if let Some(d) = self.deployment() {
            let needed = crate::update::required_acknowledgements(&d.manifest);
            if needed > 1 {
                return Err(ApiError::NeedsAcknowledgements { needed });
            }
        }
        let warnings = prepared
            .parsed
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect();
        let (hash, recovery_secrets) = self
            .apply_manifest(raw, prepared, actor, "manifest-set")
            .await?;
        Ok(api::ManifestSetResponse {
            manifest_hash: hex::encode(hash),
            warnings,
            recovery_secrets,
        })
    }

    /// Parse, validate and compile a manifest on the heavy pool.
    pub(crate) async fn prepare(&self, raw: &[u8]) -> Result<Prepared, ApiError> {
        let owned = raw.to_vec();
        self.heavy
            .run("manifest parsing", move |_| prepare_manifest(&owned))
            .await?
    }

    /// Put `prepared` in force (the caller holds `admin`): what it does not change is kept
    /// (secrets whose spec is the same, generated or uploaded; the root secret, so per-instance
    /// keys stay the same; activation counts), a pending update and package updates end, and
    /// recovery material is made when its recovery keys differ from the last. Returns the
    /// manifest hash and the new encrypted recovery shares.
    pub(crate) async fn apply_manifest(
        &self,
        raw: &[u8],
        prepared: Prepared,
        actor: String,
        event: &'static str,
    ) -> Result<([u8; 32], BTreeMap<String, String>), ApiError> {
        let Prepared { parsed, kbs_policy } = prepared;
        let old = self.deployment.load_full();
        let now = OffsetDateTime::now_utc();
        let mut secrets = BTreeMap::new();
        if let Some(old) = &old {
            for (name, stored) in &old.secrets {
                if old.manifest.secrets.get(name) == parsed.manifest.secrets.get(name) {
                    secrets.insert(name.clone(), stored.clone());
                }
            }
        }
        let missing: BTreeMap<String, manifest::SecretSpec> = parsed
            .manifest
            .secrets
            .iter()
            .filter(|(name, _)| !secrets.contains_key(*name))
            .map(|(name, spec)| (name.clone(), spec.clone()))
            .collect();
        let ca = Arc::clone(&self.ca);
        secrets.extend(
            self.heavy
                .run("secret generation", move |deadline| {
                    secrets::generate_shared(&missing, &ca, now, deadline)
                })
                .await??,
        );
        let root_secret = match &old {
            Some(old) => old.root_secret.clone(),
            None => {
                let mut fresh = Zeroizing::new([0u8; 32]);
                aws_lc_rs::rand::fill(fresh.as_mut())
                    .map_err(|_| ApiError::Internal("no randomness".into()))?;
                fresh
            }
        };
        let hash = sha256(raw);
        let change = Change::new(AuditEvent {
            event,
            actor,
            details: json!({ "manifest_hash": hex::encode(hash) }),
        })
        .put(MANIFEST_RECORD, Zeroizing::new(raw.to_vec()))
        .put(SECRETS_RECORD, encode_secrets(&secrets)?)
        .put(ROOT_SECRET_RECORD, Zeroizing::new(root_secret.to_vec()))
        .put(PACKAGE_UPDATES_RECORD, Zeroizing::new(Vec::new()))
        .put(crate::update::PENDING_RECORD, Zeroizing::new(Vec::new()));
        let (change, recovery_secrets) =
            self.recovery_material(change, old.as_deref(), &parsed.manifest)?;
        self.store.commit(change).await?;
        let counters = self.counters_for(&parsed.manifest);
        self.deployment.store(Some(Arc::new(Deployment {
            manifest: parsed.manifest,
            raw: raw.to_vec(),
            hash,
            secrets,
            root_secret,
            counters,
            kbs_policy,
            package_updates: BTreeMap::new(),
        })));
        self.set_pending(None);
        self.refresh_cached_attestation()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((hash, recovery_secrets))
    }

    /// Split the state key for `new`'s recovery keys when they differ from `old`'s, adding the
    /// commitments to `change`; return the encrypted shares (base64) to hand out once.
    fn recovery_material(
        &self,
        change: Change,
        old: Option<&Deployment>,
        new: &Manifest,
    ) -> Result<(Change, BTreeMap<String, String>), ApiError> {
        let keys = |m: &Manifest| (m.recovery_keys.clone(), m.config.recovery_threshold);
        let unchanged = old.is_some_and(|d| keys(&d.manifest) == keys(new));
        if unchanged || (old.is_none() && new.recovery_keys.is_empty()) {
            return Ok((change, BTreeMap::new()));
        }
        if new.recovery_keys.is_empty() {
            let change = change
                .recovery(Vec::new())
                .put(COMMITMENTS_RECORD, Zeroizing::new(Vec::new()));
            return Ok((change, BTreeMap::new()));
        }
        let split = crate::recovery::split(
            self.store.state_key(),
            &new.recovery_keys,
            new.config.recovery_threshold,
        )?;
        let commitments = split.commitments.to_bytes();
        let change = change
            .recovery(commitments.clone())
            .put(COMMITMENTS_RECORD, Zeroizing::new(commitments));
        let shares = split
            .encrypted
            .into_iter()
            .map(|(holder, sealed)| (holder, B64.encode(sealed)))
            .collect();
        Ok((change, shares))
    }

    /// The activation counters of `manifest`'s workloads: the ones every earlier deployment
    /// counted on, shared, or new ones at zero.
    fn counters_for(&self, manifest: &Manifest) -> HashMap<String, Counter> {
        let mut all = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        manifest
            .workloads
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    Arc::clone(all.entry(name.clone()).or_default()),
                )
            })
            .collect()
    }

    /// `GET /audit?from&limit`, for any user the manifest names.
    pub async fn audit(
        &self,
        peer: Option<&[u8]>,
        from: u64,
        limit: usize,
    ) -> Result<api::AuditLog, ApiError> {
        let d = self.current()?;
        authenticate(&d.manifest, peer)?;
        let limit = limit.clamp(1, api::MAX_AUDIT_PAGE);
        let (entries, total) = self.store.audit(from, limit).await?;
        let next = entries.last().map(|e| e.seq + 1).filter(|n| *n < total);
        Ok(api::AuditLog {
            entries,
            total,
            next,
        })
    }

    /// `POST /activate`.
    pub async fn activate(
        &self,
        request: api::ActivationRequest,
        peer: Option<&[u8]>,
    ) -> Result<api::ActivationResponse, ApiError> {
        self.metrics.activations.fetch_add(1, Ordering::Relaxed);
        let result = self.try_activate(request, peer).await;
        if result.is_ok() {
            self.metrics.activations_ok.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_activate(
        &self,
        request: api::ActivationRequest,
        peer: Option<&[u8]>,
    ) -> Result<api::ActivationResponse, ApiError> {
        let d = self.current()?;
        let workload = d
            .manifest
            .workloads
            .get(&request.workload)
            .ok_or_else(|| ApiError::UnknownWorkload(request.workload.clone()))?;
        let peer = peer.ok_or(ApiError::NoClientCertificate)?;
        let spki = spki_of(peer).ok_or(ApiError::NoClientCertificate)?;
        let (evidence, mut inputs) = request
            .evidence
            .decode()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.collateral()
            .complete(&evidence, &mut inputs)
            .await
            .map_err(ApiError::from_collateral)?;
        let now = OffsetDateTime::now_utc();
        let (_, claims) = self
            .verifiers()
            .verify(&evidence, &inputs, now)
            .map_err(ApiError::EvidenceRejected)?;
        if claims.report_data[..32] != sha256(&spki) {
            return Err(ApiError::EvidenceNotBound);
        }
        check_module(&request.workload, workload, &claims.report_data)?;
        let package = d.manifest.packages.get(&workload.package).ok_or_else(|| {
            ApiError::Internal(format!("package {} is missing", workload.package))
        })?;
        package
            .appraise(&claims, self.simulation)
            .map_err(|mismatches| ApiError::PackageMismatch {
                package: workload.package.clone(),
                mismatches,
            })?;
        let uuid = match &request.uuid {
            Some(text) => uuid::Uuid::parse_str(text)
                .map_err(|e| ApiError::BadRequest(format!("uuid {text:?}: {e}")))?,
            None => crate::random_uuid(),
        }
        .to_string();
        let mut audit = AuditEvent {
            event: "activation",
            actor: format!("{}/{uuid}", request.workload),
            details: json!({
                "workload": request.workload,
                "uuid": uuid,
                "tee": claims.tee.as_str(),
                "simulated": claims.simulated,
                "tcb_status": claims.tcb_status.map(|s| s.as_str()),
            }),
        };
        let max = workload.max_activations;
        if max > 0 {
            // A limited workload's count is state, taken in the store's transaction (so the
            // limit holds across replicas) and durable before the reply.
            self.store
                .commit(Change::new(audit).take(counter_record(&request.workload), max))
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::Exhausted { .. } => ApiError::MaxActivations {
                        workload: request.workload.clone(),
                        max,
                    },
                    other => other.into(),
                })?;
        } else {
            // Otherwise the activation changes nothing and is only recorded, with this
            // replica's count.
            if !self.store.available() {
                return Err(ApiError::StoreUnavailable(
                    "the state store is unavailable: activations are refused until it returns"
                        .into(),
                ));
            }
            let count = d
                .counters
                .get(&request.workload)
                .ok_or_else(|| ApiError::UnknownWorkload(request.workload.clone()))?
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            audit.details["activation"] = count.into();
            self.store.record(audit)?;
        }
        let mut names = workload.dns_names.clone();
        names.push(request.workload.clone());
        let leaf = self
            .ca
            .issue_workload(&spki, &request.workload, &uuid, &names, now)?;
        let values = ActivationValues {
            coordinator: self,
            deployment: &d,
            instance: Instance {
                root_secret: &d.root_secret,
                uuid: &uuid,
                workload: (!workload.disable_secret_binding).then_some(request.workload.as_str()),
            },
            leaf: &leaf,
            spki: &spki,
            now,
        };
        let rendered = workload
            .render(&values)
            .map_err(|e| ApiError::Internal(format!("rendering parameters: {e}")))?;
        Ok(api::ActivationResponse {
            uuid,
            certificate_chain_pem: format!(
                "{}{}",
                attest::dcap::to_pem_string(&leaf),
                self.ca.intermediate_pem()
            ),
            root_ca_pem: self.ca.root_pem(),
            parameters: api::Parameters {
                files: rendered
                    .files
                    .iter()
                    .map(|(k, v)| (k.clone(), B64.encode(v)))
                    .collect(),
                env: rendered.env.clone(),
                argv: rendered.argv.clone(),
            },
            simulated: claims.simulated,
            wasm: workload.wasm.clone(),
            tls: d.manifest.tls_rules(workload),
            image_policy: workload.image_policy.clone(),
        })
    }

    /// `GET /secrets?name=…`: shared and user-defined secrets, for users holding `ReadSecret`.
    pub fn get_secrets(
        &self,
        names: &[String],
        peer: Option<&[u8]>,
    ) -> Result<api::Secrets, ApiError> {
        let d = self.current()?;
        let mut out = api::Secrets::default();
        for name in names {
            let (_, spec) =
                authorize_secret(&d.manifest, peer, manifest::Action::ReadSecret, name)?;
            let stored = d.secrets.get(name).ok_or_else(|| ApiError::InvalidSecret {
                name: name.clone(),
                reason: if spec.user_defined {
                    "it has not been set yet".into()
                } else {
                    "it is per-instance: only its workloads receive it".into()
                },
            })?;
            out.secrets
                .insert(name.clone(), to_api_secret(name, stored)?);
        }
        Ok(out)
    }

    /// The user `peer` authenticates as, if they may write some secret: asked before a
    /// `POST /secrets` body is read.
    pub fn secret_writer(&self, peer: Option<&[u8]>) -> Result<String, ApiError> {
        let d = self.current()?;
        let user = authenticate(&d.manifest, peer)?;
        let may_write_any = d.manifest.secrets.keys().any(|name| {
            d.manifest.user_may(
                &user,
                manifest::Action::WriteSecret,
                manifest::Resource::Secret(name),
            )
        });
        if may_write_any {
            Ok(user)
        } else {
            Err(ApiError::Forbidden {
                user,
                action: "WriteSecret on any secret".into(),
            })
        }
    }

    /// `POST /secrets`: set user-defined secrets, for users holding `WriteSecret`.
    pub async fn set_secrets(
        &self,
        request: api::Secrets,
        peer: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        self.secret_writer(peer)?;
        if request.secrets.is_empty() {
            return Err(ApiError::BadRequest(
                "no secrets to set: name at least one under \"secrets\"".into(),
            ));
        }
        let _admin = self.admin.lock().await;
        let d = self.current()?;
        let user = authenticate(&d.manifest, peer)?;
        let mut secrets = d.secrets.clone();
        for (name, value) in &request.secrets {
            let (_, spec) =
                authorize_secret(&d.manifest, peer, manifest::Action::WriteSecret, name)?;
            secrets.insert(name.clone(), crate::usersecret::accept(name, spec, value)?);
        }
        self.store
            .commit(
                Change::new(AuditEvent {
                    event: "secret-set",
                    actor: user,
                    details: json!({ "secrets": request.secrets.keys().collect::<Vec<_>>() }),
                })
                .put(SECRETS_RECORD, encode_secrets(&secrets)?),
            )
            .await?;
        self.deployment.store(Some(Arc::new(Deployment {
            secrets,
            ..(*d).clone()
        })));
        Ok(())
    }
}

/// The manifest user `peer` (a client certificate) is.
pub(crate) fn authenticate(manifest: &Manifest, peer: Option<&[u8]>) -> Result<String, ApiError> {
    peer.and_then(|der| manifest.find_user_by_cert(der))
        .map(|(user, _)| user.to_string())
        .ok_or(ApiError::Unauthenticated)
}

/// The user `peer` authenticates as, if the manifest lets them do `action`.
pub(crate) fn authorize(
    manifest: &Manifest,
    peer: Option<&[u8]>,
    action: manifest::Action,
    resource: manifest::Resource<'_>,
) -> Result<String, ApiError> {
    let user = authenticate(manifest, peer)?;
    if manifest.user_may(&user, action, resource) {
        Ok(user)
    } else {
        Err(ApiError::Forbidden {
            user,
            action: format!("{} {resource:?}", action.as_str()),
        })
    }
}

/// The user `peer` authenticates as and the secret's spec, if they may do `action` on it.
fn authorize_secret<'m>(
    manifest: &'m Manifest,
    peer: Option<&[u8]>,
    action: manifest::Action,
    name: &str,
) -> Result<(String, &'m manifest::SecretSpec), ApiError> {
    let user = authorize(manifest, peer, action, manifest::Resource::Secret(name))?;
    let spec = manifest
        .secrets
        .get(name)
        .ok_or_else(|| ApiError::UnknownSecret(name.to_string()))?;
    Ok((user, spec))
}

fn encode_secrets(
    secrets: &BTreeMap<String, StoredSecret>,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    serde_json::to_vec(secrets)
        .map(Zeroizing::new)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn to_api_secret(name: &str, stored: &StoredSecret) -> Result<api::SecretValue, ApiError> {
    let value = stored.to_value(name)?;
    Ok(api::SecretValue {
        kind: stored.kind.as_str().to_string(),
        key: stored.key.clone(),
        cert_pem: value.cert_der.as_deref().map(|d| pem("CERTIFICATE", d)),
        private_pem: value
            .private_pkcs8
            .as_deref()
            .map(|d| pem("PRIVATE KEY", d)),
    })
}

/// `der` as a PEM block with 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Every activation counter the state holds, whether or not the manifest in force names its
/// workload (a later manifest may name it again; its count goes on).
fn load_counters(store: &Store) -> Result<HashMap<String, Counter>, StartError> {
    store
        .list(COUNTER_PREFIX)?
        .into_iter()
        .map(|(record, value)| {
            let count = <[u8; 8]>::try_from(value.as_slice())
                .map_err(|_| StartError::Corrupt("activation counter"))?;
            let name = record.strip_prefix(COUNTER_PREFIX).unwrap_or(&record);
            Ok((
                name.to_string(),
                Arc::new(AtomicU64::new(u64::from_le_bytes(count))),
            ))
        })
        .collect()
}

fn load_deployment(
    store: &Store,
    counters: &mut HashMap<String, Counter>,
) -> Result<Option<Deployment>, StartError> {
    let Some(raw) = store.get(MANIFEST_RECORD)? else {
        return Ok(None);
    };
    let mut manifest = Manifest::parse(&raw)
        .map_err(|_| StartError::Corrupt(MANIFEST_RECORD))?
        .manifest;
    let package_updates: BTreeMap<String, u16> = match store.get(PACKAGE_UPDATES_RECORD)? {
        Some(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes)
            .map_err(|_| StartError::Corrupt(PACKAGE_UPDATES_RECORD))?,
        _ => BTreeMap::new(),
    };
    crate::update::raise_security_versions(&mut manifest, &package_updates);
    let secrets = match store.get(SECRETS_RECORD)? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|_| StartError::Corrupt(SECRETS_RECORD))?
        }
        None => BTreeMap::new(),
    };
    let root_secret: [u8; 32] = store
        .get(ROOT_SECRET_RECORD)?
        .and_then(|b| b.as_slice().try_into().ok())
        .ok_or(StartError::Corrupt(ROOT_SECRET_RECORD))?;
    let kbs_policy = manifest
        .kbs
        .resource_policy
        .as_deref()
        .map(|text| kbs::policy::ResourcePolicy::new(text).map(Arc::new))
        .transpose()
        .map_err(|_| StartError::Corrupt(MANIFEST_RECORD))?;
    Ok(Some(Deployment {
        hash: sha256(&raw),
        raw: raw.to_vec(),
        counters: manifest
            .workloads
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    Arc::clone(counters.entry(name.clone()).or_default()),
                )
            })
            .collect(),
        manifest,
        secrets,
        root_secret: Zeroizing::new(root_secret),
        kbs_policy,
        package_updates,
    }))
}

/// What the simulated coordinator measures: its own MRENCLAVE, MRTD and SNP measurement, so
/// `cloister verify --expect` has something to pin in simulation.
pub fn simulated_coordinator() -> attest::attester::SimMeasurements {
    let mut m = attest::attester::SimMeasurements::default();
    m.sgx.mr_enclave = sha256(b"cloister simulated coordinator");
    m
}

/// Template values for one activation.
struct ActivationValues<'a> {
    coordinator: &'a Coordinator,
    deployment: &'a Deployment,
    instance: Instance<'a>,
    leaf: &'a [u8],
    spki: &'a [u8],
    now: OffsetDateTime,
}

impl Values for ActivationValues<'_> {
    fn secret(&self, name: &str, previous: bool) -> Option<SecretValue> {
        if previous {
            return None;
        }
        if let Some(stored) = self.deployment.secrets.get(name) {
            return stored.to_value(name).ok();
        }
        let spec = self.deployment.manifest.secrets.get(name)?;
        if spec.user_defined || spec.shared {
            return None;
        }
        secrets::generate(
            name,
            spec,
            &self.coordinator.ca,
            self.now,
            Some(self.instance),
        )
        .ok()?
        .to_value(name)
        .ok()
    }

    fn reserved(&self, which: Reserved) -> Option<SecretValue> {
        let ca = &self.coordinator.ca;
        let cert = |der: &[u8]| {
            let spki = spki_of(der)?;
            Some(SecretValue::certificate(
                manifest::SecretKind::CertEcdsa,
                der.to_vec(),
                None,
                spki,
            ))
        };
        match which {
            Reserved::RootCa | Reserved::CoordinatorRoot => cert(ca.root_der()),
            Reserved::CoordinatorIntermediate => cert(ca.intermediate_der()),
            Reserved::WorkloadCert => Some(SecretValue::certificate(
                manifest::SecretKind::CertEcdsa,
                self.leaf.to_vec(),
                // The key never leaves the workload's TEE: the launcher swaps this
                // placeholder for its own key.
                Some(Zeroizing::new(api::WORKLOAD_KEY_PLACEHOLDER.to_vec())),
                self.spki.to_vec(),
            )),
            _ => None,
        }
    }
}
