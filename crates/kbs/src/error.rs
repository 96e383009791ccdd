//! Errors as CoCo's clients expect them: `{"type": ".../errors/<Variant>", "detail": "…"}`,
//! 401 for anything that attesting again may fix, 404 for what does not exist.

/// The base of CoCo's error `type` URIs.
pub const ERROR_TYPE_BASE: &str = "https://github.com/confidential-containers/kbs/errors/";

/// Why a KBS request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbsError {
    /// The client speaks another protocol version.
    #[error(
        "KBS Client Protocol Version Mismatch: expect ={} while the request is {got}",
        crate::PROTOCOL_VERSION
    )]
    ProtocolVersion {
        /// The version the client sent.
        got: String,
    },
    /// The request body does not parse.
    #[error("request body: {0}")]
    Serde(String),
    /// The TEE kind is not accepted here.
    #[error("TEE {0} is not supported by this broker")]
    UnsupportedTee(String),
    /// No session, an unknown one, or an expired one.
    #[error("no valid KBS session: authenticate again (POST /kbs/v0/auth)")]
    Session,
    /// The session has not attested yet.
    #[error("the session has not attested: POST /kbs/v0/attest first")]
    NotAttested,
    /// The evidence binds another nonce or key.
    #[error("the evidence does not bind this session's nonce and TEE key")]
    Binding,
    /// The nonce in the runtime data is not the session's.
    #[error("the runtime data's nonce is not the one this session was given")]
    Nonce,
    /// The evidence did not verify or match any package.
    #[error("attestation failed: {0}")]
    Attestation(String),
    /// The TEE public key is not one the broker can encrypt to.
    #[error("TEE public key: {0}")]
    TeeKey(String),
    /// Encrypting the response failed.
    #[error("JWE: {0}")]
    Jwe(String),
    /// No token, or one that does not verify.
    #[error("attestation token: {0}")]
    Token(String),
    /// The resource policy denied the request.
    #[error("the resource policy denied access to {0}")]
    PolicyDeny(String),
    /// The resource policy could not be evaluated.
    #[error("resource policy: {0}")]
    Policy(String),
    /// An uploaded policy is refused: too large or deep for the engine, or it does not compile.
    #[error("policy refused: {0}")]
    InvalidPolicy(String),
    /// No such resource.
    #[error("resource {0} not found")]
    ResourceNotFound(String),
    /// The path is not `<repo>/<type>/<tag>` or no such endpoint exists.
    #[error("invalid request path {0}")]
    InvalidPath(String),
    /// The endpoint exists, but not for this method.
    #[error("{path} does not take {method}")]
    MethodNotAllowed {
        /// The method.
        method: String,
        /// The path.
        path: String,
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
    /// The admin call is not authorized.
    #[error("admin authentication: {0}")]
    AdminAuth(String),
    /// Init-data is malformed or does not match the evidence.
    #[error("init-data: {0}")]
    InitData(String),
    /// The broker is too busy for this now.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed on the broker's side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl KbsError {
    /// CoCo's variant name for the `type` URI.
    pub fn variant(&self) -> &'static str {
        match self {
            Self::ProtocolVersion { .. } | Self::Session | Self::NotAttested => "RcarAuthFailed",
            Self::Serde(_) | Self::PayloadTooLarge { .. } | Self::RequestTimeout { .. } => {
                "SerdeError"
            }
            Self::UnsupportedTee(_)
            | Self::Binding
            | Self::Nonce
            | Self::Attestation(_)
            | Self::InitData(_) => "AttestationError",
            Self::TeeKey(_) | Self::Jwe(_) => "JweError",
            Self::Token(_) => "TokenVerifierError",
            Self::PolicyDeny(_) => "PolicyDeny",
            Self::Policy(_) | Self::InvalidPolicy(_) => "PolicyEngine",
            Self::ResourceNotFound(_) => "ResourceNotFound",
            Self::InvalidPath(_) | Self::MethodNotAllowed { .. } => "InvalidRequestPath",
            Self::AdminAuth(_) => "AdminAuth",
            Self::Internal(_) | Self::Unavailable(_) => "PluginInternalError",
        }
    }

    /// The HTTP status: 404 for what does not exist, 500 for our faults, 401 otherwise (the
    /// client attests again).
    pub fn status(&self) -> u16 {
        match self {
            Self::ResourceNotFound(_) | Self::InvalidPath(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge { .. } => 413,
            Self::RequestTimeout { .. } => 408,
            Self::Serde(_) | Self::InvalidPolicy(_) => 400,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
            Self::AdminAuth(_) => 403,
            _ => 401,
        }
    }

    /// The body.
    pub fn information(&self) -> kbs_types::ErrorInformation {
        kbs_types::ErrorInformation {
            error_type: format!("{ERROR_TYPE_BASE}{}", self.variant()),
            detail: self.to_string(),
        }
    }
}
