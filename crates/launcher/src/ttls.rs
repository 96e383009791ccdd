//! Transparent TLS: a workload speaks plaintext, and the runtime beside it inside the TEE speaks
//! TLS with the workload's certificate, verifying peers against the deployment root. The keep
//! uses these pieces for a module's sockets; `launch` will use them for native programs.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::WorkloadKey;
use crate::client::certs_from_pem;

/// Why a transparent-TLS connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TtlsError {
    /// The activation's certificates are unusable.
    #[error("the workload's credentials: {0}")]
    Credentials(String),
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The rule's address is not a name a certificate can carry.
    #[error("{0:?} is not a DNS name or IP address")]
    ServerName(String),
    /// Connecting or the handshake failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error (rustls reports handshake failures as I/O errors).
        source: std::io::Error,
    },
}

/// The workload's identity for TLS: its certificate chain and key, the deployment root.
#[derive(Clone)]
pub struct TlsIdentity {
    connector: TlsConnector,
    mutual: TlsAcceptor,
    server_only: TlsAcceptor,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsIdentity {
    /// From an activation and the key it certified.
    pub fn new(activation: &api::ActivationResponse, key: &WorkloadKey) -> Result<Self, TtlsError> {
        let bad = |e: crate::client::ClientError| TtlsError::Credentials(e.to_string());
        let chain: Vec<CertificateDer<'static>> =
            certs_from_pem("workload certificate", &activation.certificate_chain_pem)
                .map_err(bad)?
                .into_iter()
                .map(CertificateDer::from)
                .collect();
        let mut roots = RootCertStore::empty();
        for root in certs_from_pem("deployment root", &activation.root_ca_pem).map_err(bad)? {
            roots.add(CertificateDer::from(root))?;
        }
        let roots = Arc::new(roots);
        let private = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), private())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TtlsError::Credentials(e.to_string()))?;
        let mutual = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), private())?;
        let server_only = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private())?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            mutual: TlsAcceptor::from(Arc::new(mutual)),
            server_only: TlsAcceptor::from(Arc::new(server_only)),
        })
    }

    /// The server side of TLS with the workload's certificate: clients must present a
    /// certificate of the deployment unless `client_auth` is false.
    pub fn acceptor(&self, client_auth: bool) -> &TlsAcceptor {
        if client_auth {
            &self.mutual
        } else {
            &self.server_only
        }
    }

    /// Dial `addr:port` and complete an mTLS handshake, the server verified against the
    /// deployment root and `addr`.
    pub async fn connect(
        &self,
        addr: &str,
        port: u16,
    ) -> Result<client::TlsStream<TcpStream>, TtlsError> {
        let name = ServerName::try_from(addr.to_string())
            .map_err(|_| TtlsError::ServerName(addr.to_string()))?;
        let tcp = TcpStream::connect((addr, port))
            .await
            .map_err(|source| TtlsError::Io {
                what: format!("connecting to {addr}:{port}"),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|source| TtlsError::Io {
                what: format!("TLS with {addr}:{port}"),
                source,
            })
    }

    /// Complete the server side of an mTLS handshake: the client must present a certificate
    /// of the deployment.
    pub async fn accept(&self, tcp: TcpStream) -> Result<server::TlsStream<TcpStream>, TtlsError> {
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "a client".to_string(), |a| a.to_string());
        let _ = tcp.set_nodelay(true);
        self.mutual
            .accept(tcp)
            .await
            .map_err(|source| TtlsError::Io {
                what: format!("TLS with {peer}"),
                source,
            })
    }
}

/// Copy both ways until both sides are done; returns the bytes moved each way.
pub async fn splice<A, B>(mut a: A, mut b: B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut a, &mut b).await
}
