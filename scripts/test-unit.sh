#!/usr/bin/env bash
# The fast lane: builds, then runs only the unit tests (see scripts/test-files.js
# --unit): no apt packages, no nginx, no Dovecot, no test that starts a process.
# The whole suite is `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
# Incremental: a second run after a small edit rebuilds in seconds. Compiled
# tests whose source is gone are not run (scripts/test-files.js skips them).
npx tsc -p . --incremental --tsBuildInfoFile dist/.tsbuildinfo
# Command substitution, not <(...): a failing list must stop the run (set -e).
list=$(node scripts/test-files.js --unit)
mapfile -t files <<<"$list"
[ -n "$list" ] || { echo "no test files found" >&2; exit 1; }
exec node --import "$PWD/dist/test/support/report-flush.js" --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout=60000 --test-force-exit "${files[@]}"
