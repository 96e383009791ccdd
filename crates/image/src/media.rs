//! Media types of image manifests and layers, and how encryption renames a layer's.

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The suffix ocicrypt appends to an encrypted layer's media type.
pub const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// How a layer's bytes are compressed, read off its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// A layer media type, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerType {
    /// How the (decrypted) bytes are compressed.
    pub compression: Compression,
    /// Whether the bytes are ocicrypt-encrypted.
    pub encrypted: bool,
}

/// What a layer media type says, or `None` for one that is not a filesystem layer.
pub fn layer_type(media_type: &str) -> Option<LayerType> {
    let (base, encrypted) = match media_type.strip_suffix(ENCRYPTED_SUFFIX) {
        Some(base) => (base, true),
        None => (media_type, false),
    };
    let compression = match base {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    };
    Some(LayerType {
        compression,
        encrypted,
    })
}

/// The media type of `media_type`'s layer once encrypted: ocicrypt appends `+encrypted` to the
/// OCI type (a Docker type becomes the OCI one first).
pub fn encrypted_layer_type(media_type: &str) -> Option<String> {
    let oci = match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other if layer_type(other).is_some_and(|t| !t.encrypted) => other,
        _ => return None,
    };
    Some(format!("{oci}{ENCRYPTED_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_appends_the_suffix_to_the_oci_type() {
        assert_eq!(
            encrypted_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip").as_deref(),
            Some("application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
        );
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        let encrypted = encrypted_layer_type(zstd).unwrap_or_default();
        assert_eq!(
            layer_type(&encrypted),
            Some(LayerType {
                compression: Compression::Zstd,
                encrypted: true
            })
        );
        assert_eq!(encrypted_layer_type(&encrypted), None);
        assert_eq!(encrypted_layer_type("application/wasm"), None);
        assert_eq!(layer_type("application/wasm"), None);
    }
}
