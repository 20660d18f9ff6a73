#!/usr/bin/env bash
# State loss under load (issue 17): streamguard with --grant-key on Redis,
# streamguard-load viewers heartbeating with their grants, and the store
# losing everything at LOSS_AT seconds. Scenarios (all by default):
#   restart        SHUTDOWN NOSAVE, redis-server started again on its port
#   flushall       FLUSHALL
#   cluster-flush  FLUSHALL on one of three Redis Cluster primaries
#   dynamodb-delete every item of the table deleted (the moto emulator;
#                  VIEWERS is capped by DYNAMODB_VIEWERS, 60: moto on one thread)
#   file-restart   file: store, streamguard killed, its data directory
#                  removed, started again on the same port
# For each: requests answered 503/failed and their window, resumes and the
# time from the loss to the last one, resumes refused (409), viewers
# stopped by 404 and the audit's violations (over-grants included).
# DEVICES=4 puts 4 viewers on accounts of limit 3: starts then compete
# with resumes and the audit counts the over-grants a loss allows.
# Env: VIEWERS (2000) HEARTBEAT (2s) DURATION (30s) LOSS_AT (12)
# DEVICES (3) SHARE (0.6) BIN_DIR (target/release, built if missing).
# Needs redis-server and python3 (apt-get install -y redis-server python3),
# and moto for dynamodb-delete (pip install "moto[server]").
set -uo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${VIEWERS:-2000} HEARTBEAT=${HEARTBEAT:-2s} DURATION=${DURATION:-30s}
LOSS_AT=${LOSS_AT:-12} DEVICES=${DEVICES:-3} SHARE=${SHARE:-0.6}
DYNAMODB_VIEWERS=${DYNAMODB_VIEWERS:-60}
BIN_DIR=${BIN_DIR:-target/release}
SCENARIOS=("${@:-restart flushall cluster-flush}")
read -r -a SCENARIOS <<<"${SCENARIOS[*]}"
if [ ! -x "$BIN_DIR/streamguard" ] || [ ! -x "$BIN_DIR/streamguard-load" ]; then
  cargo build --release --features full,load --bin streamguard --bin streamguard-load || exit 1
fi
source scripts/services.sh
require redis-server "apt-get install -y redis-server"
KEY=tests/fixtures/keys/grant-p256.pem

# streamguard on SG_PORT with SG_STORE; its pid in SG.
start_sg() {
  "$BIN_DIR/streamguard" --listen "127.0.0.1:$SG_PORT" --store "$SG_STORE" --grant-key "$KEY" \
    --lease-ttl 60s --store-timeout "${STORE_TIMEOUT:-250ms}" >>"$SERVICES_DIR/$SG_NAME-server.log" 2>&1 &
  SG=$!
  SERVICE_PIDS+=("$SG")
  wait_for "streamguard on $SG_PORT" curl -sf "http://127.0.0.1:$SG_PORT/"
}

run() { # run SCENARIO STORE-URL LOSE-COMMAND...
  local name=$1 store=$2; shift 2
  local out="$SERVICES_DIR/$name.json" viewers=$VIEWERS
  [ "$name" = dynamodb-delete ] && [ "$viewers" -gt "$DYNAMODB_VIEWERS" ] && viewers=$DYNAMODB_VIEWERS
  SG_PORT=$(free_port) SG_STORE=$store SG_NAME=$name
  start_sg
  "$BIN_DIR/streamguard-load" --target "http://127.0.0.1:$SG_PORT" --viewers "$viewers" \
    --heartbeat "$HEARTBEAT" --ramp "$HEARTBEAT" --session 20s --share "$SHARE" \
    --devices-per-account "$DEVICES" --terminate 0 --connections 32 --duration "$DURATION" \
    --quiet --seed 17 --out "$out" --plot "${out%.json}.svg" >/dev/null 2>"$SERVICES_DIR/$name-load.log" &
  local tool=$!
  sleep "$LOSS_AT"
  local lost; lost=$(date +%s.%N)
  "$@"
  wait "$tool"; local rc=$?
  kill "$SG" 2>/dev/null; wait "$SG" 2>/dev/null
  python3 - "$name" "$out" "$lost" "$rc" <<'PY'
import json, sys
name, path, lost, rc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
at = lost - r["started_unix_s"]
u, s = r["unavailable"], r["resumed"]
span = lambda w: f'{w["last_s"] - w["first_s"]:.2f} s ({w["first_s"]:.2f}..{w["last_s"]:.2f})' if w["count"] else "-"
print(f'{name}: {r["config"]["viewers"]} viewers, {r["requests"]} requests, loss at {at:.2f} s; '
      f'503/failed {u["count"]} over {span(u)}; resumed {s["count"]}, last '
      + (f'{s["last_s"] - at:.2f} s after the loss' if s["count"] else "-")
      + f'; resume refused {r["resume_refused"]}; stopped by 404 {r["heartbeat_refused"].get("unknown", 0)}; '
      f'audit violations {r["audit"]["violations"]} (exit {rc})')
for e in r["audit"]["examples"][:3]:
    print("   ", e)
PY
}

flush() { redis-cli -p "$1" FLUSHALL >/dev/null; }

restart_redis() { # everything it held is lost; the same port, empty
  redis-cli -p "$1" SHUTDOWN NOSAVE >/dev/null 2>&1
  redis_node "$1"
}

restart_file_store() { # the process and its disk lost; started again, empty
  kill -9 "$SG"; wait "$SG" 2>/dev/null
  rm -rf "$1"
  start_sg
}

delete_items() { python3 scripts/dynamodb-delete-items.py "$1" "$2" >/dev/null; }

for scenario in "${SCENARIOS[@]}"; do
  case $scenario in
    restart|flushall)
      port=$(free_port); redis_node "$port"
      if [ "$scenario" = restart ]; then
        run restart "redis://127.0.0.1:$port" restart_redis "$port"
      else
        run flushall "redis://127.0.0.1:$port" flush "$port"
      fi
      ;;
    cluster-flush)
      start_redis_cluster >/dev/null
      first=${STREAMGUARD_TEST_REDIS_CLUSTER_URL#redis+cluster://}; first=${first%%,*}
      run cluster-flush "$STREAMGUARD_TEST_REDIS_CLUSTER_URL" flush "${first##*:}"
      ;;
    dynamodb-delete)
      start_dynamodb >/dev/null
      export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
      store="dynamodb://failover?region=us-east-1&endpoint=$STREAMGUARD_TEST_DYNAMODB_ENDPOINT"
      "$BIN_DIR/streamguard" init --store "$store" >/dev/null || exit 1
      STORE_TIMEOUT=2s run dynamodb-delete "$store" delete_items "$STREAMGUARD_TEST_DYNAMODB_ENDPOINT" failover
      ;;
    file-restart)
      data="$SERVICES_DIR/file-data"
      run file-restart "file:$data" restart_file_store "$data"
      ;;
    *) echo "unknown scenario $scenario (restart, flushall, cluster-flush, dynamodb-delete, file-restart)" >&2; exit 2 ;;
  esac
done
