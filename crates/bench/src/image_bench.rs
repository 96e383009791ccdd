//! `bench image`: confidential images next to their floor and their peer, in one run.
//!
//! - **cipher**: a layer's decryption with its HMAC check (`LayerCipher`) next to the bare
//!   AES-256-CTR + HMAC-SHA256 primitives of aws-lc-rs over the same ciphertext;
//! - **pull**: pull + decrypt + unpack of one encrypted image (several gzip layers, 256 MiB
//!   unpacked) from a local registry (Debian's docker-registry) next to
//!   `skopeo copy --decryption-key` + `umoci unpack` of the same image, alternating rounds;
//! - **memory**: the peak RSS of a process pulling one encrypted 1 GiB layer.
//!
//! Needs `docker-registry`, `skopeo`, `umoci` and `openssl` (`.ci/run` installs them). Uses
//! about 4 GiB of scratch space under `$TMPDIR`, removed at the end.
//! `cargo run --release -p bench -- image`

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aws_lc_rs::cipher::{AES_256, DecryptionContext, StreamingDecryptingKey, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use image::ocicrypt::cipher::LayerKey;
use image::ocicrypt::jwe::DecryptionKey;
use image::ocicrypt::{AES_256_CTR_HMAC_SHA256, PublicOptions};
use image::pull::{Keys, Progress};
use image::{Endpoint, ImageName, Registry};
use serde_json::json;

use crate::harness::Harness;

const CIPHER_BYTES: usize = 64 << 20;
const PULL_LAYERS: usize = 4;
const PULL_LAYER_BYTES: usize = 64 << 20;
const PULL_ROUNDS: usize = 3;
const BIG_LAYER_BYTES: usize = 1 << 30;

/// Run `bench image`, or (`image-child REF KEY DEST`) one pull whose peak RSS the parent reads.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if let [reference, key, dest] = args {
        return child(reference, Path::new(key), Path::new(dest));
    }
    let h = Harness::from_env();
    println!(
        "cloister image benchmark: median of {} paired rounds of {:?}",
        h.rounds, h.round
    );
    let cipher = cipher(&h)?;
    let work = Scratch::new()?;
    let registry = RegistryProcess::start(&work.0)?;
    let pull = pull(&work.0, &registry)?;
    let (start_mib, rss_mib) = memory(&work.0, &registry)?;

    println!("\nconfidential images next to their floor and peer (same machine, same run)");
    println!(
        "  layer decrypt + HMAC verify: {:.0} MB/s, {:.2}× the bare AES-256-CTR + HMAC-SHA256 floor (target ≥ 0.8)",
        cipher.0, cipher.1
    );
    println!(
        "  pull + decrypt + unpack, {} MiB in {PULL_LAYERS} layers: {:.2} s; skopeo copy --decryption-key + umoci unpack: {:.2} s; {:.2}× (target ≤ 0.8)",
        (PULL_LAYERS * PULL_LAYER_BYTES) >> 20,
        pull.0,
        pull.1,
        pull.2
    );
    println!(
        "  peak RSS pulling one encrypted {} MiB layer: {rss_mib:.1} MiB (target ≤ 64), of which {start_mib:.1} MiB before the pull began",
        BIG_LAYER_BYTES >> 20
    );
    println!(
        "{}",
        json!({
            "decrypt_mb_per_s": cipher.0,
            "decrypt_ratio_to_floor": cipher.1,
            "pull_s": pull.0,
            "skopeo_umoci_s": pull.1,
            "pull_ratio_to_peer": pull.2,
            "peak_rss_mib_1gib_layer": rss_mib,
            "rss_mib_before_pull": start_mib,
        })
    );
    Ok(())
}

/// Decryption throughput (MB/s) and its ratio to the floor (floor time ÷ ours: ≥ 1 is faster).
fn cipher(h: &Harness) -> Result<(f64, f64)> {
    let clear = pseudo_random(CIPHER_BYTES, 1);
    let key = LayerKey::generate()?;
    let mut encrypting = key.encrypt(&clear[..])?;
    let mut ciphertext = Vec::with_capacity(CIPHER_BYTES);
    encrypting.read_to_end(&mut ciphertext)?;
    let public = PublicOptions {
        cipher: AES_256_CTR_HMAC_SHA256.into(),
        hmac: encrypting.hmac().unwrap_or_default().to_vec(),
        cipheroptions: Default::default(),
    };
    drop(encrypting);
    let private = key.private_options("sha256:0");
    let raw_key = private.symkey.clone();
    let nonce: [u8; 16] = private.cipheroptions["nonce"][..].try_into()?;
    let mut scratch = vec![0u8; (256 << 10) + 16];
    let measured = h.paired(
        "decrypt + HMAC (LayerCipher)",
        || {
            let mut reader = key.decrypt(&ciphertext[..], &public)?;
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(anyhow::Error::from)
        },
        1.0,
        || {
            let unbound = UnboundCipherKey::new(&AES_256, &raw_key)?;
            let mut ctr = StreamingDecryptingKey::ctr(
                unbound,
                DecryptionContext::Iv128(FixedLength::from(nonce)),
            )?;
            let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &raw_key));
            for chunk in ciphertext.chunks(256 << 10) {
                mac.update(chunk);
                ctr.update(chunk, &mut scratch)?;
            }
            Ok::<_, aws_lc_rs::error::Unspecified>(mac.sign())
        },
    )?;
    let mb_per_s = CIPHER_BYTES as f64 / measured.per_op.as_secs_f64() / 1e6;
    Ok((mb_per_s, 1.0 / measured.ratio_to_floor.unwrap_or(f64::NAN)))
}

/// (our seconds, the peer's seconds, median per-round ratio ours ÷ peer).
fn pull(work: &Path, registry: &RegistryProcess) -> Result<(f64, f64, f64)> {
    let layers = (0..PULL_LAYERS)
        .map(|i| layer_tar(PULL_LAYER_BYTES, 64, i as u64))
        .collect::<Vec<_>>();
    layout(&work.join("pull-clear"), &layers, true)?;
    let (key, reference) = push_encrypted(work, registry, "pull-clear", "bench/pull:enc")?;
    let ours = || -> Result<Duration> {
        let dest = work.join("ours");
        let start = Instant::now();
        pull_in_process(&reference, &key, &dest)?;
        let took = start.elapsed();
        std::fs::remove_dir_all(&dest)?;
        Ok(took)
    };
    let peer = || -> Result<Duration> {
        let start = Instant::now();
        succeed(Command::new("skopeo").current_dir(work).args([
            "copy",
            "--src-tls-verify=false",
            "--decryption-key",
            key.to_str().unwrap_or_default(),
            &format!("docker://{reference}"),
            "oci:peer:x",
        ]))?;
        succeed(Command::new("umoci").current_dir(work).args([
            "unpack",
            "--image",
            "peer:x",
            "peer-bundle",
        ]))?;
        let took = start.elapsed();
        std::fs::remove_dir_all(work.join("peer"))?;
        std::fs::remove_dir_all(work.join("peer-bundle"))?;
        Ok(took)
    };
    let (mut mine, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PULL_ROUNDS {
        let a = ours()?.as_secs_f64();
        let b = peer()?.as_secs_f64();
        mine.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    Ok((median(mine), median(theirs), median(ratios)))
}

/// The RSS (MiB) of a child process before, and at its peak while, pulling one encrypted
/// 1 GiB layer.
fn memory(work: &Path, registry: &RegistryProcess) -> Result<(f64, f64)> {
    let big = layer_tar(BIG_LAYER_BYTES, 4, 99);
    layout(&work.join("big-clear"), &[big], false)?;
    let (key, reference) = push_encrypted(work, registry, "big-clear", "bench/big:enc")?;
    std::fs::remove_dir_all(work.join("big-clear"))?;
    let out = Command::new(std::env::current_exe()?)
        .args(["image-child", &reference])
        .arg(&key)
        .arg(work.join("big-dest"))
        .output()?;
    if !out.status.success() {
        bail!(
            "the pulling child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = |name: &str| -> Result<f64> {
        let kib: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("the child reported no {name}"))?
            .trim()
            .parse()?;
        Ok(kib / 1024.0)
    };
    std::fs::remove_dir_all(work.join("big-dest"))?;
    Ok((figure("start_rss_kib ")?, figure("peak_rss_kib ")?))
}

fn child(reference: &str, key: &Path, dest: &Path) -> Result<()> {
    println!("start_rss_kib {}", status_kib("VmRSS:")?);
    pull_in_process(reference, key, dest)?;
    println!("peak_rss_kib {}", status_kib("VmHWM:")?);
    Ok(())
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(value.trim().trim_end_matches("kB").trim().parse()?)
}

struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: usize, _: usize, _: &str, _: u64) {}
    fn advance(&self, _: usize, _: u64) {}
    fn finish(&self, _: usize) {}
}

fn pull_in_process(reference: &str, key: &Path, dest: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let source = Endpoint::new(
            ImageName::parse(&format!("docker://{reference}"))?,
            Registry::new(&[])?,
        );
        let manifest = source.manifest().await?;
        let keys = Keys {
            jwe: vec![DecryptionKey::from_pem(&std::fs::read(key)?)?],
            ..Keys::default()
        };
        image::pull::pull(&source, &manifest, dest, &keys, Arc::new(Quiet)).await?;
        Ok(())
    })
}

/// Push the layout at `work/name` to the registry encrypted (by us) to a fresh EC key: the
/// private key's path and the encrypted image's reference.
fn push_encrypted(
    work: &Path,
    registry: &RegistryProcess,
    name: &str,
    at: &str,
) -> Result<(PathBuf, String)> {
    let key = work.join(format!("{name}.key.pem"));
    let public = work.join(format!("{name}.pub.pem"));
    succeed(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key),
    )?;
    succeed(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    )?;
    let reference = format!("{}/{at}", registry.addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let registry = Registry::new(&[])?;
        let source = Endpoint::new(
            ImageName::parse(&format!("oci:{}:x", work.join(name).display()))?,
            registry.clone(),
        );
        let destination = Endpoint::new(
            ImageName::parse(&format!("docker://{reference}"))?,
            registry,
        );
        let recipients = image::encrypt::Recipients {
            jwe: vec![image::ocicrypt::jwe::Recipient::from_pem(&std::fs::read(
                &public,
            )?)?],
            ..Default::default()
        };
        image::encrypt::encrypt(&source, &destination, Arc::new(recipients), Arc::new(Quiet))
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok((key, reference))
}

/// Bytes that compress somewhat (as binaries and text do), quickly.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        // Half the bytes repeat: about 2:1 under gzip.
        out.extend_from_slice(&[word[0], word[1], word[2], word[3], b'a', b'a', b'b', b'b']);
    }
    out.truncate(len);
    out
}

/// A layer of `files` files, `bytes` in all.
fn layer_tar(bytes: usize, files: usize, seed: u64) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::with_capacity(bytes + files * 1024 + 4096));
    let size = bytes / files;
    for i in 0..files {
        let data = pseudo_random(size, seed * 1000 + i as u64);
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        if let Err(e) = builder.append_data(&mut header, format!("data/{seed}/{i}.bin"), &data[..])
        {
            eprintln!("building a layer: {e}");
        }
    }
    builder.into_inner().unwrap_or_default()
}

/// An OCI layout tagged `x` of `layers` (gzip-compressed when asked).
fn layout(dir: &Path, layers: &[Vec<u8>], gzip: bool) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> Result<(String, usize)> {
        let digest = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes));
        std::fs::write(blobs.join(&digest), bytes)?;
        Ok((format!("sha256:{digest}"), bytes.len()))
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let diff_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, tar);
        diff_ids.push(format!("sha256:{}", hex::encode(diff_id)));
        let (blob, media_type) = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar)?;
            (gz.finish()?, "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let (digest, size) = put(&blob)?;
        descriptors.push(json!({ "mediaType": media_type, "digest": digest, "size": size }));
    }
    let config = json!({ "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": diff_ids } }).to_string();
    let (config_digest, config_size) = put(config.as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": descriptors,
    })
    .to_string();
    let (digest, size) = put(manifest.as_bytes())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size, "annotations": { "org.opencontainers.image.ref.name": "x" } }] });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    Ok(())
}

fn succeed(command: &mut Command) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?} (.ci/run installs it)"))?;
    if !out.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("cloister-bench-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian's docker-registry on a loopback port, stopped on drop.
struct RegistryProcess {
    addr: String,
    child: Child,
}

impl RegistryProcess {
    fn start(work: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = work.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                work.join("registry").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("docker-registry (Debian's docker-registry package)")?;
        let registry = Self { addr, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the registry did not start on {}", registry.addr)
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
