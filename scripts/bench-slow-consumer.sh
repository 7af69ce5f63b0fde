#!/usr/bin/env bash
# One subscriber that stops reading among many, at the reference load: are the others slower?
# ROUNDS rounds, each one run with 0 and one with STALLED stalled subscribers (alternating, so
# both sides share whatever else the machine is doing), each against a fresh gyre and Redis.
#
#   scripts/bench-slow-consumer.sh
#   QUEUE_MAX_SIZE=65536 scripts/bench-slow-consumer.sh   # a queue limit the stalled one reaches
#
# What it does:
#   1. installs redis-server with apt-get when missing (sudo only when not root), builds gyre,
#      libgyre.so and gyre-bench (release);
#   2. per run: a Redis with libgyre.so, gyre (Redis engine, namespace `bench`, client.queue_max_size
#      = QUEUE_MAX_SIZE when set) and `gyre-bench load` at the reference load (BENCHMARKS.md
#      "Fan-out over WebSocket": CONNECTIONS gyre-ws subscribers over CHANNELS channels, MESSAGES
#      publications of PAYLOAD bytes at RATE/s via GYRE.PUBLISH) plus `--stalled` subscribers that
#      subscribe and never read their socket (SO_RCVBUF STALLED_RCVBUF bytes); at the end each
#      stalled one is read to see whether gyre closed it, and gyre's
#      gyre_client_disconnects_total{code="3008"} (slow) is read from /metrics;
#   3. prints a Markdown table (per side: median p50/p90/p99 of the other subscribers, deliveries
#      lost, stalled ones disconnected, slow disconnects) and writes every JSON result, the table
#      (report.md) and the logs to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   ROUNDS [5]               rounds (each: one run without, one with stalled subscribers)
#   STALLED [1]              stalled subscribers in the second run of a round
#   STALLED_RCVBUF [4096]    their receive buffer, bytes
#   QUEUE_MAX_SIZE []        client.queue_max_size, bytes (empty: gyre's default, 1 MiB)
#   CONNECTIONS [5000] CHANNELS [10] MESSAGES [1000] RATE [200] PAYLOAD [128]   the load
#   THREADS [1]              worker threads of the load generator
#   DRAIN_TIMEOUT [10]       seconds to wait for the last deliveries
#   RESULTS [target/bench-results/slow-consumer-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
STALLED="${STALLED:-1}"
STALLED_RCVBUF="${STALLED_RCVBUF:-4096}"
QUEUE_MAX_SIZE="${QUEUE_MAX_SIZE:-}"
CONNECTIONS="${CONNECTIONS:-5000}"
CHANNELS="${CHANNELS:-10}"
MESSAGES="${MESSAGES:-1000}"
RATE="${RATE:-200}"
PAYLOAD="${PAYLOAD:-128}"
THREADS="${THREADS:-1}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-10}"
RESULTS="${RESULTS:-target/bench-results/slow-consumer-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-slow-consumer: $*" >&2; }

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_redis_server
build_release
raise_nofile "$((CONNECTIONS + STALLED))" connections
workdir slow-consumer

REDIS_PORT="$(free_port 16690)"
GYRE_PORT="$(free_port 18400)"
client_lines=""
[ -n "$QUEUE_MAX_SIZE" ] && client_lines="queue_max_size = $QUEUE_MAX_SIZE"
write_gyre_config "$GYRE_PORT" "$REDIS_PORT" "$client_lines"

# Slow-client disconnects (code 3008) gyre counted so far.
slow_disconnects() {
  curl -fsS "http://127.0.0.1:$GYRE_PORT/metrics" 2>/dev/null |
    awk '/^gyre_client_disconnects_total\{.*code="3008"/ { n += $NF } END { print n + 0 }'
}

for r in $(seq "$ROUNDS"); do
  for stalled in 0 "$STALLED"; do
    log "round $r/$ROUNDS: $stalled stalled"
    out="$RESULTS/run-$r-stalled$stalled.json"
    start_gyre "$REDIS_PORT" "$GYRE_PORT"
    "$BENCH" load --target gyre-ws --url "http://127.0.0.1:$GYRE_PORT" --publish redis \
      --redis-url "redis://127.0.0.1:$REDIS_PORT" --server-pid "$GYRE_PID" \
      --redis-pid "$GYRE_REDIS_PID" --label "stalled $stalled" --tag slow-consumer \
      --connections "$CONNECTIONS" --channels "$CHANNELS" --payload-size "$PAYLOAD" \
      --threads "$THREADS" --drain-timeout "$DRAIN_TIMEOUT" --messages "$MESSAGES" \
      --rate "$RATE" --stalled "$stalled" --stalled-rcvbuf "$STALLED_RCVBUF" --out "$out" \
      2>>"$TMP/load.log" || log "FAILED: round $r, $stalled stalled ($out)"
    if [ -f "$out" ]; then
      jq --argjson n "$(slow_disconnects)" '. + {slow_disconnects: $n}' "$out" >"$out.tmp" &&
        mv "$out.tmp" "$out"
    fi
    stop_gyre
  done
done

# --- report ---------------------------------------------------------------------------------
side() { # stalled jq-path -> median over the runs of that side
  jq -rs --argjson s "$1" "[.[] | select((.stalled.requested // 0) == \$s) | $2 | select(. != null)] | sort |
    if length == 0 then \"–\" elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end" "$RESULTS"/run-*.json
}
side_list() { jq -rs --argjson s "$1" "[.[] | select((.stalled.requested // 0) == \$s) | $2] | map(tostring) | join(\", \")" "$RESULTS"/run-*.json; }
side_sum() { jq -rs --argjson s "$1" "[.[] | select((.stalled.requested // 0) == \$s) | $2] | add // 0" "$RESULTS"/run-*.json; }
ms() { awk -v v="$1" 'BEGIN { if (v == "–") print v; else printf "%.2f", v / 1000 }'; }
{
  echo "Command: \`ROUNDS=$ROUNDS STALLED=$STALLED STALLED_RCVBUF=$STALLED_RCVBUF QUEUE_MAX_SIZE=$QUEUE_MAX_SIZE CONNECTIONS=$CONNECTIONS CHANNELS=$CHANNELS MESSAGES=$MESSAGES RATE=$RATE PAYLOAD=$PAYLOAD THREADS=$THREADS scripts/bench-slow-consumer.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
  echo
  echo "| stalled | runs | p50 (ms) | p90 (ms) | p99 (ms) | p99 per run (ms) | lost | stalled disconnected | slow disconnects (3008) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for s in 0 "$STALLED"; do
    runs="$(jq -rs --argjson s "$s" '[.[] | select((.stalled.requested // 0) == $s)] | length' "$RESULTS"/run-*.json)"
    p99s="$(side_list "$s" '(.phases[0].latency.p99_us / 1000 * 100 | round / 100)')"
    echo "| $s | $runs | $(ms "$(side "$s" .phases[0].latency.p50_us)") | $(ms "$(side "$s" .phases[0].latency.p90_us)") | $(ms "$(side "$s" .phases[0].latency.p99_us)") | $p99s | $(side_sum "$s" .phases[0].lost) | $(side_sum "$s" '(.stalled.disconnected // 0)') of $(side_sum "$s" '(.stalled.subscribed // 0)') | $(side_sum "$s" '(.slow_disconnects // 0)') |"
  done
  echo
  echo "Stalled endings: $(jq -rs '[.[] | .stalled.endings // {} | to_entries[] | "\(.key): \(.value)"] | unique | join("; ")' "$RESULTS"/run-*.json)"
  echo "Errors: $(jq -rs '[.[] | .errors | to_entries[] | "\(.key): \(.value)"] | unique | join("; ")' "$RESULTS"/run-*.json)"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
