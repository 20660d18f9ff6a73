#!/usr/bin/env bash
# Builds the runtime stage of deploy/docker/Dockerfile with buildah and runs
# it: `--version` lists every store, the server answers /healthz on a port,
# the image's own HEALTHCHECK command passes (and fails once the server is
# gone), the process runs as uid 65532, its `file:` store writes to /data,
# and SIGTERM ends it with status 0.
#
# The Dockerfile's base images (rust:, gcr.io/distroless/cc) cannot be
# pulled without a registry, so the stage is rebuilt on `FROM scratch`:
# its instructions (COPY, ENV, USER, EXPOSE, VOLUME, HEALTHCHECK,
# ENTRYPOINT) are taken from the Dockerfile as they are, the build stage's
# output is the binary given here (stripped, as the Dockerfile does), and
# what the distroless base provides — glibc and the libraries `ldd` names,
# the loader, CA certificates, /etc/passwd, /tmp — is copied from this host.
#
# Usage: deploy/docker/test-image.sh [BINARY]
#   BINARY built with `--features full` (default target/release/streamguard).
# Needs root, buildah (apt-get install -y buildah), curl and ss. Images and
# containers live in a temporary storage root, removed at exit (buildah
# itself keeps a small blob-info cache in /var/lib/containers/cache).
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
    echo "test-image: $*" >&2
    exit 1
}

bin=${1:-target/release/streamguard}
[ -x "$bin" ] || fail "no binary at $bin: cargo build --release --features full"
for tool in buildah curl ss ldd strip python3; do
    command -v "$tool" >/dev/null ||
        fail "$tool is missing: apt-get install -y buildah curl iproute2 binutils python3"
done

work=$(mktemp -d)
server=""
image=localhost/streamguard-test:latest
bah() {
    buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" "$@"
}
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -KILL "$server" 2>/dev/null || true
    fi
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot

echo "== build context: what the build stage and the distroless base provide"
ctx=$work/context
install -D --strip "$bin" "$ctx/out/usr/local/bin/streamguard"
install -d "$ctx/out/data"
base=$ctx/base
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    install -D "$(readlink -f "$lib")" "$base$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
fi
install -d "$base/etc" "$base/home/nonroot" && install -d -m 1777 "$base/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"

# The Dockerfile's last stage, with its base swapped for the copied files
# and `COPY --from=build /out/…` reading the same paths from the context.
python3 - deploy/docker/Dockerfile >"$ctx/Dockerfile" <<'PY'
import re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
last = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
print("FROM scratch\nCOPY base/ /")
for line in lines[last + 1:]:
    if line.upper().startswith("COPY "):
        if "--from=build" not in line:
            sys.exit(f"unexpected COPY in the runtime stage: {line}")
        line = line.replace("--from=build ", "").replace(" /out/", " out/")
    print(line)
PY
sed 's/^/  /' "$ctx/Dockerfile"

echo "== buildah bud (FROM scratch, docker format for HEALTHCHECK)"
bah bud --quiet --format docker --layers=false -t "$image" -f "$ctx/Dockerfile" "$ctx" >/dev/null
size=$(bah images --format '{{.Size}}' "$image")
echo "image $image: $size"

echo "== image settings"
bah inspect --type image "$image" >"$work/image.json"
python3 - "$work/image.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["Docker"]["config"]
def expect(what, got, want):
    if got != want:
        sys.exit(f"test-image: {what} is {got!r}, want {want!r}")
expect("User", c.get("User"), "65532:65532")
env = dict(e.split("=", 1) for e in c.get("Env") or [])
expect("STREAMGUARD_LISTEN", env.get("STREAMGUARD_LISTEN"), "0.0.0.0:8080")
expect("STREAMGUARD_STORE", env.get("STREAMGUARD_STORE"), "file:/data")
expect("ExposedPorts", sorted(c.get("ExposedPorts") or {}), ["8080/tcp"])
expect("Volumes", sorted(c.get("Volumes") or {}), ["/data"])
expect("Entrypoint", c.get("Entrypoint"), ["/usr/local/bin/streamguard"])
expect("Healthcheck", (c.get("Healthcheck") or {}).get("Test"),
       ["CMD", "/usr/local/bin/streamguard", "healthcheck"])
print("user 65532:65532, env, port 8080, volume /data, entrypoint, healthcheck: as in the Dockerfile")
PY
healthcheck=$(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"][1:]))' "$work/image.json")

ctr=$(bah from --pull=never --quiet "$image")

echo "== --version"
version=$(bah run "$ctr" -- /usr/local/bin/streamguard --version)
echo "$version"
case "$version" in
*"(stores: memory, file, redis, dynamodb; lambda)") ;;
*) fail "the image's binary was not built with --features full" ;;
esac

echo "== serve on a free port, as the image's user, on its /data volume"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
listen=127.0.0.1:$port
bah run --network host --env "STREAMGUARD_LISTEN=$listen" "$ctr" -- /usr/local/bin/streamguard \
    >"$work/server.log" 2>&1 &
runner=$!
for _ in $(seq 100); do
    server=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    [ -n "$server" ] && break
    kill -0 "$runner" 2>/dev/null || { cat "$work/server.log"; fail "the server exited"; }
    sleep 0.2
done
[ -n "$server" ] || { cat "$work/server.log"; fail "nothing listens on $listen"; }

uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$server/status")
[ "$uids" = "65532 65532 65532 65532" ] || fail "the server runs as uid $uids, not 65532"
echo "pid $server runs as uid $uids"

health=$(curl -sS -w ' %{http_code}' "http://$listen/healthz")
[ "$health" = '{"status":"ok"} 200' ] || fail "/healthz answered $health"
echo "GET /healthz: $health"
started=$(curl -sS -o /dev/null -w '%{http_code}' -H 'X-ID: image-test' -X POST "http://$listen/streams")
[ "$started" = 201 ] || fail "a start answered $started"
echo "POST /streams: $started (the file: store writes /data as uid 65532)"

# shellcheck disable=SC2086 # the command's words, as HEALTHCHECK runs them
bah run --network host --env "STREAMGUARD_LISTEN=$listen" "$ctr" -- $healthcheck ||
    fail "the HEALTHCHECK command ($healthcheck) failed while the server runs"
echo "HEALTHCHECK $healthcheck: exit 0"

kill -TERM "$server"
status=0
wait "$runner" || status=$?
server=""
[ "$status" = 0 ] || { cat "$work/server.log"; fail "SIGTERM: exit status $status"; }
echo "SIGTERM: exit 0"
grep -q '"message":"stopped"' "$work/server.log" || fail "no 'stopped' log line"

if bah run --network host --env "STREAMGUARD_LISTEN=$listen" "$ctr" -- $healthcheck 2>/dev/null; then
    fail "the HEALTHCHECK command passes with no server"
fi
echo "HEALTHCHECK with the server gone: fails"
echo "test-image: ok ($size)"
