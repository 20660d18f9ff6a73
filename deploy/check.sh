#!/usr/bin/env bash
# Checks the deploy artifacts with the tools that run them:
# - the Prometheus rules: `promtool check rules` and their unit tests
#   (`promtool test rules`);
# - every Grafana panel query parses as PromQL (`promtool check rules` on
#   them as recording rules, Grafana's variables filled in);
# - the systemd unit: `systemd-analyze verify` with no warning at all, and
#   `systemd-analyze security` exposure at most 2.0 (both offline, against
#   a copy of the unit whose ExecStart points at BINARY), and BINARY run
#   under strace stays inside the unit's sandbox (systemd/check-sandbox.sh).
# Metric names are checked against the code by tests/deploy.rs; the
# container image by deploy/docker/test-image.sh.
#
# Usage: deploy/check.sh [BINARY]   (default target/debug/streamguard)
# Needs promtool (apt-get install -y prometheus), systemd-analyze
# (apt-get install -y systemd), strace and python3; fails when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "deploy/check: $*" >&2
    exit 1
}

bin=${1:-target/debug/streamguard}
[ -x "$bin" ] || fail "no binary at $bin: cargo build --features full"
command -v promtool >/dev/null || fail "promtool is missing: apt-get install -y prometheus"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing: apt-get install -y systemd"
command -v python3 >/dev/null || fail "python3 is missing: apt-get install -y python3"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== promtool check rules / test rules (deploy/prometheus)"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

echo "== Grafana panel queries parse as PromQL (deploy/grafana/streamguard.json)"
python3 - deploy/grafana/streamguard.json >"$work/panels.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("the dashboard has no queries")
print("groups:\n  - name: panels\n    rules:")
for i, expr in enumerate(exprs):
    expr = expr.replace("$__rate_interval", "5m").replace('"$job"', '".*"')
    print(f"      - record: panel_{i}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$work/panels.yml"

echo "== systemd-analyze verify / security (deploy/systemd/streamguard.service)"
ln -s "$(readlink -f "$bin")" "$work/streamguard"
sed "s|/usr/local/bin/streamguard|$work/streamguard|g" deploy/systemd/streamguard.service \
    >"$work/streamguard.service"
# verify exits 0 on unknown keys and bad values (it only warns): any output fails.
if ! out=$(systemd-analyze verify "$work/streamguard.service" 2>&1) || [ -n "$out" ]; then
    fail "systemd-analyze verify: ${out:-failed}"
fi
echo "verify: no warnings"
security=$(systemd-analyze security --offline=yes --threshold=20 "$work/streamguard.service" 2>&1) ||
    fail "systemd-analyze security: exposure above 2.0:
$security"
echo "$security" | grep 'Overall exposure level'
deploy/systemd/check-sandbox.sh "$bin"
