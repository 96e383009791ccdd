//! Why a keep could not load or run a module.

use std::path::PathBuf;

/// A keep's failure. Each says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeepError {
    /// The bytes are neither a WebAssembly module nor a component nor a keep artifact.
    #[error(
        "{what} is not a WebAssembly module, a component, or a `cloister keep compile` artifact"
    )]
    NotWasm {
        /// The file or reference.
        what: String,
    },
    /// wasmtime refused to compile the module.
    #[error("compiling the module: {0:#}")]
    Compile(wasmtime::Error),
    /// A precompiled artifact that this keep cannot trust: not made by `keep compile` in this
    /// TEE, or changed since.
    #[error(
        "precompiled artifact refused: {reason}; recompile it with `cloister keep compile` in \
         this TEE, or run the .wasm itself"
    )]
    ArtifactRejected {
        /// What is wrong with it.
        reason: String,
    },
    /// No memory-backed filesystem to mount the workload's files from.
    #[error(
        "no memory-backed filesystem (tmpfs) among {candidates}: the workload's files would \
         reach a disk; mount a tmpfs and pass it with --memory-dir"
    )]
    NoMemoryFilesystem {
        /// The directories tried.
        candidates: String,
    },
    /// A directory or file of the keep could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The coordinator's answer names no module: the workload is a native one.
    #[error(
        "workload {0} is not a WebAssembly workload in the manifest; give it a wasm section, or \
         run it with `cloister launch`"
    )]
    NotWasmWorkload(String),
    /// Activation failed or its answer is unusable.
    #[error("activation: {0}")]
    Activation(String),
    /// `keep serve` was given something that is not a `wasi:http/proxy` component.
    #[error("the module is not an HTTP handler: {0}")]
    NotAHandler(String),
    /// The manifest asks for something keeps do not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// The module's origin is not the one the manifest pins.
    #[error("{0}")]
    SourceNotAllowed(String),
    /// Pulling the module failed.
    #[error("pulling the module: {0}")]
    Pull(#[from] image::RegistryError),
    /// The operator asked for a host directory the manifest does not allow.
    #[error("{0}")]
    DirectoryNotAllowed(String),
    /// The module's WASI context could not be set up.
    #[error("setting up the module's WASI context: {0:#}")]
    Setup(wasmtime::Error),
    /// The module ran past its deadline.
    #[error(
        "the module ran past its deadline of {deadline_ms} ms (manifest wasm.limits.deadline_ms) \
         and was stopped"
    )]
    Deadline {
        /// The deadline.
        deadline_ms: u64,
    },
    /// The module asked for more than its limits allow.
    #[error("the module exceeded its limits: {0}")]
    Limit(#[from] LimitExceeded),
    /// The module trapped.
    #[error("the module trapped: {0:#}")]
    Trap(wasmtime::Error),
}

/// A limit of the manifest's `wasm.limits` that a module hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitExceeded {
    /// A linear memory would grow past `memory_mib`.
    #[error("a memory grew to {desired} bytes, past {limit_mib} MiB (wasm.limits.memory_mib)")]
    Memory {
        /// The size asked for.
        desired: usize,
        /// The limit.
        limit_mib: u64,
    },
    /// A table would grow past `table_elements`.
    #[error("a table grew to {desired} elements, past {limit} (wasm.limits.table_elements)")]
    Table {
        /// The size asked for.
        desired: usize,
        /// The limit.
        limit: u64,
    },
}
