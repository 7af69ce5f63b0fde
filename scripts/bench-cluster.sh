#!/usr/bin/env bash
# One Redis vs a 3-primary Redis Cluster (three replicas) on this machine: GYRE.PUBLISH
# throughput, and fan-out through gyre.
#
#   scripts/bench-cluster.sh
#
# What it does:
#   1. installs redis-server (with redis-benchmark) with apt-get when missing (sudo only when not
#      root), builds gyre, libgyre.so and gyre-bench (release);
#   2. starts, in its own temporary directory and on free ports: a Redis Cluster of six nodes
#      (three primaries, one replica each, libgyre.so with `sharded-pubsub yes`,
#      cluster-node-timeout 1500 ms), one standalone Redis with libgyre.so, and a second
#      standalone one with a replica (all without persistence);
#   3. publish throughput, PUBLISH_ROUNDS rounds alternating the three setups: redis-benchmark
#      with CLIENTS clients, pipelines of PIPELINE, REQUESTS requests of
#      `GYRE.PUBLISH <channel> <128 B JSON> HISTORY 100 300` over 3 × CHANNELS channels picked at
#      random: `ch:__rand_int__` on a standalone Redis, `ch:{tag}:__rand_int__` with
#      `redis-benchmark --cluster` on the cluster (it spreads the clients over the primaries and
#      replaces `{tag}` with a hash tag of a slot the client's primary serves, so every command
#      lands on its owner without a redirect: CHANNELS channels per primary). Before each
#      measured run the data is flushed and every channel's history filled to its MAXLEN
#      (untimed). Requests/s, and CPU (utime + stime from /proc) of the primaries, the replicas
#      and redis-benchmark during the measured run;
#   4. fan-out, FANOUT_ROUNDS rounds alternating: a fresh gyre on the standalone Redis
#      (`engine.redis.address`) and a fresh gyre on the cluster (`engine.redis.cluster_address`;
#      the cluster is flushed, not restarted). `gyre-bench load`: CONNECTIONS WebSocket subscribers
#      over CHANNELS_FANOUT channels (`bench:c<i>`, spread over the slots), MESSAGES publications
#      of PAYLOAD bytes at RATE/s via GYRE.PUBLISH (to the slot's primary on the cluster, one
#      pipeline per primary); gyre's CPU per delivery, latency, losses, the primaries' CPU per
#      publication;
#   5. prints Markdown tables and writes them (report.md), every JSON result and the logs to
#      RESULTS.
#
# Options (environment variables, defaults in brackets):
#   PARTS [publish,fanout]    which parts to run
#   PUBLISH_ROUNDS [5]        publish-throughput rounds (each: single, single + replica, cluster)
#   REQUESTS [300000]         measured GYRE.PUBLISH requests per run
#   CLIENTS [50]              redis-benchmark clients (over all primaries on the cluster)
#   PIPELINE [32]             redis-benchmark pipeline depth
#   CHANNELS [1000]           channels per primary (3 × CHANNELS on a standalone Redis)
#   FANOUT_ROUNDS [3]         fan-out rounds (each: single, cluster)
#   CONNECTIONS [5000]        WebSocket subscribers
#   CHANNELS_FANOUT [30]      fan-out channels (subscriber i takes channel i % CHANNELS_FANOUT)
#   MESSAGES [3000]           publications per fan-out run
#   RATE [600]                publications/s (600/s over 30 channels of ~167 subscribers =
#                             ~100k deliveries/s, the reference load's delivery rate)
#   PAYLOAD [128]             payload bytes
#   DRAIN_TIMEOUT [10]        seconds to wait for outstanding deliveries
#   THREADS [1]               worker threads of the load generator
#   RESULTS [target/bench-results/cluster-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# Default run: ~6 minutes after the build on 2 cores. Everything listens on 127.0.0.1; every
# process started here is stopped on exit and the temporary directory removed.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS="${PARTS:-publish,fanout}"
PUBLISH_ROUNDS="${PUBLISH_ROUNDS:-5}"
REQUESTS="${REQUESTS:-300000}"
CLIENTS="${CLIENTS:-50}"
PIPELINE="${PIPELINE:-32}"
CHANNELS="${CHANNELS:-1000}"
FANOUT_ROUNDS="${FANOUT_ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-5000}"
CHANNELS_FANOUT="${CHANNELS_FANOUT:-30}"
MESSAGES="${MESSAGES:-3000}"
RATE="${RATE:-600}"
PAYLOAD="${PAYLOAD:-128}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-10}"
THREADS="${THREADS:-1}"
RESULTS="${RESULTS:-target/bench-results/cluster-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-cluster: $*" >&2; }

# --- 1. dependencies and build ------------------------------------------------------------
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
if [ -z "${SKIP_INSTALL:-}" ] && ! command -v redis-benchmark >/dev/null 2>&1; then
  log "installing redis-server (redis-benchmark, redis-cli)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
build_release
raise_nofile "$CONNECTIONS" connections
workdir cluster
mkdir -p "$RESULTS/fanout"

# --- 2. the servers -------------------------------------------------------------------------
SINGLE_PORT="$(free_port 16590)"
start_redis "$SINGLE_PORT" single --loadmodule "$MODULE"
SINGLE_PID=$REDIS_PID
PAIR_PORT="$(free_port $((SINGLE_PORT + 1)))"
start_redis "$PAIR_PORT" pair-primary --loadmodule "$MODULE"
PAIR_PID=$REDIS_PID
PAIR_REPLICA_PORT="$(free_port $((PAIR_PORT + 1)))"
start_redis "$PAIR_REPLICA_PORT" pair-replica --loadmodule "$MODULE" \
  --replicaof 127.0.0.1 "$PAIR_PORT"
PAIR_REPLICA_PID=$REDIS_PID
for _ in $(seq 100); do replicas_linked "$PAIR_REPLICA_PORT" && break; sleep 0.1; done
log "starting a 6-node cluster"
start_cluster 21100
mapfile -t PRIMARY_PORTS < <(cluster_primaries)
mapfile -t REPLICA_PORTS < <(cluster_replicas)
PRIMARY_PIDS=()
REPLICA_PIDS=()
for p in "${PRIMARY_PORTS[@]}"; do PRIMARY_PIDS+=("$(cluster_pid "$p")"); done
for p in "${REPLICA_PORTS[@]}"; do REPLICA_PIDS+=("$(cluster_pid "$p")"); done
log "cluster: primaries ${PRIMARY_PORTS[*]}, replicas ${REPLICA_PORTS[*]}"

# --- 3. GYRE.PUBLISH throughput ---------------------------------------------------------------
payload="$(printf '{"text":"%0117d"}' 0)" # 128 bytes of JSON

# Flushes, fills every channel's history (untimed), then measures. Arguments: the primaries'
# ports (space-separated), their pids, the replicas' pids, the channel pattern, the channels per
# connection target (-r), then redis-benchmark's connection arguments. Prints
# "requests/s primaries_cpu_s replicas_cpu_s client_cpu_s".
publish_run() {
  local ports=$1 ppids=$2 rpids=$3 channel=$4 r=$5 port p0 r0 c
  shift 5
  for port in $ports; do redis-cli -p "$port" FLUSHALL >/dev/null; done
  redis-benchmark "$@" -c "$CLIENTS" -P "$PIPELINE" -n $((3 * CHANNELS * 150)) -r "$r" -q \
    GYRE.PUBLISH "$channel" "$payload" HISTORY 100 300 >/dev/null 2>&1
  sleep 1 # let the replicas catch up with the fill
  # shellcheck disable=SC2086
  p0=$(cpu_ticks $ppids)
  # shellcheck disable=SC2086
  r0=$(cpu_ticks $rpids)
  local TIMEFORMAT='%U %S' out
  { time redis-benchmark "$@" -c "$CLIENTS" -P "$PIPELINE" -n "$REQUESTS" -r "$r" --csv \
    GYRE.PUBLISH "$channel" "$payload" HISTORY 100 300 >"$TMP/rb.csv" 2>/dev/null; } 2>"$TMP/rb.time"
  sleep 0.5 # the replicas' share of the last requests
  local p1 r1
  # shellcheck disable=SC2086
  p1=$(cpu_ticks $ppids)
  # shellcheck disable=SC2086
  r1=$(cpu_ticks $rpids)
  out="$(awk -F'","' '/^"GYRE/ { gsub(/"/, "", $2); printf "%d", $2 }' "$TMP/rb.csv")"
  c="$(awk '{ printf "%.2f", $1 + $2 }' "$TMP/rb.time")"
  awk -v rps="$out" -v p=$((p1 - p0)) -v r=$((r1 - r0)) -v c="$c" -v hz="$CLK_TCK" \
    'BEGIN { printf "%s %.2f %.2f %s\n", rps, p / hz, r / hz, c }'
}

if [[ ,$PARTS, == *,publish,* ]]; then
  : >"$RESULTS/publish.txt"
  for round in $(seq "$PUBLISH_ROUNDS"); do
    log "publish round $round/$PUBLISH_ROUNDS"
    echo "single $round $(publish_run "$SINGLE_PORT" "$SINGLE_PID" "" 'ch:__rand_int__' \
      $((3 * CHANNELS)) -p "$SINGLE_PORT")" >>"$RESULTS/publish.txt"
    echo "replica $round $(publish_run "$PAIR_PORT" "$PAIR_PID" "$PAIR_REPLICA_PID" \
      'ch:__rand_int__' $((3 * CHANNELS)) -p "$PAIR_PORT")" >>"$RESULTS/publish.txt"
    echo "cluster $round $(publish_run "${PRIMARY_PORTS[*]}" "${PRIMARY_PIDS[*]}" \
      "${REPLICA_PIDS[*]}" 'ch:{tag}:__rand_int__' "$CHANNELS" -p "${PRIMARY_PORTS[0]}" \
      --cluster)" >>"$RESULTS/publish.txt"
    tail -n 3 "$RESULTS/publish.txt" >&2
  done
fi

# --- 4. fan-out through gyre ----------------------------------------------------------------
GYRE_PORT="$(free_port 18200)"
GYRE_REDIS_PORT="$(free_port 16690)"
namespace='history_size = 10
history_ttl = "60s"'
load_common=(--connections "$CONNECTIONS" --channels "$CHANNELS_FANOUT" --payload-size "$PAYLOAD"
  --threads "$THREADS" --drain-timeout "$DRAIN_TIMEOUT" --messages "$MESSAGES" --rate "$RATE"
  --tag reference)

if [[ ,$PARTS, == *,fanout,* ]]; then
  primary_pid_args=()
  for pid in "${PRIMARY_PIDS[@]}"; do primary_pid_args+=(--redis-pid "$pid"); done
  for round in $(seq "$FANOUT_ROUNDS"); do
    log "fan-out round $round/$FANOUT_ROUNDS: gyre on one Redis"
    write_gyre_config "$GYRE_PORT" "$GYRE_REDIS_PORT" "" "$namespace"
    start_gyre "$GYRE_REDIS_PORT" "$GYRE_PORT"
    "${LOAD_PIN[@]}" "$BENCH" load --target gyre-ws --url "http://127.0.0.1:$GYRE_PORT" --publish redis \
      --redis-url "redis://127.0.0.1:$GYRE_REDIS_PORT" --server-pid "$GYRE_PID" \
      --redis-pid "$GYRE_REDIS_PID" --label single --out "$RESULTS/fanout/$round-single.json" \
      "${load_common[@]}" || log "single run failed"
    stop_gyre

    log "fan-out round $round/$FANOUT_ROUNDS: gyre on the cluster"
    cluster_flush
    write_gyre_config "$GYRE_PORT" "cluster_address = [\"$CLUSTER_SEEDS\"]" "" "$namespace"
    launch_gyre "$GYRE_PORT"
    "${LOAD_PIN[@]}" "$BENCH" load --target gyre-ws --url "http://127.0.0.1:$GYRE_PORT" --publish redis \
      --redis-cluster "$CLUSTER_SEEDS" --server-pid "$GYRE_PID" "${primary_pid_args[@]}" \
      --label cluster --out "$RESULTS/fanout/$round-cluster.json" "${load_common[@]}" \
      || log "cluster run failed"
    stop "$GYRE_PID"
  done
fi

# --- 5. report ------------------------------------------------------------------------------
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "–" }'; }
{
  echo "Command: \`PARTS=$PARTS PUBLISH_ROUNDS=$PUBLISH_ROUNDS REQUESTS=$REQUESTS CLIENTS=$CLIENTS PIPELINE=$PIPELINE CHANNELS=$CHANNELS FANOUT_ROUNDS=$FANOUT_ROUNDS CONNECTIONS=$CONNECTIONS CHANNELS_FANOUT=$CHANNELS_FANOUT MESSAGES=$MESSAGES RATE=$RATE PAYLOAD=$PAYLOAD scripts/bench-cluster.sh\`"
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); Redis $(redis-server --version | awk '{print $3}' | tr -d 'v='); load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  if [ -s "$RESULTS/publish.txt" ]; then
    echo "GYRE.PUBLISH with history, pipelined (medians of $PUBLISH_ROUNDS rounds; CPU during the measured $REQUESTS requests):"
    echo
    echo "| setup | requests/s per round | **median requests/s** | primaries CPU s | replicas CPU s | redis-benchmark CPU s | primary CPU µs per publish | replica CPU µs per publish |"
    echo "|---|---|---|---|---|---|---|---|"
    for label in single replica cluster; do
      rows="$(awk -v l=$label '$1 == l' "$RESULTS/publish.txt")"
      [ -n "$rows" ] || continue
      name=$label
      case $label in
        single) name="one Redis" ;;
        replica) name="one Redis + 1 replica" ;;
        cluster) name="cluster: 3 primaries + 3 replicas" ;;
      esac
      per_round="$(echo "$rows" | awk '{ printf "%s%s", (NR > 1 ? " / " : ""), $3 }')"
      rps="$(echo "$rows" | awk '{ print $3 }' | median)"
      pc="$(echo "$rows" | awk '{ print $4 }' | median)"
      rc="$(echo "$rows" | awk '{ print $5 }' | median)"
      cc="$(echo "$rows" | awk '{ print $6 }' | median)"
      pu="$(echo "$rows" | awk -v n="$REQUESTS" '{ printf "%.2f\n", $4 * 1e6 / n }' | median)"
      ru="$(echo "$rows" | awk -v n="$REQUESTS" '{ printf "%.2f\n", $5 * 1e6 / n }' | median)"
      echo "| $name | $per_round | **$rps** | $pc | $rc | $cc | $pu | $ru |"
    done
    echo
  fi
  if compgen -G "$RESULTS/fanout/*.json" >/dev/null; then
    echo "Fan-out through gyre: $CONNECTIONS WebSocket subscribers over $CHANNELS_FANOUT channels, $MESSAGES publications of $PAYLOAD B at $RATE/s (\"Redis CPU\" = the primaries)."
    echo
    "$BENCH" report "$RESULTS/fanout"
  fi
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
