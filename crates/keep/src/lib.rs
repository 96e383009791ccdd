//! Keeps: WebAssembly workloads in wasmtime, inside a TEE, attested with the exact module.
//!
//! A keep generates the workload's key inside the TEE, obtains evidence whose report data binds
//! the key and the module's SHA-256 ([`api::workload_report_data`]), and activates with the
//! coordinator like any launcher. Only after the coordinator said yes does the module run, with
//! what the activation gave it: files mounted from a memory filesystem, environment and argv,
//! host directories and network addresses only where the manifest's `wasm` section allows them,
//! and the manifest's limits.
//!
//! Modules are WASI 0.2 components (`wasi:cli/command` for [`run`], `wasi:http/proxy` for
//! [`serve`]) or WASI preview 1 core modules, from a file or an OCI registry ([`ModuleSource`]).
//! A workload's transparent-TLS rules are applied in its `wasi:sockets/tcp` (`ttls`).
//! Precompiled code (`keep compile`) is authenticated with a key derived inside the TEE before
//! wasmtime loads it ([`artifact`]).
#![deny(unsafe_code)]

pub mod artifact;
mod engine;
mod error;
mod memfs;
mod net;
mod preopens;
mod run;
pub mod serve;
mod source;
mod ttls;
mod workload;

pub use engine::{KeepEngine, Kind, Loaded, Program};
pub use error::KeepError;
pub use memfs::MemoryDir;
pub use run::{Exit, RunConfig, run, run_async};
pub use source::{ModuleSource, check_source};
pub use workload::{DirBind, Prepared, prepare};

/// The SHA-256 of a module's bytes: what the evidence binds and the manifest names.
pub fn module_digest(wasm: &[u8]) -> [u8; 32] {
    attest::crypto::sha256(wasm)
}
