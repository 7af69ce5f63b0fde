#!/usr/bin/env bash
# Soak on loopback: CONNECTIONS gyre WebSocket clients with churn (CHURN percent of them
# disconnecting and reconnecting with recovery every second) and steady publishing for DURATION;
# gyre's RSS, open descriptors and live tokio tasks and Redis' used_memory sampled every
# SAMPLE_INTERVAL seconds, with the least-squares slope per hour of each. A benchmark, not a test:
# not part of scripts/test.sh.
#
#   scripts/bench-soak.sh                 # 30 minutes
#   DURATION=2m scripts/bench-soak.sh     # a quick try
#
# What it does:
#   1. installs redis-server with apt-get when missing (sudo only when not root), builds gyre,
#      libgyre.so and gyre-bench (release), raises `ulimit -n` (the tool and gyre each hold one
#      descriptor per connection);
#   2. starts a Redis with libgyre.so and gyre (Redis engine, namespace `bench` with history
#      HISTORY_SIZE / 300 s and force_recovery) and runs `gyre-bench soak`: connect CONNECTIONS
#      clients over CHANNELS channels, then for DURATION publish RATE publications/s of PAYLOAD
#      bytes round-robin over the channels via GYRE.PUBLISH while client i drops at
#      t0 + P·i/N + k·P (P = 100/CHURN s, so the drops are spread evenly), stays away AWAY_MS and
#      reconnects with recover/offset/epoch; every client checks that its offsets rise by one
#      (live and recovered), so a lost publication shows as `missed`;
#   3. writes samples.csv (one row per sample), soak.json (samples, slopes, totals) and report.md
#      (the table of every 5th sample, the slopes and the totals) to RESULTS, with the logs.
#
# Options (environment variables, defaults in brackets):
#   DURATION [30m]           seconds, or with an m suffix minutes
#   CONNECTIONS [15000]      client connections
#   CHANNELS [100]           channels (client i takes channel i % CHANNELS)
#   RATE [100]               publications per second (over all channels)
#   PAYLOAD [128]            payload bytes
#   CHURN [1]                percent of the clients reconnecting per second
#   AWAY_MS [1000]           how long a churned client stays away
#   HISTORY_SIZE [100]       history per channel (must cover RATE/CHANNELS × AWAY_MS)
#   SAMPLE_INTERVAL [60]     seconds between two samples
#   THREADS [1]              worker threads of the load tool
#   NICE [10]                niceness of gyre, Redis and the tool (a shared machine; 0 = none)
#   RESULTS [target/bench-results/soak-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-30m}"
CONNECTIONS="${CONNECTIONS:-15000}"
CHANNELS="${CHANNELS:-100}"
RATE="${RATE:-100}"
PAYLOAD="${PAYLOAD:-128}"
CHURN="${CHURN:-1}"
AWAY_MS="${AWAY_MS:-1000}"
HISTORY_SIZE="${HISTORY_SIZE:-100}"
SAMPLE_INTERVAL="${SAMPLE_INTERVAL:-60}"
THREADS="${THREADS:-1}"
NICE="${NICE:-10}"
RESULTS="${RESULTS:-target/bench-results/soak-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-soak: $*" >&2; }

case $DURATION in
  *m) DURATION_S=$((${DURATION%m} * 60)) ;;
  *s) DURATION_S=${DURATION%s} ;;
  *) DURATION_S=$DURATION ;;
esac

# --- 1. dependencies, build, limits -------------------------------------------------------
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_redis_server
build_release
raise_nofile "$CONNECTIONS" connections
workdir soak

REDIS_PORT="$(free_port 16590)"
GYRE_PORT="$(free_port 18300)"

# gyre: anonymous clients may subscribe in `bench`; history and force_recovery, so a client back
# after AWAY_MS gets what it missed.
write_gyre_config "$GYRE_PORT" "$REDIS_PORT" "" "history_size = $HISTORY_SIZE
history_ttl = \"300s\"
force_recovery = true"
# Lower priority than the other engineers' builds on this shared machine, consistently for
# every process of the run.
if [ "$NICE" != 0 ]; then renice -n "$NICE" $$ >/dev/null; fi
start_gyre "$REDIS_PORT" "$GYRE_PORT"

# --- 2. the run ---------------------------------------------------------------------------
log "$CONNECTIONS connections over $CHANNELS channels, $RATE publications/s of $PAYLOAD B, churn $CHURN%/s (away ${AWAY_MS} ms), for ${DURATION_S}s"
"$BENCH" soak --url "http://127.0.0.1:$GYRE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
  --server-pid "$GYRE_PID" --redis-pid "$GYRE_REDIS_PID" --connections "$CONNECTIONS" \
  --channels "$CHANNELS" --rate "$RATE" --payload-size "$PAYLOAD" --duration "$DURATION_S" \
  --churn-percent "$CHURN" --away-ms "$AWAY_MS" --sample-interval "$SAMPLE_INTERVAL" \
  --threads "$THREADS" --csv "$RESULTS/samples.csv" --report "$TMP/report-body.md" \
  --out "$RESULTS/soak.json" 2>"$TMP/soak-tool.log" || {
  log "the soak run failed (soak-tool.log)"
  tail -5 "$TMP/soak-tool.log" >&2
  exit 1
}
stop_gyre

# --- 3. report ------------------------------------------------------------------------------
{
  echo "Command: \`DURATION=$DURATION CONNECTIONS=$CONNECTIONS CHANNELS=$CHANNELS RATE=$RATE PAYLOAD=$PAYLOAD CHURN=$CHURN AWAY_MS=$AWAY_MS HISTORY_SIZE=$HISTORY_SIZE SAMPLE_INTERVAL=$SAMPLE_INTERVAL THREADS=$THREADS NICE=$NICE scripts/bench-soak.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
  echo
  cat "$TMP/report-body.md"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
