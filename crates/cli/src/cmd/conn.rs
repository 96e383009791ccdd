//! How commands reach a coordinator: URL, pinned root, optional user identity.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use launcher::client::{Client, Identity, certs_from_pem};

/// Where the coordinator is and how to trust it.
#[derive(Debug, Clone, Args)]
pub(crate) struct Conn {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "CLOISTER_COORDINATOR",
        default_value = "https://127.0.0.1:4433"
    )]
    pub(crate) coordinator: String,
    /// The deployment root certificate saved by `cloister verify --save-root`.
    #[arg(long, env = "CLOISTER_ROOT_CA", default_value = "cloister-root.pem")]
    pub(crate) root_ca: PathBuf,
    /// A manifest user's certificate (PEM), for calls that need a user.
    #[arg(long, env = "CLOISTER_CERT", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// That user's private key (PKCS#8 PEM).
    #[arg(long, env = "CLOISTER_KEY", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
}

impl Conn {
    /// A client pinned to the saved root.
    pub(crate) fn client(&self) -> Result<Client> {
        let root_pem = std::fs::read_to_string(&self.root_ca).with_context(|| {
            format!(
                "reading the root certificate {}; run `cloister verify --coordinator {} \
                 --save-root {}` first",
                self.root_ca.display(),
                self.coordinator,
                self.root_ca.display()
            )
        })?;
        let root = certs_from_pem("root certificate", &root_pem)?
            .into_iter()
            .next()
            .context("the root certificate file holds no certificate")?;
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                &std::fs::read_to_string(cert)
                    .with_context(|| format!("reading {}", cert.display()))?,
                &std::fs::read_to_string(key)
                    .with_context(|| format!("reading {}", key.display()))?,
            )?),
            _ => None,
        };
        Ok(Client::pinned(&self.coordinator, &root, identity.as_ref())?)
    }
}

/// A runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
