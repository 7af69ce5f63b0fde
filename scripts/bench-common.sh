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
