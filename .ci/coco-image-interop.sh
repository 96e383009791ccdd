#!/usr/bin/env bash
# Interop: an image encrypted by `cloister image encrypt` for a key held by cloister's key broker
# (kbs:///default/image-key/1), pulled and decrypted by upstream CoCo confidential-data-hub / image-rs
# (`cdh-oneshot pull-image`), the KEK coming from the broker through attestation-agent (sample TEE).
#
# cdh-oneshot (guest-components 8246e5e0, features bin,kbs) pulls with image-rs, whose ocicrypt-rs has
# only the *ttrpc* key-provider client compiled in and no KeyProvider listener of its own, so something
# must serve keyprovider.KeyProviderService/UnWrapKey on a unix socket (what ttrpc-cdh does in a real
# guest). This script runs a 150-line stdlib-python ttRPC shim that forwards each UnWrapKey to
# `cdh-oneshot unwrap-key` (upstream CDH code: AnnotationPacket -> KBS resource via AA -> AES-GCM unwrap)
# and points OCICRYPT_KEYPROVIDER_CONFIG at it. A real guest runs ttrpc-cdh, which serves that service.
#
# usage: coco-image-interop.sh CLOISTER_BIN SHARED_TOOLS_DIR
#   SHARED_TOOLS_DIR holds coco-guest/{bin,examples}.
# Needs: root (AA writes /run/confidential-containers; image-rs mounts overlayfs), bash, openssl,
# python3 (stdlib), docker-registry, skopeo. KEEP=1 keeps the work directory.
# Prints one PASS/FAIL line per check; exits 1 if any check failed, 2 on setup failure.
set -uo pipefail

[ $# -eq 2 ] || { echo "usage: $0 CLOISTER_BIN SHARED_TOOLS_DIR" >&2; exit 2; }
CLOISTER=$(readlink -f "$1")
TOOLS=$(readlink -f "$2")
GUEST=$TOOLS/coco-guest
CDH=$GUEST/bin/cdh-oneshot
for f in "$CLOISTER" "$GUEST/bin/ttrpc-aa" "$CDH" "$GUEST/examples/mkconf.sh"; do
  [ -x "$f" ] || { echo "missing executable: $f" >&2; exit 2; }
done
for c in openssl python3 docker-registry skopeo mount umount; do
  command -v "$c" > /dev/null || { echo "missing command: $c" >&2; exit 2; }
done

W=$(mktemp -d /tmp/cloister-cdh-image.XXXXXX)
REG_PID="" COORD_PID="" AA_PID="" SHIM_PID=""
cleanup() {
  local rc=$? m
  # image-rs leaves each bundle's rootfs overlay-mounted: unmount everything under $W (deepest first).
  for m in $(awk -v w="$W/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for p in $SHIM_PID $AA_PID $COORD_PID $REG_PID; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    echo "work directory kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "SETUP FAILED: $*" >&2; exit 2; }
log() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }
unset AA_KBC_PARAMS AA_SOCKET KBS_CERT OCICRYPT_KEYPROVIDER_CONFIG   # they would override CDH's config
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cd "$W" || die "work dir"
[ -d /run/confidential-containers ] || mkdir -p /run/confidential-containers 2>/dev/null
[ -w /run/confidential-containers ] || die "attestation-agent needs write access to /run/confidential-containers (run as root)"

# --- registry (plain HTTP on loopback) ------------------------------------------------------------
REG_PORT=$(free_port); REG=127.0.0.1:$REG_PORT
cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: $REG
EOF
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/', timeout=1)" 2>/dev/null && break
  kill -0 "$REG_PID" 2>/dev/null || die "docker-registry exited: $(tail -3 "$W/registry.log")"
  sleep 0.2
done

# --- coordinator (simulation) + manifest + the KEK as a user-defined secret -----------------------
mkdir -p "$W/keys"; K=$W/keys
{
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/user-key.pem" &&
  openssl req -x509 -new -key "$K/user-key.pem" -subj /CN=admin -days 2 -out "$K/user.pem" &&
  head -c 32 /dev/urandom > "$K/kek.bin" &&
  head -c 32 /dev/urandom > "$K/wrong-kek.bin"
} > "$W/openssl.log" 2>&1 || die "openssl (see $W/openssl.log)"
KEK_B64=$(base64 -w0 < "$K/kek.bin")

export CLOISTER_SIM_DIR=$W/sim
CLOISTER_LOG=info "$CLOISTER" coordinator serve --simulation --listen 127.0.0.1:0 \
  --data-dir "$W/data" > "$W/coordinator.out" 2> "$W/coordinator.err" &
COORD_PID=$!
URL=""
for _ in $(seq 1 120); do
  URL=$(sed -n 's/^listening on \(https:\/\/[^ ]*\).*/\1/p' "$W/coordinator.out" | head -1)
  [ -n "$URL" ] && break
  kill -0 "$COORD_PID" 2>/dev/null || die "coordinator exited: $(log "$W/coordinator.err" | tail -5)"
  sleep 0.5
done
[ -n "$URL" ] || die "coordinator did not print its address"
export CLOISTER_COORDINATOR=$URL CLOISTER_ROOT_CA=$W/root.pem
"$CLOISTER" verify --accept-simulation --save-root "$W/root.pem" > "$W/verify.log" 2>&1 ||
  die "cloister verify: $(tail -3 "$W/verify.log")"
python3 - "$K" > "$W/manifest.json" <<'PY' || die "manifest"
import json, sys
k = sys.argv[1]
print(json.dumps({
  "packages": {"pod": {"tee": "sample"}},
  "secrets": {"image_kek": {"type": "symmetric-key", "size": 256, "user_defined": True}},
  "users": {"admin": {"certificate": open(f"{k}/user.pem").read(), "roles": ["writer"]}},
  "roles": {"writer": {"resource_type": "Secrets", "resource_names": ["image_kek"], "actions": ["WriteSecret"]}},
  "kbs": {"resources": {"default/image-key/1": {"secret": "image_kek", "packages": ["pod"]}}}
}, indent=1))
PY
"$CLOISTER" manifest set "$W/manifest.json" > "$W/manifest.log" 2>&1 || die "manifest set: $(cat "$W/manifest.log")"
"$CLOISTER" secret set image_kek --key-file "$K/kek.bin" --cert "$K/user.pem" --key "$K/user-key.pem" \
  > "$W/secret.log" 2>&1 || die "secret set: $(cat "$W/secret.log")"

# --- a clear two-layer image (gzip + plain tar layers) and the expected rootfs ---------------------
python3 - "$W/clear" "$W/expected" <<'PY' || die "building the clear image"
import gzip, hashlib, io, json, os, sys, tarfile
out, expected = sys.argv[1:]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{h}", "wb").write(b)
    return "sha256:" + h, len(b)
def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name); ti.mtime = 0; ti.mode = mode; ti.uid = ti.gid = 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; t.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE; ti.linkname = data; t.addfile(ti)
            else:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
big = os.urandom(300 * 1024)   # several AES-CTR/HMAC chunks
l1 = layer([("hello.txt", "file", b"hello from layer 1\n", 0o644),
            ("etc", "dir", None, 0o755), ("etc/app.conf", "file", b"answer = 42\n", 0o600),
            ("bin", "dir", None, 0o755), ("bin/data.bin", "file", big, 0o755),
            ("data-link", "link", "bin/data.bin", 0o777)])
l2 = layer([("hello.txt", "file", b"hello from layer 2 (overrides layer 1)\n", 0o644),
            ("etc", "dir", None, 0o755), ("etc/extra.txt", "file", b"added by layer 2\n", 0o644)])
l1gz = gzip.compress(l1, mtime=0)
d1, s1 = put(l1gz); d2, s2 = put(l2)
diff_ids = ["sha256:" + hashlib.sha256(l1).hexdigest(), "sha256:" + hashlib.sha256(l2).hexdigest()]
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}}).encode()
cd, cs = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d1, "size": s1},
             {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2, "size": s2}]}).encode()
md, ms = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
  "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
  open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
os.makedirs(expected)
for l in (l1, l2):   # apply the layers in order (no whiteouts in this image)
    with tarfile.open(fileobj=io.BytesIO(l)) as t:
        t.extractall(expected, numeric_owner=True)
PY
# compare_tree EXPECTED ACTUAL: same paths, types, modes, contents, symlink targets.
compare_tree() {
  python3 - "$1" "$2" <<'PY'
import os, stat, sys
def scan(root):
    res = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n); st = os.lstat(p); rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode): res[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode): res[rel] = ("dir", oct(st.st_mode & 0o7777))
            else: res[rel] = ("file", oct(st.st_mode & 0o7777), open(p, "rb").read())
    return res
a, b = scan(sys.argv[1]), scan(sys.argv[2])
bad = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
for k in bad[:5]:
    print(f"differs: {k}: expected {str(a.get(k))[:60]} got {str(b.get(k))[:60]}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

skopeo copy --dest-tls-verify=false oci:"$W/clear":latest docker://$REG/app:clear > "$W/skopeo.log" 2>&1 ||
  die "skopeo push: $(tail -3 "$W/skopeo.log")"
enc() { "$CLOISTER" image encrypt --recipient "$1" --kek "$2" docker://$REG/app:clear "docker://$REG/app:$3" \
          > "$W/encrypt-$3.log" 2>&1 || die "cloister image encrypt $3: $(tail -3 "$W/encrypt-$3.log")"; }
enc kbs:///default/image-key/1 "$K/kek.bin" enc           # the real thing
enc kbs:///default/image-key/1 "$K/wrong-kek.bin" wrongkek # right kid, KEK the broker does not hold
enc kbs:///default/image-key/2 "$K/kek.bin" nokey          # kid the manifest does not map

# --- guest side: AA, the ttRPC key-provider shim, CDH config ---------------------------------------
"$GUEST/examples/mkconf.sh" "$URL" "$W/root.pem" "$W/guest" > "$W/mkconf.log" 2>&1 || die "mkconf.sh"
RUST_LOG=info "$GUEST/bin/ttrpc-aa" -c "$W/guest/aa.toml" -a "unix://$W/guest/run/aa.sock" > "$W/aa.log" 2>&1 &
AA_PID=$!
for _ in $(seq 1 50); do [ -S "$W/guest/run/aa.sock" ] && break; sleep 0.2; done
[ -S "$W/guest/run/aa.sock" ] || die "ttrpc-aa did not create its socket: $(log "$W/aa.log" | tail -3)"

# cdh.toml for pulling: mkconf's [kbc]/[aa] plus [image] (own work_dir; plain-HTTP registry; an
# explicit accept-anything policy: image-rs needs the "transports" key, else InvalidPolicyFile).
mkcdh() {  # mkcdh WORK_DIR > FILE
  cat "$W/guest/cdh.toml"
  cat <<EOF

[image]
work_dir = "$1"
image_security_policy = '{"default":[{"type":"insecureAcceptAnything"}],"transports":{}}'

[[image.registry_config.registry]]
location = "$REG"
insecure = true
EOF
}
mkcdh "$W/image-rs" > "$W/guest/cdh-pull.toml"

cat > "$W/kp-shim.py" <<'PY'
# ttRPC keyprovider.KeyProviderService/UnWrapKey server (stdlib only) standing in for ttrpc-cdh's
# KeyProvider listener; the unwrap itself is `cdh-oneshot -c CDH_TOML unwrap-key -a PACKET`, i.e. the
# Hub::unwrap_key ttrpc-cdh calls. usage: kp-shim.py SOCKET CDH_ONESHOT CDH_TOML
import base64, json, os, re, socketserver, struct, subprocess, sys, tempfile
SOCK, CDH, CDH_TOML = sys.argv[1:4]
def log(*a): print("kp-shim:", *a, file=sys.stderr, flush=True)
def varint(n):
    out = bytearray(); n &= (1 << 64) - 1
    while True:
        b = n & 0x7F; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]; i += 1; n |= (b & 0x7F) << shift; shift += 7
        if not b & 0x80: return n, i
def parse(buf):   # protobuf -> {field: [values]}
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i); num, wt = key >> 3, key & 7
        if wt == 0: v, i = read_varint(buf, i)
        elif wt == 2: ln, i = read_varint(buf, i); v, i = buf[i:i + ln], i + ln
        elif wt == 1: v, i = buf[i:i + 8], i + 8
        elif wt == 5: v, i = buf[i:i + 4], i + 4
        else: raise ValueError(f"wire type {wt}")
        fields.setdefault(num, []).append(v)
    return fields
def ld(num, data): return varint(num << 3 | 2) + varint(len(data)) + data
def response(code, message, payload):   # ttrpc Response{Status status=1{code=1,message=2}; bytes payload=2}
    status = (varint(1 << 3) + varint(code) if code else b"") + (ld(2, message.encode()) if message else b"")
    return ld(1, status) + (ld(2, payload) if payload else b"")
def unwrap(req_payload):
    inp = json.loads(parse(req_payload).get(1, [b"{}"])[0])   # KeyProviderKeyWrapProtocolInput JSON
    if inp.get("op") != "keyunwrap": raise ValueError(f"op {inp.get('op')!r} not supported")
    packet = base64.b64decode(inp["keyunwrapparams"]["annotation"])   # the CoCo AnnotationPacket
    log("UnWrapKey kid", json.loads(packet).get("kid"))
    with tempfile.NamedTemporaryFile(prefix="kp-packet.", suffix=".json") as f:
        f.write(packet); f.flush()
        p = subprocess.run([CDH, "-r", "1", "-c", CDH_TOML, "unwrap-key", "-a", f.name],
                           capture_output=True, env=dict(os.environ, RUST_LOG="warn"), timeout=120)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in p.stdout.decode(errors="replace").splitlines() if l.strip()]
    if p.returncode != 0:
        why = [l for l in lines if "failed" in l][:1] or p.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"cdh-oneshot unwrap-key rc={p.returncode}: {' '.join(why)[:300]}")
    optsdata = base64.b64decode(lines[-1])
    out = json.dumps({"keyunwrapresults": {"optsdata": list(optsdata)}}).encode()   # as ttrpc-cdh replies
    return ld(1, out)
class Handler(socketserver.BaseRequestHandler):
    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            c = self.request.recv(n - len(buf))
            if not c: return None
            buf += c
        return buf
    def handle(self):
        while True:
            hdr = self.recv_exact(10)   # ttrpc header: length u32, stream id u32, type u8, flags u8
            if hdr is None: return
            length, stream, mtype, _ = struct.unpack(">IIBB", hdr)
            body = self.recv_exact(length)
            if body is None: return
            if mtype != 1: continue
            req = parse(body)   # Request{service=1, method=2, payload=3, timeout_nano=4, metadata=5}
            svc, meth = req.get(1, [b""])[0].decode(), req.get(2, [b""])[0].decode()
            if (svc, meth) == ("keyprovider.KeyProviderService", "UnWrapKey"):
                try: out = response(0, "", unwrap(req.get(3, [b""])[0])); log("UnWrapKey ok")
                except Exception as e: log("UnWrapKey failed:", e); out = response(13, f"[kp-shim] {e}", b"")
            else:
                out = response(5, f"/{svc}/{meth} is not supported", b"")
            self.request.sendall(struct.pack(">IIBB", len(out), stream, 2, 0) + out)
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer): daemon_threads = True
if os.path.exists(SOCK): os.unlink(SOCK)
with Server(SOCK, Handler) as srv:
    log("listening on", SOCK); srv.serve_forever()
PY
python3 "$W/kp-shim.py" "$W/guest/run/kp.sock" "$CDH" "$W/guest/cdh-pull.toml" > "$W/kp-shim.log" 2>&1 &
SHIM_PID=$!
for _ in $(seq 1 50); do [ -S "$W/guest/run/kp.sock" ] && break; sleep 0.1; done
[ -S "$W/guest/run/kp.sock" ] || die "key-provider shim did not start: $(tail -3 "$W/kp-shim.log")"
printf '{"key-providers":{"attestation-agent":{"ttrpc":"unix://%s"}}}\n' "$W/guest/run/kp.sock" > "$W/ocicrypt.json"

# --- checks ---------------------------------------------------------------------------------------
FAILED=0 N=0
pass() { printf 'PASS  %-60s %s\n' "$1" "$2"; }
fail() {
  FAILED=$((FAILED + 1)); printf 'FAIL  %-60s %s\n' "$1" "$2"
  [ -n "${3:-}" ] && [ -s "$3" ] && log "$3" | grep -v '^ *[0-9]*: \|^ *at \|^\s*$\|^note:\|backtrace' | tail -8 | sed 's/^/      | /'
  log "$W/coordinator.err" | grep -i 'refused\|error' | tail -2 | sed 's/^/      coordinator| /'
}
# cdh_pull CONFIG IMAGE BUNDLE [OCICRYPT_CONFIG]: runs cdh-oneshot pull-image, output in $W/flowN.log
cdh_pull() {
  N=$((N + 1)); LAST=$W/flow$N.log
  if [ -n "${4:-}" ]; then export OCICRYPT_KEYPROVIDER_CONFIG=$4; else unset OCICRYPT_KEYPROVIDER_CONFIG; fi
  RUST_LOG=info timeout 180 "$CDH" -c "$1" pull-image -i "$2" -b "$3" > "$LAST" 2>&1; local rc=$?
  unset OCICRYPT_KEYPROVIDER_CONFIG
  return $rc
}

# 1. cloister's own pull of the encrypted image (the broker side is right).
N=$((N + 1))
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/accept.json"
if "$CLOISTER" image pull "docker://$REG/app:enc" --dest "$W/cloister-pull" --kbs "$URL" --root-ca "$W/root.pem" \
     --simulation sample --policy "$W/accept.json" > "$W/flow$N.log" 2>&1; then
  if compare_tree "$W/expected" "$W/cloister-pull/rootfs" 2>> "$W/flow$N.log"; then
    pass "1 cloister image pull app:enc, rootfs == clear image" "ok"
  else fail "1 cloister image pull app:enc, rootfs == clear image" "rootfs differs" "$W/flow$N.log"; fi
else fail "1 cloister image pull app:enc" "rc=$?" "$W/flow$N.log"; fi

# 2. CDH fetches the KEK from the broker through AA.
N=$((N + 1))
got=$(RUST_LOG=off timeout 120 "$CDH" -c "$W/guest/cdh-pull.toml" get-resource \
        --resource-uri kbs:///default/image-key/1 2> "$W/flow$N.log" | tr -d '[:space:]')
if [ "$got" = "$KEK_B64" ]; then pass "2 CDH get-resource kbs:///default/image-key/1 == KEK" "$got"
else fail "2 CDH get-resource kbs:///default/image-key/1 == KEK" "got '${got:0:60}'" "$W/flow$N.log"; fi

# 3. Without OCICRYPT_KEYPROVIDER_CONFIG cdh-oneshot registers no key provider and cannot decrypt.
mkcdh "$W/image-rs-nokp" > "$W/guest/cdh-nokp.toml"
if cdh_pull "$W/guest/cdh-nokp.toml" "$REG/app:enc" "$W/bundle-nokp"; then
  fail "3 cdh-oneshot pull app:enc without a key provider fails" "succeeded?" "$LAST"
elif grep -q "missing private key needed for decryption" "$LAST"; then
  pass "3 cdh-oneshot pull app:enc without a key provider fails" "missing private key needed for decryption"
else fail "3 cdh-oneshot pull app:enc without a key provider fails" "failed for another reason" "$LAST"; fi

# 4. With the ttRPC key provider: pull, decrypt (KEK from the broker), unpack; rootfs == clear image.
before=$(grep -c 'UnWrapKey ok' "$W/kp-shim.log")
if cdh_pull "$W/guest/cdh-pull.toml" "$REG/app:enc" "$W/bundle" "$W/ocicrypt.json"; then
  unwraps=$(( $(grep -c 'UnWrapKey ok' "$W/kp-shim.log") - before ))
  digest=$(sed -n 's/^image digest: //p' "$LAST")
  if [ "$unwraps" -ne 2 ]; then fail "4 cdh-oneshot pull app:enc" "expected 2 UnWrapKey calls, saw $unwraps" "$W/kp-shim.log"
  elif [ ! -s "$W/bundle/config.json" ]; then fail "4 cdh-oneshot pull app:enc" "no bundle config.json" "$LAST"
  elif compare_tree "$W/expected" "$W/bundle/rootfs" 2>> "$LAST"; then
    pass "4 cdh-oneshot pull app:enc, 2 layers unwrapped, rootfs == clear" "$digest"
  else fail "4 cdh-oneshot pull app:enc, rootfs == clear image" "rootfs differs" "$LAST"; fi
else fail "4 cdh-oneshot pull app:enc" "rc=$?" "$LAST"; fi

# 5. Refusals (each with a fresh image-rs work_dir: image-rs reuses an image already in its store by
#    config digest without fetching any key, and encryption does not change the config digest).
for t in wrongkek nokey; do
  case $t in
    wrongkek) name="5 KEK not the one the broker holds: pull fails"; why="Failed to decrypt the image layer" ;;
    nokey)    name="5 kid the manifest does not map: pull fails";  why="Failed to decrypt the image layer" ;;
  esac
  mkcdh "$W/image-rs-$t" > "$W/guest/cdh-$t.toml"
  if cdh_pull "$W/guest/cdh-$t.toml" "$REG/app:$t" "$W/bundle-$t" "$W/ocicrypt.json"; then
    fail "$name" "succeeded, expected a refusal" "$LAST"
  elif grep -q "$why" "$LAST" && [ ! -e "$W/bundle-$t/rootfs/hello.txt" ]; then
    pass "$name" "refused: $why"
  else fail "$name" "failed, but not for: $why" "$LAST"; fi
done
if log "$W/coordinator.err" | grep -q 'resource default/image-key/2 not found'; then
  pass "5 broker refused default/image-key/2" "resource default/image-key/2 not found"
else fail "5 broker refused default/image-key/2" "no refusal in the coordinator log"; fi

# 6. (information, not a check) image-rs's store: app:nokey (whose key nobody can get) pulled into the
#    work_dir that already holds app:enc (same config digest) is served from the store, no key asked for.
before=$(grep -c 'UnWrapKey kid' "$W/kp-shim.log")
if cdh_pull "$W/guest/cdh-pull.toml" "$REG/app:nokey" "$W/bundle-reuse" "$W/ocicrypt.json"; then
  printf 'INFO  %-60s %s\n' "6 image-rs store reuse: app:nokey pulled from cache" \
    "succeeded with $(( $(grep -c 'UnWrapKey kid' "$W/kp-shim.log") - before )) UnWrapKey calls"
else
  printf 'INFO  %-60s %s\n' "6 image-rs store reuse: app:nokey" "refused (store not reused)"
fi

if [ "$FAILED" -ne 0 ]; then echo "cdh-image interop: $FAILED check(s) FAILED"; exit 1; fi
echo "cdh-image interop: all checks passed"
