#!/usr/bin/env bash
# Runs Gyre's fuzz targets (fuzz/fuzz_targets/) with cargo fuzz (libFuzzer), each for SECONDS,
# keeping what they learn in fuzz/corpus/<target> and any crashing input in
# fuzz/artifacts/<target>. Installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   SECONDS_PER_TARGET=5 scripts/fuzz.sh client_frames redis_payload
#   SANITIZER=none SECONDS_PER_TARGET=15 scripts/fuzz.sh   # the smoke run of scripts/test.sh
#
# SANITIZER [address]: what cargo fuzz builds with (address, none, …); `none` keeps the
# coverage-guided search and the panics-are-crashes rule, and builds several times faster.
# A target with fuzz/dictionaries/<target>.dict gets it (-dict=): the keywords of its grammar.
#
# cargo fuzz passes nightly-only flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets this machine's
# stable toolchain accept them. Exits non-zero when a target finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-60}"
SANITIZER="${SANITIZER:-address}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gyre-fuzz$')
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

# One build of every target first: the runs below then start at once.
echo "==> cargo fuzz build (sanitizer $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"

failed=()
for target in "${targets[@]}"; do
  echo "==> fuzz $target for ${SECONDS_PER_TARGET}s"
  mkdir -p "fuzz/corpus/$target"
  extra=()
  [ -f "fuzz/dictionaries/$target.dict" ] && extra+=("-dict=fuzz/dictionaries/$target.dict")
  if ! cargo fuzz run --sanitizer "$SANITIZER" "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 "${extra[@]}"; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]}"
