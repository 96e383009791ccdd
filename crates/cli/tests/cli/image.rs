//! `cloister image` end to end, next to the tools people use: images built here, encrypted and
//! decrypted by Debian's skopeo as well as by us, unpacked by umoci for reference, pushed to a
//! real registry, and keys released by a coordinator's key broker.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

use super::hardening::User;
use super::keep::Registry;
use super::{Deployment, json, scratch, stderr};

/// `cloister` in `dir`; a pull without `--policy` accepts any image (`accept.json`).
fn cloister(dir: &Path, args: &[&str]) -> Output {
    let mut args = args.to_vec();
    if args.starts_with(&["image", "pull"]) && !args.contains(&"--policy") {
        std::fs::write(dir.join("accept.json"), ACCEPT).unwrap();
        args.extend(["--policy", "accept.json"]);
    }
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(&args)
        .current_dir(dir)
        .env("CLOISTER_SIM_DIR", dir.join("sim"))
        .output()
        .unwrap()
}

const ACCEPT: &str = r#"{"default": [{"type": "insecureAcceptAnything"}]}"#;

fn tool(dir: &Path, program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} ({e}); .ci/run installs it"));
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    out
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer's tar, built entry by entry.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, path, &b""[..])
            .unwrap();
        self
    }

    fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.owned_file(path, mode, data, 0)
    }

    fn owned_file(mut self, path: &str, mode: u32, data: &[u8], owner: u64) -> Self {
        let mut header = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        header.set_uid(owner);
        header.set_gid(owner);
        self.builder.append_data(&mut header, path, data).unwrap();
        self
    }

    /// A file with extended attributes, in a PAX header before it.
    fn xattr_file(mut self, path: &str, mode: u32, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let mut records = Vec::new();
        for (name, value) in xattrs {
            let body = [format!(" SCHILY.xattr.{name}=").as_bytes(), value, b"\n"].concat();
            // The length counts its own digits.
            let mut length = body.len() + 1;
            while format!("{length}").len() + body.len() != length {
                length = format!("{length}").len() + body.len();
            }
            records.extend_from_slice(format!("{length}").as_bytes());
            records.extend_from_slice(&body);
        }
        let mut pax = Self::header(tar::EntryType::XHeader, 0o644, records.len() as u64);
        self.builder
            .append_data(&mut pax, "PaxHeaders/x", &records[..])
            .unwrap();
        self.file(path, mode, data)
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut header = Self::header(kind, 0o777, 0);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    fn fifo(mut self, path: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Fifo, 0o600, 0);
        self.builder
            .append_data(&mut header, path, &b""[..])
            .unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// Write an OCI layout at `dir` holding one image, tagged `tag`, of `layers`.
fn layout(dir: &Path, tag: &str, layers: Vec<(Vec<u8>, Compression)>) {
    let config = serde_json::json!({ "Entrypoint": ["/bin/tool"], "Env": ["PATH=/bin"] });
    layout_with(dir, tag, layers, config);
}

/// [`layout`] with the image configuration's `config` given.
fn layout_with(dir: &Path, tag: &str, layers: Vec<(Vec<u8>, Compression)>, run: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, compression) in layers {
        diff_ids.push(sha256(&tar));
        let (blob, media_type) = match compression {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).unwrap();
                (
                    gz.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Compression::Zstd => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let (digest, size) = put(&blob);
        descriptors
            .push(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": size }));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": descriptors,
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// An image with what unpackers get wrong: modes (setuid, read-only directories), owners,
/// implicit parents, hard and symbolic links (absolute and dangling), a FIFO, a long and a
/// non-ASCII name, a large file, whiteouts, an opaque directory, a file turned directory.
fn app_image(dir: &Path, tag: &str) {
    let large: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let base = Layer::new()
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/gone", 0o644, b"removed by the next layer\n")
        .file("etc/conf", 0o600, b"a file, then a directory\n")
        .dir("bin", 0o755)
        .file("bin/tool", 0o4755, b"#!/bin/sh\necho tool\n")
        .link(tar::EntryType::Link, "bin/tool-link", "bin/tool")
        .file("usr/lib/libx.so", 0o755, b"\x7fELF")
        .xattr_file(
            "bin/ping",
            0o755,
            b"#!/bin/sh\n",
            &[
                ("user.origin", b"the image"),
                ("security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
            ],
        )
        .link(tar::EntryType::Symlink, "lib", "usr/lib")
        .link(tar::EntryType::Symlink, "etc/alt", "/etc/alternatives/x")
        .dir("var/cache", 0o755)
        .file("var/cache/old", 0o644, b"emptied by an opaque directory\n")
        .dir("ro", 0o555)
        .file("ro/file", 0o444, b"read only\n")
        .owned_file("home/user/file", 0o600, b"owned\n", 1000)
        .fifo("run/fifo")
        .finish();
    let changes = Layer::new()
        .file("etc/.wh.gone", 0o644, b"")
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .file("var/cache/new", 0o644, b"new\n")
        .dir("etc/conf", 0o750)
        .file("etc/conf/inner", 0o640, b"inside\n")
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .finish();
    let long = format!("deep/{}/file", "d".repeat(120));
    let data = Layer::new()
        .file(&long, 0o644, b"a name past 100 bytes\n")
        .file("data/größe.txt", 0o644, "not ASCII\n".as_bytes())
        .file("data/large.bin", 0o644, &large)
        .finish();
    layout(
        dir,
        tag,
        vec![
            (base, Compression::Gzip),
            (changes, Compression::None),
            (data, Compression::Gzip),
        ],
    );
}

/// What an unpacked tree holds, path by path: type, mode, owner, content or target, the mtime
/// of everything but directories (their times depend on the order of unpacking), and which
/// paths are hard links of one file.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for path in children {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if kind.is_symlink() {
                format!(
                    "symlink {} {}",
                    std::fs::read_link(&path).unwrap().display(),
                    meta.mtime()
                )
            } else if kind.is_fifo() {
                format!("fifo {}", meta.mtime())
            } else {
                let first = inodes
                    .entry(meta.ino())
                    .or_insert_with(|| name.clone())
                    .clone();
                format!(
                    "file {} {} links-to:{first} {}",
                    meta.len(),
                    sha256(&std::fs::read(&path).unwrap()),
                    meta.mtime()
                )
            };
            let mode = if kind.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            };
            let xattrs = xattrs_of(&path);
            entries.insert(
                name,
                format!(
                    "{what} mode {mode:o} owner {}:{} xattrs {xattrs}",
                    meta.uid(),
                    meta.gid()
                ),
            );
        }
    }
    entries
}

/// A path's extended attributes, sorted: `name=hex;…`.
fn xattrs_of(path: &Path) -> String {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut pairs: Vec<String> = names[..n]
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap_or(0);
            format!("{name}={}", hex(&value[..len]))
        })
        .collect();
    pairs.sort();
    pairs.join(";")
}

/// The reference: umoci's unpacking of `image` (oci:DIR:TAG without the `oci:`).
fn umoci(dir: &Path, image: &str, bundle: &str) -> BTreeMap<String, String> {
    tool(dir, "umoci", &["unpack", "--image", image, bundle]);
    tree(&dir.join(bundle).join("rootfs"))
}

fn keys(dir: &Path) {
    for (name, algorithm) in [("ec", "EC"), ("rsa", "RSA"), ("other", "EC")] {
        let key = format!("{name}.pem");
        let mut args = vec!["genpkey", "-algorithm", algorithm, "-out", key.as_str()];
        if algorithm == "EC" {
            args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
        } else {
            args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
        }
        tool(dir, "openssl", &args);
        tool(
            dir,
            "openssl",
            &[
                "pkey",
                "-in",
                &key,
                "-pubout",
                "-out",
                &format!("{name}.pub.pem"),
            ],
        );
    }
}

fn assert_same(ours: &Path, reference: &BTreeMap<String, String>) {
    let ours = tree(ours);
    for (path, want) in reference {
        assert_eq!(ours.get(path), Some(want), "{path}");
    }
    assert_eq!(
        ours.len(),
        reference.len(),
        "ours has more: {:?}",
        ours.keys()
            .filter(|k| !reference.contains_key(*k))
            .collect::<Vec<_>>()
    );
}

#[test]
fn skopeo_encrypted_images_open_here_and_ours_open_in_skopeo_as_umoci_unpacks_them() {
    let dir = scratch("image-skopeo");
    keys(&dir);
    app_image(&dir.join("clear"), "app");
    let reference = umoci(&dir, "clear:app", "reference");
    assert!(reference.contains_key("var/cache/new") && !reference.contains_key("var/cache/old"));
    let ping = &reference["bin/ping"];
    assert!(
        ping.contains("security.capability=") && ping.contains("user.origin="),
        "{ping}"
    );

    // The clear image, through us: the same tree as umoci's, and the image's configuration.
    let out = ok(cloister(
        &dir,
        &[
            "image",
            "pull",
            "oci:clear:app",
            "--dest",
            "clear-ours",
            "-o",
            "json",
        ],
    ));
    assert_eq!(json(&out)["entrypoint"], serde_json::json!(["/bin/tool"]));
    assert_same(&dir.join("clear-ours/rootfs"), &reference);

    // skopeo encrypts (JWE to an EC key), we decrypt.
    tool(
        &dir,
        "skopeo",
        &[
            "copy",
            "--encryption-key",
            "jwe:ec.pub.pem",
            "oci:clear:app",
            "oci:skopeo-enc:app",
        ],
    );
    let inspect = json(&ok(cloister(
        &dir,
        &["image", "inspect", "oci:skopeo-enc:app", "-o", "json"],
    )));
    assert!(
        inspect["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["encrypted"] == true && l["recipients"] == serde_json::json!(["jwe"]))
    );
    ok(cloister(
        &dir,
        &[
            "image",
            "pull",
            "oci:skopeo-enc:app",
            "--dest",
            "from-skopeo",
            "--decryption-key",
            "ec.pem",
        ],
    ));
    assert_same(&dir.join("from-skopeo/rootfs"), &reference);

    // We encrypt to two recipients; skopeo decrypts with either key, to the same tree.
    ok(cloister(
        &dir,
        &[
            "image",
            "encrypt",
            "--recipient",
            "jwe:ec.pub.pem",
            "--recipient",
            "jwe:rsa.pub.pem",
            "oci:clear:app",
            "oci:ours-enc:app",
        ],
    ));
    for key in ["ec.pem", "rsa.pem"] {
        let decrypted = format!("skopeo-dec-{key}");
        tool(
            &dir,
            "skopeo",
            &[
                "copy",
                "--decryption-key",
                key,
                "oci:ours-enc:app",
                &format!("oci:{decrypted}:app"),
            ],
        );
        assert_eq!(
            umoci(
                &dir,
                &format!("{decrypted}:app"),
                &format!("{decrypted}-bundle")
            ),
            reference
        );
        ok(cloister(
            &dir,
            &[
                "image",
                "pull",
                "oci:ours-enc:app",
                "--dest",
                &format!("ours-{key}"),
                "--decryption-key",
                key,
            ],
        ));
        assert_same(&dir.join(format!("ours-{key}/rootfs")), &reference);
    }

    // Without the key, or with another one, nothing opens and nothing is left behind.
    for flags in [&[][..], &["--decryption-key", "other.pem"][..]] {
        let mut args = vec!["image", "pull", "oci:ours-enc:app", "--dest", "locked"];
        args.extend_from_slice(flags);
        let out = cloister(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("is encrypted"), "{}", stderr(&out));
        assert!(!dir.join("locked").exists());
    }
    let no_partials = std::fs::read_dir(&dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".partial-")
    });
    assert!(no_partials);
}

#[test]
fn images_round_trip_through_a_registry() {
    let dir = scratch("image-registry");
    keys(&dir);
    app_image(&dir.join("clear"), "app");
    let reference = umoci(&dir, "clear:app", "reference");
    let registry = Registry::start(&dir);
    let at = |tag: &str| format!("docker://{}/team/app:{tag}", registry.addr);
    tool(
        &dir,
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:clear:app",
            &at("clear"),
        ],
    );

    // Registry to registry, encrypted on the way; pulled back by skopeo and by us.
    ok(cloister(
        &dir,
        &[
            "image",
            "encrypt",
            "--recipient",
            "jwe:ec.pub.pem",
            &at("clear"),
            &at("enc"),
        ],
    ));
    tool(
        &dir,
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--decryption-key",
            "ec.pem",
            &at("enc"),
            "oci:back:app",
        ],
    );
    assert_eq!(umoci(&dir, "back:app", "back-bundle"), reference);
    ok(cloister(
        &dir,
        &[
            "image",
            "pull",
            &at("enc"),
            "--dest",
            "pulled",
            "--decryption-key",
            "ec.pem",
        ],
    ));
    assert_same(&dir.join("pulled/rootfs"), &reference);
}

#[test]
fn corrupted_layers_are_refused_and_leave_nothing_behind() {
    let dir = scratch("image-corrupt");
    keys(&dir);
    app_image(&dir.join("clear"), "app");
    ok(cloister(
        &dir,
        &[
            "image",
            "encrypt",
            "--recipient",
            "jwe:ec.pub.pem",
            "oci:clear:app",
            "oci:enc:app",
        ],
    ));
    let largest_blob = |layout: &str| {
        std::fs::read_dir(dir.join(layout).join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap()
    };
    let pull = |image: &str, dest: &str| {
        cloister(
            &dir,
            &[
                "image",
                "pull",
                image,
                "--dest",
                dest,
                "--decryption-key",
                "ec.pem",
            ],
        )
    };

    // A flipped byte, then a truncated blob: the digest check refuses either.
    let blob = largest_blob("clear");
    let original = std::fs::read(&blob).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 1;
    std::fs::write(&blob, &flipped).unwrap();
    let out = pull("oci:clear:app", "flipped");
    assert!(
        stderr(&out).contains("does not match its digest"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&blob, &original[..original.len() - 100]).unwrap();
    let out = pull("oci:clear:app", "truncated");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Ciphertext changed and the manifest made to match it: the HMAC refuses it.
    let blob = largest_blob("enc");
    let mut ciphertext = std::fs::read(&blob).unwrap();
    let old_digest = format!("sha256:{}", blob.file_name().unwrap().to_string_lossy());
    ciphertext[1000] ^= 1;
    let new_digest = sha256(&ciphertext);
    std::fs::write(
        dir.join("enc/blobs/sha256").join(&new_digest[7..]),
        &ciphertext,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("enc/index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest =
        std::fs::read_to_string(dir.join("enc/blobs/sha256").join(&manifest_digest[7..])).unwrap();
    let manifest = manifest.replace(&old_digest, &new_digest);
    let patched = sha256(manifest.as_bytes());
    std::fs::write(dir.join("enc/blobs/sha256").join(&patched[7..]), &manifest).unwrap();
    let index = index
        .to_string()
        .replace(&manifest_digest, &patched)
        .replace(
            &format!(
                "\"size\":{}",
                std::fs::metadata(dir.join("enc/blobs/sha256").join(&manifest_digest[7..]))
                    .unwrap()
                    .len()
            ),
            &format!("\"size\":{}", manifest.len()),
        );
    std::fs::write(dir.join("enc/index.json"), index).unwrap();
    let out = pull("oci:enc:app", "tampered");
    assert!(
        stderr(&out).contains("HMAC does not match"),
        "{}",
        stderr(&out)
    );

    for dest in ["flipped", "truncated", "tampered"] {
        assert!(!dir.join(dest).exists(), "{dest} was left behind");
    }
    let partials: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
}

#[test]
fn broker_held_keys_open_images_only_in_an_attested_tee_of_the_right_package() {
    let d = Deployment::start("image-kbs");
    d.verify();
    let dir = d.dir.clone();
    let admin = User::new("admin");
    std::fs::write(dir.join("admin.pem"), &admin.cert).unwrap();
    std::fs::write(dir.join("admin.key"), &admin.key).unwrap();
    let manifest = serde_json::json!({
        "packages": { "pod": { "tee": "sample" }, "other": { "tee": "sgx", "unique_id": "00".repeat(32) } },
        "secrets": {
            "image_kek": { "type": "symmetric-key", "size": 256, "user_defined": true },
            "other_kek": { "type": "symmetric-key", "size": 256, "shared": true }
        },
        "users": { "admin": { "certificate": admin.cert, "roles": ["write"] } },
        "roles": { "write": { "resource_type": "Secrets", "resource_names": ["image_kek"], "actions": ["WriteSecret"] } },
        "kbs": { "resources": {
            "default/image-key/1": { "secret": "image_kek", "packages": ["pod"] },
            "default/other-key/1": { "secret": "other_kek", "packages": ["other"] }
        } }
    });
    assert!(d.set_manifest(&manifest.to_string()).status.success());
    std::fs::write(dir.join("kek.bin"), [0x5a; 32]).unwrap();
    let set = d.cmd(&[
        "secret",
        "set",
        "image_kek",
        "--key-file",
        dir.join("kek.bin").to_str().unwrap(),
        "--cert",
        dir.join("admin.pem").to_str().unwrap(),
        "--key",
        dir.join("admin.key").to_str().unwrap(),
    ]);
    assert!(set.status.success(), "{}", stderr(&set));

    let small = Layer::new()
        .file("app/config", 0o644, b"confidential\n")
        .finish();
    layout(&dir.join("clear"), "app", vec![(small, Compression::Zstd)]);
    let encrypt = |recipient: &str, destination: &str| {
        ok(cloister(
            &dir,
            &[
                "image",
                "encrypt",
                "--recipient",
                recipient,
                "--kek",
                "kek.bin",
                "oci:clear:app",
                destination,
            ],
        ))
    };
    encrypt("kbs:///default/image-key/1", "oci:kbs-enc:app");
    let inspect = json(&ok(cloister(
        &dir,
        &["image", "inspect", "oci:kbs-enc:app", "-o", "json"],
    )));
    assert_eq!(
        inspect["broker_keys"],
        serde_json::json!(["kbs:///default/image-key/1"])
    );

    let root = dir.join("root.pem").display().to_string();
    let pull = |image: &str, dest: &str, simulation: Option<&str>| {
        let mut args = vec!["image", "pull", image, "--dest", dest];
        if let Some(tee) = simulation {
            args.extend([
                "--kbs",
                d.url.as_str(),
                "--root-ca",
                root.as_str(),
                "--simulation",
                tee,
            ]);
        }
        cloister(&dir, &args)
    };
    // Attested as the package the manifest names: the broker releases the key.
    ok(pull("oci:kbs-enc:app", "opened", Some("sample")));
    assert_eq!(
        std::fs::read(dir.join("opened/rootfs/app/config")).unwrap(),
        b"confidential\n"
    );
    // Without attestation nothing opens, and the error says how to.
    let out = pull("oci:kbs-enc:app", "unattested", None);
    assert!(stderr(&out).contains("pull with --kbs"), "{}", stderr(&out));
    // A key the manifest gives another package is not released to this one.
    encrypt("kbs:///default/other-key/1", "oci:other-enc:app");
    let out = pull("oci:other-enc:app", "refused", Some("sample"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("default/other-key/1"),
        "{}",
        stderr(&out)
    );
    for dest in ["unattested", "refused"] {
        assert!(!dir.join(dest).exists());
    }
}

/// A GPG key in its own home: (home, fingerprint, exported public keyring path).
fn gpg_key(dir: &Path, name: &str) -> (PathBuf, String, PathBuf) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg (.ci/run installs it)");
        assert!(out.status.success(), "gpg {args:?}: {}", stderr(&out));
        out
    };
    gpg(&[
        "--quick-gen-key",
        &format!("{name} <{name}@example.com>"),
        "ed25519",
        "sign",
        "never",
    ]);
    let listing = String::from_utf8(gpg(&["--list-keys", "--with-colons"]).stdout).unwrap();
    let fingerprint = listing
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .unwrap();
    let keyring = dir.join(format!("{name}.gpg"));
    std::fs::write(&keyring, gpg(&["--export", &fingerprint]).stdout).unwrap();
    (home, fingerprint, keyring)
}

/// Sign `manifest_digest` for `identity` the way containers/image and cosign store sigstore
/// signatures: the payload as a layer of `sha256-<hex>.sig`, its ECDSA signature (openssl,
/// over SHA-256 of the payload) in the layer's annotation.
fn sigstore_sign(
    dir: &Path,
    registry: &Registry,
    repository: &str,
    manifest_digest: &str,
    identity: &str,
    key: &str,
) {
    let payload = serde_json::json!({
        "critical": {
            "identity": { "docker-reference": identity },
            "image": { "docker-manifest-digest": manifest_digest },
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string();
    std::fs::write(dir.join("payload.json"), &payload).unwrap();
    let signature = tool(
        dir,
        "openssl",
        &["dgst", "-sha256", "-sign", key, "payload.json"],
    )
    .stdout;
    use base64::Engine as _;
    let annotation = base64::engine::general_purpose::STANDARD.encode(signature);
    let payload_digest = registry.push_blob(repository, payload.as_bytes());
    let config =
        serde_json::json!({ "rootfs": { "type": "layers", "diff_ids": [payload_digest] } })
            .to_string();
    let config_digest = registry.push_blob(repository, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": { "dev.cosignproject.cosign/signature": annotation }
        }],
    })
    .to_string();
    let tag = manifest_digest.replacen(':', "-", 1) + ".sig";
    let (status, _, body) = registry.http(
        "PUT",
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn signatures_are_checked_by_the_policy_before_anything_is_unpacked() {
    let dir = scratch("image-signatures");
    keys(&dir);
    app_image(&dir.join("clear"), "app");
    let registry = Registry::start(&dir);
    let at = |tag: &str| format!("docker://{}/team/app:{tag}", registry.addr);
    let (home, fingerprint, keyring) = gpg_key(&dir, "signer");
    let (_, _, stranger) = gpg_key(&dir, "stranger");
    std::fs::create_dir_all(dir.join("registries.d")).unwrap();
    std::fs::write(
        dir.join("registries.d/default.yaml"),
        format!(
            "default-docker:\n  lookaside: file://{}/lookaside\n",
            dir.display()
        ),
    )
    .unwrap();
    let skopeo = |args: &[&str]| {
        Command::new("skopeo")
            .env("GNUPGHOME", &home)
            .arg("--registries.d")
            .arg(dir.join("registries.d"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    assert!(
        ok(skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--sign-by",
            &fingerprint,
            "oci:clear:app",
            &at("signed")
        ]))
        .status
        .success()
    );
    let small = Layer::new().file("hello", 0o644, b"unsigned\n").finish();
    layout(&dir.join("other"), "app", vec![(small, Compression::Gzip)]);
    ok(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "oci:other:app",
        &at("unsigned"),
    ]));

    let policy = |name: &str, requirement: serde_json::Value| {
        let text = serde_json::json!({
            "default": [{ "type": "reject" }],
            "transports": { "docker": { format!("{}/team", registry.addr): [requirement] } }
        });
        std::fs::write(dir.join(name), text.to_string()).unwrap();
    };
    policy(
        "gpg.json",
        serde_json::json!({ "type": "signedBy", "keyType": "GPGKeys", "keyPath": keyring }),
    );
    policy(
        "stranger.json",
        serde_json::json!({ "type": "signedBy", "keyType": "GPGKeys", "keyPath": stranger }),
    );
    let pull = |image: &str, dest: &str, policy: &str| {
        cloister(
            &dir,
            &[
                "image",
                "pull",
                image,
                "--dest",
                dest,
                "--policy",
                policy,
                "--registries-d",
                "registries.d",
            ],
        )
    };
    let refused = |out: Output, why: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(why),
            "wanted {why:?}: {}",
            stderr(&out)
        );
    };

    // Signed by the policy's key: accepted, by us and by skopeo.
    let out = ok(pull(&at("signed"), "signed", "gpg.json"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("signed by GPG key {fingerprint}"))
    );
    let skopeo_verdict = |image: &str, policy: &str| {
        skopeo(&[
            "--policy",
            policy,
            "copy",
            "--src-tls-verify=false",
            image,
            &format!(
                "dir:{}",
                dir.join(format!("skopeo-{}", policy.len() + image.len()))
                    .display()
            ),
        ])
        .status
        .success()
    };
    assert!(skopeo_verdict(&at("signed"), "gpg.json"));
    // Unsigned, signed by someone else, or a signature of another manifest: refused, and
    // skopeo agrees; nothing is unpacked.
    refused(
        pull(&at("unsigned"), "unsigned", "gpg.json"),
        "a signature is required, but the image has none",
    );
    assert!(!skopeo_verdict(&at("unsigned"), "gpg.json"));
    refused(
        pull(&at("signed"), "stranger", "stranger.json"),
        "no key of the policy made this signature",
    );
    assert!(!skopeo_verdict(&at("signed"), "stranger.json"));
    let digest = |tag: &str| {
        json(&ok(cloister(
            &dir,
            &[
                "image",
                "inspect",
                &at(tag),
                "-o",
                "json",
                "--policy",
                "accept.json",
            ],
        )))["manifest_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (signed, unsigned) = (digest("signed"), digest("unsigned"));
    let store = |d: &str| dir.join(format!("lookaside/team/app@sha256={}", &d[7..]));
    std::fs::create_dir_all(store(&unsigned)).unwrap();
    std::fs::copy(
        store(&signed).join("signature-1"),
        store(&unsigned).join("signature-1"),
    )
    .unwrap();
    refused(
        pull(&at("unsigned"), "moved", "gpg.json"),
        "is for manifest",
    );
    assert!(!skopeo_verdict(&at("unsigned"), "gpg.json"));
    // Without a policy, nothing is pulled, and the error says what to give.
    refused(
        cloister(
            &dir,
            &[
                "image",
                "pull",
                &at("signed"),
                "--dest",
                "none",
                "--policy",
                "/dev/null",
            ],
        ),
        "signature policy",
    );
    for dest in ["unsigned", "stranger", "moved"] {
        assert!(!dir.join(dest).exists());
    }

    // Sigstore: cosign's layout, signed with an EC key; the key and the identity decide.
    sigstore_sign(
        &dir,
        &registry,
        "team/app",
        &unsigned,
        &format!("{}/team/app", registry.addr),
        "ec.pem",
    );
    policy(
        "sigstore.json",
        serde_json::json!({ "type": "sigstoreSigned", "keyPath": "ec.pub.pem", "signedIdentity": { "type": "matchRepository" } }),
    );
    policy(
        "sigstore-other.json",
        serde_json::json!({ "type": "sigstoreSigned", "keyPath": "other.pub.pem", "signedIdentity": { "type": "matchRepository" } }),
    );
    policy(
        "sigstore-exact.json",
        serde_json::json!({ "type": "sigstoreSigned", "keyPath": "ec.pub.pem" }),
    );
    ok(pull(&at("unsigned"), "sigstore", "sigstore.json"));
    let inspect = |tag: &str| {
        let args = [
            "image",
            "inspect",
            &at(tag),
            "--registries-d",
            "registries.d",
            "--policy",
            "sigstore.json",
            "-o",
            "json",
        ];
        json(&ok(cloister(&dir, &args)))
    };
    let signed_view = inspect("signed");
    assert_eq!(
        signed_view["signatures"],
        serde_json::json!({ "simple": 1, "sigstore": 0 })
    );
    assert_eq!(signed_view["policy"]["accepted"], false);
    let unsigned_view = inspect("unsigned");
    assert_eq!(
        unsigned_view["signatures"],
        serde_json::json!({ "simple": 1, "sigstore": 1 })
    );
    assert_eq!(unsigned_view["policy"]["accepted"], true);
    refused(
        pull(&at("unsigned"), "sigstore-other", "sigstore-other.json"),
        "does not verify with the policy's key",
    );
    // cosign signs the repository only: the default identity needs a tag or digest.
    refused(
        pull(&at("unsigned"), "sigstore-exact", "sigstore-exact.json"),
        "is not accepted for",
    );
    refused(
        pull(&at("signed"), "sigstore-none", "sigstore.json"),
        "a signature is required",
    );
}

#[test]
fn the_manifest_gives_a_workload_its_image_policy() {
    let d = Deployment::start("image-policy");
    d.verify();
    let dir = d.dir.clone();
    app_image(&dir.join("trusted"), "app");
    let small = Layer::new().file("x", 0o644, b"x\n").finish();
    layout(
        &dir.join("untrusted"),
        "app",
        vec![(small, Compression::None)],
    );
    let policy = serde_json::json!({
        "default": [{ "type": "reject" }],
        "transports": { "oci": { dir.join("trusted").display().to_string(): [{ "type": "insecureAcceptAnything" }] } }
    });
    let manifest = |policy: &serde_json::Value| {
        serde_json::json!({
            "packages": { "app": { "tee": "sgx", "unique_id": super::mrenclave() } },
            "workloads": { "puller": { "package": "app", "image_policy": policy } }
        })
        .to_string()
    };
    // A policy the manifest cannot hold is refused where it stands.
    let bad = d.set_manifest(&manifest(
        &serde_json::json!({ "default": [{ "type": "bogus" }] }),
    ));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("workloads.puller.image_policy"),
        "{}",
        stderr(&bad)
    );
    assert!(d.set_manifest(&manifest(&policy)).status.success());

    // In the attested workload, `image pull` takes the manifest's policy by itself.
    let bin = env!("CARGO_BIN_EXE_cloister");
    let script = format!(
        "{bin} image pull oci:{d}/trusted:app --dest {d}/pulled && \
         {bin} image pull oci:{d}/untrusted:app --dest {d}/refused",
        d = dir.display()
    );
    let out = d.launch("puller", &[], &script);
    assert!(!out.status.success(), "the second pull must be refused");
    assert!(
        dir.join("pulled/rootfs/etc/passwd").exists(),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("rejects it"), "{}", stderr(&out));
    assert!(!dir.join("refused").exists());
}

/// A layer holding this machine's `/bin/sh` and the libraries it loads: enough to run a
/// program in an image's root.
fn shell_layer() -> Vec<u8> {
    let mut layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/marker", 0o644, b"in the image\n");
    let ldd = String::from_utf8(tool(Path::new("/"), "ldd", &["/bin/sh"]).stdout).unwrap();
    let mut files = vec!["/bin/sh".to_string()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(str::to_string),
    );
    for file in files {
        let data = std::fs::read(&file).unwrap();
        layer = layer.file(file.trim_start_matches('/'), 0o755, &data);
    }
    layer.finish()
}

#[test]
fn launch_runs_a_pulled_image_with_its_defaults_and_the_workloads_files() {
    let d = Deployment::start("image-launch");
    d.verify();
    let dir = d.dir.clone();
    let script = "read -r line < \"$CLOISTER_ROOT_CA_FILE\"; read -r marker < /etc/marker; \
                  echo \"$marker|$IMAGE_VAR|$MANIFEST_VAR|$line\"";
    layout_with(
        &dir.join("runnable"),
        "app",
        vec![(shell_layer(), Compression::Gzip)],
        serde_json::json!({ "Entrypoint": ["/bin/sh", "-c"], "Cmd": [script], "Env": ["IMAGE_VAR=from the image", "MANIFEST_VAR=overridden"] }),
    );
    ok(cloister(
        &dir,
        &["image", "pull", "oci:runnable:app", "--dest", "bundle"],
    ));
    let manifest = serde_json::json!({
        "packages": { "app": { "tee": "sgx", "unique_id": super::mrenclave() } },
        "workloads": { "runner": { "package": "app", "parameters": { "env": { "MANIFEST_VAR": "from the manifest" } } } }
    });
    assert!(d.set_manifest(&manifest.to_string()).status.success());
    let bundle = dir.join("bundle").display().to_string();
    let out = ok(d.cmd(&[
        "launch",
        "--simulation",
        "--workload",
        "runner",
        "--bundle",
        &bundle,
    ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "in the image|from the image|from the manifest|-----BEGIN CERTIFICATE-----"
    );
    assert!(dir.join("bundle/rootfs/cloister/workload-key.pem").exists());
}

/// A token service for a registry with `auth: token`: it issues an ES256 JWT (its certificate
/// in `x5c`) granting the requested scope, to a client with the right basic credentials only.
struct TokenService {
    realm: String,
    bundle: PathBuf,
}

impl TokenService {
    fn start(dir: &Path, user: &'static str, password: &'static str) -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["token-issuer".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = dir.join("token-root.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        let x5c = STANDARD.encode(cert.der());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n")
                    && std::io::Read::read(&mut stream, &mut byte).unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                    })
                });
                let query = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                let scope = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("scope="))
                    .map(|s| {
                        s.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ",")
                    })
                    .unwrap_or_default();
                let response = if !authorized {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else {
                    let mut parts = scope.splitn(3, ':');
                    let (_, name, actions) = (
                        parts.next(),
                        parts.next().unwrap_or_default(),
                        parts.next().unwrap_or_default(),
                    );
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [x5c] });
                    let claims = serde_json::json!({
                        "iss": "test-issuer", "sub": user, "aud": "test-registry",
                        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{name}"),
                        "access": [{ "type": "repository", "name": name, "actions": actions.split(',').collect::<Vec<_>>() }]
                    });
                    let signing_input = format!(
                        "{}.{}",
                        URL_SAFE_NO_PAD.encode(header.to_string()),
                        URL_SAFE_NO_PAD.encode(claims.to_string())
                    );
                    let signature = signer.sign(&rng, signing_input.as_bytes()).unwrap();
                    let token = format!(
                        "{signing_input}.{}",
                        URL_SAFE_NO_PAD.encode(signature.as_ref())
                    );
                    let body =
                        serde_json::json!({ "token": token, "access_token": token }).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = std::io::Write::write_all(&mut stream, response.as_bytes());
            }
        });
        Self { realm, bundle }
    }
}

#[test]
fn registries_with_token_auth_need_the_credentials() {
    let dir = scratch("image-token");
    keys(&dir);
    app_image(&dir.join("clear"), "app");
    let tokens = TokenService::start(&dir, "alice", "s3cret");
    let registry = Registry::start_with(
        &dir,
        &format!(
            "auth:\n  token:\n    realm: {}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
            tokens.realm,
            tokens.bundle.display()
        ),
    );
    let at = |tag: &str| format!("docker://{}/team/app:{tag}", registry.addr);
    tool(
        &dir,
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            "oci:clear:app",
            &at("clear"),
        ],
    );
    // Without credentials the token service refuses, and the error says what to give.
    let out = cloister(&dir, &["image", "inspect", &at("clear")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--creds"), "{}", stderr(&out));
    // With them: a pull token, then a push token for encrypting into the same repository.
    let creds = ["--creds", "alice:s3cret"];
    ok(cloister(
        &dir,
        &[
            &[
                "image",
                "encrypt",
                "--recipient",
                "jwe:ec.pub.pem",
                &at("clear"),
                &at("enc"),
            ][..],
            &creds,
        ]
        .concat(),
    ));
    ok(cloister(
        &dir,
        &[
            &[
                "image",
                "pull",
                &at("enc"),
                "--dest",
                "pulled",
                "--decryption-key",
                "ec.pem",
            ][..],
            &creds,
        ]
        .concat(),
    ));
    assert!(dir.join("pulled/rootfs/etc/passwd").exists());
}
