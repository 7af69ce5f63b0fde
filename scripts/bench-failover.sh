#!/usr/bin/env bash
# Failover under load: gyre with WebSocket subscribers on channels with history and recovery,
# publications flowing at a steady rate, then `kill -9` of a Redis primary: a primary of a
# 3-primary Redis Cluster, and the primary of a Sentinel group.
#
#   scripts/bench-failover.sh
#
# What it does:
#   1. installs redis-server with apt-get when missing (sudo only when not root), builds gyre,
#      libgyre.so and gyre-bench (release);
#   2. for every topology in TOPOLOGIES, ROUNDS times, everything fresh in its own temporary
#      directory and on free ports:
#      - cluster: six nodes (three primaries, one replica each, libgyre.so with
#        `sharded-pubsub yes`, cluster-node-timeout 1500 ms), gyre with
#        `engine.redis.cluster_address`; the killed node is the primary of `bench:f0`;
#      - sentinel: a primary and a replica (libgyre.so) and three sentinels
#        (down-after-milliseconds 1000, failover-timeout 5000), gyre with
#        `engine.redis.sentinel_address`; the killed node is the primary;
#      gyre's namespace `bench` has history_size 100, history_ttl 300 s and force_recovery;
#   3. `gyre-bench failover`: CONNECTIONS WebSocket clients over CHANNELS channels, RATE
#      publications/s round-robin over the channels (GYRE.PUBLISH straight to the primary that
#      owns the channel, re-asking the cluster / the sentinels after a failure, at most every
#      20 ms), BEFORE seconds of that, then SIGKILL to the primary; the clients resubscribe on
#      an `unsubscribe` 2500 at once and retry failed resubscribes with the SDKs' backoff
#      (BACKOFF_MIN…BACKOFF_MAX ms, full jitter). The run ends SETTLE s after every client is
#      back in sync, or DEADLINE s after the kill;
#   4. prints a Markdown table per run and the medians per topology (`gyre-bench
#      failover-report`), and writes it (report.md), every JSON result and the logs to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   TOPOLOGIES [cluster,sentinel]  which deployments to fail over
#   ROUNDS [3]               runs per topology
#   CONNECTIONS [1000]       WebSocket subscribers
#   CHANNELS [48]            channels (client i takes bench:f<i % CHANNELS>)
#   RATE [480]               publications/s over all channels (10/s per channel by default)
#   BEFORE [5]               seconds of steady publishing before the kill
#   DEADLINE [30]            seconds after the kill to give up waiting for the clients
#   SETTLE [3]               seconds of publishing once every client is in sync
#   BACKOFF_MIN [500], BACKOFF_MAX [10000]  resubscribe / reconnect backoff window, ms
#   THREADS [1]              worker threads of the load generator
#   RESULTS [target/bench-results/failover-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# A run takes BEFORE + the recovery + SETTLE + ~10 s of setup (up to DEADLINE when the clients
# do not come back). Everything listens on 127.0.0.1; every process started here is stopped on
# exit and the temporary directory removed.
set -euo pipefail
cd "$(dirname "$0")/.."

TOPOLOGIES="${TOPOLOGIES:-cluster,sentinel}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-1000}"
CHANNELS="${CHANNELS:-48}"
RATE="${RATE:-480}"
BEFORE="${BEFORE:-5}"
DEADLINE="${DEADLINE:-30}"
SETTLE="${SETTLE:-3}"
BACKOFF_MIN="${BACKOFF_MIN:-500}"
BACKOFF_MAX="${BACKOFF_MAX:-10000}"
THREADS="${THREADS:-1}"
RESULTS="${RESULTS:-target/bench-results/failover-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-failover: $*" >&2; }

# --- 1. dependencies and build ------------------------------------------------------------
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_redis_server
build_release
raise_nofile "$CONNECTIONS" connections
workdir failover

GYRE_PORT="$(free_port 18300)"
namespace='history_size = 100
history_ttl = "300s"
force_recovery = true'
failover_args=(--url "http://127.0.0.1:$GYRE_PORT" --connections "$CONNECTIONS"
  --channels "$CHANNELS" --rate "$RATE" --before "$BEFORE" --deadline "$DEADLINE"
  --settle "$SETTLE" --backoff-min-ms "$BACKOFF_MIN" --backoff-max-ms "$BACKOFF_MAX"
  --threads "$THREADS")

# Starts a sentinel on port $1 watching the primary on port $2 as `gyre`; sets REDIS_PID.
start_sentinel() { # port primary_port
  mkdir -p "$TMP/sentinel-$1"
  cat >"$TMP/sentinel-$1/sentinel.conf" <<EOF
port $1
bind 127.0.0.1
dir $TMP/sentinel-$1
sentinel monitor gyre 127.0.0.1 $2 2
sentinel down-after-milliseconds gyre 1000
sentinel failover-timeout gyre 5000
EOF
  "${SERVER_PIN[@]}" redis-server "$TMP/sentinel-$1/sentinel.conf" --sentinel >>"$TMP/sentinel-$1.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$1" sentinel
}

# `SENTINEL MASTER gyre` field $2 as sentinel $1 sees it.
sentinel_field() { redis-cli -p "$1" SENTINEL MASTER gyre 2>/dev/null | tr -d '\r' | grep -A1 -x "$2" | tail -n 1; }

run_cluster() { # round
  local victim pid
  log "cluster round $1/$ROUNDS: starting six nodes"
  start_cluster 21300
  victim="$(cluster_owner bench:f0)"
  pid="$(cluster_pid "$victim")"
  write_gyre_config "$GYRE_PORT" "cluster_address = [\"$CLUSTER_SEEDS\"]" "" "$namespace"
  launch_gyre "$GYRE_PORT"
  log "cluster round $1/$ROUNDS: $CONNECTIONS clients, killing the primary on port $victim"
  "${LOAD_PIN[@]}" "$BENCH" failover "${failover_args[@]}" --redis-cluster "$CLUSTER_SEEDS" --kill-pid "$pid" \
    --kill-addr "127.0.0.1:$victim" --server-pid "$GYRE_PID" --label cluster \
    --tag "round $1" --out "$RESULTS/cluster-$1.json" || log "cluster run $1 failed"
  stop "$GYRE_PID"
  stop_cluster
}

run_sentinel() { # round
  local primary replica s sentinels=() sentinel_pids=() addrs
  log "sentinel round $1/$ROUNDS: primary, replica, three sentinels"
  primary="$(free_port 16790)"
  start_redis "$primary" "sentinel-primary-$1" --loadmodule "$MODULE"
  local primary_pid=$REDIS_PID
  replica="$(free_port $((primary + 1)))"
  start_redis "$replica" "sentinel-replica-$1" --loadmodule "$MODULE" --replicaof 127.0.0.1 "$primary"
  local replica_pid=$REDIS_PID
  s=$((replica + 1))
  for _ in 1 2 3; do
    s="$(free_port "$s")"
    start_sentinel "$s" "$primary"
    sentinels+=("$s")
    sentinel_pids+=("$REDIS_PID")
    s=$((s + 1))
  done
  for _ in $(seq 300); do
    local known=0
    for s in "${sentinels[@]}"; do
      [ "$(sentinel_field "$s" num-other-sentinels)" = 2 ] &&
        [ "$(sentinel_field "$s" num-slaves)" = 1 ] && known=$((known + 1))
    done
    [ "$known" = 3 ] && replicas_linked "$replica" && break
    sleep 0.1
  done
  addrs="$(printf '127.0.0.1:%s,' "${sentinels[@]}")"
  addrs="${addrs%,}"
  write_gyre_config "$GYRE_PORT" "sentinel_address = [\"${addrs//,/\", \"}\"]
sentinel_master_name = \"gyre\"" "" "$namespace"
  launch_gyre "$GYRE_PORT"
  log "sentinel round $1/$ROUNDS: $CONNECTIONS clients, killing the primary on port $primary"
  "${LOAD_PIN[@]}" "$BENCH" failover "${failover_args[@]}" --redis-sentinel "$addrs" --sentinel-master gyre \
    --kill-pid "$primary_pid" --server-pid "$GYRE_PID" --label sentinel --tag "round $1" \
    --out "$RESULTS/sentinel-$1.json" || log "sentinel run $1 failed"
  stop "$GYRE_PID"
  stop "${sentinel_pids[@]}" "$primary_pid" "$replica_pid"
}

# --- 2. the runs ----------------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
  if [[ ,$TOPOLOGIES, == *,cluster,* ]]; then run_cluster "$r"; fi
  if [[ ,$TOPOLOGIES, == *,sentinel,* ]]; then run_sentinel "$r"; fi
done

# --- 3. report ------------------------------------------------------------------------------
{
  echo "Command: \`TOPOLOGIES=$TOPOLOGIES ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS CHANNELS=$CHANNELS RATE=$RATE BEFORE=$BEFORE DEADLINE=$DEADLINE SETTLE=$SETTLE BACKOFF_MIN=$BACKOFF_MIN BACKOFF_MAX=$BACKOFF_MAX scripts/bench-failover.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
  echo
  "$BENCH" failover-report "$RESULTS"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
