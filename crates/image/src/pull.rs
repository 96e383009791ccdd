//! Pull: manifest, policy, configuration, then each layer streamed through its checks into a
//! staging directory — blob digest, decryption and HMAC, decompression, diff ID — and the
//! staging directory renamed to the destination only when every check passed. A failed pull
//! leaves nothing behind.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use oci_spec::image::{Descriptor, ImageConfiguration};
use zeroize::Zeroizing;

use crate::media::{Compression, layer_type};
use crate::ocicrypt::cipher::LayerKey;
use crate::ocicrypt::jwe::{self, DecryptionKey};
use crate::ocicrypt::provider::{self, AnnotationPacket, KeyId};
use crate::ocicrypt::{self, KEYS_JWE, PUBOPTS, PrivateOptions};
use crate::registry::MAX_MANIFEST_BYTES;
use crate::stream::Hashing;
use crate::unpack::Root;
use crate::{Endpoint, ImageError, Manifest};

/// The files a pull writes next to `rootfs/`.
pub const CONFIG_FILE: &str = "image-config.json";
/// The manifest, as pulled.
pub const MANIFEST_FILE: &str = "image-manifest.json";

/// The keys a pull may open layers with.
#[derive(Debug, Default)]
pub struct Keys {
    /// Private keys for JWE recipients.
    pub jwe: Vec<DecryptionKey>,
    /// Key-encryption keys by `kbs:///` resource (what the key broker released).
    pub keks: HashMap<String, Zeroizing<Vec<u8>>>,
}

/// What a pull reports as it goes.
pub trait Progress: Send + Sync {
    /// Layer `index` (of `count`) starts: its digest and size.
    fn start(&self, index: usize, count: usize, digest: &str, size: u64);
    /// More of layer `index` arrived.
    fn advance(&self, index: usize, bytes: u64);
    /// Layer `index` is unpacked.
    fn finish(&self, index: usize);
}

/// A pulled image.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// The bundle directory: `rootfs/`, [`CONFIG_FILE`], [`MANIFEST_FILE`].
    pub bundle: PathBuf,
}

/// The `kbs:///` resources whose keys would open the image's encrypted layers (for a caller
/// that fetches them from the key broker before pulling).
pub fn key_ids(manifest: &Manifest) -> Result<Vec<KeyId>, ImageError> {
    let mut ids = Vec::new();
    for layer in manifest.parsed.layers() {
        let Some(annotations) = layer.annotations() else {
            continue;
        };
        if let Some(value) = annotations.get(provider::ANNOTATION) {
            for packet in decode_list(value)? {
                let id = AnnotationPacket::parse(&packet)?.key_id()?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
}

/// Pull the image `manifest` (from `source`) into `bundle`, which must not exist or be empty.
pub async fn pull(
    source: &Endpoint,
    manifest: &Manifest,
    bundle: &Path,
    keys: &Keys,
    progress: Arc<dyn Progress>,
) -> Result<PulledImage, ImageError> {
    check_destination(bundle)?;
    let config_bytes = source
        .blob(manifest.parsed.config(), MAX_MANIFEST_BYTES)
        .await?;
    let config = ImageConfiguration::from_reader(&config_bytes[..])
        .map_err(|e| ImageError::Format(format!("the configuration of {}: {e}", source.name)))?;
    let layers = manifest.parsed.layers();
    let diff_ids = config.rootfs().diff_ids();
    if layers.len() != diff_ids.len() {
        return Err(ImageError::Format(format!(
            "{} has {} layers but its configuration lists {} diff IDs",
            source.name,
            layers.len(),
            diff_ids.len()
        )));
    }
    // Open every layer's key first: a missing key fails the pull before any download.
    let opened = layers
        .iter()
        .map(|layer| open_layer(layer, keys))
        .collect::<Result<Vec<_>, _>>()?;

    let staging = Staging::create(bundle)?;
    let rootfs = staging.path.join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|source| ImageError::Io {
        path: rootfs.clone(),
        source,
    })?;
    let root = Arc::new(Root::open(&rootfs)?);
    for (index, ((layer, diff_id), opened)) in layers.iter().zip(diff_ids).zip(opened).enumerate() {
        let digest = layer.digest().to_string();
        progress.start(index, layers.len(), &digest, layer.size());
        let reader = source.blob_reader(layer).await?;
        let job = LayerJob {
            descriptor: layer.clone(),
            diff_id: diff_id.clone(),
            opened,
            root: root.clone(),
            progress: progress.clone(),
            index,
        };
        tokio::task::spawn_blocking(move || job.run(reader))
            .await
            .map_err(|e| ImageError::Format(format!("unpacking layer {digest}: {e}")))??;
        progress.finish(index);
    }
    let config_path = staging.path.join(CONFIG_FILE);
    std::fs::write(&config_path, &config_bytes).map_err(|source| ImageError::Io {
        path: config_path,
        source,
    })?;
    let manifest_path = staging.path.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &manifest.bytes).map_err(|source| ImageError::Io {
        path: manifest_path,
        source,
    })?;
    staging.commit(bundle)?;
    Ok(PulledImage {
        manifest_digest: manifest.digest.clone(),
        config,
        bundle: bundle.to_path_buf(),
    })
}

/// How a layer's bytes are opened: in the clear, or with its key.
enum Opened {
    Clear,
    Encrypted {
        key: LayerKey,
        public: ocicrypt::PublicOptions,
    },
}

fn open_layer(layer: &Descriptor, keys: &Keys) -> Result<(Opened, Compression), ImageError> {
    let digest = layer.digest().to_string();
    let media_type = layer.media_type().to_string();
    let kind = layer_type(&media_type).ok_or_else(|| {
        ImageError::Format(format!(
            "layer {digest} is a {media_type}, not a filesystem layer"
        ))
    })?;
    if !kind.encrypted {
        return Ok((Opened::Clear, kind.compression));
    }
    let empty = HashMap::new();
    let annotations = layer.annotations().as_ref().unwrap_or(&empty);
    let locked = |reason: String| ImageError::Locked {
        layer: digest.clone(),
        reason,
    };
    let public = annotations
        .get(PUBOPTS)
        .ok_or_else(|| locked(format!("it has no {PUBOPTS} annotation")))?;
    let public = ocicrypt::decode_public(public)?;
    let private = unwrap_private(annotations, keys).map_err(locked)?;
    let key = LayerKey::from_private(&private)?;
    Ok((Opened::Encrypted { key, public }, kind.compression))
}

/// The private options, from the first recipient a key opens.
fn unwrap_private(
    annotations: &HashMap<String, String>,
    keys: &Keys,
) -> Result<PrivateOptions, String> {
    let mut tried = Vec::new();
    if let Some(value) = annotations.get(KEYS_JWE) {
        if keys.jwe.is_empty() {
            tried.push("it has JWE recipients: give a private key with --decryption-key".into());
        }
        for blob in decode_list(value).map_err(|e| e.to_string())? {
            if keys.jwe.is_empty() {
                break;
            }
            match jwe::unwrap(&blob, &keys.jwe) {
                Ok(json) => return PrivateOptions::from_json(&json).map_err(|e| e.to_string()),
                Err(e) => tried.push(format!("no --decryption-key opens its JWE ({e})")),
            }
        }
    }
    if let Some(value) = annotations.get(provider::ANNOTATION) {
        for blob in decode_list(value).map_err(|e| e.to_string())? {
            let packet = AnnotationPacket::parse(&blob).map_err(|e| e.to_string())?;
            let Some(kek) = keys
                .keks
                .get(&packet.key_id().map_err(|e| e.to_string())?.uri())
            else {
                tried.push(format!(
                    "its key is held by the key broker as {}: pull with --kbs",
                    packet.kid
                ));
                continue;
            };
            let json = packet.open(kek).map_err(|e| e.to_string())?;
            return PrivateOptions::from_json(&json).map_err(|e| e.to_string());
        }
    }
    for name in annotations.keys() {
        if name.starts_with("org.opencontainers.image.enc.keys.")
            && name != KEYS_JWE
            && name != provider::ANNOTATION
        {
            tried.push(format!("{name} recipients are not supported"));
        }
    }
    if tried.is_empty() {
        tried.push("it names no recipients".into());
    }
    Err(tried.join("; "))
}

fn decode_list(value: &str) -> Result<Vec<Vec<u8>>, ImageError> {
    value
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            base64::engine::general_purpose::STANDARD
                .decode(part)
                .map_err(|e| ImageError::Format(format!("a key annotation is not base64: {e}")))
        })
        .collect()
}

/// One layer's way from the source to the root, on a blocking thread.
struct LayerJob {
    descriptor: Descriptor,
    diff_id: String,
    opened: (Opened, Compression),
    root: Arc<Root>,
    progress: Arc<dyn Progress>,
    index: usize,
}

impl LayerJob {
    fn run(self, reader: Box<dyn Read + Send>) -> Result<(), ImageError> {
        let digest = self.descriptor.digest().to_string();
        let counted = Counting {
            inner: reader,
            progress: self.progress.as_ref(),
            index: self.index,
        };
        let mut blob = Hashing::new(counted.take(self.descriptor.size().saturating_add(1)));
        let (opened, compression) = self.opened;
        // The private options' digest is not checked: skopeo writes the source's, which
        // differs when it compressed the layer on the way. The HMAC binds the ciphertext, the
        // blob digest the bytes, and the diff ID what is unpacked.
        let mut clear: Box<dyn Read + '_> = match &opened {
            Opened::Clear => Box::new(&mut blob),
            Opened::Encrypted { key, public } => Box::new(key.decrypt(&mut blob, public)?),
        };
        let unpacked = (|| {
            let decompressed: Box<dyn Read + '_> = match compression {
                Compression::None => Box::new(&mut clear),
                Compression::Gzip => Box::new(flate2::read::GzDecoder::new(&mut clear)),
                Compression::Zstd => Box::new(
                    zstd::stream::read::Decoder::new(&mut clear).map_err(ImageError::Read)?,
                ),
            };
            let mut diff = Hashing::new(decompressed);
            self.root.apply(&mut diff, &digest)?;
            // The tar's end is not the stream's: read the rest so the digests cover it all.
            std::io::copy(&mut diff, &mut std::io::sink()).map_err(ImageError::Read)?;
            Ok::<_, ImageError>(diff.finish().0)
        })();
        // Whatever went wrong, the deeper cause is the one to report: a blob that is not the
        // one the manifest names, then ciphertext its HMAC does not cover. Read the rest (at
        // most the declared size) to know.
        let authentic = std::io::copy(&mut clear, &mut std::io::sink());
        drop(clear);
        let _ = std::io::copy(&mut blob, &mut std::io::sink());
        let (actual, size) = blob.finish();
        if actual != digest || size != self.descriptor.size() {
            return Err(ImageError::Digest {
                what: format!("layer {digest}"),
                expected: digest,
                actual,
            });
        }
        if let Err(error) = authentic {
            return Err(crypt_error(error));
        }
        let diff_id = unpacked?;
        if diff_id != self.diff_id {
            return Err(ImageError::Digest {
                what: format!("the uncompressed layer {digest} (its diff ID)"),
                expected: self.diff_id,
                actual: diff_id,
            });
        }
        Ok(())
    }
}

/// A read error, as the cipher's own error when it is one (the HMAC check).
fn crypt_error(error: std::io::Error) -> ImageError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ocicrypt::CryptError>())
    {
        Some(ocicrypt::CryptError::Hmac) => ImageError::Crypt(ocicrypt::CryptError::Hmac),
        _ => ImageError::Read(error),
    }
}

/// Reports bytes as they arrive.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    index: usize,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(self.index, n as u64);
        Ok(n)
    }
}

fn check_destination(bundle: &Path) -> Result<(), ImageError> {
    match std::fs::read_dir(bundle) {
        Ok(entries) => match entries.into_iter().next() {
            Some(_) => Err(ImageError::DestinationExists {
                path: bundle.to_path_buf(),
            }),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ImageError::Io {
            path: bundle.to_path_buf(),
            source,
        }),
    }
}

/// A directory beside the destination, removed unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(bundle: &Path) -> Result<Self, ImageError> {
        let mut suffix = [0u8; 6];
        aws_lc_rs::rand::fill(&mut suffix)
            .map_err(|_| ImageError::Format("no randomness".into()))?;
        let name = bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let path = bundle.with_file_name(format!(".{name}.partial-{}", hex::encode(suffix)));
        std::fs::create_dir_all(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            committed: false,
        })
    }

    fn commit(mut self, bundle: &Path) -> Result<(), ImageError> {
        if bundle.exists() {
            std::fs::remove_dir(bundle).map_err(|source| ImageError::Io {
                path: bundle.to_path_buf(),
                source,
            })?;
        }
        std::fs::rename(&self.path, bundle).map_err(|source| ImageError::Io {
            path: bundle.to_path_buf(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
