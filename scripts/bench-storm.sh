#!/usr/bin/env bash
# Reconnect storm on loopback: CLIENTS gyre WebSocket clients drop at once, miss PUBLICATIONS
# publications per channel and reconnect at once with recovery; once without admission control
# and once per handshake rate limit (client.handshake_rate_limit, 503 + Retry-After beyond it).
#
#   scripts/bench-storm.sh
#
# What it does:
#   1. installs redis-server with apt-get when missing (sudo only when not root), builds gyre,
#      libgyre.so and gyre-bench (release);
#   2. for every value of LIMITS, ROUNDS times: a fresh Redis with libgyre.so and a fresh gyre
#      (Redis engine, namespace `bench` with history and force_recovery, handshake_rate_limit =
#      the value, handshake_burst = BURST) and one `gyre-bench storm` run: connect CLIENTS over
#      CHANNELS channels, probe latency for a while, close every client, publish, reconnect all
#      at once (503s retried after a jittered backoff: uniform 0..BACKOFF_MIN ms, doubling up to
#      BACKOFF_MAX, at least Retry-After), until every client has recovered exactly the
#      publications it missed; a live probe (a publication every PROBE_INTERVAL ms on its own
#      connection) measures the server's responsiveness before, during and after;
#   3. prints a Markdown table (time to full recovery, 503s, probe p99/max during the storm,
#      server CPU) and writes every JSON result, the table (report.md) and the logs to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   CLIENTS [10000]          clients reconnecting at once
#   CHANNELS [10]            channels (client i takes channel i % CHANNELS)
#   PUBLICATIONS [10]        publications per channel missed by every client
#   LIMITS [0,2000,5000,5000:500,8000:800]  client.handshake_rate_limit values, handshakes/s
#                            (0 = off);
#                            RATE:BURST sets client.handshake_burst for that run (e.g. 5000:500)
#   BURST [0]                client.handshake_burst when not given (0 = one second's worth)
#   ROUNDS [1]               runs per limit (each with a fresh gyre and Redis)
#   BACKOFF_MIN [1000]       first backoff window after a 503, ms
#   BACKOFF_MAX [10000]      largest backoff window, ms
#   PROBE_INTERVAL [10]      ms between two probe publications
#   RECONNECT_CONCURRENCY [0]  reconnect attempts in flight in the tool (0 = all at once)
#   PACED [500]              one more run without admission control where the tool keeps at most
#                            PACED reconnects in flight (what a bounded handshake concurrency on the
#                            server side would look like; no listen queue overflow); empty skips
#   THREADS [1]              worker threads of the load generator (the probe has its own)
#   RESULTS [target/bench-results/storm-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# Default run: ~2 minutes after the build on 2 cores. Everything listens on 127.0.0.1 on free
# ports; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-10000}"
CHANNELS="${CHANNELS:-10}"
PUBLICATIONS="${PUBLICATIONS:-10}"
LIMITS="${LIMITS:-0,2000,5000,5000:500,8000:800}"
PACED="${PACED-500}"
BURST="${BURST:-0}"
ROUNDS="${ROUNDS:-1}"
BACKOFF_MIN="${BACKOFF_MIN:-1000}"
BACKOFF_MAX="${BACKOFF_MAX:-10000}"
PROBE_INTERVAL="${PROBE_INTERVAL:-10}"
RECONNECT_CONCURRENCY="${RECONNECT_CONCURRENCY:-0}"
THREADS="${THREADS:-1}"
RESULTS="${RESULTS:-target/bench-results/storm-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-storm: $*" >&2; }

# --- 1. dependencies and build ------------------------------------------------------------
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_redis_server
build_release
raise_nofile "$CLIENTS" clients
workdir storm

REDIS_PORT="$(free_port 16490)"
GYRE_PORT="$(free_port 18100)"

# gyre: anonymous clients may subscribe in `bench`; history of 20 publications for 300 s and
# force_recovery, so a resubscribe with recover/offset/epoch gets the missed publications.
write_config() { # limit burst
  write_gyre_config "$GYRE_PORT" "$REDIS_PORT" "handshake_rate_limit = $1
handshake_burst = $2" 'history_size = 20
history_ttl = "300s"
force_recovery = true'
}

run_storm() { # limit[:burst] round
  local limit=${1%%:*} burst=$BURST round=$2 tag name
  [[ $1 == *:* ]] && burst=${1#*:}
  if [ "$limit" = 0 ]; then
    tag="no limit"
  elif [ "$burst" = 0 ]; then
    tag="limit $limit/s"
  else
    tag="limit $limit/s burst $burst"
  fi
  name="storm-$(printf %06d-%06d "$limit" "$burst")"
  if [ "$RECONNECT_CONCURRENCY" != 0 ]; then
    tag="$tag, tool ≤$RECONNECT_CONCURRENCY in flight"
    name="$name-c$RECONNECT_CONCURRENCY"
  fi
  if [ "$ROUNDS" -gt 1 ]; then tag="$tag #$round"; fi
  write_config "$limit" "$burst"
  start_gyre "$REDIS_PORT" "$GYRE_PORT"
  "${LOAD_PIN[@]}" "$BENCH" storm --url "http://127.0.0.1:$GYRE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --clients "$CLIENTS" --channels "$CHANNELS" --publications "$PUBLICATIONS" \
    --probe-interval-ms "$PROBE_INTERVAL" --backoff-min-ms "$BACKOFF_MIN" \
    --backoff-max-ms "$BACKOFF_MAX" --reconnect-concurrency "$RECONNECT_CONCURRENCY" \
    --threads "$THREADS" --server-pid "$GYRE_PID" --redis-pid "$GYRE_REDIS_PID" --tag "$tag" \
    --out "$RESULTS/$name-$round.json" \
    || log "storm run failed ($tag)"
  stop_gyre
}

# --- 2. the runs ----------------------------------------------------------------------------
IFS=, read -r -a limits <<<"$LIMITS"
for limit in "${limits[@]}"; do
  for r in $(seq "$ROUNDS"); do
    log "handshake_rate_limit $limit, round $r/$ROUNDS: $CLIENTS clients"
    run_storm "$limit" "$r"
  done
done
if [ -n "$PACED" ]; then
  for r in $(seq "$ROUNDS"); do
    log "no limit, at most $PACED reconnects in flight, round $r/$ROUNDS: $CLIENTS clients"
    RECONNECT_CONCURRENCY=$PACED run_storm 0 "$r"
  done
fi

# --- 3. report ------------------------------------------------------------------------------
{
  echo "Command: \`CLIENTS=$CLIENTS CHANNELS=$CHANNELS PUBLICATIONS=$PUBLICATIONS LIMITS=$LIMITS BURST=$BURST ROUNDS=$ROUNDS BACKOFF_MIN=$BACKOFF_MIN BACKOFF_MAX=$BACKOFF_MAX PROBE_INTERVAL=$PROBE_INTERVAL RECONNECT_CONCURRENCY=$RECONNECT_CONCURRENCY PACED=$PACED THREADS=$THREADS scripts/bench-storm.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
  echo
  "$BENCH" storm-report "$RESULTS"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
