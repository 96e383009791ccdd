//! `cloister quickstart`: the whole flow on a simulated TEE. Start a coordinator, verify it,
//! set a manifest, and launch two workloads that talk mTLS with coordinator-issued
//! certificates and share a templated secret; then a WebAssembly workload in a keep does the
//! same without knowing TLS.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::cmd::conn::runtime;
use crate::cmd::deploy::{print_statement, verifiers};
use crate::output::{Format, outln, print_data};
use launcher::verify::{Expectations, verify_online};

/// Arguments of `quickstart`.
#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// Working directory (default: a fresh temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The quickstart's WebAssembly workload, built by the build script.
const WASM_CLIENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/quickstart_wasm_client.wasm"));

/// The example manifest: two SGX workloads with the simulated enclave's MRENCLAVE and a
/// shared key each receives through a template, and a WebAssembly workload (the module's
/// digest bound) whose connection to the server the keep wraps in mTLS.
fn example_manifest(server_port: u16) -> String {
    let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
    let module = hex::encode(attest::crypto::sha256(WASM_CLIENT));
    format!(
        r#"{{
  "packages": {{ "demo": {{ "tee": "sgx", "unique_id": "{mrenclave}" }} }},
  "workloads": {{
    "server": {{
      "package": "demo",
      "dns_names": ["127.0.0.1"],
      "parameters": {{ "env": {{ "GREETING_KEY": "{{{{ hex .Secrets.greeting_key }}}}" }} }}
    }},
    "client": {{ "package": "demo", "parameters": {{ "env": {{ "GREETING_KEY": "{{{{ hex .Secrets.greeting_key }}}}" }} }} }},
    "wasm-client": {{
      "package": "demo",
      "wasm": {{ "digest": "{module}" }},
      "tls": ["to-server"],
      "parameters": {{ "env": {{ "GREETING_KEY": "{{{{ hex .Secrets.greeting_key }}}}" }} }}
    }}
  }},
  "tls": {{ "to-server": {{ "outgoing": [{{ "addr": "127.0.0.1", "port": {server_port} }}] }} }},
  "secrets": {{ "greeting_key": {{ "type": "symmetric-key", "size": 256, "shared": true }} }}
}}
"#
    )
}

/// A free loopback port for the server (the manifest names it before the server starts).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the narration goes: stdout for people; stderr with `-o json`, whose stdout is one
/// JSON summary.
#[derive(Debug, Clone, Copy)]
struct Narrator {
    json: bool,
}

impl Narrator {
    fn say(self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            outln!("{text}");
        }
    }

    fn step(self, n: u32, text: &str) {
        self.say(&format!("\n[{n}/6] {text}"));
    }

    /// Where a workload's own output goes.
    fn child_stdout(self) -> Result<Stdio> {
        if self.json {
            use std::os::fd::AsFd as _;
            Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        } else {
            Ok(Stdio::inherit())
        }
    }
}

/// Run the quickstart.
pub(crate) fn run(args: QuickstartArgs, format: Format) -> Result<ExitCode> {
    let say = Narrator {
        json: format != Format::Text,
    };
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("cloister-quickstart-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe().context("locating the cloister binary")?;
    let sim_dir = dir.join("simulated-platform");
    say.say(
        "SIMULATION: everything below runs on a simulated TEE (real evidence formats, local roots)",
    );
    say.step(
        1,
        "starting a coordinator (simulated SGX, sealed state in an embedded store)",
    );
    let (_coordinator, url) = start_coordinator(&exe, &dir, &sim_dir)?;
    say.say(&format!("      coordinator at {url}"));
    // The launched workloads attest on the same simulated platform.
    let env = [("CLOISTER_SIM_DIR", sim_dir.as_os_str())];
    say.step(
        2,
        "verifying the coordinator's evidence and pinning its root",
    );
    let mut expected = manifest::Package::default();
    expected.unique_id = Some(manifest::Hex(attest::crypto::sha256(
        b"cloister simulated coordinator",
    )));
    let root_file = dir.join("root.pem");
    let rt = runtime()?;
    let now = time::OffsetDateTime::now_utc();
    let verifiers = verifiers(Some(&sim_dir), now)?;
    let expect = Expectations {
        verifiers: &verifiers,
        package: Some(&expected),
        simulation: true,
        min_version: None,
        now,
    };
    let (statement, root, _) = rt.block_on(verify_online(&url, &expect))?;
    std::fs::write(&root_file, attest::dcap::to_pem_string(&root))?;
    if !say.json {
        print_statement(&statement, Some(&root_file));
    }
    say.step(3, "setting the manifest");
    let manifest_file = dir.join("manifest.json");
    let server_port = free_port()?;
    let manifest_text = example_manifest(server_port);
    std::fs::write(&manifest_file, &manifest_text)?;
    let client = launcher::client::Client::pinned(&url, &root, None)?;
    let set: Option<api::ManifestSetResponse> =
        rt.block_on(client.post("/manifest", manifest_text.into_bytes()))?;
    let manifest_hash = set.map(|s| s.manifest_hash).unwrap_or_default();
    say.say(&format!(
        "      manifest sha256:{manifest_hash} ({})",
        manifest_file.display()
    ));
    say.step(
        4,
        "launching workload `server`: attest, activate over mTLS, get certificate and secret",
    );
    let port_file = dir.join("server.port");
    let launch = |workload: &str, tail: &[&str]| -> Result<Child> {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "launch",
            "--simulation",
            "--coordinator",
            &url,
            "--workload",
            workload,
        ])
        .arg("--root-ca")
        .arg(&root_file)
        .arg("--workdir")
        .arg(dir.join(workload))
        .arg("--")
        .arg(&exe)
        .args(tail)
        .envs(env)
        .stdout(say.child_stdout()?);
        cmd.spawn().with_context(|| format!("launching {workload}"))
    };
    let port_arg = port_file.display().to_string();
    let port = server_port.to_string();
    let with_keep = !WASM_CLIENT.is_empty();
    let clients = if with_keep { "2" } else { "1" };
    let mut server = launch(
        "server",
        &[
            "example",
            "serve",
            "--port-file",
            &port_arg,
            "--port",
            &port,
            "--clients",
            clients,
        ],
    )?;
    let port = wait_for_file(&port_file, Duration::from_secs(30))?;
    say.step(
        5,
        "launching workload `client`: it calls the server over mTLS",
    );
    let addr = format!("127.0.0.1:{port}");
    let client_status = launch("client", &["example", "fetch", "--addr", &addr])?.wait()?;
    let keep_status = if with_keep {
        say.step(
            6,
            "running workload `wasm-client` in a keep: it attests the module, gets the key, and \
             speaks plain TCP that leaves the keep as mTLS",
        );
        let module = dir.join("wasm-client.wasm");
        std::fs::write(&module, WASM_CLIENT)?;
        Command::new(&exe)
            .args(["keep", "run", "--simulation", "--coordinator", &url])
            .args(["--workload", "wasm-client", "--root-ca"])
            .arg(&root_file)
            .arg(&module)
            .args(["--", &addr])
            .envs(env)
            .stdout(say.child_stdout()?)
            .status()
            .context("running the keep")?
    } else {
        say.step(
            6,
            "skipped: this cloister was built without the wasm32-wasip2 target; \
             `rustup target add wasm32-wasip2`, build again, and a WebAssembly workload runs here",
        );
        std::process::ExitStatus::default()
    };
    let server_status = server.wait()?;
    if !client_status.success() || !keep_status.success() || !server_status.success() {
        bail!(
            "the example workloads failed (client: {client_status}, keep: {keep_status}, \
             server: {server_status})"
        );
    }
    say.say(if with_keep {
        "\ndone: three attested workloads, one of them WebAssembly, talked mTLS with \
         certificates from the coordinator."
    } else {
        "\ndone: two attested workloads talked mTLS with certificates from the coordinator."
    });
    say.say(&format!("working files: {}", dir.display()));
    if say.json {
        print_data(
            format,
            &serde_json::json!({
                "ok": true,
                "simulated": statement.simulated,
                "coordinator": url,
                "root_sha256": statement.root_sha256,
                "manifest_hash": manifest_hash,
                "workloads": if with_keep {
                    vec!["server", "client", "wasm-client"]
                } else {
                    vec!["server", "client"]
                },
                "dir": dir.display().to_string(),
            }),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn start_coordinator(exe: &Path, dir: &Path, sim_dir: &Path) -> Result<(KillOnDrop, String)> {
    let mut child = Command::new(exe)
        .args([
            "coordinator",
            "serve",
            "--simulation",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join("coordinator-data"))
        .arg("--sim-dir")
        .arg(sim_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the coordinator")?;
    let stdout = child.stdout.take().context("no coordinator stdout")?;
    let guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .context("the coordinator did not start; run `cloister coordinator serve --simulation` to see why")?
        .to_string();
    Ok((guard, url))
}

fn wait_for_file(path: &Path, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return Ok(text.trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not appear within {timeout:?}", path.display())
}
