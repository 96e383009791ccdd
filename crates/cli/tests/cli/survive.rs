//! The coordinator survives: recovery with k of n keys after the platform's sealing key
//! changes, and manifest updates (package updates, full updates with acknowledgements)
//! through the CLI, each step in the verified audit chain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::hardening::User;
use super::{Deployment, mrenclave, stderr, success_json};

/// An RSA recovery key pair made by openssl: (private PKCS#8 PEM path, public PEM text).
pub(super) fn recovery_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(format!("{name}.key.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(public.status.success());
    (private, String::from_utf8(public.stdout).unwrap())
}

/// Write `user`'s certificate and key; return the flags that act as them.
fn as_user(d: &Deployment, name: &str, user: &User) -> Vec<String> {
    let cert = d.dir.join(format!("{name}.crt"));
    let key = d.dir.join(format!("{name}.key"));
    std::fs::write(&cert, &user.cert).unwrap();
    std::fs::write(&key, &user.key).unwrap();
    vec![
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

fn run(d: &Deployment, args: &[&str], user: &[String]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(user.iter().map(String::as_str));
    d.cmd(&all)
}

/// The shared secret an `app` workload gets.
fn shared_key(d: &Deployment) -> String {
    let out = d.launch("app", &[], "echo $KEY");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_of_three_holders_recover_the_state_on_a_new_platform() {
    let d = Deployment::start("recover");
    d.verify();
    let admin = User::new("admin");
    let keys: Vec<(PathBuf, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| recovery_key(&d.dir, n))
        .collect();
    let mut manifest: Value = serde_json::from_str(&super::manifest_json("")).unwrap();
    manifest["recovery_keys"] = json!({ "a": keys[0].1, "b": keys[1].1, "c": keys[2].1 });
    manifest["config"] = json!({ "recovery_threshold": 2 });
    manifest["users"] = json!({ "admin": { "certificate": admin.cert, "roles": ["reader"] } });
    manifest["roles"] = json!({ "reader": { "resource_type": "Secrets", "resource_names": ["k"], "actions": ["ReadSecret"] } });
    let path = d.dir.join("manifest.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let secrets_file = d.dir.join("recovery.json");
    let set = d.cmd(&[
        "manifest",
        "set",
        path.to_str().unwrap(),
        "--recovery-secrets",
        secrets_file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let answer = success_json(&set);
    assert_eq!(answer["recovery_secrets"].as_object().unwrap().len(), 3);
    let secrets: Value = serde_json::from_slice(&std::fs::read(&secrets_file).unwrap()).unwrap();
    let secret_file = |holder: &str| {
        let file = d.dir.join(format!("{holder}.secret"));
        std::fs::write(&file, secrets[holder].as_str().unwrap()).unwrap();
        file.display().to_string()
    };
    let (a, b, c) = (secret_file("a"), secret_file("b"), secret_file("c"));
    let before = shared_key(&d);
    let root_before = std::fs::read_to_string(d.dir.join("root.pem")).unwrap();

    // New hardware: the simulated platform (and so its sealing key) is another one.
    let sim = d.dir.join("sim");
    std::fs::rename(&sim, d.dir.join("sim-old")).unwrap();
    let d = d.restart();
    let recovery_root = d.dir.join("recovery-root.pem");
    let statement = success_json(&d.cmd(&[
        "verify",
        "--accept-simulation",
        "--save-root",
        recovery_root.to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(statement["verified"], true);
    let status = success_json(&d.cmd(&[
        "status",
        "--root-ca",
        recovery_root.to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(status["state"], "recovery");
    assert_eq!(status["recovery"]["threshold"], 2);
    // Everything else waits for recovery.
    let refused = d.cmd(&[
        "manifest",
        "get",
        "--root-ca",
        recovery_root.to_str().unwrap(),
    ]);
    assert!(
        stderr(&refused).contains("recovery mode"),
        "{}",
        stderr(&refused)
    );

    let recover = |key: &Path, secret: &str| {
        d.cmd(&[
            "recover",
            "--accept-simulation",
            "--key",
            key.to_str().unwrap(),
            "--secret",
            secret,
            "-o",
            "json",
        ])
    };
    // A's key cannot open B's secret; a key that is not a recovery key is refused.
    let wrong = recover(&keys[0].0, &b);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("does not decrypt"),
        "{}",
        stderr(&wrong)
    );
    let (stranger, _) = recovery_key(&d.dir, "stranger");
    let unknown = recover(&stranger, &a);
    assert!(
        stderr(&unknown).contains("is not one of the recovery keys"),
        "{}",
        stderr(&unknown)
    );
    let first = success_json(&recover(&keys[0].0, &a));
    assert_eq!(first["remaining"], 1);
    assert_eq!(first["recovered"], false);
    let again = recover(&keys[0].0, &a);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already received"),
        "{}",
        stderr(&again)
    );
    let done = success_json(&recover(&keys[2].0, &c));
    assert_eq!(done["recovered"], true, "{done}");

    // The same deployment: its root, its secrets; it runs workloads again.
    let out = d.cmd(&["certificate", "root"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), root_before);
    assert_eq!(shared_key(&d), before);
    let late = recover(&keys[1].0, &b);
    assert!(!late.status.success(), "recovery is over");
    // It restarts without the holders: the state key is sealed for this platform now.
    let d = d.restart();
    assert_eq!(shared_key(&d), before);
    let user = as_user(&d, "admin", &admin);
    let audit = run(&d, &["audit", "-o", "json"], &user);
    let log = success_json(&audit);
    assert_eq!(log["chain_verified"], true);
    let events: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"state-recovered"), "{events:?}");
}

#[test]
fn a_state_without_recovery_keys_says_it_cannot_be_recovered() {
    let d = Deployment::start("no-recovery");
    d.verify();
    assert!(d.set_manifest(&super::manifest_json("")).status.success());
    std::fs::rename(d.dir.join("sim"), d.dir.join("sim-old")).unwrap();
    let d = d.restart();
    let root = d.dir.join("recovery-root.pem");
    success_json(&d.cmd(&[
        "verify",
        "--accept-simulation",
        "--save-root",
        root.to_str().unwrap(),
        "-o",
        "json",
    ]));
    let status =
        success_json(&d.cmd(&["status", "--root-ca", root.to_str().unwrap(), "-o", "json"]));
    assert_eq!(status["state"], "recovery");
    assert!(status["recovery"].is_null());
    assert!(d.log().contains("without recovery keys"), "{}", d.log());
}

/// A manifest with an SGX package pinned by signer (the simulated enclave's), users who may
/// update it, and `note` in the workload's environment.
fn signed_manifest(alice: &User, bob: &User, carol: &User, note: &str, svn: u16) -> String {
    let signer = hex_sha256(b"cloister simulated enclave signer");
    json!({
        "packages": {
            "signed": { "signer_id": signer, "product_id": 1, "security_version": svn },
            "pinned": { "unique_id": mrenclave() }
        },
        "workloads": {
            "app": { "package": "signed", "parameters": { "env": { "NOTE": note } } }
        },
        "users": {
            "alice": { "certificate": alice.cert, "roles": ["update"] },
            "bob": { "certificate": bob.cert, "roles": ["update"] },
            "carol": { "certificate": carol.cert, "roles": ["svn"] }
        },
        "roles": {
            "update": { "resource_type": "Manifest", "actions": ["UpdateManifest"] },
            "svn": { "resource_type": "Packages", "resource_names": ["signed", "pinned"], "actions": ["UpdateSecurityVersion"] }
        }
    })
    .to_string()
}

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn note_of(d: &Deployment) -> Output {
    d.launch("app", &[], "echo $NOTE")
}

#[test]
fn updates_need_their_permissions_and_acknowledgements() {
    let d = Deployment::start("update");
    d.verify();
    let (alice, bob, carol) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let (as_alice, as_bob, as_carol) = (
        as_user(&d, "alice", &alice),
        as_user(&d, "bob", &bob),
        as_user(&d, "carol", &carol),
    );
    let first = d.set_manifest(&signed_manifest(&alice, &bob, &carol, "one", 1));
    assert!(first.status.success(), "{}", stderr(&first));
    let one = note_of(&d);
    assert_eq!(
        String::from_utf8_lossy(&one.stdout).trim(),
        "one",
        "{}",
        stderr(&one)
    );

    // A package update: only security_version, only by a holder of UpdateSecurityVersion.
    let raise = d.dir.join("raise.json");
    std::fs::write(
        &raise,
        r#"{"packages": {"signed": {"security_version": 2}}}"#,
    )
    .unwrap();
    let raise = raise.to_str().unwrap();
    let denied = run(&d, &["manifest", "update", "apply", raise], &as_bob);
    assert!(stderr(&denied).contains("may not"), "{}", stderr(&denied));
    let raised = success_json(&run(
        &d,
        &["manifest", "update", "apply", raise, "-o", "json"],
        &as_carol,
    ));
    assert_eq!(raised["applied"], true);
    let message = raised["message"].as_str().unwrap();
    assert!(
        message.contains("stay valid until they expire"),
        "{message}"
    );
    // The workload at ISVSVN 1 is refused from now on, also after a restart.
    let refused = note_of(&d);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("ISVSVN"), "{}", stderr(&refused));
    let refused_update = |file: &str, text: &str, says: &str| {
        let path = d.dir.join(file);
        std::fs::write(&path, text).unwrap();
        let out = run(
            &d,
            &["manifest", "update", "apply", path.to_str().unwrap()],
            &as_carol,
        );
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    };
    refused_update(
        "down.json",
        r#"{"packages": {"signed": {"security_version": 1}}}"#,
        "only go up",
    );
    refused_update(
        "pinned.json",
        r#"{"packages": {"pinned": {"security_version": 5}}}"#,
        "not an SGX package pinned by signer_id",
    );
    let got = success_json(&d.cmd(&["manifest", "get", "-o", "json"]));
    assert_eq!(got["package_updates"]["signed"], 2);

    // A full update needs both updaters (threshold 0: all of them).
    let next = d.dir.join("next.json");
    std::fs::write(&next, signed_manifest(&alice, &bob, &carol, "two", 1)).unwrap();
    let next = next.to_str().unwrap();
    let by_carol = run(&d, &["manifest", "update", "apply", next], &as_carol);
    assert!(
        stderr(&by_carol).contains("may not"),
        "{}",
        stderr(&by_carol)
    );
    let proposed = success_json(&run(
        &d,
        &["manifest", "update", "apply", next, "-o", "json"],
        &as_alice,
    ));
    assert_eq!(proposed["applied"], false);
    assert_eq!(proposed["missing_acknowledgements"], 1);
    assert_eq!(proposed["missing_users"], json!(["bob"]));
    let set_over = d.set_manifest(&signed_manifest(&alice, &bob, &carol, "three", 1));
    assert!(
        !set_over.status.success(),
        "a set cannot bypass the acknowledgements"
    );
    let twice = run(&d, &["manifest", "update", "acknowledge", next], &as_alice);
    assert!(
        stderr(&twice).contains("already acknowledged"),
        "{}",
        stderr(&twice)
    );
    let other = d.dir.join("other.json");
    std::fs::write(&other, signed_manifest(&alice, &bob, &carol, "other", 1)).unwrap();
    let mismatch = run(
        &d,
        &["manifest", "update", "acknowledge", other.to_str().unwrap()],
        &as_bob,
    );
    assert!(
        stderr(&mismatch).contains("not sha256:"),
        "{}",
        stderr(&mismatch)
    );
    // The pending update survives a restart, and is cancelled by an updater.
    let d = d.restart();
    let status = success_json(&run(
        &d,
        &["manifest", "update", "status", "-o", "json"],
        &[],
    ));
    assert_eq!(status["pending"]["acknowledged"], json!(["alice"]));
    let cancelled = run(&d, &["manifest", "update", "cancel"], &as_bob);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    let none = run(&d, &["manifest", "update", "acknowledge", next], &as_bob);
    assert!(
        stderr(&none).contains("no manifest update is pending"),
        "{}",
        stderr(&none)
    );

    // Proposed again and acknowledged: the new manifest is in force, the statement names it,
    // and the new package version (1 again in the full manifest) admits the workload.
    success_json(&run(
        &d,
        &["manifest", "update", "apply", next, "-o", "json"],
        &as_alice,
    ));
    let applied = success_json(&run(
        &d,
        &["manifest", "update", "acknowledge", next, "-o", "json"],
        &as_bob,
    ));
    assert_eq!(applied["applied"], true);
    let hash = applied["manifest_hash"].as_str().unwrap().to_string();
    assert_eq!(d.verify()["manifest_hash"], hash.as_str());
    let two = note_of(&d);
    assert_eq!(
        String::from_utf8_lossy(&two.stdout).trim(),
        "two",
        "{}",
        stderr(&two)
    );
    let got = success_json(&d.cmd(&["manifest", "get", "-o", "json"]));
    assert!(
        got["package_updates"].is_null(),
        "a full update replaces package updates"
    );

    // Every step is in the verified chain.
    let log = success_json(&run(&d, &["audit", "-o", "json"], &as_alice));
    assert_eq!(log["chain_verified"], true);
    let events: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|e| *e != "activation")
        .collect();
    assert_eq!(
        events,
        [
            "coordinator-initialized",
            "kbs-initialized",
            "manifest-set",
            "package-updated",
            "update-proposed",
            "update-cancelled",
            "update-proposed",
            "manifest-updated"
        ]
    );
    let text = run(&d, &["audit"], &as_alice);
    assert!(String::from_utf8_lossy(&text.stdout).contains("hash chain verified"));
}

/// What one round of state changes had acknowledged before the coordinator was killed.
#[derive(Default)]
struct Acknowledged {
    /// The last secret value whose write was acknowledged, and the last one attempted.
    secret: (u64, u64),
    /// The last manifest note acknowledged, and the last attempted.
    note: (u64, u64),
    /// UUIDs of acknowledged limited activations.
    activations: Vec<String>,
    changes: usize,
}

/// Secret writes, manifest updates and limited activations as fast as they go, until the
/// coordinator dies under them.
async fn change_until_killed(
    url: &str,
    root: &[u8],
    admin: &launcher::client::Identity,
    manifest: &(dyn Fn(u64) -> String + Sync),
    sim: &Path,
    start: (u64, u64),
) -> Acknowledged {
    use base64::Engine as _;
    let client = launcher::client::Client::pinned(url, root, Some(admin)).unwrap();
    let platform = attest::sim::SimPlatform::open(sim, time::OffsetDateTime::now_utc()).unwrap();
    let attester = attest::attester::SimulatedAttester::on_platform(
        attest::TeeKind::Sgx,
        &platform,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let mut acked = Acknowledged {
        secret: (start.0, start.0),
        note: (start.1, start.1),
        ..Acknowledged::default()
    };
    for step in 0u64.. {
        let ok = match step % 3 {
            0 => {
                acked.secret.1 += 1;
                let value =
                    base64::engine::general_purpose::STANDARD.encode(acked.secret.1.to_string());
                let body = json!({ "secrets": { "up": { "key": value } } }).to_string();
                let done = client
                    .post::<Value>("/secrets", body.into_bytes())
                    .await
                    .is_ok();
                if done {
                    acked.secret.0 = acked.secret.1;
                }
                done
            }
            1 => {
                acked.note.1 += 1;
                let body = manifest(acked.note.1).into_bytes();
                let done = client.post::<Value>("/manifest", body).await.is_ok();
                if done {
                    acked.note.0 = acked.note.1;
                }
                done
            }
            _ => {
                let key = launcher::WorkloadKey::generate().unwrap();
                let request = launcher::Request {
                    coordinator: url,
                    root_der: root,
                    workload: "limited",
                    uuid: None,
                    module_sha256: None,
                };
                match launcher::activate(&request, &attester, &key, &key).await {
                    Ok(a) => {
                        acked.activations.push(a.uuid);
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        if !ok {
            return acked;
        }
        acked.changes += 1;
    }
    acked
}

#[test]
fn kill_9_during_1000_state_changes_loses_nothing_acknowledged() {
    use std::time::Duration;
    const LIMIT: u64 = 100_000;
    let d = Deployment::start("crash");
    d.verify();
    let admin = User::new("admin");
    let identity = launcher::client::Identity::from_pem(&admin.cert, &admin.key).unwrap();
    let cert = admin.cert.clone();
    let manifest = move |note: u64| {
        json!({
            "packages": { "app": { "unique_id": mrenclave() } },
            "workloads": { "limited": { "package": "app", "max_activations": LIMIT,
                                        "parameters": { "env": { "NOTE": note.to_string() } } } },
            "secrets": { "up": { "type": "plain", "user_defined": true } },
            "users": { "admin": { "certificate": cert, "roles": ["write", "update"] } },
            "roles": {
                "write": { "resource_type": "Secrets", "resource_names": ["up"], "actions": ["WriteSecret", "ReadSecret"] },
                "update": { "resource_type": "Manifest", "actions": ["UpdateManifest"] }
            }
        })
        .to_string()
    };
    assert!(d.set_manifest(&manifest(0)).status.success());
    let root = launcher::client::certs_from_pem(
        "root",
        &std::fs::read_to_string(d.dir.join("root.pem")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut d = d;
    let (mut secret, mut note, mut total) = (0u64, 0u64, 0usize);
    let mut activations = Vec::new();
    let mut round = 0u64;
    while total < 1000 {
        round += 1;
        // Kill -9 at a point that differs from round to round.
        let pid = d.child.id();
        let delay = Duration::from_millis(150 + (round * 137) % 400);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let acked = rt.block_on(change_until_killed(
            &d.url,
            &root,
            &identity,
            &manifest,
            &d.dir.join("sim"),
            (secret, note),
        ));
        killer.join().unwrap();
        d = d.restart();
        // Every acknowledged write is there: the value is the last acknowledged one, or the
        // one in flight when the coordinator died.
        let client = launcher::client::Client::pinned(&d.url, &root, Some(&identity)).unwrap();
        let read: api::Secrets = rt.block_on(client.get("/secrets?name=up")).unwrap();
        let value = read.secrets["up"].key.clone().unwrap();
        use base64::Engine as _;
        let value: u64 = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .unwrap(),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(
            value == acked.secret.0 || value == acked.secret.1,
            "secret {value}, acknowledged {:?}",
            acked.secret
        );
        let m: api::ManifestResponse = rt.block_on(client.get("/manifest")).unwrap();
        let m = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(m.manifest)
                .unwrap(),
        )
        .unwrap();
        let in_force: Value = serde_json::from_str(&m).unwrap();
        let in_force: u64 = in_force["workloads"]["limited"]["parameters"]["env"]["NOTE"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            in_force == acked.note.0 || in_force == acked.note.1,
            "note {in_force}, acknowledged {:?}",
            acked.note
        );
        (secret, note) = (value, in_force);
        total += acked.changes;
        activations.extend(acked.activations);
    }
    // Every acknowledged activation is in the audit log, and the counts never went back.
    let client = launcher::client::Client::pinned(&d.url, &root, Some(&identity)).unwrap();
    let mut counts = Vec::new();
    let mut logged = std::collections::HashSet::new();
    let mut from = Some(0u64);
    while let Some(at) = from {
        let page: api::AuditLog = rt
            .block_on(client.get(&format!("/audit?from={at}&limit=1000")))
            .unwrap();
        for e in &page.entries {
            if e.event == "activation" {
                counts.push(e.details["activation"].as_u64().unwrap());
                logged.insert(e.details["uuid"].as_str().unwrap().to_string());
            }
        }
        from = page.next;
    }
    for uuid in &activations {
        assert!(logged.contains(uuid), "acknowledged activation {uuid} lost");
    }
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "activation counts went back: {counts:?}"
    );
    assert!(round >= 3, "the coordinator was killed {round} times");
}
