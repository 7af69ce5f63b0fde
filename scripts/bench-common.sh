# Helpers shared by the scripts/bench-*.sh benchmarks; sourced after the script defines `log`.
# Every process a benchmark starts goes into PIDS and is stopped on exit, with its logs copied
# from TMP to RESULTS.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

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
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP/$name" \
    --maxclients 10000 "$@" >>"$TMP/$name.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$port" "$name"
}

# Writes $TMP/gyre.toml for a benchmark gyre listening on port $1 with the Redis engine on port
# $2: anonymous clients, API key `bench-api-key`, and a namespace `bench` anyone may subscribe
# in. $3: more lines for [client]; $4: more lines for the `bench` namespace (its history);
# $5: more sections.
write_gyre_config() { # port redis_port client_lines namespace_lines sections
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
address = ["redis://127.0.0.1:$2"]

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
  "$GYRE" --config "$TMP/gyre.toml" >>"$TMP/gyre.log" 2>&1 &
  GYRE_PID=$!
  PIDS+=("$GYRE_PID")
  wait_port "$2" gyre
}
stop_gyre() {
  stop "$GYRE_PID"
  stop "$GYRE_REDIS_PID"
}
