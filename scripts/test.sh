#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests drive
# (real nginx as the oracle, Dovecot as a real backend, real mail clients),
# installs the npm dev dependencies, builds, lints, and runs every test twice:
# on this machine's Node.js and on Node.js 24 LTS (fetched once from the npm
# registry by scripts/node-lts.sh), so a user on a supported release is
# covered, not only whoever has the Node installed here.
#
# TEST_NODE_LTS=<version> picks another second Node (e.g. 22.23.5);
# TEST_NODE_LTS=none runs the machine's Node only (when the registry is out
# of reach). TEST_CONCURRENCY (default 2) is the runner's file concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
rm -rf dist
# One build for both lanes: tsc's output does not depend on the Node that runs it.
npm run build --silent
# The linter is part of the suite: a finding fails the run before any test.
npm run lint --silent
# Only the *.test.js files are run (scripts/test-files.js): given dist/test/,
# Node's runner would run every helper module there as a test file too.
# Command substitution, not <(...): a failing list must stop the run (set -e).
list=$(node scripts/test-files.js)
mapfile -t files <<<"$list"
[ -n "$list" ] || { echo "no test files found" >&2; exit 1; }

# Fetch the second Node before the first lane, so a registry failure shows
# in seconds rather than after the first run.
nodes=("$(command -v node)")
lts="${TEST_NODE_LTS:-}"
if [ "$lts" != none ]; then
  second="$(bash scripts/node-lts.sh ${lts:+"$lts"})"
  # Already the machine's release: one lane says everything.
  if [ "$("$second" -v)" != "$(node -v)" ]; then nodes+=("$second"); fi
fi

# A test that leaves a socket open must fail, not hang the run: each test
# has 3 minutes, and a file whose tests are done exits even with handles open.
# The test harnesses start Postern with process.execPath, so in each lane the
# Postern under test runs on that lane's Node too. Both lanes run even when
# the first fails; the script fails when either did.
failed=()
for n in "${nodes[@]}"; do
  v="$("$n" -v)"
  echo "=== the test suite on Node.js $v ($n)" >&2
  start=$SECONDS
  if "$n" --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout=180000 --test-force-exit "${files[@]}"; then
    echo "=== Node.js $v: passed in $((SECONDS - start)) s" >&2
  else
    echo "=== Node.js $v: FAILED after $((SECONDS - start)) s" >&2
    failed+=("$v")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "=== the test suite failed on Node.js ${failed[*]}" >&2
  exit 1
fi
