#!/usr/bin/env bash
# Runs the binary the way the unit does — not root, `file:` store — under
# strace, sends it starts, a denial, a heartbeat, a stop, /readyz and
# /metrics, stops it with SIGTERM, and checks what it did against the
# sandbox in deploy/systemd/streamguard.service:
# - every system call it made is allowed by the unit's SystemCallFilter=
#   lines (expanded with `systemd-analyze syscall-filter`);
# - it never mapped memory writable and executable (MemoryDenyWriteExecute=);
# - every socket it opened is of a family in RestrictAddressFamilies=.
# (systemd itself is not PID 1 here, so the unit cannot be started.)
#
# Usage: deploy/systemd/check-sandbox.sh [BINARY]   (default target/debug/streamguard)
# Needs root (to drop to uid 65532), strace, setpriv, curl, ss,
# systemd-analyze and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
    echo "check-sandbox: $*" >&2
    exit 1
}

bin=$(readlink -f "${1:-target/debug/streamguard}")
[ -x "$bin" ] || fail "no binary at $bin: cargo build --features full"
for tool in strace setpriv curl ss systemd-analyze python3; do
    command -v "$tool" >/dev/null ||
        fail "$tool is missing: apt-get install -y strace util-linux curl iproute2 systemd python3"
done
unit=deploy/systemd/streamguard.service

work=$(mktemp -d)
tracer=""
trap '[ -n "$tracer" ] && kill -KILL "$tracer" 2>/dev/null; rm -rf "$work"' EXIT
chmod 755 "$work"
install -d -o 65532 -g 65532 -m 700 "$work/state"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
STREAMGUARD_DEFAULT_LIMIT=2 strace -f -qq -o "$work/trace" \
    setpriv --reuid=65532 --regid=65532 --clear-groups \
    "$bin" --listen "127.0.0.1:$port" --store "file:$work/state" >"$work/log" 2>&1 &
tracer=$!
server=""
for _ in $(seq 150); do
    server=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    [ -n "$server" ] && break
    kill -0 "$tracer" 2>/dev/null || { cat "$work/log"; fail "the server exited"; }
    sleep 0.2
done
[ -n "$server" ] || { cat "$work/log"; fail "nothing listens on port $port"; }

expect() {
    local want=$1 got
    shift
    got=$(curl -sS -o /dev/null -w '%{http_code}' "$@")
    [ "$got" = "$want" ] || fail "$* answered $got, not $want"
}
json=(-H 'X-ID: sandbox' -H 'Content-Type: application/json')
expect 201 "${json[@]}" -d '{"stream_id":"tv"}' "$base/streams"
expect 201 "${json[@]}" -d '{"stream_id":"phone"}' "$base/streams"
expect 409 "${json[@]}" -d '{"stream_id":"tablet"}' "$base/streams"
expect 200 -X POST -H 'X-ID: sandbox' "$base/streams/tv/heartbeat"
expect 204 -X DELETE -H 'X-ID: sandbox' "$base/streams/tv"
expect 200 "$base/readyz"
expect 200 "$base/metrics"
kill -TERM "$server"
status=0
wait "$tracer" || status=$?
tracer=""
[ "$status" = 0 ] || { cat "$work/log"; fail "SIGTERM: exit status $status"; }

systemd-analyze syscall-filter >"$work/groups" 2>/dev/null
python3 - "$unit" "$work/trace" "$work/groups" "$bin" <<'PY'
import re, sys
unit, trace, groups_file, binary = sys.argv[1:]

groups, current = {}, None
for line in open(groups_file):
    word = line.strip().split(" ")[0]
    if not word or word.startswith("#"):
        continue
    if not line[0].isspace():
        current = groups.setdefault(word, set())
    elif current is not None:
        current.add(word)

def expand(names):
    out = set()
    for name in names:
        out |= expand(groups[name]) if name.startswith("@") else {name}
    return out

allowed, denied, families = None, set(), set()
for line in open(unit):
    key, _, value = line.strip().partition("=")
    if key == "SystemCallFilter":
        if value.startswith("~"):
            denied |= expand(value[1:].split())
        else:
            allowed = (allowed or set()) | expand(value.split())
    elif key == "RestrictAddressFamilies":
        families |= set(value.split())
if allowed is None or not families:
    sys.exit(f"check-sandbox: {unit} has no SystemCallFilter= or RestrictAddressFamilies=")
allowed -= denied

# Only what the binary did: from its execve on (setpriv's own calls before).
lines = open(trace).read().splitlines()
start = next(i for i, l in enumerate(lines) if re.search(r'execve\("' + re.escape(binary) + '"', l))
calls = set()
problems = []
for line in lines[start:]:
    m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
    if not m:
        continue
    calls.add(m.group(1))
    if m.group(1) in ("mmap", "mprotect", "pkey_mprotect") and "PROT_WRITE" in line and "PROT_EXEC" in line:
        problems.append(f"writable and executable memory: {line}")
    if m.group(1) in ("socket", "socketpair"):
        family = line.split("(", 1)[1].split(",")[0]
        if family not in families:
            problems.append(f"socket family {family} not in RestrictAddressFamilies=: {line}")
outside = sorted(calls - allowed)
if outside:
    problems.append(f"system calls outside SystemCallFilter=: {outside}")
if problems:
    sys.exit("check-sandbox: " + "\n".join(problems))
print(f"{len(calls)} system calls, all allowed by SystemCallFilter=; no W+X memory; "
      f"sockets only of {' '.join(sorted(families))}")
PY
