#!/usr/bin/env bash
# Measures the Redis store against Redis itself, on this machine, in one run:
#   1. redis-benchmark FCALL of the heartbeat and start functions (what Redis
#      alone does for them, 64 connections);
#   2. streamguard on that Redis under wrk (64 connections): heartbeats of one
#      live stream, and a start/heartbeat/stop mix;
#   3. INFO commandstats: FCALL calls per HTTP request (must be 1).
# Old layout against new, in Redis time per call: benches/redis-scripts.sh.
# Needs redis-server, redis-benchmark and wrk (apt-get install -y redis-server wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
cargo build --release --features redis --quiet
BIN=target/release/streamguard

source scripts/services.sh
require wrk "apt-get install -y wrk"
start_redis
RPORT=${STREAMGUARD_TEST_REDIS_URL##*:}
SG_PORT=$(free_port)

SRC=src/store/redis/streamguard.lua
V=$(sha1sum "$SRC" | cut -c1-12)
redis-cli -p "$RPORT" FUNCTION LOAD REPLACE "$(
  echo "#!lua name=streamguard_$V"; cat "$SRC"
  for op in start heartbeat; do echo "redis.register_function('sg_${V}_$op', $op)"; done
)" >/dev/null
ARGS=(''  3 90000 reject 900000 100)

echo "== redis-benchmark (Redis alone)"
redis-cli -p "$RPORT" FCALL "sg_${V}_start" 1 'bench:{bench-user}' "${ARGS[@]}" bench-stream '' '' >/dev/null
redis-benchmark -p "$RPORT" -c 64 -n 300000 -q \
  FCALL "sg_${V}_heartbeat" 1 'bench:{bench-user}' "${ARGS[@]}" bench-stream \
  | tr '\r' '\n' | grep 'requests per second' | sed 's/^.*: /heartbeat script: /'
redis-benchmark -p "$RPORT" -c 64 -n 300000 -r 1000000 -q \
  FCALL "sg_${V}_start" 1 'bench:{__rand_int__}' "${ARGS[@]}" s '' '' \
  | tr '\r' '\n' | grep 'requests per second' | sed 's/^.*: /start script:     /'
redis-cli -p "$RPORT" FLUSHALL >/dev/null

echo "== streamguard on that Redis (wrk, 64 connections, $DURATION)"
STREAMGUARD_LOG=warn "$BIN" --listen "127.0.0.1:$SG_PORT" --store "redis://127.0.0.1:$RPORT?prefix=bench" >/dev/null &
SERVICE_PIDS+=($!)
wait_for "streamguard" curl -sf "http://127.0.0.1:$SG_PORT/readyz"
curl -sf -H 'X-ID: bench-user' -H 'Content-Type: application/json' \
  -d '{"stream_id":"bench-stream"}' "http://127.0.0.1:$SG_PORT/streams" >/dev/null
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
wrk -t1 -c64 -d"$DURATION" -s benches/load/heartbeat.lua "http://127.0.0.1:$SG_PORT" | tee "$SERVICES_DIR/hb.txt" | grep -E "Requests/sec|Non-2xx"
requests=$(awk '/requests in/ {print $1}' "$SERVICES_DIR/hb.txt")
fcall=$(redis-cli -p "$RPORT" INFO commandstats | sed -n 's/^cmdstat_fcall:calls=\([0-9]*\),.*/\1/p')
echo "FCALL per heartbeat request: $fcall / $requests"
wrk -t1 -c64 -d"$DURATION" -s benches/load/mix.lua "http://127.0.0.1:$SG_PORT" | grep -E "Requests/sec|Non-2xx" | sed 's/^/mix /'
