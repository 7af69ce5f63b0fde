#!/usr/bin/env bash
# Fossil delta compression on vs off on loopback: gyre (Redis engine, libgyre.so), the reference
# load with plain JSON WebSocket subscribers (`--target gyre-ws`) and with subscribers that
# subscribe with `delta: "fossil"` (`--target gyre-ws-delta`, gyre-bench's client, which applies
# every patch to the previous payload before it reads the timestamp).
#
#   scripts/bench-delta.sh
#
# What it does:
#   1. builds gyre, libgyre.so and gyre-bench (release) unless SKIP_BUILD=1;
#   2. ROUNDS rounds, each one run per target, alternating: CONNECTIONS WebSocket subscribers
#      over CHANNELS channels, MESSAGES publications of PAYLOAD bytes at RATE/s with GYRE.PUBLISH.
#      Every run gets a fresh gyre and a fresh Redis; both runs use the same config: a namespace
#      with history, force_positioning, allowed_delta_types = ["fossil"] and delta_publish
#      (plain clients simply do not ask for deltas). Consecutive payloads of a channel differ in
#      their 19-digit timestamp only: the best case for deltas (a document that changes a little);
#   3. prints a Markdown table of medians (server CPU µs per delivery and the delta/plain ratio,
#      bytes on the wire per delivery as counted from the frames received, latency, lost) and
#      writes every JSON result, the table (report.md) and the server logs to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   ROUNDS [3]  CONNECTIONS [5000]  CHANNELS [10]  MESSAGES [1000]  RATE [200]  PAYLOAD [1024]
#   DRAIN_TIMEOUT [10]
#   THREADS [1]            worker threads of the load generator (leave the CPU to the server)
#   RESULTS [target/bench-results/delta-<date>]  output directory
#   SKIP_BUILD=1           use what is built already
#
# Needs redis-server and jq on PATH. Everything listens on 127.0.0.1 on free ports; every
# process started here is stopped on exit. ~20 s per run after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-5000}"
CHANNELS="${CHANNELS:-10}"
MESSAGES="${MESSAGES:-1000}"
RATE="${RATE:-200}"
PAYLOAD="${PAYLOAD:-1024}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-10}"
THREADS="${THREADS:-1}"
RESULTS="${RESULTS:-target/bench-results/delta-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-delta: $*" >&2; }

command -v redis-server >/dev/null 2>&1 || { log "redis-server not found"; exit 1; }
command -v jq >/dev/null 2>&1 || { log "jq not found"; exit 1; }
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
build_release
raise_nofile "$CONNECTIONS" connections
workdir delta

REDIS_PORT="$(free_port 16490)"
GYRE_PORT="$(free_port 18100)"

write_gyre_config "$GYRE_PORT" "$REDIS_PORT" "" 'history_size = 10
history_ttl = "60s"
force_positioning = true
allowed_delta_types = ["fossil"]
delta_publish = true'

ab_rounds delta gyre-ws gyre-ws-delta

# --- report -----------------------------------------------------------------------------------
declare -A CPU BYTES P50 P99 LOST DELIV CCPU N
for t in gyre-ws gyre-ws-delta; do
  N[$t]="$(ab_runs "$t")"
  CPU[$t]="$(ab_median "$t" '.phases[0].server_cpu_us_per_delivery')"
  BYTES[$t]="$(ab_median "$t" '.phases[0].wire_bytes_per_delivery')"
  P50[$t]="$(ab_median "$t" '.phases[0].latency.p50_us')"
  P99[$t]="$(ab_median "$t" '.phases[0].latency.p99_us')"
  CCPU[$t]="$(ab_median "$t" '.phases[0].client_cpu_us_per_delivery')"
  LOST[$t]="$(ab_sum "$t" '.phases[0].lost')"
  DELIV[$t]="$(ab_sum "$t" '.phases[0].delivered')"
done
P=gyre-ws D=gyre-ws-delta
{
  echo "Command: \`ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS CHANNELS=$CHANNELS MESSAGES=$MESSAGES RATE=$RATE PAYLOAD=$PAYLOAD scripts/bench-delta.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), Redis $(redis-server --version | awk '{print $3}' | tr -d 'v='), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| target | runs | server CPU µs/delivery | vs plain | wire B/delivery | vs plain | p50 ms | p99 ms | lost / delivered | client CPU µs/delivery |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for t in $P $D; do
    echo "| $t | ${N[$t]} | **$(ab_fmt "${CPU[$t]}" 2)** | $(ab_ratio "${CPU[$t]}" "${CPU[$P]}") | $(ab_fmt "${BYTES[$t]}" 1) | $(ab_ratio "${BYTES[$t]}" "${BYTES[$P]}") | $(ab_ms "${P50[$t]}" 2) | $(ab_ms "${P99[$t]}" 2) | ${LOST[$t]} / ${DELIV[$t]} | $(ab_fmt "${CCPU[$t]}" 2) |"
  done
  echo
  echo "Per run, server CPU µs/delivery: plain $(ab_per_run gyre-ws '.phases[0].server_cpu_us_per_delivery'); delta $(ab_per_run gyre-ws-delta '.phases[0].server_cpu_us_per_delivery')"
  errors="$(ab_errors)"
  if [ -n "$errors" ]; then echo && echo "Errors reported by the tool: $errors"; fi
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
