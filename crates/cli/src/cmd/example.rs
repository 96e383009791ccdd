//! `cloister example serve|fetch`: two tiny workloads for the quickstart. They talk mTLS with
//! the certificates the coordinator issued and compare a templated shared secret.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::cmd::conn::runtime;
use crate::output::outln;

/// `example` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ExampleCommand {
    /// Answer mTLS clients, then exit.
    Serve {
        /// Where to write the port it listens on.
        #[arg(long)]
        port_file: std::path::PathBuf,
        /// The port to listen on (0: any).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// How many clients to answer.
        #[arg(long, default_value_t = 1)]
        clients: u32,
    },
    /// Call the server over mTLS.
    Fetch {
        /// The server's address.
        #[arg(long)]
        addr: String,
    },
}

struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    secret: String,
}

fn credentials() -> Result<Credentials> {
    let var = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("{name} is not set: run me under `cloister launch`"))
    };
    let chain =
        CertificateDer::pem_file_iter(var(api::env::CERT_FILE)?)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(var(api::env::KEY_FILE)?)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(var(api::env::ROOT_CA_FILE)?)? {
        roots.add(cert?)?;
    }
    Ok(Credentials {
        chain,
        key,
        roots: Arc::new(roots),
        secret: var("GREETING_KEY")?,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn fingerprint(secret: &str) -> String {
    hex::encode(&attest::crypto::sha256(secret.as_bytes())[..8])
}

/// Run an `example` subcommand.
pub(crate) fn run(command: ExampleCommand) -> Result<ExitCode> {
    let creds = credentials()?;
    runtime()?.block_on(async {
        match command {
            ExampleCommand::Serve {
                port_file,
                port,
                clients,
            } => serve(creds, &port_file, port, clients).await,
            ExampleCommand::Fetch { addr } => fetch(creds, &addr).await,
        }
    })
}

async fn serve(
    creds: Credentials,
    port_file: &std::path::Path,
    port: u16,
    clients: u32,
) -> Result<ExitCode> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&creds.roots), provider())
            .build()?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain, creds.key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    std::fs::write(port_file, listener.local_addr()?.port().to_string())?;
    let reply = format!(
        "hello from the server; greeting key fingerprint {}\n",
        fingerprint(&creds.secret)
    );
    for _ in 0..clients {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line).await?;
        tls.write_all(reply.as_bytes()).await?;
        tls.shutdown().await?;
        outln!("server: answered an mTLS client whose certificate chains to the deployment root");
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(creds: Credentials, addr: &str) -> Result<ExitCode> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::clone(&creds.roots))
        .with_client_auth_cert(creds.chain, creds.key)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("server")?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"hello\n").await?;
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply).await?;
    let mine = fingerprint(&creds.secret);
    if !reply.contains(&mine) {
        bail!("the server's greeting key differs from mine ({mine}): {reply}");
    }
    outln!("client: {}", reply.trim_end());
    outln!("client: same greeting key on both sides ({mine}), delivered by the coordinator");
    Ok(ExitCode::SUCCESS)
}
