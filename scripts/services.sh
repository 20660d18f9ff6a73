# Sourced by scripts/test: starts the services the store tests need on free
# local ports, exports where they are, and stops them when the shell exits.
# A missing program fails the run with the command that installs it.

SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/streamguard-services.XXXXXX")
SERVICE_PIDS=()

stop_services() {
  for pid in "${SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$SERVICES_DIR"
}
trap stop_services EXIT

require() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is missing; install it with: $2" >&2
    exit 1
  fi
}

# A free local port whose +10000 neighbour (a cluster node's bus port) is free too.
free_port() {
  python3 - <<'PY'
import random, socket
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    port = random.randint(20000, 50000)
    if free(port) and free(port + 10000):
        print(port)
        break
PY
}

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "error: $what did not come up" >&2
  exit 1
}

# redis_node PORT [extra redis-server args...]: one redis-server in the background.
redis_node() {
  local port=$1; shift
  local dir="$SERVICES_DIR/redis-$port"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize no "$@" >"$dir/log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for "redis-server on port $port" redis-cli -p "$port" ping
}

start_redis() {
  require redis-server "apt-get install -y redis-server"
  require redis-cli "apt-get install -y redis-server"
  local port; port=$(free_port)
  redis_node "$port"
  export STREAMGUARD_TEST_REDIS_URL="redis://127.0.0.1:$port"
  echo "redis on $STREAMGUARD_TEST_REDIS_URL"
}

start_redis_cluster() {
  require redis-server "apt-get install -y redis-server"
  local ports=() seeds=()
  for _ in 1 2 3; do
    local port; port=$(free_port)
    redis_node "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
      --cluster-node-timeout 2000
    ports+=("$port"); seeds+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$SERVICES_DIR/cluster-create.log" 2>&1
  wait_for "the redis cluster" sh -c "redis-cli -p ${ports[0]} cluster info | grep -q cluster_state:ok"
  export STREAMGUARD_TEST_REDIS_CLUSTER_URL="redis+cluster://$(IFS=,; echo "${seeds[*]}")"
  echo "redis cluster on $STREAMGUARD_TEST_REDIS_CLUSTER_URL"
}

# A TLS-only Redis with a throw-away self-signed certificate.
start_redis_tls() {
  require redis-server "apt-get install -y redis-server"
  require openssl "apt-get install -y openssl"
  local dir="$SERVICES_DIR/tls" port; port=$(free_port)
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
  redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --tls-cert-file "$dir/cert.pem" --tls-key-file "$dir/key.pem" \
    --tls-ca-cert-file "$dir/cert.pem" --tls-auth-clients no >"$dir/log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for "redis-server (TLS) on port $port" redis-cli --tls --insecure -p "$port" ping
  # The certificate is self-signed: the client skips verification (#insecure).
  export STREAMGUARD_TEST_REDISS_URL="rediss://127.0.0.1:$port/#insecure"
  echo "redis (TLS) on $STREAMGUARD_TEST_REDISS_URL"
}

# The local DynamoDB API: moto's app served single-threaded, so that its
# conditional writes are atomic (scripts/dynamodb-emulator.py).
start_dynamodb() {
  if ! python3 -c 'import moto.moto_server.werkzeug_app, werkzeug' 2>/dev/null; then
    echo 'error: the DynamoDB tests need moto; install it with: pip install "moto[server]"' >&2
    exit 1
  fi
  local dir="$SERVICES_DIR/dynamodb"
  mkdir -p "$dir"
  python3 scripts/dynamodb-emulator.py --port-file "$dir/port" >"$dir/log" 2>&1 &
  local pid=$!
  SERVICE_PIDS+=("$pid")
  for _ in $(seq 100); do
    [ -s "$dir/port" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$dir/log" >&2
      echo "error: the DynamoDB emulator did not start" >&2
      exit 1
    fi
    sleep 0.1
  done
  [ -s "$dir/port" ] || { echo "error: the DynamoDB emulator did not start" >&2; exit 1; }
  export STREAMGUARD_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$(cat "$dir/port")"
  echo "DynamoDB emulator on $STREAMGUARD_TEST_DYNAMODB_ENDPOINT"
}
