#!/usr/bin/env bash
# schemathesis (every check: all are on unless schemathesis.toml says why not) against a live `coordinator serve --simulation`, once anonymously and
# once with a manifest user's client certificate. Fails on any 5xx, crash, hang, or difference
# between the server and its OpenAPI document.
#   usage: .ci/schemathesis.sh path/to/cloister
# Env: ST_SECONDS (per run, default 120), ST_VENV (default target/schemathesis-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(readlink -f "${1:?usage: schemathesis.sh path/to/cloister}")
seconds=${ST_SECONDS:-120}
venv=${ST_VENV:-$here/../target/schemathesis-venv}

if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export CLOISTER_SIM_DIR=$work/sim

"$bin" coordinator serve --simulation --listen 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/stdout" 2>"$work/server.log" &
server=$!
url=
for _ in $(seq 200); do
  url=$(sed -n 's/^listening on //p' "$work/stdout")
  [ -n "$url" ] && break
  kill -0 "$server" || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the coordinator did not start" >&2; exit 1; }
export CLOISTER_COORDINATOR=$url CLOISTER_ROOT_CA=$work/root.pem
"$bin" verify --accept-simulation --save-root "$work/root.pem" >/dev/null

# A user whose roles allow every action.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=st \
  -keyout "$work/user-key.pem" -out "$work/user.pem" 2>/dev/null
python3 - "$work/user.pem" >"$work/manifest.json" <<'PY'
import hashlib, json, sys
print(json.dumps({
    "packages": {"app": {"unique_id": hashlib.sha256(b"cloister simulated enclave").hexdigest()}},
    "workloads": {"app": {"package": "app"}},
    "secrets": {"k": {"type": "symmetric-key", "size": 128, "shared": True},
                "up": {"type": "plain", "user_defined": True}},
    "users": {"admin": {"certificate": open(sys.argv[1]).read(),
                        "roles": ["manifest", "read", "write", "kbs"]}},
    "roles": {"manifest": {"resource_type": "Manifest", "actions": ["UpdateManifest"]},
              "read": {"resource_type": "Secrets", "resource_names": ["k", "up"], "actions": ["ReadSecret"]},
              "write": {"resource_type": "Secrets", "resource_names": ["up"], "actions": ["WriteSecret"]},
              "kbs": {"resource_type": "Kbs", "actions": ["WriteResource", "SetPolicy"]}},
    "kbs": {"resources": {"default/key/1": {"secret": "k", "packages": ["app"]}}},
}))
PY
"$bin" manifest set "$work/manifest.json" >/dev/null

run() { # name, extra arguments...
  local name=$1; shift
  echo "--- schemathesis $name (${seconds}s)"
  (cd "$work" && timeout --kill-after=10 $((seconds + 120)) \
    "$venv/bin/st" --config-file "$here/schemathesis.toml" run "$url/api/v1/openapi.json" \
      --url "$url" --max-time "$seconds" --max-response-time 5 \
      --request-timeout 10 --workers 1 --seed 1 --tls-verify "$work/root.pem" --no-color "$@" \
      >"$work/$name.log" 2>&1) || { sed -n '/FAILURES\|ERRORS/,/WARNINGS/p;/SUMMARY/,$p' "$work/$name.log" | cut -c1-400; return 1; }
  grep -E "test cases|passed|failed" "$work/$name.log" | tail -n 3
}
status=0
run anonymous || status=1
run user --request-cert "$work/user.pem" --request-cert-key "$work/user-key.pem" || status=1
if ! kill -0 "$server" 2>/dev/null; then
  echo "the coordinator died during the run" >&2; cat "$work/server.log" >&2; status=1
elif ! "$bin" status >/dev/null; then
  echo "the coordinator stopped answering" >&2; status=1
fi
[ "$status" = 0 ] && echo "schemathesis: no server error, crash, hang or schema mismatch"
exit "$status"
