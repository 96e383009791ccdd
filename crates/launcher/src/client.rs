//! HTTPS to the coordinator: pinned to the deployment root, optionally with a client
//! identity; or, for first contact, recording the server's chain so it can be checked against
//! the root the coordinator's evidence attests.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a call to the coordinator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM input is not usable.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The request did not complete.
    #[error("cannot reach the coordinator at {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with a problem.
    #[error("{}", problem_text(.0))]
    Problem(api::Problem),
    /// The coordinator answered with something unexpected.
    #[error("unexpected answer from {url} (HTTP {status}): {body}")]
    Unexpected {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server's certificate does not chain to the attested root.
    #[error("the coordinator's TLS certificate is not issued by its attested root: {0}")]
    NotAttested(String),
}

impl ClientError {
    /// The request to `url` did not complete. The URL is said once, here: reqwest's own
    /// message would repeat it.
    pub(crate) fn transport(url: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Transport {
            url: url.into(),
            source: source.without_url(),
        }
    }
}

/// The problem's detail, each listed error on its own line, and its type.
fn problem_text(p: &api::Problem) -> String {
    let mut text = p.detail.clone();
    for e in &p.errors {
        text.push_str(&format!("\n  {}: {}", e.path, e.reason));
    }
    text.push_str(&format!("\n  ({})", p.kind));
    text
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// PEM certificates → DER.
pub fn certs_from_pem(what: &'static str, pem: &str) -> Result<Vec<Vec<u8>>, ClientError> {
    let certs = attest::x509::parse_pem_chain(pem.as_bytes()).map_err(|e| ClientError::Pem {
        what,
        reason: e.to_string(),
    })?;
    Ok(certs
        .into_iter()
        .map(attest::x509::Cert::into_der)
        .collect())
}

/// A client identity: certificate chain (DER, leaf first) and PKCS#8 key.
#[derive(Clone)]
pub struct Identity {
    /// The chain.
    pub chain: Vec<Vec<u8>>,
    /// The key.
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// From a PEM certificate (chain) and a PEM PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ClientError> {
        let chain = certs_from_pem("client certificate", cert_pem)?;
        use rustls::pki_types::pem::PemObject as _;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            ClientError::Pem {
                what: "client key",
                reason: format!("{e} (a PKCS#8 `PRIVATE KEY` PEM block is needed)"),
            }
        })?;
        Ok(Self {
            chain,
            key_pkcs8: zeroize::Zeroizing::new(key.secret_pkcs8_der().to_vec()),
        })
    }
}

/// A client for one coordinator.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

fn builder_with(config: ClientConfig, reuse: bool) -> Result<reqwest::Client, ClientError> {
    let builder = reqwest::Client::builder();
    let builder = if reuse {
        builder
    } else {
        builder.pool_max_idle_per_host(0)
    };
    builder
        .use_preconfigured_tls(config)
        .build()
        .map_err(|source| ClientError::Transport {
            url: String::new(),
            source,
        })
}

/// An HTTP client that trusts only `root_der` for the server.
pub(crate) fn pinned_http(
    root_der: &[u8],
    identity: Option<&Identity>,
    reuse: bool,
) -> Result<reqwest::Client, ClientError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root_der.to_vec()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    builder_with(finish(builder, identity)?, reuse)
}

fn finish(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, ClientError> {
    Ok(match identity {
        Some(id) => builder.with_client_auth_cert(
            id.chain.iter().cloned().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.to_vec())),
        )?,
        None => builder.with_no_client_auth(),
    })
}

impl Client {
    /// A client that trusts only `root_der` (the deployment root) for the server.
    pub fn pinned(
        base: &str,
        root_der: &[u8],
        identity: Option<&Identity>,
    ) -> Result<Self, ClientError> {
        Self::pinned_with(base, root_der, identity, true)
    }

    /// Like [`Client::pinned`], but every request opens a new connection (a full handshake),
    /// as a fresh workload does.
    pub fn pinned_fresh_connections(
        base: &str,
        root_der: &[u8],
        identity: Option<&Identity>,
    ) -> Result<Self, ClientError> {
        Self::pinned_with(base, root_der, identity, false)
    }

    fn pinned_with(
        base: &str,
        root_der: &[u8],
        identity: Option<&Identity>,
        reuse: bool,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: pinned_http(root_der, identity, reuse)?,
        })
    }

    /// A first-contact client: the server's chain is recorded, to be checked with
    /// [`FirstContact::check`] against the root its evidence attests before anything else is
    /// trusted.
    pub fn first_contact(base: &str) -> Result<(Self, FirstContact), ClientError> {
        let recorder = Arc::new(Recorder {
            algorithms: provider().signature_verification_algorithms,
            seen: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>);
        let client = Self {
            base: base.trim_end_matches('/').to_string(),
            http: builder_with(finish(builder, None)?, true)?,
        };
        Ok((client, FirstContact { recorder }))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.base, api::PREFIX)
    }

    /// GET a JSON resource.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self.http.get(&url).send().await;
        decode(url, response).await
    }

    /// GET a text resource.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let response = self.http.get(&url).send().await;
        let bytes = body(url, response).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// POST a body and decode a JSON answer (or nothing, for 204).
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body_bytes: Vec<u8>,
    ) -> Result<Option<T>, ClientError> {
        let url = self.url(path);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body_bytes)
            .send()
            .await;
        let bytes = body(url.clone(), response).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| unexpected(url, 200, e.to_string().as_bytes()))
    }
}

impl Client {
    /// Any method, any body: the status and the raw answer (for tests and diagnostics).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body_bytes: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.url(path);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| unexpected(url.clone(), 0, format!("bad method {method}").as_bytes()))?;
        let response = self
            .http
            .request(method, &url)
            .body(body_bytes)
            .send()
            .await;
        exchange(url, response).await
    }
}

fn unexpected(url: String, status: u16, body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    ClientError::Unexpected {
        url,
        status,
        body: text,
    }
}

/// The status and body of a response.
async fn exchange(
    url: String,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, Vec<u8>), ClientError> {
    let transport = |source| ClientError::transport(url.clone(), source);
    let response = response.map_err(transport)?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(transport)?;
    Ok((status, bytes.to_vec()))
}

/// The body of a successful response; a problem or an unexpected answer otherwise.
async fn body(
    url: String,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Vec<u8>, ClientError> {
    let (status, bytes) = exchange(url.clone(), response).await?;
    if status >= 400 {
        return Err(match serde_json::from_slice::<api::Problem>(&bytes) {
            Ok(problem) => ClientError::Problem(problem),
            Err(_) => unexpected(url, status, &bytes),
        });
    }
    Ok(bytes)
}

async fn decode<T: serde::de::DeserializeOwned>(
    url: String,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ClientError> {
    let bytes = body(url.clone(), response).await?;
    serde_json::from_slice(&bytes).map_err(|e| unexpected(url, 200, e.to_string().as_bytes()))
}

/// What a first-contact connection saw, to check once the root is attested.
#[derive(Debug)]
pub struct FirstContact {
    recorder: Arc<Recorder>,
}

impl FirstContact {
    /// Check that the chain the server presented is valid for `host` under `root_der`.
    pub fn check(&self, root_der: &[u8], host: &str) -> Result<(), ClientError> {
        let seen = self
            .recorder
            .seen
            .lock()
            .map_err(|_| ClientError::NotAttested("internal lock poisoned".into()))?
            .clone()
            .ok_or_else(|| ClientError::NotAttested("no TLS connection was made".into()))?;
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(root_der.to_vec()))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| ClientError::NotAttested(e.to_string()))?;
        let (leaf, intermediates) = seen
            .split_first()
            .ok_or_else(|| ClientError::NotAttested("the server sent no certificate".into()))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::NotAttested(e.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .cloned()
            .map(CertificateDer::from)
            .collect();
        verifier
            .verify_server_cert(
                &CertificateDer::from(leaf.clone()),
                &intermediates,
                &name,
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| ClientError::NotAttested(e.to_string()))
    }
}

/// Records the server's chain and checks its handshake signature; the chain itself is
/// judged later by [`FirstContact::check`].
#[derive(Debug)]
struct Recorder {
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Vec<Vec<u8>>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
