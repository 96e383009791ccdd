//! A WebAssembly program that knows nothing of TEEs or TLS: it does one thing per command and
//! prints what it saw, so the keep's tests can check what the keep gave it.
//!
//! - `show FILE...`: SHA-256 of each file, then every `APP_*` variable and the arguments
//! - `write FILE TEXT`: write a file
//! - `serve ADDR`: accept one TCP connection, answer each line with `echo: LINE`
//! - `connect ADDR TEXT`: send TEXT and a newline over TCP, print the answer line
//! - `grow MIB`: allocate and touch that much memory
//! - `spin`: loop forever
//! - `exit N`: exit with status N

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};

use sha2::{Digest as _, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["show", files @ ..] => show(files),
        ["write", file, text] => std::fs::write(file, text).map_err(|e| format!("write {file}: {e}")),
        ["serve", addr] => serve(addr),
        ["connect", addr, text] => connect(addr, text),
        ["grow", mib] => grow(mib),
        ["spin"] => spin(),
        ["exit", code] => std::process::exit(code.parse().unwrap_or(3)),
        _ => Err(format!("usage: probe show|write|serve|connect|grow|spin|exit ... (got {words:?})")),
    };
    if let Err(message) = outcome {
        eprintln!("probe: {message}");
        std::process::exit(1);
    }
}

fn show(files: &[&str]) -> Result<(), String> {
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("read {file}: {e}"))?;
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        println!("file {file} sha256 {digest}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("APP_")).collect();
    vars.sort();
    for (name, value) in vars {
        println!("env {name}={value}");
    }
    println!("args {:?}", std::env::args().collect::<Vec<_>>());
    Ok(())
}

fn serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    println!("listening on {addr}");
    let (stream, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut lines = 0;
    for line in BufReader::new(&stream).lines() {
        let line = line.map_err(|e| format!("read from {peer}: {e}"))?;
        writeln!(&stream, "echo: {line}").map_err(|e| format!("write: {e}"))?;
        lines += 1;
    }
    eprintln!("probe: {peer} closed after {lines} lines");
    Ok(())
}

fn connect(addr: &str, text: &str) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    writeln!(&stream, "{text}").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    println!("answer {}", answer.trim_end());
    Ok(())
}

fn grow(mib: &str) -> Result<(), String> {
    let mib: usize = mib.parse().map_err(|_| format!("{mib} is not a number"))?;
    let mut chunks = Vec::new();
    for _ in 0..mib {
        chunks.push(vec![1u8; 1 << 20]);
    }
    println!("allocated {} MiB", chunks.len());
    Ok(())
}

fn spin() -> Result<(), String> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
