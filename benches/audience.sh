#!/usr/bin/env bash
# Heartbeats as an audience makes them: STREAMS live streams in accounts of
# 1-3 streams, each request for a uniformly random one of them, against the
# release binary with its default flags (the `file:` store, throttles on,
# the default access log), alternating in one run with the hello server.
# Each server pinned to core 0, wrk on core 1 (-t1 -c64); µs of server CPU
# per request from /proc, and the ratio to hello in the same round.
#
#   benches/audience.sh [STREAMS] [ROUNDS] [DURATION]     (100000 3 5s)
#
# The population is written straight into a `file:` store
# (benches/fill_file_store.py DIR STREAMS audience) and restored by the
# server at start, as after a restart. The one flag off its default is
# `--lease-ttl` (LEASE_TTL, 1h): at one core's rate a large audience is
# visited less often than every 90 s, and lapsed leases would turn
# heartbeats into 410s. The run ends with the server's RSS and its count of
# answers other than 200 (wrk's "Non-2xx").
#
# HELLO_SIZED=1 adds, each round, the hello server answering as a heartbeat
# does (`hello_json ADDR heartbeat-sized`: the same JSON fields, ~226
# bytes, and an X-Request-Id), and streamguard's ratio to it: what is left
# once the size of the answer is paid.
#
# SG_B=path/to/another/build measures it too in each round, on a copy of
# the same population (before/after in one run). SG_ARGS adds flags (e.g. "--rate-per-stream 0 --rate-per-account 0" to
# see what the throttles cost).
#
# Needs `cargo build --release --bin streamguard --example hello_json`, wrk.
set -euo pipefail
STREAMS=${1:-100000} ROUNDS=${2:-3} DURATION=${3:-5s}
SG=${SG:-target/release/streamguard} HELLO=${HELLO:-target/release/examples/hello_json}
PORT=${PORT:-18099} HELLO_PORT=${HELLO_PORT:-18098} LEASE_TTL=${LEASE_TTL:-1h}
SCRIPT=benches/load/audience.lua
. "$(dirname "$0")/pinned.sh"
DATA=$(mktemp -d)
SERVERS=()
trap 'for s in "${SERVERS[@]}"; do kill "$s" 2>/dev/null; done; rm -rf "$DATA"' EXIT

python3 benches/fill_file_store.py "$DATA/store" "$STREAMS" audience >/dev/null
[ -n "${SG_B:-}" ] && cp -r "$DATA/store" "$DATA/store-b"
# serve BINARY STORE_DIR PORT: starts it pinned to core 0, once ready.
serve() {
  taskset -c 0 "$1" --listen "127.0.0.1:$3" --store "file:$2" \
    --lease-ttl "$LEASE_TTL" ${SG_ARGS:-} >/dev/null 2>&1 &
  SERVERS+=($!)
  wait_http "http://127.0.0.1:$3/readyz" 900
}
serve "$SG" "$DATA/store" "$PORT"
SERVER=${SERVERS[0]}
if [ -n "${SG_B:-}" ]; then
  serve "$SG_B" "$DATA/store-b" $((PORT + 2))
  SERVER_B=${SERVERS[1]}
fi

# One unmeasured second each: a restored server's first pass pays page
# faults the rounds would charge to whichever build comes first.
for s in "${SERVERS[@]}"; do
  port=$PORT
  [ "$s" != "$SERVER" ] && port=$((PORT + 2))
  pinned_load "$s" 2s "$SCRIPT" "http://127.0.0.1:$port" "$STREAMS" >/dev/null
  settle "$s"
done

echo "# $STREAMS live streams, random heartbeats, $ROUNDS rounds of $DURATION, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "# round server us_cpu_per_request requests_per_s non_2xx"
for round in $(seq "$ROUNDS"); do
  taskset -c 0 "$HELLO" "127.0.0.1:$HELLO_PORT" >/dev/null 2>&1 &
  hello=$!
  wait_http "http://127.0.0.1:$HELLO_PORT/"
  h=$(pinned_load "$hello" "$DURATION" "$SCRIPT" "http://127.0.0.1:$HELLO_PORT" "$STREAMS")
  kill "$hello"; wait "$hello" 2>/dev/null || true
  g=$(pinned_load "$SERVER" "$DURATION" "$SCRIPT" "http://127.0.0.1:$PORT" "$STREAMS")
  settle "$SERVER"
  echo "$round hello $h"
  echo "$round streamguard $g"
  echo "$h $g" | awk -v r="$round" '{ printf "%s ratio cpu %.2f, rate %.2f\n", r, $4 / $1, $5 / $2 }'
  if [ -n "${HELLO_SIZED:-}" ]; then
    taskset -c 0 "$HELLO" "127.0.0.1:$HELLO_PORT" heartbeat-sized >/dev/null 2>&1 &
    hello=$!
    wait_http "http://127.0.0.1:$HELLO_PORT/"
    z=$(pinned_load "$hello" "$DURATION" "$SCRIPT" "http://127.0.0.1:$HELLO_PORT" "$STREAMS")
    kill "$hello"; wait "$hello" 2>/dev/null || true
    echo "$round hello-sized $z"
    echo "$h $z $g" | awk -v r="$round" '{ printf "%s ratio hello-sized/hello %.2f, streamguard/hello-sized %.2f\n", r, $4 / $1, $7 / $4 }'
  fi
  if [ -n "${SG_B:-}" ]; then
    b=$(pinned_load "$SERVER_B" "$DURATION" "$SCRIPT" "http://127.0.0.1:$((PORT + 2))" "$STREAMS")
    settle "$SERVER_B"
    echo "$round streamguard-b $b"
    echo "$h $b" | awk -v r="$round" '{ printf "%s ratio-b cpu %.2f, rate %.2f\n", r, $4 / $1, $5 / $2 }'
  fi
done
for s in "${SERVERS[@]}"; do
  echo "# RSS of $(tr '\0' ' ' <"/proc/$s/cmdline" | cut -d' ' -f1): $(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$s/status")"
done
