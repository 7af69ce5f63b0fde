#!/usr/bin/env bash
# Runs Gyre on a fresh machine: builds it, installs redis-server when it is missing, and starts
# Redis with libgyre.so loaded on 127.0.0.1:${GYRE_REDIS_PORT:-6379} in the foreground.
# (The edge proxy `gyre` and its demo page arrive with issue 3; this script will start it too.)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${GYRE_REDIS_PORT:-6379}"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo build --release --locked -p gyre-module
module="$PWD/target/release/libgyre.so"
data_dir="$(mktemp -d -t gyre-redis.XXXXXX)"

cat <<MSG
Redis with the Gyre module on 127.0.0.1:$port (data in $data_dir). In another terminal:
  redis-cli -p $port GYRE.PUBLISH chat:1 '{"text":"hi"}' HISTORY 100 300
  redis-cli -p $port GYRE.HISTORY chat:1
  redis-cli -p $port SUBSCRIBE gyre.client.chat:1
Ctrl-C stops it.
MSG
exec redis-server --port "$port" --bind 127.0.0.1 --dir "$data_dir" --save "" \
  --loadmodule "$module" history-size 100 history-ttl 300
