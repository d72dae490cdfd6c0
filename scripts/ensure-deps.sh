#!/usr/bin/env bash
# Makes this checkout runnable: Debian packages, node_modules and the TypeScript build.
# Idempotent and quick when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(softhsm2 p11-kit opensc redis-server jq curl uuid-runtime openssl libp11-kit-dev gcc g++ make python3 libffi-dev pkg-config xz-utils)

source scripts/lib/apt.sh
ensure_apt_packages ensure-deps "${APT_PACKAGES[@]}"

stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp || ! -f node_modules/pkcs11js/build/Release/pkcs11.node ]]; then
  echo "ensure-deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

npx --no-install tsc -p tsconfig.json
