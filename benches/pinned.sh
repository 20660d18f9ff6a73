# Sourced by the benches that load a server pinned to core 0 from wrk on
# core 1 and divide the server's CPU time (user + system ticks from
# /proc/PID/stat) by the requests wrk counted.

HZ=$(getconf CLK_TCK)

# wait_http URL [SECONDS]: until URL answers 2xx (default 10 s).
wait_http() {
  local tries=$((${2:-10} * 10))
  for _ in $(seq "$tries"); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# settle PID: waits (at most 10 s) until the process has used no CPU for
# half a second: a server's journal writer still draining what the last
# load left runs on the same core as the next server measured, and made
# whichever build ran second look 3-6 % slower.
settle() {
  local before after
  for _ in $(seq 20); do
    before=$(cpu_ticks "$1")
    sleep 0.5
    after=$(cpu_ticks "$1")
    [ "$before" = "$after" ] && return 0
  done
}

# pinned_load PID DURATION SCRIPT URL [SCRIPT_ARGS...]: runs wrk -t1 -c64
# from core 1, prints "us_cpu_per_request requests_per_s non_2xx" for the
# server process PID.
pinned_load() {
  local pid=$1 duration=$2 script=$3 url=$4; shift 4
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"$duration" -s "$script" "$url" -- "$@")
  after=$(cpu_ticks "$pid")
  local n rps bad
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  awk -v t=$((after - before)) -v hz="$HZ" -v n="$n" -v rps="$rps" -v bad="${bad:-0}" \
    'BEGIN { printf "%.2f %.0f %d\n", t / hz * 1e6 / n, rps, bad }'
}
