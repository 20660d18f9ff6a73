#!/usr/bin/env bash
# p99 at half the maximum rate, open loop, against the hello server in the
# same run. For each server (pinned to core 0; the load tool on core 1): a
# closed loop finds the maximum rate, then a fresh server takes an open
# loop at half of it; latency counts from each request's scheduled time.
#
#   benches/open_loop.sh [ROUNDS]
#
# Needs `cargo build --release --features load --bin streamguard
# --bin streamguard-load --example hello_json`. The throttles are off: the
# closed loop heartbeats each viewer as fast as it can, which a player never
# does (the open loop at half the rate stays under them anyway).
set -euo pipefail
ROUNDS=${1:-2}
SG=${SG:-target/release/streamguard} HELLO=${HELLO:-target/release/examples/hello_json}
LOAD=${LOAD:-target/release/streamguard-load}
PORT=${PORT:-18099}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT

start() {
  if [ "$1" = hello ]; then
    taskset -c 0 "$HELLO" "127.0.0.1:$PORT" >/dev/null 2>&1 &
  else
    taskset -c 0 "$SG" --listen "127.0.0.1:$PORT" --store memory \
      --rate-per-stream 0 --rate-per-account 0 >/dev/null 2>&1 &
  fi
  SERVER=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
}

stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

# load OUT ARGS...: runs the load tool on core 1 (its audit may fail
# against hello, which grants everything: the figures are still written).
load() {
  local out=$1; shift
  taskset -c 1 "$LOAD" --target "http://127.0.0.1:$PORT" --viewers 5000 --session 1h \
    --quiet --out "$out" --plot "$DATA/plot.svg" "$@" >/dev/null 2>&1 || true
}

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo "# $ROUNDS rounds, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "# round server closed_loop_max_per_s open_loop_rate p50_ms p99_ms p99.9_ms"
for round in $(seq "$ROUNDS"); do
  for server in hello streamguard; do
    start "$server"
    load "$DATA/closed.json" --loop closed --connections 64 --duration 10s
    stop
    max=$(field "$DATA/closed.json" 'round(d["requests_per_s"])')
    start "$server"
    load "$DATA/open.json" --rate $((max / 2)) --duration 20s
    stop
    echo "$round $server $max $((max / 2)) $(field "$DATA/open.json" \
      '"%s %s %s" % (d["latency"]["p50_ms"], d["latency"]["p99_ms"], d["latency"]["p99.9_ms"])')"
  done
done
