//! Why an image operation failed.

use std::path::PathBuf;

use crate::RegistryError;
use crate::ocicrypt::CryptError;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The image name does not parse.
    #[error(transparent)]
    Name(#[from] crate::NameError),
    /// The signature policy does not parse.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Usage(String),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest, index or configuration is not what an image needs.
    #[error("{0}")]
    Format(String),
    /// A blob does not hash to its digest.
    #[error("{what} does not match its digest {expected} (got {actual}): refusing it")]
    Digest {
        /// What.
        what: String,
        /// The digest it should have.
        expected: String,
        /// Its SHA-256.
        actual: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A blob could not be read to its end.
    #[error("reading a blob: {0}")]
    Read(std::io::Error),
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// An encrypted layer, and no key that opens it.
    #[error("layer {layer} is encrypted: {reason}")]
    Locked {
        /// The layer's digest.
        layer: String,
        /// Why it stays closed, and what to give.
        reason: String,
    },
    /// A layer entry that would leave the root or that the unpacker refuses.
    #[error("layer {layer}: entry {entry:?} {reason}; nothing was unpacked")]
    Entry {
        /// The layer's digest.
        layer: String,
        /// The entry's path.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The destination exists and is not empty.
    #[error("{}: it exists and is not empty; give a new directory", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// The policy refuses the image.
    #[error("the signature policy refuses {image}: {reason}")]
    Refused {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
}
