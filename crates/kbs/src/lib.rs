//! The Confidential Containers key-broker protocol (KBS protocol 0.4.0, `/kbs/v0`), as CoCo's
//! clients speak it (kbs-client, attestation-agent + confidential-data-hub, trustee-attester).
//!
//! The wire types are CoCo's own ([`kbs_types`]), so what we send is what their clients parse —
//! including the JWE protected header, whose exact serialization the clients recompute as AAD.
//!
//! * [`binding`]: the runtime data a TEE's evidence must carry (RFC 8785 JSON of nonce, TEE key
//!   and additional evidence, SHA-384).
//! * [`jwe`]: resources encrypted to the TEE key (ECDH-ES+A256KW on P-256/P-521, RSA-OAEP-256;
//!   A256GCM), and decryption for our own client.
//! * [`token`]: the EAR attestation token (JWT, ES256) carrying the TEE key.
//! * [`initdata`]: CoCo init-data (TOML) and its digest.
//! * [`policy`]: Rego resource policies over the token claims, with CoCo's input shape.
//! * [`session`]: `kbs-session-id` sessions with expiry.
//! * [`error`]: CoCo's `{"type", "detail"}` errors, 401 meaning "attest again".
//!
//! No I/O: the coordinator serves this over HTTPS and supplies the evidence verdicts.
#![forbid(unsafe_code)]

pub mod binding;
pub mod error;
pub mod initdata;
pub mod jwe;
pub mod policy;
pub mod session;
pub mod token;

pub use error::KbsError;
pub use kbs_types::{
    Attestation, Challenge, ErrorInformation, Request, Response, RuntimeData, Tee, TeePubKey,
};

/// The protocol version this broker speaks; clients must send exactly this.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// The URL prefix of every KBS endpoint.
pub const PREFIX: &str = "/kbs/v0";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// Check a client's protocol version, as CoCo's KBS does (exact match).
pub fn check_version(version: &str) -> Result<(), KbsError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(KbsError::ProtocolVersion {
            got: version.to_string(),
        })
    }
}
