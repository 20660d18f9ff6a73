#!/usr/bin/env bash
# End to end: streamguard with a P-256 grant key, and through real nginx and
# HAProxy edges (deploy/edge/serve.sh) a granted player gets its HLS stream
# while a refused, grantless, tampering, other-content or expired player gets
# no segment; after a stop, an eviction or an admin revoke the online check
# refuses within its cache time and the offline checks once the last grant
# expires (both measured); after a key rotation new grants pass and old ones
# until they expire.
#
#   deploy/edge/test.sh [target/debug/streamguard]
#
# A missing nginx, njs module, HAProxy or ffmpeg is a failure, not a skip.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SG=${1:-$ROOT/target/debug/streamguard}
SG=$(cd "$(dirname "$SG")" && pwd)/$(basename "$SG")
LEASE=8 # seconds: --lease-ttl, so grants expire within the test
ADMIN=edge-test-admin-token-0123456789
STARTED=$(date +%s)

FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=1; }
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

[[ -x $SG ]] || die "no streamguard binary at $SG (cargo build)"
for tool in nginx haproxy ffmpeg openssl curl jq python3; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing: apt-get install nginx libnginx-mod-http-js haproxy ffmpeg openssl curl jq python3"
done
[[ -f /usr/lib/nginx/modules/ngx_http_js_module.so ]] ||
    die "the nginx JavaScript module is missing: apt-get install libnginx-mod-http-js"

WORK=$(mktemp -d /tmp/streamguard-edge-test.XXXXXX)
chmod 755 "$WORK" # nginx workers (another user when started as root) read media and keys
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $FAILED == 0 ]]; then rm -rf "$WORK"; else echo "logs kept in $WORK" >&2; fi
}
trap cleanup EXIT

# N distinct free ports below the kernel's ephemeral range (32768+), so that
# no client connection's source port can take one between the pick and the
# bind.
free_ports() { # n
    python3 - "$1" <<'PY'
import random, socket, sys
picked = []
while len(picked) < int(sys.argv[1]):
    port = random.randint(20000, 32000)
    if port in picked:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        picked.append(port)
    except OSError:
        pass
    finally:
        s.close()
print(*picked)
PY
}
# Shows what a process that does not answer said, so that CI's log tells why.
show_logs() {
    local log
    for log in "$WORK"/*.log "$WORK"/*/*.log; do
        [[ -s $log ]] || continue
        echo "--- $log (last 20 lines)" >&2
        tail -n 20 "$log" >&2
    done
}
wait_for() { # url [pid]: up to 30 s, failing at once when pid has exited
    local i
    for i in $(seq 300); do
        curl -s -o /dev/null "$1" && return 0
        if [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null; then
            show_logs
            die "the process meant to answer at $1 exited"
        fi
        sleep 0.1
    done
    show_logs
    die "nothing answers at $1 after 30 s"
}

# --- media: a real HLS test pattern, two contents ----------------------------
mkdir -p "$WORK/media/movie-1"
ffmpeg -loglevel error -f lavfi -i testsrc=size=160x90:rate=10 -t 4 \
    -c:v libx264 -preset ultrafast -g 10 -f hls -hls_time 1 -hls_list_size 0 \
    -hls_segment_filename "$WORK/media/movie-1/seg%d.ts" "$WORK/media/movie-1/index.m3u8" ||
    die "ffmpeg could not make the test stream"
cp -r "$WORK/media/movie-1" "$WORK/media/movie-2"
SEGMENTS=$(grep -c '\.ts$' "$WORK/media/movie-1/index.m3u8")
[[ $SEGMENTS -ge 3 ]] || die "ffmpeg made $SEGMENTS segments"

# --- streamguard ---------------------------------------------------------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/key1.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/key2.pem" 2>/dev/null
cp "$WORK/key1.pem" "$WORK/grant.pem"
read -r SG_PORT NGINX_PORT ONLINE_PORT HAPROXY_PORT <<<"$(free_ports 4)"
API=http://127.0.0.1:$SG_PORT
"$SG" --listen "127.0.0.1:$SG_PORT" --store memory --auth header --admin-token "$ADMIN" \
    --grant-key "$WORK/grant.pem" --lease-ttl "${LEASE}s" --default-limit 1 --edge-renew-every 3s \
    >"$WORK/streamguard.log" 2>&1 &
PIDS+=($!)
wait_for "$API/healthz" "$!"

# --- the edges -----------------------------------------------------------------
edge() { # name kind port [args…]
    local name=$1 kind=$2 port=$3
    shift 3
    "$HERE/serve.sh" "$kind" --listen "127.0.0.1:$port" --media "$WORK/media" \
        --jwks "$API/.well-known/jwks.json" --keys-every 1 --streamguard "$SG" \
        --run "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    EDGE_PIDS[$port]=$!
}
declare -A EDGE_PIDS
edge nginx nginx "$NGINX_PORT"
edge online nginx "$ONLINE_PORT" --verify-url "$API/edge/verify" --verify-cache 1s
edge haproxy haproxy "$HAPROXY_PORT"
for port in "$NGINX_PORT" "$ONLINE_PORT" "$HAPROXY_PORT"; do
    wait_for "http://127.0.0.1:$port/" "${EDGE_PIDS[$port]}"
done
EDGES=("nginx:$NGINX_PORT" "online:$ONLINE_PORT" "haproxy:$HAPROXY_PORT")
OFFLINE=("nginx:$NGINX_PORT" "haproxy:$HAPROXY_PORT")

# --- helpers -------------------------------------------------------------------
start() { # user stream content [device] [terminate] → the answer's JSON; its status in $WORK/status
    local body
    body=$(jq -cn --arg s "$2" --arg c "$3" --arg d "${4:-$1-device}" --arg t "${5:-}" \
        '{stream_id: $s, content_id: $c, device_id: $d} + (if $t == "" then {} else {terminate: [$t]} end)')
    local out
    out=$(curl -s -w '\n%{http_code}' -X POST "$API/streams" -H "x-id: $1" \
        -H 'content-type: application/json' -d "$body")
    echo "${out##*$'\n'}" >"$WORK/status"
    echo "${out%$'\n'*}"
}
grant_of() { # user stream content → the grant
    local answer
    answer=$(start "$@")
    local STATUS
    STATUS=$(<"$WORK/status")
    [[ $STATUS == 201 || $STATUS == 200 ]] || die "start $* answered $STATUS: $answer"
    jq -er .grant <<<"$answer"
}
fetch() { # port path [curl args…] → "status reason"
    local port=$1 path=$2
    shift 2
    curl -s -o /dev/null -D "$WORK/headers" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" >"$WORK/code" || true
    local reason
    reason=$(tr -d '\r' <"$WORK/headers" | awk -F': ' 'tolower($1) == "streamguard-reason" { print $2 }')
    echo "$(cat "$WORK/code") ${reason:--}"
}
expect() { # what want-status edge-spec path [curl args…]
    local what=$1 want=$2 spec=$3 path=$4
    shift 4
    local got
    got=$(fetch "${spec#*:}" "$path" "$@")
    if [[ ${got%% *} == "$want" ]]; then ok "${spec%%:*}: $what → $got"; else fail "${spec%%:*}: $what → $got, wanted $want"; fi
}
# Polls until `path` is refused (403) on the edge; prints the seconds it took
# since `since` (epoch, fractional).
refused_after() { # spec path since
    local deadline
    deadline=$(($(date +%s) + LEASE + 5))
    while [[ $(date +%s) -le $deadline ]]; do
        if [[ $(fetch "${1#*:}" "$2") == 403* ]]; then
            python3 -c "import time; print(f'{time.time() - $3:.2f}')"
            return 0
        fi
        sleep 0.1
    done
    echo never
}
now() { python3 -c 'import time; print(time.time())'; }
b64url_decode() { python3 -c 'import base64, sys; s = sys.argv[1]; sys.stdout.write(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode())' "$1"; }
b64url_encode() { python3 -c 'import base64, sys; sys.stdout.write(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1"; }
kid_of() { b64url_decode "${1%%.*}" | jq -r .kid; }

# --- a granted player gets the playlist and every segment ----------------------
G1=$(grant_of alice a-1 movie-1 tv)
for spec in "${EDGES[@]}"; do
    expect "granted playlist (?grant=)" 200 "$spec" "/media/movie-1/index.m3u8?grant=$G1"
    for i in $(seq 0 $((SEGMENTS - 1))); do
        expect "granted segment $i" 200 "$spec" "/media/movie-1/seg$i.ts?grant=$G1"
    done
    expect "granted segment (header)" 200 "$spec" /media/movie-1/seg0.ts -H "Streamguard-Grant: $G1"
    expect "granted segment (cookie)" 200 "$spec" /media/movie-1/seg0.ts --cookie "streamguard_grant=$G1"
done

# --- refused, grantless, tampered, other-content players get nothing -----------
REFUSED=$(start alice a-2 movie-1 phone)
STATUS=$(<"$WORK/status")
[[ $STATUS == 409 ]] || fail "a second stream over the limit answered $STATUS: $REFUSED"
[[ $(jq -r '.grant // "none"' <<<"$REFUSED") == none ]] || fail "a 409 carries a grant"
# A tampered grant: the payload names another content, the signature is kept.
IFS=. read -r H P S <<<"$G1"
TAMPERED="$H.$(b64url_encode "$(b64url_decode "$P" | sed 's/movie-1/movie-2/')").$S"
[[ $TAMPERED != "$G1" ]] || die "could not tamper with the grant"
# The same grant claiming a key that is not published.
FOREIGN="$(b64url_encode '{"alg":"ES256","kid":"foreign","typ":"JWT"}').$P.$S"
for spec in "${EDGES[@]}"; do
    expect "the 409-refused player, no grant" 401 "$spec" /media/movie-1/seg0.ts
    expect "empty grant" 401 "$spec" "/media/movie-1/seg0.ts?grant="
    expect "tampered grant" 403 "$spec" "/media/movie-2/seg0.ts?grant=$TAMPERED"
    expect "unknown key" 403 "$spec" "/media/movie-1/seg0.ts?grant=$FOREIGN"
    expect "garbage grant" 403 "$spec" "/media/movie-1/seg0.ts?grant=not.a.grant"
    expect "other content" 403 "$spec" "/media/movie-2/seg0.ts?grant=$G1"
    expect "outside /media" 404 "$spec" "/etc/passwd?grant=$G1"
done

# --- stop, eviction, admin revoke: online at once, offline at expiry -----------
curl -s -o /dev/null -X DELETE "$API/streams/a-1" -H 'x-id: alice'
GS=$(grant_of bob b-1 movie-1 tv)
GE=$(grant_of carol c-1 movie-1 tv)
GR=$(grant_of dave d-1 movie-1 tv)
for g in "$GS" "$GE" "$GR"; do
    for spec in "${EDGES[@]}"; do expect "live before the end" 200 "$spec" "/media/movie-1/seg1.ts?grant=$g"; done
done
# Until the online edge's cached 204s run out (--verify-cache 1s, which
# nginx keeps until the next whole second passes: up to 2 s).
sleep 2.1
ENDED=$(now)
curl -sf -o /dev/null -X DELETE "$API/streams/b-1" -H 'x-id: bob' || fail "stop"
start carol c-2 movie-1 phone c-1 >/dev/null
STATUS=$(<"$WORK/status")
[[ $STATUS == 201 ]] || fail "the evicting start answered $STATUS"
curl -sf -o /dev/null -X DELETE "$API/admin/users/dave/streams/d-1" -H "authorization: Bearer $ADMIN" || fail "admin revoke"
for case in "stopped:$GS" "evicted:$GE" "revoked:$GR"; do
    expect "${case%%:*} stream, online" 403 "online:$ONLINE_PORT" "/media/movie-1/seg2.ts?grant=${case#*:}"
done
ONLINE_LAG=$(python3 -c "import time; print(f'{time.time() - $ENDED:.2f}')")
for spec in "${OFFLINE[@]}"; do # both edges polled at once
    refused_after "$spec" "/media/movie-1/seg2.ts?grant=$GS" "$ENDED" >"$WORK/lag.${spec%%:*}" &
done
wait_lags() { local name; for name in "${OFFLINE[@]}"; do while [[ ! -s $WORK/lag.${name%%:*} ]]; do sleep 0.1; done; done; }
wait_lags
exp_in=$(python3 -c "print(f'{$(b64url_decode "$(cut -d. -f2 <<<"$GS")" | jq .exp) - $ENDED:.2f}')")
for spec in "${OFFLINE[@]}"; do
    lag=$(<"$WORK/lag.${spec%%:*}")
    reason=$(fetch "${spec#*:}" "/media/movie-1/seg2.ts?grant=$GS")
    if [[ $lag == never ]]; then fail "${spec%%:*}: a stopped stream's grant still opens segments"; else
        ok "${spec%%:*}: a stopped stream's last grant refused $lag s after the stop ($reason)"
        echo "measure: offline revocation lag ${spec%%:*} ${lag}s after the stop; the grant's exp was ${exp_in}s after it (lease ${LEASE}s)"
    fi
done
echo "measure: online: refused on the first request after each end (the three checks took ${ONLINE_LAG}s)"
sleep 1.1 # grants issued in the next second expire a second later
for spec in "${EDGES[@]}"; do
    for g in "$GS" "$GE" "$GR"; do
        expect "expired grant" "403" "$spec" "/media/movie-1/seg0.ts?grant=$g"
        [[ $(fetch "${spec#*:}" "/media/movie-1/seg0.ts?grant=$g") == "403 expired" ]] ||
            fail "${spec%%:*}: an expired grant is not refused as expired"
    done
done

# --- a native player: a grant cookie, segments, no heartbeat -------------------
# With --edge-renew-every, the online check renews the lease (at most every
# 3 s) and nginx hands the renewed grant back as the cookie.
GN=$(grant_of frank f-1 movie-1 tv)
JAR=$WORK/cookies
printf '127.0.0.1\tFALSE\t/media/\tFALSE\t0\tstreamguard_grant\t%s\n' "$GN" >"$JAR"
misses=0
end=$(($(date +%s) + 2 * LEASE))
while [[ $(date +%s) -lt $end ]]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" -c "$JAR" \
        "http://127.0.0.1:$ONLINE_PORT/media/movie-1/seg1.ts")
    [[ $code == 200 ]] || misses=$((misses + 1))
    sleep 0.5
done
[[ $misses == 0 ]] && ok "online: a cookie-only player kept getting segments for $((2 * LEASE)) s (two leases)" ||
    fail "online: a cookie-only player was refused $misses times"
grep -q "$GN" "$JAR" && fail "online: the grant cookie was never renewed" || ok "online: the grant cookie was renewed"
live=$(curl -s "$API/streams" -H 'x-id: frank' | jq -r '[.streams[].id] | join(",")')
[[ $live == f-1 ]] && ok "its stream is still live after two leases" || fail "frank's live streams: $live"
sleep $((LEASE + 1)) # it stops fetching: the slot frees itself one lease later
start frank f-2 movie-1 phone >/dev/null
STATUS=$(<"$WORK/status")
[[ $STATUS == 201 ]] && ok "one lease after its last segment its slot is free" ||
    fail "a new stream after the native player stopped answered $STATUS"

# --- key rotation: new grants pass, old ones until they expire -----------------
heartbeat_grant() { # user stream → a fresh grant of the stream
    local answer
    answer=$(curl -s -X POST "$API/streams/$2/heartbeat" -H "x-id: $1")
    jq -er .grant <<<"$answer" || die "heartbeat $1/$2: $answer"
}
# 1. Publish the new key; the old one still signs.
cat "$WORK/key1.pem" "$WORK/key2.pem" >"$WORK/next" && mv "$WORK/next" "$WORK/grant.pem"
for _ in $(seq 100); do
    [[ $(curl -s "$API/.well-known/jwks.json" | jq '.keys | length') == 2 ]] && break
    sleep 0.1
done
OLD=$(grant_of erin e-1 movie-1 tv)
OLD_KID=$(kid_of "$OLD")
# 2. The new key signs.
cat "$WORK/key2.pem" "$WORK/key1.pem" >"$WORK/next" && mv "$WORK/next" "$WORK/grant.pem"
NEW_KID=$OLD_KID
for _ in $(seq 100); do # the service re-reads its key file every second
    NEW_KID=$(kid_of "$(heartbeat_grant erin e-1)")
    [[ $NEW_KID != "$OLD_KID" ]] && break
    sleep 0.2
done
[[ $NEW_KID != "$OLD_KID" ]] || die "the service did not sign with the new key"
for spec in "${EDGES[@]}"; do
    expect "a grant of the old key, unexpired" 200 "$spec" "/media/movie-1/seg0.ts?grant=$OLD"
done
for spec in "${EDGES[@]}"; do
    since=$(now)
    got=""
    for _ in $(seq 50); do # the edges re-read the JWKS every second
        # A fresh grant each time, so a slow edge does not see it expire.
        NEW=$(heartbeat_grant erin e-1)
        got=$(fetch "${spec#*:}" "/media/movie-1/seg0.ts?grant=$NEW")
        [[ $got == 200* ]] && break
        sleep 0.2
    done
    lag=$(python3 -c "import time; print(f'{time.time() - $since:.1f}')")
    if [[ $got == 200* ]]; then ok "${spec%%:*}: a grant of the new key passes (waited ${lag}s)"; else fail "${spec%%:*}: a grant of the new key is refused: $got"; fi
done
# 3. The old grant passes until its exp, then is refused as expired.
OLD_EXP=$(b64url_decode "$(cut -d. -f2 <<<"$OLD")" | jq .exp)
sleep "$(python3 -c "import time; print(max(0, $OLD_EXP - time.time() + 1.2))")"
for spec in "${OFFLINE[@]}"; do
    [[ $(fetch "${spec#*:}" "/media/movie-1/seg0.ts?grant=$OLD") == "403 expired" ]] &&
        ok "${spec%%:*}: the old key's grant refused once expired" ||
        fail "${spec%%:*}: the old key's grant is not refused after it expired"
done

echo "edge test took $(($(date +%s) - STARTED)) s"
[[ $FAILED == 0 ]] || exit 1
echo "edge test: all checks passed"
