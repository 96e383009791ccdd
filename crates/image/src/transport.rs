//! Image sources and destinations: a registry or an OCI layout. A source hands out the
//! manifest, small blobs whole and layers as streams; a destination takes blobs and manifests.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::registry::{MAX_MANIFEST_BYTES, sha256_digest};
use crate::{ImageError, ImageName, Registry};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image's manifest, as stored.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The exact bytes (what the digest and signatures are of).
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// Parsed.
    pub parsed: ImageManifest,
}

/// An image source or destination.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where.
    pub name: ImageName,
    registry: Registry,
}

impl Endpoint {
    /// `name`, reached through `registry` when it is in one.
    pub fn new(name: ImageName, registry: Registry) -> Self {
        Self { name, registry }
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The image manifest, for this machine's platform when the name points at an index.
    pub async fn manifest(&self) -> Result<Manifest, ImageError> {
        let (bytes, media_type, digest) = self.raw_manifest(None).await?;
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let index = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| ImageError::Format(format!("the index of {}: {e}", self.name)))?;
            let chosen = choose_platform(&index).ok_or_else(|| {
                ImageError::Format(format!(
                    "the index of {} has no image for linux/{}",
                    self.name,
                    host_arch()
                ))
            })?;
            let (bytes, media_type, digest) =
                self.raw_manifest(Some(chosen.digest().as_ref())).await?;
            return self.parse_manifest(bytes, media_type, digest);
        }
        self.parse_manifest(bytes, media_type, digest)
    }

    fn parse_manifest(
        &self,
        bytes: Vec<u8>,
        media_type: String,
        digest: String,
    ) -> Result<Manifest, ImageError> {
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(ImageError::Format(format!(
                "{} is a {media_type}, not an image manifest",
                self.name
            )));
        }
        let parsed = ImageManifest::from_reader(&bytes[..])
            .map_err(|e| ImageError::Format(format!("the manifest of {}: {e}", self.name)))?;
        Ok(Manifest {
            bytes,
            digest,
            media_type,
            parsed,
        })
    }

    async fn raw_manifest(
        &self,
        digest: Option<&str>,
    ) -> Result<(Vec<u8>, String, String), ImageError> {
        match &self.name {
            ImageName::Registry(reference) => {
                let raw = match digest {
                    Some(d) => self.registry.manifest_at(reference, d).await?,
                    None => self.registry.manifest(reference).await?,
                };
                Ok((raw.bytes, raw.media_type, raw.digest))
            }
            ImageName::Layout { dir, tag } => {
                let descriptor = match digest {
                    Some(d) => d.to_string(),
                    None => layout_entry(dir, tag.as_deref())?.digest().to_string(),
                };
                let bytes = read_blob(dir, &descriptor, MAX_MANIFEST_BYTES)?;
                #[derive(serde::Deserialize)]
                struct Typed {
                    #[serde(rename = "mediaType", default)]
                    media_type: Option<String>,
                }
                let media_type = serde_json::from_slice::<Typed>(&bytes)
                    .ok()
                    .and_then(|t| t.media_type)
                    .unwrap_or_else(|| OCI_MANIFEST.to_string());
                Ok((bytes, media_type, descriptor))
            }
        }
    }

    /// A small blob whole (a configuration), at most `limit` bytes, digest-checked.
    pub async fn blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>, ImageError> {
        let digest = descriptor.digest().to_string();
        if descriptor.size() > limit {
            return Err(ImageError::Format(format!(
                "blob {digest} is {} bytes, more than {limit}",
                descriptor.size()
            )));
        }
        match &self.name {
            ImageName::Registry(reference) => {
                Ok(self.registry.blob(reference, &digest, limit).await?)
            }
            ImageName::Layout { dir, .. } => read_blob(dir, &digest, limit),
        }
    }

    /// A blob as a stream of its bytes; the caller checks its digest as it reads.
    pub async fn blob_reader(
        &self,
        descriptor: &Descriptor,
    ) -> Result<Box<dyn Read + Send>, ImageError> {
        let digest = descriptor.digest().to_string();
        match &self.name {
            ImageName::Registry(reference) => {
                let response = self.registry.blob_response(reference, &digest).await?;
                Ok(Box::new(crate::stream::ResponseReader::spawn(response)))
            }
            ImageName::Layout { dir, .. } => {
                let path = blob_path(dir, &digest)?;
                let file =
                    std::fs::File::open(&path).map_err(|source| ImageError::Io { path, source })?;
                Ok(Box::new(file))
            }
        }
    }
}

/// The manifest for this machine among an index's, or its only one.
fn choose_platform(index: &ImageIndex) -> Option<&Descriptor> {
    let manifests = index.manifests();
    if let [only] = manifests.as_slice() {
        return Some(only);
    }
    manifests.iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux" && p.architecture().to_string() == host_arch()
        })
    })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The index entry of a layout's image named `tag` (or its only image).
fn layout_entry(dir: &Path, tag: Option<&str>) -> Result<Descriptor, ImageError> {
    let path = dir.join("index.json");
    let bytes = read_file(&path, MAX_MANIFEST_BYTES)?;
    let index = ImageIndex::from_reader(&bytes[..])
        .map_err(|e| ImageError::Format(format!("{}: {e}", path.display())))?;
    let named = |d: &&Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .is_some_and(|name| Some(name.as_str()) == tag)
    };
    let found = match tag {
        Some(_) => index.manifests().iter().find(named),
        None => match index.manifests().as_slice() {
            [only] => Some(only),
            _ => None,
        },
    };
    found.cloned().ok_or_else(|| {
        ImageError::Format(match tag {
            Some(tag) => format!("the layout {} has no image tagged {tag:?}", dir.display()),
            None => format!(
                "the layout {} holds {} images: name one with oci:DIR:TAG",
                dir.display(),
                index.manifests().len()
            ),
        })
    })
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::Format(format!("{digest:?} is not a sha256 digest")))?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::Format(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn read_blob(dir: &Path, digest: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
    let bytes = read_file(&blob_path(dir, digest)?, limit)?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(ImageError::Digest {
            what: format!("blob {digest} of {}", dir.display()),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

/// Chunks a push sends at once.
const UPLOAD_CHUNK: usize = 8 << 20;

impl Endpoint {
    /// Store the blob `reader` yields (from a blocking thread; `runtime` runs the registry's
    /// requests): its digest and size.
    pub fn put_blob(
        &self,
        runtime: &tokio::runtime::Handle,
        reader: impl Read,
    ) -> Result<(String, u64), ImageError> {
        let mut reader = crate::stream::Hashing::new(reader);
        match &self.name {
            ImageName::Registry(reference) => {
                let mut upload = runtime.block_on(self.registry.start_upload(reference))?;
                loop {
                    let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
                    (&mut reader)
                        .take(UPLOAD_CHUNK as u64)
                        .read_to_end(&mut chunk)
                        .map_err(ImageError::Read)?;
                    if chunk.is_empty() {
                        break;
                    }
                    runtime.block_on(self.registry.upload_chunk(reference, &mut upload, chunk))?;
                }
                let (digest, size) = reader.finish();
                runtime.block_on(self.registry.finish_upload(reference, upload, &digest))?;
                Ok((digest, size))
            }
            ImageName::Layout { dir, .. } => {
                let blobs = dir.join("blobs").join("sha256");
                std::fs::create_dir_all(&blobs).map_err(|source| ImageError::Io {
                    path: blobs.clone(),
                    source,
                })?;
                let mut temp = tempfile_in(&blobs)?;
                std::io::copy(&mut reader, &mut temp.1).map_err(ImageError::Read)?;
                let (digest, size) = reader.finish();
                let path = blob_path(dir, &digest)?;
                std::fs::rename(&temp.0, &path)
                    .map_err(|source| ImageError::Io { path, source })?;
                Ok((digest, size))
            }
        }
    }

    /// Store a small blob (a configuration) whole.
    pub async fn put_small_blob(&self, bytes: Vec<u8>) -> Result<String, ImageError> {
        let digest = sha256_digest(&bytes);
        match &self.name {
            ImageName::Registry(reference) => {
                if !self.registry.has_blob(reference, &digest).await? {
                    let mut upload = self.registry.start_upload(reference).await?;
                    self.registry
                        .upload_chunk(reference, &mut upload, bytes)
                        .await?;
                    self.registry
                        .finish_upload(reference, upload, &digest)
                        .await?;
                }
            }
            ImageName::Layout { dir, .. } => {
                let path = blob_path(dir, &digest)?;
                write_file(&path, &bytes)?;
            }
        }
        Ok(digest)
    }

    /// Store the manifest under the name's tag: its digest.
    pub async fn put_manifest(
        &self,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<String, ImageError> {
        let digest = sha256_digest(&bytes);
        match &self.name {
            ImageName::Registry(reference) => {
                self.registry
                    .put_manifest(reference, reference.manifest_ref(), media_type, bytes)
                    .await?;
            }
            ImageName::Layout { dir, tag } => {
                let size = bytes.len() as u64;
                write_file(&blob_path(dir, &digest)?, &bytes)?;
                write_file(
                    &dir.join("oci-layout"),
                    br#"{"imageLayoutVersion":"1.0.0"}"#,
                )?;
                let index_path = dir.join("index.json");
                let mut manifests = match read_file(&index_path, MAX_MANIFEST_BYTES) {
                    Ok(bytes) => ImageIndex::from_reader(&bytes[..])
                        .map_err(|e| ImageError::Format(format!("{}: {e}", index_path.display())))?
                        .manifests()
                        .clone(),
                    Err(ImageError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Vec::new()
                    }
                    Err(e) => return Err(e),
                };
                manifests.retain(|d| {
                    d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != tag.as_ref()
                });
                let mut entry = Descriptor::new(
                    oci_spec::image::MediaType::from(media_type),
                    size,
                    parse_digest(&digest)?,
                );
                if let Some(tag) = tag {
                    entry.set_annotations(Some([(REF_NAME.to_string(), tag.clone())].into()));
                }
                manifests.push(entry);
                let index = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": manifests,
                });
                write_file(&index_path, index.to_string().as_bytes())?;
            }
        }
        Ok(digest)
    }
}

/// A typed digest from `sha256:…`.
pub(crate) fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, ImageError> {
    digest
        .parse()
        .map_err(|e| ImageError::Format(format!("{digest:?} is not a digest: {e}")))
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File), ImageError> {
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| ImageError::Format("no randomness".into()))?;
    let path = dir.join(format!(".partial-{}", hex::encode(suffix)));
    let file = std::fs::File::create_new(&path).map_err(|source| ImageError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path, file))
}

/// Write `bytes` to `path` whole or not at all (a temporary file renamed over it).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| ImageError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (temp, mut file) = tempfile_in(dir)?;
    std::io::Write::write_all(&mut file, bytes).map_err(|source| ImageError::Io {
        path: temp.clone(),
        source,
    })?;
    std::fs::rename(&temp, path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })
}
