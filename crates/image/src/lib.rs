//! OCI images and artifacts: references as `docker://` and `oci://` name them, and pulls from a
//! registry over the OCI distribution API. Nothing fetched is trusted: a manifest named by
//! digest must hash to it, and every blob must hash to the digest its manifest gives.
#![forbid(unsafe_code)]

mod reference;
#[cfg(feature = "registry")]
mod registry;

pub use reference::{Reference, ReferenceError};
#[cfg(feature = "registry")]
pub use registry::{Pulled, Registry, RegistryError};

/// The media type of a WebAssembly module in an OCI artifact (the CNCF wasm OCI artifact
/// layout: one `application/wasm` layer).
pub const WASM_LAYER: &str = "application/wasm";
