#!/usr/bin/env bash
# Runs Gyre's fuzz targets (fuzz/fuzz_targets/) with cargo fuzz (libFuzzer), each for SECONDS,
# keeping what they learn in fuzz/corpus/<target> and any crashing input in
# fuzz/artifacts/<target>. Installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   SECONDS_PER_TARGET=5 scripts/fuzz.sh client_frames redis_payload
#
# cargo fuzz passes nightly-only flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets this machine's
# stable toolchain accept them. Exits non-zero when a target finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gyre-fuzz$')
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

failed=()
for target in "${targets[@]}"; do
  echo "==> fuzz $target for ${SECONDS_PER_TARGET}s"
  mkdir -p "fuzz/corpus/$target"
  if ! cargo fuzz run "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]}"
