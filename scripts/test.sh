#!/usr/bin/env bash
# Runs every Gyre test on a fresh machine (Rust, Node 20, Python 3.11 and apt are assumed).
# Installs what the tests need when it is missing, then: format check, clippy, build, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup-common.sh

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The streaming transports' tests read responses with `curl -N`, as a user would.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The Redis TLS tests make their certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The demo page's browser test drives Debian's Chromium (through npm playwright-core).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
have_libclang || need_apt+=(libclang-dev)
# The fuzz smoke run: libfuzzer-sys compiles libFuzzer (C++).
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  apt_install "${need_apt[@]}"
fi
# Debian starts a redis-server service on install; the tests start their own servers on free ports.

# The SDK tests (tests/tests/sdk_*.rs) drive the real Centrifugo SDKs: the npm packages pinned in
# tests/sdk/node/package-lock.json and a venv with tests/sdk/python/requirements.txt. (Re)installed
# only when missing or when the pins changed.
sdk_node=tests/sdk/node
if [ ! -f "$sdk_node/node_modules/.package-lock.json" ] \
  || [ "$sdk_node/package-lock.json" -nt "$sdk_node/node_modules/.package-lock.json" ]; then
  echo "==> npm ci in $sdk_node"
  (cd "$sdk_node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
sdk_venv=tests/sdk/python/.venv
if [ ! -x "$sdk_venv/bin/python" ] || ! cmp -s tests/sdk/python/requirements.txt "$sdk_venv/requirements.installed"; then
  echo "==> python venv $sdk_venv"
  if ! python3 -m venv --clear "$sdk_venv" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv (ensurepip) for this.
    apt_install python3-venv
    python3 -m venv --clear "$sdk_venv"
  fi
  "$sdk_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/python/requirements.txt
  cp tests/sdk/python/requirements.txt "$sdk_venv/requirements.installed"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build (workspace, including libgyre.so)"
cargo build --workspace --locked
echo "==> cargo test"
log="$(mktemp -t gyre-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo prints one per test binary, the last of which
# is often an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "\nall tests: %d passed, %d failed\n", passed, failed }' "$log"

# A short run of every fuzz target (fuzz/, see README "Fuzzing") on the corpus kept in
# fuzz/corpus: a panic in any decoder fails the suite. Without the address sanitizer the build is
# several times faster, and the targets are safe Rust, where a panic is what fuzzing finds.
echo "==> fuzz smoke (${FUZZ_SMOKE_SECONDS:-15} s per target)"
SANITIZER=none SECONDS_PER_TARGET="${FUZZ_SMOKE_SECONDS:-15}" scripts/fuzz.sh
