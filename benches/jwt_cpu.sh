#!/usr/bin/env bash
# Server CPU per heartbeat (µs, from /proc) in header mode and in JWT mode
# with HS256 and ES256 tokens, with a signed grant per answer, and for the hello server, measured in turn in
# one run: the server pinned to CPU 0, wrk to CPU 1.
#   benches/jwt_cpu.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5s}
cargo build --release --quiet --bin streamguard --example mint_token --example hello_json
BIN=target/release/streamguard MINT=target/release/examples/mint_token
KEYS=tests/fixtures/keys TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
SECRET=bench-secret-0123456789abcdef-0123456789
"$MINT" jwks "$KEYS/idp-p256.pem" bench-key >"$TMP/jwks.json"
HS=$("$MINT" hs256 "$SECRET" bench-user)
ES=$("$MINT" es256 "$KEYS/idp-p256.pem" bench-key bench-user)
PORT=${PORT:-18197}
HZ=$(getconf CLK_TCK)

measure() { # name, auth header, server command...
  local name=$1 auth=$2; shift 2
  STREAMGUARD_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  local path=/streams/bench-stream/heartbeat
  if [ "$name" = hello ]; then path=/hello; else
    curl -sf -H "$auth" -H 'X-ID: bench-user' -H 'Content-Type: application/json' \
      -d '{"stream_id":"bench-stream"}' "http://127.0.0.1:$PORT/streams" >/dev/null
  fi
  cat >"$TMP/hb.lua" <<LUA
wrk.method = "POST"
wrk.path = "$path"
wrk.headers["X-ID"] = "bench-user"
LUA
  local before after out n
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" -H "$auth" -s "$TMP/hb.lua" "http://127.0.0.1:$PORT")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v name="$name" -v t=$((after - before)) -v hz="$HZ" -v n="$n" \
    'BEGIN { printf "%-22s %6.1f us CPU/request  (%d requests)\n", name, t / hz * 1e6 / n, n }'
}

for round in 1 2; do
  echo "round $round"
  measure hello "X-Nothing: 1" target/release/examples/hello_json "127.0.0.1:$PORT"
  measure header "X-Nothing: 1" "$BIN" --listen "127.0.0.1:$PORT" --store memory
  measure "jwt HS256 (cached)" "Authorization: Bearer $HS" "$BIN" --listen "127.0.0.1:$PORT" \
    --store memory --auth jwt --jwt-secret "$SECRET"
  measure "jwt ES256 (cached)" "Authorization: Bearer $ES" "$BIN" --listen "127.0.0.1:$PORT" \
    --store memory --auth jwt --jwt-jwks "$TMP/jwks.json"
  measure "header + EdDSA grant" "X-Nothing: 1" "$BIN" --listen "127.0.0.1:$PORT" \
    --store memory --grant-key "$KEYS/grant-ed25519.pem"
  measure "header + ES256 grant" "X-Nothing: 1" "$BIN" --listen "127.0.0.1:$PORT" \
    --store memory --grant-key "$KEYS/grant-p256.pem"
done
