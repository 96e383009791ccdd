//! Manifest updates, as MarbleRun makes them.
//!
//! * A **package update** (a manifest of nothing but packages, each with nothing but
//!   `security_version`) raises SGX packages' minimum ISVSVN at once, for a user holding
//!   `UpdateSecurityVersion` on each. Workloads below it are refused from then on.
//!   Certificates already issued are not revoked: they stay valid until they expire, and the
//!   answer says so; restarting the workloads makes them attest again.
//! * A **full update** needs `UpdateManifest`. It takes effect when `update_threshold` users
//!   holding `UpdateManifest` (0: all of them; the proposer counts) acknowledged the same
//!   manifest hash. One update is pending at a time; any of them may cancel it.
//!
//! Every step is an audit record; a pending update survives restarts.

use std::collections::BTreeMap;

use attest::crypto::sha256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use manifest::{Action, Manifest, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::core::{
    Coordinator, Deployment, PACKAGE_UPDATES_RECORD, StartError, authenticate, authorize,
};
use crate::error::ApiError;
use crate::store::{AuditEvent, Change, Store};

/// The pending full update, JSON (empty: none).
pub(crate) const PENDING_RECORD: &str = "update-pending";

/// How long certificates issued to workloads stay valid, for the package-update answer.
const WORKLOAD_CERT_DAYS: u32 = 365;

/// A full update waiting for acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The proposed manifest, base64.
    manifest: String,
    /// Its SHA-256, hex.
    hash: String,
    initiator: String,
    acknowledged: Vec<String>,
}

/// The pending update the state holds.
pub(crate) fn load_pending(store: &Store) -> Result<Option<Pending>, StartError> {
    match store.get(PENDING_RECORD)? {
        Some(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| StartError::Corrupt(PENDING_RECORD)),
        _ => Ok(None),
    }
}

/// Acknowledgements a full update of `manifest` needs: its `update_threshold`, or every user
/// holding `UpdateManifest` when that is 0.
pub(crate) fn required_acknowledgements(manifest: &Manifest) -> u64 {
    match manifest.config.update_threshold {
        0 => updaters(manifest).len() as u64,
        t => t,
    }
    .max(1)
}

fn updaters(manifest: &Manifest) -> Vec<String> {
    manifest.users_who_may(Action::UpdateManifest, Resource::Manifest)
}

/// Apply raised security versions to `manifest`'s packages.
pub(crate) fn raise_security_versions(manifest: &mut Manifest, raised: &BTreeMap<String, u16>) {
    for (name, version) in raised {
        if let Some(package) = manifest.packages.get_mut(name) {
            package.security_version = Some(*version);
        }
    }
}

impl Coordinator {
    /// The user `peer` authenticates as, if they may propose some update: asked before a
    /// `POST /manifest/update` body is read.
    pub fn updater(&self, peer: Option<&[u8]>) -> Result<String, ApiError> {
        let d = self.current()?;
        let user = authenticate(&d.manifest, peer)?;
        let m = &d.manifest;
        let may = m.user_may(&user, Action::UpdateManifest, Resource::Manifest)
            || m.packages
                .keys()
                .any(|p| m.user_may(&user, Action::UpdateSecurityVersion, Resource::Package(p)));
        if may {
            Ok(user)
        } else {
            Err(ApiError::Forbidden {
                user,
                action: "UpdateManifest or UpdateSecurityVersion".into(),
            })
        }
    }

    /// `POST /manifest/update`: a package update applies now; a full update is proposed (and
    /// applies now when one acknowledgement is enough).
    pub async fn update_manifest(
        &self,
        raw: &[u8],
        peer: Option<&[u8]>,
    ) -> Result<api::UpdateResponse, ApiError> {
        self.updater(peer)?;
        let owned = raw.to_vec();
        let parsed = self
            .heavy
            .run("manifest parsing", move |_| {
                Manifest::parse(&owned).map_err(ApiError::MalformedManifest)
            })
            .await??;
        if let Some(raised) = parsed.manifest.as_package_update() {
            return self.update_packages(&raised, peer).await;
        }
        let prepared = self.prepare(raw).await?;
        let _admin = self.admin.lock().await;
        let d = self.current()?;
        let user = may_update_manifest(&d, peer)?;
        if let Some(p) = self.pending() {
            return Err(ApiError::UpdateConflict(format!(
                "an update (sha256:{}) is already pending: acknowledge or cancel it first",
                p.hash
            )));
        }
        let hash = hex::encode(sha256(raw));
        let pending = Pending {
            manifest: B64.encode(raw),
            hash: hash.clone(),
            initiator: user.clone(),
            acknowledged: vec![user.clone()],
        };
        if required_acknowledgements(&d.manifest) <= 1 {
            let (_, recovery_secrets) = self
                .apply_manifest(raw, prepared, user, "manifest-updated")
                .await?;
            return Ok(applied(hash, recovery_secrets));
        }
        let change = Change::new(AuditEvent {
            event: "update-proposed",
            actor: user,
            details: json!({ "manifest_hash": hash }),
        });
        self.save_pending(change, pending, &d).await
    }

    /// `POST /manifest/update/acknowledge`.
    pub async fn acknowledge_update(
        &self,
        manifest_hash: &str,
        peer: Option<&[u8]>,
    ) -> Result<api::UpdateResponse, ApiError> {
        let _admin = self.admin.lock().await;
        let d = self.current()?;
        let user = may_update_manifest(&d, peer)?;
        let mut pending = self.pending().ok_or(ApiError::NoPendingUpdate)?;
        if !pending.hash.eq_ignore_ascii_case(manifest_hash) {
            return Err(ApiError::UpdateConflict(format!(
                "the pending update is sha256:{}, not sha256:{manifest_hash}: acknowledge the \
                 manifest you reviewed only if it is the pending one",
                pending.hash
            )));
        }
        if pending.acknowledged.contains(&user) {
            return Err(ApiError::UpdateConflict(format!(
                "{user} already acknowledged this update"
            )));
        }
        pending.acknowledged.push(user.clone());
        if (pending.acknowledged.len() as u64) < required_acknowledgements(&d.manifest) {
            let change = Change::new(AuditEvent {
                event: "update-acknowledged",
                actor: user,
                details: json!({ "manifest_hash": pending.hash }),
            });
            return self.save_pending(change, pending, &d).await;
        }
        let raw = B64
            .decode(&pending.manifest)
            .map_err(|_| ApiError::Internal("the pending manifest is not base64".into()))?;
        let prepared = self.prepare(&raw).await?;
        let (_, recovery_secrets) = self
            .apply_manifest(
                &raw,
                prepared,
                pending.acknowledged.join(", "),
                "manifest-updated",
            )
            .await?;
        Ok(applied(pending.hash, recovery_secrets))
    }

    /// `POST /manifest/update/cancel`.
    pub async fn cancel_update(&self, peer: Option<&[u8]>) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        let d = self.current()?;
        let user = may_update_manifest(&d, peer)?;
        let pending = self.pending().ok_or(ApiError::NoPendingUpdate)?;
        self.store
            .commit(
                Change::new(AuditEvent {
                    event: "update-cancelled",
                    actor: user,
                    details: json!({ "manifest_hash": pending.hash }),
                })
                .put(PENDING_RECORD, Zeroizing::new(Vec::new())),
            )
            .await?;
        self.set_pending(None);
        Ok(())
    }

    /// `GET /manifest/update`.
    pub fn update_status(&self) -> Result<api::UpdateStatus, ApiError> {
        let d = self.current()?;
        Ok(api::UpdateStatus {
            pending: self.pending().map(|p| describe(&p, &d)),
        })
    }

    /// Commit `change` with `pending` as the pending update, and say what it still needs.
    async fn save_pending(
        &self,
        change: Change,
        pending: Pending,
        d: &Deployment,
    ) -> Result<api::UpdateResponse, ApiError> {
        let stored = serde_json::to_vec(&pending).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store
            .commit(change.put(PENDING_RECORD, Zeroizing::new(stored)))
            .await?;
        let described = describe(&pending, d);
        self.set_pending(Some(pending));
        Ok(api::UpdateResponse {
            applied: false,
            message: format!(
                "update sha256:{} waits for {} more acknowledgement(s) (`cloister manifest \
                 update acknowledge`)",
                described.manifest_hash, described.missing_acknowledgements
            ),
            manifest_hash: described.manifest_hash,
            missing_acknowledgements: described.missing_acknowledgements,
            missing_users: described.missing_users,
            recovery_secrets: BTreeMap::new(),
        })
    }

    /// Raise packages' security versions now.
    async fn update_packages(
        &self,
        raised: &BTreeMap<String, u16>,
        peer: Option<&[u8]>,
    ) -> Result<api::UpdateResponse, ApiError> {
        let _admin = self.admin.lock().await;
        let d = self.current()?;
        let mut changes = BTreeMap::new();
        let mut user = String::new();
        for (name, &to) in raised {
            user = authorize(
                &d.manifest,
                peer,
                Action::UpdateSecurityVersion,
                Resource::Package(name),
            )?;
            let package = d.manifest.packages.get(name).ok_or_else(|| {
                ApiError::InvalidUpdate(format!("package {name} is not in the manifest"))
            })?;
            if package.signer_id.is_none() {
                return Err(ApiError::InvalidUpdate(format!(
                    "package {name} is not an SGX package pinned by signer_id, product_id and \
                     security_version: a package update cannot change it; propose a full \
                     update (`cloister manifest update apply`)"
                )));
            }
            let from = package.security_version.unwrap_or(0);
            if to < from {
                return Err(ApiError::InvalidUpdate(format!(
                    "package {name}: security_version {to} is below the {from} in force; \
                     versions only go up"
                )));
            }
            changes.insert(name.clone(), (from, to));
        }
        let mut package_updates = d.package_updates.clone();
        package_updates.extend(raised.iter().map(|(k, v)| (k.clone(), *v)));
        let mut manifest = d.manifest.clone();
        raise_security_versions(&mut manifest, raised);
        let stored =
            serde_json::to_vec(&package_updates).map_err(|e| ApiError::Internal(e.to_string()))?;
        let details: BTreeMap<&String, serde_json::Value> = changes
            .iter()
            .map(|(name, (from, to))| (name, json!({ "from": from, "to": to })))
            .collect();
        self.store
            .commit(
                Change::new(AuditEvent {
                    event: "package-updated",
                    actor: user,
                    details: json!({ "packages": details }),
                })
                .put(PACKAGE_UPDATES_RECORD, Zeroizing::new(stored)),
            )
            .await?;
        let mut next = d.as_ref().clone();
        next.manifest = manifest;
        next.package_updates = package_updates;
        self.deployment.store(Some(std::sync::Arc::new(next)));
        let said: Vec<String> = changes
            .iter()
            .map(|(name, (from, to))| format!("{name} {from} → {to}"))
            .collect();
        Ok(api::UpdateResponse {
            applied: true,
            manifest_hash: hex::encode(d.hash),
            missing_acknowledgements: 0,
            missing_users: Vec::new(),
            message: format!(
                "security_version raised ({}): workloads below it are refused from now on. \
                 Certificates issued before stay valid until they expire ({WORKLOAD_CERT_DAYS} \
                 days after issue); restart those workloads so that they attest again",
                said.join(", ")
            ),
            recovery_secrets: BTreeMap::new(),
        })
    }
}

/// The user `peer` is, if they hold `UpdateManifest`.
fn may_update_manifest(d: &Deployment, peer: Option<&[u8]>) -> Result<String, ApiError> {
    authorize(
        &d.manifest,
        peer,
        Action::UpdateManifest,
        Resource::Manifest,
    )
}

/// A pending update as the API shows it.
fn describe(p: &Pending, d: &Deployment) -> api::PendingUpdate {
    let needed = required_acknowledgements(&d.manifest);
    api::PendingUpdate {
        manifest: p.manifest.clone(),
        manifest_hash: p.hash.clone(),
        initiator: p.initiator.clone(),
        acknowledged: p.acknowledged.clone(),
        missing_acknowledgements: needed.saturating_sub(p.acknowledged.len() as u64),
        missing_users: updaters(&d.manifest)
            .into_iter()
            .filter(|u| !p.acknowledged.contains(u))
            .collect(),
    }
}

fn applied(hash: String, recovery_secrets: BTreeMap<String, String>) -> api::UpdateResponse {
    api::UpdateResponse {
        applied: true,
        message: format!(
            "manifest sha256:{hash} is in force; running workloads keep their certificates \
             until they restart"
        ),
        manifest_hash: hash,
        missing_acknowledgements: 0,
        missing_users: Vec::new(),
        recovery_secrets,
    }
}
