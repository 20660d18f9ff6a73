#!/usr/bin/env bash
# CPU time the server process spends per request (user + system), which
# stays meaningful when wrk and the server share a busy machine.
#   benches/cpu_per_request.sh BINARY STORE [WRK_SCRIPT] [DURATION]
set -euo pipefail
BIN=$1 STORE=$2 SCRIPT=${3:-benches/load/heartbeat.lua} DURATION=${4:-5s}
PORT=${PORT:-18099}
STREAMGUARD_LOG=warn "$BIN" --listen "127.0.0.1:$PORT" --store "$STORE" >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf -H 'X-ID: bench-user' -H 'Content-Type: application/json' \
  -d '{"stream_id":"bench-stream"}' "http://127.0.0.1:$PORT/streams" >/dev/null
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
before=$(ticks)
out=$(wrk -t1 -c64 -d"$DURATION" -s "$SCRIPT" "http://127.0.0.1:$PORT")
after=$(ticks)
requests=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
awk -v t=$((after - before)) -v hz="$HZ" -v n="$requests" -v rps="$rps" \
  'BEGIN { printf "%.1f us CPU/request, %s requests/s\n", t / hz * 1e6 / n, rps }'
