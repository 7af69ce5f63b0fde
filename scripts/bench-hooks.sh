#!/usr/bin/env bash
# The cost of the backend hooks on loopback: connects per second and gyre's CPU per connect
# through the connect proxy (HTTP and GRPC backends that answer at once) against token auth, and
# the RPC round trip through the RPC proxy against gyre's own rpc.ping.
#
#   scripts/bench-hooks.sh
#
# What it does:
#   1. builds gyre and gyre-bench (release);
#   2. starts `gyre-bench hook-backend` (HTTP and GRPC, every answer at once, no work);
#   3. for each MODE (token, http, grpc), ROUNDS times: a fresh gyre (memory engine) and one
#      `gyre-bench hooks` run: CONCURRENCY workers connect (WebSocket upgrade, connect command,
#      reply, close) for DURATION seconds; then RPC_COUNT proxied RPC calls and as many rpc.ping
#      calls on one connection (token mode: RPC through the HTTP backend);
#   4. prints one JSON line per run and writes them to RESULTS.
#
# Options (environment variables, defaults in brackets):
#   MODES [token http grpc]   CONCURRENCY [16]   DURATION [10]   RPC_COUNT [5000]   ROUNDS [3]
#   RESULTS [target/bench-results/hooks-<date>]   SKIP_BUILD=1 uses what is built already
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "==> $*" >&2; }
source scripts/bench-common.sh

MODES="${MODES:-token http grpc}"
CONCURRENCY="${CONCURRENCY:-16}"
DURATION="${DURATION:-10}"
RPC_COUNT="${RPC_COUNT:-5000}"
ROUNDS="${ROUNDS:-3}"
RESULTS="${RESULTS:-target/bench-results/hooks-$(date +%Y%m%d-%H%M%S)}"

build_release
workdir hooks
HTTP_PORT=$(free_port 23100)
GRPC_PORT=$(free_port $((HTTP_PORT + 1)))
"${LOAD_PIN[@]}" "$BENCH" hook-backend --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" >>"$TMP/backend.log" 2>&1 &
PIDS+=("$!")
wait_port "$GRPC_PORT" "hook backend"

GYRE_PORT=$(free_port 23200)
for mode in $MODES; do
  case $mode in
    token) endpoint="" rpc="http://127.0.0.1:$HTTP_PORT/rpc" auth=token ;;
    http) endpoint="http://127.0.0.1:$HTTP_PORT/connect" rpc="http://127.0.0.1:$HTTP_PORT/rpc" auth=cookie ;;
    grpc) endpoint="grpc://127.0.0.1:$GRPC_PORT" rpc="grpc://127.0.0.1:$GRPC_PORT" auth=cookie ;;
    *) log "unknown mode $mode"; exit 1 ;;
  esac
  {
    echo "[http_server]"
    echo "address = \"127.0.0.1\""
    echo "port = $GYRE_PORT"
    echo "[log]"
    echo "level = \"warn\""
    echo "[client.token]"
    echo "hmac_secret_key = \"bench-secret\""
    if [ -n "$endpoint" ]; then
      echo "[client.proxy.connect]"
      echo "enabled = true"
      echo "endpoint = \"$endpoint\""
      echo "http_headers = [\"Cookie\"]"
    fi
    echo "[rpc.proxy]"
    echo "endpoint = \"$rpc\""
    echo "[rpc.without_namespace]"
    echo "proxy_enabled = true"
    echo "[rpc.ping]"
    echo "enabled = true"
  } >"$TMP/gyre.toml"
  for round in $(seq "$ROUNDS"); do
    "${SERVER_PIN[@]}" "$GYRE" --config "$TMP/gyre.toml" >>"$TMP/gyre.log" 2>&1 &
    GYRE_PID=$!
    PIDS+=("$GYRE_PID")
    wait_port "$GYRE_PORT" gyre
    log "$mode, round $round"
    "${LOAD_PIN[@]}" "$BENCH" hooks --url "ws://127.0.0.1:$GYRE_PORT/connection/websocket" --pid "$GYRE_PID" \
      --auth "$auth" --concurrency "$CONCURRENCY" --duration "$DURATION" \
      --rpc-count "$RPC_COUNT" --label "$mode" | tee -a "$RESULTS/hooks.jsonl"
    stop "$GYRE_PID"
  done
done
log "results in $RESULTS/hooks.jsonl"
