#!/usr/bin/env bash
# Interop test: upstream Confidential Containers clients (trustee kbs-client, guest-components
# attestation-agent + confidential-data-hub, from ../shared/tools) against cloister's key broker
# on `coordinator serve --simulation`: cookie flow with RSA, P-256 and P-521 TEE keys, passport
# flow, admin uploads with EdDSA and ES256 JWTs, resource and attestation policies, reference
# values, and CDH fetching through AA.
#
# usage: interop.sh CLOISTER_BIN SHARED_TOOLS_DIR
#   SHARED_TOOLS_DIR holds kbs-client/kbs-client and coco-guest/{bin,examples}.
# Needs: bash, openssl (3.x), python3 (stdlib only); root (attestation-agent writes
# /run/confidential-containers). Set KEEP=1 to keep the work directory.
# Prints one line per flow (PASS/FAIL), exits 1 if any flow failed, 2 on setup failure.
set -uo pipefail

[ $# -eq 2 ] || { echo "usage: $0 CLOISTER_BIN SHARED_TOOLS_DIR" >&2; exit 2; }
CLOISTER=$(readlink -f "$1")
TOOLS=$(readlink -f "$2")
KBS=$TOOLS/kbs-client/kbs-client
GUEST=$TOOLS/coco-guest
for f in "$CLOISTER" "$KBS" "$GUEST/bin/ttrpc-aa" "$GUEST/bin/cdh-oneshot" "$GUEST/examples/mkconf.sh"; do
  [ -x "$f" ] || { echo "missing executable: $f" >&2; exit 2; }
done

W=$(mktemp -d /tmp/cloister-interop.XXXXXX)
COORD_PID="" AA_PID=""
cleanup() {
  local rc=$?
  for p in $AA_PID $COORD_PID; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    echo "work directory kept: $W (coordinator log: $W/coordinator.err)" >&2
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "SETUP FAILED: $*" >&2; exit 2; }
log() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }
unset AA_KBC_PARAMS AA_SOCKET KBS_CERT   # they would override CDH's config

# --- keys -----------------------------------------------------------------------------------
mkdir -p "$W/keys" && cd "$W" || die "work dir"
K=$W/keys
{
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/user-key.pem" &&
  openssl req -x509 -new -key "$K/user-key.pem" -subj /CN=admin -days 2 -out "$K/user.pem" &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/user2-key.pem" &&
  openssl req -x509 -new -key "$K/user2-key.pem" -subj /CN=esadmin -days 2 -out "$K/user2.pem" &&
  openssl genpkey -algorithm ed25519 -out "$K/admin-ed.pem" &&
  openssl pkey -in "$K/admin-ed.pem" -pubout -out "$K/admin-ed.pub" &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/admin-es.pem" &&
  openssl pkey -in "$K/admin-es.pem" -pubout -out "$K/admin-es.pub" &&
  # TEE keys in the forms kbs-client reads: RSA as PKCS#1, EC as PKCS#8 (SEC1 is refused).
  openssl genrsa -traditional -out "$K/tee-rsa.pem" 2048 &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/tee-p256.pem" &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$K/tee-p521.pem" &&
  head -c 32 /dev/urandom > "$K/image_key.bin"
} > "$W/openssl.log" 2>&1 || die "openssl key generation (see $W/openssl.log)"
SECRET_B64=$(base64 -w0 < "$K/image_key.bin")

# An admin JWT (EdDSA or ES256) signed by a user's registered key: mkjwt ALG KEY SUB [EXP_OFFSET]
b64url() { python3 -c 'import sys,base64; sys.stdout.write(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())'; }
mkjwt() {
  local alg=$1 key=$2 sub=$3 off=${4:-600} now h p s
  now=$(date +%s)
  h=$(printf '{"alg":"%s","typ":"JWT"}' "$alg" | b64url)
  p=$(printf '{"sub":"%s","iat":%d,"exp":%d}' "$sub" "$now" $((now + off)) | b64url)
  printf '%s.%s' "$h" "$p" > "$W/jwt.in"
  case $alg in
    EdDSA) s=$(openssl pkeyutl -sign -inkey "$key" -rawin -in "$W/jwt.in" | b64url) ;;
    ES256) s=$(openssl dgst -sha256 -sign "$key" "$W/jwt.in" | python3 -c '
import sys, base64
d = sys.stdin.buffer.read()
def integer(i):
    assert d[i] == 2; n = d[i + 1]; return d[i + 2:i + 2 + n], i + 2 + n
i = 2 if d[1] < 0x80 else 3
r, i = integer(i); s, _ = integer(i)
sig = r.lstrip(b"\0").rjust(32, b"\0") + s.lstrip(b"\0").rjust(32, b"\0")
sys.stdout.write(base64.urlsafe_b64encode(sig).rstrip(b"=").decode())') ;;
  esac
  printf '%s.%s.%s\n' "$h" "$p" "$s"
}

# --- coordinator ----------------------------------------------------------------------------
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
r = lambda p: open(f"{k}/{p}").read()
print(json.dumps({
  "packages": {"pod": {"tee": "sample"}},
  "secrets": {"image_key": {"type": "symmetric-key", "size": 256, "user_defined": True}},
  "users": {
    "admin": {"certificate": r("user.pem"), "public_key": r("admin-ed.pub"), "roles": ["broker", "writer"]},
    "esadmin": {"certificate": r("user2.pem"), "public_key": r("admin-es.pub"), "roles": ["broker"]}},
  "roles": {
    "broker": {"resource_type": "Kbs", "actions": ["WriteResource", "SetPolicy"]},
    "writer": {"resource_type": "Secrets", "resource_names": ["image_key"], "actions": ["WriteSecret"]}},
  "kbs": {"resources": {"default/key/1": {"secret": "image_key", "packages": ["pod"]}}}
}, indent=1))
PY
"$CLOISTER" manifest set "$W/manifest.json" > "$W/manifest.log" 2>&1 || die "manifest set: $(cat "$W/manifest.log")"
"$CLOISTER" secret set image_key --key-file "$K/image_key.bin" --cert "$K/user.pem" \
  --key "$K/user-key.pem" > "$W/secret.log" 2>&1 || die "secret set: $(cat "$W/secret.log")"

# --- flows ----------------------------------------------------------------------------------
FAILED=0 N=0
kc() { timeout 120 "$KBS" --url "$URL" --cert-file "$W/root.pem" "$@"; }
pass() { printf 'PASS  %-52s %s\n' "$1" "$2"; }
fail() {
  FAILED=$((FAILED + 1)); printf 'FAIL  %-52s %s\n' "$1" "$2"
  [ -n "${3:-}" ] && [ -s "$3" ] && log "$3" | grep -v '^ *[0-9]*: \|^ *at \|^\s*$' | tail -6 | sed 's/^/      | /'
  log "$W/coordinator.err" | grep -i 'refused\|error' | tail -3 | sed 's/^/      coordinator| /'
}
# expect NAME EXPECTED_B64 CMD...: the command's stdout (trimmed) must be EXPECTED_B64.
expect() {
  local name=$1 want=$2 got rc; shift 2; N=$((N + 1))
  got=$("$@" 2> "$W/flow$N.err"); rc=$?
  got=$(printf '%s' "$got" | tr -d '[:space:]')
  if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then pass "$name" "$got"
  else fail "$name" "rc=$rc got='${got:0:60}' want='$want'" "$W/flow$N.err"; fi
}
# ok NAME CMD...: the command must succeed.
ok() {
  local name=$1; shift; N=$((N + 1))
  if "$@" > "$W/flow$N.out" 2> "$W/flow$N.err"; then pass "$name" "ok"
  else local rc=$?; cat "$W/flow$N.out" >> "$W/flow$N.err"; fail "$name" "rc=$rc" "$W/flow$N.err"; fi
}
# refused NAME WHY CMD...: the command must fail, and the client must show the broker's reason
# (a CoCo error type or detail containing WHY).
refused() {
  local name=$1 why=$2; shift 2; N=$((N + 1))
  if "$@" > "$W/flow$N.out" 2> "$W/flow$N.err"; then fail "$name" "succeeded, expected a refusal"
  elif cat "$W/flow$N.out" "$W/flow$N.err" | grep -q -- "$why"; then pass "$name" "refused: $why"
  else fail "$name" "refused, but not for: $why" "$W/flow$N.err"; fi
}

# 1. Cookie flow (RCAR handshake then GET with the session cookie).
expect "1 cookie, no TEE key file"         "$SECRET_B64" kc get-resource --path default/key/1
expect "1 cookie, RSA key (PKCS#1)"        "$SECRET_B64" kc get-resource --path default/key/1 --tee-key-file "$K/tee-rsa.pem"
expect "1 cookie, P-256 key (PKCS#8)"      "$SECRET_B64" kc get-resource --path default/key/1 --tee-key-file "$K/tee-p256.pem"
expect "1 cookie, P-521 key (PKCS#8)"      "$SECRET_B64" kc get-resource --path default/key/1 --tee-key-file "$K/tee-p521.pem"

# 2. Passport flow: attest for a token, then GET with Authorization: Bearer.
for k in rsa p256 p521; do
  N=$((N + 1))
  if kc attest --tee-key-file "$K/tee-$k.pem" > "$W/token-$k" 2> "$W/flow$N.err" && [ -s "$W/token-$k" ]; then
    expect "2 passport, $k key (attest + token)" "$SECRET_B64" \
      kc get-resource --path default/key/1 --attestation-token "$W/token-$k" --tee-key-file "$K/tee-$k.pem"
  else
    fail "2 passport, $k key (attest)" "attest failed" "$W/flow$N.err"
  fi
done

# 3. Admin calls with a Bearer JWT signed by a manifest user's registered key.
printf 'uploaded-by-kbs-client\n' > "$W/res7.bin"; RES7=$(base64 -w0 < "$W/res7.bin")
printf 'es256-upload' > "$W/res8.bin"
mkjwt EdDSA "$K/admin-ed.pem" admin > "$W/admin.jwt"
mkjwt ES256 "$K/admin-es.pem" esadmin > "$W/admin-es.jwt"
mkjwt EdDSA "$K/admin-ed.pem" admin -10 > "$W/expired.jwt"
adm() { kc config --admin-token-file "$W/admin.jwt" "$@"; }
ok      "3 set-resource default/key/7 (EdDSA JWT)" adm set-resource --path default/key/7 --resource-file "$W/res7.bin"
ok      "3 set-resource default/key/8 (ES256 JWT)" kc config --admin-token-file "$W/admin-es.jwt" set-resource --path default/key/8 --resource-file "$W/res8.bin"
refused "3 set-resource with an expired JWT"       "token has expired" kc config --admin-token-file "$W/expired.jwt" set-resource --path default/key/9 --resource-file "$W/res8.bin"
ok      "3 delete-resource default/key/8"          kc config --admin-token-file "$W/admin-es.jwt" delete-resource --path default/key/8
refused "3 get key/7, default policy (sample denied)" "errors/PolicyDeny" kc get-resource --path default/key/7
ok      "3 set-resource-policy --allow-all"        adm set-resource-policy --allow-all
expect  "3 get key/7 (allow-all)"                  "$RES7" kc get-resource --path default/key/7
ok      "3 set-resource-policy --deny-all"         adm set-resource-policy --deny-all
refused "3 get key/1 (deny-all)"                   "errors/PolicyDeny" kc get-resource --path default/key/1
cat > "$W/attestation-policy.rego" <<'EOF'
package policy
import rego.v1
default executables := 33
default hardware := 97
executables := 3 if { input.sample.launch_digest in query_reference_value("launch_digest") }
hardware := 2 if { input.sample.svn in query_reference_value("svn") }
EOF
ok      "3 set-attestation-policy (default id)"    adm set-attestation-policy --policy-file "$W/attestation-policy.rego"
ok      "3 set-resource-policy --affirming"        adm set-resource-policy --affirming
refused "3 get key/7 (affirming, no ref values)"   "errors/PolicyDeny" kc get-resource --path default/key/7
ok      "3 set-sample-reference-value x2"          sh -c "'$KBS' --url '$URL' --cert-file '$W/root.pem' config --admin-token-file '$W/admin.jwt' set-sample-reference-value launch_digest abcde && '$KBS' --url '$URL' --cert-file '$W/root.pem' config --admin-token-file '$W/admin.jwt' set-sample-reference-value svn 1"
N=$((N + 1)); got=$(adm get-reference-value --id svn 2> "$W/flow$N.err")
if [ "$got" = '"[\"1\"]"' ]; then pass "3 get-reference-value svn" "$got"; else fail "3 get-reference-value svn" "got $got" "$W/flow$N.err"; fi
expect  "3 get key/7 (affirming + ref values)"     "$RES7" kc get-resource --path default/key/7
expect  "3 get key/1 (affirming + ref values)"     "$SECRET_B64" kc get-resource --path default/key/1

# 4. attestation-agent (ttRPC) + confidential-data-hub (passport flow through AA).
N=$((N + 1))
if ! mkdir -p /run/confidential-containers 2>/dev/null || [ ! -w /run/confidential-containers ]; then
  fail "4 AA + CDH" "attestation-agent needs write access to /run/confidential-containers (run as root)"
else
  "$GUEST/examples/mkconf.sh" "$URL" "$W/root.pem" "$W/guest" > "$W/mkconf.log" 2>&1 || die "mkconf.sh"
  RUST_LOG=info "$GUEST/bin/ttrpc-aa" -c "$W/guest/aa.toml" -a "unix://$W/guest/run/aa.sock" > "$W/aa.log" 2>&1 &
  AA_PID=$!
  for _ in $(seq 1 50); do [ -S "$W/guest/run/aa.sock" ] && break; sleep 0.2; done
  if [ ! -S "$W/guest/run/aa.sock" ]; then
    fail "4 AA + CDH" "ttrpc-aa did not create its socket" "$W/aa.log"
  else
    cdh() { RUST_LOG=off timeout 120 "$GUEST/bin/cdh-oneshot" -c "$W/guest/cdh.toml" get-resource --resource-uri "$1"; }
    expect "4 AA + CDH get-resource kbs:///default/key/1" "$SECRET_B64" cdh kbs:///default/key/1
    expect "4 AA + CDH get-resource kbs:///default/key/7" "$RES7" cdh kbs:///default/key/7
  fi
fi

if [ "$FAILED" -ne 0 ]; then echo "interop: $FAILED flow(s) FAILED"; exit 1; fi
echo "interop: all flows passed"
