//! The coordinator as a Confidential Containers key broker: the manifest decides which
//! evidence is acceptable (packages) and which secrets are released under which KBS paths;
//! the protocol itself is the `kbs` crate's.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use attest::Claims;
use attest::crypto::sha256;
use attest::evidence::Inputs;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use kbs::policy::{AttestationPolicy, EarStatus, ResourcePolicy, Trust};
use kbs::session::{Sessions, State};
use kbs::token::{Appraisal, TokenSigner};
use kbs::{Attestation, Challenge, KbsError, Request, Tee, TeePubKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::core::{Coordinator, Deployment};
use crate::store::{AuditEvent, Change};

/// How long sessions and tokens live (CoCo: 5 minutes).
const LIFETIME: Duration = Duration::from_secs(300);
/// CoCo's default resource policy: anything but the sample attester.
const DEFAULT_POLICY: &str = "package policy\nimport rego.v1\ndefault allow = false\nallow if {\n  not input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample\n}\n";

const TOKEN_KEY_RECORD: &str = "kbs/token-key";
const POLICY_RECORD: &str = "kbs/resource-policy";
const ATTESTATION_POLICY_RECORD: &str = "kbs/attestation-policy";
/// The attestation policy CoCo's broker evaluates for CPU evidence (and kbs-client's default).
const ATTESTATION_POLICY_ID: &str = "default_cpu";
/// The appraisal policy id tokens name when no attestation policy is set.
const MANIFEST_POLICY_ID: &str = "cloister-manifest";
const REFERENCE_VALUES_RECORD: &str = "kbs/reference-values";

fn resource_record(path: &str) -> String {
    format!("kbs/resource/{path}")
}

fn internal(e: impl std::fmt::Display) -> KbsError {
    KbsError::Internal(e.to_string())
}

/// The key broker's state beside the coordinator's.
pub struct Broker {
    sessions: Sessions,
    signer: TokenSigner,
    /// A policy uploaded through `/resource-policy`; the manifest's applies otherwise.
    uploaded_policy: ArcSwapOption<ResourcePolicy>,
    default_policy: Arc<ResourcePolicy>,
    /// The `default_cpu` attestation policy, when one was uploaded.
    attestation_policy: ArcSwapOption<AttestationPolicy>,
    resources: RwLock<HashMap<String, Arc<Zeroizing<Vec<u8>>>>>,
    reference_values: ArcSwap<serde_json::Map<String, Value>>,
    /// Serializes registrations, so that concurrent ones merge rather than overwrite.
    reference_writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// Restore (or create) the broker's state from the store.
    pub(crate) async fn open(
        store: &crate::store::Store,
        max_sessions: usize,
    ) -> Result<Self, crate::core::StartError> {
        let key = match store.get(TOKEN_KEY_RECORD)? {
            Some(key) => key,
            None => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(crate::ca::CaError::from)?;
                let der = Zeroizing::new(key.serialize_der());
                store
                    .commit(
                        Change::new(AuditEvent {
                            event: "kbs-initialized",
                            actor: "coordinator".into(),
                            details: json!({}),
                        })
                        .put(TOKEN_KEY_RECORD, der.clone()),
                    )
                    .await?;
                der
            }
        };
        let signer = TokenSigner::new(&key, LIFETIME.as_secs())
            .map_err(|e| crate::core::StartError::Attest(e.to_string()))?;
        let stored = Stored::load(store)?;
        Ok(Self {
            sessions: Sessions::new(LIFETIME, max_sessions),
            signer,
            uploaded_policy: ArcSwapOption::from(stored.uploaded_policy),
            default_policy: ResourcePolicy::new(DEFAULT_POLICY)
                .map(Arc::new)
                .map_err(|e| crate::core::StartError::Attest(e.to_string()))?,
            attestation_policy: ArcSwapOption::from(stored.attestation_policy),
            resources: RwLock::new(stored.resources),
            reference_values: ArcSwap::from_pointee(stored.reference_values),
            reference_writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Take up what another replica stored: policies, reference values, resources.
    pub(crate) fn reload(
        &self,
        store: &crate::store::Store,
    ) -> Result<(), crate::core::StartError> {
        let stored = Stored::load(store)?;
        self.uploaded_policy.store(stored.uploaded_policy);
        self.attestation_policy.store(stored.attestation_policy);
        *self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stored.resources;
        self.reference_values
            .store(Arc::new(stored.reference_values));
        Ok(())
    }
}

/// What the broker keeps in the store besides its token key.
struct Stored {
    uploaded_policy: Option<Arc<ResourcePolicy>>,
    attestation_policy: Option<Arc<AttestationPolicy>>,
    reference_values: serde_json::Map<String, Value>,
    resources: HashMap<String, Arc<Zeroizing<Vec<u8>>>>,
}

impl Stored {
    fn load(store: &crate::store::Store) -> Result<Self, crate::core::StartError> {
        let stored_text = |record: &str| -> Result<Option<String>, crate::store::StoreError> {
            Ok(store
                .get(record)?
                .map(|text| String::from_utf8_lossy(&text).into_owned()))
        };
        // Policies compiled before they were stored. One that no longer does stops the start:
        // falling back to the permissive default would release what it withheld.
        let uploaded_policy = stored_text(POLICY_RECORD)?
            .map(|text| ResourcePolicy::new(&text).map(Arc::new))
            .transpose()
            .map_err(|_| crate::core::StartError::Corrupt(POLICY_RECORD))?;
        let attestation_policy = stored_text(ATTESTATION_POLICY_RECORD)?
            .map(|text| AttestationPolicy::new(&text).map(Arc::new))
            .transpose()
            .map_err(|_| crate::core::StartError::Corrupt(ATTESTATION_POLICY_RECORD))?;
        let reference_values = match store.get(REFERENCE_VALUES_RECORD)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|_| crate::core::StartError::Corrupt(REFERENCE_VALUES_RECORD))?,
            None => serde_json::Map::new(),
        };
        let mut resources = HashMap::new();
        for (name, value) in store.list("kbs/resource/")? {
            if let Some(path) = name.strip_prefix("kbs/resource/") {
                resources.insert(path.to_string(), Arc::new(value));
            }
        }
        Ok(Self {
            uploaded_policy,
            attestation_policy,
            reference_values,
            resources,
        })
    }
}

impl Broker {
    /// `POST /auth`: a fresh session and its challenge.
    pub fn auth(&self, body: &[u8]) -> Result<(String, Challenge), KbsError> {
        let request: Request =
            serde_json::from_slice(body).map_err(|e| KbsError::Serde(e.to_string()))?;
        kbs::check_version(&request.version)?;
        let tee = request.tee;
        if !matches!(
            tee,
            Tee::Sgx | Tee::Tdx | Tee::Snp | Tee::AzSnpVtpm | Tee::AzTdxVtpm | Tee::Sample
        ) {
            return Err(KbsError::UnsupportedTee(tee.to_string()));
        }
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| internal("no randomness"))?;
        let nonce = B64.encode(nonce);
        let id = crate::random_uuid().simple().to_string();
        self.sessions.put(
            &id,
            State::Authed {
                tee,
                nonce: nonce.clone(),
            },
        );
        Ok((
            id,
            Challenge {
                nonce,
                extra_params: Value::String(String::new()),
            },
        ))
    }

    /// The `Set-Cookie` value for a session.
    pub fn cookie(&self, id: &str) -> String {
        let expires = OffsetDateTime::now_utc() + self.sessions.lifetime();
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let when = expires.format(&format).unwrap_or_default();
        format!("{}={id}; Expires={when}", kbs::SESSION_COOKIE)
    }

    /// The live session `id` names.
    pub(crate) fn session_of(&self, id: Option<&str>) -> Result<State, KbsError> {
        id.and_then(|id| self.sessions.get(id))
            .ok_or(KbsError::Session)
    }

    /// `POST /attest`: verify the evidence and its bindings, match a package, issue a token.
    pub async fn attest(
        &self,
        coordinator: &Coordinator,
        session: Option<&str>,
        body: &[u8],
    ) -> Result<String, KbsError> {
        let id = session.ok_or(KbsError::Session)?;
        let (tee, nonce) = match self.session_of(Some(id))? {
            State::Authed { tee, nonce } => (tee, nonce),
            State::Attested { token, .. } => return Ok(token),
        };
        let attestation: Attestation =
            serde_json::from_slice(body).map_err(|e| KbsError::Serde(e.to_string()))?;
        let runtime = &attestation.runtime_data;
        if runtime.nonce != nonce {
            return Err(KbsError::Nonce);
        }
        let additional = &attestation.tee_evidence.additional_evidence;
        let digest = kbs::binding::runtime_data_digest(&nonce, &runtime.tee_pubkey, additional)?;
        let init_data = attestation
            .init_data
            .as_ref()
            .map(|i| kbs::initdata::parse(&i.format, &i.body))
            .transpose()?;
        let deployment = coordinator.deployment().ok_or_else(|| {
            KbsError::Attestation("no manifest is set on this coordinator".into())
        })?;
        let evidence = &attestation.tee_evidence.primary_evidence;
        let (tee_claims, package, simulated) = if tee == Tee::Sample {
            self.appraise_sample(coordinator, &deployment, evidence, &digest)?
        } else {
            self.appraise_hardware(
                coordinator,
                &deployment,
                tee,
                evidence,
                &digest,
                init_data.as_ref(),
            )
            .await?
        };
        let mut runtime_data = json!({ "nonce": nonce, "tee-pubkey": runtime.tee_pubkey });
        if !additional.is_empty() {
            runtime_data["additional-evidence"] = Value::from(additional.as_str());
        }
        let init_data = init_data.map(|i| (hex::encode(&i.digest), i.claims));
        let (trust, policy_id) = self
            .appraise_trust(
                coordinator,
                tee,
                &tee_claims,
                &runtime_data,
                init_data.as_ref(),
            )
            .await?;
        let package_digest = package_digest(&deployment, &package).unwrap_or_default();
        let appraisal = Appraisal {
            tee: tee.to_string(),
            tee_claims,
            package: package.clone(),
            package_digest,
            runtime_data,
            init_data,
            simulated,
            trust,
            policy_id,
        };
        let now = unix_now();
        let (token, claims) = self.signer.issue(&appraisal, now)?;
        self.sessions.put(
            id,
            State::Attested {
                token: token.clone(),
                tee_pubkey: runtime.tee_pubkey.clone(),
                claims,
            },
        );
        coordinator
            .record(AuditEvent {
                event: "kbs-attestation",
                actor: format!("kbs/{package}"),
                details: json!({ "tee": tee.to_string(), "package": package, "simulated": simulated }),
            })
            .map_err(internal)?;
        Ok(token)
    }

    /// The trust vector: the attestation policy's over CoCo's input shape (`input.<tee>`,
    /// `input.init_data_claims`), or the manifest's affirmation when no policy is set.
    async fn appraise_trust(
        &self,
        coordinator: &Coordinator,
        tee: Tee,
        tee_claims: &Value,
        runtime_data: &Value,
        init_data: Option<&(String, Value)>,
    ) -> Result<(Trust, String), KbsError> {
        let Some(policy) = self.attestation_policy.load_full() else {
            return Ok((Trust::manifest_affirmed(), MANIFEST_POLICY_ID.into()));
        };
        let mut input = json!({
            tee.to_string(): tee_claims,
            "runtime_data_claims": runtime_data,
        });
        if let Some((digest, claims)) = init_data {
            input["init_data"] = Value::from(digest.as_str());
            input["init_data_claims"] = claims.clone();
        }
        let references = self.reference_values.load_full();
        let trust = evaluate(coordinator, move || policy.appraise(&input, &references)).await?;
        Ok((trust, ATTESTATION_POLICY_ID.into()))
    }

    fn appraise_sample(
        &self,
        coordinator: &Coordinator,
        deployment: &Deployment,
        evidence: &Value,
        digest: &[u8; 48],
    ) -> Result<(Value, String, bool), KbsError> {
        let package = sample_package(coordinator.simulation(), &deployment.manifest)?;
        let report_data = evidence["report_data"]
            .as_str()
            .and_then(|r| B64.decode(r).ok())
            .ok_or_else(|| KbsError::Attestation("sample evidence lacks report_data".into()))?;
        if report_data != digest {
            return Err(KbsError::Binding);
        }
        let claims = json!({
            "svn": evidence["svn"],
            "report_data": B64.encode(digest),
            "launch_digest": "abcde",
            "debug": false,
        });
        Ok((claims, package, true))
    }

    async fn appraise_hardware(
        &self,
        coordinator: &Coordinator,
        deployment: &Deployment,
        tee: Tee,
        evidence: &Value,
        digest: &[u8; 48],
        init_data: Option<&kbs::initdata::InitData>,
    ) -> Result<(Value, String, bool), KbsError> {
        let kind: attest::TeeKind = tee
            .to_string()
            .parse()
            .map_err(|_| KbsError::UnsupportedTee(tee.to_string()))?;
        let bytes = serde_json::to_vec(evidence).map_err(|e| KbsError::Serde(e.to_string()))?;
        let mut inputs = Inputs {
            tee: Some(kind),
            nonce: matches!(tee, Tee::AzSnpVtpm | Tee::AzTdxVtpm).then(|| digest.to_vec()),
            ..Inputs::default()
        };
        coordinator
            .collateral()
            .complete(&bytes, &mut inputs)
            .await
            .map_err(|e| KbsError::Attestation(e.to_string()))?;
        let (_, claims) = coordinator
            .verifiers()
            .verify(&bytes, &inputs, OffsetDateTime::now_utc())
            .map_err(|e| KbsError::Attestation(e.to_string()))?;
        check_binding(&claims, digest)?;
        if let Some(init) = init_data {
            check_init_data(&claims, init)?;
        }
        let mut refusals = Vec::new();
        for (name, package) in &deployment.manifest.packages {
            match package.appraise(&claims, coordinator.simulation()) {
                Ok(()) => {
                    let tee_claims = serde_json::to_value(&claims).map_err(internal)?;
                    return Ok((tee_claims, name.clone(), claims.simulated));
                }
                Err(m) => refusals.push(format!(
                    "{name}: {}",
                    m.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        Err(KbsError::Attestation(format!(
            "the evidence matches no package ({})",
            refusals.join("; ")
        )))
    }

    /// `GET /resource/<path>`: the resource encrypted to the attested TEE key.
    pub async fn resource(
        &self,
        coordinator: &Coordinator,
        session: Option<&str>,
        bearer: Option<&str>,
        path: &str,
    ) -> Result<kbs::Response, KbsError> {
        let (claims, tee_pubkey) = self.attested(session, bearer)?;
        let plaintext = self.release(coordinator, claims, path).await?;
        kbs::jwe::encrypt(&plaintext, &tee_pubkey)
    }

    /// The claims and TEE key of an attested session or a Bearer token.
    fn attested(
        &self,
        session: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<(Value, TeePubKey), KbsError> {
        if let Some(id) = session {
            match self.sessions.get(id) {
                Some(State::Attested {
                    claims, tee_pubkey, ..
                }) if claims["exp"].as_u64().is_some_and(|exp| exp > unix_now()) => {
                    return Ok((claims, tee_pubkey));
                }
                Some(State::Authed { .. }) if bearer.is_none() => {
                    return Err(KbsError::NotAttested);
                }
                _ => {}
            }
        }
        let token = bearer.ok_or_else(|| {
            KbsError::Token("no attested session and no Bearer token: attest first".into())
        })?;
        let claims = self.signer.verify(token, unix_now())?;
        let key = kbs::token::tee_pubkey(&claims)?;
        Ok((claims, key))
    }

    /// The bytes of `path` if the manifest and the policy release them to `claims`.
    async fn release(
        &self,
        coordinator: &Coordinator,
        claims: Value,
        path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        if !manifest::is_kbs_path(path) {
            return Err(KbsError::InvalidPath(path.to_string()));
        }
        let deployment = coordinator
            .deployment()
            .ok_or_else(|| KbsError::ResourceNotFound(path.to_string()))?;
        let annotated = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
        let package = annotated["package"].as_str().unwrap_or_default();
        // The token holds only while its package is the one it was appraised against: after a
        // manifest update removed or changed it, the client attests again (CoCo's clients do on
        // a 401) and is appraised against the manifest in force.
        if annotated["package_digest"].as_str() != package_digest(&deployment, package).as_deref() {
            return Err(KbsError::Token(format!(
                "the manifest in force changed or removed package {package:?} since this token \
                 was issued: attest again"
            )));
        }
        let mapped = deployment.manifest.kbs.resources.get(path);
        let value = match mapped {
            Some(resource) => {
                if !resource.packages.is_empty() && !resource.packages.iter().any(|p| p == package)
                {
                    return Err(KbsError::PolicyDeny(format!(
                        "{path}: the manifest releases it to {:?}, not to package {package:?}",
                        resource.packages
                    )));
                }
                deployment
                    .secret_bytes(&resource.secret)
                    .ok_or_else(|| KbsError::ResourceNotFound(path.to_string()))?
            }
            None => {
                let uploaded = self
                    .resources
                    .read()
                    .map_err(|_| internal("lock"))?
                    .get(path)
                    .cloned()
                    .ok_or_else(|| KbsError::ResourceNotFound(path.to_string()))?;
                Zeroizing::new(uploaded.to_vec())
            }
        };
        let policy = match (self.policy(&deployment), mapped) {
            // A configured policy sees `ear.status` and decides on its own.
            (Some(policy), _) => policy,
            (None, _) if contraindicated(&claims) => {
                return Err(KbsError::PolicyDeny(format!(
                    "{path}: the attestation policy judged this TEE contraindicated"
                )));
            }
            (None, Some(_)) => return Ok(value),
            (None, None) => Arc::clone(&self.default_policy),
        };
        let references = self.reference_values.load_full();
        let owned_path = path.to_string();
        let allowed = evaluate(coordinator, move || {
            policy.allows(&claims, &owned_path, &references)
        })
        .await?;
        if !allowed {
            return Err(KbsError::PolicyDeny(path.to_string()));
        }
        Ok(value)
    }

    /// The configured policy: uploaded, else the manifest's.
    fn policy(&self, deployment: &Deployment) -> Option<Arc<ResourcePolicy>> {
        self.uploaded_policy
            .load_full()
            .or_else(|| deployment.kbs_policy())
    }

    /// `POST /resource/<path>`: upload a resource (admin).
    pub async fn set_resource(
        &self,
        coordinator: &Coordinator,
        admin: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), KbsError> {
        if !manifest::is_kbs_path(path) {
            return Err(KbsError::InvalidPath(path.to_string()));
        }
        if bytes.is_empty() {
            return Err(KbsError::Serde(
                "the resource is empty: send its bytes as the body (DELETE removes a resource)"
                    .into(),
            ));
        }
        let value = Zeroizing::new(bytes.to_vec());
        // No digest of the value in the (readable) audit log: it would confirm guesses of it.
        save(
            coordinator,
            admin,
            resource_record(path),
            value.clone(),
            "kbs-resource-set",
            json!({ "path": path }),
        )
        .await?;
        self.resources
            .write()
            .map_err(|_| internal("lock"))?
            .insert(path.to_string(), Arc::new(value));
        Ok(())
    }

    /// `DELETE /resource/<path>` (admin).
    pub async fn delete_resource(
        &self,
        coordinator: &Coordinator,
        admin: &str,
        path: &str,
    ) -> Result<(), KbsError> {
        let existed = self
            .resources
            .read()
            .map_err(|_| internal("lock"))?
            .contains_key(path);
        if !existed {
            return Err(KbsError::ResourceNotFound(path.to_string()));
        }
        save(
            coordinator,
            admin,
            resource_record(path),
            Zeroizing::new(Vec::new()),
            "kbs-resource-deleted",
            json!({ "path": path }),
        )
        .await?;
        self.resources
            .write()
            .map_err(|_| internal("lock"))?
            .remove(path);
        Ok(())
    }

    /// `POST /resource-policy` (admin): `{"policy": base64url(rego)}`.
    pub async fn set_resource_policy(
        &self,
        coordinator: &Coordinator,
        admin: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let text = decode_policy(body)?;
        let policy = compile(coordinator, &text, ResourcePolicy::new).await?;
        save(
            coordinator,
            admin,
            POLICY_RECORD,
            Zeroizing::new(text.into_bytes()),
            "kbs-resource-policy-set",
            json!({}),
        )
        .await?;
        self.uploaded_policy.store(Some(Arc::new(policy)));
        Ok(())
    }

    /// `GET /resource-policy` (admin): the policy in force.
    pub fn resource_policy(&self, coordinator: &Coordinator) -> Result<String, KbsError> {
        let deployment = coordinator.deployment();
        let policy = match &deployment {
            Some(d) => self.policy(d),
            None => self.uploaded_policy.load_full(),
        };
        Ok(policy.map_or_else(|| DEFAULT_POLICY.to_string(), |p| p.source().to_string()))
    }

    /// `POST /attestation-policy` (admin): `{"policy_id": "default_cpu", "policy": b64url}`.
    /// The policy sets the trust vector of tokens issued from then on; which evidence is
    /// acceptable at all stays the manifest's packages.
    pub async fn set_attestation_policy(
        &self,
        coordinator: &Coordinator,
        admin: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b["policy_id"].as_str().map(str::to_string));
        if let Some(id) = id.filter(|id| id != ATTESTATION_POLICY_ID) {
            return Err(KbsError::InvalidPolicy(format!(
                "policy_id {id:?}: this broker evaluates only {ATTESTATION_POLICY_ID:?} (kbs-client's default)"
            )));
        }
        let text = decode_policy(body)?;
        let policy = compile(coordinator, &text, AttestationPolicy::new).await?;
        save(
            coordinator,
            admin,
            ATTESTATION_POLICY_RECORD,
            Zeroizing::new(text.into_bytes()),
            "kbs-attestation-policy-set",
            json!({ "policy_id": ATTESTATION_POLICY_ID }),
        )
        .await?;
        self.attestation_policy.store(Some(Arc::new(policy)));
        Ok(())
    }

    /// `POST /reference-value` (admin): CoCo's RVPS message; `sample` payloads register
    /// `{"name": [values…]}`, which policies read with `query_reference_value("name")`.
    pub async fn set_reference_values(
        &self,
        coordinator: &Coordinator,
        admin: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let message: Value =
            serde_json::from_slice(body).map_err(|e| KbsError::Serde(e.to_string()))?;
        if message["type"] != "sample" {
            return Err(KbsError::Serde(
                "only the `sample` reference-value message type is supported".into(),
            ));
        }
        let payload = message["payload"]
            .as_str()
            .and_then(|p| B64.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<serde_json::Map<String, Value>>(&p).ok())
            .ok_or_else(|| {
                KbsError::Serde("payload must be base64 of a JSON object of name → values".into())
            })?;
        let _serialized = self.reference_writes.lock().await;
        let mut merged = (*self.reference_values.load_full()).clone();
        merged.extend(payload.clone());
        let bytes = serde_json::to_vec(&merged).map_err(internal)?;
        save(
            coordinator,
            admin,
            REFERENCE_VALUES_RECORD,
            Zeroizing::new(bytes),
            "kbs-reference-values-set",
            json!({ "names": payload.keys().collect::<Vec<_>>() }),
        )
        .await?;
        self.reference_values.store(Arc::new(merged));
        Ok(())
    }

    /// `GET /reference-value/<name>`.
    pub fn reference_value(&self, name: &str) -> Result<Value, KbsError> {
        self.reference_values
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| KbsError::ResourceNotFound(format!("reference value {name}")))
    }
}

/// The package CoCo `sample` evidence runs as: only with simulation on and a sample package.
fn sample_package(simulation: bool, manifest: &manifest::Manifest) -> Result<String, KbsError> {
    if !simulation {
        return Err(KbsError::Attestation(
            "sample evidence is accepted only by a coordinator running with --simulation".into(),
        ));
    }
    manifest
        .packages
        .iter()
        .find(|(_, p)| p.tee == manifest::PackageTee::Sample)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| {
            KbsError::Attestation("sample evidence needs a package with tee: sample".into())
        })
}

/// Compile an uploaded policy on the heavy pool.
async fn compile<P: Send + 'static>(
    coordinator: &Coordinator,
    text: &str,
    new: fn(&str) -> Result<P, KbsError>,
) -> Result<P, KbsError> {
    let text = text.to_string();
    on_pool(
        &coordinator.heavy,
        "policy compilation",
        KbsError::InvalidPolicy,
        move || new(&text),
    )
    .await
}

/// Evaluate a policy on the policy threads (the engine recurses deeper than an async worker's
/// stack allows).
async fn evaluate<T: Send + 'static>(
    coordinator: &Coordinator,
    work: impl FnOnce() -> Result<T, KbsError> + Send + 'static,
) -> Result<T, KbsError> {
    on_pool(
        &coordinator.policies,
        "policy evaluation",
        KbsError::Policy,
        work,
    )
    .await
}

/// Run `work` on `pool`; a busy pool is a 503, any other failure `refused`.
async fn on_pool<T: Send + 'static>(
    pool: &crate::heavy::Heavy,
    what: &'static str,
    refused: fn(String) -> KbsError,
    work: impl FnOnce() -> Result<T, KbsError> + Send + 'static,
) -> Result<T, KbsError> {
    pool.run(what, move |_| work()).await.map_err(|e| match e {
        crate::heavy::HeavyError::Busy { .. } => KbsError::Unavailable(e.to_string()),
        other => refused(other.to_string()),
    })?
}

/// The digest of package `name`'s spec in `deployment` (none if it has no such package).
fn package_digest(deployment: &Deployment, name: &str) -> Option<String> {
    let spec = deployment.manifest.packages.get(name)?;
    serde_json::to_vec(spec)
        .ok()
        .map(|bytes| hex::encode(sha256(&bytes)))
}

/// Write one sealed record and its audit entry, durably, on behalf of `admin`.
async fn save(
    coordinator: &Coordinator,
    admin: &str,
    name: impl Into<String>,
    value: Zeroizing<Vec<u8>>,
    event: &'static str,
    details: Value,
) -> Result<(), KbsError> {
    coordinator
        .commit(
            Change::new(AuditEvent {
                event,
                actor: admin.to_string(),
                details,
            })
            .put(name, value),
        )
        .await
        .map(|_| ())
        .map_err(internal)
}

fn decode_policy(body: &[u8]) -> Result<String, KbsError> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| KbsError::Serde(e.to_string()))?;
    request["policy"]
        .as_str()
        .and_then(|p| B64URL.decode(p.trim_end_matches('=')).ok())
        .and_then(|p| String::from_utf8(p).ok())
        .ok_or_else(|| {
            KbsError::Serde("policy must be base64url (no padding) of the Rego text".into())
        })
}

/// The evidence's report data must be the runtime-data digest (zero-padded), or for vTPM
/// evidence the quote's nonce must be it exactly.
fn check_binding(claims: &Claims, digest: &[u8; 48]) -> Result<(), KbsError> {
    let bound = match &claims.vtpm {
        Some(vtpm) => vtpm.nonce == digest,
        None => claims.report_data == kbs::binding::report_data(digest),
    };
    if bound {
        Ok(())
    } else {
        Err(KbsError::Binding)
    }
}

/// The init-data digest must be in the field the host bound it to.
fn check_init_data(claims: &Claims, init: &kbs::initdata::InitData) -> Result<(), KbsError> {
    let field: &[u8] = match &claims.measurements {
        attest::Measurements::Tdx(m) => &m.mr_config_id,
        attest::Measurements::Snp(m) => &m.host_data,
        attest::Measurements::Sgx(m) => &m.config_id,
        _ => {
            return Err(KbsError::InitData(
                "this TEE has no field init-data can be bound to".into(),
            ));
        }
    };
    if kbs::initdata::binds(field, &init.digest) {
        Ok(())
    } else {
        Err(KbsError::InitData(
            "its digest is not the one the TEE was launched with (MRCONFIGID / HOST_DATA / CONFIGID)".into(),
        ))
    }
}

/// Whether the token's appraisal is in EAR's contraindicated tier.
fn contraindicated(claims: &Value) -> bool {
    claims["submods"]["cpu0"]["ear.status"] == EarStatus::Contraindicated.as_str()
}

fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::sample_package;

    #[test]
    fn sample_evidence_needs_simulation_and_a_sample_package() {
        let with = manifest::Manifest::parse(br#"{"packages": {"pod": {"tee": "sample"}}}"#)
            .unwrap()
            .manifest;
        let without = manifest::Manifest::parse(br#"{"packages": {"app": {"tee": "simulation"}}}"#)
            .unwrap()
            .manifest;
        assert_eq!(sample_package(true, &with).unwrap(), "pod");
        assert!(sample_package(false, &with).is_err(), "simulation off");
        assert!(sample_package(true, &without).is_err(), "no sample package");
    }
}
