//! The server side of one mTLS handshake, as the coordinator does it (its certificate chain,
//! a client with a self-signed P-256 certificate), driven in memory so only the server's work
//! is timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use time::OffsetDateTime;

use crate::harness::Harness;

/// Median microseconds of server-side work per full mTLS handshake.
pub(crate) fn server_handshake(
    h: &Harness,
    ca: &coordinator::ca::Ca,
    key: &launcher::WorkloadKey,
) -> Result<f64> {
    let (leaf, server_key) =
        ca.issue_server(&["localhost".to_string()], OffsetDateTime::now_utc())?;
    let server =
        coordinator::tls::server_config(vec![leaf, ca.intermediate_der().to_vec()], &server_key)?;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.root_der().to_vec()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(key.self_signed_der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())),
            )?,
    );
    let per_round = 50;
    let mut rounds = Vec::new();
    for _ in 0..h.rounds.max(3) {
        let mut server_time = Duration::ZERO;
        for _ in 0..per_round {
            server_time += one(&client, &server)?;
        }
        rounds.push(server_time.as_secs_f64() * 1e6 / f64::from(per_round));
    }
    rounds.sort_by(f64::total_cmp);
    rounds
        .get(rounds.len() / 2)
        .copied()
        .ok_or_else(|| anyhow!("no rounds"))
}

fn one(client: &Arc<ClientConfig>, server: &Arc<rustls::ServerConfig>) -> Result<Duration> {
    let mut c = ClientConnection::new(Arc::clone(client), "localhost".try_into()?)?;
    let start = Instant::now();
    let mut s = ServerConnection::new(Arc::clone(server))?;
    let mut server_time = start.elapsed();
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server)?;
        }
        let start = Instant::now();
        if !to_server.is_empty() {
            s.read_tls(&mut to_server.as_slice())?;
            s.process_new_packets()?;
        }
        let mut to_client = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut to_client)?;
        }
        server_time += start.elapsed();
        if !to_client.is_empty() {
            c.read_tls(&mut to_client.as_slice())?;
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(server_time);
        }
    }
    Err(anyhow!("the in-memory handshake did not finish"))
}
