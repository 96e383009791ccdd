//! Replicas on etcd: a new replica, whose platform has no sealed copy of the state key, gets
//! the key from a running replica over an attested exchange in both directions.
//!
//! * The joining replica verifies the running one as `cloister verify` does (its evidence
//!   binds the root it serves and a fresh nonce) and requires the same TEE and measurements
//!   as its own: only the same coordinator software gets to hand it a state.
//! * It then sends evidence binding a fresh P-256 key; the running replica verifies it,
//!   requires the same TEE and measurements as its own, and returns the state key as a JWE to
//!   that key. A replica that cannot attest gets nothing.

use std::sync::Arc;

use attest::claims::Claims;
use attest::crypto::sha256;
use time::OffsetDateTime;

use crate::core::{Coordinator, Platform};
use crate::error::ApiError;
use crate::seal::StateKey;

/// Whether two coordinators run the same software in the same kind of TEE.
fn same_software(a: &Claims, b: &Claims) -> bool {
    a.tee == b.tee
        && a.measurements == b.measurements
        && a.debug == b.debug
        && a.simulated == b.simulated
}

/// Verify `bundle` on `platform` now: the claims, or why not.
async fn verify(platform: &Platform, bundle: &api::EvidenceBundle) -> Result<Claims, String> {
    let (evidence, mut inputs) = bundle.decode().map_err(|e| e.to_string())?;
    platform
        .collateral
        .complete(&evidence, &mut inputs)
        .await
        .map_err(|e| e.to_string())?;
    platform
        .verifiers
        .verify(&evidence, &inputs, OffsetDateTime::now_utc())
        .map(|(_, claims)| claims)
        .map_err(|e| e.to_string())
}

/// Evidence of this platform binding `first_half`, and the claims it verifies to here.
async fn own_evidence(
    platform: &Platform,
    first_half: [u8; 32],
) -> Result<(api::EvidenceBundle, Claims), String> {
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&first_half);
    let bundle = platform
        .evidence(&report_data)
        .await
        .map_err(|e| e.to_string())?;
    let claims = verify(platform, &bundle).await?;
    Ok((bundle, claims))
}

/// Get the state key from one of `replicas` (URLs), trying each in turn.
pub(crate) async fn join(platform: &Platform, replicas: &[String]) -> Result<StateKey, String> {
    let key =
        kbs::jwe::TeeKeyPair::generate_ec(kbs::jwe::Curve::P256).map_err(|e| e.to_string())?;
    let public_key = serde_json::to_string(&key.public().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (evidence, own) = own_evidence(platform, sha256(public_key.as_bytes())).await?;
    let request = api::JoinRequest {
        evidence,
        public_key,
    };
    let mut reasons = Vec::new();
    for url in replicas {
        match join_one(platform, url, &own, &request, &key).await {
            Ok(state_key) => {
                tracing::info!(%url, "joined: the state key came from a running replica");
                return Ok(state_key);
            }
            Err(e) => reasons.push(format!("{url}: {e}")),
        }
    }
    if reasons.is_empty() {
        return Err("no running replica is registered".into());
    }
    Err(reasons.join("; "))
}

async fn join_one(
    platform: &Platform,
    url: &str,
    own: &Claims,
    request: &api::JoinRequest,
    key: &kbs::jwe::TeeKeyPair,
) -> Result<StateKey, String> {
    let root = attested_root(platform, url, own).await?;
    let client = launcher::client::Client::pinned(url, &root, None).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let answer: Option<api::JoinResponse> = client
        .post("/replicas/join", body)
        .await
        .map_err(|e| e.to_string())?;
    let answer = answer.ok_or("empty answer")?;
    let jwe = serde_json::from_value(answer.state_key).map_err(|e| e.to_string())?;
    let plain = key.decrypt(&jwe).map_err(|e| e.to_string())?;
    StateKey::from_bytes(&plain).ok_or_else(|| "the state key is not 32 bytes".into())
}

/// The root the replica at `url` serves under, once its fresh evidence shows the same
/// coordinator software as `own` and binds that root.
async fn attested_root(platform: &Platform, url: &str, own: &Claims) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness")?;
    let (client, first_contact) =
        launcher::client::Client::first_contact(url).map_err(|e| e.to_string())?;
    let response: api::AttestationResponse = client
        .get(&format!("/attestation?nonce={}", hex::encode(nonce)))
        .await
        .map_err(|e| e.to_string())?;
    let claims = verify(platform, &response.evidence).await?;
    if !same_software(own, &claims) {
        return Err("it is not the same coordinator software as this one".into());
    }
    let root = launcher::verify::bound_root(&response, &nonce, &claims.report_data)
        .map_err(|e| e.to_string())?;
    let host = launcher::verify::host_of(url);
    first_contact
        .check(&root, host)
        .map_err(|e| e.to_string())?;
    Ok(root)
}

impl Coordinator {
    /// `POST /replicas/join`: the state key, to a replica running the same software.
    pub async fn join_replica(
        self: &Arc<Self>,
        request: api::JoinRequest,
    ) -> Result<api::JoinResponse, ApiError> {
        if self.store.etcd().is_none() {
            return Err(ApiError::JoinRefused(
                "this coordinator keeps its state in a file: it has no replicas".into(),
            ));
        }
        let claims = verify(&self.platform, &request.evidence)
            .await
            .map_err(ApiError::JoinRefused)?;
        if claims.simulated && !self.simulation() {
            return Err(ApiError::JoinRefused("the evidence is simulated".into()));
        }
        if claims.report_data[..32] != sha256(request.public_key.as_bytes()) {
            return Err(ApiError::JoinRefused(
                "the evidence does not bind the public key".into(),
            ));
        }
        let own = self.own_claims().await?;
        if !same_software(&own, &claims) {
            return Err(ApiError::JoinRefused(
                "the evidence is not of the same coordinator software as this one".into(),
            ));
        }
        let public = serde_json::from_str(&request.public_key)
            .map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
        let jwe = kbs::jwe::encrypt(self.store.state_key().as_bytes(), &public)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.record(crate::store::AuditEvent {
            event: "replica-joined",
            actor: "coordinator".into(),
            details: serde_json::json!({ "tee": claims.tee.as_str() }),
        })?;
        Ok(api::JoinResponse {
            state_key: serde_json::to_value(jwe).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    /// This coordinator's own claims, from its own evidence.
    async fn own_claims(&self) -> Result<Claims, ApiError> {
        if let Some(claims) = self.own_claims.get() {
            return Ok(claims.clone());
        }
        let (_, claims) = own_evidence(&self.platform, [0; 32])
            .await
            .map_err(ApiError::Internal)?;
        let _ = self.own_claims.set(claims.clone());
        Ok(claims)
    }
}
