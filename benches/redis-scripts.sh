#!/usr/bin/env bash
# Redis CPU per decision, old layout against new, on one Redis in one run:
# `usec_per_call` from INFO commandstats (the time Redis spends inside the
# call, nested commands included), for
#   old:     the JSON-string scripts of git `main` before the hash layout
#            (REF, default: the first commit with streamguard.lua's parent),
#            sent with EVALSHA as that version did;
#   fcall:   streamguard.lua as a Function library (what Redis >= 7 gets);
#   evalsha: streamguard.lua as EVALSHA scripts (the fallback).
# Accounts: a heartbeat of the one stream of a 1-stream account, of one
# stream of a 3-stream account and of a 1000-stream account (128-char ids);
# a granted start on a fresh account. Needs redis-server, redis-cli,
# redis-benchmark (apt-get install -y redis-server) and git.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
REPEAT=${REPEAT:-3} # each figure is the least of REPEAT runs: the machine's load only adds
OLD_REF=${OLD_REF:-$(git log --format=%H -1 --diff-filter=A -- src/store/redis/streamguard.lua)~1}
OLD=$(mktemp -d)
for f in common start heartbeat; do
  git show "$OLD_REF:src/store/redis/$f.lua" >"$OLD/$f.lua"
done

source scripts/services.sh
start_redis >/dev/null
P=${STREAMGUARD_TEST_REDIS_URL##*:}
cli() { redis-cli -p "$P" "$@"; }

SRC=src/store/redis/streamguard.lua
V=$(sha1sum "$SRC" | cut -c1-12)
{
  echo "#!lua name=streamguard_$V"
  cat "$SRC"
  for op in start heartbeat; do echo "redis.register_function('sg_${V}_$op', $op)"; done
} >"$OLD/library.lua"
cli FUNCTION LOAD REPLACE "$(cat "$OLD/library.lua")" >/dev/null
old_sha() { cli SCRIPT LOAD "$(cat "$OLD/common.lua"; echo; cat "$OLD/$1.lua")"; }
new_sha() { cli SCRIPT LOAD "$(cat "$SRC"; echo; echo "return $1(KEYS, ARGV)")"; }
OLD_HB=$(old_sha heartbeat) OLD_ST=$(old_sha start)
NEW_HB=$(new_sha heartbeat) NEW_ST=$(new_sha start)
# The old scripts take the policy as five arguments; streamguard.lua takes
# it packed, then the plans (PLANS: none, or the README's premium plan).
OLD_ARGS=('' 1000 90000 reject 900000 100)
PREMIUM=$'premium\npremium|4|same-title;2;0;p;content_id|uhd;2;0;m;quality=uhd|discovery;1;0;m;channel=dmax,tlc,eurosport|per-channel;1;1;p;channel\n'
PLANS=''

# call LAYOUT OP KEY ARGS...: sets CMD to the command that runs OP on KEY
call() {
  local layout=$1 op=$2 key=$3; shift 3
  case "$layout:$op" in
    old:heartbeat) CMD=(EVALSHA "$OLD_HB") ;;
    old:start) CMD=(EVALSHA "$OLD_ST") ;;
    evalsha:heartbeat) CMD=(EVALSHA "$NEW_HB") ;;
    evalsha:start) CMD=(EVALSHA "$NEW_ST") ;;
    fcall:*) CMD=(FCALL "sg_${V}_$op") ;;
  esac
  if [ "$layout" = old ]; then
    CMD+=(1 "$key" "${OLD_ARGS[@]}" "$@")
  else
    CMD+=(1 "$key" '' '1000|90000|reject|900000|100' "$PLANS" "$@")
  fi
}
id128() { printf '%s%0120d' "$1-" "$2" | cut -c1-128; }

# usec LAYOUT: usec_per_call of the layout's call command since RESETSTAT
usec() {
  local cmd=evalsha; [ "$1" = fcall ] && cmd=fcall
  cli INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$cmd:.*usec_per_call=\([0-9.]*\).*/\1/p"
}

printf '%-34s %10s %10s %10s\n' "usec_per_call" old fcall evalsha
row() { # row NAME OP SETUP-STREAMS REQUESTS
  local name=$1 op=$2 streams=$3 n=$4 line
  line=$(printf '%-34s' "$name")
  for layout in old fcall evalsha; do
    local key="b-$layout-$op-$streams:{acct}"
    cli DEL "$key" >/dev/null
    local target=s0
    if [ "$streams" -gt 0 ]; then
      for i in $(seq 0 $((streams - 1))); do
        local id=s$i; [ "$streams" -gt 3 ] && id=$(id128 s "$i")
        call "$layout" start "$key" "$id" '' ''
        cli "${CMD[@]}" >/dev/null
        target=$id
      done
    fi
    local best=''
    for _ in $(seq "$REPEAT"); do
    cli CONFIG RESETSTAT >/dev/null
    if [ "$op" = heartbeat ]; then
      call "$layout" heartbeat "$key" "$target"
      redis-benchmark -p "$P" -c 16 -n "$n" -q "${CMD[@]}" >/dev/null
    else
      # a fresh account per start: __rand_int__ in the key
      call "$layout" start "b-$layout-start:{__rand_int__}" s '' "${START_EXTRA[@]:-}"
      redis-benchmark -p "$P" -c 16 -n "$n" -r 100000000 -q "${CMD[@]}" >/dev/null
    fi
    local u; u=$(usec "$layout")
    if [ -z "$best" ] || awk "BEGIN{exit !($u < $best)}"; then best=$u; fi
    done
    line+=$(printf ' %10s' "$best")
  done
  echo "$line"
}
row "heartbeat, 1-stream account" heartbeat 1 "$N"
row "heartbeat, 3-stream account" heartbeat 3 "$N"
row "heartbeat, 1000 streams (128 ch)" heartbeat 1000 $((N / 20))
row "start (granted, fresh account)" start 0 "$N"
# The same start with the README's 4-rule premium plan (tags that fit it);
# the old layout has no plans, so its column repeats the plain start.
PLANS=$PREMIUM
START_EXTRA=(m '' 'channel=ard,quality=hd' '' '')
row "start, 4-rule plan" start 0 "$N"
rm -rf "$OLD"
