//! The wasmtime engine of a keep and the programs it loads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Precompiled,
};

use crate::KeepError;
use crate::artifact::{self, ArtifactKey};

/// What the pooling allocator zeroes in place when an instance ends (per memory and table).
const KEEP_RESIDENT: usize = 64 << 10;

/// How often the epoch advances: the granularity of deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WASI preview 1 core module.
    Module,
    /// A WASI 0.2 component.
    Component,
}

impl Kind {
    /// Read off the header: core modules are version 1, components layer 1.
    fn of_wasm(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8)? {
            [0, b'a', b's', b'm', 1, 0, 0, 0] => Some(Self::Module),
            [0, b'a', b's', b'm', 0x0d, 0, 1, 0] => Some(Self::Component),
            _ => None,
        }
    }
}

/// A compiled program and the digest of the module it came from.
#[derive(Clone)]
pub enum Program {
    /// A core module (WASI preview 1).
    Module(Module),
    /// A component (WASI 0.2).
    Component(Component),
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Module(_) => "Program::Module",
            Self::Component(_) => "Program::Component",
        })
    }
}

impl Program {
    /// Core module or component.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Module(_) => Kind::Module,
            Self::Component(_) => Kind::Component,
        }
    }
}

/// A loaded program with the SHA-256 of the original module: the digest to attest.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled program.
    pub program: Program,
    /// SHA-256 of the `.wasm` bytes it was compiled from.
    pub module_sha256: [u8; 32],
    /// Whether it came from a precompiled artifact.
    pub precompiled: bool,
}

/// A wasmtime engine configured for keeps: Cranelift, epoch interruption for deadlines, and
/// a thread that advances the epoch while the engine lives.
#[derive(Debug)]
pub struct KeepEngine {
    engine: Engine,
    stop: Arc<AtomicBool>,
}

impl Drop for KeepEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl KeepEngine {
    /// An engine for `keep run` and `keep compile`: memories allocated on demand.
    pub fn new() -> Result<Self, KeepError> {
        Self::with(Config::new())
    }

    /// An engine for `keep serve`: instances come from a pool sized for
    /// [`MAX_CONCURRENT_REQUESTS`](crate::serve::MAX_CONCURRENT_REQUESTS) requests at once,
    /// each with linear memories of up to 4 GiB (the manifest's `memory_mib` is enforced per
    /// request by the store's limiter). Code generation is the same as [`KeepEngine::new`]'s,
    /// so `keep compile` artifacts load in both.
    pub fn for_serving() -> Result<Self, KeepError> {
        let requests = crate::serve::MAX_CONCURRENT_REQUESTS;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(requests)
            .total_core_instances(requests * 16)
            .total_memories(requests * 4)
            .total_tables(requests * 8)
            .total_stacks(requests)
            .max_memory_size(4 << 30)
            // Zero the first pages a request dirtied instead of returning them to the kernel:
            // the next request would fault them straight back in. 64 KiB measured best for a
            // handler built with Rust's std (bench keep: a third off an instantiation).
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Self::with(config)
    }

    fn with(mut config: Config) -> Result<Self, KeepError> {
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(KeepError::Setup)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticking = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("keep-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|source| KeepError::Io {
                path: "keep-epoch thread".into(),
                source,
            })?;
        Ok(Self { engine, stop })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile a `.wasm` module or component in memory.
    pub fn compile(&self, what: &str, wasm: &[u8]) -> Result<Loaded, KeepError> {
        let program = match Kind::of_wasm(wasm) {
            Some(Kind::Module) => {
                Program::Module(Module::new(&self.engine, wasm).map_err(KeepError::Compile)?)
            }
            Some(Kind::Component) => {
                Program::Component(Component::new(&self.engine, wasm).map_err(KeepError::Compile)?)
            }
            None => {
                return Err(KeepError::NotWasm {
                    what: what.to_string(),
                });
            }
        };
        Ok(Loaded {
            program,
            module_sha256: crate::module_digest(wasm),
            precompiled: false,
        })
    }

    /// Compile `wasm` ahead of time into an artifact authenticated under `key`.
    pub fn precompile(
        &self,
        what: &str,
        wasm: &[u8],
        key: &ArtifactKey,
    ) -> Result<Vec<u8>, KeepError> {
        let (kind, code) = match Kind::of_wasm(wasm) {
            Some(Kind::Module) => (Kind::Module, self.engine.precompile_module(wasm)),
            Some(Kind::Component) => (Kind::Component, self.engine.precompile_component(wasm)),
            None => {
                return Err(KeepError::NotWasm {
                    what: what.to_string(),
                });
            }
        };
        let code = code.map_err(KeepError::Compile)?;
        artifact::seal(key, &crate::module_digest(wasm), kind, &code)
    }

    /// Load `bytes`: a `.wasm` file is compiled in memory; a `keep compile` artifact is
    /// authenticated under `key` first (without a key, artifacts are refused).
    pub fn load(
        &self,
        what: &str,
        bytes: &[u8],
        key: impl FnOnce() -> Result<ArtifactKey, KeepError>,
    ) -> Result<Loaded, KeepError> {
        if !artifact::is_artifact(bytes) {
            if Engine::detect_precompiled(bytes).is_some() {
                return Err(KeepError::ArtifactRejected {
                    reason: format!("{what} is raw wasmtime code, not a keep artifact"),
                });
            }
            return self.compile(what, bytes);
        }
        let opened = artifact::open(&key()?, bytes)?;
        let program = match (opened.kind, Engine::detect_precompiled(opened.code)) {
            (Kind::Module, Some(Precompiled::Module)) => {
                Program::Module(artifact::deserialize_module(&self.engine, opened.code)?)
            }
            (Kind::Component, Some(Precompiled::Component)) => {
                Program::Component(artifact::deserialize_component(&self.engine, opened.code)?)
            }
            _ => {
                return Err(KeepError::ArtifactRejected {
                    reason: "its code is not what its header says".into(),
                });
            }
        };
        Ok(Loaded {
            program,
            module_sha256: opened.module_sha256,
            precompiled: true,
        })
    }
}
