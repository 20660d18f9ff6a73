#!/usr/bin/env bash
# Instructions per decision with and without a 4-rule plan, from callgrind
# (exact and repeatable, whatever else the machine is doing): each case runs
# once with 0 and once with N operations; the difference over N is the cost
# of one. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
cargo build --release --bench plan_cost --quiet 2>/dev/null || cargo build --release --benches --quiet
BIN=$(ls -t target/release/deps/plan_cost-* | grep -v '\.d$' | head -1)
instructions() {
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" "$1" "$2" >/dev/null 2>&1
  grep '^summary:' "$out" | awk '{print $2}'
  rm -f "$out"
}
printf '%-20s %14s\n' case 'instr/op'
for case in heartbeat-3-none heartbeat-3-plan start-3-none start-3-plan start-1000-none start-1000-plan; do
  base=$(instructions "$case" 0)
  full=$(instructions "$case" "$N")
  printf '%-20s %14d\n' "$case" $(( (full - base) / N ))
done
