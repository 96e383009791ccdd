//! Pulls over the OCI distribution API: a manifest, then the blobs it names, each checked
//! against its digest before it is handed out. Anonymous bearer tokens are fetched when the
//! registry asks for them (`WWW-Authenticate: Bearer realm=…,service=…`). Plain HTTP only for a
//! registry on this machine, or when the caller allows it explicitly.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use serde::Deserialize;

use crate::Reference;
use crate::reference::is_sha256_digest;

/// The largest manifest a pull reads.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
                              application/vnd.docker.distribution.manifest.v2+json";

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The registry could not be reached.
    #[error("{url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// What to do about it.
        hint: &'static str,
    },
    /// What arrived is larger than it may be.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// What arrived does not hash to its digest.
    #[error("{what} does not match its digest {expected} (got {actual}): refusing it")]
    DigestMismatch {
        /// What.
        what: String,
        /// The digest it should have.
        expected: String,
        /// Its SHA-256.
        actual: String,
    },
    /// The manifest does not parse or lacks what is asked of it.
    #[error("the manifest of {reference}: {reason}")]
    Manifest {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain HTTP to a registry that is not on this machine.
    #[error(
        "{registry} is not on this machine: pulls use HTTPS unless --insecure-registry names it"
    )]
    Insecure {
        /// The registry.
        registry: String,
    },
}

/// A pulled artifact layer.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The layer's bytes, digest-checked.
    pub bytes: Vec<u8>,
    /// The manifest's digest (`sha256:…`): what the reference resolved to.
    pub manifest_digest: String,
    /// The layer's digest.
    pub layer_digest: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    insecure: Vec<String>,
}

impl Registry {
    /// A client trusting the web PKI; `insecure` registries (host:port) may be spoken to in
    /// plain HTTP, as may any on a loopback address.
    pub fn new(insecure: &[String]) -> Result<Self, RegistryError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Self {
            http,
            insecure: insecure.to_vec(),
        })
    }

    fn base(&self, reference: &Reference) -> String {
        let plain = reference.is_loopback() || self.insecure.contains(&reference.registry);
        let scheme = if plain { "http" } else { "https" };
        format!(
            "{scheme}://{}/v2/{}",
            reference.registry, reference.repository
        )
    }

    /// Pull the one layer of `media_type` from the artifact `reference` names, at most `limit`
    /// bytes, checking the manifest (when named by digest) and the layer against their digests.
    pub async fn pull_layer(
        &self,
        reference: &Reference,
        media_type: &str,
        limit: u64,
    ) -> Result<Pulled, RegistryError> {
        let base = self.base(reference);
        if base.starts_with("http:")
            && !reference.is_loopback()
            && !self.insecure.contains(&reference.registry)
        {
            return Err(RegistryError::Insecure {
                registry: reference.registry.clone(),
            });
        }
        let url = format!("{base}/manifests/{}", reference.manifest_ref());
        let (manifest_bytes, token) = self
            .get(
                &url,
                Some(MANIFEST_TYPES),
                None,
                reference,
                MAX_MANIFEST_BYTES,
            )
            .await?;
        let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
        if let Some(expected) = &reference.digest
            && *expected != manifest_digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("the manifest of {reference}"),
                expected: expected.clone(),
                actual: manifest_digest,
            });
        }
        let bad = |reason: String| RegistryError::Manifest {
            reference: reference.to_string(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| bad(e.to_string()))?;
        let mut layers = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == media_type);
        let (Some(layer), None) = (layers.next(), layers.next()) else {
            return Err(bad(format!("it must have exactly one {media_type} layer")));
        };
        if !is_sha256_digest(&layer.digest) {
            return Err(bad(format!(
                "layer digest {:?} is not sha256",
                layer.digest
            )));
        }
        if layer.size > limit {
            return Err(RegistryError::TooLarge {
                what: format!("layer {}", layer.digest),
                limit,
            });
        }
        let url = format!("{base}/blobs/{}", layer.digest);
        let (bytes, _) = self.get(&url, None, token, reference, layer.size).await?;
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        if actual != layer.digest || bytes.len() as u64 != layer.size {
            return Err(RegistryError::DigestMismatch {
                what: format!("layer of {reference}"),
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(Pulled {
            bytes,
            manifest_digest,
            layer_digest: layer.digest.clone(),
        })
    }

    /// GET `url` (at most `limit` bytes), fetching an anonymous token once if the registry asks
    /// for one; returns the body and the token used.
    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        token: Option<String>,
        reference: &Reference,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let mut token = token;
        for attempt in 0..2 {
            let mut request = self.http.get(url);
            if let Some(accept) = accept {
                request = request.header(reqwest::header::ACCEPT, accept);
            }
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let mut response =
                request
                    .send()
                    .await
                    .map_err(|source| RegistryError::Unreachable {
                        url: url.to_string(),
                        source,
                    })?;
            let status = response.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                token = Some(self.token(&challenge, reference).await?);
                continue;
            }
            if status != 200 {
                let hint = match status {
                    401 | 403 => ": the registry refuses anonymous pulls of it",
                    404 => ": no such repository, tag or blob",
                    _ => "",
                };
                return Err(RegistryError::Status {
                    url: url.to_string(),
                    status,
                    hint,
                });
            }
            let too_large = || RegistryError::TooLarge {
                what: url.to_string(),
                limit,
            };
            if response.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) =
                response
                    .chunk()
                    .await
                    .map_err(|source| RegistryError::Unreachable {
                        url: url.to_string(),
                        source,
                    })?
            {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((body, token));
        }
        Err(RegistryError::Status {
            url: url.to_string(),
            status: 401,
            hint: ": the registry refused the token it issued",
        })
    }

    /// An anonymous pull token from the realm a `Bearer` challenge names.
    async fn token(&self, challenge: &str, reference: &Reference) -> Result<String, RegistryError> {
        let refused = |hint| RegistryError::Status {
            url: reference.to_string(),
            status: 401,
            hint,
        };
        let params = challenge
            .strip_prefix("Bearer ")
            .ok_or_else(|| refused(": the registry wants credentials other than a bearer token"))?;
        let field = |name: &str| {
            params.split(',').find_map(|part| {
                let (key, value) = part.trim().split_once('=')?;
                (key == name).then(|| value.trim_matches('"').to_string())
            })
        };
        let realm = field("realm").ok_or_else(|| refused(": its challenge names no realm"))?;
        let mut query = vec![("scope", format!("repository:{}:pull", reference.repository))];
        if let Some(service) = field("service") {
            query.push(("service", service));
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let response = self
            .http
            .get(&realm)
            .query(&query)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: realm.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(refused(": its token service refused an anonymous pull"));
        }
        let token: Token = response
            .json()
            .await
            .map_err(|source| RegistryError::Unreachable { url: realm, source })?;
        token
            .token
            .or(token.access_token)
            .ok_or_else(|| refused(": its token service answered without a token"))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut context = Context::new(&SHA256);
    context.update(bytes);
    hex::encode(context.finish())
}
