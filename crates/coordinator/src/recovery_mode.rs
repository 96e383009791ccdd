//! Recovery mode: the coordinator found state it cannot unseal. It serves its status, its
//! attestation (over a temporary root, so holders can check what they upload to) and
//! `POST /recover`, and refuses everything else with 503. Once enough shares rebuild the state
//! key, the state is opened and checked whole, the key is sealed under this platform's key,
//! and the coordinator it becomes is handed to the server.

use std::sync::{Arc, Mutex};

use attest::crypto::sha256;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::ca::Ca;
use crate::core::{Config, Coordinator, Platform, ServerIdentity, StartError};
use crate::error::ApiError;
use crate::recovery::{Collector, Commitments, Progress, RecoveryError};
use crate::store::Store;

/// The record, sealed in the state, that holds the commitments as they were set.
pub(crate) const COMMITMENTS_RECORD: &str = "recovery";

/// A coordinator waiting for recovery shares.
pub struct RecoveryMode {
    config: Config,
    /// Taken by the recovery that succeeds.
    platform: tokio::sync::Mutex<Option<Platform>>,
    /// A root for this mode only: the deployment's is in the sealed state.
    ca: Ca,
    /// `None` when the state was sealed without recovery keys.
    collector: Mutex<Option<Collector>>,
    sealing: &'static str,
    /// The recovered coordinator, once there is one.
    recovered: watch::Sender<Option<Arc<Coordinator>>>,
}

impl std::fmt::Debug for RecoveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryMode").finish_non_exhaustive()
    }
}

impl RecoveryMode {
    pub(crate) fn new(
        config: &Config,
        platform: Platform,
        commitments: Option<Vec<u8>>,
        now: OffsetDateTime,
    ) -> Result<Self, StartError> {
        let parsed = match commitments.filter(|c| !c.is_empty()) {
            Some(bytes) => Commitments::from_bytes(&bytes).map(Some),
            None => Err(RecoveryError::NotRecoverable),
        };
        let (collector, unrecoverable) =
            match parsed.and_then(|c| c.map(Collector::new).transpose()) {
                Ok(collector) => (collector, None),
                Err(e) => (None, Some(e.to_string())),
            };
        if let Some(why) = &unrecoverable {
            tracing::error!("recovery is impossible: {why}");
        }
        Ok(Self {
            config: config.clone(),
            sealing: platform.kek.source().describe(),
            platform: tokio::sync::Mutex::new(Some(platform)),
            ca: Ca::generate(now)?,
            collector: Mutex::new(collector),
            recovered: watch::channel(None).0,
        })
    }

    /// The commitments this mode checks shares against, stored form.
    pub(crate) fn commitments_bytes(&self) -> Option<Vec<u8>> {
        self.lock().as_ref().map(|c| c.commitments().to_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Collector>> {
        self.collector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The recovered coordinator, when there is one.
    pub fn recovered(&self) -> watch::Receiver<Option<Arc<Coordinator>>> {
        self.recovered.subscribe()
    }

    /// The temporary server certificate chain and key.
    pub fn server_identity(&self, names: &[String]) -> Result<ServerIdentity, crate::ca::CaError> {
        let (leaf, key) = self.ca.issue_server(names, OffsetDateTime::now_utc())?;
        Ok((vec![leaf, self.ca.intermediate_der().to_vec()], key))
    }

    /// The temporary root, DER.
    pub fn root_der(&self) -> &[u8] {
        self.ca.root_der()
    }

    /// `GET /status`.
    pub fn status(&self) -> api::StatusResponse {
        api::StatusResponse {
            state: api::State::Recovery,
            simulation: self.config.simulation,
            sealing: self.sealing.to_string(),
            manifest_hash: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            recovery: self.lock().as_ref().map(Collector::status),
        }
    }

    /// `GET /attestation`: evidence over the temporary root and the nonce.
    pub async fn attestation(
        &self,
        nonce: Option<&[u8]>,
    ) -> Result<api::AttestationResponse, ApiError> {
        let report_data = api::coordinator_report_data(
            &sha256(self.ca.root_der()),
            None,
            None,
            nonce.unwrap_or_default(),
            sha256,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let platform = self.platform.lock().await;
        let platform = platform.as_ref().ok_or(ApiError::InRecovery)?;
        Ok(api::AttestationResponse {
            evidence: platform.evidence(&report_data).await?,
            certificate_chain_pem: format!("{}{}", self.ca.root_pem(), self.ca.intermediate_pem()),
            manifest_hash: None,
            nonce_hex: nonce.map(hex::encode),
            state: None,
            simulated: self.config.simulation,
        })
    }

    /// `POST /recover`: take one share; with enough, open the state and become a coordinator.
    pub async fn recover(
        &self,
        request: &api::RecoverRequest,
    ) -> Result<api::RecoverResponse, ApiError> {
        let decode = |what: &str, text: &str| {
            B64.decode(text)
                .map_err(|_| ApiError::BadRequest(format!("{what} is not base64")))
        };
        let share = zeroize::Zeroizing::new(decode("share", &request.share)?);
        let signature = decode("signature", &request.signature)?;
        // Hold the platform across the whole step: two last shares cannot both finish.
        let mut platform = self.platform.lock().await;
        if platform.is_none() {
            return Err(ApiError::BadRequest(
                "the state is already recovered".into(),
            ));
        }
        let progress = {
            let mut collector = self.lock();
            let collector = collector
                .as_mut()
                .ok_or_else(|| ApiError::Recovery(RecoveryError::NotRecoverable))?;
            collector.submit(&request.holder, &share, &signature)?
        };
        let key = match progress {
            Progress::Waiting { remaining } => {
                tracing::info!(holder = %request.holder, remaining, "recovery share accepted");
                return Ok(api::RecoverResponse {
                    remaining,
                    recovered: false,
                    message: format!(
                        "share of {} accepted; {remaining} more needed",
                        request.holder
                    ),
                });
            }
            Progress::Complete(key) => key,
        };
        let Some(taken) = platform.take() else {
            return Err(ApiError::InRecovery);
        };
        let store = match crate::core::adopt_store(&self.config, &taken, key).await {
            Ok(store) => store,
            Err(e) => {
                *platform = Some(taken);
                // The shares matched their commitments but do not open the state: the
                // commitments beside the state were rewritten. Start a new session.
                let mut collector = self.lock();
                *collector = collector
                    .take()
                    .and_then(|c| Collector::new(c.commitments().clone()).ok());
                tracing::error!(error = %e, "recovered key refused");
                return Err(ApiError::Internal(format!(
                    "{e}; the shares were discarded and a new recovery session started"
                )));
            }
        };
        // From here on the state key is sealed under this platform's key.
        let coordinator = self.start(taken, store).await.map_err(|e| {
            ApiError::Internal(format!(
                "the state was recovered and sealed under this platform's key, but the \
                 coordinator did not start ({e}): restart it"
            ))
        })?;
        self.recovered.send_replace(Some(coordinator));
        tracing::info!("recovered: the state is open and sealed under this platform's key");
        Ok(api::RecoverResponse {
            remaining: 0,
            recovered: true,
            message: "recovered: the state is open and sealed under this platform's key".into(),
        })
    }

    /// Record the recovery, noting whether the commitments used are the ones the state
    /// itself holds, and start the coordinator.
    async fn start(
        &self,
        platform: Platform,
        store: Store,
    ) -> Result<Arc<Coordinator>, StartError> {
        let sealed = store.get(COMMITMENTS_RECORD)?;
        let used = self.commitments_bytes();
        let parse = |b: Option<&[u8]>| b.and_then(|b| Commitments::from_bytes(b).ok());
        let same = parse(sealed.as_deref().map(Vec::as_slice)) == parse(used.as_deref())
            && sealed.is_some();
        if !same {
            tracing::warn!("the recovery commitments beside the state differ from its own copy");
        }
        let event = crate::store::AuditEvent {
            event: "state-recovered",
            actor: "recovery key holders".into(),
            details: serde_json::json!({ "commitments_match": same }),
        };
        store.commit(crate::store::Change::new(event)).await?;
        Coordinator::assemble(&self.config, platform, store).await
    }
}

type ModeState = Arc<RecoveryMode>;

/// The routes served in recovery mode.
pub(crate) fn router(mode: ModeState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/health", get(|| async { "recovery\n" }))
        .route("/api/v1/attestation", get(attestation))
        .route("/api/v1/recover", post(recover))
        .fallback(|| async { ApiError::InRecovery })
        .with_state(mode)
}

async fn status(State(m): State<ModeState>) -> Response {
    crate::http::json(&m.status())
}

async fn attestation(
    State(m): State<ModeState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let nonce = crate::http::nonce_of(q.as_deref())?;
    Ok(crate::http::json(&m.attestation(nonce.as_deref()).await?))
}

async fn recover(State(m): State<ModeState>, body: Body) -> Result<Response, ApiError> {
    let body = crate::body::read(body, crate::body::RECOVER, m.config.limits.body_timeout).await?;
    let request: api::RecoverRequest = crate::http::parse_api(&body)?;
    Ok(crate::http::json(&m.recover(&request).await?))
}
