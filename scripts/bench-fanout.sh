#!/usr/bin/env bash
# The hub's fan-out across cores (BENCHMARKS.md "Fan-out across cores"): deliveries/s and CPU of
# the real hub writing many channels' publications into loopback TCP sockets, on a tokio runtime
# with 1 and then 2 (THREADS) worker threads, alternating. No load tool, no Redis: the benchmark
# is one program (gyre-fanout-bench, proxy/src/bin/gyre-fanout-bench.rs) that drives the hub's
# API.
#
#   scripts/bench-fanout.sh
#
# Options (environment variables, defaults in brackets):
#   ROUNDS [5]            measurements per thread count, alternating
#   THREADS [1,2]         worker thread counts
#   CHANNELS [64]         channels
#   SUBSCRIBERS [100]     subscribers (sockets) per channel
#   PUBLICATIONS [200]    publications per channel in a measurement
#   PAYLOAD [128]         bytes of publication data
#   WINDOW [4]            rounds (one publication per channel) in flight at most: 4 keeps every
#                         lane below 16 waiting events, so deliveries are direct writes; 64
#                         lets the lanes fall behind, so they queue for the connections' tasks
#   DISPATCH [lanes]      lanes (the hub's fan-out lanes) or single (one dispatcher task, as
#                         before them)
#   PIN [unset]           1: run the benchmark under `taskset -c PIN_CPUS` (default: all cores),
#                         e.g. to keep it off a core other jobs use
#   RESULTS [target/bench-results/fanout-<date>]  where report.md goes
#
# Needs 2 × CHANNELS × SUBSCRIBERS + 100 open files (raised to the hard limit here). The result
# depends on the machine being otherwise idle: run it on a quiet machine, or read the worker
# CPU % column to see how much of the cores the run got.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
THREADS="${THREADS:-1,2}"
CHANNELS="${CHANNELS:-64}"
SUBSCRIBERS="${SUBSCRIBERS:-100}"
PUBLICATIONS="${PUBLICATIONS:-200}"
PAYLOAD="${PAYLOAD:-128}"
WINDOW="${WINDOW:-4}"
DISPATCH="${DISPATCH:-lanes}"
PIN="${PIN:-}"
PIN_CPUS="${PIN_CPUS:-0-$(($(nproc) - 1))}"
RESULTS="${RESULTS:-target/bench-results/fanout-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-fanout: $*" >&2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$RESULTS"
log "building the benchmark (release)"
cargo build --release -p gyre-proxy --bin gyre-fanout-bench --locked
pin=()
if [ -n "$PIN" ] && [ "$PIN" != 0 ]; then pin=(taskset -c "$PIN_CPUS"); fi
{
  echo "Command: \`ROUNDS=$ROUNDS THREADS=$THREADS CHANNELS=$CHANNELS SUBSCRIBERS=$SUBSCRIBERS PUBLICATIONS=$PUBLICATIONS PAYLOAD=$PAYLOAD WINDOW=$WINDOW DISPATCH=$DISPATCH PIN=$PIN scripts/bench-fanout.sh\` at commit $(git rev-parse --short HEAD)"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "${pin[@]}" target/release/gyre-fanout-bench --rounds "$ROUNDS" \
    --threads "$THREADS" --channels "$CHANNELS" --subscribers "$SUBSCRIBERS" \
    --publications "$PUBLICATIONS" --payload "$PAYLOAD" --window "$WINDOW" --dispatch "$DISPATCH"
  echo
  echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
