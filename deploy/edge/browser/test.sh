#!/usr/bin/env bash
# The browser test of the edges (playback.test.js): the player SDK and
# hls.js in Debian's chromium play an ffmpeg HLS stream through the real
# nginx edges across grant renewals, and stop after an admin revoke.
#
#   deploy/edge/browser/test.sh [target/debug/streamguard]
#
# Needs `npm ci` in this directory (hls.js, playwright-core; no browser is
# downloaded). A missing chromium, nginx, njs module or ffmpeg is a failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SG=${1:-$ROOT/target/debug/streamguard}
SG=$(cd "$(dirname "$SG")" && pwd)/$(basename "$SG")
[[ -x $SG ]] || { echo "FAIL: no streamguard binary at $SG (cargo build)" >&2; exit 1; }
[[ -d $HERE/node_modules/hls.js && -d $HERE/node_modules/playwright-core ]] ||
    { echo "FAIL: $HERE has no node_modules; install them with: (cd deploy/edge/browser && npm ci)" >&2; exit 1; }
cd "$HERE"
STREAMGUARD_BIN=$SG exec node --test --test-concurrency=1 playback.test.js
