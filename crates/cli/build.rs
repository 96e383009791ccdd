//! Builds the quickstart's WebAssembly workload (`quickstart/wasm_client.rs`, standard library
//! only) for wasm32-wasip2 with this build's own rustc, so `cloister quickstart` can run a keep
//! with nothing but the Rust toolchain. rust-toolchain.toml lists the target.

// A build script reports failure by panicking, with the message cargo shows.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "quickstart/wasm_client.rs";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("quickstart_wasm_client.wasm");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition=2024",
            "--target",
            "wasm32-wasip2",
            "--crate-type",
            "bin",
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "strip=symbols",
            "-C",
            "debuginfo=0",
        ])
        .arg("-o")
        .arg(&out)
        .arg(source)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running rustc for the quickstart's WebAssembly workload");
    assert!(
        status.success(),
        "building {source} for wasm32-wasip2 failed; `rustup target add wasm32-wasip2` \
         (rust-toolchain.toml lists it) and build again"
    );
}
