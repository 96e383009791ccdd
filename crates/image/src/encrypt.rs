//! Encrypt an image's layers to recipients, as ocicrypt does: each filesystem layer under a
//! fresh key, its private options wrapped to every JWE recipient and sealed for every key held
//! by the key broker; configuration and clear digests unchanged (the diff IDs still name the
//! uncompressed layers, so a pull checks the decrypted bytes against them).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oci_spec::image::{Descriptor, MediaType};
use zeroize::Zeroizing;

use crate::media::{OCI_CONFIG, OCI_MANIFEST, encrypted_layer_type};
use crate::ocicrypt::cipher::LayerKey;
use crate::ocicrypt::jwe::{self, Recipient};
use crate::ocicrypt::provider::{self, AnnotationPacket, KeyId};
use crate::ocicrypt::{self, AES_256_CTR_HMAC_SHA256, KEYS_JWE, PUBOPTS, PublicOptions};
use crate::registry::MAX_MANIFEST_BYTES;
use crate::stream::Hashing;
use crate::transport::parse_digest;
use crate::{Endpoint, ImageError};

/// Who may open the layers.
#[derive(Debug, Default)]
pub struct Recipients {
    /// Public keys, each a JWE recipient.
    pub jwe: Vec<Recipient>,
    /// Keys held by the key broker: the resource and the KEK itself.
    pub kbs: Vec<(KeyId, Zeroizing<Vec<u8>>)>,
}

/// What an encryption did.
#[derive(Debug, Clone)]
pub struct Encrypted {
    /// The new manifest's digest.
    pub manifest_digest: String,
    /// How many layers were encrypted.
    pub layers: usize,
}

/// Copy the image at `source` to `destination`, its layers encrypted to `recipients`.
pub async fn encrypt(
    source: &Endpoint,
    destination: &Endpoint,
    recipients: Arc<Recipients>,
    progress: Arc<dyn crate::pull::Progress>,
) -> Result<Encrypted, ImageError> {
    if recipients.jwe.is_empty() && recipients.kbs.is_empty() {
        return Err(ImageError::Usage(
            "no recipients: give --recipient jwe:PUBLIC.pem or --recipient kbs:///REPO/TYPE/TAG"
                .into(),
        ));
    }
    let manifest = source.manifest().await?;
    let config = source
        .blob(manifest.parsed.config(), MAX_MANIFEST_BYTES)
        .await?;
    destination.put_small_blob(config).await?;
    let runtime = tokio::runtime::Handle::current();
    let layers = manifest.parsed.layers();
    let mut encrypted_layers = Vec::with_capacity(layers.len());
    let mut count = 0;
    for (index, layer) in layers.iter().enumerate() {
        progress.start(index, layers.len(), layer.digest().as_ref(), layer.size());
        let reader = source.blob_reader(layer).await?;
        let (source_layer, destination, recipients, runtime) = (
            layer.clone(),
            destination.clone(),
            recipients.clone(),
            runtime.clone(),
        );
        let new = tokio::task::spawn_blocking(move || {
            encrypt_layer(&source_layer, reader, &destination, &recipients, &runtime)
        })
        .await
        .map_err(|e| ImageError::Format(format!("encrypting a layer: {e}")))??;
        if new.media_type() != layer.media_type() {
            count += 1;
        }
        encrypted_layers.push(new);
        progress.finish(index);
    }
    let mut parsed = manifest.parsed.clone();
    parsed.set_layers(encrypted_layers);
    parsed.set_media_type(Some(MediaType::ImageManifest));
    // ocicrypt writes OCI manifests: a Docker configuration is carried under the OCI type.
    let mut config = parsed.config().clone();
    config.set_media_type(MediaType::from(OCI_CONFIG));
    parsed.set_config(config);
    let bytes = serde_json::to_vec(&parsed)
        .map_err(|e| ImageError::Format(format!("writing the manifest: {e}")))?;
    let manifest_digest = destination.put_manifest(bytes, OCI_MANIFEST).await?;
    Ok(Encrypted {
        manifest_digest,
        layers: count,
    })
}

/// Encrypt one layer (or copy it when it is not a filesystem layer): its new descriptor.
fn encrypt_layer(
    layer: &Descriptor,
    reader: Box<dyn std::io::Read + Send>,
    destination: &Endpoint,
    recipients: &Recipients,
    runtime: &tokio::runtime::Handle,
) -> Result<Descriptor, ImageError> {
    let digest = layer.digest().to_string();
    let media_type = layer.media_type().to_string();
    let mut clear = Hashing::new(reader);
    let Some(encrypted_type) = encrypted_layer_type(&media_type) else {
        if crate::media::layer_type(&media_type).is_some_and(|t| t.encrypted) {
            return Err(ImageError::Format(format!(
                "layer {digest} is already encrypted"
            )));
        }
        let (new_digest, _) = destination.put_blob(runtime, &mut clear)?;
        check_digest(&digest, &new_digest)?;
        return Ok(layer.clone());
    };
    let key = LayerKey::generate()?;
    let mut cipher = key.encrypt(&mut clear)?;
    let (new_digest, size) = destination.put_blob(runtime, &mut cipher)?;
    let hmac = cipher.hmac().unwrap_or_default().to_vec();
    drop(cipher);
    let (clear_digest, _) = clear.finish();
    check_digest(&digest, &clear_digest)?;

    let private = key.private_options(&digest);
    let private_json = private.to_json();
    let mut annotations: HashMap<String, String> = layer.annotations().clone().unwrap_or_default();
    annotations.retain(|name, _| !name.starts_with(ocicrypt::ENC_PREFIX));
    if !recipients.jwe.is_empty() {
        let jwe = jwe::wrap(&private_json, &recipients.jwe)?;
        annotations.insert(KEYS_JWE.into(), STANDARD.encode(jwe));
    }
    if !recipients.kbs.is_empty() {
        let packets = recipients
            .kbs
            .iter()
            .map(|(kid, kek)| {
                let packet = AnnotationPacket::seal(&private_json, kid, kek)?;
                Ok(STANDARD.encode(serde_json::to_vec(&packet).unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        annotations.insert(provider::ANNOTATION.into(), packets.join(","));
    }
    let public = PublicOptions {
        cipher: AES_256_CTR_HMAC_SHA256.into(),
        hmac,
        cipheroptions: Default::default(),
    };
    annotations.insert(PUBOPTS.into(), ocicrypt::encode_public(&public));
    let mut new = Descriptor::new(
        MediaType::from(encrypted_type.as_str()),
        size,
        parse_digest(&new_digest)?,
    );
    new.set_annotations(Some(annotations));
    Ok(new)
}

fn check_digest(expected: &str, actual: &str) -> Result<(), ImageError> {
    if expected == actual {
        return Ok(());
    }
    Err(ImageError::Digest {
        what: format!("layer {expected} of the source"),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}
