//! The coordinator's sealed store: what survives a restart, and that tampering with the file
//! or opening it under another platform's key is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::seal::{SealSource, Sealer};
use coordinator::store::{AuditEvent, Change, Store, StoreError};
use serde_json::json;
use zeroize::Zeroizing;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloister-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sealer(seed: u8) -> Arc<Sealer> {
    Arc::new(Sealer::derive(&[seed; 32], SealSource::Simulation).unwrap())
}

fn event(n: u32) -> AuditEvent {
    AuditEvent {
        event: "test",
        actor: format!("actor-{n}"),
        details: json!({ "n": n }),
    }
}

/// Open, retrying while the previous instance's writer thread lets go of the file.
fn reopen(path: &Path, sealer: Arc<Sealer>) -> Result<Store, StoreError> {
    let start = Instant::now();
    loop {
        match Store::open(path, Arc::clone(&sealer)) {
            Err(StoreError::Database(e)) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

async fn fill(path: &Path) {
    let store = Store::open(path, sealer(1)).unwrap();
    store
        .commit(Change {
            puts: vec![("k".into(), Zeroizing::new(b"v1".to_vec()))],
            audit: event(0),
        })
        .await
        .unwrap();
    for n in 1..=3 {
        store.record(event(n)).unwrap();
    }
    // A durable commit carries the recorded events with it.
    store
        .commit(Change {
            puts: vec![("k".into(), Zeroizing::new(b"v2".to_vec()))],
            audit: event(4),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn state_and_the_audit_chain_survive_a_restart() {
    let dir = scratch("restart");
    let path = dir.join("state.redb");
    fill(&path).await;
    let store = reopen(&path, sealer(1)).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().as_slice(), b"v2");
    let log = store.audit().unwrap();
    let actors: Vec<&str> = log.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["actor-0", "actor-1", "actor-2", "actor-3", "actor-4"]
    );
    let time = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    for pair in log.windows(2) {
        assert_eq!(pair[0].hash, pair[1].prev_hash);
        assert!(time(&pair[0].time) <= time(&pair[1].time), "{pair:?}");
    }
    // Recorded events become durable within the flush window even with nothing after them.
    store.record(event(5)).unwrap();
    std::thread::sleep(coordinator::store::FLUSH_WINDOW * 4);
    drop(store);
    let store = reopen(&path, sealer(1)).unwrap();
    assert_eq!(store.audit().unwrap().len(), 6);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn another_platforms_key_cannot_open_the_state() {
    let dir = scratch("key");
    let path = dir.join("state.redb");
    fill(&path).await;
    match reopen(&path, sealer(2)) {
        Err(StoreError::Seal(_)) => {}
        other => panic!("opened under another key: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_rewritten_audit_entry_breaks_the_chain() {
    let dir = scratch("tamper");
    let path = dir.join("state.redb");
    fill(&path).await;
    // Someone with the key rewrites entry 2's details but not its hash.
    let start = Instant::now();
    let db = loop {
        match redb::Database::open(&path) {
            Ok(db) => break db,
            Err(_) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    use redb::ReadableTable as _;
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
    let key = sealer(1);
    let txn = db.begin_write().unwrap();
    {
        let mut audit = txn.open_table(table).unwrap();
        let sealed = audit.get(2).unwrap().unwrap().value().to_vec();
        let mut entry: api::AuditEntry =
            serde_json::from_slice(&key.open("audit/2", &sealed).unwrap()).unwrap();
        entry.details = json!({ "n": 99 });
        let resealed = key
            .seal("audit/2", &serde_json::to_vec(&entry).unwrap())
            .unwrap();
        audit.insert(2, resealed.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    match reopen(&path, sealer(1)) {
        Err(StoreError::AuditChain { seq: 2, .. }) => {}
        other => panic!("tampering not detected: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Start a coordinator, retrying while a previous instance's writer thread lets go of the file.
async fn start_retrying(
    config: &coordinator::Config,
) -> Result<Arc<coordinator::Coordinator>, coordinator::StartError> {
    let start = Instant::now();
    loop {
        match coordinator::Coordinator::start(config).await {
            Err(coordinator::StartError::Store(StoreError::Database(_)))
                if start.elapsed() < Duration::from_secs(5) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn without_simulation_the_tees_own_key_seals_the_state() {
    let dir = scratch("tee");
    let root = dir.join("root");
    let gramine = root.join("dev/attestation");
    std::fs::create_dir_all(gramine.join("keys")).unwrap();
    std::fs::write(gramine.join("attestation_type"), "dcap").unwrap();
    std::fs::write(gramine.join("user_report_data"), "").unwrap();
    std::fs::write(gramine.join("quote"), "SGX-QUOTE").unwrap();
    let config = coordinator::Config {
        data_dir: dir.join("data"),
        dns_names: vec![],
        simulation: false,
        sim_dir: dir.join("sim"),
        sim_tee: attest::TeeKind::Sgx,
        platform_root: root.clone(),
        // Nobody listens here: collateral requests fail fast.
        pcs_url: "http://127.0.0.1:9".into(),
        pcs_roots: vec![],
        kds_url: pcs::AMD_KDS.into(),
    };

    // A Gramine enclave without its key file cannot host a coordinator.
    let err = start_retrying(&config).await.unwrap_err();
    assert!(
        matches!(err, coordinator::StartError::Platform(_)),
        "{err:?}"
    );

    std::fs::write(gramine.join("keys/_sgx_mrsigner"), [7u8; 16]).unwrap();
    let first = start_retrying(&config).await.unwrap();
    let status = first.status();
    assert!(!status.simulation);
    assert!(status.sealing.contains("MRSIGNER"), "{}", status.sealing);
    assert!(
        !config.sim_dir.exists(),
        "no simulated platform was created"
    );
    let root_ca = first.root_der().to_vec();

    // SGX evidence without collateral is verified with collateral from the PCS; an
    // unreachable PCS is the service's failure (503), not the workload's.
    let manifest = serde_json::json!({
        "packages": { "app": { "unique_id": "00".repeat(32) } },
        "workloads": { "app": { "package": "app" } },
    });
    first
        .set_manifest(manifest.to_string().as_bytes(), None)
        .await
        .unwrap();
    let quote = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/attestation/sgx/phala_sgx_quote.bin"),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let peer = rcgen::CertificateParams::new(vec!["app".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let request = api::ActivationRequest {
        workload: "app".into(),
        uuid: None,
        evidence: api::EvidenceBundle {
            tee: "sgx".into(),
            evidence: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &quote),
            ..api::EvidenceBundle::default()
        },
    };
    // Its own evidence still goes out, without the collateral the PCS would have added.
    let statement = first.attestation(Some(b"nonce")).await.unwrap();
    assert!(!statement.simulated);
    assert_eq!(statement.evidence.tee, "sgx");
    assert!(statement.evidence.collateral.is_none());
    let refused = first.activate(request, Some(peer.der())).await.unwrap_err();
    let problem = refused.problem();
    assert_eq!(problem.status, 503, "{problem:?}");
    assert!(
        problem.kind.ends_with("/collateral-unavailable"),
        "{problem:?}"
    );
    assert!(problem.detail.contains("127.0.0.1:9"), "{problem:?}");
    // Evidence that is no quote at all is the workload's fault, service or not.
    let garbage = api::ActivationRequest {
        workload: "app".into(),
        uuid: None,
        evidence: api::EvidenceBundle {
            tee: "sgx".into(),
            evidence: "AAAA".into(),
            ..api::EvidenceBundle::default()
        },
    };
    let problem = first
        .activate(garbage, Some(peer.der()))
        .await
        .unwrap_err()
        .problem();
    assert_eq!(problem.status, 403, "{problem:?}");
    assert!(problem.kind.ends_with("/evidence-rejected"), "{problem:?}");
    drop(first);

    let again = start_retrying(&config).await.unwrap();
    assert_eq!(
        again.root_der(),
        root_ca,
        "the same key reopens the same CA"
    );
    drop(again);

    // Another enclave signer's key does not open the state.
    std::fs::write(gramine.join("keys/_sgx_mrsigner"), [8u8; 16]).unwrap();
    let err = start_retrying(&config).await.unwrap_err();
    assert!(err.to_string().contains("another platform"), "{err}");

    // Nothing at all: no TEE, and the error says how to run without one.
    let bare = coordinator::Config {
        platform_root: dir.join("empty"),
        data_dir: dir.join("data2"),
        ..config
    };
    let err = start_retrying(&bare).await.unwrap_err();
    assert!(err.to_string().contains("--simulation"), "{err}");
}

#[test]
fn the_openapi_document_lists_exactly_the_served_operations() {
    let doc: serde_json::Value = serde_json::from_str(coordinator::OPENAPI).unwrap();
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served: std::collections::BTreeSet<(String, String)> =
        coordinator::http::served_operations()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path))
            .collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
}
