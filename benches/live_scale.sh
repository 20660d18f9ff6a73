#!/usr/bin/env bash
# Heartbeat throughput and CPU per request with no other live streams and
# with 10 M of them (memory store): the server pinned to core 0, the load
# tool on core 1. Two closed-loop runs of 5 000 viewers, then a preload of
# PRELOAD one-stream accounts, then the same two runs; server CPU per
# request from /proc, RSS from /proc.
#
#   benches/live_scale.sh [PRELOAD]
#
# Needs `cargo build --release --features load --bin streamguard --bin
# streamguard-load`. Throttles are off: a closed loop drives each viewer
# far faster than a player.
set -euo pipefail
PRELOAD=${1:-10000000}
SG=${SG:-target/release/streamguard} LOAD=${LOAD:-target/release/streamguard-load}
PORT=${PORT:-18099}
HZ=$(getconf CLK_TCK)
DATA=$(mktemp -d)
taskset -c 0 "$SG" --listen "127.0.0.1:$PORT" --store memory --lease-ttl 3h \
  --rate-per-stream 0 --rate-per-account 0 >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER/status"; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# run LABEL: one closed loop of 10 s, printed as a table row.
run() {
  local before after
  before=$(cpu)
  taskset -c 1 "$LOAD" --target "http://127.0.0.1:$PORT" --viewers 5000 --session 3h \
    --loop closed --connections 64 --duration 10s --quiet \
    --out "$DATA/run.json" --plot "$DATA/run.svg" >/dev/null 2>&1
  after=$(cpu)
  local n rps p99
  n=$(field "$DATA/run.json" 'd["requests"]')
  rps=$(field "$DATA/run.json" 'round(d["requests_per_s"])')
  p99=$(field "$DATA/run.json" 'd["latency"]["p99_ms"]')
  awk -v l="$1" -v t=$((after - before)) -v hz="$HZ" -v n="$n" -v rps="$rps" -v p99="$p99" -v rss="$(rss_mb)" \
    'BEGIN { printf "%s %d %.2f %s %s\n", l, rps, t / hz * 1e6 / n, p99, rss }'
}

echo "# load average $(cut -d' ' -f1 /proc/loadavg)"
echo "# live_streams requests_per_s us_cpu_per_request p99_ms server_rss_mb"
run 5000
run 5000
taskset -c 1 "$LOAD" --target "http://127.0.0.1:$PORT" --preload "$PRELOAD" --connections 64 \
  --duration 0s --quiet --out "$DATA/preload.json" --plot "$DATA/preload.svg" >/dev/null 2>&1
echo "# preloaded: $(field "$DATA/preload.json" 'd["preload"]')"
run "$PRELOAD+5000"
run "$PRELOAD+5000"
