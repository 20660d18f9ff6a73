#!/usr/bin/env bash
# Starts one grant-checking edge in the foreground, serving DIR as
# /media/{content_id}/… only to requests that carry a streamguard grant for
# that content (deploy/edge/README.md).
#
#   deploy/edge/serve.sh nginx|haproxy --listen ADDR --media DIR --jwks FILE|URL
#       [--verify-url URL]        nginx: also ask streamguard's GET /edge/verify
#                                 (cached --verify-cache) whether the stream is live
#       [--verify-cache 5s]       how long nginx caches an online answer
#       [--content-pattern RE]    regex on the path; group 1 is the content id
#                                 (default ^/media/([A-Za-z0-9._:@-]+)/)
#       [--keys-every SECONDS]    re-read the JWKS this often (default 60);
#                                 HAProxy is reloaded when the keys changed
#       [--origin HOST:PORT]      haproxy: the origin to front (default: a
#                                 static nginx serving --media on a unix socket)
#       [--workers N]             nginx worker processes (default 1)
#       [--run DIR]               where configs, keys, logs go (default: a temp dir)
#       [--streamguard BIN]       the streamguard binary (for edge-keys)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() { echo "serve.sh: $*" >&2; exit 2; }

EDGE=${1:-}
[[ $EDGE == nginx || $EDGE == haproxy ]] || die "usage: serve.sh nginx|haproxy --listen ADDR --media DIR --jwks FILE|URL [--verify-url URL]"
shift
LISTEN= MEDIA= JWKS= VERIFY_URL= VERIFY_CACHE=5s ORIGIN= RUN= WORKERS=1 KEYS_EVERY=60
PATTERN='^/media/([A-Za-z0-9._:@-]+)/'
SG=${STREAMGUARD:-}
while [[ $# -gt 0 ]]; do
    case $1 in
        --listen) LISTEN=$2 ;;
        --media) MEDIA=$2 ;;
        --jwks) JWKS=$2 ;;
        --verify-url) VERIFY_URL=$2 ;;
        --verify-cache) VERIFY_CACHE=$2 ;;
        --content-pattern) PATTERN=$2 ;;
        --keys-every) KEYS_EVERY=$2 ;;
        --origin) ORIGIN=$2 ;;
        --workers) WORKERS=$2 ;;
        --run) RUN=$2 ;;
        --streamguard) SG=$2 ;;
        *) die "unknown option $1" ;;
    esac
    shift 2 || die "$1 needs a value"
done
[[ -n $LISTEN && -n $MEDIA && -n $JWKS ]] || die "--listen, --media and --jwks are required"
[[ -d $MEDIA ]] || die "--media $MEDIA: not a directory"
MEDIA=$(cd "$MEDIA" && pwd)
if [[ -z $SG ]]; then
    SG=$(command -v streamguard || true)
    [[ -n $SG ]] || SG=$ROOT/target/debug/streamguard
fi
[[ -x $SG ]] || die "no streamguard binary (give --streamguard BIN)"
if [[ $EDGE == haproxy && -n $VERIFY_URL ]]; then
    die "--verify-url is for nginx (HAProxy checks offline only)"
fi
command -v "$EDGE" >/dev/null || die "$EDGE is not installed"
if [[ $EDGE == nginx || -z $ORIGIN ]]; then
    command -v nginx >/dev/null || die "nginx is not installed"
    [[ -f /usr/lib/nginx/modules/ngx_http_js_module.so || $EDGE == haproxy ]] ||
        die "the nginx JavaScript module is missing (apt-get install libnginx-mod-http-js)"
fi

if [[ -z $RUN ]]; then
    RUN=$(mktemp -d /tmp/streamguard-edge.XXXXXX)
fi
mkdir -p "$RUN/keys"
# nginx workers run as another user when nginx is started as root.
chmod 755 "$RUN" "$RUN/keys"
RUN=$(cd "$RUN" && pwd)
KEYS=$RUN/keys

refresh_keys() { "$SG" edge-keys --jwks "$JWKS" --out "$KEYS" 2>>"$RUN/edge-keys.log"; }
keys_digest() { cat "$KEYS"/*.pem 2>/dev/null | md5sum; }
refresh_keys || { cat "$RUN/edge-keys.log" >&2; die "could not write the keys from $JWKS"; }

# sed replacement text: escape \, & and the | delimiter.
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

render() { # template output
    local online=0 verify=http://127.0.0.1:9/edge/verify
    if [[ -n $VERIFY_URL ]]; then online=1 verify=$VERIFY_URL; fi
    local regsub="\"${PATTERN}.*\$\""
    local origin=${ORIGIN:-unix@$RUN/origin.sock}
    sed -e "s|@RUN@|$(esc "$RUN")|g" -e "s|@HERE@|$(esc "$HERE/nginx")|g" \
        -e "s|@LISTEN@|$(esc "$LISTEN")|g" -e "s|@MEDIA@|$(esc "$MEDIA")|g" \
        -e "s|@KEYS@|$(esc "$KEYS")|g" -e "s|@ONLINE@|$online|g" \
        -e "s|@VERIFY_URL@|$(esc "$verify")|g" -e "s|@VERIFY_CACHE@|$(esc "$VERIFY_CACHE")|g" \
        -e "s|@WORKERS@|$(esc "$WORKERS")|g" -e "s|@CONTENT_PATTERN@|$(esc "$PATTERN")|g" \
        -e "s|@CONTENT_REGSUB@|$(esc "$regsub")|g" -e "s|@ORIGIN@|$(esc "$origin")|g" \
        "$1" >"$2.tmp"
    if [[ $1 == *haproxy.cfg.in ]]; then
        # One line per published key: HAProxy loads key files at start.
        local rules="" pem kid
        for pem in "$KEYS"/*.pem; do
            kid=$(basename "$pem" .pem)
            rules+="    http-request set-var(txn.sig) var(txn.grant),jwt_verify(\"ES256\",\"$pem\") if { var(txn.kid) -m str $kid }"$'\n'
        done
        awk -v rules="$rules" '$0 == "@KEY_RULES@" { printf "%s", rules; next } { print }' \
            "$2.tmp" >"$2"
        rm -f "$2.tmp"
    else
        mv "$2.tmp" "$2"
    fi
}

PIDS=()
LOOPS=()
cleanup() {
    local pid
    # The key refresh loops first, with the sleep each one is waiting in.
    for pid in "${LOOPS[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' TERM INT

if [[ $EDGE == nginx ]]; then
    render "$HERE/nginx/nginx.conf.in" "$RUN/nginx.conf"
    nginx -t -q -p "$RUN" -c "$RUN/nginx.conf" || die "the nginx configuration does not load"
    nginx -p "$RUN" -c "$RUN/nginx.conf" &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    # njs reads the key files on every check: new keys need no reload.
    (while sleep "$KEYS_EVERY"; do refresh_keys || true; done) &
    LOOPS+=($!)
else
    if [[ -z $ORIGIN ]]; then
        render "$HERE/haproxy/origin.conf.in" "$RUN/origin.conf"
        nginx -p "$RUN" -c "$RUN/origin.conf" &
        PIDS+=($!)
    fi
    render "$HERE/haproxy/haproxy.cfg.in" "$RUN/haproxy.cfg"
    haproxy -c -f "$RUN/haproxy.cfg" >"$RUN/haproxy-check.log" 2>&1 ||
        { cat "$RUN/haproxy-check.log" >&2; die "the HAProxy configuration does not load"; }
    # Master-worker: SIGUSR2 reloads the configuration without dropping
    # connections.
    haproxy -W -db -f "$RUN/haproxy.cfg" &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    (
        seen=$(keys_digest)
        while sleep "$KEYS_EVERY"; do
            refresh_keys || continue
            now=$(keys_digest)
            if [[ $now != "$seen" ]]; then
                render "$HERE/haproxy/haproxy.cfg.in" "$RUN/haproxy.cfg"
                kill -USR2 "$EDGE_PID" && seen=$now
            fi
        done
    ) &
    LOOPS+=($!)
fi
echo "serve.sh: $EDGE edge on $LISTEN serving $MEDIA (run dir $RUN)" >&2
wait "$EDGE_PID"
