//! Every way a request fails, and — in one place — the HTTP status and RFC 9457 problem type
//! each maps to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body or query is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No route matches.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// No manifest is set yet.
    #[error("no manifest is set: set one with `cloister manifest set`")]
    NoManifest,
    /// The manifest does not parse.
    #[error("the manifest does not parse: {0}")]
    MalformedManifest(#[source] manifest::ManifestError),
    /// The manifest breaks rules; every error has its path.
    #[error("the manifest is invalid: {}", count(.0.0.len()))]
    InvalidManifest(manifest::ValidationErrors),
    /// The call needs a manifest user's client certificate.
    #[error(
        "this call needs the client certificate of a user named in the manifest; pass \
         --cert and --key"
    )]
    Unauthenticated,
    /// The user lacks the role for the action.
    #[error("user {user} may not {action}")]
    Forbidden {
        /// The user.
        user: String,
        /// The action.
        action: String,
    },
    /// The workload type is not in the manifest.
    #[error("unknown workload type {0:?}: the manifest does not list it")]
    UnknownWorkload(String),
    /// Activation needs a TLS client certificate for the workload's key.
    #[error("activation needs a TLS client certificate for the key the evidence binds")]
    NoClientCertificate,
    /// The evidence did not verify.
    #[error("the evidence was rejected: {0}")]
    EvidenceRejected(#[source] attest::evidence::VerifyError),
    /// DCAP collateral for the evidence could not be had (PCS/PCCS down or unaware of it).
    #[error("no collateral to verify the evidence with: {0}")]
    CollateralUnavailable(#[source] crate::collateral::CollateralError),
    /// The evidence binds another key than the TLS client key.
    #[error(
        "the evidence is not bound to the TLS client key: its report data must start with \
         SHA-256 of the client certificate's SubjectPublicKeyInfo"
    )]
    EvidenceNotBound,
    /// The module a keep attested is not the one the manifest names for the workload (or a
    /// keep activated as a native workload, or a native launcher as a WebAssembly one).
    #[error("{}", module_mismatch(workload, expected.as_deref(), bound.as_deref()))]
    ModuleMismatch {
        /// The workload.
        workload: String,
        /// The digest the manifest names, hex; none for a native workload.
        expected: Option<String>,
        /// The digest the evidence binds, hex; none when it binds no module.
        bound: Option<String>,
    },
    /// The claims do not match the workload's package.
    #[error("the evidence does not match package {package}: {}", join(.mismatches))]
    PackageMismatch {
        /// The package.
        package: String,
        /// Every difference.
        mismatches: Vec<manifest::Mismatch>,
    },
    /// The workload type has used all its activations.
    #[error("workload {workload} has used all {max} of its activations")]
    MaxActivations {
        /// The workload type.
        workload: String,
        /// Its limit.
        max: u64,
    },
    /// The secret is not in the manifest.
    #[error("unknown secret {0:?}")]
    UnknownSecret(String),
    /// The uploaded secret is not acceptable.
    #[error("secret {name}: {reason}")]
    InvalidSecret {
        /// The secret.
        name: String,
        /// Why.
        reason: String,
    },
    /// The request body is larger than the endpoint takes.
    #[error("the request body is larger than the {limit} bytes this endpoint takes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout {
        /// The time allowed.
        seconds: u64,
    },
    /// The request asks for more work than the coordinator does for one request.
    #[error("{0}")]
    TooCostly(String),
    /// CPU-heavy work (a manifest, a policy, key generation) could not be done now.
    #[error("{0}")]
    Busy(String),
    /// `POST /manifest` over a manifest whose updates need several acknowledgements.
    #[error(
        "this deployment's manifest changes only with {needed} acknowledgements: propose it \
         with `cloister manifest update apply`"
    )]
    NeedsAcknowledgements {
        /// Acknowledgements an update needs.
        needed: u64,
    },
    /// A manifest update cannot be made as asked.
    #[error("{0}")]
    InvalidUpdate(String),
    /// A manifest update conflicts with the pending one.
    #[error("{0}")]
    UpdateConflict(String),
    /// No update is pending.
    #[error("no manifest update is pending: propose one with `cloister manifest update apply`")]
    NoPendingUpdate,
    /// The store (etcd) cannot be reached: the replica refuses work until it returns.
    #[error("{0}")]
    StoreUnavailable(String),
    /// A replica asked to join and was refused.
    #[error("joining refused: {0}")]
    JoinRefused(String),
    /// The coordinator is in recovery mode and serves only status, attestation and recovery.
    #[error(
        "the coordinator is in recovery mode: its state is sealed under another platform's key; \
         recovery key holders upload their shares with `cloister recover`"
    )]
    InRecovery,
    /// A recovery share was refused, or recovery material could not be made.
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    /// `POST /recover` on a coordinator whose state is open.
    #[error("the coordinator is not in recovery mode: its state is open")]
    NotInRecovery,
    /// Something failed on the coordinator's side.
    #[error("internal error: {0}")]
    Internal(String),
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 error".to_string()
    } else {
        format!("{n} errors")
    }
}

fn join(items: &[manifest::Mismatch]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn module_mismatch(workload: &str, expected: Option<&str>, bound: Option<&str>) -> String {
    match (expected, bound) {
        (Some(expected), Some(bound)) => format!(
            "workload {workload} must run the module with SHA-256 {expected}, but the keep \
             attested {bound}; run that module, or update wasm.digest in the manifest"
        ),
        (Some(expected), None) => format!(
            "workload {workload} is a WebAssembly workload (module SHA-256 {expected}), but the \
             evidence binds no module; run it with `cloister keep run`"
        ),
        (None, Some(bound)) => format!(
            "workload {workload} names no WebAssembly module, but a keep attested module {bound}; \
             add wasm.digest to the workload in the manifest, or activate the right workload"
        ),
        (None, None) => format!("workload {workload}: module binding mismatch"),
    }
}

impl ApiError {
    /// The HTTP status, the problem slug and its title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadRequest(_) => (S::BAD_REQUEST, "bad-request", "Malformed request"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "No such endpoint"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::NoManifest => (S::CONFLICT, "no-manifest", "No manifest is set"),
            Self::MalformedManifest(_) => {
                (S::BAD_REQUEST, "malformed-manifest", "Malformed manifest")
            }
            Self::InvalidManifest(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid-manifest",
                "Invalid manifest",
            ),
            Self::Unauthenticated => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Self::Forbidden { .. } => (S::FORBIDDEN, "forbidden", "Not permitted"),
            Self::UnknownWorkload(_) => (S::NOT_FOUND, "unknown-workload", "Unknown workload type"),
            Self::NoClientCertificate => (
                S::UNAUTHORIZED,
                "no-client-certificate",
                "No client certificate",
            ),
            Self::EvidenceRejected(_) => (S::FORBIDDEN, "evidence-rejected", "Evidence rejected"),
            Self::CollateralUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "collateral-unavailable",
                "Collateral unavailable",
            ),
            Self::EvidenceNotBound => (
                S::FORBIDDEN,
                "evidence-not-bound",
                "Evidence not bound to the client key",
            ),
            Self::ModuleMismatch { .. } => (
                S::FORBIDDEN,
                "module-mismatch",
                "The attested module is not the workload's",
            ),
            Self::PackageMismatch { .. } => (
                S::FORBIDDEN,
                "package-mismatch",
                "Evidence does not match the package",
            ),
            Self::MaxActivations { .. } => {
                (S::FORBIDDEN, "max-activations", "Activation limit reached")
            }
            Self::UnknownSecret(_) => (S::NOT_FOUND, "unknown-secret", "Unknown secret"),
            Self::InvalidSecret { .. } => (S::BAD_REQUEST, "invalid-secret", "Invalid secret"),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::RequestTimeout { .. } => (
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "Request body too slow",
            ),
            Self::TooCostly(_) => (S::UNPROCESSABLE_ENTITY, "too-costly", "Request too costly"),
            Self::Busy(_) => (S::SERVICE_UNAVAILABLE, "busy", "Coordinator busy"),
            Self::NeedsAcknowledgements { .. } => (
                S::CONFLICT,
                "needs-acknowledgements",
                "The update needs acknowledgements",
            ),
            Self::InvalidUpdate(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid-update",
                "Invalid manifest update",
            ),
            Self::UpdateConflict(_) => (S::CONFLICT, "update-conflict", "Update conflict"),
            Self::NoPendingUpdate => (S::NOT_FOUND, "no-pending-update", "No pending update"),
            Self::StoreUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The state store is unavailable",
            ),
            Self::JoinRefused(_) => (S::FORBIDDEN, "join-refused", "Joining refused"),
            Self::InRecovery => (
                S::SERVICE_UNAVAILABLE,
                "in-recovery",
                "The coordinator is in recovery mode",
            ),
            Self::Recovery(e) => {
                use crate::recovery::RecoveryError as R;
                let status = match e {
                    R::BadKey { .. } | R::TooManyHolders { .. } => S::UNPROCESSABLE_ENTITY,
                    R::UnknownHolder { .. } => S::NOT_FOUND,
                    R::BadSignature { .. } | R::WrongShare { .. } => S::FORBIDDEN,
                    R::Duplicate { .. } | R::NotRecoverable => S::CONFLICT,
                    R::Malformed(_) | R::Crypto => S::INTERNAL_SERVER_ERROR,
                };
                (status, "recovery", "Recovery refused")
            }
            Self::NotInRecovery => (S::CONFLICT, "not-in-recovery", "Not in recovery mode"),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// Collateral for activation evidence could not be had: bad evidence is the workload's
    /// fault, an unreachable service is not.
    pub(crate) fn from_collateral(e: crate::collateral::CollateralError) -> Self {
        use crate::collateral::CollateralError;
        match e {
            CollateralError::Evidence(e) | CollateralError::Pcs(pcs::PcsError::Evidence(e)) => {
                Self::EvidenceRejected(e)
            }
            CollateralError::Pcs(pcs::PcsError::Quote(e)) => Self::EvidenceRejected(e.into()),
            other => Self::CollateralUnavailable(other),
        }
    }

    /// The problem document.
    pub fn problem(&self) -> api::Problem {
        let (status, slug, title) = self.classify();
        let errors = match self {
            Self::InvalidManifest(errors) => errors
                .0
                .iter()
                .map(|e| api::ProblemItem {
                    path: e.path.clone(),
                    reason: e.reason.clone(),
                })
                .collect(),
            Self::PackageMismatch { mismatches, .. } => mismatches
                .iter()
                .map(|m| api::ProblemItem {
                    path: m.field.to_string(),
                    reason: format!("expected {}, got {}", m.expected, m.actual),
                })
                .collect(),
            _ => Vec::new(),
        };
        api::Problem {
            kind: format!("{}{slug}", api::PROBLEM_BASE),
            title: title.to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(detail = %problem.detail, "request failed");
        } else {
            tracing::info!(kind = %problem.kind, detail = %problem.detail, "request refused");
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(_) => Self::StoreUnavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(e: crate::secrets::SecretError) -> Self {
        match e {
            crate::secrets::SecretError::Deadline { .. } => Self::TooCostly(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::heavy::HeavyError> for ApiError {
    fn from(e: crate::heavy::HeavyError) -> Self {
        use crate::heavy::HeavyError;
        match e {
            HeavyError::Busy { .. } => Self::Busy(e.to_string()),
            HeavyError::Deadline { .. } => Self::TooCostly(e.to_string()),
            HeavyError::Failed { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<crate::ca::CaError> for ApiError {
    fn from(e: crate::ca::CaError) -> Self {
        Self::Internal(e.to_string())
    }
}
