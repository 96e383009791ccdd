#!/usr/bin/env bash
# Run every fuzz target briefly (CI smoke). Seeds come from the real vectors in ../shared, copied
# into a scratch corpus that is never committed. On stable Rust, cargo-fuzz needs
# RUSTC_BOOTSTRAP=1 for its sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-15}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1

vectors=${CLOISTER_TESTDATA:-../../shared/testdata/attestation}
seed() { # seed TARGET FILE...
  local dir="corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do
    if [ -f "$f" ]; then cp "$f" "$dir/$(basename "$f")"; fi
  done
}
if [ -d "$vectors" ]; then
  seed evidence "$vectors"/sgx/*.bin "$vectors"/sgx/*.hex "$vectors"/tdx/*.bin "$vectors"/tdx/*.hex \
    "$vectors"/snp/*.bin "$vectors"/snp/*.hex "$vectors"/azure/*.json
  seed dcap_quote "$vectors"/sgx/*.bin "$vectors"/tdx/*quote*.bin
  seed snp_report "$vectors"/snp/*report*.bin "$vectors"/azure/*.snp_report.bin
  seed collateral "$vectors"/sgx/*.json "$vectors"/tdx/*.json "$vectors"/tdx/collateral_*/*.json \
    "$vectors"/sgx/collateral_*/*.json
  seed x509 "$vectors"/intel/*.der "$vectors"/intel/*.pem "$vectors"/snp/*.der "$vectors"/snp/*.pem
  seed eventlog "$vectors"/tdx/gotdx_cos-113_ccel_data.bin
  seed azure "$vectors"/azure/*.bin "$vectors"/azure/*.json
fi

# Manifests, key-broker messages, Rego policies, OCI references, image policies, ocicrypt
# annotations and layer tars need no vectors: small hand-written seeds
# live in the repository.
seed manifest seeds/manifest/*
seed kbs_messages seeds/kbs/*
seed rego_policy seeds/rego/*
seed oci_reference seeds/oci/*
seed image_policy seeds/image-policy/*
seed ocicrypt_annotations seeds/ocicrypt/*
seed image_layer seeds/image-layer/*

cargo fuzz build -O
for target in $(cargo fuzz list); do
  echo "--- fuzz $target (${SECONDS_PER_TARGET}s)"
  mkdir -p "corpus/$target"
  log="corpus/$target.log"
  if ! cargo fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=300000 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target crashed; the reproducer is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
echo "fuzz smoke: every target ran without a crash"
