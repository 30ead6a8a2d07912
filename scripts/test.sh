#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests drive
# (real nginx as the oracle, Dovecot as a real backend, real mail clients),
# installs the npm dev dependencies, builds, lints, and runs every test on
# each supported Node.js line it proves: Node.js 26 (Active LTS) and 22 (the
# oldest Maintenance LTS), official builds fetched once from the npm registry
# by scripts/node-lts.sh. The machine's own Node.js (20 here, past its end
# of life) only builds and lints: Postern does not claim it.
#
# TEST_NODE_LTS="<version> ..." picks the lanes (e.g. "24.22.3");
# TEST_NODE_LTS=none runs the machine's Node only (when the registry is out
# of reach). TEST_CONCURRENCY (default 3) is the runner's file concurrency.
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

# Fetch every lane's Node before the first lane, so a registry failure shows
# in seconds rather than after a run.
lanes="${TEST_NODE_LTS:-26.12.1 22.23.5}"
nodes=()
if [ "$lanes" = none ]; then
  nodes=("$(command -v node)")
else
  for v in $lanes; do nodes+=("$(bash scripts/node-lts.sh "$v")"); done
fi

# A test that leaves a socket open must fail, not hang the run: each test
# has 3 minutes, and a file whose tests are done exits even with handles open.
# The test harnesses start Postern with process.execPath, so in each lane the
# Postern under test runs on that lane's Node too. Every lane runs even when
# an earlier one fails; the script fails when any did. report-flush.js makes
# each test file's stdout blocking, so no verdict is lost when a file is
# forced to exit (test/support/report-flush.ts).
failed=()
for n in "${nodes[@]}"; do
  v="$("$n" -v)"
  echo "=== the test suite on Node.js $v ($n)" >&2
  start=$SECONDS
  if "$n" --import "$PWD/dist/test/support/report-flush.js" --test --test-concurrency="${TEST_CONCURRENCY:-3}" --test-timeout=180000 --test-force-exit "${files[@]}"; then
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
