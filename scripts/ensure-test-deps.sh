#!/usr/bin/env bash
# What the tests need beyond what `npm start` needs: Debian's Chromium for the
# SRE console's browser test (driven by playwright-core, never a downloaded
# browser) and systemd-analyze for the unit file check. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_APT_PACKAGES=(chromium systemd unzip strace)
missing=()
for pkg in "${TEST_APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-test-deps: missing Debian packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  echo "ensure-test-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
