#!/usr/bin/env bash
# Server CPU per heartbeat on one Redis: streamguard (Redis store, one
# FCALL per heartbeat) against the Node.js service it replaces (Eyevinn
# stream-limit-api: Fastify + ioredis, a GET and an EXPIRE per ping, no
# atomic limit), alternately in one run; the server pinned to CPU 0, wrk
# and Redis on CPU 1. (Redis's own cost per call is measured apart, with
# nothing else on its core: benches/redis-scripts.sh.)
#
#   benches/node_peer.sh PEER_DIR [ROUNDS] [DURATION]
#
# PEER_DIR: a checkout of stream-limit-api with `npm install` done (not
# part of this repository; its 50 requests/minute rate limit is lifted in
# a temporary copy). Needs target/release/streamguard built with
# --features redis, redis-server, wrk and node.
set -euo pipefail
PEER=$1 ROUNDS=${2:-3} DURATION=${3:-5s}
SG=${SG:-target/release/streamguard}
RPORT=${RPORT:-16399} PORT=${PORT:-18398}
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
taskset -c 1 redis-server --port "$RPORT" --save '' --appendonly no --dir "$TMP" \
  --notify-keyspace-events Ex >/dev/null &
REDIS=$!
trap 'kill $REDIS 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The peer limits every client address to 50 requests a minute; like
# streamguard's throttles (off below), that is lifted in a copy.
cp -r "$PEER" "$TMP/peer"
sed -i 's/max: 50,/max: 1000000000,/' "$TMP/peer/src/server.js"

# measure NAME START_PATH START_BODY HEARTBEAT_PATH HEADER CMD...
measure() {
  local name=$1 start=$2 body=$3 beat=$4 header=$5; shift 5
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST -H "$header" -H 'Content-Type: application/json' \
      --data "$body" "http://127.0.0.1:$PORT$start" && break
    sleep 0.1
  done
  cat >"$TMP/beat.lua" <<LUA
wrk.method = "POST"
wrk.path = "$beat"
LUA
  local before after out n
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" -H "$header" -s "$TMP/beat.lua" "http://127.0.0.1:$PORT")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v name="$name" -v t=$((after - before)) -v hz="$HZ" -v n="$n" \
    'BEGIN { printf "%-28s %6.1f us server CPU/heartbeat (%d requests)\n", name, t / hz * 1e6 / n, n }'
}

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  measure "streamguard (FCALL)" /streams '{"stream_id":"bench-stream"}' \
    /streams/bench-stream/heartbeat "X-ID: bench-user" \
    env STREAMGUARD_LOG=info "$SG" --listen "127.0.0.1:$PORT" \
    --store "redis://127.0.0.1:$RPORT" --rate-per-stream 0 --rate-per-account 0
  measure "node peer (GET + EXPIRE)" /sessions/bench-user/start/bench-device '{}' \
    /sessions/bench-user/ping/bench-device "X-Nothing: 1" \
    env PORT="$PORT" REDIS_PORT="$RPORT" PING_INTERVAL=3600 node "$TMP/peer/index.js"
done
