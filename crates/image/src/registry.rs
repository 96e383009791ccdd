//! The OCI distribution API: manifests and blobs, pulled and pushed. Tokens are fetched when
//! the registry asks for them (`WWW-Authenticate: Bearer realm=…,service=…`), anonymously or
//! with the credentials given, one per repository and access. Plain HTTP only for a registry
//! on this machine, or when the caller allows it explicitly. What is pulled is bounded and
//! digest-checked: a manifest in memory, a blob as it streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::Reference;
use crate::reference::is_sha256_digest;

/// The largest manifest or configuration a pull reads.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a registry may leave a request without an answer, or a body without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The manifest types a pull accepts.
pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
                                  application/vnd.oci.image.index.v1+json, \
                                  application/vnd.docker.distribution.manifest.v2+json, \
                                  application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a registry operation failed.
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
        "{registry} is not on this machine: registries are spoken to over HTTPS unless \
         --insecure-registry names it"
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

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// Its bytes, exactly (what its digest is of).
    pub bytes: Vec<u8>,
    /// Its media type, from the registry's `Content-Type` or its own `mediaType`.
    pub media_type: String,
    /// `sha256:` of its bytes.
    pub digest: String,
}

#[derive(Deserialize)]
struct ArtifactManifest {
    #[serde(default)]
    layers: Vec<ArtifactLayer>,
}

#[derive(Deserialize)]
struct ArtifactLayer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// Pull or push, for a repository's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Access {
    Pull,
    Push,
}

impl Access {
    fn scope(self, repository: &str) -> String {
        match self {
            Self::Pull => format!("repository:{repository}:pull"),
            Self::Push => format!("repository:{repository}:pull,push"),
        }
    }
}

/// Credentials for a registry's token service or basic authentication.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic,
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    insecure: Vec<String>,
    credentials: Option<Credentials>,
    tokens: Arc<TokenCache>,
}

/// How each (registry, repository, access) authenticates, once learned.
type TokenCache = Mutex<HashMap<(String, String, Access), AuthSlot>>;

#[derive(Clone)]
struct AuthSlot(Auth);

impl std::fmt::Debug for AuthSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSlot(..)")
    }
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
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Self {
            http,
            insecure: insecure.to_vec(),
            credentials: None,
            tokens: Arc::default(),
        })
    }

    /// Use `credentials` where a registry asks for them.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    fn base(&self, reference: &Reference) -> String {
        let plain = reference.is_loopback() || self.insecure.contains(&reference.registry);
        let scheme = if plain { "http" } else { "https" };
        format!(
            "{scheme}://{}/v2/{}",
            reference.registry, reference.repository
        )
    }

    /// The manifest `reference` names (by tag or digest), at most [`MAX_MANIFEST_BYTES`],
    /// checked against the digest when the reference has one.
    pub async fn manifest(&self, reference: &Reference) -> Result<RawManifest, RegistryError> {
        self.manifest_at(reference, reference.manifest_ref()).await
    }

    /// The manifest `reference`'s repository holds at `tag_or_digest`.
    pub async fn manifest_at(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
    ) -> Result<RawManifest, RegistryError> {
        let url = format!("{}/manifests/{tag_or_digest}", self.base(reference));
        let response = self
            .send(reference, Access::Pull, &url, |r| {
                r.get(&url).header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string());
        let bytes = read_bounded(response, &url, MAX_MANIFEST_BYTES).await?;
        let digest = sha256_digest(&bytes);
        if is_sha256_digest(tag_or_digest) && tag_or_digest != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("the manifest of {reference}"),
                expected: tag_or_digest.to_string(),
                actual: digest,
            });
        }
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
        }
        let own = serde_json::from_slice::<Typed>(&bytes)
            .ok()
            .and_then(|t| t.media_type);
        let media_type = own
            .or(content_type)
            .unwrap_or_else(|| crate::media::OCI_MANIFEST.to_string());
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// A small blob (a configuration), whole, at most `limit` bytes, digest-checked.
    pub async fn blob(
        &self,
        reference: &Reference,
        digest: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let response = self.blob_response(reference, digest).await?;
        let url = response.url().to_string();
        let bytes = read_bounded(response, &url, limit).await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob of {reference}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The response whose body is the blob `digest`; the caller streams and checks it.
    pub async fn blob_response(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Response, RegistryError> {
        if !is_sha256_digest(digest) {
            return Err(RegistryError::Manifest {
                reference: reference.to_string(),
                reason: format!("blob digest {digest:?} is not sha256"),
            });
        }
        let url = format!("{}/blobs/{digest}", self.base(reference));
        self.send(reference, Access::Pull, &url, |r| r.get(&url))
            .await
    }

    /// GET a URL that is not a registry's (a signature store), at most `limit` bytes: `None`
    /// when it is not there.
    pub async fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, RegistryError> {
        let response = send(self.http.get(url), url).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => read_bounded(response, url, limit).await.map(Some),
            status => Err(RegistryError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                hint: "",
            }),
        }
    }

    /// Whether the repository already holds blob `digest`.
    pub async fn has_blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base(reference));
        match self
            .send(reference, Access::Push, &url, |r| r.head(&url))
            .await
        {
            Ok(_) => Ok(true),
            Err(RegistryError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Start a blob upload: the session to send chunks to.
    pub async fn start_upload(&self, reference: &Reference) -> Result<Upload, RegistryError> {
        let url = format!("{}/blobs/uploads/", self.base(reference));
        let response = self
            .send(reference, Access::Push, &url, |r| {
                r.post(&url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        let location = self.location(&response, &url)?;
        Ok(Upload {
            location,
            offset: 0,
        })
    }

    /// Send the next chunk of an upload.
    pub async fn upload_chunk(
        &self,
        reference: &Reference,
        upload: &mut Upload,
        chunk: Vec<u8>,
    ) -> Result<(), RegistryError> {
        // Cheap to clone when the registry asks for a token and the request is sent again.
        let chunk = bytes::Bytes::from(chunk);
        if chunk.is_empty() {
            return Ok(());
        }
        let end = upload.offset + chunk.len() as u64 - 1;
        let range = format!("{}-{end}", upload.offset);
        let url = upload.location.clone();
        let response = self
            .send(reference, Access::Push, &upload.location, |r| {
                r.request(Method::PATCH, &url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, range.clone())
                    .body(chunk.clone())
            })
            .await?;
        upload.location = self.location(&response, &upload.location)?;
        upload.offset = end + 1;
        Ok(())
    }

    /// Finish an upload as blob `digest`.
    pub async fn finish_upload(
        &self,
        reference: &Reference,
        upload: Upload,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let separator = if upload.location.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}digest={digest}", upload.location);
        self.send(reference, Access::Push, &url, |r| {
            r.put(&url).header(CONTENT_LENGTH, "0")
        })
        .await
        .map(drop)
    }

    /// Push a manifest under `tag_or_digest`.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/manifests/{tag_or_digest}", self.base(reference));
        self.send(reference, Access::Push, &url, |r| {
            r.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(bytes.clone())
        })
        .await
        .map(drop)
    }

    /// Pull the one layer of `media_type` from the artifact `reference` names, at most `limit`
    /// bytes, checking the manifest (when named by digest) and the layer against their digests.
    pub async fn pull_layer(
        &self,
        reference: &Reference,
        media_type: &str,
        limit: u64,
    ) -> Result<Pulled, RegistryError> {
        let manifest = self.manifest(reference).await?;
        let bad = |reason: String| RegistryError::Manifest {
            reference: reference.to_string(),
            reason,
        };
        let parsed: ArtifactManifest =
            serde_json::from_slice(&manifest.bytes).map_err(|e| bad(e.to_string()))?;
        let mut layers = parsed.layers.iter().filter(|l| l.media_type == media_type);
        let (Some(layer), None) = (layers.next(), layers.next()) else {
            return Err(bad(format!("it must have exactly one {media_type} layer")));
        };
        if layer.size > limit {
            return Err(RegistryError::TooLarge {
                what: format!("layer {}", layer.digest),
                limit,
            });
        }
        let bytes = self.blob(reference, &layer.digest, layer.size).await?;
        Ok(Pulled {
            bytes,
            manifest_digest: manifest.digest,
            layer_digest: layer.digest.clone(),
        })
    }

    fn location(&self, response: &Response, url: &str) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
                hint: ": the registry gave no upload location",
            })?;
        // The location may be relative to the registry.
        let base = response.url();
        base.join(location)
            .map(|u| u.to_string())
            .map_err(|_| RegistryError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
                hint: ": the registry gave an upload location that is not a URL",
            })
    }

    /// Send a request built by `build`, authenticating once if the registry asks; an error
    /// for any status but success.
    async fn send(
        &self,
        reference: &Reference,
        access: Access,
        url: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        if url.starts_with("http:")
            && !reference.is_loopback()
            && !self.insecure.contains(&reference.registry)
        {
            return Err(RegistryError::Insecure {
                registry: reference.registry.clone(),
            });
        }
        let key = (
            reference.registry.clone(),
            reference.repository.clone(),
            access,
        );
        for attempt in 0..2 {
            let auth = self
                .tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned();
            let mut request = build(&self.http);
            request = match (auth, &self.credentials) {
                (Some(AuthSlot(Auth::Bearer(token))), _) => request.bearer_auth(token),
                (Some(AuthSlot(Auth::Basic)), Some(c)) => {
                    request.basic_auth(&c.username, Some(c.password.as_str()))
                }
                _ => request,
            };
            let response = send(request, url).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let auth = self.authenticate(&challenge, reference, access).await?;
                self.tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone(), AuthSlot(auth));
                continue;
            }
            if !status.is_success() {
                let hint = match (status.as_u16(), access) {
                    (401 | 403, Access::Pull) => {
                        ": the registry refuses this pull (give credentials with --creds)"
                    }
                    (401 | 403, Access::Push) => {
                        ": the registry refuses this push (give credentials with --creds)"
                    }
                    (404, _) => ": no such repository, tag or blob",
                    (416, _) => ": the registry refused the upload's byte range",
                    _ => "",
                };
                return Err(RegistryError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    hint,
                });
            }
            return Ok(response);
        }
        Err(RegistryError::Status {
            url: url.to_string(),
            status: 401,
            hint: ": the registry refused the credentials it asked for",
        })
    }

    /// Answer a challenge: a token from the realm a `Bearer` challenge names (with the
    /// credentials, when given), or basic authentication.
    async fn authenticate(
        &self,
        challenge: &str,
        reference: &Reference,
        access: Access,
    ) -> Result<Auth, RegistryError> {
        let refused = |hint| RegistryError::Status {
            url: reference.to_string(),
            status: 401,
            hint,
        };
        if challenge.starts_with("Basic") {
            return match self.credentials {
                Some(_) => Ok(Auth::Basic),
                None => Err(refused(
                    ": the registry wants credentials: give them with --creds",
                )),
            };
        }
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
        let mut query = vec![("scope", access.scope(&reference.repository))];
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
        let mut request = self.http.get(&realm).query(&query);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(c.password.as_str()));
        }
        let response = send(request, &realm).await?;
        if !response.status().is_success() {
            return Err(refused(
                ": its token service refused (give credentials with --creds)",
            ));
        }
        let body = read_bounded(response, &realm, 64 << 10).await?;
        let token: Token = serde_json::from_slice(&body).map_err(|_| {
            refused(": its token service answered with something else than a token")
        })?;
        token
            .token
            .or(token.access_token)
            .map(Auth::Bearer)
            .ok_or_else(|| refused(": its token service answered without a token"))
    }
}

/// A blob upload in progress.
#[derive(Debug)]
pub struct Upload {
    location: String,
    offset: u64,
}

/// Send `request` to `url`: a transport failure says where it went.
async fn send(request: RequestBuilder, url: &str) -> Result<Response, RegistryError> {
    request
        .send()
        .await
        .map_err(|source| RegistryError::Unreachable {
            url: url.to_string(),
            source,
        })
}

async fn read_bounded(
    mut response: Response,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: url.to_string(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
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
    Ok(body)
}

/// `sha256:` and the hex SHA-256 of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let mut context = Context::new(&SHA256);
    context.update(bytes);
    format!("sha256:{}", hex::encode(context.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_named_registries() {
        let reference = |text: &str| Reference::parse(text).unwrap();
        let registry = Registry::new(&["mirror.lan:5000".into()]).unwrap();
        assert!(
            registry
                .base(&reference("reg.example.com/team/app:1"))
                .starts_with("https://")
        );
        assert!(
            registry
                .base(&reference("127.0.0.1:5000/app:1"))
                .starts_with("http://")
        );
        assert!(
            registry
                .base(&reference("mirror.lan:5000/app:1"))
                .starts_with("http://")
        );
        assert!(
            registry
                .base(&reference("mirror.lan:5001/app:1"))
                .starts_with("https://")
        );
    }
}
