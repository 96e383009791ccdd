//! Request bodies, read only once the caller is authorized, within a size limit per endpoint
//! and a time limit. A body whose declared length is over the limit is refused before a byte
//! of it is read, so a client that sent `Expect: 100-continue` gets its 413 instead of a
//! `100 Continue`; a chunked body is cut off where it passes the limit.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

/// The largest manifest, in bytes.
pub(crate) const MANIFEST: usize = manifest::MAX_MANIFEST_BYTES;
/// The largest `POST /secrets` body.
pub(crate) const SECRETS: usize = 1 << 20;
/// The largest activation request (evidence with its collateral).
pub(crate) const ACTIVATION: usize = 2 << 20;
/// The largest small JSON body (an acknowledgement).
pub(crate) const SMALL: usize = 4 << 10;
/// The largest `POST /recover` body (a share and an RSA signature of up to 8192 bits).
pub(crate) const RECOVER: usize = 20 << 10;
/// The largest key-broker `/auth` request (a version, a TEE name, extra parameters).
pub(crate) const KBS_AUTH: usize = 64 << 10;
/// The largest key-broker `/attest` request (evidence, event logs, init-data).
pub(crate) const KBS_ATTEST: usize = 2 << 20;
/// The largest key-broker resource an admin uploads.
pub(crate) const KBS_RESOURCE: usize = 1 << 20;
/// The largest policy or reference-value upload (base64url of a policy within Rego limits).
pub(crate) const KBS_POLICY: usize = 256 << 10;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Larger than the endpoint takes.
    #[error("the request body is larger than the {limit} bytes this endpoint takes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not all there in time.
    #[error("the request body did not arrive within {seconds} s")]
    Timeout {
        /// The time allowed.
        seconds: u64,
    },
    /// The connection failed while it was read.
    #[error("reading the request body: {0}")]
    Read(String),
}

/// Read `body`, at most `limit` bytes of it, within `timeout`.
pub(crate) async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    use axum::body::HttpBody as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout {
            seconds: timeout.as_secs(),
        }),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

impl From<BodyError> for crate::error::ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            BodyError::Timeout { seconds } => Self::RequestTimeout { seconds },
            BodyError::Read(reason) => Self::BadRequest(reason),
        }
    }
}

impl From<BodyError> for kbs::KbsError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            BodyError::Timeout { seconds } => Self::RequestTimeout { seconds },
            BodyError::Read(reason) => Self::Serde(reason),
        }
    }
}
