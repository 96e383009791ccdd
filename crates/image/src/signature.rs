//! Signatures, checked against a policy before anything is unpacked.
//!
//! - **Simple signing** (`skopeo copy --sign-by`): an OpenPGP signed message whose literal data
//!   is the payload JSON, found in a "lookaside" store at
//!   `<base>/<repository>@sha256=<hex>/signature-<n>` (n from 1 until one is missing), with
//!   `<base>` from a registries.d directory, as containers/image finds it.
//! - **Sigstore** (cosign's key-based signatures): the payload JSON as a layer of the manifest
//!   tagged `sha256-<hex>.sig` in the image's repository, its signature (ECDSA P-256 over
//!   SHA-256 of the exact payload bytes, base64) in the layer's
//!   `dev.cosignproject.cosign/signature` annotation.
//!
//! Either way the signature is verified over the exact bytes before the payload is parsed
//! (strictly: an unknown or missing critical field refuses it), then its manifest digest must
//! be the pulled manifest's and its reference must satisfy the requirement's identity.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::policy::{Identity, Policy, Requirement, docker_scopes, repository_name};
use crate::registry::MAX_MANIFEST_BYTES;
use crate::{Endpoint, ImageError, ImageName, Manifest, Reference};

/// The largest signature or payload read.
const MAX_SIGNATURE_BYTES: u64 = 4 << 20;
/// The most signatures read for one image.
const MAX_SIGNATURES: usize = 64;
const SIMPLE_TYPE: &str = "atomic container signature";
const SIGSTORE_TYPE: &str = "cosign container image signature";
const SIGSTORE_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGSTORE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Where simple signatures are looked up: registries.d's `lookaside` URLs by scope.
#[derive(Debug, Clone, Default)]
pub struct Lookaside {
    default: Option<String>,
    scoped: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RegistriesFile {
    #[serde(rename = "default-docker", default)]
    default_docker: Option<Storage>,
    #[serde(default)]
    docker: BTreeMap<String, Storage>,
}

#[derive(Deserialize)]
struct Storage {
    #[serde(default)]
    lookaside: Option<String>,
    #[serde(default)]
    sigstore: Option<String>,
}

impl Storage {
    fn url(self) -> Option<String> {
        self.lookaside.or(self.sigstore)
    }
}

impl Lookaside {
    /// Read every `*.yaml` of a registries.d directory.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let io = |source| ImageError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut lookaside = Self::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
            let file: RegistriesFile = serde_yaml_ng::from_str(&text)
                .map_err(|e| ImageError::Format(format!("{}: {e}", path.display())))?;
            if let Some(url) = file.default_docker.and_then(Storage::url) {
                lookaside.default = Some(url);
            }
            for (scope, storage) in file.docker {
                if let Some(url) = storage.url() {
                    lookaside.scoped.insert(scope, url);
                }
            }
        }
        Ok(lookaside)
    }

    fn base_for(&self, reference: &Reference) -> Option<&str> {
        docker_scopes(reference)
            .iter()
            .find_map(|scope| self.scoped.get(scope))
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}

/// What the policy decided.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The scope whose requirements applied.
    pub scope: String,
    /// How each requirement was met.
    pub reasons: Vec<String>,
}

/// Check `manifest` of `source` against `policy`: the decision, or why it is refused. `now`
/// (seconds since the epoch) is when signatures must be valid.
pub async fn check(
    policy: &Policy,
    source: &Endpoint,
    manifest: &Manifest,
    lookaside: &Lookaside,
    now: u64,
) -> Result<Decision, ImageError> {
    let (requirements, scope) = policy.requirements_for(&source.name);
    let refused = |reason: String| ImageError::Refused {
        image: source.name.to_string(),
        reason,
    };
    if requirements.is_empty() {
        return Err(refused(format!("{scope} lists no requirements")));
    }
    let mut simple: Option<Vec<Vec<u8>>> = None;
    let mut sigstore: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
    let mut reasons = Vec::new();
    for requirement in requirements {
        let reason = match requirement {
            Requirement::InsecureAcceptAnything {} => {
                "accepted without a signature (insecureAcceptAnything)".to_string()
            }
            Requirement::Reject {} => {
                return Err(refused(format!(
                    "{scope} rejects it (give a policy that accepts it, e.g. one requiring its signature)"
                )));
            }
            Requirement::SignedBy {
                key_path,
                key_paths,
                key_data,
                signed_identity,
                ..
            } => {
                let keyrings = keyrings(key_path, key_paths, key_data)?;
                if simple.is_none() {
                    simple = Some(simple_signatures(source, manifest, lookaside).await?);
                }
                let blobs = simple.as_deref().unwrap_or_default();
                accept_any(blobs.iter(), |blob| {
                    let (signer, payload) = verify_openpgp(&keyrings, blob, now)?;
                    check_payload(
                        &payload,
                        SIMPLE_TYPE,
                        manifest,
                        &source.name,
                        signed_identity,
                    )?;
                    Ok(format!("signed by GPG key {signer}"))
                })
                .map_err(|e| refused(format!("signedBy: {e}")))?
            }
            Requirement::SigstoreSigned {
                key_path,
                key_data,
                signed_identity,
            } => {
                let key = public_key(key_path, key_data)?;
                if sigstore.is_none() {
                    sigstore = Some(sigstore_signatures(source, manifest).await?);
                }
                let signatures = sigstore.as_deref().unwrap_or_default();
                accept_any(signatures.iter(), |(payload, signature)| {
                    verify_sigstore(&key, payload, signature)?;
                    check_payload(
                        payload,
                        SIGSTORE_TYPE,
                        manifest,
                        &source.name,
                        signed_identity,
                    )?;
                    Ok("signed with the sigstore key".to_string())
                })
                .map_err(|e| refused(format!("sigstoreSigned: {e}")))?
            }
        };
        reasons.push(reason);
    }
    Ok(Decision { scope, reasons })
}

/// How many signatures the image has: simple signatures in its lookaside store, sigstore
/// attachments in its repository (neither verified: that is the policy's job).
pub async fn count(
    source: &Endpoint,
    manifest: &Manifest,
    lookaside: &Lookaside,
) -> Result<(usize, usize), ImageError> {
    let simple = simple_signatures(source, manifest, lookaside).await?;
    let sigstore = sigstore_signatures(source, manifest).await?;
    Ok((simple.len(), sigstore.len()))
}

/// The first signature `verify` accepts, or every reason they were not.
fn accept_any<T>(
    signatures: impl Iterator<Item = T>,
    verify: impl Fn(T) -> Result<String, String>,
) -> Result<String, String> {
    let mut reasons = Vec::new();
    for signature in signatures {
        match verify(signature) {
            Ok(accepted) => return Ok(accepted),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(match reasons.len() {
        0 => "a signature is required, but the image has none".into(),
        1 => reasons.remove(0),
        _ => format!("none of its signatures is accepted: {}", reasons.join("; ")),
    })
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn keyrings(
    key_path: &Option<PathBuf>,
    key_paths: &Option<Vec<PathBuf>>,
    key_data: &Option<String>,
) -> Result<Vec<Vec<u8>>, ImageError> {
    if let Some(data) = key_data {
        return Ok(vec![STANDARD.decode(data).map_err(|e| {
            ImageError::Format(format!("the signature policy: keyData is not base64: {e}"))
        })?]);
    }
    key_path
        .iter()
        .chain(key_paths.iter().flatten())
        .map(|p| read_key_file(p))
        .collect()
}

fn public_key(
    key_path: &Option<PathBuf>,
    key_data: &Option<String>,
) -> Result<Vec<u8>, ImageError> {
    let pem = match (key_path, key_data) {
        (Some(path), _) => read_key_file(path)?,
        (None, Some(data)) => STANDARD.decode(data).map_err(|e| {
            ImageError::Format(format!("the signature policy: keyData is not base64: {e}"))
        })?,
        (None, None) => Vec::new(),
    };
    let text = String::from_utf8_lossy(&pem);
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD
        .decode(body)
        .ok()
        .filter(|der| !der.is_empty())
        .ok_or_else(|| {
            ImageError::Format(
                "the signature policy: the sigstore key is not a PEM PUBLIC KEY".into(),
            )
        })
}

/// Verify an OpenPGP signed message with any key of `keyrings`: the signer's fingerprint and
/// the payload.
fn verify_openpgp(
    keyrings: &[Vec<u8>],
    blob: &[u8],
    now: u64,
) -> Result<(String, Vec<u8>), String> {
    use pgp::composed::{Deserializable as _, Message, SignedPublicKey};
    use pgp::types::KeyDetails as _;

    let mut keys = Vec::new();
    for keyring in keyrings {
        let (parsed, _) = SignedPublicKey::from_reader_many(&keyring[..])
            .map_err(|e| format!("the policy's keyring does not parse: {e}"))?;
        for key in parsed {
            keys.push(key.map_err(|e| format!("the policy's keyring does not parse: {e}"))?);
        }
    }
    let mut message = Message::from_bytes(blob)
        .and_then(Message::decompress)
        .map_err(|e| format!("a signature is not an OpenPGP message: {e}"))?;
    // Exactly one signature, as gpg requires (the reader may know the count before the data
    // or only once it is read: both are asked).
    let one_signature =
        matches!(&message, Message::Signed { reader, .. } if reader.num_signatures() == 1);
    if !message.is_signed() {
        return Err("a signature is not a signed OpenPGP message".into());
    }
    let mut payload = Vec::new();
    (&mut message)
        .take(MAX_SIGNATURE_BYTES)
        .read_to_end(&mut payload)
        .map_err(|e| format!("a signature does not read: {e}"))?;
    if !one_signature
        && !matches!(&message, Message::Signed { reader, .. } if reader.num_signatures() == 1)
    {
        return Err("a signature carries more than one OpenPGP signature".into());
    }
    for key in &keys {
        let candidates = std::iter::once(&key.primary_key as &dyn pgp::types::VerifyingKey).chain(
            key.public_subkeys
                .iter()
                .map(|s| &s.key as &dyn pgp::types::VerifyingKey),
        );
        for candidate in candidates {
            let Ok(signature) = message.verify(candidate) else {
                continue;
            };
            if signature.typ() != Some(pgp::packet::SignatureType::Binary) {
                return Err("the OpenPGP signature is not over binary data".into());
            }
            if let (Some(created), Some(lifetime)) =
                (signature.created(), signature.signature_expiration_time())
            {
                let expires = u64::from(created.as_secs()) + u64::from(lifetime.as_secs());
                if lifetime.as_secs() != 0 && expires <= now {
                    return Err("the OpenPGP signature has expired".into());
                }
            }
            return Ok((format!("{:X}", key.primary_key.fingerprint()), payload));
        }
    }
    Err("no key of the policy made this signature".into())
}

/// Verify a sigstore signature (ECDSA P-256 or P-384 with SHA-256, RSA PKCS#1 v1.5 SHA-256, or
/// Ed25519) over the exact payload bytes.
fn verify_sigstore(spki: &[u8], payload: &[u8], signature: &[u8]) -> Result<(), String> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA256_ASN1, ED25519, RSA_PKCS1_2048_8192_SHA256,
        UnparsedPublicKey, VerificationAlgorithm,
    };
    let algorithms: [&'static dyn VerificationAlgorithm; 4] = [
        &ECDSA_P256_SHA256_ASN1,
        &ECDSA_P384_SHA256_ASN1,
        &RSA_PKCS1_2048_8192_SHA256,
        &ED25519,
    ];
    let verified = algorithms.iter().any(|algorithm| {
        UnparsedPublicKey::new(*algorithm, spki)
            .verify(payload, signature)
            .is_ok()
    });
    if verified {
        Ok(())
    } else {
        Err("the sigstore signature does not verify with the policy's key".into())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)]
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: SignedIdentity,
    image: SignedImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// A verified payload: its type, its digest, its identity.
fn check_payload(
    payload: &[u8],
    kind: &str,
    manifest: &Manifest,
    name: &ImageName,
    identity: &Option<Identity>,
) -> Result<(), String> {
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("a signed payload is not a signature claim: {e}"))?;
    if payload.critical.kind != kind {
        return Err(format!(
            "a signed payload is of type {:?}, not {kind:?}",
            payload.critical.kind
        ));
    }
    if payload.critical.image.digest != manifest.digest {
        return Err(format!(
            "a signature is for manifest {}, not this one ({})",
            payload.critical.image.digest, manifest.digest
        ));
    }
    let signed = &payload.critical.identity.docker_reference;
    if identity_matches(
        identity
            .as_ref()
            .unwrap_or(&Identity::MatchRepoDigestOrExact {}),
        name,
        signed,
    ) {
        Ok(())
    } else {
        Err(format!(
            "a signature for {signed} is not accepted for {name}"
        ))
    }
}

/// A reference's canonical text and name (`registry/repository`), and whether it has a tag or
/// digest.
fn canonical(text: &str) -> Option<(String, String, bool)> {
    let reference = Reference::parse(text).ok()?;
    let name = repository_name(&reference);
    let explicit = text.contains('@') || text.rsplit('/').next().is_some_and(|l| l.contains(':'));
    let full = match (&reference.digest, &reference.tag) {
        (Some(d), _) => format!("{name}@{d}"),
        (None, Some(t)) if explicit => format!("{name}:{t}"),
        _ => name.clone(),
    };
    Some((full, name, explicit))
}

fn identity_matches(identity: &Identity, pulled: &ImageName, signed: &str) -> bool {
    let Some((signed_full, signed_name, signed_explicit)) = canonical(signed) else {
        return false;
    };
    let intended = match pulled {
        ImageName::Registry(reference) => canonical(&reference.to_string()),
        ImageName::Layout { .. } => None,
    };
    let repo_digest_or_exact = |intended: &(String, String, bool), by_digest: bool| {
        signed_explicit
            && if by_digest {
                signed_name == intended.1
            } else {
                signed_full == intended.0
            }
    };
    let pulled_by_digest = matches!(pulled, ImageName::Registry(r) if r.digest.is_some());
    match identity {
        Identity::MatchExact {} => intended.is_some_and(|i| signed_explicit && signed_full == i.0),
        Identity::MatchRepoDigestOrExact {} => {
            intended.is_some_and(|i| repo_digest_or_exact(&i, pulled_by_digest))
        }
        Identity::MatchRepository {} => intended.is_some_and(|i| signed_name == i.1),
        Identity::ExactReference { docker_reference } => canonical(docker_reference)
            .is_some_and(|(full, _, explicit)| explicit && signed_explicit && full == signed_full),
        Identity::ExactRepository { docker_repository } => {
            canonical(docker_repository).is_some_and(|(_, name, _)| name == signed_name)
        }
        Identity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let Some(intended) = intended else {
                return false;
            };
            if intended.1 != *prefix && !intended.1.starts_with(&format!("{prefix}/")) {
                return repo_digest_or_exact(&intended, pulled_by_digest);
            }
            let remapped = intended.0.replacen(prefix.as_str(), signed_prefix, 1);
            canonical(&remapped).is_some_and(|r| repo_digest_or_exact(&r, pulled_by_digest))
        }
    }
}

/// The simple signatures of the image in its lookaside store.
async fn simple_signatures(
    source: &Endpoint,
    manifest: &Manifest,
    lookaside: &Lookaside,
) -> Result<Vec<Vec<u8>>, ImageError> {
    let ImageName::Registry(reference) = &source.name else {
        return Ok(Vec::new()); // OCI layouts hold no simple signatures
    };
    let Some(base) = lookaside.base_for(reference) else {
        return Ok(Vec::new());
    };
    let hex = manifest.digest.trim_start_matches("sha256:");
    let mut blobs = Vec::new();
    for n in 1..=MAX_SIGNATURES {
        let url = format!(
            "{}/{}@sha256={hex}/signature-{n}",
            base.trim_end_matches('/'),
            reference.repository
        );
        let blob = match url.strip_prefix("file://") {
            Some(path) => match std::fs::File::open(path) {
                Ok(file) => {
                    let mut blob = Vec::new();
                    file.take(MAX_SIGNATURE_BYTES)
                        .read_to_end(&mut blob)
                        .map_err(|source| ImageError::Io {
                            path: path.into(),
                            source,
                        })?;
                    Some(blob)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(ImageError::Io {
                        path: path.into(),
                        source,
                    });
                }
            },
            None => source.registry().fetch(&url, MAX_SIGNATURE_BYTES).await?,
        };
        match blob {
            Some(blob) => blobs.push(blob),
            None => break,
        }
    }
    Ok(blobs)
}

/// The sigstore signatures attached to the image: (payload, signature) pairs.
async fn sigstore_signatures(
    source: &Endpoint,
    manifest: &Manifest,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ImageError> {
    let ImageName::Registry(reference) = &source.name else {
        return Ok(Vec::new());
    };
    let tag = manifest.digest.replacen(':', "-", 1) + ".sig";
    let attachment = match source.registry().manifest_at(reference, &tag).await {
        Ok(raw) => raw,
        Err(crate::RegistryError::Status { status: 404, .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let parsed = oci_spec::image::ImageManifest::from_reader(&attachment.bytes[..])
        .map_err(|e| ImageError::Format(format!("the signature manifest {tag}: {e}")))?;
    let mut signatures = Vec::new();
    for layer in parsed.layers().iter().take(MAX_SIGNATURES) {
        if layer.media_type().to_string() != SIGSTORE_LAYER {
            continue;
        }
        let Some(signature) = layer
            .annotations()
            .as_ref()
            .and_then(|a| a.get(SIGSTORE_ANNOTATION))
            .and_then(|b64| STANDARD.decode(b64).ok())
        else {
            continue;
        };
        let payload = source
            .blob(layer, MAX_MANIFEST_BYTES.min(MAX_SIGNATURE_BYTES))
            .await?;
        signatures.push((payload, signature));
    }
    Ok(signatures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ImageName {
        ImageName::parse(text).unwrap()
    }

    #[test]
    fn identities_match_as_containers_image_matches_them() {
        let tagged = name("docker://reg.example.com/team/app:1");
        let by_digest = name(&format!(
            "docker://reg.example.com/team/app@sha256:{}",
            "a".repeat(64)
        ));
        let default = Identity::MatchRepoDigestOrExact {};
        assert!(identity_matches(
            &default,
            &tagged,
            "reg.example.com/team/app:1"
        ));
        assert!(!identity_matches(
            &default,
            &tagged,
            "reg.example.com/team/app:2"
        ));
        assert!(!identity_matches(
            &default,
            &tagged,
            "reg.example.com/team/app"
        ));
        assert!(identity_matches(
            &default,
            &by_digest,
            "reg.example.com/team/app:2"
        ));
        assert!(identity_matches(
            &Identity::MatchRepository {},
            &tagged,
            "reg.example.com/team/app"
        ));
        assert!(!identity_matches(
            &Identity::MatchRepository {},
            &tagged,
            "reg.example.com/team/other"
        ));
        assert!(identity_matches(
            &Identity::MatchExact {},
            &tagged,
            "reg.example.com/team/app:1"
        ));
        let repo = Identity::ExactRepository {
            docker_repository: "reg.example.com/team/app".into(),
        };
        assert!(identity_matches(
            &repo,
            &name("docker://mirror.local/x:1"),
            "reg.example.com/team/app"
        ));
        let remap = Identity::RemapIdentity {
            prefix: "mirror.local/team".into(),
            signed_prefix: "reg.example.com/team".into(),
        };
        assert!(identity_matches(
            &remap,
            &name("docker://mirror.local/team/app:1"),
            "reg.example.com/team/app:1"
        ));
        assert!(!identity_matches(
            &remap,
            &name("docker://mirror.local/team/app:1"),
            "mirror.local/team/app:2"
        ));
        // Docker Hub's names, as containers/image writes them.
        assert!(identity_matches(
            &default,
            &name("docker://busybox:1"),
            "docker.io/library/busybox:1"
        ));
    }
}
