#!/usr/bin/env bash
# The cluster soak (NOT part of npm test): three Postern nodes behind HAProxy
# sharing one Redis, under steady login load for N minutes with node kills,
# reloads and a Redis outage; reports failed logins, TLS resumption across
# nodes and each node's memory (bench/soak-cluster.ts says what is checked).
#   bash scripts/soak-cluster.sh [--minutes 10] [--concurrency 6] [--kill-every 60] [--reload-every 45] [--redis-outage 10] [--no-sync]
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in /usr/sbin/haproxy /usr/bin/redis-server; do
  [ -x "$bin" ] || { echo "$bin is missing: bash scripts/install-test-deps.sh installs it" >&2; exit 1; }
done
[ -f dist/bench/soak-cluster.js ] || npx tsc -p .
exec node dist/bench/soak-cluster.js "$@"
