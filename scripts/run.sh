#!/usr/bin/env bash
# Runs Gyre on a fresh machine: the `gyre` proxy with its demo page on http://127.0.0.1:8000/,
# backed by Redis with libgyre.so when redis-server is (or can be made) available, else by the
# in-memory engine. Foreground; Ctrl-C stops everything.
#   GYRE_ENGINE=memory scripts/run.sh   # skip Redis
#   GYRE_REDIS_PORT=6390 (default)      # port of the private redis-server this script starts
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${GYRE_ENGINE:-redis}"
redis_port="${GYRE_REDIS_PORT:-6390}"

source scripts/setup-common.sh
if [ "$engine" = redis ]; then
  need_apt=()
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  have_libclang || need_apt+=(libclang-dev)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> installing ${need_apt[*]} (for the Redis engine)"
    if ! apt_install "${need_apt[@]}"; then
      echo "    could not install them: running with the in-memory engine instead"
      engine=memory
    fi
  fi
fi

echo "==> building"
cargo build --release --locked -p gyre-proxy --bin gyre
args=(--config config/demo.toml)
if [ "$engine" = redis ]; then
  cargo build --release --locked -p gyre-module
  data_dir="$(mktemp -d -t gyre-redis.XXXXXX)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$data_dir" --save "" \
    --loadmodule "$PWD/target/release/libgyre.so" >"$data_dir/redis.log" 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$data_dir"' EXIT
  for _ in $(seq 100); do redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break; sleep 0.05; done
  args+=(--engine redis --redis "redis://127.0.0.1:$redis_port")
  publish="redis-cli -p $redis_port GYRE.PUBLISH chat:demo '{\"text\":\"hi from redis-cli\"}'"
else
  publish="curl -s -H 'X-API-Key: demo-api-key' -d '{\"channel\":\"chat:demo\",\"data\":{\"text\":\"hi from curl\"}}' http://127.0.0.1:8000/api/publish"
fi

cat <<MSG

Gyre ($engine engine) on http://127.0.0.1:8000/ — open it in two browser tabs and chat.
Publish from a shell:
  $publish
  curl -s -H 'X-API-Key: demo-api-key' -d '{"channel":"chat:demo","data":{"text":"hi from the API"}}' http://127.0.0.1:8000/api/publish
Clients connect to ws://127.0.0.1:8000/connection/websocket (Centrifugo SDKs work unchanged).
Ctrl-C stops it.

MSG
# This script's own settings are not gyre options (gyre warns about unknown GYRE_* variables).
env -u GYRE_ENGINE -u GYRE_REDIS_PORT ./target/release/gyre "${args[@]}"
