#!/usr/bin/env bash
# Side-by-side benchmark on loopback: gyre (Redis engine, libgyre.so) vs Nchan (nginx + Redis),
# and the physical floor (CPU per WebSocket frame written to loopback TCP).
#
#   scripts/bench-nchan.sh
#
# What it does:
#   1. installs nginx + libnginx-mod-nchan + redis-server with apt-get when missing (sudo only
#      when not root), builds gyre, libgyre.so and gyre-bench (release);
#   2. `gyre-bench floor`: the writing thread's CPU per frame, 1/4/16 frames per write();
#   3. ROUNDS reference rounds alternating gyre and Nchan: CONNECTIONS WebSocket subscribers over
#      CHANNELS channels, MESSAGES publications of PAYLOAD bytes at RATE/s (GYRE.PUBLISH for gyre,
#      POST /pub/<channel> for Nchan). Every run gets a fresh server and a fresh Redis, so the RSS
#      per idle connection is measured from a clean process;
#   4. a saturation sweep for both: the same subscribers, SWEEP_RATES publications/s for
#      SWEEP_SECONDS each, SWEEP_PUBLISHERS concurrent publishers (deliveries/s vs p99);
#   5. prints Markdown tables (medians, gyre/nchan and gyre/floor ratios) and writes every JSON
#      result, the tables (report.md) and the server logs to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   ROUNDS [3]             reference rounds per system
#   CONNECTIONS [5000]     WebSocket subscribers
#   CHANNELS [10]          channels (subscriber i takes channel i % CHANNELS)
#   MESSAGES [1000]        publications per reference round
#   RATE [200]             publications/s in the reference rounds
#   PUBLISHERS [1]         concurrent publishers in the reference rounds
#   PAYLOAD [128]          payload bytes (JSON with the send timestamp, padded)
#   SWEEP_RATES [25,50,100,200,400]  publications/s of the sweep steps; empty skips the sweep
#   SWEEP_SECONDS [5]      seconds of publishing per sweep step
#   SWEEP_PUBLISHERS [4]   concurrent publishers in the sweep
#   DRAIN_TIMEOUT [10]     seconds to wait for outstanding deliveries after a phase's last publish
#   FLOOR_ROUNDS [40]      rounds per frames-per-write value of the floor program
#   THREADS [1]            worker threads of the load generator (leave the CPU to the servers)
#   PIN [unset]            1: also run every round and sweep pinned with taskset, the server
#                          (gyre or nginx, and its Redis) on SERVER_CPUS and the load generator
#                          on LOAD_CPUS (defaults: first half of the cores / the rest, on 2
#                          cores 0 / 1); reported beside the unpinned runs as gyre-pinned and
#                          nchan-pinned
#   RESULTS [target/bench-results/nchan-<date>]  output directory
#   SKIP_INSTALL=1, SKIP_BUILD=1   use what is installed / built already
#
# Default run: ~10 minutes after the build on 2 cores. Everything listens on 127.0.0.1 on free
# ports; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-5000}"
CHANNELS="${CHANNELS:-10}"
MESSAGES="${MESSAGES:-1000}"
RATE="${RATE:-200}"
PUBLISHERS="${PUBLISHERS:-1}"
PAYLOAD="${PAYLOAD:-128}"
SWEEP_RATES="${SWEEP_RATES-25,50,100,200,400}"
SWEEP_SECONDS="${SWEEP_SECONDS:-5}"
SWEEP_PUBLISHERS="${SWEEP_PUBLISHERS:-4}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-10}"
FLOOR_ROUNDS="${FLOOR_ROUNDS:-40}"
THREADS="${THREADS:-1}"
RESULTS="${RESULTS:-target/bench-results/nchan-$(date +%Y%m%d-%H%M%S)}"

log() { echo "bench-nchan: $*" >&2; }

# --- 1. dependencies and build ------------------------------------------------------------
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
build_release
# The load generator needs a descriptor per subscriber; nginx gets its own limit below.
raise_nofile "$CONNECTIONS" connections
workdir nchan
chmod 755 "$TMP" # nginx workers run as nobody when started by root

GYRE_REDIS_PORT="$(free_port 16390)"
GYRE_PORT="$(free_port 18000)"
NCHAN_REDIS_PORT="$(free_port $((GYRE_REDIS_PORT + 1)))"
NCHAN_PORT="$(free_port $((GYRE_PORT + 1)))"

# gyre: anonymous clients may subscribe in the `bench` namespace. Its history (10 publications,
# 60 s) matches Nchan's message buffer below, so both stores every publication in Redis.
# client.queue_max_size stays at its default (1 MiB per connection): 128 B publications never
# come near it at the reference rate; a sweep step that does shows up as closed connections.
write_gyre_config "$GYRE_PORT" "$GYRE_REDIS_PORT" "" 'history_size = 10
history_ttl = "60s"'

# nginx + Nchan: one worker, Redis storage (distributed), WebSocket subscribers on /sub/<ch>,
# HTTP publisher on /pub/<ch>, buffer of 10 messages for 60 s.
WORKER_NOFILE=$((CONNECTIONS * 2 + 1000))
[ "$WORKER_NOFILE" -gt "$NOFILE" ] && [ "$(id -u)" -ne 0 ] && WORKER_NOFILE=$NOFILE
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $WORKER_NOFILE;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream redis_store {
    nchan_redis_server redis://127.0.0.1:$NCHAN_REDIS_PORT;
    nchan_redis_storage_mode distributed;
  }
  server {
    listen 127.0.0.1:$NCHAN_PORT backlog=4096;
    location ~ ^/pub/(\w+)$ {
      nchan_publisher http;
      nchan_channel_id \$1;
      nchan_redis_pass redis_store;
      nchan_message_buffer_length 10;
      nchan_message_timeout 60s;
    }
    location ~ ^/sub/(\w+)$ {
      nchan_subscriber websocket;
      nchan_channel_id \$1;
      nchan_redis_pass redis_store;
      nchan_subscriber_first_message newest;
      nchan_websocket_ping_interval 25;
    }
  }
}
EOF

start_nchan() { # -> NGINX_PID (master), NCHAN_WORKERS, NCHAN_REDIS_PID
  start_redis "$NCHAN_REDIS_PORT" nchan-redis
  NCHAN_REDIS_PID=$REDIS_PID
  "${SERVER_PIN[@]}" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx.conf" >>"$TMP/nginx-error.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$NCHAN_PORT" nginx
  NCHAN_WORKERS=()
  for _ in $(seq 100); do
    mapfile -t NCHAN_WORKERS < <(pgrep -P "$NGINX_PID" || true)
    [ ${#NCHAN_WORKERS[@]} -gt 0 ] && break
    sleep 0.05
  done
  [ ${#NCHAN_WORKERS[@]} -gt 0 ] || { log "no nginx worker"; return 1; }
  # Nchan connects to Redis lazily; give it a moment to be ready.
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$NCHAN_REDIS_PORT" CLIENT LIST 2>/dev/null | wc -l)" -gt 1 ] && break
    sleep 0.05
  done
}

load_common=(--connections "$CONNECTIONS" --channels "$CHANNELS" --payload-size "$PAYLOAD"
  --threads "$THREADS" --drain-timeout "$DRAIN_TIMEOUT")

run_gyre() { # tag out [args...]
  local tag=$1 out=$2
  shift 2
  start_gyre "$GYRE_REDIS_PORT" "$GYRE_PORT"
  "${LOAD_PIN[@]}" "$BENCH" load --target gyre-ws --url "http://127.0.0.1:$GYRE_PORT" --publish redis \
    --redis-url "redis://127.0.0.1:$GYRE_REDIS_PORT" --server-pid "$GYRE_PID" \
    --redis-pid "$GYRE_REDIS_PID" --label "gyre$PIN_SUFFIX" --tag "$tag" --out "$out" "${load_common[@]}" "$@" \
    || log "gyre run failed ($out)"
  stop_gyre
}

run_nchan() { # tag out [args...]
  local tag=$1 out=$2 w server_pids=()
  shift 2
  start_nchan
  for w in "${NCHAN_WORKERS[@]}"; do server_pids+=(--server-pid "$w"); done
  "${LOAD_PIN[@]}" "$BENCH" load --target nchan-ws --url "http://127.0.0.1:$NCHAN_PORT" --publish nchan \
    "${server_pids[@]}" --redis-pid "$NCHAN_REDIS_PID" --label "nchan$PIN_SUFFIX" --tag "$tag" \
    --out "$out" "${load_common[@]}" "$@" || log "nchan run failed ($out)"
  stop "$NGINX_PID"
  stop "$NCHAN_REDIS_PID"
}

# --- 2. floor -------------------------------------------------------------------------------
log "floor: $CONNECTIONS loopback connections"
"$BENCH" floor --connections "$CONNECTIONS" --rounds "$FLOOR_ROUNDS" --payload-size "$PAYLOAD" \
  --out "$RESULTS/floor.json"

# --- 3. reference rounds --------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
  for pinning in $(pin_modes); do
    use_pinning "$pinning"
    log "round $r/$ROUNDS: gyre ($pinning)"
    run_gyre reference "$RESULTS/ref-$r-gyre$PIN_SUFFIX.json" --messages "$MESSAGES" \
      --rate "$RATE" --publishers "$PUBLISHERS"
    log "round $r/$ROUNDS: nchan ($pinning)"
    run_nchan reference "$RESULTS/ref-$r-nchan$PIN_SUFFIX.json" --messages "$MESSAGES" \
      --rate "$RATE" --publishers "$PUBLISHERS"
  done
done

# --- 4. saturation sweep --------------------------------------------------------------------
if [ -n "$SWEEP_RATES" ]; then
  for pinning in $(pin_modes); do
    use_pinning "$pinning"
    log "sweep: gyre at $SWEEP_RATES publications/s ($pinning)"
    run_gyre sweep "$RESULTS/sweep-gyre$PIN_SUFFIX.json" --rate "$SWEEP_RATES" \
      --duration "$SWEEP_SECONDS" --publishers "$SWEEP_PUBLISHERS"
    log "sweep: nchan at $SWEEP_RATES publications/s ($pinning)"
    run_nchan sweep "$RESULTS/sweep-nchan$PIN_SUFFIX.json" --rate "$SWEEP_RATES" \
      --duration "$SWEEP_SECONDS" --publishers "$SWEEP_PUBLISHERS"
  done
fi

# --- 5. report ------------------------------------------------------------------------------
{
  echo "Command: \`PIN=$PIN ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS CHANNELS=$CHANNELS MESSAGES=$MESSAGES RATE=$RATE PAYLOAD=$PAYLOAD SWEEP_RATES=$SWEEP_RATES SWEEP_SECONDS=$SWEEP_SECONDS SWEEP_PUBLISHERS=$SWEEP_PUBLISHERS scripts/bench-nchan.sh\`"
  pinning_enabled && echo "Pinned runs: servers on CPUs $SERVER_CPUS, load generator on CPUs $LOAD_CPUS (taskset)."
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r); $("$NGINX" -v 2>&1 | cut -d: -f2 | xargs), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?'), Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
  echo
  "$BENCH" report "$RESULTS"
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
