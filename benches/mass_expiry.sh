#!/usr/bin/env bash
# A mass expiry on the file: store, measured with streamguard-load.
#
#   benches/mass_expiry.sh [SERVER] [LOAD] [STREAMS]
#
# The server runs with a 120 s lease, so its sweeper wakes every 120 s.
# STREAMS (1 000 000) one-stream accounts are preloaded right after the
# start (this must take under 120 s) and never renewed: all their leases
# lapse after the first sweep, and the second sweep (t = 240 s) finds them
# all at once, as when a big event ends. Meanwhile an open-loop mix of
# starts, heartbeats and stops (1:1:1, 2 000/s) runs from t = 150 s to
# t = 270 s; its per-second latency shows what the sweep costs the
# acknowledged writes (the sweep falls at about second 90 of that run).
set -euo pipefail
SERVER=${1:-target/release/streamguard} LOAD=${2:-target/release/streamguard-load}
STREAMS=${3:-1000000}
PORT=${PORT:-18097}
DATA=$(mktemp -d)
OUT=${OUT:-mass-expiry}
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT

STREAMGUARD_LOG=warn taskset -c 0 "$SERVER" --listen "127.0.0.1:$PORT" \
  --store "file:$DATA/store" --lease-ttl 120s >/dev/null 2>&1 &
PID=$!
T0=$(date +%s)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
taskset -c 1 "$LOAD" --target "http://127.0.0.1:$PORT" --preload "$STREAMS" \
  --connections 64 --duration 0s --quiet --out "$OUT-preload.json" --plot "$OUT-preload.svg" \
  | grep -E 'requests' || true
echo "preload done at t=$(( $(date +%s) - T0 )) s (must be < 120)"
sleep $(( 150 - ($(date +%s) - T0) ))
echo "load from t=$(( $(date +%s) - T0 )) s; the sweep of the lapsed leases runs at t=240 s"
taskset -c 1 "$LOAD" --target "http://127.0.0.1:$PORT" --mix 1:1:1 --rate 2000 \
  --viewers 20000 --duration 120s --quiet --out "$OUT.json" --plot "$OUT.svg" \
  | grep -E 'requests/s|latency|audit'
python3 - "$OUT.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["series"]
worst = max(s, key=lambda x: x["max_ms"])
calm = sorted(x["p99_ms"] for x in s)[len(s) // 2]
print(f"median per-second p99 {calm:.2f} ms; worst second t={worst['t']} s: "
      f"p99 {worst['p99_ms']:.2f} ms, max {worst['max_ms']:.2f} ms")
print("p99 of every second:", " ".join(f"{x['p99_ms']:.1f}" for x in s))
EOF
