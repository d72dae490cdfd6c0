#!/usr/bin/env bash
# Builds the PKCS#11 fault-injection shim used by the test suite:
#   test/fixtures/pkcs11-fault-shim/fault_shim.c -> dist/native/libpkcs11-fault-shim.so
# Idempotent: only rebuilds when the source is newer than the library (or FORCE=1).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
src="$root/test/fixtures/pkcs11-fault-shim/fault_shim.c"
out_dir="$root/dist/native"
out="$out_dir/libpkcs11-fault-shim.so"
p11_include="${P11_KIT_INCLUDE:-/usr/include/p11-kit-1/p11-kit}"

if [[ ! -f $src ]]; then
  echo "build-fault-shim: missing source $src" >&2
  exit 1
fi

if [[ ${FORCE:-0} != 1 && -f $out && ! $src -nt $out ]]; then
  exit 0
fi

if [[ ! -f $p11_include/pkcs11.h ]]; then
  echo "build-fault-shim: $p11_include/pkcs11.h not found (install libp11-kit-dev)" >&2
  exit 1
fi

mkdir -p "$out_dir"
# Build to a temp name and rename, so a concurrent loader never sees a half-written .so.
tmp="$(mktemp "$out_dir/.libpkcs11-fault-shim.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"${CC:-gcc}" -shared -fPIC -O2 -Wall -Wextra -Werror \
  -I"$p11_include" \
  -o "$tmp" "$src" \
  -ldl -lpthread
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "build-fault-shim: built $out" >&2
