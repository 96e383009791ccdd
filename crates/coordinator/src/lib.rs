//! The cloister coordinator: it verifies each workload's evidence before it gets anything, is
//! the deployment's certificate authority, hands out secrets from the manifest, and publishes
//! one attestation statement for the whole deployment.
//!
//! * [`core`]: start-up, manifest, activation, secrets — no HTTP.
//! * [`http`] and [`tls`]: the REST API over rustls; [`error`] maps every failure to its
//!   HTTP status and problem type in one place.
//! * [`store`] and [`seal`]: sealed state in redb with a hash-chained audit log.
//! * [`ca`] and [`secrets`]: certificates and secret material.
#![forbid(unsafe_code)]

mod body;
pub mod broker;
pub mod ca;
pub mod collateral;
pub mod core;
pub mod error;
pub mod heavy;
pub mod http;
mod kbs_http;
pub mod metrics;
pub mod recovery;
pub mod recovery_mode;
mod replica;
pub mod seal;
pub mod secrets;
pub mod store;
pub mod tls;
mod update;
mod usersecret;

use std::net::SocketAddr;
use std::sync::Arc;

pub use crate::core::{Config, Coordinator, Limits, Node, StartError};

/// A random (v4) UUID from aws-lc's generator, which needs no system call per draw (the
/// `uuid` crate's own asks the kernel every time); the kernel's is the fallback.
pub(crate) fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        Err(_) => uuid::Uuid::new_v4(),
    }
}

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// A coordinator serving on a socket.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The coordinator, or the recovery mode it waits in.
    pub node: Node,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The root certificate it serves under now (DER): the deployment's, or in recovery mode
    /// a temporary one.
    pub fn root_der(&self) -> Vec<u8> {
        match &self.node {
            Node::Ready(c) => c.root_der().to_vec(),
            Node::Recovery(m) => m
                .recovered()
                .borrow()
                .as_ref()
                .map_or_else(|| m.root_der().to_vec(), |c| c.root_der().to_vec()),
        }
    }

    /// Serve until the process ends.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The coordinator did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The server certificate could not be issued.
    #[error(transparent)]
    Ca(#[from] ca::CaError),
}

/// Start a coordinator and serve its API on `addr` (port 0 picks a free port). A coordinator
/// that cannot unseal its state serves recovery mode until holders recover it, then serves as
/// the recovered coordinator on the same socket.
pub async fn serve(config: &Config, addr: SocketAddr) -> Result<Running, ServeError> {
    let node = Coordinator::open(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let names = server_names(config);
    let site = match &node {
        Node::Ready(c) => ready_site(c, &names)?,
        Node::Recovery(mode) => {
            let (chain, key) = mode.server_identity(&names)?;
            let tls = tls::server_config(chain, &key)?;
            http::Site::new(tls, recovery_mode::router(Arc::clone(mode)))
        }
    };
    let site = Arc::new(arc_swap::ArcSwap::from_pointee(site));
    if let Node::Recovery(mode) = &node {
        tokio::spawn(switch_when_recovered(
            mode.recovered(),
            Arc::clone(&site),
            names,
            advertised(config, local),
        ));
    }
    if let Node::Ready(c) = &node {
        register(c, advertised(config, local).as_deref())
            .await
            .map_err(StartError::Store)?;
    }
    let task = tokio::spawn(http::serve(listener, site, config.limits.clone()));
    Ok(Running {
        addr: local,
        node,
        task,
    })
}

/// The URL other replicas reach this one at, when the state is in etcd.
fn advertised(config: &Config, local: SocketAddr) -> Option<String> {
    config.etcd.as_ref()?;
    Some(
        config
            .advertise
            .clone()
            .unwrap_or_else(|| format!("https://{local}")),
    )
}

/// Register a replica on etcd at `url`, so that others can join through it.
async fn register(coordinator: &Coordinator, url: Option<&str>) -> Result<(), store::StoreError> {
    match (coordinator.store().etcd(), url) {
        (Some(shared), Some(url)) => shared.register(url).await,
        _ => Ok(()),
    }
}

/// The names of the server certificate: the configured ones and loopback.
fn server_names(config: &Config) -> Vec<String> {
    let mut names = config.dns_names.clone();
    for default in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == default) {
            names.push(default.to_string());
        }
    }
    names
}

/// The coordinator's own TLS identity and routes.
fn ready_site(coordinator: &Arc<Coordinator>, names: &[String]) -> Result<http::Site, ServeError> {
    let (chain, key) = coordinator.server_identity(names)?;
    let tls = tls::server_config(chain, &key)?;
    Ok(http::Site::new(tls, http::router(Arc::clone(coordinator))))
}

/// Serve the recovered coordinator from the moment recovery succeeds.
async fn switch_when_recovered(
    mut recovered: tokio::sync::watch::Receiver<Option<Arc<Coordinator>>>,
    site: Arc<arc_swap::ArcSwap<http::Site>>,
    names: Vec<String>,
    url: Option<String>,
) {
    let Ok(coordinator) = recovered
        .wait_for(Option::is_some)
        .await
        .map(|c| c.as_ref().map(Arc::clone))
    else {
        return;
    };
    let Some(coordinator) = coordinator else {
        return;
    };
    if let Err(e) = register(&coordinator, url.as_deref()).await {
        tracing::error!(error = %e, "the recovered replica could not register: restart it");
    }
    match ready_site(&coordinator, &names) {
        Ok(ready) => site.store(Arc::new(ready)),
        Err(e) => tracing::error!(error = %e, "the recovered coordinator cannot serve: restart it"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (super::random_uuid(), super::random_uuid());
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
