//! OCI images and artifacts: references as `docker://`, `oci://` and `oci:DIR:TAG` name them;
//! pulls and pushes over the OCI distribution API and OCI image layouts; ocicrypt layer
//! encryption; and unpacking into a root filesystem. Nothing fetched is trusted: a manifest
//! named by digest must hash to it, every blob must hash to the digest its manifest gives,
//! and an unpacked entry must stay inside the root.
#![forbid(unsafe_code)]

#[cfg(feature = "io")]
pub mod encrypt;
#[cfg(feature = "io")]
mod error;
pub mod media;
mod name;
#[cfg(feature = "io")]
pub mod ocicrypt;
pub mod policy;
#[cfg(feature = "io")]
pub mod pull;
mod reference;
#[cfg(feature = "io")]
mod registry;
#[cfg(feature = "io")]
pub mod signature;
#[cfg(feature = "io")]
mod stream;
#[cfg(feature = "io")]
mod transport;
#[cfg(feature = "io")]
pub mod unpack;

#[cfg(feature = "io")]
pub use error::ImageError;
pub use name::{ImageName, NameError};
pub use reference::{Reference, ReferenceError};
#[cfg(feature = "io")]
pub use registry::{Credentials, Pulled, Registry, RegistryError};
#[cfg(feature = "io")]
pub use transport::{Endpoint, Manifest};

/// The media type of a WebAssembly module in an OCI artifact (the CNCF wasm OCI artifact
/// layout: one `application/wasm` layer).
pub const WASM_LAYER: &str = "application/wasm";
