//! `bench keep`: what a keep's layers cost next to wasmtime used bare, in one run.
//!
//! - **warm**: one request's instantiation from the pre-instantiated handler component (store,
//!   WASI context with the workload's files preopened, limiter) next to a bare `ProxyPre`
//!   instantiation with a default store, on the same pooling engine;
//! - **requests**: one request through `keep::serve::Server::handle` next to wasmtime's own
//!   per-request serve machinery (the `wasmtime-wasi-http` pattern: store, incoming request,
//!   response outparam, handler task), both driven in process with the same request;
//! - **cold**: `keep run` of a precompiled command component from its artifact bytes
//!   (authenticated, deserialized, instantiated, run until it exits; attestation excluded) next
//!   to a bare `Component::deserialize` + instantiate + run of the same code.
//!
//! The guests are `crates/keep/guests` (the handler's `/hello`, the probe's `exit 0`), built
//! here for wasm32-wasip2. `cargo run --release -p bench -- keep`

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use keep::artifact::ArtifactKey;
use keep::serve::NoOutgoingHttp;
use keep::{KeepEngine, RunConfig};
use serde_json::json;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use zeroize::Zeroizing;

use crate::harness::{Harness, Measured};

/// Build the guests (once per target directory) and return (handler, probe) for wasip2.
fn guests() -> Result<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/keep-guests");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root.join("crates/keep/guests"))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .output()
        .context("running cargo to build the guests")?;
    if !out.status.success() {
        bail!(
            "building the guests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let release = target.join("wasm32-wasip2/release");
    Ok((release.join("handler.wasm"), release.join("probe.wasm")))
}

/// The bare peer's per-request state: what wasmtime's own serve example keeps.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: NoOutgoingHttp,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Bare {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

fn bare_store(engine: &wasmtime::Engine) -> Store<Bare> {
    let mut store = Store::new(
        engine,
        Bare {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
        },
    );
    // The engine interrupts on epochs (for deadlines): a bare store needs a deadline too.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

fn bare_pre(engine: &wasmtime::Engine, component: &Component) -> wasmtime::Result<ProxyPre<Bare>> {
    let mut linker = Linker::<Bare>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    ProxyPre::new(linker.instantiate_pre(component)?)
}

/// wasmtime's own per-request pattern, as `wasmtime-wasi-http` documents it.
async fn bare_handle(
    pre: &ProxyPre<Bare>,
    request: hyper::Request<Empty<Bytes>>,
) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = bare_store(pre.engine());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Https, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let pre = pre.clone();
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => wasmtime::bail!("handler error {code:?}"),
        Err(_) => wasmtime::bail!("no response: {:?}", task.await),
    }
}

fn hello() -> hyper::Request<Empty<Bytes>> {
    hyper::Request::builder()
        .uri("https://keep.example/hello")
        .body(Empty::new())
        .unwrap_or_default()
}

async fn drain(response: hyper::Response<HyperOutgoingBody>) -> Result<usize> {
    if response.status() != 200 {
        bail!("status {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(body.len())
}

fn spec() -> api::WasmSpec {
    // The manifest's defaults, as a workload without a `limits` section gets them.
    api::WasmSpec::default()
}

fn print(rows: &[&Measured]) {
    println!("  {:<58} {:>10} {:>12}", "", "µs/op", "× bare");
    for m in rows {
        println!(
            "  {:<58} {:>10.2} {:>12}",
            m.name,
            m.micros(),
            m.ratio_to_floor
                .map_or(String::new(), |r| format!("{r:.3}"))
        );
    }
}

/// Run `bench keep`.
pub(crate) fn run() -> Result<()> {
    let h = Harness::from_env();
    let (handler_path, probe_path) = guests()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "cloister keep benchmark: median of {} paired rounds of {:?}",
        h.rounds, h.round
    );

    // Warm: per-request instantiation and whole requests on the serving engine.
    let serving = KeepEngine::for_serving()?;
    let handler = std::fs::read(&handler_path)?;
    let loaded = serving.compile("handler.wasm", &handler)?;
    let files = keep::MemoryDir::create(None)?;
    files.write(&[(
        PathBuf::from("secrets/key"),
        Zeroizing::new(b"0123456789abcdef".to_vec()),
    )])?;
    let config = RunConfig {
        files_root: Some(files.path().to_path_buf()),
        spec: spec(),
        env: [("APP_GREETING".to_string(), "bench".to_string())].into(),
        ..RunConfig::default()
    };
    let server = keep::serve::Server::new(&serving, &loaded, config)?;
    let keep::Program::Component(component) = &loaded.program else {
        bail!("the handler is not a component");
    };
    let pre = bare_pre(serving.engine(), component).map_err(wasm)?;
    let instantiate = h.paired(
        "warm: instantiate per request (keep serve)",
        || rt.block_on(server.instantiate()),
        1.0,
        || {
            let mut store = bare_store(pre.engine());
            rt.block_on(pre.instantiate_async(&mut store)).map(|_| ())
        },
    )?;
    let requests = h.paired(
        "requests: /hello through keep::serve::Server::handle",
        || rt.block_on(async { drain(server.handle(hello()).await).await }),
        1.0,
        || rt.block_on(async { drain(bare_handle(&pre, hello()).await.map_err(wasm)?).await }),
    )?;

    // Cold: from artifact bytes to the module's exit.
    let engine = KeepEngine::new()?;
    let probe = std::fs::read(&probe_path)?;
    let key = ArtifactKey::derive(&Zeroizing::new(vec![7; 32]));
    let artifact = engine.precompile("probe.wasm", &probe, &key)?;
    let code = engine.engine().precompile_component(&probe).map_err(wasm)?;
    let run_config = RunConfig {
        argv: vec!["probe.wasm".into(), "exit".into(), "0".into()],
        files_root: Some(files.path().to_path_buf()),
        spec: spec(),
        ..RunConfig::default()
    };
    let cold = h.paired(
        "cold: keep run of a precompiled component, to its exit",
        || {
            let loaded = engine.load("probe.cwasm", &artifact, || {
                Ok(ArtifactKey::derive(&Zeroizing::new(vec![7; 32])))
            })?;
            rt.block_on(keep::run_async(&engine, &loaded, &run_config))
                .map_err(anyhow::Error::from)
        },
        1.0,
        || bare_run(engine.engine(), &code, &rt),
    )?;

    println!("\nkeeps next to wasmtime used bare (same engine, same guest, same run)");
    print(&[&instantiate, &requests, &cold]);
    let req_ratio = requests.ratio_to_floor.map(|r| 1.0 / r);
    println!(
        "\n  warm instantiate {:.2} µs (target ≤ 10); requests/s {:.2}× bare (target ≥ 0.8); \
         cold run {:.2} ms (target ≤ 2), {:.2}× bare (target ≤ 1.2)",
        instantiate.micros(),
        req_ratio.unwrap_or(f64::NAN),
        cold.micros() / 1000.0,
        cold.ratio_to_floor.unwrap_or(f64::NAN),
    );
    println!(
        "{}",
        json!({
            "warm_instantiate_us": instantiate.micros(),
            "warm_instantiate_ratio_to_bare": instantiate.ratio_to_floor,
            "request_us": requests.micros(),
            "requests_per_second_ratio_to_bare": req_ratio,
            "cold_run_ms": cold.micros() / 1000.0,
            "cold_run_ratio_to_bare": cold.ratio_to_floor,
        })
    );
    Ok(())
}

/// A bare run: deserialize the same code, link WASI, instantiate, run until it exits.
fn bare_run(
    engine: &wasmtime::Engine,
    code: &[u8],
    rt: &tokio::runtime::Runtime,
) -> wasmtime::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: `code` is what `precompile_component` of this very engine produced, in this
    // process, a moment ago.
    let component = unsafe { Component::deserialize(engine, code) }?;
    struct Command {
        ctx: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for Command {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.ctx,
                table: &mut self.table,
            }
        }
    }
    let mut store = Store::new(
        engine,
        Command {
            ctx: WasiCtx::builder()
                .args(&["probe.wasm", "exit", "0"])
                .build(),
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX / 2);
    let mut linker = Linker::<Command>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    rt.block_on(async {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
            &mut store, &component, &linker,
        )
        .await?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(_) => Ok(()),
            Err(e) if e.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    })
}

/// wasmtime's error type is its own (without the `anyhow` feature).
fn wasm(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}
