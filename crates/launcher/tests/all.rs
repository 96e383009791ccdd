//! The launcher and the coordinator-verification client against a real coordinator on
//! loopback: the bindings each side insists on, and users' roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use attest::TeeKind;
use attest::attester::SimulatedAttester;
use attest::evidence::Verifiers;
use attest::sim::SimPlatform;
use launcher::client::{Client, ClientError, Identity};
use launcher::verify::{CoordinatorRejected, Expectations, check, check_bundle, verify_online};
use launcher::{Request, WorkloadKey};
use time::OffsetDateTime;

struct Setup {
    _running: coordinator::Running,
    url: String,
    root: Vec<u8>,
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloister-launcher-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn coordinator_in(dir: PathBuf, sim: &std::path::Path) -> Setup {
    let config = coordinator::Config {
        data_dir: dir.join("data"),
        dns_names: vec![],
        simulation: true,
        sim_dir: sim.to_path_buf(),
        sim_tee: TeeKind::Sgx,
        platform_root: "/".into(),
        pcs_url: pcs::INTEL_PCS.into(),
        pcs_roots: vec![],
        kds_url: pcs::AMD_KDS.into(),
        etcd: None,
        advertise: None,
        sim_machine: None,
        limits: coordinator::Limits::default(),
    };
    let running = coordinator::serve(&config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://{}", running.addr);
    let root = running.root_der();
    Setup {
        _running: running,
        url,
        root,
    }
}

fn verifiers(sim: &std::path::Path) -> Verifiers {
    let now = OffsetDateTime::now_utc();
    let (dcap, snp) = SimPlatform::open(sim, now).unwrap().anchors(now).unwrap();
    Verifiers::with_anchors(dcap, snp)
}

fn accepting_simulation(verifiers: &Verifiers) -> Expectations<'_> {
    Expectations {
        verifiers,
        package: None,
        simulation: true,
        min_version: None,
        now: OffsetDateTime::now_utc(),
    }
}

fn user_cert(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn manifest(alice: &str, bob: &str) -> String {
    let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
    serde_json::json!({
        "packages": { "app": { "unique_id": mrenclave } },
        "workloads": { "app": { "package": "app" } },
        "secrets": {
            "shared": { "type": "symmetric-key", "size": 128, "shared": true },
            "uploaded": { "type": "plain", "user_defined": true }
        },
        "users": {
            "alice": { "certificate": alice, "roles": ["reader", "writer"] },
            "bob": { "certificate": bob, "roles": [] }
        },
        "roles": {
            "reader": { "resource_type": "Secrets", "resource_names": ["shared", "uploaded"], "actions": ["ReadSecret"] },
            "writer": { "resource_type": "Secrets", "resource_names": ["uploaded"], "actions": ["WriteSecret"] }
        }
    })
    .to_string()
}

fn problem_type(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Problem(p)) => p.kind.rsplit('/').next().unwrap().to_string(),
        other => panic!("expected a problem, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_must_bind_the_tls_client_key() {
    let dir = scratch("binding");
    let sim = dir.join("sim");
    let s = coordinator_in(dir.clone(), &sim).await;
    let client = Client::pinned(&s.url, &s.root, None).unwrap();
    let (alice, _) = user_cert("alice");
    let (bob, _) = user_cert("bob");
    let _: Option<api::ManifestSetResponse> = client
        .post("/manifest", manifest(&alice, &bob).into_bytes())
        .await
        .unwrap();

    let platform = SimPlatform::open(&sim, OffsetDateTime::now_utc()).unwrap();
    let attester =
        SimulatedAttester::on_platform(TeeKind::Sgx, &platform, OffsetDateTime::now_utc()).unwrap();
    let request = Request {
        coordinator: &s.url,
        root_der: &s.root,
        workload: "app",
        uuid: None,
        module_sha256: None,
    };
    let key = WorkloadKey::generate().unwrap();
    let other = WorkloadKey::generate().unwrap();
    match launcher::activate(&request, &attester, &key, &other).await {
        Err(launcher::LaunchError::Client(e)) => {
            assert_eq!(problem_type(Err::<(), _>(e)), "evidence-not-bound")
        }
        other => panic!("activation with evidence for another key: {other:?}"),
    }
    let activation = launcher::activate(&request, &attester, &key, &key)
        .await
        .unwrap();
    assert!(activation.simulated);
    // The certificate is for the key the workload holds.
    let leaf =
        launcher::client::certs_from_pem("chain", &activation.certificate_chain_pem).unwrap();
    let leaf = attest::x509::Cert::from_der_or_pem(&leaf[0]).unwrap();
    assert_eq!(leaf.spki_der(), key.spki_der());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn users_act_only_within_their_roles() {
    let dir = scratch("roles");
    let sim = dir.join("sim");
    let s = coordinator_in(dir.clone(), &sim).await;
    let (alice_cert, alice_key) = user_cert("alice");
    let (bob_cert, bob_key) = user_cert("bob");
    let anonymous = Client::pinned(&s.url, &s.root, None).unwrap();
    let _: Option<api::ManifestSetResponse> = anonymous
        .post("/manifest", manifest(&alice_cert, &bob_cert).into_bytes())
        .await
        .unwrap();
    let alice = Client::pinned(
        &s.url,
        &s.root,
        Some(&Identity::from_pem(&alice_cert, &alice_key).unwrap()),
    )
    .unwrap();
    let bob = Client::pinned(
        &s.url,
        &s.root,
        Some(&Identity::from_pem(&bob_cert, &bob_key).unwrap()),
    )
    .unwrap();

    let read = |c: &Client, name: &str| {
        let c = c.clone();
        let path = format!("/secrets?name={name}");
        async move { c.get::<api::Secrets>(&path).await }
    };
    let shared = read(&alice, "shared").await.unwrap();
    assert_eq!(shared.secrets["shared"].kind, "symmetric-key");
    assert_eq!(problem_type(read(&bob, "shared").await), "forbidden");
    assert_eq!(
        problem_type(read(&anonymous, "shared").await),
        "unauthenticated"
    );
    assert_eq!(
        problem_type(read(&alice, "uploaded").await),
        "invalid-secret"
    );

    let upload =
        serde_json::json!({ "secrets": { "uploaded": { "type": "plain", "key": "aGVsbG8=" } } })
            .to_string();
    assert_eq!(
        problem_type(
            bob.post::<serde_json::Value>("/secrets", upload.clone().into_bytes())
                .await
        ),
        "forbidden"
    );
    alice
        .post::<serde_json::Value>("/secrets", upload.into_bytes())
        .await
        .unwrap();
    assert_eq!(
        read(&alice, "uploaded").await.unwrap().secrets["uploaded"]
            .key
            .as_deref(),
        Some("aGVsbG8=")
    );

    // Replacing the manifest needs UpdateManifest, which nobody here holds.
    assert_eq!(
        problem_type(
            alice
                .post::<serde_json::Value>(
                    "/manifest",
                    manifest(&alice_cert, &bob_cert).into_bytes()
                )
                .await
        ),
        "forbidden"
    );
    // Every change is in the hash-chained audit log, which users of the manifest may read.
    assert_eq!(
        problem_type(anonymous.get::<api::AuditLog>("/audit").await),
        "unauthenticated"
    );
    let log: api::AuditLog = alice.get("/audit").await.unwrap();
    let events: Vec<&str> = log.entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "coordinator-initialized",
            "kbs-initialized",
            "manifest-set",
            "secret-set"
        ]
    );
    assert_eq!(log.entries[3].actor, "alice");
    assert_eq!(log.entries[2].hash, log.entries[3].prev_hash);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_must_bind_its_root_manifest_and_nonce() {
    let dir = scratch("verify");
    let sim = dir.join("sim");
    let a = coordinator_in(dir.join("a"), &sim).await;
    let b = coordinator_in(dir.join("b"), &sim).await;
    let verifiers = verifiers(&sim);
    let expect = accepting_simulation(&verifiers);

    let (statement, root, bundle) = verify_online(&a.url, &expect).await.unwrap();
    assert!(statement.verified && statement.simulated);
    assert_eq!(root, a.root);
    check_bundle(&bundle, &expect).unwrap();

    // Serving another coordinator's root with this evidence: refused.
    let b_answer: api::AttestationResponse = Client::pinned(&b.url, &b.root, None)
        .unwrap()
        .get("/attestation?nonce=00")
        .await
        .unwrap();
    let mut swapped = bundle.attestation.clone();
    swapped.certificate_chain_pem = b_answer.certificate_chain_pem.clone();
    let nonce = hex::decode(&bundle.nonce_hex).unwrap();
    assert!(matches!(
        check(&swapped, &nonce, &expect),
        Err(CoordinatorRejected::NotBound)
    ));
    // Replayed evidence for another nonce: refused.
    assert!(matches!(
        check(&bundle.attestation, b"other", &expect),
        Err(CoordinatorRejected::NotBound)
    ));
    // A claimed manifest it does not bind: refused.
    let mut claimed = bundle.attestation.clone();
    claimed.manifest_hash = Some("ab".repeat(32));
    assert!(matches!(
        check(&claimed, &nonce, &expect),
        Err(CoordinatorRejected::NotBound)
    ));
    // Simulated evidence when simulation is not accepted: refused.
    let strict = Expectations {
        simulation: false,
        ..accepting_simulation(&verifiers)
    };
    assert!(check(&bundle.attestation, &nonce, &strict).is_err());
    // Under the production roots, simulated evidence does not verify at all.
    let production = Verifiers::production();
    assert!(matches!(
        check(
            &bundle.attestation,
            &nonce,
            &Expectations {
                verifiers: &production,
                ..accepting_simulation(&verifiers)
            }
        ),
        Err(CoordinatorRejected::Evidence(_))
    ));
    // The wrong expected package: refused with the field named.
    let mut package = manifest::Package::default();
    package.unique_id = Some(manifest::Hex([9; 32]));
    let pinned = Expectations {
        package: Some(&package),
        ..accepting_simulation(&verifiers)
    };
    match check(&bundle.attestation, &nonce, &pinned) {
        Err(CoordinatorRejected::NotExpected(m)) => {
            assert!(m.iter().any(|m| m.field == "MRENCLAVE"), "{m:?}")
        }
        other => panic!("{other:?}"),
    }
    // A bundle whose manifest was swapped after the fact: refused.
    let client = Client::pinned(&a.url, &a.root, None).unwrap();
    let (alice, _) = user_cert("alice");
    let (bob, _) = user_cert("bob");
    let _: Option<api::ManifestSetResponse> = client
        .post("/manifest", manifest(&alice, &bob).into_bytes())
        .await
        .unwrap();
    let (_, _, with_manifest) = verify_online(&a.url, &expect).await.unwrap();
    check_bundle(&with_manifest, &expect).unwrap();
    let mut tampered = with_manifest.clone();
    tampered.manifest = Some(base64_of(b"{}"));
    assert!(matches!(
        check_bundle(&tampered, &expect),
        Err(CoordinatorRejected::ManifestMismatch)
    ));
    drop((a, b));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_problem_details_never_server_errors() {
    let dir = scratch("problems");
    let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
    let client = Client::pinned(&s.url, &s.root, None).unwrap();
    // Activation needs a client certificate: refused before the body is read.
    let (status, _) = client
        .raw("POST", "/activate", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (alice, _) = user_cert("alice");
    let (bob, _) = user_cert("bob");
    let _: Option<api::ManifestSetResponse> = client
        .post("/manifest", manifest(&alice, &bob).into_bytes())
        .await
        .unwrap();
    for (method, path, body) in [
        ("POST", "/manifest", "{not json"),
        ("POST", "/manifest", ""),
        ("POST", "/manifest", "[1, 2]"),
        ("POST", "/activate", "{not json"),
        (
            "POST",
            "/activate",
            r#"{"workload": "app", "evidence": {"tee": "sgx", "evidence": "%%%"}}"#,
        ),
        (
            "POST",
            "/activate",
            r#"{"workload": "app", "evidence": {"tee": "quantum", "evidence": ""}}"#,
        ),
        (
            "POST",
            "/activate",
            r#"{"workload": "ghost", "evidence": {"tee": "sgx", "evidence": ""}}"#,
        ),
        ("POST", "/secrets", "{not json"),
        (
            "POST",
            "/secrets",
            r#"{"secrets": {"x": {"type": "plain"}}}"#,
        ),
        ("GET", "/secrets", ""),
        ("GET", "/secrets?name=nope", ""),
        ("GET", "/attestation?nonce=zz", ""),
        (
            "GET",
            &format!("/attestation?nonce={}", "00".repeat(65)),
            "",
        ),
        ("GET", "/certificates/leaf", ""),
        ("GET", "/nowhere", ""),
        ("DELETE", "/status", ""),
        ("PUT", "/manifest", "{}"),
    ] {
        let (status, body_bytes) = client
            .raw(method, path, body.as_bytes().to_vec())
            .await
            .unwrap();
        assert!((400..500).contains(&status), "{method} {path}: {status}");
        let problem: api::Problem = serde_json::from_slice(&body_bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: not a problem ({e})"));
        assert!(problem.kind.starts_with(api::PROBLEM_BASE), "{problem:?}");
        assert_eq!(problem.status, status);
    }
    // Every endpoint that serves data still answers, and the OpenAPI document parses.
    let doc: serde_json::Value = client.get("/openapi.json").await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_marblerun_style_manifest_is_accepted_as_is() {
    let dir = scratch("marblerun");
    let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
    let client = Client::pinned(&s.url, &s.root, None).unwrap();
    let (alice, _) = user_cert("alice");
    let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
    // Written in MarbleRun's format: PascalCase keys, Marbles, File objects, Type.
    let marblerun = serde_json::json!({
        "Packages": { "frontend": { "UniqueID": mrenclave, "Debug": false } },
        "Marbles": {
            "web": {
                "Package": "frontend",
                "MaxActivations": 2,
                "Parameters": {
                    "Files": {
                        "/srv/tls/cert.pem": "{{ pem .MarbleRun.MarbleCert.Cert }}",
                        "/srv/tls/key.pem": { "Data": "{{ pem .MarbleRun.MarbleCert.Private }}", "Encoding": "string" },
                        "/srv/static.bin": { "Data": "AAEC", "Encoding": "base64", "NoTemplates": true }
                    },
                    "Env": { "API_KEY": "{{ base64 .Secrets.ApiKey }}" },
                    "Argv": ["web", "--listen", ":8443"]
                }
            }
        },
        "Secrets": { "ApiKey": { "Type": "symmetric-key", "Size": 128 } },
        "Users": { "admin": { "Certificate": alice, "Roles": ["updater"] } },
        "Roles": { "updater": { "ResourceType": "Manifest", "Actions": ["UpdateManifest"] } }
    })
    .to_string();
    let set: api::ManifestSetResponse = client
        .post("/manifest", marblerun.into_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.manifest_hash.len(), 64);

    let platform = SimPlatform::open(&dir.join("sim"), OffsetDateTime::now_utc()).unwrap();
    let attester =
        SimulatedAttester::on_platform(TeeKind::Sgx, &platform, OffsetDateTime::now_utc()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let uuid = "6c2b4c8e-8a1d-4d3b-9a59-2f3c1f1f0e11";
    let request = Request {
        coordinator: &s.url,
        root_der: &s.root,
        workload: "web",
        uuid: Some(uuid),
        module_sha256: None,
    };
    let activation = launcher::activate(&request, &attester, &key, &key)
        .await
        .unwrap();
    assert_eq!(activation.parameters.argv, ["web", "--listen", ":8443"]);
    let prepared = launcher::prepare(&activation, &key, "web", &dir.join("work")).unwrap();
    let key_file = std::fs::read_to_string(dir.join("work/srv/tls/key.pem")).unwrap();
    assert_eq!(
        key_file,
        *key.private_pem(),
        "the launcher filled in its own key"
    );
    assert_eq!(
        std::fs::read(dir.join("work/srv/static.bin")).unwrap(),
        [0, 1, 2]
    );
    let api_key = prepared.env["API_KEY"].clone();
    // Per-instance keys survive a new activation with the same UUID.
    let again = launcher::activate(&request, &attester, &key, &key)
        .await
        .unwrap();
    assert_eq!(again.parameters.env["API_KEY"], api_key);
    // And MaxActivations holds.
    match launcher::activate(&request, &attester, &key, &key).await {
        Err(launcher::LaunchError::Client(e)) => {
            assert_eq!(problem_type(Err::<(), _>(e)), "max-activations")
        }
        other => panic!("{other:?}"),
    }
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_update_keeps_what_it_does_not_change() {
    let dir = scratch("update");
    let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
    let (cert, key) = user_cert("admin");
    let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
    let manifest = |extra_workload: bool| {
        let mut m = serde_json::json!({
            "packages": { "app": { "unique_id": mrenclave } },
            "workloads": { "app": { "package": "app", "max_activations": 5 } },
            "secrets": {
                "shared": { "type": "symmetric-key", "size": 128, "shared": true },
                "uploaded": { "type": "plain", "user_defined": true }
            },
            "users": { "admin": { "certificate": cert, "roles": ["read", "write", "update"] } },
            "roles": {
                "read": { "resource_type": "Secrets", "resource_names": ["shared", "uploaded"], "actions": ["ReadSecret"] },
                "write": { "resource_type": "Secrets", "resource_names": ["uploaded"], "actions": ["WriteSecret"] },
                "update": { "resource_type": "Manifest", "actions": ["UpdateManifest"] }
            }
        });
        if extra_workload {
            m["workloads"]["other"] = serde_json::json!({ "package": "app" });
        }
        m.to_string().into_bytes()
    };
    let admin = Client::pinned(
        &s.url,
        &s.root,
        Some(&Identity::from_pem(&cert, &key).unwrap()),
    )
    .unwrap();
    let anonymous = Client::pinned(&s.url, &s.root, None).unwrap();
    let _: Option<api::ManifestSetResponse> =
        anonymous.post("/manifest", manifest(false)).await.unwrap();
    let upload =
        serde_json::json!({ "secrets": { "uploaded": { "key": "c2VjcmV0" } } }).to_string();
    admin
        .post::<serde_json::Value>("/secrets", upload.into_bytes())
        .await
        .unwrap();
    let before: api::Secrets = admin
        .get("/secrets?name=shared&name=uploaded")
        .await
        .unwrap();

    let platform = SimPlatform::open(&dir.join("sim"), OffsetDateTime::now_utc()).unwrap();
    let attester =
        SimulatedAttester::on_platform(TeeKind::Sgx, &platform, OffsetDateTime::now_utc()).unwrap();
    let wkey = WorkloadKey::generate().unwrap();
    let request = Request {
        coordinator: &s.url,
        root_der: &s.root,
        workload: "app",
        uuid: None,
        module_sha256: None,
    };
    launcher::activate(&request, &attester, &wkey, &wkey)
        .await
        .unwrap();

    // Without UpdateManifest nobody replaces it; with it, the update keeps secrets and counts.
    assert_eq!(
        problem_type(
            anonymous
                .post::<serde_json::Value>("/manifest", manifest(true))
                .await
        ),
        "unauthenticated"
    );
    let _: Option<api::ManifestSetResponse> =
        admin.post("/manifest", manifest(true)).await.unwrap();
    let after: api::Secrets = admin
        .get("/secrets?name=shared&name=uploaded")
        .await
        .unwrap();
    assert_eq!(before, after);
    let log: api::AuditLog = admin.get("/audit").await.unwrap();
    let activation = log
        .entries
        .iter()
        .rev()
        .find(|e| e.event == "activation")
        .unwrap();
    assert_eq!(activation.details["activation"], 1);
    launcher::activate(&request, &attester, &wkey, &wkey)
        .await
        .unwrap();
    let log: api::AuditLog = admin.get("/audit").await.unwrap();
    let last = log
        .entries
        .iter()
        .rev()
        .find(|e| e.event == "activation")
        .unwrap();
    assert_eq!(
        last.details["activation"], 2,
        "the count continued across the update"
    );
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_activation_limit_holds_while_secrets_and_manifests_change() {
    let dir = scratch("race");
    let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
    let (cert, key) = user_cert("admin");
    let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
    const LIMIT: u64 = 12;
    let user_pem = cert.clone();
    let manifest = move |note: usize| {
        serde_json::json!({
            "packages": { "app": { "unique_id": mrenclave } },
            "workloads": { "app": { "package": "app", "max_activations": LIMIT,
                                    "parameters": { "env": { "NOTE": note.to_string() } } } },
            "secrets": { "uploaded": { "type": "plain", "user_defined": true } },
            "users": { "admin": { "certificate": user_pem, "roles": ["write", "update"] } },
            "roles": {
                "write": { "resource_type": "Secrets", "resource_names": ["uploaded"], "actions": ["WriteSecret"] },
                "update": { "resource_type": "Manifest", "actions": ["UpdateManifest"] }
            }
        })
        .to_string()
        .into_bytes()
    };
    let admin = Arc::new(
        Client::pinned(
            &s.url,
            &s.root,
            Some(&Identity::from_pem(&cert, &key).unwrap()),
        )
        .unwrap(),
    );
    let _: Option<api::ManifestSetResponse> = admin.post("/manifest", manifest(0)).await.unwrap();
    let platform = SimPlatform::open(&dir.join("sim"), OffsetDateTime::now_utc()).unwrap();
    let attester = Arc::new(
        SimulatedAttester::on_platform(TeeKind::Sgx, &platform, OffsetDateTime::now_utc()).unwrap(),
    );
    // Writers replace the deployment (secrets, then the whole manifest) as fast as they can
    // while three times the limit of workloads try to activate.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (admin, stop) = (Arc::clone(&admin), Arc::clone(&stop));
        let manifest = manifest.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                if w == 0 {
                    let _: Option<api::ManifestSetResponse> =
                        admin.post("/manifest", manifest(n)).await.unwrap();
                } else {
                    let upload = serde_json::json!({ "secrets": { "uploaded": { "key": base64_of(&[w as u8, n as u8]) } } });
                    let _: Option<serde_json::Value> = admin
                        .post("/secrets", upload.to_string().into_bytes())
                        .await
                        .unwrap();
                }
            }
            n
        }));
    }
    let mut launches = Vec::new();
    for _ in 0..3 * LIMIT {
        let (url, root, attester) = (s.url.clone(), s.root.clone(), Arc::clone(&attester));
        launches.push(tokio::spawn(async move {
            let wkey = WorkloadKey::generate().unwrap();
            let request = Request {
                coordinator: &url,
                root_der: &root,
                workload: "app",
                uuid: None,
                module_sha256: None,
            };
            launcher::activate(&request, attester.as_ref(), &wkey, &wkey).await
        }));
    }
    let mut activated = 0;
    for launch in launches {
        match launch.await.unwrap() {
            Ok(_) => activated += 1,
            Err(e) => assert!(format!("{e:?}").contains("max-activations"), "{e:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut updates = 0;
    for writer in writers {
        updates += writer.await.unwrap();
    }
    assert!(updates > 4, "the writers ran: {updates}");
    assert_eq!(activated, LIMIT, "exactly the limit activated");
    let log: api::AuditLog = admin.get("/audit?limit=1000").await.unwrap();
    let mut numbers: Vec<u64> = log
        .entries
        .iter()
        .filter(|e| e.event == "activation")
        .map(|e| e.details["activation"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=LIMIT).collect::<Vec<_>>(), "each number once");
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- The key broker: CoCo's protocol against the coordinator ----

mod broker {
    use super::*;
    use kbs::KbsError;
    use kbs::jwe::{Curve, TeeKeyPair};
    use launcher::kbs_client::{Credential, KbsClient, KbsClientError, Prover};

    const SHARED_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    struct Broker {
        s: Setup,
        dir: PathBuf,
        admin_key: rcgen::KeyPair,
    }

    /// A coordinator whose manifest maps `default/key/1` to a user-set key for the SGX enclave
    /// and the sample pod, `default/key/2` to the TDX package only, and registers an admin.
    async fn broker(name: &str, policy: Option<&str>) -> Broker {
        let dir = scratch(name);
        let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
        let (cert, key) = user_cert("admin");
        let admin_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
        let mrtd = hex::encode(attest::crypto::sha384(b"cloister simulated TD"));
        let measurement = hex::encode(attest::crypto::sha384(b"cloister simulated SNP guest"));
        let mut manifest = serde_json::json!({
            "packages": {
                "enclave": { "unique_id": mrenclave },
                "td": { "tee": "tdx", "mr_td": mrtd },
                "guest": { "tee": "snp", "measurement": measurement },
                "azure": { "tee": "az-snp-vtpm", "measurement": measurement, "pcrs": { "7": hex::encode(attest::sim::azure::simulated_pcrs()[7]) } },
                "azure_td": { "tee": "az-tdx-vtpm", "mr_td": mrtd },
                "pod": { "tee": "sample" }
            },
            "secrets": {
                "image_key": { "type": "symmetric-key", "size": 256, "user_defined": true },
                "td_only": { "type": "symmetric-key", "size": 128, "shared": true }
            },
            "users": { "admin": { "certificate": cert, "public_key": admin_key.public_key_pem(), "roles": ["broker", "writer"] } },
            "roles": {
                "broker": { "resource_type": "Kbs", "actions": ["WriteResource", "SetPolicy"] },
                "writer": { "resource_type": "Secrets", "resource_names": ["image_key"], "actions": ["WriteSecret"] }
            },
            "kbs": { "resources": {
                "default/key/1": { "secret": "image_key", "packages": ["enclave", "pod", "guest", "td", "azure", "azure_td"] },
                "default/key/2": { "secret": "td_only", "packages": ["td"] }
            } }
        });
        if let Some(policy) = policy {
            manifest["kbs"]["resource_policy"] = serde_json::json!(policy);
        }
        let anonymous = Client::pinned(&s.url, &s.root, None).unwrap();
        let _: Option<api::ManifestSetResponse> = anonymous
            .post("/manifest", manifest.to_string().into_bytes())
            .await
            .unwrap();
        let admin = Client::pinned(
            &s.url,
            &s.root,
            Some(&Identity::from_pem(&cert, &key).unwrap()),
        )
        .unwrap();
        let upload = serde_json::json!({ "secrets": { "image_key": { "key": SHARED_KEY_B64 } } });
        admin
            .post::<serde_json::Value>("/secrets", upload.to_string().into_bytes())
            .await
            .unwrap();
        Broker { s, dir, admin_key }
    }

    fn attester(b: &Broker, tee: TeeKind) -> SimulatedAttester {
        let platform = SimPlatform::open(&b.dir.join("sim"), OffsetDateTime::now_utc()).unwrap();
        SimulatedAttester::on_platform(tee, &platform, OffsetDateTime::now_utc()).unwrap()
    }

    fn refused(result: Result<impl std::fmt::Debug, KbsClientError>) -> (u16, String) {
        match result {
            Err(KbsClientError::Refused { status, info }) => (
                status,
                info.error_type.rsplit('/').next().unwrap().to_string(),
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_kind_fetches_its_key_by_cookie_and_by_bearer() {
        let b = broker("kbs-flows", None).await;
        let client = KbsClient::new(&b.s.url, &b.s.root).unwrap();
        let expected =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, SHARED_KEY_B64)
                .unwrap();
        let sgx = attester(&b, TeeKind::Sgx);
        let tdx = attester(&b, TeeKind::Tdx);
        let snp = attester(&b, TeeKind::Snp);
        let azure = attester(&b, TeeKind::AzSnpVtpm);
        let azure_td = attester(&b, TeeKind::AzTdxVtpm);
        let provers = [
            Prover::Attester(&sgx),
            Prover::Attester(&tdx),
            Prover::Attester(&snp),
            Prover::Attester(&azure),
            Prover::Attester(&azure_td),
            Prover::Sample,
        ];
        let keys = [
            TeeKeyPair::generate_ec(Curve::P256).unwrap(),
            TeeKeyPair::generate_ec(Curve::P521).unwrap(),
            TeeKeyPair::generate_rsa().unwrap(),
            TeeKeyPair::generate_ec(Curve::P256).unwrap(),
            TeeKeyPair::generate_ec(Curve::P521).unwrap(),
            TeeKeyPair::generate_ec(Curve::P256).unwrap(),
        ];
        let packages = ["enclave", "td", "guest", "azure", "azure_td", "pod"];
        for ((prover, key), package) in provers.iter().zip(&keys).zip(packages) {
            let attested = client.attest(prover, key, None).await.unwrap();
            let payload = attested.token.split('.').nth(1).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["package"], package,
                "{prover:?}"
            );
            let by_cookie = client
                .get_resource(
                    "default/key/1",
                    key,
                    &Credential::Cookie(attested.cookie.clone()),
                )
                .await
                .unwrap();
            assert_eq!(*by_cookie, expected, "{prover:?}");
            let by_bearer = client
                .get_resource(
                    "default/key/1",
                    key,
                    &Credential::Bearer(attested.token.clone()),
                )
                .await
                .unwrap();
            assert_eq!(*by_bearer, expected, "{prover:?}");
        }
        // default/key/2 is the TD's alone.
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let attested = client
            .attest(&Prover::Attester(&sgx), &key, None)
            .await
            .unwrap();
        let denied = client
            .get_resource("default/key/2", &key, &Credential::Cookie(attested.cookie))
            .await;
        assert_eq!(refused(denied), (401, "PolicyDeny".into()));
        let attested = client
            .attest(&Prover::Attester(&tdx), &key, None)
            .await
            .unwrap();
        assert_eq!(
            client
                .get_resource("default/key/2", &key, &Credential::Bearer(attested.token))
                .await
                .unwrap()
                .len(),
            16
        );
        // A missing resource is 404, so clients stop at once.
        let missing = client
            .get_resource("default/key/9", &key, &Credential::Cookie(attested.cookie))
            .await;
        assert_eq!(refused(missing), (404, "ResourceNotFound".into()));
        std::fs::remove_dir_all(&b.dir).unwrap();
    }

    async fn post_raw(
        url: &str,
        root: &[u8],
        path: &str,
        body: &str,
        cookie: Option<&str>,
    ) -> (u16, reqwest_like::Answer) {
        reqwest_like::post(url, root, path, body, cookie).await
    }

    /// Raw HTTP, to check bytes the clients depend on.
    pub(crate) mod reqwest_like {
        pub(super) struct Answer {
            pub(super) body: serde_json::Value,
            pub(super) cookie: Option<String>,
        }

        pub(super) async fn post(
            url: &str,
            root: &[u8],
            path: &str,
            body: &str,
            cookie: Option<&str>,
        ) -> (u16, Answer) {
            let http = raw_client(root);
            let mut request = http
                .post(format!("{url}/kbs/v0{path}"))
                .body(body.to_string());
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let cookie = response
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = response.bytes().await.unwrap();
            (
                status,
                Answer {
                    body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                    cookie,
                },
            )
        }

        /// A plain reqwest client pinned to the root, to send exactly what a test says.
        pub(crate) fn raw_client(root: &[u8]) -> reqwest::Client {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
                .unwrap();
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            reqwest::Client::builder()
                .use_preconfigured_tls(config)
                .build()
                .unwrap()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cocos_exact_bodies_get_cocos_exact_answers() {
        let b = broker("kbs-wire", None).await;
        let (status, answer) = post_raw(
            &b.s.url,
            &b.s.root,
            "/auth",
            r#"{"version":"0.4.0","tee":"tdx","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#,
            None,
        )
        .await;
        assert_eq!(status, 200);
        let nonce = answer.body["nonce"].as_str().unwrap();
        assert_eq!(nonce.len(), 44);
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, nonce)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(answer.body["extra-params"], serde_json::json!(""));
        let cookie = answer.cookie.unwrap();
        let (pair, expires) = cookie.split_once("; ").unwrap();
        let id = pair.strip_prefix("kbs-session-id=").unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(
            expires.starts_with("Expires=") && expires.ends_with(" GMT"),
            "{cookie}"
        );

        // A wrong nonce in the runtime data: refused, attest again.
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let attestation = serde_json::json!({
            "init-data": null,
            "runtime-data": { "nonce": "not-the-nonce", "tee-pubkey": key.public().unwrap() },
            "tee-evidence": { "primary_evidence": { "quote": "AAAA" }, "additional_evidence": "" }
        });
        let (status, answer) = post_raw(
            &b.s.url,
            &b.s.root,
            "/attest",
            &attestation.to_string(),
            Some(pair),
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(
            answer.body["type"],
            "https://github.com/confidential-containers/kbs/errors/AttestationError"
        );
        // No session or an unknown one: attest again.
        let (status, _) = post_raw(
            &b.s.url,
            &b.s.root,
            "/attest",
            &attestation.to_string(),
            Some("kbs-session-id=00"),
        )
        .await;
        assert_eq!(status, 401);
        // The version must match exactly, with CoCo's message.
        let (status, answer) = post_raw(
            &b.s.url,
            &b.s.root,
            "/auth",
            r#"{"version":"0.1.1","tee":"sgx","extra-params":""}"#,
            None,
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(
            answer.body["detail"],
            "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.1.1"
        );
        let (status, answer) = post_raw(&b.s.url, &b.s.root, "/nowhere", "", None).await;
        assert_eq!(
            (
                status,
                answer.body["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("InvalidRequestPath")
            ),
            (404, true)
        );
        std::fs::remove_dir_all(&b.dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn evidence_must_bind_the_nonce_key_and_init_data() {
        let b = broker("kbs-binding", None).await;
        let client = KbsClient::new(&b.s.url, &b.s.root).unwrap();
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        // Init-data whose digest the TD was not launched with.
        let init = kbs_types::InitData {
            format: "toml".into(),
            body: "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n".into(),
        };
        let tdx = attester(&b, TeeKind::Tdx);
        let refusal = client
            .attest(&Prover::Attester(&tdx), &key, Some(init.clone()))
            .await;
        assert_eq!(refused(refusal), (401, "AttestationError".into()));
        // Launched with it (MRCONFIGID = its SHA-384), the same request passes. The package
        // pins MRTD only, so the measurement still matches.
        let digest = kbs::initdata::parse("toml", &init.body).unwrap().digest;
        let mut measurements = attest::attester::SimMeasurements::default();
        measurements.tdx.mr_config_id.copy_from_slice(&digest);
        let platform = SimPlatform::open(&b.dir.join("sim"), OffsetDateTime::now_utc()).unwrap();
        let launched =
            SimulatedAttester::on_platform(TeeKind::Tdx, &platform, OffsetDateTime::now_utc())
                .unwrap()
                .with_measurements(measurements);
        let attested = client
            .attest(&Prover::Attester(&launched), &key, Some(init))
            .await
            .unwrap();
        // The token carries the init-data claims for policies.
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                attested.token.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let annotated = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
        assert_eq!(annotated["init_data"], hex::encode(&digest));
        assert_eq!(annotated["package"], "td");
        // A token for one key does not help another: the JWE is for the token's key.
        let thief = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let stolen = client
            .get_resource(
                "default/key/1",
                &thief,
                &Credential::Bearer(attested.token.clone()),
            )
            .await;
        assert!(
            matches!(stolen, Err(KbsClientError::Protocol(KbsError::Jwe(_)))),
            "{stolen:?}"
        );
        // A measurement no package allows is refused, with the reasons.
        let mut measurements = attest::attester::SimMeasurements::default();
        measurements.sgx.mr_enclave = [9; 32];
        let stranger =
            SimulatedAttester::on_platform(TeeKind::Sgx, &platform, OffsetDateTime::now_utc())
                .unwrap()
                .with_measurements(measurements);
        let refusal = client
            .attest(&Prover::Attester(&stranger), &key, None)
            .await;
        assert_eq!(refused(refusal), (401, "AttestationError".into()));
        // A forged token is refused before anything is encrypted.
        let mut forged = attested.token.clone();
        forged.push('x');
        let refusal = client
            .get_resource("default/key/1", &key, &Credential::Bearer(forged))
            .await;
        assert_eq!(refused(refusal), (401, "TokenVerifierError".into()));
        std::fs::remove_dir_all(&b.dir).unwrap();
    }

    fn admin_token(b: &Broker, exp_offset: i64) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &serde_json::json!({ "sub": "admin", "role": "admin", "exp": now + exp_offset }),
            &jsonwebtoken::EncodingKey::from_ed_der(&b.admin_key.serialize_der()),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn admins_upload_resources_and_policies_that_decide() {
        let b = broker("kbs-admin", None).await;
        let client = KbsClient::new(&b.s.url, &b.s.root).unwrap();
        let http = reqwest_like::raw_client(&b.s.root);
        let admin = |method: &'static str, path: String, body: Vec<u8>, token: Option<String>| {
            let url = format!("{}/kbs/v0{path}", b.s.url);
            let http = http.clone();
            async move {
                let mut request = http.request(method.parse().unwrap(), url).body(body);
                if let Some(t) = token {
                    request = request.bearer_auth(t);
                }
                request.send().await.unwrap().status().as_u16()
            }
        };
        // kbs-client's `config --admin-token-file` flow: a Bearer JWT signed by the user's key.
        assert_eq!(
            admin(
                "POST",
                "/resource/tenant/blob/one".into(),
                b"uploaded".to_vec(),
                Some(admin_token(&b, 600))
            )
            .await,
            200
        );
        assert_eq!(
            admin(
                "POST",
                "/resource/tenant/blob/two".into(),
                b"x".to_vec(),
                Some(admin_token(&b, -10))
            )
            .await,
            403,
            "expired"
        );
        assert_eq!(
            admin(
                "POST",
                "/resource/tenant/blob/two".into(),
                b"x".to_vec(),
                Some("garbage".into())
            )
            .await,
            403
        );
        assert_eq!(
            admin(
                "POST",
                "/resource/tenant/blob/two".into(),
                b"x".to_vec(),
                None
            )
            .await,
            403
        );

        // The uploaded resource: any attested TEE but the sample attester (CoCo's default).
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let sgx = attester(&b, TeeKind::Sgx);
        let attested = client
            .attest(&Prover::Attester(&sgx), &key, None)
            .await
            .unwrap();
        let cookie = Credential::Cookie(attested.cookie.clone());
        assert_eq!(
            &*client
                .get_resource("tenant/blob/one", &key, &cookie)
                .await
                .unwrap(),
            b"uploaded"
        );
        let sample = client.attest(&Prover::Sample, &key, None).await.unwrap();
        let denied = client
            .get_resource(
                "tenant/blob/one",
                &key,
                &Credential::Cookie(sample.cookie.clone()),
            )
            .await;
        assert_eq!(refused(denied), (401, "PolicyDeny".into()));

        // Reference values and a policy that uses them.
        let values = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            br#"{"allowed_packages": ["pod"]}"#,
        );
        let message =
            serde_json::json!({ "version": "0.1.0", "type": "sample", "payload": values });
        assert_eq!(
            admin(
                "POST",
                "/reference-value".into(),
                message.to_string().into_bytes(),
                Some(admin_token(&b, 600))
            )
            .await,
            200
        );
        let policy = "package policy\nimport rego.v1\ndefault allow = false\nallow if {\n  input.submods.cpu0[\"ear.veraison.annotated-evidence\"].package in query_reference_value(\"allowed_packages\")\n}\n";
        let body = serde_json::json!({ "policy": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, policy) });
        assert_eq!(
            admin(
                "POST",
                "/resource-policy".into(),
                body.to_string().into_bytes(),
                Some(admin_token(&b, 600))
            )
            .await,
            200
        );
        assert_eq!(
            &*client
                .get_resource(
                    "tenant/blob/one",
                    &key,
                    &Credential::Cookie(sample.cookie.clone())
                )
                .await
                .unwrap(),
            b"uploaded"
        );
        let denied = client.get_resource("tenant/blob/one", &key, &cookie).await;
        assert_eq!(
            refused(denied),
            (401, "PolicyDeny".into()),
            "the enclave's package is not listed"
        );
        let bad = serde_json::json!({ "policy": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, "package policy\nallow if {") });
        assert_eq!(
            admin(
                "POST",
                "/resource-policy".into(),
                bad.to_string().into_bytes(),
                Some(admin_token(&b, 600))
            )
            .await,
            400,
            "a policy that does not compile is a bad request"
        );

        // An attestation policy in CoCo's style sets the token's trust vector; a resource
        // policy over `ear.status` then releases only to affirmed TEEs.
        let post_policy = |path: &'static str, body: serde_json::Value| {
            let token = admin_token(&b, 600);
            let admin = &admin;
            async move {
                admin(
                    "POST",
                    path.into(),
                    body.to_string().into_bytes(),
                    Some(token),
                )
                .await
            }
        };
        let encoded = |rego: &str| {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rego)
        };
        let attestation_policy = "package policy\nimport rego.v1\ndefault executables := 33\ndefault hardware := 97\nexecutables := 3 if { input.sample.launch_digest in query_reference_value(\"launch_digest\") }\nhardware := 2 if { input.sample.svn in query_reference_value(\"svn\") }\n";
        assert_eq!(
            post_policy(
                "/attestation-policy",
                serde_json::json!({ "type": "rego", "policy_id": "other", "policy": encoded(attestation_policy) })
            )
            .await,
            400,
            "only default_cpu is evaluated"
        );
        assert_eq!(
            post_policy(
                "/attestation-policy",
                serde_json::json!({ "type": "rego", "policy_id": "default_cpu", "policy": encoded(attestation_policy) })
            )
            .await,
            200
        );
        let affirmed_only = "package policy\nimport rego.v1\ndefault allow = false\nallow if { input.submods.cpu0[\"ear.status\"] == \"affirming\" }\n";
        assert_eq!(
            post_policy(
                "/resource-policy",
                serde_json::json!({ "policy": encoded(affirmed_only) })
            )
            .await,
            200
        );
        let status_of = |token: &str| -> serde_json::Value {
            let payload = token.split('.').nth(1).unwrap();
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["submods"]["cpu0"].clone()
        };
        let unknown = client.attest(&Prover::Sample, &key, None).await.unwrap();
        let cpu0 = status_of(&unknown.token);
        assert_eq!(cpu0["ear.status"], "contraindicated");
        assert_eq!(cpu0["ear.appraisal-policy-id"], "default_cpu");
        assert_eq!(cpu0["ear.trustworthiness-vector"]["hardware"], 97);
        let denied = client
            .get_resource(
                "tenant/blob/one",
                &key,
                &Credential::Cookie(unknown.cookie.clone()),
            )
            .await;
        assert_eq!(refused(denied), (401, "PolicyDeny".into()));
        let values = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            br#"{"launch_digest": ["abcde"], "svn": ["1"]}"#,
        );
        assert_eq!(
            post_policy(
                "/reference-value",
                serde_json::json!({ "version": "0.1.0", "type": "sample", "payload": values })
            )
            .await,
            200
        );
        let known = client.attest(&Prover::Sample, &key, None).await.unwrap();
        assert_eq!(status_of(&known.token)["ear.status"], "affirming");
        assert_eq!(
            &*client
                .get_resource("tenant/blob/one", &key, &Credential::Cookie(known.cookie))
                .await
                .unwrap(),
            b"uploaded"
        );

        // Deleting makes it 404.
        assert_eq!(
            admin(
                "DELETE",
                "/resource/tenant/blob/one".into(),
                Vec::new(),
                Some(admin_token(&b, 600))
            )
            .await,
            200
        );
        let gone = client
            .get_resource("tenant/blob/one", &key, &Credential::Cookie(sample.cookie))
            .await;
        assert_eq!(refused(gone).0, 404);
        std::fs::remove_dir_all(&b.dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served() {
    let dir = scratch("openapi");
    let s = coordinator_in(dir.clone(), &dir.join("sim")).await;
    let http = broker::reqwest_like::raw_client(&s.root);
    let doc: serde_json::Value = serde_json::from_str(coordinator::OPENAPI).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{which}", "root")
            .replace("{repo}/{kind}/{tag}", "a/b/c")
            .replace("{name}", "n");
        for method in item.as_object().unwrap().keys() {
            let response = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", s.url),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            // Unserved paths are not-found problems (API) or InvalidPath errors (key broker).
            let kind = body["type"].as_str().unwrap_or_default();
            assert!(
                status < 400
                    || !(kind.ends_with("/not-found")
                        || kind.ends_with("/method-not-allowed")
                        || kind.ends_with("/InvalidRequestPath")),
                "{method} {path} is documented but not served: {status} {body}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, coordinator::http::served_operations().len());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}
