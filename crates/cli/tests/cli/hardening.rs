//! The coordinator as an attacker on loopback meets it: no request crashes, hangs or exhausts it,
//! and `/health` answers within a second throughout. One test per finding of the hardening
//! review; each runs a real coordinator process and speaks raw HTTP/1.1 over TLS to it.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Deployment, scratch};

/// A manifest user: their certificate and key (PEM).
pub(super) struct User {
    pub(super) cert: String,
    pub(super) key: String,
}

impl User {
    pub(super) fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A user `admin` who may do everything, a sample package, a secret they may write.
fn manifest(admin: &User, resource_policy: Option<&str>) -> String {
    let mut m = serde_json::json!({
        "packages": { "pod": { "tee": "sample" } },
        "secrets": {
            "k": { "type": "symmetric-key", "size": 256, "shared": true },
            "up": { "type": "plain", "user_defined": true }
        },
        "users": { "admin": { "certificate": admin.cert, "roles": ["manifest", "write", "kbs"] } },
        "roles": {
            "manifest": { "resource_type": "Manifest", "actions": ["UpdateManifest"] },
            "write": { "resource_type": "Secrets", "resource_names": ["up"], "actions": ["WriteSecret"] },
            "kbs": { "resource_type": "Kbs", "actions": ["WriteResource", "SetPolicy"] }
        },
        "kbs": { "resources": { "default/key/1": { "secret": "k", "packages": ["pod"] } } }
    });
    if let Some(policy) = resource_policy {
        m["kbs"]["resource_policy"] = policy.into();
    }
    m.to_string()
}

/// A pinned TLS client for a deployment, as a user or anonymous.
#[derive(Clone)]
pub(super) struct Client {
    addr: String,
    name: String,
    config: Arc<rustls::ClientConfig>,
}

/// An answer: status, head and body.
pub(super) struct Answer {
    pub(super) status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl Client {
    fn new(d: &Deployment, user: Option<&User>) -> Self {
        let root = std::fs::read(d.dir.join("root.pem")).unwrap();
        let identity = user.map(|u| (u.cert.as_bytes(), u.key.as_bytes()));
        Self::to(
            d.url.trim_start_matches("https://"),
            &root,
            identity,
            "localhost",
        )
    }

    /// A client of `addr` that trusts `root_pem` for a server named `name`, presenting
    /// `identity` (certificate and key PEM) when given.
    pub(super) fn to(
        addr: &str,
        root_pem: &[u8],
        identity: Option<(&[u8], &[u8])>,
        name: &str,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(root_pem).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert)
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key).unwrap(),
                )
                .unwrap(),
        };
        Self {
            addr: addr.to_string(),
            name: name.to_string(),
            config: Arc::new(config),
        }
    }

    /// A TLS connection, handshake done.
    fn try_connect(
        &self,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let name = ServerName::try_from(self.name.clone()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    fn connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        self.try_connect().unwrap()
    }

    /// `method path` with `headers` (CRLF-terminated lines) and `body`; the connection closes.
    pub(super) fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut tls = self.try_connect()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        // The server may refuse before it reads the body: then writing it fails, and the
        // answer is still there to read.
        let _ = tls.write_all(body);
        try_read_answer(&mut tls)
    }

    fn send(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> Answer {
        self.try_send(method, path, headers, body).unwrap()
    }

    pub(super) fn get(&self, path: &str) -> Answer {
        self.send("GET", path, "", b"")
    }

    fn post_json(&self, path: &str, body: &str) -> Answer {
        self.send(
            "POST",
            path,
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        )
    }
}

fn read_answer(tls: &mut impl std::io::Read) -> Answer {
    try_read_answer(tls).unwrap()
}

fn try_read_answer(tls: &mut impl std::io::Read) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    // A close without close_notify still leaves what arrived.
    let _ = tls.read_to_end(&mut raw);
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("no status in {head:?}")))?;
    Ok(Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

/// Asks `/health` ten times a second on fresh connections while an attack runs; `finish`
/// fails the test unless every answer came, within a second.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Duration, usize, usize)>,
}

impl Probe {
    fn start(client: &Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, halt) = (client.clone(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let (mut slowest, mut answers, mut failures) = (Duration::ZERO, 0, 0);
            while !halt.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = healthy(&client);
                slowest = slowest.max(started.elapsed());
                answers += 1;
                failures += usize::from(!ok);
                std::thread::sleep(Duration::from_millis(100));
            }
            (slowest, answers, failures)
        });
        Self { stop, thread }
    }

    fn finish(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let (slowest, answers, failures) = self.thread.join().unwrap();
        assert!(answers > 0, "{what}: the probe never asked");
        assert_eq!(
            failures, 0,
            "{what}: /health failed {failures} of {answers} times"
        );
        assert!(
            slowest < Duration::from_secs(1),
            "{what}: /health took {slowest:?}"
        );
    }
}

/// A deployment with `admin` in its manifest, verified and pinned.
fn deployment(name: &str, extra: &[&str], admin: &User) -> Deployment {
    let d = Deployment::spawn(scratch(name), extra, None);
    d.verify();
    let out = d.set_manifest(&manifest(admin, None));
    assert!(out.status.success(), "{}", super::stderr(&out));
    d
}

fn b64url(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn alive(d: &mut Deployment) {
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the coordinator died:\n{}",
        d.log()
    );
}

#[test]
fn pathological_manifests_and_policies_neither_crash_nor_hang_it() {
    let admin = User::new("admin");
    let mut d = Deployment::spawn(scratch("hard-policy"), &[], None);
    d.verify();
    let anonymous = Client::new(&d, None);
    let probe = Probe::start(&anonymous);
    let policy_of = |expression: &str| {
        format!("package policy\ndefault allow = false\nallow if {{ {expression} }}\n")
    };
    let unary = policy_of(&format!("x := {}1", "- ".repeat(600)));
    let brackets = policy_of(&format!("x := {}1{}", "[".repeat(30), "]".repeat(30)));
    let objects = policy_of(&format!(
        "x := {}1{}",
        "{\"a\": ".repeat(30),
        "}".repeat(30)
    ));
    // The first manifest may come from anyone: its policy is bounded before it is compiled.
    for (what, policy) in [
        ("unary", &unary),
        ("brackets", &brackets),
        ("objects", &objects),
    ] {
        let answer = anonymous.post_json("/api/v1/manifest", &manifest(&admin, Some(policy)));
        assert_eq!(answer.status, 422, "{what}: {}", answer.text());
        assert!(
            answer.text().contains("resource_policy"),
            "{}",
            answer.text()
        );
    }
    // A megabyte of `[` (YAML, as anything not starting with `{` is): refused after a pass over
    // the bytes; four at once, while /health keeps answering. Two megabytes: 413 unread.
    let brackets_mb = vec![b'['; (1 << 20) - 1];
    let parallel: Vec<_> = (0..4)
        .map(|_| {
            let (client, body) = (anonymous.clone(), brackets_mb.clone());
            std::thread::spawn(move || client.send("POST", "/api/v1/manifest", "", &body).status)
        })
        .collect();
    for attempt in parallel {
        assert_eq!(attempt.join().unwrap(), 400);
    }
    let too_large = anonymous.send("POST", "/api/v1/manifest", "", &vec![b'['; 2 << 20]);
    assert_eq!(too_large.status, 413);
    assert!(
        too_large.head.contains("application/problem+json"),
        "{}",
        too_large.head
    );
    // Once a manifest is set, the same bodies from anyone are refused before they are read.
    assert!(d.set_manifest(&manifest(&admin, None)).status.success());
    let answer = anonymous.post_json("/api/v1/manifest", &manifest(&admin, Some(&unary)));
    assert_eq!(answer.status, 401, "{}", answer.text());
    // The key broker's policy uploads reach the same bounds.
    let user = Client::new(&d, Some(&admin));
    for path in ["/kbs/v0/resource-policy", "/kbs/v0/attestation-policy"] {
        for policy in [&unary, &brackets, &objects] {
            let body = serde_json::json!({ "policy": b64url(policy) }).to_string();
            let answer = user.post_json(path, &body);
            assert_eq!(answer.status, 400, "{path}: {}", answer.text());
            assert!(answer.text().contains("PolicyEngine"), "{}", answer.text());
        }
    }
    probe.finish("pathological manifests and policies");
    alive(&mut d);
}

/// The process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn key_broker_sessions_keep_only_what_they_need() {
    let admin = User::new("admin");
    let mut d = deployment("hard-sessions", &[], &admin);
    let anonymous = Client::new(&d, None);
    let probe = Probe::start(&anonymous);
    let padding = "x".repeat(60 << 10);
    let body = serde_json::json!({ "version": "0.4.0", "tee": "sample", "extra-params": padding })
        .to_string();
    let before = rss_kib(d.child.id());
    for _ in 0..750 {
        let answer = anonymous.post_json("/kbs/v0/auth", &body);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let grown = rss_kib(d.child.id()).saturating_sub(before);
    // 750 × 60 KiB = 44 MiB if sessions kept their requests.
    assert!(grown < 24 << 10, "RSS grew by {grown} KiB");
    let too_large = anonymous.post_json("/kbs/v0/auth", &"x".repeat(100 << 10));
    assert_eq!(too_large.status, 413);
    assert!(
        too_large.text().contains("errors/SerdeError"),
        "{}",
        too_large.text()
    );
    probe.finish("750 sessions");
    alive(&mut d);
}

#[test]
fn silent_slow_and_idle_connections_are_closed() {
    let admin = User::new("admin");
    let mut d = deployment("hard-conn", &["--client-timeout", "1"], &admin);
    let client = Client::new(&d, None);
    let probe = Probe::start(&client);
    let closed_within = |what: &str, stream: &mut dyn std::io::Read, limit: Duration| {
        let started = Instant::now();
        let mut sink = [0u8; 1024];
        loop {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            assert!(started.elapsed() < limit, "{what}: still open");
        }
        assert!(
            started.elapsed() < limit,
            "{what}: closed after {:?}",
            started.elapsed()
        );
    };
    // A TCP connection that never says hello.
    let mut silent = TcpStream::connect(&client.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    closed_within("no TLS hello", &mut silent, Duration::from_secs(5));
    // Headers a byte at a time, too slowly.
    let mut slow = client.connect();
    let started = Instant::now();
    for byte in b"GET /api/v1/health HTTP/1.1\r\nHost: l" {
        if slow.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    closed_within("slow headers", &mut slow, Duration::from_secs(5));
    // A keep-alive connection left idle after one request.
    let mut idle = client.connect();
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    closed_within("idle keep-alive", &mut idle, Duration::from_secs(5));
    // A body that stops arriving: 408 once the body deadline (3 × 1 s) passes.
    let mut stalled = client.connect();
    stalled
        .write_all(
            b"POST /kbs/v0/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"ver",
        )
        .unwrap();
    let answer = read_answer(&mut stalled);
    assert_eq!(answer.status, 408, "{}", answer.text());
    // A body over the limit with `Expect: 100-continue`: refused without a 100 Continue.
    let mut expecting = client.connect();
    expecting
        .write_all(
            b"POST /kbs/v0/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000000\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let answer = read_answer(&mut expecting);
    assert_eq!(answer.status, 413, "{}", answer.head);
    probe.finish("slow and idle connections");
    alive(&mut d);
}

/// CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Whether `/health` answers now.
fn healthy(client: &Client) -> bool {
    client
        .try_send("GET", "/api/v1/health", "", b"")
        .is_ok_and(|a| a.status == 200)
}

#[test]
fn out_of_file_descriptors_the_accept_loop_waits_and_says_so_once_a_second() {
    let mut d = Deployment::spawn(scratch("hard-emfile"), &["--client-timeout", "2"], Some(64));
    d.verify();
    let client = Client::new(&d, None);
    let pid = d.child.id();
    let hogs: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(&client.addr).ok())
        .collect();
    assert!(hogs.len() > 64, "{} connections", hogs.len());
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(pid) - before;
    assert!(
        spent < 0.5,
        "the accept loop spun: {spent} CPU seconds in 2 s"
    );
    drop(hogs);
    let failures = d.log().matches("accept failed").count();
    assert!(
        (1..=6).contains(&failures),
        "{failures} accept-failure lines"
    );
    // Once the descriptors are back, it serves again.
    let started = Instant::now();
    while !healthy(&client) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "it did not recover:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    alive(&mut d);
}

#[test]
fn anonymous_writes_are_refused_and_the_audit_log_is_for_users() {
    let admin = User::new("admin");
    let mut d = deployment("hard-audit", &[], &admin);
    let (anonymous, user) = (Client::new(&d, None), Client::new(&d, Some(&admin)));
    let total = |c: &Client| {
        c.get("/api/v1/audit?limit=1").json()["total"]
            .as_u64()
            .unwrap()
    };
    let before = total(&user);
    for _ in 0..50 {
        let answer = anonymous.post_json("/api/v1/secrets", r#"{"secrets":{}}"#);
        assert_eq!(answer.status, 401, "{}", answer.text());
    }
    assert_eq!(
        user.post_json("/api/v1/secrets", r#"{"secrets":{}}"#)
            .status,
        400
    );
    assert_eq!(total(&user), before, "no audit entry for a refused write");
    assert_eq!(anonymous.get("/api/v1/audit").status, 401);
    let page = user.get("/api/v1/audit?from=0&limit=2").json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][1]["seq"], 1);
    assert_eq!(page["next"], 2);
    let last = user.get("/api/v1/audit?from=2").json();
    assert_eq!(last["entries"][0]["seq"], 2);
    assert!(last.get("next").is_none(), "{last}");
    assert_eq!(user.get("/api/v1/audit?limit=0").status, 400);
    // An uploaded resource is audited by path only: a digest would confirm guesses of it.
    let upload = user.send("POST", "/kbs/v0/resource/default/key/7", "", b"hunter2");
    assert_eq!(upload.status, 200, "{}", upload.text());
    let log = user.get("/api/v1/audit?limit=1000").json();
    let entries = log["entries"].as_array().unwrap();
    for entry in entries {
        assert!(!entry["actor"].as_str().unwrap().is_empty(), "{entry}");
    }
    let uploaded = entries
        .iter()
        .find(|e| e["event"] == "kbs-resource-set")
        .unwrap();
    assert_eq!(
        uploaded["details"],
        serde_json::json!({ "path": "default/key/7" })
    );
    alive(&mut d);
}

#[test]
fn secrets_are_never_echoed_and_errors_keep_their_documented_shape() {
    let admin = User::new("admin");
    let mut d = deployment("hard-shape", &[], &admin);
    let (anonymous, user) = (Client::new(&d, None), Client::new(&d, Some(&admin)));
    let answer = user.post_json(
        "/api/v1/secrets",
        r#"{"secrets": {"up": {"key": 31337, "cert_pem": "hunter2"}}}"#,
    );
    assert_eq!(answer.status, 400);
    for text in [answer.text(), d.log()] {
        assert!(
            !text.contains("hunter2") && !text.contains("31337"),
            "echoed: {text}"
        );
    }
    // Key-broker paths answer with CoCo's error JSON, the API with problem details.
    let trace = anonymous.send("TRACE", "/kbs/v0/auth", "", b"");
    assert_eq!(trace.status, 405);
    assert!(
        trace.text().contains("errors/InvalidRequestPath"),
        "{}",
        trace.text()
    );
    let empty = user.send("POST", "/kbs/v0/resource/default/key/9", "", b"");
    assert_eq!(empty.status, 400, "{}", empty.text());
    let bad_utf8 = anonymous.get("/api/v1/certificates/%FF");
    assert_eq!(bad_utf8.status, 400);
    assert_eq!(bad_utf8.json()["status"], 400);
    let bad_utf8 = anonymous.get("/kbs/v0/resource/%FF/b/c");
    assert_eq!(bad_utf8.status, 404);
    assert!(
        bad_utf8.text().contains("errors/InvalidRequestPath"),
        "{}",
        bad_utf8.text()
    );
    alive(&mut d);
}

/// A copy of `from` (a directory) at `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn verify_reports_the_state_version_and_refuses_a_rolled_back_one() {
    let admin = User::new("admin");
    let d = deployment("hard-rollback", &[], &admin);
    let dir = d.dir.clone();
    let seen = d.verify()["state"]["version"].as_u64().unwrap();
    // The host keeps a copy of the state; the deployment moves on.
    drop(d);
    let (data, backup) = (dir.join("data"), dir.join("backup"));
    copy_dir(&data, &backup);
    let d = Deployment::spawn(dir.clone(), &[], None);
    let (secret, cert, key) = (
        dir.join("up.bin"),
        dir.join("admin.pem"),
        dir.join("admin.key"),
    );
    std::fs::write(&secret, b"moved on").unwrap();
    std::fs::write(&cert, &admin.cert).unwrap();
    std::fs::write(&key, &admin.key).unwrap();
    let out = d.cmd(&[
        "secret",
        "set",
        "up",
        "--key-file",
        secret.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", super::stderr(&out));
    // The audit log, page by page, for the user.
    let auth = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let out = d.cmd(&[&["audit", "--limit", "3", "-o", "json"], &auth[..]].concat());
    let log = super::success_json(&out);
    assert_eq!(log["entries"].as_array().unwrap().len(), 3);
    assert_eq!(log["next"], 3);
    let out = d.cmd(&[&["audit", "--from", "3"], &auth[..]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("secret-set") && text.contains("admin"),
        "{text}"
    );
    let now = d.verify()["state"]["version"].as_u64().unwrap();
    assert!(now > seen, "{now} > {seen}");
    // The host swaps the old copy back in: it opens (it is self-consistent), and the version
    // the user saw catches it.
    drop(d);
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let d = Deployment::spawn(dir, &[], None);
    let floor = now.to_string();
    let out = d.cmd(&[
        "verify",
        "--accept-simulation",
        "--expect-min-version",
        &floor,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", super::stderr(&out));
    assert!(
        super::stderr(&out).contains("older"),
        "{}",
        super::stderr(&out)
    );
    let out = d.cmd(&[
        "verify",
        "--accept-simulation",
        "--expect-min-version",
        &seen.to_string(),
    ]);
    assert!(out.status.success(), "{}", super::stderr(&out));
}

#[test]
fn a_key_broker_token_holds_only_while_its_package_does() {
    let admin = User::new("admin");
    let d = deployment("hard-token", &[], &admin);
    let root = d.dir.join("root.pem").display().to_string();
    let (key, token) = (d.dir.join("tee.pem"), d.dir.join("token"));
    let kbs = |args: &[&str]| {
        let common = [
            "--url",
            d.url.as_str(),
            "--root-ca",
            root.as_str(),
            "--simulation",
            "sample",
        ];
        d.cmd(&[args, &common[..]].concat())
    };
    let out = kbs(&["kbs", "attest", "--save-tee-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", super::stderr(&out));
    std::fs::write(&token, &out.stdout).unwrap();
    let fetch =
        |args: &[&str]| kbs(&[&["kbs", "get-resource", "--path", "default/key/1"], args].concat());
    let by_token = [
        "--attestation-token",
        token.to_str().unwrap(),
        "--tee-key-file",
        key.to_str().unwrap(),
    ];
    assert!(fetch(&by_token).status.success());
    // The manifest moves the resource to another package: the token's package is gone.
    let moved = manifest(&admin, None).replace("\"pod\"", "\"pod2\"");
    let answer = Client::new(&d, Some(&admin)).post_json("/api/v1/manifest", &moved);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let out = fetch(&by_token);
    assert!(!out.status.success());
    assert!(
        super::stderr(&out).contains("attest again"),
        "{}",
        super::stderr(&out)
    );
    // A fresh attestation is appraised against the manifest in force.
    assert!(
        fetch(&[]).status.success(),
        "{}",
        super::stderr(&fetch(&[]))
    );
}

#[test]
fn connections_beyond_the_limit_wait_for_a_slot() {
    let admin = User::new("admin");
    let mut d = deployment(
        "hard-limit",
        &["--max-connections", "2", "--client-timeout", "2"],
        &admin,
    );
    let client = Client::new(&d, None);
    // Two connections that never say hello hold both slots until the handshake deadline.
    let hogs: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&client.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(healthy(&client));
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(1200),
        "answered after {waited:?}: the limit did not hold"
    );
    drop(hogs);
    alive(&mut d);
}
