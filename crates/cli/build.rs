//! Builds the quickstart's WebAssembly workload (`quickstart/wasm_client.rs`, standard library
//! only) for wasm32-wasip2 with this build's own rustc, so `cloister quickstart` can run a keep
//! with nothing but the Rust toolchain. rust-toolchain.toml lists the target; where it is not
//! installed, the module is empty and the quickstart says how to add its keep step.

// A build script reports failure by panicking, with the message cargo shows.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "quickstart/wasm_client.rs";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("quickstart_wasm_client.wasm");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // Build again once the target is installed (a path that does not exist yet always reruns
    // this script, which then fails fast).
    if let Ok(sysroot) = Command::new(&rustc).args(["--print", "sysroot"]).output() {
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
        println!("cargo::rerun-if-changed={sysroot}/lib/rustlib/wasm32-wasip2");
    }
    let built = Command::new(&rustc)
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
        .output()
        .is_ok_and(|o| o.status.success());
    if !built {
        // The quickstart leaves its keep step out (and says how to include it) rather than
        // the whole binary failing to build where the target is not installed.
        println!(
            "cargo::warning=the quickstart's WebAssembly step is left out: \
             `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it), then build again"
        );
        std::fs::write(&out, b"").expect("writing an empty placeholder module");
    }
}
