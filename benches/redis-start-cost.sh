#!/usr/bin/env bash
# Redis time per start (`usec_per_call`), with and without the README's
# 4-rule premium plan, on an account already holding S-1 streams (S = 3 and
# 1000), all in one run on one Redis: each start is followed by the stop of
# the same stream, so the account keeps its size. Starts go through FCALL
# (as on Redis >= 7) and stops through EVALSHA, so that INFO commandstats
# counts them apart.
# Each figure is the least of REPEAT runs. Needs redis-server and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
REPEAT=${REPEAT:-3}
source scripts/services.sh
start_redis >/dev/null
P=${STREAMGUARD_TEST_REDIS_URL##*:}
cli() { redis-cli -p "$P" "$@"; }
SRC=src/store/redis/streamguard.lua
LIB=$(mktemp)
{
  echo "#!lua name=bench_start_cost"
  cat "$SRC"
  for op in start finish set_limit; do echo "redis.register_function('b_$op', $op)"; done
} >"$LIB"
cli FUNCTION LOAD REPLACE "$(cat "$LIB")" >/dev/null
FINISH_SHA=$(cli SCRIPT LOAD "$(cat "$SRC"; echo; echo "return finish(KEYS, ARGV)")")
rm -f "$LIB"
PREMIUM=$'premium\npremium|4|same-title;2;0;p;content_id|uhd;2;0;m;quality=uhd|discovery;1;0;m;channel=dmax,tlc,eurosport|per-channel;1;1;p;channel\n'

commands() { # commands S PLANS N: the setup and N start+stop pairs, as RESP
  python3 - "$1" "$2" "$3" "$FINISH_SHA" <<'PY'
import sys
streams, plans, n, sha = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
policy = '1000|90000|reject|900000|100'
key = f'bench-{streams}-{"plan" if plans else "none"}:{{a}}'
out = sys.stdout.buffer
def cmd(*args):
    out.write(b'*%d\r\n' % len(args))
    for a in args:
        a = a.encode()
        out.write(b'$%d\r\n%s\r\n' % (len(a), a))
def start(id, i):
    cmd('FCALL', 'b_start', '1', key, '', policy, plans, id, '', f'm{i}', '', f'channel=c{i},quality=hd', '', '')
if n == 0:
    cmd('DEL', key)
    cmd('FCALL', 'b_set_limit', '1', key, '', policy, plans, '1000')
    for i in range(streams - 1):
        start(f's{i}', i)
else:
    for _ in range(n):
        start('new', 1_000_000)
        cmd('EVALSHA', sha, '1', key, '', policy, plans, 'new', 'stopped')
PY
}
printf '%-28s %10s %10s %7s\n' usec_per_call none plan ratio
for S in 3 1000; do
  n=$N; [ "$S" -gt 3 ] && n=$((N / 10))
  line=$(printf '%-28s' "start, $S-stream account")
  declare -A best=()
  for plans in none plan; do
    p=''; [ $plans = plan ] && p=$PREMIUM
    commands "$S" "$p" 0 | cli --pipe >/dev/null
    for _ in $(seq "$REPEAT"); do
      cli CONFIG RESETSTAT >/dev/null
      commands "$S" "$p" "$n" | cli --pipe >/dev/null
      u=$(cli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_fcall:.*usec_per_call=\([0-9.]*\).*/\1/p')
      if [ -z "${best[$plans]:-}" ] || awk "BEGIN{exit !($u < ${best[$plans]})}"; then best[$plans]=$u; fi
    done
    line+=$(printf ' %10s' "${best[$plans]}")
  done
  line+=$(awk "BEGIN{printf \" %6.2fx\", ${best[plan]} / ${best[none]}}")
  echo "$line"
done
