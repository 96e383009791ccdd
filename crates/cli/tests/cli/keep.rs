//! `cloister keep` end to end: real WebAssembly programs (built here for wasm32-wasip1 and
//! wasm32-wasip2 from `crates/keep/guests`), a coordinator process, keeps on loopback.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::hardening::Client;
use super::{Deployment, mrenclave, stderr};

/// The probe program, built once per test run, for both WASI targets.
struct Guests {
    p1: PathBuf,
    p2: PathBuf,
    handler: PathBuf,
}

fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target_dir = root.join("target/keep-guests");
        let build = |target: &str, only: &[&str]| {
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(root.join("crates/keep/guests"))
                .args(["build", "--release", "--locked", "--target", target])
                .args(only)
                .arg("--target-dir")
                .arg(&target_dir)
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "building the guests for {target} failed (rust-toolchain.toml lists the wasm \
                 targets; is rustup's copy of them installed?):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        build("wasm32-wasip2", &[]);
        build("wasm32-wasip1", &["--bin", "probe"]);
        let target = target_dir;
        Guests {
            p1: target.join("wasm32-wasip1/release/probe.wasm"),
            p2: target.join("wasm32-wasip2/release/probe.wasm"),
            handler: target.join("wasm32-wasip2/release/handler.wasm"),
        }
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two Wasm workloads (one per WASI version) sharing a secret, a native one, and the
/// directories, addresses and limits the probe exercises.
fn manifest(data: &Path, port: u16, tls_port: u16) -> String {
    let digest = |path: &Path| sha256_hex(&std::fs::read(path).unwrap());
    let g = guests();
    format!(
        r#"{{
  "packages": {{ "keep": {{ "tee": "sgx", "unique_id": "{m}" }} }},
  "workloads": {{
    "probe2": {{
      "package": "keep",
      "parameters": {{
        "files": {{ "/secrets/key": "{{{{ hex .Secrets.k }}}}", "/etc/app.conf": "mode = keep\n" }},
        "env": {{ "APP_GREETING": "hello from the manifest" }}
      }},
      "wasm": {{
        "digest": "{d2}",
        "dirs": {{ "/data": {{ "host": "{data}" }}, "/scratch": {{ "writable": true }} }},
        "listen": ["127.0.0.1:{port}"],
        "connect": ["127.0.0.1:{port}"]
      }}
    }},
    "bounded": {{
      "package": "keep",
      "wasm": {{
        "digest": "{d2}",
        "listen": ["127.0.0.1:{port}"],
        "limits": {{ "memory_mib": 32, "deadline_ms": 1500 }}
      }}
    }},
    "probe1": {{
      "package": "keep",
      "parameters": {{ "files": {{ "/secrets/key": "{{{{ hex .Secrets.k }}}}" }} }},
      "wasm": {{ "digest": "sha256:{d1}" }}
    }},
    "native": {{ "package": "keep" }},
    "web": {{
      "package": "keep",
      "parameters": {{
        "files": {{ "/secrets/key": "{{{{ hex .Secrets.k }}}}" }},
        "env": {{ "APP_GREETING": "served from memory" }}
      }},
      "wasm": {{ "digest": "{dh}", "limits": {{ "memory_mib": 32, "deadline_ms": 1500 }} }}
    }},
    "web-public": {{ "package": "keep", "wasm": {{ "digest": "{dh}", "disable_client_auth": true }} }},
    "tls-server": {{ "package": "keep", "tls": ["echo"], "dns_names": ["127.0.0.1"], "wasm": {{ "digest": "{d2}" }} }},
    "tls-client": {{ "package": "keep", "tls": ["to-echo"], "wasm": {{ "digest": "{d2}" }} }}
  }},
  "tls": {{
    "echo": {{ "incoming": [{{ "port": "{tls_port}" }}] }},
    "to-echo": {{ "outgoing": [{{ "addr": "127.0.0.1", "port": {tls_port} }}] }}
  }},
  "secrets": {{ "k": {{ "type": "symmetric-key", "size": 128, "shared": true }} }}
}}"#,
        m = mrenclave(),
        d1 = digest(&g.p1),
        d2 = digest(&g.p2),
        dh = digest(&g.handler),
        data = data.display(),
    )
}

impl Deployment {
    fn keep_command(
        &self,
        workload: &str,
        module: &Path,
        flags: &[&str],
        args: &[&str],
    ) -> Command {
        self.keep_verb("run", workload, module, flags, args)
    }

    fn keep_verb(
        &self,
        verb: &str,
        workload: &str,
        module: &Path,
        flags: &[&str],
        args: &[&str],
    ) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
        command
            .args(["keep", verb, "--simulation", "--workload", workload])
            .args(flags)
            .arg(module)
            .arg("--")
            .args(args)
            .env("CLOISTER_SIM_DIR", self.dir.join("sim"))
            .env("CLOISTER_COORDINATOR", &self.url)
            .env("CLOISTER_ROOT_CA", self.dir.join("root.pem"));
        command
    }

    fn keep(&self, workload: &str, module: &Path, flags: &[&str], args: &[&str]) -> Output {
        self.keep_command(workload, module, flags, args)
            .output()
            .unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `show`'s output for `file`.
fn digest_line(out: &Output, file: &str) -> String {
    let prefix = format!("file {file} sha256 ");
    stdout(out)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no digest of {file}:\n{}", stderr(out)))
}

fn deployment(name: &str) -> (Deployment, PathBuf, u16) {
    let (d, data, port, _) = deployment_with_tls(name);
    (d, data, port)
}

fn deployment_with_tls(name: &str) -> (Deployment, PathBuf, u16, u16) {
    let d = Deployment::start(name);
    d.verify();
    let data = d.dir.join("data-dir");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "from the host\n").unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let set = d.set_manifest(&manifest(&data, port, tls_port));
    assert!(set.status.success(), "{}", stderr(&set));
    (d, data, port, tls_port)
}

#[test]
fn a_keep_runs_the_attested_module_with_what_the_manifest_gives_it() {
    let (d, _data, _) = deployment("keep-run");
    let g = guests();
    let files = ["/secrets/key", "/etc/app.conf", "/data/hello.txt"];
    let p2 = d.keep("probe2", &g.p2, &[], &[&["show"][..], &files].concat());
    assert!(p2.status.success(), "{}", stderr(&p2));
    assert_eq!(
        digest_line(&p2, "/etc/app.conf"),
        sha256_hex(b"mode = keep\n")
    );
    assert_eq!(
        digest_line(&p2, "/data/hello.txt"),
        sha256_hex(b"from the host\n")
    );
    assert!(
        stdout(&p2).contains("env APP_GREETING=hello from the manifest"),
        "{}",
        stdout(&p2)
    );
    assert!(
        stdout(&p2).contains(r#"args ["probe.wasm", "show""#),
        "{}",
        stdout(&p2)
    );
    assert!(stderr(&p2).contains("SIMULATION"), "{}", stderr(&p2));

    // The preview 1 module gets the same shared secret; it has no /data.
    let p1 = d.keep("probe1", &g.p1, &[], &["show", "/secrets/key"]);
    assert!(p1.status.success(), "{}", stderr(&p1));
    assert_eq!(
        digest_line(&p1, "/secrets/key"),
        digest_line(&p2, "/secrets/key")
    );
    let no_data = d.keep("probe1", &g.p1, &[], &["show", "/data/hello.txt"]);
    assert_eq!(no_data.status.code(), Some(1), "{}", stderr(&no_data));

    // A guest's exit status is the keep's.
    assert_eq!(
        d.keep("probe1", &g.p1, &[], &["exit", "7"]).status.code(),
        Some(7)
    );

    // The files live on a memory filesystem only while the module runs; a disk is refused.
    let memory = Path::new("/dev/shm").join(format!("cloister-test-{}", std::process::id()));
    std::fs::create_dir_all(&memory).unwrap();
    let flags = ["--memory-dir", memory.to_str().unwrap()];
    let ran = d.keep("probe1", &g.p1, &flags, &["show", "/secrets/key"]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(
        std::fs::read_dir(&memory).unwrap().count(),
        0,
        "files left behind"
    );
    std::fs::remove_dir(&memory).unwrap();
    let disk = env!("CARGO_MANIFEST_DIR");
    let refused = d.keep("probe1", &g.p1, &["--memory-dir", disk], &["show"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("no memory-backed filesystem"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn the_coordinator_refuses_modules_the_manifest_does_not_name() {
    let (d, _data, _) = deployment("keep-refusals");
    let g = guests();
    // The p1 module as the p2 workload: a different digest.
    let wrong = d.keep("probe2", &g.p1, &[], &["show"]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("must run the module with SHA-256"),
        "{}",
        stderr(&wrong)
    );
    // A keep as a native workload, and a native launcher as a Wasm workload.
    let native = d.keep("native", &g.p2, &[], &["show"]);
    assert!(
        stderr(&native).contains("names no WebAssembly module"),
        "{}",
        stderr(&native)
    );
    let launched = d.launch("probe2", &[], "true");
    assert!(
        stderr(&launched).contains("binds no module"),
        "{}",
        stderr(&launched)
    );
    // A workload the manifest does not have.
    let ghost = d.keep("ghost", &g.p2, &[], &["show"]);
    assert!(
        stderr(&ghost).contains("unknown workload"),
        "{}",
        stderr(&ghost)
    );
}

#[test]
fn host_directories_only_where_the_manifest_allows_and_read_only_by_default() {
    let (d, data, _) = deployment("keep-dirs");
    let g = guests();
    let etc = d.keep("probe2", &g.p2, &["--dir", "/etc:/etc"], &["show"]);
    assert_eq!(etc.status.code(), Some(2));
    assert!(
        stderr(&etc).contains("allows no host directory at /etc"),
        "{}",
        stderr(&etc)
    );
    let moved = d.keep("probe2", &g.p2, &["--dir", "/tmp:/data"], &["show"]);
    assert!(stderr(&moved).contains("not /tmp"), "{}", stderr(&moved));

    // /data is read-only; /scratch is writable where the operator binds it.
    let ro = d.keep("probe2", &g.p2, &[], &["write", "/data/new.txt", "x"]);
    assert_eq!(ro.status.code(), Some(1), "{}", stderr(&ro));
    assert!(!data.join("new.txt").exists());
    let scratch = d.dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let bind = format!("{}:/scratch", scratch.display());
    let rw = d.keep(
        "probe2",
        &g.p2,
        &["--dir", &bind],
        &["write", "/scratch/out.txt", "written"],
    );
    assert!(rw.status.success(), "{}", stderr(&rw));
    assert_eq!(
        std::fs::read_to_string(scratch.join("out.txt")).unwrap(),
        "written"
    );
    // The memory mount at / is read-only too.
    let secret = d.keep("probe2", &g.p2, &[], &["write", "/secrets/key", "x"]);
    assert_eq!(secret.status.code(), Some(1), "{}", stderr(&secret));
}

#[test]
fn sockets_only_to_and_from_the_manifests_addresses() {
    let (d, _data, port) = deployment("keep-net");
    let g = guests();
    let address = format!("127.0.0.1:{port}");
    let mut server = d
        .keep_command("probe2", &g.p2, &[], &["serve", &address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("listening on {address}"));
    let client = d.keep("probe2", &g.p2, &[], &["connect", &address, "hi"]);
    let server = server.wait_with_output().unwrap();
    assert!(
        client.status.success(),
        "client: {}\nserver ({:?}): {}",
        stderr(&client),
        server.status,
        stderr(&server)
    );
    assert!(
        stdout(&client).contains("answer echo: hi"),
        "{}",
        stdout(&client)
    );
    assert!(server.status.success(), "{}", stderr(&server));

    // Another port, and another address, are refused; the keep says which rule is missing.
    let other = format!("127.0.0.1:{}", free_port());
    let refused = d.keep("probe2", &g.p2, &[], &["connect", &other, "hi"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("wasm.connect does not list it"),
        "{}",
        stderr(&refused)
    );
    let listen = d.keep("probe2", &g.p2, &[], &["serve", &other]);
    assert_eq!(listen.status.code(), Some(1), "{}", stderr(&listen));
}

#[test]
fn limits_stop_the_module_with_a_clear_error() {
    let (d, _data, port) = deployment("keep-limits");
    let g = guests();
    let fits = d.keep("bounded", &g.p2, &[], &["grow", "8"]);
    assert!(fits.status.success(), "{}", stderr(&fits));
    let memory = d.keep("bounded", &g.p2, &[], &["grow", "64"]);
    assert_eq!(memory.status.code(), Some(2));
    assert!(
        stderr(&memory).contains("past 32 MiB (wasm.limits.memory_mib)"),
        "{}",
        stderr(&memory)
    );
    let spin = d.keep("bounded", &g.p2, &[], &["spin"]);
    assert_eq!(spin.status.code(), Some(2));
    assert!(
        stderr(&spin).contains("past its deadline of 1500 ms"),
        "{}",
        stderr(&spin)
    );
    // A module blocked in the host, waiting for a connection that never comes, as well.
    let address = format!("127.0.0.1:{port}");
    let waiting = d.keep("bounded", &g.p2, &[], &["serve", &address]);
    assert_eq!(waiting.status.code(), Some(2));
    assert!(
        stderr(&waiting).contains("past its deadline"),
        "{}",
        stderr(&waiting)
    );
}

#[test]
fn precompiled_artifacts_run_only_untouched_and_in_the_tee_that_made_them() {
    let (d, _data, _) = deployment("keep-compile");
    let g = guests();
    let artifact = d.dir.join("probe.cwasm");
    let compile = |sim_dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["keep", "compile", "--simulation", "--out"])
            .arg(&artifact)
            .arg(&g.p2)
            .args(["-o", "json"])
            .env("CLOISTER_SIM_DIR", sim_dir)
            .output()
            .unwrap()
    };
    let compiled = compile(&d.dir.join("sim"));
    assert!(compiled.status.success(), "{}", stderr(&compiled));
    let summary: serde_json::Value = serde_json::from_slice(&compiled.stdout).unwrap();
    assert_eq!(
        summary["module_sha256"],
        sha256_hex(&std::fs::read(&g.p2).unwrap())
    );

    // It attests as the original module and runs.
    let run = d.keep("probe2", &artifact, &[], &["show", "/etc/app.conf"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("precompiled"), "{}", stderr(&run));
    assert_eq!(
        digest_line(&run, "/etc/app.conf"),
        sha256_hex(b"mode = keep\n")
    );

    // One byte changed in the code: refused before wasmtime sees it.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let tampered = d.dir.join("tampered.cwasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let refused = d.keep("probe2", &tampered, &[], &["show"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("MAC does not verify"),
        "{}",
        stderr(&refused)
    );

    // Compiled in another (simulated) TEE: refused as well.
    let elsewhere = compile(&d.dir.join("other-sim"));
    assert!(elsewhere.status.success(), "{}", stderr(&elsewhere));
    let foreign = d.keep("probe2", &artifact, &[], &["show"]);
    assert!(
        stderr(&foreign).contains("MAC does not verify"),
        "{}",
        stderr(&foreign)
    );
}

#[test]
fn two_modules_that_know_nothing_of_tls_talk_mtls() {
    let (d, _data, _, tls_port) = deployment_with_tls("keep-ttls");
    let g = guests();
    let address = format!("127.0.0.1:{tls_port}");
    let mut server = d
        .keep_command("tls-server", &g.p2, &[], &["serve", &address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    server_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("listening on {address}"));

    // On the wire the port speaks TLS only: plaintext gets no echo, and the module never
    // sees the connection (it serves exactly one, below).
    {
        use std::io::{Read as _, Write as _};
        let mut plain = std::net::TcpStream::connect(&address).unwrap();
        plain
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        plain.write_all(b"hi\n").unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(
            !String::from_utf8_lossy(&answer).contains("echo"),
            "plaintext got through"
        );
    }

    let client = d.keep(
        "tls-client",
        &g.p2,
        &[],
        &["connect", &address, "over mTLS"],
    );
    let server = server.wait_with_output().unwrap();
    assert!(
        client.status.success(),
        "client: {}\nserver: {}",
        stderr(&client),
        stderr(&server)
    );
    assert!(
        stdout(&client).contains("answer echo: over mTLS"),
        "{}",
        stdout(&client)
    );
    assert!(server.status.success(), "{}", stderr(&server));
    assert!(
        stderr(&server).contains("closed after 1 lines"),
        "{}",
        stderr(&server)
    );
}

impl Deployment {
    /// `keep serve` of the handler as `workload` on a free port; its URL's address.
    fn serve(&self, workload: &str) -> (std::process::Child, String) {
        let g = guests();
        let mut server = self
            .keep_verb(
                "serve",
                workload,
                &g.handler,
                &["--listen", "127.0.0.1:0"],
                &[],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("serving https://") else {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut err);
            panic!("keep serve did not start: {line:?}\n{err}");
        };
        (server, addr.to_string())
    }
}

#[test]
fn keep_serve_answers_https_per_request_and_survives_its_handlers_failures() {
    let (d, _data, _) = deployment("keep-serve");
    let (mut server, addr) = d.serve("web");
    // A deployment certificate for the client: the native workload's.
    let launched = d.launch("native", &[], "true");
    assert!(launched.status.success(), "{}", stderr(&launched));
    let creds = d.dir.join("w-native-0");
    let cert = std::fs::read(creds.join("workload-chain.pem")).unwrap();
    let key = std::fs::read(creds.join("workload-key.pem")).unwrap();
    let root = std::fs::read(d.dir.join("root.pem")).unwrap();
    let client = Client::to(&addr, &root, Some((&cert, &key)), "web");

    let hello = match client.try_send("GET", "/hello", "", b"") {
        Ok(answer) => answer,
        Err(e) => {
            let _ = server.kill();
            let out = server.wait_with_output().unwrap();
            panic!("{e}: {}", stderr(&out));
        }
    };
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert_eq!(
        hello.text(),
        "hello from a keep: served from memory (/hello)"
    );
    // The handler read the secret the coordinator rendered: the same bytes a keep run sees.
    let secret = client.get("/secret");
    assert_eq!(secret.status, 200, "{}", secret.text());
    let probe = d.keep("probe2", &guests().p2, &[], &["show", "/secrets/key"]);
    assert_eq!(secret.text(), digest_line(&probe, "/secrets/key"));
    // Every request shares the server's handle on the files, read-only.
    let write = client.get("/write");
    assert_eq!(write.status, 403, "{}", write.text());
    assert_eq!(client.get("/secret").text(), secret.text());

    // A trap, a memory limit, a deadline: an error for that request, and the server goes on.
    let trap = client.get("/trap");
    assert_eq!(trap.status, 500, "{}", trap.text());
    let grow = client.get("/grow");
    assert_eq!(grow.status, 500, "{}", grow.text());
    assert!(grow.text().contains("past 32 MiB"), "{}", grow.text());
    let spin = client.get("/spin");
    assert_eq!(spin.status, 504, "{}", spin.text());
    assert!(
        spin.text().contains("deadline of 1500 ms"),
        "{}",
        spin.text()
    );
    assert_eq!(client.get("/hello").status, 200);

    // Without a deployment certificate, no request reaches the handler.
    let anonymous = Client::to(&addr, &root, None, "web");
    assert!(anonymous.try_send("GET", "/hello", "", b"").is_err());
    let _ = server.kill();
    let _ = server.wait();

    // Where the manifest says so, server-only TLS.
    let (mut public, addr) = d.serve("web-public");
    let anonymous = Client::to(&addr, &root, None, "web-public");
    let hello = anonymous.get("/hello");
    assert_eq!(hello.status, 200, "{}", hello.text());
    let _ = public.kill();
    let _ = public.wait();
}

/// A real OCI registry (the distribution project's, from Debian's docker-registry package) on a
/// loopback port, killed on drop.
pub(super) struct Registry {
    pub(super) addr: String,
    child: std::process::Child,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub(super) fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// A registry with `extra` configuration (YAML, e.g. an `auth` section).
    pub(super) fn start_with(dir: &Path, extra: &str) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{extra}",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's docker-registry package; .ci/run installs it)");
        let registry = Self { addr, child };
        for _ in 0..100 {
            if matches!(registry.http("GET", "/v2/", &[], b"").0, 200 | 401) {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the registry did not start on {}", registry.addr);
    }

    /// One HTTP/1.1 exchange: status, headers (lowercase names), body.
    pub(super) fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        use std::io::{Read as _, Write as _};
        let Ok(mut tcp) = std::net::TcpStream::connect(&self.addr) else {
            return (0, Vec::new(), Vec::new());
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).unwrap();
        tcp.write_all(body).unwrap();
        let mut raw = Vec::new();
        let _ = tcp.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (
            status,
            headers,
            raw.get(split + 4..).unwrap_or_default().to_vec(),
        )
    }

    pub(super) fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let (status, headers, _) = self.http(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(status, 202, "starting an upload");
        let location = headers
            .iter()
            .find(|(k, _)| k == "location")
            .unwrap()
            .1
            .clone();
        let path = location
            .trim_start_matches(&format!("http://{}", self.addr))
            .to_string();
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, _, _) = self.http(
            "PUT",
            &format!("{path}{separator}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(status, 201, "finishing an upload");
        digest
    }

    /// Push `wasm` as a WebAssembly OCI artifact (the CNCF layout) under `repository:tag`.
    fn push_wasm(&self, repository: &str, tag: &str, wasm: &[u8]) -> String {
        let config = b"{}";
        let config_digest = self.push_blob(repository, config);
        let layer_digest = self.push_blob(repository, wasm);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": "application/wasm", "digest": layer_digest, "size": wasm.len() }],
        })
        .to_string();
        let (status, _, body) = self.http(
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.as_bytes(),
        );
        assert_eq!(
            status,
            201,
            "pushing the manifest: {}",
            String::from_utf8_lossy(&body)
        );
        format!("sha256:{}", sha256_hex(manifest.as_bytes()))
    }
}

#[test]
fn a_keep_runs_a_module_pulled_from_a_registry_where_the_manifest_pins_it() {
    let d = Deployment::start("keep-oci");
    d.verify();
    let g = guests();
    let registry = Registry::start(&d.dir);
    let wasm = std::fs::read(&g.p2).unwrap();
    let manifest_digest = registry.push_wasm("apps/probe", "1.0", &wasm);
    registry.push_wasm("apps/probe", "2.0", &wasm);
    let repo = format!("{}/apps/probe", registry.addr);
    let pinned = format!("{repo}:1.0");
    let manifest = format!(
        r#"{{
  "packages": {{ "keep": {{ "tee": "sgx", "unique_id": "{m}" }} }},
  "workloads": {{
    "pinned": {{ "package": "keep", "wasm": {{ "digest": "{d}", "reference": "{pinned}" }} }},
    "by-digest": {{ "package": "keep", "wasm": {{ "digest": "{d}", "reference": "{repo}@{manifest_digest}" }} }}
  }}
}}"#,
        m = mrenclave(),
        d = sha256_hex(&wasm),
    );
    let set = d.set_manifest(&manifest);
    assert!(set.status.success(), "{}", stderr(&set));

    let oci = |text: &str| PathBuf::from(format!("oci://{text}"));
    let ran = d.keep("pinned", &oci(&pinned), &[], &["show"]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(
        stdout(&ran).contains(r#"args ["probe.wasm", "show"]"#),
        "{}",
        stdout(&ran)
    );
    assert!(stderr(&ran).contains(&manifest_digest), "{}", stderr(&ran));
    // Pinned by manifest digest: the tag that resolves to it is fine.
    let by_digest = d.keep("by-digest", &oci(&pinned), &[], &["show"]);
    assert!(by_digest.status.success(), "{}", stderr(&by_digest));

    // The same bytes from another tag, or from a file, are not what the manifest pins.
    let other_tag = d.keep(
        "pinned",
        &oci(&format!("{}/apps/probe:2.0", registry.addr)),
        &[],
        &["show"],
    );
    assert_eq!(other_tag.status.code(), Some(2));
    assert!(
        stderr(&other_tag).contains("this one came from"),
        "{}",
        stderr(&other_tag)
    );
    let file = d.keep("pinned", &g.p2, &[], &["show"]);
    assert!(stderr(&file).contains("is a file"), "{}", stderr(&file));
    // A tag the registry does not have: a clear error, nothing activated.
    let missing = d.keep(
        "pinned",
        &oci(&format!("{}/apps/probe:9.9", registry.addr)),
        &[],
        &["show"],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no such repository, tag or blob"),
        "{}",
        stderr(&missing)
    );
}
