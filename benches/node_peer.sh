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
# STREAMS=N: a random audience instead of one stream: N streams started
# in accounts of 1-3 (benches/load/audience.lua's layout; the peer gets
# STREAM_LIMIT=3), then heartbeats for uniformly random ones, both
# servers on one population each (Redis flushed between). Keep DURATION
# under 10 s: the peer's ping sets a 10 s expiry.
#
# PEER_DIR: a checkout of stream-limit-api with `npm install` done (not
# part of this repository; its 50 requests/minute rate limit is lifted in
# a temporary copy). Needs target/release/streamguard built with
# --features redis, redis-server, wrk and node.
set -euo pipefail
PEER=$1 ROUNDS=${2:-3} DURATION=${3:-5s}
SG=${SG:-target/release/streamguard}
RPORT=${RPORT:-16399} PORT=${PORT:-18398} STREAMS=${STREAMS:-0}
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

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# fill sg|peer: starts the STREAMS streams of the audience.
fill() {
  python3 - "$PORT" "$STREAMS" "$1" <<'PY'
import http.client, json, sys
port, count, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
slot = [0, 1, 1, 2, 2, 2]
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(count):
    account, stream = f"acct-{3 * (i // 6) + slot[i % 6]:010d}", f"str-{i:012d}"
    if kind == "sg":
        path, body, headers = "/streams", json.dumps({"stream_id": stream}), {"X-ID": account}
    else:
        path, body, headers = f"/sessions/{account}/start/{stream}", "{}", {}
    headers["Content-Type"] = "application/json"
    conn.request("POST", path, body, headers)
    reply = conn.getresponse()
    reply.read()
    if reply.status not in (200, 201):
        sys.exit(f"start {i}: {reply.status}")
PY
}

# measure NAME KIND START_PATH START_BODY HEARTBEAT_PATH HEADER CMD...
# (KIND sg or peer: what the audience's starts and heartbeats look like)
measure() {
  local name=$1 kind=$2 start=$3 body=$4 beat=$5 header=$6; shift 6
  redis-cli -p "$RPORT" FLUSHALL >/dev/null
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST -H "$header" -H 'Content-Type: application/json' \
      --data "$body" "http://127.0.0.1:$PORT$start" && break
    sleep 0.1
  done
  local load=(-H "$header" -s "$TMP/beat.lua" "http://127.0.0.1:$PORT")
  if [ "$STREAMS" -gt 0 ]; then
    fill "$kind"
    load=(-s benches/load/audience.lua "http://127.0.0.1:$PORT" -- "$STREAMS" "$kind")
  fi
  cat >"$TMP/beat.lua" <<LUA
wrk.method = "POST"
wrk.path = "$beat"
LUA
  local before after redis_before redis_after out n bad
  before=$(ticks "$pid") redis_before=$(ticks "$REDIS")
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" "${load[@]}")
  after=$(ticks "$pid") redis_after=$(ticks "$REDIS")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v name="$name" -v t=$((after - before)) -v r=$((redis_after - redis_before)) -v hz="$HZ" \
    -v n="$n" -v bad="${bad:-0}" 'BEGIN { printf "%-28s %6.1f us server CPU/heartbeat, Redis %.1f (%d requests, %d non-2xx)\n",
      name, t / hz * 1e6 / n, r / hz * 1e6 / n, n, bad }'
}

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  measure "streamguard (FCALL)" sg /streams '{"stream_id":"bench-stream"}' \
    /streams/bench-stream/heartbeat "X-ID: bench-user" \
    env STREAMGUARD_LOG=info "$SG" --listen "127.0.0.1:$PORT" \
    --store "redis://127.0.0.1:$RPORT" --rate-per-stream 0 --rate-per-account 0 --lease-ttl 1h
  measure "node peer (GET + EXPIRE)" peer /sessions/bench-user/start/bench-device '{}' \
    /sessions/bench-user/ping/bench-device "X-Nothing: 1" \
    env PORT="$PORT" REDIS_PORT="$RPORT" PING_INTERVAL=3600 STREAM_LIMIT=3 node "$TMP/peer/index.js"
done
