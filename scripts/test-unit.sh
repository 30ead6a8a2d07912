#!/usr/bin/env bash
# The fast lane: builds, then runs only the unit tests (see scripts/test-files.js
# --unit): no apt packages, no nginx, no Dovecot, no child processes.
# The whole suite is `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
rm -rf dist
npm run build --silent
mapfile -t files < <(node scripts/test-files.js --unit)
exec node --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout=60000 --test-force-exit "${files[@]}"
