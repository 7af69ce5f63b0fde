# Helpers shared by the scripts/bench-*.sh benchmarks; sourced after the script defines `log`.
# Every process a benchmark starts goes into PIDS and is stopped on exit, with its logs copied
# from TMP to RESULTS.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- CPU pinning (PIN) ------------------------------------------------------------------------
# PIN=1 pins the servers (gyre or nginx, their Redis servers, Sentinels) to SERVER_CPUS and the
# load generator to LOAD_CPUS with taskset, so that the two do not share a core and a latency
# figure says whose queue it measures. Defaults: the first half of the cores for the servers,
# the rest for the load generator (on 2 cores: 0 and 1). bench-nchan.sh then runs every
# measurement unpinned and pinned and reports both ("-pinned" labels); the other scripts run
# pinned only. Processes started after `use_pinning pinned` are prefixed with SERVER_PIN or
# LOAD_PIN; `use_pinning unpinned` clears them.
PIN="${PIN:-}"
CPU_COUNT="$(nproc)"
SERVER_CPUS="${SERVER_CPUS:-0-$(((CPU_COUNT + 1) / 2 - 1))}"
LOAD_CPUS="${LOAD_CPUS:-$(((CPU_COUNT + 1) / 2))-$((CPU_COUNT - 1))}"
SERVER_PIN=()
LOAD_PIN=()
PIN_SUFFIX=""
pinning_enabled() { [ -n "$PIN" ] && [ "$PIN" != 0 ]; }
use_pinning() { # pinned|unpinned
  SERVER_PIN=()
  LOAD_PIN=()
  PIN_SUFFIX=""
  [ "$1" = pinned ] || return 0
  if ! command -v taskset >/dev/null 2>&1; then
    log "PIN is set but taskset is missing (util-linux)"
    exit 1
  fi
  if [ "$CPU_COUNT" -lt 2 ]; then
    log "PIN needs at least 2 cores (this machine has $CPU_COUNT)"
    exit 1
  fi
  SERVER_PIN=(taskset -c "$SERVER_CPUS")
  LOAD_PIN=(taskset -c "$LOAD_CPUS")
  PIN_SUFFIX=-pinned
}
# What the scripts that run each measurement once pin: everything when PIN is set.
if pinning_enabled; then use_pinning pinned; fi
# How bench-nchan.sh runs each measurement: unpinned, then pinned when PIN is set.
pin_modes() { if pinning_enabled; then echo unpinned pinned; else echo unpinned; fi; }

# Installs redis-server with apt-get when it is missing (unless SKIP_INSTALL is set).
need_redis_server() {
  if [ -z "${SKIP_INSTALL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
}

# Builds gyre, libgyre.so and gyre-bench (release) unless SKIP_BUILD is set; sets GYRE, MODULE
# and BENCH to their paths.
build_release() {
  if [ -z "${SKIP_BUILD:-}" ]; then
    log "building gyre, libgyre.so and gyre-bench (release)"
    cargo build --release -p gyre-proxy -p gyre-module -p gyre-bench
  fi
  GYRE="$PWD/target/release/gyre"
  MODULE="$PWD/target/release/libgyre.so"
  BENCH="$PWD/target/release/gyre-bench"
}

# Raises the descriptor limit to the hard limit (sets NOFILE); exits when that is below
# $1 + 200 (the load generator and the server each need a descriptor per connection).
raise_nofile() { # connections what
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  NOFILE="$(ulimit -n)"
  [ "$NOFILE" = unlimited ] && NOFILE=1048576
  if [ "$NOFILE" -lt $(($1 + 200)) ]; then
    log "ulimit -n is $NOFILE, too low for $1 $2"
    exit 1
  fi
}

# Makes RESULTS absolute, creates TMP (gyre-bench-$1.XXXXXX) and stops PIDS on exit.
workdir() { # name
  mkdir -p "$RESULTS"
  RESULTS="$(cd "$RESULTS" && pwd)"
  TMP="$(mktemp -d -t "gyre-bench-$1.XXXXXX")"
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  cp "$TMP"/*.log "$RESULTS"/ 2>/dev/null || true
  rm -rf "$TMP"
}

# A port nothing listens on, starting at $1.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
wait_port() { # port what
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  log "$2 did not start on port $1"
  return 1
}
stop() { # pid...: stops processes started here
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# Starts a throwaway redis-server on port $1 (data in $TMP/$2, log $TMP/$2.log; more arguments
# go to redis-server, e.g. --loadmodule) and waits for it; sets REDIS_PID.
start_redis() { # port name [args...]
  local port=$1 name=$2
  shift 2
  mkdir -p "$TMP/$name"
  "${SERVER_PIN[@]}" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP/$name" \
    --maxclients 10000 "$@" >>"$TMP/$name.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$port" "$name"
}

# Writes $TMP/gyre.toml for a benchmark gyre listening on port $1 with the Redis engine on port
# $2 (or, when $2 holds a `=`, that line in [engine.redis], e.g. a cluster_address): anonymous
# clients, API key `bench-api-key`, and a namespace `bench` anyone may subscribe in. $3: more
# lines for [client]; $4: more lines for the `bench` namespace (its history); $5: more sections.
write_gyre_config() { # port redis_port|redis_line client_lines namespace_lines sections
  local redis_line="address = [\"redis://127.0.0.1:$2\"]"
  case $2 in *=*) redis_line=$2 ;; esac
  cat >"$TMP/gyre.toml" <<EOF
[http_server]
address = "127.0.0.1"
port = $1

[log]
level = "warn"

[shutdown]
timeout = "2s"

[client]
allow_anonymous_connect_without_token = true
${3:-}

[http_api]
key = "bench-api-key"

[engine]
type = "redis"

[engine.redis]
$redis_line

${5:-}

[[channel.namespaces]]
name = "bench"
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
${4:-}
EOF
}

# Starts a Redis with libgyre.so on port $1, then gyre with $TMP/gyre.toml listening on port $2,
# and waits for both; sets GYRE_PID and GYRE_REDIS_PID. Stop gyre first (stop_gyre), so it does
# not log a lost Redis.
start_gyre() { # redis_port gyre_port
  start_redis "$1" gyre-redis --loadmodule "$MODULE"
  GYRE_REDIS_PID=$REDIS_PID
  launch_gyre "$2"
}
# Starts gyre with $TMP/gyre.toml (its Redis already running) and waits for port $1; sets
# GYRE_PID.
launch_gyre() { # gyre_port
  "${SERVER_PIN[@]}" "$GYRE" --config "$TMP/gyre.toml" >>"$TMP/gyre.log" 2>&1 &
  GYRE_PID=$!
  PIDS+=("$GYRE_PID")
  wait_port "$1" gyre
}
stop_gyre() {
  stop "$GYRE_PID"
  stop "$GYRE_REDIS_PID"
}

# --- Redis Cluster and Sentinel (bench-cluster.sh, bench-failover.sh) ------------------------

# Sum of utime + stime of the given processes, in clock ticks (gone processes count 0).
cpu_ticks() { # pid...
  local pid total=0 f
  for pid in "$@"; do
    f="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    f="${f##*) }"
    total=$((total + $(echo "$f" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"

# A port nothing listens on, starting at $1, whose cluster bus port (+10000) is free too. Keep
# $1 + 10000 below the ephemeral range (32768 on Linux by default): a bus port there can be
# taken by any outgoing connection between the check and the bind.
free_cluster_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null ||
    (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# Starts a Redis Cluster of six nodes on free ports from $1 (bus ports +10000), each with
# libgyre.so (`sharded-pubsub yes`), cluster-node-timeout 1500 ms, no persistence, data and logs
# in $TMP/cluster-<port>; creates it with one replica per primary (the first three become the
# primaries) and waits until every node says cluster_state:ok and every replica's link is up.
# Sets CLUSTER_PORTS (array), CLUSTER_PIDS (array, same order), CLUSTER_SEEDS (host:port,…).
start_cluster() { # first_port
  local p=$1 i port addrs=()
  CLUSTER_PORTS=()
  CLUSTER_PIDS=()
  for i in 1 2 3 4 5 6; do
    port="$(free_cluster_port "$p")"
    p=$((port + 1))
    rm -rf "${TMP:?}/cluster-$port" # a node must start without an earlier run's nodes.conf
    start_redis "$port" "cluster-$port" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 1500 --loadmodule "$MODULE" sharded-pubsub yes
    CLUSTER_PORTS+=("$port")
    CLUSTER_PIDS+=("$REDIS_PID")
    addrs+=("127.0.0.1:$port")
  done
  CLUSTER_SEEDS="$(IFS=,; echo "${addrs[*]:0:3}")"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >>"$TMP/cluster-create.log" 2>&1 || {
    log "redis-cli --cluster create failed (cluster-create.log)"
    return 1
  }
  for _ in $(seq 300); do
    local ok=0
    for port in "${CLUSTER_PORTS[@]}"; do
      redis-cli -p "$port" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    if [ "$ok" = 6 ] && [ "$(cluster_replicas | wc -l)" = 3 ] && replicas_linked $(cluster_replicas); then
      return 0
    fi
    sleep 0.1
  done
  log "the cluster did not settle (ports ${CLUSTER_PORTS[*]})"
  return 1
}
stop_cluster() { stop "${CLUSTER_PIDS[@]}"; }

# Whether every replica on the given ports has its link to the primary up.
replicas_linked() { # port...
  local port
  for port in "$@"; do
    redis-cli -p "$port" INFO replication 2>/dev/null | grep -q '^master_link_status:up' || return 1
  done
}

# CLUSTER NODES as node $1 sees it.
cluster_nodes() { redis-cli -p "$1" CLUSTER NODES 2>/dev/null | tr -d '\r'; }
# Ports of the primaries serving slots / of the replicas, as the first answering node sees it.
cluster_primaries() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    cluster_nodes "$port" | awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { split($2, a, "[:@]"); print a[2] }' | sort -n && return
  done
}
cluster_replicas() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    cluster_nodes "$port" | awk '$3 ~ /slave/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }' | sort -n && return
  done
}
# Port of the primary serving the slot of key $1.
cluster_owner() {
  local slot
  slot="$(redis-cli -p "${CLUSTER_PORTS[0]}" CLUSTER KEYSLOT "$1")"
  cluster_nodes "${CLUSTER_PORTS[0]}" | awk -v s="$slot" '$3 ~ /master/ && $3 !~ /fail/ {
    for (i = 9; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = (n > 1 ? r[2] : r[1]);
      if (s >= lo && s <= hi) { split($2, a, "[:@]"); print a[2]; exit } } }'
}
# PID of the cluster node on port $1.
cluster_pid() {
  local i
  for i in "${!CLUSTER_PORTS[@]}"; do
    [ "${CLUSTER_PORTS[$i]}" = "$1" ] && echo "${CLUSTER_PIDS[$i]}" && return
  done
}
# Empties every primary (replicas follow).
cluster_flush() {
  local port
  for port in $(cluster_primaries); do redis-cli -p "$port" FLUSHALL >/dev/null; done
}

# --- One load, two targets (bench-deflate.sh, bench-delta.sh) ---------------------------------
# ab_rounds TAG TARGET...: ROUNDS rounds of one reference-load run per target, alternating, each
# against a fresh gyre (start_gyre on REDIS_PORT/GYRE_PORT); results in
# $RESULTS/ref-<round>-<target>.json. Reads CONNECTIONS CHANNELS PAYLOAD THREADS DRAIN_TIMEOUT
# MESSAGES RATE.
ab_rounds() {
  local tag=$1 r target out
  shift
  for r in $(seq "$ROUNDS"); do
    for target in "$@"; do
      log "round $r/$ROUNDS: $target"
      out="$RESULTS/ref-$r-$target.json"
      start_gyre "$REDIS_PORT" "$GYRE_PORT"
      "${LOAD_PIN[@]}" "$BENCH" load --target "$target" --url "http://127.0.0.1:$GYRE_PORT" --publish redis \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" --server-pid "$GYRE_PID" \
        --redis-pid "$GYRE_REDIS_PID" --label "$target" --tag "$tag" --out "$out" \
        --connections "$CONNECTIONS" --channels "$CHANNELS" --payload-size "$PAYLOAD" \
        --threads "$THREADS" --drain-timeout "$DRAIN_TIMEOUT" --messages "$MESSAGES" \
        --rate "$RATE" || log "FAILED: $target run ($out)"
      stop_gyre
    done
  done
}

# Over the first phase of those results, per target:
ab_median() { # target jq-path -> median or "–"
  jq -rs --arg t "$1" "[.[] | select(.target == \$t) | $2 | select(. != null)] | sort |
    if length == 0 then \"–\" elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end" "$RESULTS"/ref-*.json
}
ab_sum() { jq -rs --arg t "$1" "[.[] | select(.target == \$t) | $2] | add // 0" "$RESULTS"/ref-*.json; }
ab_runs() { jq -rs --arg t "$1" '[.[] | select(.target == $t)] | length' "$RESULTS"/ref-*.json; }
ab_per_run() { # target jq-path -> "v1, v2, …"
  jq -rs --arg t "$1" "[.[] | select(.target == \$t) | $2] | map(tostring) | join(\", \")" "$RESULTS"/ref-*.json
}
ab_errors() { jq -rs '[.[] | .errors | to_entries[] | "\(.key): \(.value)"] | unique | join("; ")' "$RESULTS"/ref-*.json; }
ab_ratio() { # a b
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "–" || b == "–" || b == 0) print "–"; else printf "%.2f×", a / b }'
}
ab_fmt() { # value digits
  awk -v v="$1" -v d="$2" 'BEGIN { if (v == "–") print v; else printf "%.*f", d, v }'
}
ab_ms() { # µs value digits -> ms
  ab_fmt "$(awk -v v="$1" 'BEGIN { print (v == "–") ? v : v / 1000 }')" "$2"
}
