#!/usr/bin/env bash
# Redis time per heartbeat as an audience makes them: STREAMS live streams
# (accounts of 1-3, the layout of `fill_file_store.py ... audience`) started
# over HTTP, then heartbeats for uniformly random ones
# (benches/load/audience.lua). Redis alone on core 0, streamguard (default
# flags but the store and `--lease-ttl 1h`) and wrk on core 1. Prints
# Redis's `usec_per_call` of FCALL over the heartbeat run (INFO
# commandstats, reset before it) and streamguard's CPU per request.
#
#   benches/redis_audience.sh [STREAMS] [DURATION]      (30000 10s)
#
# Needs `cargo build --release --features redis --bin streamguard`,
# redis-server and wrk.
set -euo pipefail
STREAMS=${1:-30000} DURATION=${2:-10s}
SG=${SG:-target/release/streamguard}
source scripts/services.sh
. "$(dirname "$0")/pinned.sh"
start_redis >/dev/null
RPORT=${STREAMGUARD_TEST_REDIS_URL##*:}
taskset -cp 0 "${SERVICE_PIDS[0]}" >/dev/null
SG_PORT=$(free_port)
taskset -c 1 "$SG" --listen "127.0.0.1:$SG_PORT" --store "redis://127.0.0.1:$RPORT" \
  --lease-ttl 1h >/dev/null 2>&1 &
SERVER=$!
SERVICE_PIDS+=("$SERVER")
wait_http "http://127.0.0.1:$SG_PORT/readyz" 30

python3 - "$SG_PORT" "$STREAMS" <<'PY'
import http.client, json, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
slot = [0, 1, 1, 2, 2, 2]
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(count):
    account = 3 * (i // 6) + slot[i % 6]
    body = json.dumps({"stream_id": f"str-{i:012d}", "device_id": f"dev-{i:012d}",
                       "content_id": f"movie-{i % 5000}"})
    conn.request("POST", "/streams", body, {"X-ID": f"acct-{account:010d}",
                                            "Content-Type": "application/json"})
    reply = conn.getresponse()
    reply.read()
    if reply.status != 201:
        sys.exit(f"start {i}: {reply.status}")
PY

redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
out=$(pinned_load "$SERVER" "$DURATION" benches/load/audience.lua "http://127.0.0.1:$SG_PORT" "$STREAMS")
stats=$(redis-cli -p "$RPORT" INFO commandstats | tr -d '\r' | grep '^cmdstat_fcall:')
calls=$(echo "$stats" | sed 's/^cmdstat_fcall:calls=\([0-9]*\),.*/\1/')
usec=$(echo "$stats" | sed 's/.*usec_per_call=\([0-9.]*\),.*/\1/')
set -- $out
echo "# $STREAMS live streams, random heartbeats over HTTP for $DURATION, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "redis fcall usec_per_call $usec, $calls calls"
echo "streamguard $1 us_cpu_per_request, $2 requests/s, $3 non-2xx"
