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
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT

case $WHAT in
  heartbeat) STORE=memory SCRIPT=benches/load/heartbeat.lua LOG=info ;;
  heartbeat-quiet) STORE=memory SCRIPT=benches/load/heartbeat.lua LOG=warn ;;
  start-file) STORE=file SCRIPT=benches/load/start.lua LOG=info ;;
  *) echo "unknown WHAT: $WHAT" >&2; exit 2 ;;
esac

. "$(dirname "$0")/pinned.sh"

# measure NAME CMD...: starts the server pinned to core 0, loads it from
# core 1, prints "NAME us_per_request requests_per_s".
measure() {
  local name=$1; shift
  STREAMGUARD_LOG=$LOG taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_http "http://127.0.0.1:$PORT/"
  curl -sf -H 'X-ID: bench-user' -H 'Content-Type: application/json' \
    -d '{"stream_id":"bench-stream"}' "http://127.0.0.1:$PORT/streams" >/dev/null || true
  local out
  out=$(pinned_load "$pid" "$DURATION" "$SCRIPT" "http://127.0.0.1:$PORT")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name ${out% *}"
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
