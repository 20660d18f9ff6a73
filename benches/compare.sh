#!/usr/bin/env bash
# streamguard against the hello server, alternately in one run: server
# pinned to core 0, wrk to core 1, CPU per request from /proc (user +
# system ticks of the server process / requests), requests/s from wrk.
#
#   benches/compare.sh WHAT [ROUNDS] [DURATION]
#   WHAT: heartbeat        memory store, default logging
#         heartbeat-quiet  memory store, STREAMGUARD_LOG=warn (no access log)
#         start-file       durable starts on a fresh file: store, one account each
#
# Needs target/release/streamguard and target/release/examples/hello_json
# (cargo build --release --bin streamguard --example hello_json) and wrk.
set -euo pipefail
WHAT=$1 ROUNDS=${2:-3} DURATION=${3:-5s}
SG=${SG:-target/release/streamguard} HELLO=${HELLO:-target/release/examples/hello_json}
PORT=${PORT:-18099}
HZ=$(getconf CLK_TCK)
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT

case $WHAT in
  heartbeat) STORE=memory SCRIPT=benches/load/heartbeat.lua LOG=info ;;
  heartbeat-quiet) STORE=memory SCRIPT=benches/load/heartbeat.lua LOG=warn ;;
  start-file) STORE=file SCRIPT=benches/load/start.lua LOG=info ;;
  *) echo "unknown WHAT: $WHAT" >&2; exit 2 ;;
esac

# measure NAME CMD...: starts the server pinned to core 0, loads it from
# core 1, prints "NAME us_per_request requests_per_s".
measure() {
  local name=$1; shift
  STREAMGUARD_LOG=$LOG taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
  curl -sf -H 'X-ID: bench-user' -H 'Content-Type: application/json' \
    -d '{"stream_id":"bench-stream"}' "http://127.0.0.1:$PORT/streams" >/dev/null || true
  local before after out
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" -s "$SCRIPT" "http://127.0.0.1:$PORT")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local n rps
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  awk -v name="$name" -v t=$((after - before)) -v hz="$HZ" -v n="$n" -v rps="$rps" \
    'BEGIN { printf "%s %.2f %.0f\n", name, t / hz * 1e6 / n, rps }'
}

echo "# $WHAT, $ROUNDS rounds of $DURATION, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "# round server us_cpu_per_request requests_per_s"
for round in $(seq "$ROUNDS"); do
  h=$(measure hello "$HELLO" "127.0.0.1:$PORT")
  rm -rf "$DATA/store"
  if [ "$STORE" = file ]; then s="file:$DATA/store"; else s=memory; fi
  # One stream takes every request here: the per-stream and per-account
  # throttles (meant for players, 10/s and 200/s) would answer most with 429.
  g=$(measure streamguard "$SG" --listen "127.0.0.1:$PORT" --store "$s" \
    --rate-per-stream 0 --rate-per-account 0)
  echo "$round $h"
  echo "$round $g"
  echo "$h $g" | awk -v r="$round" '{ printf "%s ratio cpu %.2f, rate %.2f\n", r, $5 / $2, $6 / $3 }'
done
