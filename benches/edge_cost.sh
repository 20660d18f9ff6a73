#!/usr/bin/env bash
# What checking grants costs: nginx and HAProxy requests/s for one small
# segment with and without the check, in the same run (alternated), and
# the CPU time per request of GET /edge/verify against a heartbeat.
#   benches/edge_cost.sh [BINARY] [DURATION]
# Needs nginx, libnginx-mod-http-js, haproxy, ffmpeg, wrk.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/streamguard}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
DURATION=${2:-5s}
ROUNDS=${ROUNDS:-2}
WORK=$(mktemp -d /tmp/streamguard-edge-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "nothing at $1" >&2; exit 1; }
rps() { wrk -t1 -c32 -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }

mkdir -p "$WORK/media/movie-1"
ffmpeg -loglevel error -f lavfi -i testsrc=size=160x90:rate=10 -t 2 -c:v libx264 -preset ultrafast \
    -f hls -hls_time 1 -hls_segment_filename "$WORK/media/movie-1/seg%d.ts" "$WORK/media/movie-1/index.m3u8"
SIZE=$(stat -c %s "$WORK/media/movie-1/seg0.ts")
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/grant.pem" 2>/dev/null
SG=$(port)
STREAMGUARD_LOG=warn "$BIN" --listen "127.0.0.1:$SG" --store memory --grant-key "$WORK/grant.pem" \
    --lease-ttl 1h --rate-per-stream 0 --rate-per-account 0 --access-log off >/dev/null 2>&1 &
PIDS+=($!)
SG_PID=$!
up "http://127.0.0.1:$SG/healthz"
GRANT=$(curl -s -X POST "http://127.0.0.1:$SG/streams" -H 'x-id: bench-user' -H 'content-type: application/json' \
    -d '{"stream_id":"bench-stream","content_id":"movie-1"}' | jq -r .grant)

NG=$(port) HA=$(port) PLAIN=$(port) HAPLAIN=$(port)
"$ROOT/deploy/edge/serve.sh" nginx --listen "127.0.0.1:$NG" --media "$WORK/media" --streamguard "$BIN" \
    --jwks "http://127.0.0.1:$SG/.well-known/jwks.json" --run "$WORK/nginx" >/dev/null 2>&1 &
PIDS+=($!)
"$ROOT/deploy/edge/serve.sh" haproxy --listen "127.0.0.1:$HA" --media "$WORK/media" --streamguard "$BIN" \
    --jwks "http://127.0.0.1:$SG/.well-known/jwks.json" --run "$WORK/haproxy" >/dev/null 2>&1 &
PIDS+=($!)
up "http://127.0.0.1:$NG/" && up "http://127.0.0.1:$HA/"
# The same servers without the check: nginx serving the directory, HAProxy
# forwarding to the same origin.
sed -e "/auth_request/d" -e "s/listen 127.0.0.1:$NG;/listen 127.0.0.1:$PLAIN;/" -e "s|pid .*;|pid $WORK/plain.pid;|" \
    "$WORK/nginx/nginx.conf" >"$WORK/plain.conf"
nginx -p "$WORK/nginx" -c "$WORK/plain.conf" &
PIDS+=($!)
cat >"$WORK/haplain.cfg" <<EOF
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend plain
    bind 127.0.0.1:$HAPLAIN
    default_backend origin
backend origin
    server origin unix@$WORK/haproxy/origin.sock
EOF
haproxy -db -f "$WORK/haplain.cfg" &
PIDS+=($!)
up "http://127.0.0.1:$PLAIN/" && up "http://127.0.0.1:$HAPLAIN/"

SEG=/media/movie-1/seg0.ts
echo "segment: $SIZE bytes; wrk -t1 -c32 -d$DURATION; $ROUNDS rounds, alternated"
for round in $(seq "$ROUNDS"); do
    echo "round $round: nginx plain $(rps "http://127.0.0.1:$PLAIN$SEG") req/s," \
        "nginx+check $(rps "http://127.0.0.1:$NG$SEG?grant=$GRANT") req/s," \
        "haproxy plain $(rps "http://127.0.0.1:$HAPLAIN$SEG") req/s," \
        "haproxy+check $(rps "http://127.0.0.1:$HA$SEG?grant=$GRANT") req/s"
done

# Server CPU per request (user + system ticks of the process), which stays
# meaningful on a busy machine.
ticks() { awk '{print $14 + $15}' "/proc/$SG_PID/stat"; }
HZ=$(getconf CLK_TCK)
cpu() { # wrk args… → µs of server CPU per request
    local before after out n
    before=$(ticks)
    out=$(wrk -t1 -c32 -d"$DURATION" "$@")
    after=$(ticks)
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v t=$((after - before)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'
}
for round in $(seq "$ROUNDS"); do
    echo "round $round: heartbeat (signs a grant) $(cpu -s "$ROOT/benches/load/heartbeat.lua" "http://127.0.0.1:$SG") µs CPU/request," \
        "GET /edge/verify $(cpu "http://127.0.0.1:$SG/edge/verify?grant=$GRANT&content_id=movie-1") µs CPU/request"
done
