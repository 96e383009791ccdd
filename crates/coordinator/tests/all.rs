//! The coordinator's sealed store: what survives a restart, and that tampering with the file
//! (a record modified, moved, removed or replaced by an older copy, the audit log cut short,
//! an older root) or opening it under another platform's key is refused.

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
        match Store::open(path, &sealer) {
            Err(StoreError::Database(e)) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

async fn fill(path: &Path) {
    let store = Store::open(path, &sealer(1)).unwrap();
    store
        .commit(Change::new(event(0)).put("k", Zeroizing::new(b"v1".to_vec())))
        .await
        .unwrap();
    for n in 1..=3 {
        store.record(event(n)).unwrap();
    }
    // A durable commit carries the recorded events with it.
    store
        .commit(Change::new(event(4)).put("k", Zeroizing::new(b"v2".to_vec())))
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
    let (log, total) = store.audit(0, 100).await.unwrap();
    assert_eq!(total, 5);
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
    assert_eq!(store.audit(0, 100).await.unwrap().0.len(), 6);
    assert_eq!(store.head().audit_entries, 6);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn another_platforms_key_cannot_open_the_state() {
    let dir = scratch("key");
    let path = dir.join("state.redb");
    fill(&path).await;
    match reopen(&path, sealer(2)) {
        Err(StoreError::Locked { recovery: None }) => {}
        other => panic!("opened under another key: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The raw file, as the host sees it, once the store that wrote it has let go of it.
fn raw(path: &Path) -> redb::Database {
    let start = Instant::now();
    loop {
        match redb::Database::open(path) {
            Ok(db) => return db,
            Err(_) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

const STATE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("state");
const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
const ROOT: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("root");

/// A copy of the file as it is now (the host keeps backups).
fn copy_of(path: &Path, name: &str) -> PathBuf {
    drop(raw(path));
    let copy = path.with_file_name(name);
    std::fs::copy(path, &copy).unwrap();
    copy
}

/// Move on from the state `fill` left: another value for `k`, and another record.
async fn advance(path: &Path) {
    let store = reopen(path, sealer(1)).unwrap();
    store
        .commit(
            Change::new(event(5))
                .put("k", Zeroizing::new(b"v3".to_vec()))
                .put("other", Zeroizing::new(b"o".to_vec())),
        )
        .await
        .unwrap();
}

/// Change the raw file with `edit`, then open it as the coordinator would.
fn tamper(path: &Path, edit: impl FnOnce(&redb::WriteTransaction)) -> Result<Store, StoreError> {
    let db = raw(path);
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
    drop(db);
    reopen(path, sealer(1))
}

fn stored<K: redb::Key + 'static>(
    path: &Path,
    table: redb::TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
) -> Vec<u8> {
    use redb::ReadableDatabase as _;
    let db = raw(path);
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(table).unwrap();
    t.get(key).unwrap().unwrap().value().to_vec()
}

#[tokio::test]
async fn a_record_spliced_from_an_older_copy_is_refused() {
    let dir = scratch("splice");
    let path = dir.join("state.redb");
    fill(&path).await;
    let old = copy_of(&path, "old.redb");
    advance(&path).await;
    let old_k = stored(&old, STATE, "k");
    let refused = tamper(&path, |txn| {
        txn.open_table(STATE)
            .unwrap()
            .insert("k", old_k.as_slice())
            .unwrap();
    });
    assert!(
        matches!(refused, Err(StoreError::RecordReplaced { .. })),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_removed_or_added_record_is_refused() {
    let dir = scratch("remove");
    let path = dir.join("state.redb");
    fill(&path).await;
    let old = copy_of(&path, "old.redb");
    advance(&path).await;
    let refused = tamper(&path, |txn| {
        txn.open_table(STATE).unwrap().remove("other").unwrap();
    });
    match refused {
        Err(
            e @ StoreError::RecordCount {
                found: 1,
                committed: 2,
                ..
            },
        ) => {
            assert!(e.to_string().contains("removed or added"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A record sealed for another name does not open under this one.
    let k = stored(&old, STATE, "k");
    let refused = tamper(&path, |txn| {
        txn.open_table(STATE)
            .unwrap()
            .insert("other", k.as_slice())
            .unwrap();
    });
    match refused {
        Err(e @ StoreError::Seal(_)) => assert!(e.to_string().contains("other"), "{e}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_truncated_audit_log_is_refused() {
    let dir = scratch("truncate");
    let path = dir.join("state.redb");
    fill(&path).await;
    let refused = tamper(&path, |txn| {
        txn.open_table(AUDIT).unwrap().remove(4).unwrap();
    });
    match refused {
        Err(
            e @ StoreError::AuditHead {
                found: 4,
                committed: 5,
            },
        ) => {
            assert!(e.to_string().contains("cut short"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_older_root_or_none_is_refused() {
    let dir = scratch("root");
    let path = dir.join("state.redb");
    fill(&path).await;
    let old = copy_of(&path, "old.redb");
    advance(&path).await;
    let old_root = stored(&old, ROOT, "root");
    let refused = tamper(&path, |txn| {
        txn.open_table(ROOT)
            .unwrap()
            .insert("root", old_root.as_slice())
            .unwrap();
    });
    match refused {
        Err(e @ StoreError::RecordAfterRoot { .. }) => {
            assert!(e.to_string().contains("older copy"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let refused = tamper(&path, |txn| {
        txn.open_table(ROOT).unwrap().remove("root").unwrap();
    });
    assert!(
        matches!(refused, Err(StoreError::NoRoot { .. })),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_whole_older_copy_opens_at_its_older_version() {
    // What sealing cannot tell: a complete older state is self-consistent. Its version and
    // audit head are older, which is what `cloister verify --expect-min-version` catches.
    let dir = scratch("rollback");
    let path = dir.join("state.redb");
    fill(&path).await;
    let old = copy_of(&path, "old.redb");
    advance(&path).await;
    let now = reopen(&path, sealer(1)).unwrap().head();
    let then = reopen(&old, sealer(1)).unwrap().head();
    assert!(then.version < now.version, "{then:?} {now:?}");
    assert!(then.audit_entries < now.audit_entries);
    assert_ne!(then.audit_head, now.audit_head);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn counters_never_go_back() {
    let dir = scratch("counter");
    let path = dir.join("state.redb");
    let store = Store::open(&path, &sealer(1)).unwrap();
    // Two activations commit out of the order they counted in.
    store
        .commit(Change::new(event(0)).raise("c", 6))
        .await
        .unwrap();
    store
        .commit(Change::new(event(1)).raise("c", 5))
        .await
        .unwrap();
    assert_eq!(
        store.get("c").unwrap().unwrap().as_slice(),
        6u64.to_le_bytes()
    );
    // An audit event must name who did it.
    let anonymous = AuditEvent {
        event: "test",
        actor: " ".into(),
        details: json!({}),
    };
    assert!(matches!(
        store.commit(Change::new(anonymous.clone())).await,
        Err(StoreError::NoActor { .. })
    ));
    assert!(matches!(
        store.record(anonymous),
        Err(StoreError::NoActor { .. })
    ));
    drop(store);
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
        etcd: None,
        advertise: None,
        sim_machine: None,
        limits: coordinator::Limits::default(),
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
