#!/usr/bin/env bash
# Module benchmark: GYRE.PUBLISH with history vs the same steps as a Lua script vs bare PUBLISH
# (and bare XADD with exact MAXLEN, the history append on its own), pipelined, against one redis-server, alternating the three for several rounds.
# Usage: scripts/bench-module.sh [rounds=3] [requests=300000]
# Prints a Markdown table of requests/s per round and the medians; BENCHMARKS.md records it.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
requests="${2:-300000}"
clients=50
pipeline=32
channels=1000
payload="$(printf '{"text":"%0117d"}' 0)" # 128 bytes of JSON

cargo build --release --locked -p gyre-module >/dev/null
dir="$(mktemp -d -t gyre-bench.XXXXXX)"
sock="$dir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$dir" \
  --loadmodule "$PWD/target/release/libgyre.so" >"$dir/redis.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -s "$sock" PING >/dev/null 2>&1 && break; sleep 0.05; done
sha="$(redis-cli -s "$sock" SCRIPT LOAD "$(cat bench/publish_history.lua)")"

# Each run starts from an empty database and first fills every channel's history to its MAXLEN
# (untimed), so the measured requests pay for trimming as a long-running server does.
run() { # command...
  redis-cli -s "$sock" FLUSHALL >/dev/null
  redis-benchmark -s "$sock" -c "$clients" -P "$pipeline" -n $((channels * 150)) -r "$channels" \
    -q "$@" >/dev/null
  redis-benchmark -s "$sock" -c "$clients" -P "$pipeline" -n "$requests" -r "$channels" --csv "$@" \
    | awk -F'","' 'NR==2 { gsub(/"/, "", $2); printf "%d", $2 }'
}

declare -A results
names=(gyre lua publish xadd)
for round in $(seq "$rounds"); do
  results[gyre,$round]=$(run GYRE.PUBLISH "ch:__rand_int__" "$payload" HISTORY 100 300)
  results[lua,$round]=$(run EVALSHA "$sha" 1 "ch:__rand_int__" "$payload" 100 300 2592000 AbCdEfGh)
  results[publish,$round]=$(run PUBLISH "gyre.client.ch:__rand_int__" "$payload")
  results[xadd,$round]=$(run XADD "s:__rand_int__" MAXLEN 100 "*" d "$payload")
  echo "round $round: gyre ${results[gyre,$round]}/s, lua ${results[lua,$round]}/s," \
    "publish ${results[publish,$round]}/s, xadd ${results[xadd,$round]}/s" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| command | $(seq -s ' | ' -f 'round %g' 1 "$rounds") | median (req/s) |"
echo "|---|$(printf -- '---|%.0s' $(seq "$rounds"))---|"
declare -A med
for name in "${names[@]}"; do
  row=()
  for round in $(seq "$rounds"); do row+=("${results[$name,$round]}"); done
  med[$name]=$(median "${row[@]}")
  label=$name
  case $name in
    gyre) label='`GYRE.PUBLISH ch <128 B> HISTORY 100 300`' ;;
    lua) label='Lua script, same steps (`bench/publish_history.lua`)' ;;
    publish) label='bare `PUBLISH` (no subscribers)' ;;
    xadd) label='bare `XADD s MAXLEN 100 * d <128 B>` (the history append alone)' ;;
  esac
  echo "| $label | $(IFS='|'; echo "${row[*]}" | sed 's/|/ | /g') | ${med[$name]} |"
done
awk -v g="${med[gyre]}" -v l="${med[lua]}" -v p="${med[publish]}" \
  'BEGIN { printf "\nGYRE.PUBLISH / Lua = %.2fx (goal >= 4x); GYRE.PUBLISH / PUBLISH = %.2fx (goal >= 0.5x)\n", g / l, g / p }'
