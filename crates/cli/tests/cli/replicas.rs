//! Coordinator replicas on a real etcd (Debian's `etcd-server`, started here on loopback): one
//! deployment, limits that hold across replicas, one audit chain, joining by attestation, and
//! a replica that loses etcd refusing work until it returns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::hardening::User;
use super::keep::free_port;
use super::{Deployment, mrenclave, scratch, stderr, success_json};

/// An etcd cluster of loopback members, killed on drop.
struct Etcd {
    dir: PathBuf,
    members: Vec<Option<Child>>,
    clients: Vec<u16>,
    peers: Vec<u16>,
    /// Serve clients over TLS and require client certificates (files in `dir`).
    tls: bool,
}

impl Etcd {
    fn start(dir: &Path, size: usize) -> Self {
        Self::start_with(dir, size, false)
    }

    fn start_with(dir: &Path, size: usize, tls: bool) -> Self {
        let clients: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let peers: Vec<u16> = (0..size).map(|_| free_port()).collect();
        std::fs::create_dir_all(dir).unwrap();
        if tls {
            write_pki(dir);
        }
        let mut etcd = Self {
            dir: dir.to_path_buf(),
            members: (0..size).map(|_| None).collect(),
            clients,
            peers,
            tls,
        };
        for i in 0..size {
            etcd.spawn(i);
        }
        etcd.wait_healthy();
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .peers
            .iter()
            .enumerate()
            .map(|(n, p)| format!("m{n}=http://127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.clients[i]);
        let peer = format!("http://127.0.0.1:{}", self.peers[i]);
        let mut command = Command::new("etcd");
        if self.tls {
            command
                .arg("--cert-file")
                .arg(self.dir.join("server.pem"))
                .arg("--key-file")
                .arg(self.dir.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(self.dir.join("ca.pem"))
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-token",
                "cloister-test",
                "--initial-cluster-state",
                "new",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server) must be installed");
        self.members[i] = Some(child);
    }

    fn endpoints(&self) -> String {
        let hosts: Vec<String> = self
            .clients
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        hosts.join(",")
    }

    /// The store URL replicas use.
    fn store(&self) -> String {
        format!("etcd://{}/test", self.endpoints())
    }

    fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let mut command = Command::new("etcdctl");
            command.env("ETCDCTL_API", "3");
            if self.tls {
                command
                    .arg("--cacert")
                    .arg(self.dir.join("ca.pem"))
                    .arg("--cert")
                    .arg(self.dir.join("client.pem"))
                    .arg("--key")
                    .arg(self.dir.join("client.key"));
            }
            let out = command
                .args(["--endpoints", &self.endpoints(), "endpoint", "health"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not come up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, san) in [("server", "127.0.0.1"), ("client", "replica")] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![san.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// A replica on `store`, in `dir` (sharing `sim` with the others), on simulated machine
/// `machine`.
fn replica(dir: &Path, sim: &Path, store: &str, machine: &str) -> Deployment {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(sim).unwrap();
    if !dir.join("sim").exists() {
        std::os::unix::fs::symlink(sim, dir.join("sim")).unwrap();
    }
    Deployment::spawn(
        dir.to_path_buf(),
        &["--store", store, "--sim-machine", machine],
        None,
    )
}

/// A manifest with a limited and an unlimited workload, a shared secret, and `auditor` as a
/// user (who may read the audit log).
fn manifest(limit: u64, auditor: &User) -> String {
    json!({
        "users": { "auditor": { "certificate": auditor.cert, "roles": [] } },
        "packages": { "app": { "unique_id": mrenclave() } },
        "workloads": {
            "limited": { "package": "app", "max_activations": limit },
            "free": { "package": "app", "parameters": { "env": { "KEY": "{{ hex .Secrets.k }}" } } }
        },
        "secrets": { "k": { "type": "symmetric-key", "size": 128, "shared": true } }
    })
    .to_string()
}

/// Copy `from`'s pinned root to `to` (one deployment, one root).
fn share_root(from: &Deployment, to: &Deployment) {
    std::fs::copy(from.dir.join("root.pem"), to.dir.join("root.pem")).unwrap();
}

#[test]
fn replicas_on_etcd_share_one_deployment_and_its_limits() {
    let dir = scratch("replicas");
    let etcd = Etcd::start(&dir.join("etcd"), 1);
    let store = etcd.store();
    let auditor = User::new("auditor");
    let a = replica(&dir.join("a"), &dir.join("sim"), &store, "a");
    a.verify();
    // Another simulated machine: it cannot unseal A's copy of the state key, so it joins.
    let b = replica(&dir.join("b"), &dir.join("sim"), &store, "b");
    let verified = b.verify();
    assert_eq!(verified["verified"], true);
    assert_eq!(
        std::fs::read(a.dir.join("root.pem")).unwrap(),
        std::fs::read(b.dir.join("root.pem")).unwrap(),
        "one deployment root"
    );
    assert!(b.log().contains("joined"), "{}", b.log());

    // A manifest set through A is in force on B.
    let set = a.set_manifest(&manifest(5, &auditor));
    assert!(set.status.success(), "{}", stderr(&set));
    let hash = success_json(&set)["manifest_hash"].clone();
    let seen =
        wait_for(|| success_json(&b.cmd(&["status", "-o", "json"]))["manifest_hash"] == hash);
    assert!(seen, "B took up A's manifest");
    let key = |d: &Deployment| {
        let out = d.launch("free", &[], "echo $KEY");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(key(&a), key(&b), "one shared secret");

    // The limit holds across replicas.
    let mut activated = 0;
    for n in 0..8 {
        let d = if n % 2 == 0 { &a } else { &b };
        let out = d.launch("limited", &[], "true");
        if out.status.success() {
            activated += 1;
        } else {
            assert!(stderr(&out).contains("activations"), "{}", stderr(&out));
        }
    }
    assert_eq!(activated, 5);

    // One audit chain, verified, with both replicas' work in it.
    let admin_log = audit_events(&b, &auditor);
    assert!(
        admin_log.contains(&"replica-joined".to_string()),
        "{admin_log:?}"
    );
    assert_eq!(
        admin_log.iter().filter(|e| *e == "activation").count(),
        7,
        "2 free and 5 limited activations"
    );

    // Evidence of another enclave (a workload's, not the coordinator's) gets nothing.
    let refused = join_with_workload_evidence(&a);
    assert!(refused.contains("join-refused"), "{refused}");
    assert!(refused.contains("same coordinator software"), "{refused}");
    drop((a, b, etcd));
}

/// The events of `d`'s audit log, read as `auditor`.
fn audit_events(d: &Deployment, auditor: &User) -> Vec<String> {
    let cert = d.dir.join("auditor.crt");
    let key = d.dir.join("auditor.key");
    std::fs::write(&cert, &auditor.cert).unwrap();
    std::fs::write(&key, &auditor.key).unwrap();
    let log = success_json(&d.cmd(&[
        "audit",
        "--limit",
        "1000",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(log["chain_verified"], true);
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// POST a join request with a simulated workload enclave's evidence; the problem document.
fn join_with_workload_evidence(d: &Deployment) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let platform =
        attest::sim::SimPlatform::open(&d.dir.join("sim"), time::OffsetDateTime::now_utc())
            .unwrap();
    let attester = attest::attester::SimulatedAttester::on_platform(
        attest::TeeKind::Sgx,
        &platform,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let public_key = r#"{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}"#;
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&attest::crypto::sha256(public_key.as_bytes()));
    use attest::attester::Attester as _;
    let evidence = attester.evidence(&report_data).unwrap();
    let request = json!({
        "evidence": api::EvidenceBundle::from_evidence(&evidence),
        "public_key": public_key,
    });
    let root = launcher::client::certs_from_pem(
        "root",
        &std::fs::read_to_string(d.dir.join("root.pem")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let client = launcher::client::Client::pinned(&d.url, &root, None).unwrap();
    let answer =
        rt.block_on(client.post::<Value>("/replicas/join", request.to_string().into_bytes()));
    format!("{answer:?}")
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_replica_reaches_etcd_over_mutual_tls_and_only_with_its_certificate() {
    let dir = scratch("etcd-tls");
    let etcd = Etcd::start_with(&dir.join("etcd"), 1, true);
    let pki = |name: &str| dir.join("etcd").join(name).display().to_string();
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let a = Deployment::spawn(
        dir.join("a"),
        &[
            "--store",
            &etcd.store(),
            "--etcd-ca",
            &pki("ca.pem"),
            "--etcd-cert",
            &pki("client.pem"),
            "--etcd-key",
            &pki("client.key"),
        ],
        None,
    );
    a.verify();
    let auditor = User::new("auditor");
    let set = a.set_manifest(&manifest(1, &auditor));
    assert!(set.status.success(), "{}", stderr(&set));
    // Without the client certificate etcd refuses the connection, and the coordinator says so.
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args([
            "coordinator",
            "serve",
            "--simulation",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--store", &etcd.store(), "--etcd-ca", &pki("ca.pem")])
        .arg("--data-dir")
        .arg(dir.join("b"))
        .env("CLOISTER_SIM_DIR", dir.join("a").join("sim"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("etcd store is unavailable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_replica_that_loses_etcd_answers_503_and_recovers_by_itself() {
    let dir = scratch("etcd-loss");
    let mut etcd = Etcd::start(&dir.join("etcd"), 1);
    let auditor = User::new("auditor");
    let a = replica(&dir.join("a"), &dir.join("sim"), &etcd.store(), "a");
    a.verify();
    assert!(a.set_manifest(&manifest(100, &auditor)).status.success());
    etcd.kill(0);
    // Reads from its copy still work; changes are refused with a problem document.
    assert!(a.cmd(&["status"]).status.success());
    let refused = a.launch("limited", &[], "true");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("store-unavailable") || stderr(&refused).contains("etcd"),
        "{}",
        stderr(&refused)
    );
    // Unlimited activations change no state, but their audit records cannot be kept either.
    let free = a.launch("free", &[], "true");
    assert!(stderr(&free).contains("unavailable"), "{}", stderr(&free));
    // etcd returns: the replica notices by itself (nothing it must write is waiting) and works
    // again without a restart.
    etcd.spawn(0);
    etcd.wait_healthy();
    let back = wait_for(|| a.launch("free", &[], "true").status.success());
    assert!(back, "{}", a.log());
    assert!(a.launch("limited", &[], "true").status.success());
}

#[test]
fn three_replicas_on_three_members_lose_one_replica_under_load_and_nothing_else() {
    let dir = scratch("etcd-three");
    let etcd = Etcd::start(&dir.join("etcd"), 3);
    let store = etcd.store();
    let sim = dir.join("sim");
    let a = replica(&dir.join("a"), &sim, &store, "a");
    a.verify();
    let b = replica(&dir.join("b"), &sim, &store, "b");
    let c = replica(&dir.join("c"), &sim, &store, "c");
    share_root(&a, &b);
    share_root(&a, &c);
    const LIMIT: u64 = 30;
    let auditor = User::new("auditor");
    assert!(a.set_manifest(&manifest(LIMIT, &auditor)).status.success());
    let urls: Vec<String> = [&a, &b, &c].iter().map(|d| d.url.clone()).collect();
    let root = launcher::client::certs_from_pem(
        "root",
        &std::fs::read_to_string(a.dir.join("root.pem")).unwrap(),
    )
    .unwrap()
    .remove(0);
    // Workers activate round-robin, each trying the next replica when one fails; B dies
    // with -9 in the middle.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b_pid = b.child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let _ = Command::new("kill")
            .args(["-9", &b_pid.to_string()])
            .status();
    });
    let (acked, refusals) = rt.block_on(activate_until_exhausted(&urls, &root, &sim, LIMIT * 2));
    killer.join().unwrap();
    assert!(
        acked.len() as u64 <= LIMIT,
        "{} activations over the limit {LIMIT}",
        acked.len()
    );
    assert_eq!(
        acked.len() as u64,
        LIMIT,
        "every slot was used ({refusals} refusals)"
    );
    // Every acknowledged activation is in the one chain.
    let events = audit_uuids(&a, &root, &auditor);
    for uuid in &acked {
        assert!(events.contains(uuid), "acknowledged activation {uuid} lost");
    }
    drop((a, b, c, etcd));
}

/// Activate `attempts` times across `urls`; the acknowledged UUIDs and the limit refusals.
async fn activate_until_exhausted(
    urls: &[String],
    root: &[u8],
    sim: &Path,
    attempts: u64,
) -> (Vec<String>, u64) {
    let platform = attest::sim::SimPlatform::open(sim, time::OffsetDateTime::now_utc()).unwrap();
    let attester = std::sync::Arc::new(
        attest::attester::SimulatedAttester::on_platform(
            attest::TeeKind::Sgx,
            &platform,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for n in 0..attempts {
        let (urls, root, attester) = (
            urls.to_vec(),
            root.to_vec(),
            std::sync::Arc::clone(&attester),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n * 20)).await;
            let key = launcher::WorkloadKey::generate().unwrap();
            for i in 0..urls.len() * 3 {
                let url = &urls[(n as usize + i) % urls.len()];
                let request = launcher::Request {
                    coordinator: url,
                    root_der: &root,
                    workload: "limited",
                    uuid: None,
                    module_sha256: None,
                };
                match launcher::activate(&request, attester.as_ref(), &key, &key).await {
                    Ok(a) => return Ok(a.uuid),
                    Err(e) if format!("{e:?}").contains("max-activations") => return Err(true),
                    Err(_) => continue,
                }
            }
            Err(false)
        }));
    }
    let (mut acked, mut refusals) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(uuid) => acked.push(uuid),
            Err(true) => refusals += 1,
            Err(false) => panic!("an activation found no replica to take it"),
        }
    }
    (acked, refusals)
}

/// The UUIDs of the activations in `d`'s audit log.
fn audit_uuids(d: &Deployment, root: &[u8], auditor: &User) -> Vec<String> {
    let identity = launcher::client::Identity::from_pem(&auditor.cert, &auditor.key).unwrap();
    let client = launcher::client::Client::pinned(&d.url, root, Some(&identity)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log: api::AuditLog = rt.block_on(client.get("/audit?limit=1000")).unwrap();
    log.entries
        .iter()
        .filter(|e| e.event == "activation")
        .filter_map(|e| e.details["uuid"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn with_no_replica_to_join_holders_recover_the_state_in_etcd() {
    let dir = scratch("etcd-recover");
    let etcd = Etcd::start(&dir.join("etcd"), 1);
    let store = etcd.store();
    let sim = dir.join("sim");
    let a = replica(&dir.join("a"), &sim, &store, "a");
    a.verify();
    let (key, public) = super::survive::recovery_key(&a.dir, "holder");
    let auditor = User::new("auditor");
    let mut m: Value = serde_json::from_str(&manifest(3, &auditor)).unwrap();
    m["recovery_keys"] = json!({ "holder": public });
    let path = a.dir.join("manifest.json");
    std::fs::write(&path, m.to_string()).unwrap();
    let secrets = a.dir.join("recovery.json");
    success_json(&a.cmd(&[
        "manifest",
        "set",
        path.to_str().unwrap(),
        "--recovery-secrets",
        secrets.to_str().unwrap(),
        "-o",
        "json",
    ]));
    let secret: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
    let secret_file = a.dir.join("holder.secret");
    std::fs::write(&secret_file, secret["holder"].as_str().unwrap()).unwrap();
    let shared = a.launch("free", &[], "echo $KEY");
    assert!(a.launch("limited", &[], "true").status.success());
    drop(a);

    // A replica on another machine, with nobody to join: recovery mode.
    let b = replica(&dir.join("b"), &sim, &store, "b");
    let temporary = b.dir.join("recovery-root.pem");
    success_json(&b.cmd(&[
        "verify",
        "--accept-simulation",
        "--save-root",
        temporary.to_str().unwrap(),
        "-o",
        "json",
    ]));
    let status = success_json(&b.cmd(&[
        "status",
        "--root-ca",
        temporary.to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(status["state"], "recovery", "{}", b.log());
    let done = success_json(&b.cmd(&[
        "recover",
        "--accept-simulation",
        "--key",
        key.to_str().unwrap(),
        "--secret",
        secret_file.to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(done["recovered"], true);
    // The same deployment, on the new machine: its secret, its counts; it registered, so a
    // third machine joins through it.
    std::fs::copy(dir.join("a").join("root.pem"), b.dir.join("root.pem")).unwrap();
    assert_eq!(b.launch("free", &[], "echo $KEY").stdout, shared.stdout);
    let c = replica(&dir.join("c"), &sim, &store, "c");
    assert!(c.log().contains("joined"), "{}", c.log());
    std::fs::copy(dir.join("a").join("root.pem"), c.dir.join("root.pem")).unwrap();
    assert!(c.launch("limited", &[], "true").status.success());
    assert!(b.launch("limited", &[], "true").status.success());
    let over = c.launch("limited", &[], "true");
    assert!(
        stderr(&over).contains("activations"),
        "the limit of 3 held: {}",
        stderr(&over)
    );
    drop((b, c, etcd));
}
