//! Running a command module or component to its end, within the manifest's limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use launcher::ttls::TlsIdentity;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::bindings::sockets::tcp;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::{Loaded, Program};
use crate::error::LimitExceeded;
use crate::net::SocketPolicy;
use crate::ttls::{Intercept, InterceptedTcp, InterceptedView};
use crate::{KeepEngine, KeepError};

/// How one run is set up: what the activation and the manifest gave the workload.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// The command line, `argv[0]` first.
    pub argv: Vec<String>,
    /// The environment.
    pub env: BTreeMap<String, String>,
    /// A host directory (on a memory filesystem) shown read-only as the guest's `/`.
    pub files_root: Option<PathBuf>,
    /// Host directories and the guest paths they appear at, with whether they are writable.
    pub dirs: Vec<(PathBuf, String, bool)>,
    /// The manifest's `wasm` section: limits and network.
    pub spec: api::WasmSpec,
    /// The connections the keep wraps in TLS (WASI 0.2 components only).
    pub tls: api::TransparentTls,
    /// The workload's TLS identity, for `tls`.
    pub identity: Option<TlsIdentity>,
}

impl RunConfig {
    /// Every directory the module sees: (host path, guest path, writable), the files first.
    pub(crate) fn preopens(&self) -> impl Iterator<Item = (&Path, &str, bool)> {
        let files = self
            .files_root
            .iter()
            .map(|root| (root.as_path(), "/", false));
        let dirs = self
            .dirs
            .iter()
            .map(|(host, guest, writable)| (host.as_path(), guest.as_str(), *writable));
        files.chain(dirs)
    }
}

/// How a run ended without a keep error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status: 0 for success.
    pub code: i32,
}

/// The limits of one store, enforced as wasmtime asks; growing past one is an error that names it.
#[derive(Debug)]
pub(crate) struct Limiter {
    limits: api::WasmLimits,
}

impl Limiter {
    pub(crate) fn new(limits: api::WasmLimits) -> Self {
        Self { limits }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.limits.memory_mib.saturating_mul(1 << 20);
        if desired as u64 > limit {
            return Err(LimitExceeded::Memory {
                desired,
                limit_mib: self.limits.memory_mib,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.table_elements {
            return Err(LimitExceeded::Table {
                desired,
                limit: self.limits.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        usize::try_from(self.limits.instances).unwrap_or(usize::MAX)
    }

    fn tables(&self) -> usize {
        self.instances()
    }

    fn memories(&self) -> usize {
        self.instances()
    }
}

struct P1State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    intercept: Arc<Intercept>,
}

/// `wasi:sockets/tcp` of a component goes through the keep's transparent TLS.
fn intercepted(state: &mut P2State) -> InterceptedView<'_> {
    InterceptedView {
        inner: WasiSocketsCtxView {
            ctx: state.ctx.sockets(),
            table: &mut state.table,
        },
        intercept: &state.intercept,
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Run `loaded` as a command with `config` to its end, on a runtime of its own on this thread.
/// A guest `exit(n)` is `Exit { code: n }`; traps, limits and the deadline are errors that say
/// which.
pub fn run(engine: &KeepEngine, loaded: &Loaded, config: &RunConfig) -> Result<Exit, KeepError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| KeepError::Io {
            path: "the keep's async runtime".into(),
            source,
        })?;
    runtime.block_on(run_async(engine, loaded, config))
}

/// [`run`] on the caller's tokio runtime. The deadline is wall-clock time: the module yields
/// to the runtime every epoch tick, and a module blocked in a host call (an `accept`, a read)
/// is stopped all the same.
pub async fn run_async(
    engine: &KeepEngine,
    loaded: &Loaded,
    config: &RunConfig,
) -> Result<Exit, KeepError> {
    let intercept = Intercept::start(config.identity.clone(), &config.tls).await?;
    let mut builder = wasi_builder(config, Some(intercept.clone()))?;
    builder.inherit_stdin();
    let limiter = Limiter::new(config.spec.limits);
    let work = async {
        match &loaded.program {
            Program::Module(module) => run_module(engine, module, builder, limiter).await,
            Program::Component(component) => {
                run_component(engine, component, builder, limiter, intercept).await
            }
        }
    };
    let limits = &config.spec.limits;
    let outcome = if limits.deadline_ms == 0 {
        work.await
    } else {
        let deadline = std::time::Duration::from_millis(limits.deadline_ms);
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| KeepError::Deadline {
                deadline_ms: limits.deadline_ms,
            })?
    };
    outcome.or_else(classify)
}

/// The module's WASI context: argv, environment, output, sockets, and the preopened
/// directories.
pub(crate) fn wasi_builder(
    config: &RunConfig,
    intercept: Option<Arc<Intercept>>,
) -> Result<WasiCtxBuilder, KeepError> {
    let mut builder = wasi_builder_without_preopens(config, intercept);
    for (host, guest, writable) in config.preopens() {
        builder
            .preopened_dir(host, guest, perms(writable))
            .map_err(|e| KeepError::Io {
                path: host.to_path_buf(),
                source: std::io::Error::other(format!("{e:#}")),
            })?;
    }
    Ok(builder)
}

/// [`wasi_builder`] for a caller that provides the preopens itself.
pub(crate) fn wasi_builder_without_preopens(
    config: &RunConfig,
    intercept: Option<Arc<Intercept>>,
) -> WasiCtxBuilder {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&config.argv)
        .inherit_stdout()
        .inherit_stderr()
        .envs(&config.env.iter().collect::<Vec<_>>());
    SocketPolicy::new(&config.spec, intercept).apply(&mut builder);
    builder
}

pub(crate) fn perms(writable: bool) -> FsPerms {
    if writable {
        FsPerms::ReadWrite
    } else {
        FsPerms::ReadOnly
    }
}

/// A store that yields to the async runtime at every epoch tick, so deadlines and other
/// tasks get their turn however long the module computes.
pub(crate) fn new_store<T: Send>(engine: &wasmtime::Engine, state: T) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store.set_epoch_deadline(1);
    store
}

async fn run_module(
    engine: &KeepEngine,
    module: &Module,
    mut builder: WasiCtxBuilder,
    limiter: Limiter,
) -> wasmtime::Result<Exit> {
    let state = P1State {
        wasi: builder.build_p1(),
        limiter,
    };
    let mut store = new_store(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    let mut linker: Linker<P1State> = Linker::new(engine.engine());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s| &mut s.wasi)?;
    let instance = linker.instantiate_async(&mut store, module).await?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    start.call_async(&mut store, ()).await?;
    Ok(Exit { code: 0 })
}

async fn run_component(
    engine: &KeepEngine,
    component: &Component,
    mut builder: WasiCtxBuilder,
    limiter: Limiter,
    intercept: Arc<Intercept>,
) -> wasmtime::Result<Exit> {
    let state = P2State {
        ctx: builder.build(),
        table: ResourceTable::new(),
        limiter,
        intercept,
    };
    let mut store = new_store(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    let mut linker = wasmtime::component::Linker::<P2State>::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    linker.allow_shadowing(true);
    tcp::add_to_linker::<P2State, InterceptedTcp>(&mut linker, intercepted)?;
    let command = Command::instantiate_async(&mut store, component, &linker).await?;
    let status = command.wasi_cli_run().call_run(&mut store).await?;
    Ok(Exit {
        code: if status.is_ok() { 0 } else { 1 },
    })
}

/// A guest's `exit` is an ordinary end; everything else says what stopped the module.
fn classify(error: wasmtime::Error) -> Result<Exit, KeepError> {
    match error.downcast_ref::<I32Exit>() {
        Some(exit) => Ok(Exit { code: exit.0 }),
        None => Err(stopped_by(error)),
    }
}

/// What stopped a module: a limit of the manifest's, or a trap.
pub(crate) fn stopped_by(error: wasmtime::Error) -> KeepError {
    match error.downcast_ref::<LimitExceeded>() {
        Some(limit) => KeepError::Limit(limit.clone()),
        None => KeepError::Trap(error),
    }
}
