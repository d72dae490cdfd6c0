#!/usr/bin/env bash
# Makes this checkout runnable: Debian packages, node_modules and the TypeScript build.
# Idempotent and quick when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(softhsm2 p11-kit opensc redis-server jq curl uuid-runtime openssl libp11-kit-dev gcc g++ make python3 libffi-dev pkg-config xz-utils)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-deps: missing Debian packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp || ! -f node_modules/pkcs11js/build/Release/pkcs11.node ]]; then
  echo "ensure-deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

npx --no-install tsc -p tsconfig.json
