//! The launcher and the coordinator-verification client against a real coordinator on
//! loopback: the bindings each side insists on, and users' roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

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
    };
    let running = coordinator::serve(&config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://{}", running.addr);
    let root = running.coordinator.root_der().to_vec();
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
    assert_eq!(leaf.spki_der, key.spki_der());
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
    // Every change is in the hash-chained audit log.
    let log: api::AuditLog = anonymous.get("/audit").await.unwrap();
    let events: Vec<&str> = log.entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        ["coordinator-initialized", "manifest-set", "secret-set"]
    );
    assert_eq!(log.entries[2].actor, "alice");
    assert_eq!(log.entries[1].hash, log.entries[2].prev_hash);
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
    // Before a manifest: activation has nothing to activate against.
    let (status, _) = client
        .raw("POST", "/activate", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 400);
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
    let log: api::AuditLog = anonymous.get("/audit").await.unwrap();
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
    let log: api::AuditLog = anonymous.get("/audit").await.unwrap();
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
