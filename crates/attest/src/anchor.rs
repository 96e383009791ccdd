//! Trust anchors: the roots a certificate chain must end in.
//!
//! Production anchors are pinned by the SHA-256 of the root certificate's SubjectPublicKeyInfo
//! (Intel's SGX Root CA, AMD's ARKs), so no root certificate has to ship with the binary: the
//! evidence or its collateral carries the root, and the pin decides whether it is trusted.
//! Simulation anchors are the roots of [`crate::sim`]; accepting one is an explicit choice and
//! every claim verified under it says `simulated: true`.

use crate::crypto::sha256;
use crate::x509::{Cert, CertError};

/// SHA-256 of the SubjectPublicKeyInfo of the Intel SGX Root CA
/// (certificate fingerprint 44:A0:19:6B:...:74:D3).
pub const INTEL_SGX_ROOT_CA_SPKI_SHA256: &str =
    "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e";

/// The SubjectPublicKeyInfo SHA-256 pins of AMD's ARKs: Milan, Genoa, Turin.
pub const AMD_ARK_SPKI_SHA256: [(&str, &str); 3] = [
    (
        "Milan",
        "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
    ),
    (
        "Genoa",
        "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
    ),
    (
        "Turin",
        "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
    ),
];

/// The extension OID that marks a certificate as part of cloister's simulation hierarchy.
/// (Under the private-use arc 1.3.6.1.4.1.57264, "cloister"; the value is a UTF-8 note.)
pub const SIMULATION_MARKER_OID: &str = "1.3.6.1.4.1.57264.1.1";

/// Which roots a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchor {
    /// Real hardware roots, pinned by SPKI SHA-256.
    Production {
        /// Accepted root SPKI digests.
        spki_sha256: Vec<[u8; 32]>,
    },
    /// A simulation root: evidence chaining to it is marked simulated.
    Simulation {
        /// The root certificate (DER).
        root_der: Vec<u8>,
        /// Its SPKI digest.
        spki_sha256: [u8; 32],
    },
}

impl TrustAnchor {
    /// The Intel SGX Root CA, for SGX and TDX evidence.
    pub fn intel() -> Self {
        Self::Production {
            spki_sha256: vec![pin(INTEL_SGX_ROOT_CA_SPKI_SHA256)],
        }
    }

    /// AMD's ARKs (Milan, Genoa, Turin), for SEV-SNP evidence.
    pub fn amd() -> Self {
        Self::Production {
            spki_sha256: AMD_ARK_SPKI_SHA256.iter().map(|(_, p)| pin(p)).collect(),
        }
    }

    /// Trust exactly this root certificate (DER or PEM). A simulation root (one that carries
    /// [`SIMULATION_MARKER_OID`]) is refused here: use [`TrustAnchor::simulation`] for it.
    pub fn from_root(cert: &[u8]) -> Result<Self, CertError> {
        let root = Cert::from_der_or_pem(cert)?;
        if root.is_simulation() {
            return Err(CertError::SimulationNotEnabled);
        }
        Ok(Self::Production {
            spki_sha256: vec![sha256(root.spki_der())],
        })
    }

    /// Trust a simulation root (DER or PEM): the caller enables simulation explicitly.
    pub fn simulation(cert: &[u8]) -> Result<Self, CertError> {
        let root = Cert::from_der_or_pem(cert)?;
        Ok(Self::Simulation {
            spki_sha256: sha256(root.spki_der()),
            root_der: root.der().to_vec(),
        })
    }

    /// Whether evidence accepted under this anchor is simulated.
    pub fn is_simulation(&self) -> bool {
        matches!(self, Self::Simulation { .. })
    }

    /// Whether `root` (a self-signed certificate at the end of a chain) is one of ours.
    pub fn trusts(&self, root: &Cert) -> bool {
        let digest = sha256(root.spki_der());
        match self {
            Self::Production { spki_sha256 } => spki_sha256.contains(&digest),
            Self::Simulation { spki_sha256, .. } => *spki_sha256 == digest,
        }
    }
}

fn pin(hex_text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // The pins are compile-time constants checked by a unit test; a malformed one trusts nothing.
    if let Ok(bytes) = hex::decode(hex_text)
        && bytes.len() == 32
    {
        out.copy_from_slice(&bytes);
    }
    out
}
