#!/usr/bin/env bash
# Builds p11-kit 0.25 (server, remote and client module) for the failover drills:
#   $HOME/.cache/hyok-proxy/p11-kit-0.25/{bin/p11-kit, lib/pkcs11/p11-kit-client.so, libexec/p11-kit/p11-kit-remote}
# Debian bookworm's p11-kit 0.24.1 rejects CKM_AES_GCM over its RPC, and trixie's binary packages need a newer
# glibc, so this builds trixie's SOURCE package. Idempotent: exits at once when the build is in place (FORCE=1
# rebuilds). Prints the install prefix on stdout (progress goes to stderr).
#
# Source: `apt-get source --download-only p11-kit/trixie` from a deb-src-only list file
# (/etc/apt/sources.list.d/hyok-trixie-src.list; binary packages keep coming from bookworm), or, when apt cannot
# (not root, no network to the index), the orig tarball straight from the Debian pool, checked against a pinned SHA-256.
set -euo pipefail

VERSION=0.25.5
ORIG="p11-kit_${VERSION}.orig.tar.xz"
ORIG_SHA256=04d0a86450cdb1be018f26af6699857171a188ac6d5b8c90786a60854e1198e5
POOL_URL="http://deb.debian.org/debian/pool/main/p/p11-kit/${ORIG}"
LIST_FILE=/etc/apt/sources.list.d/hyok-trixie-src.list
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

cache="${HYOK_CACHE_DIR:-$HOME/.cache/hyok-proxy}"
prefix="${HYOK_P11KIT_PREFIX:-$cache/p11-kit-0.25}"
log() { echo "build-p11kit: $*" >&2; }

built() {
  [[ -x $prefix/bin/p11-kit ]] || return 1
  compgen -G "$prefix/lib/*pkcs11/p11-kit-client.so" >/dev/null || compgen -G "$prefix/lib/*/pkcs11/p11-kit-client.so" >/dev/null
}

if [[ ${FORCE:-0} != 1 ]] && built; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$cache"
# Two drills (or a drill and the tests) may start at once: one builds, the other waits and reuses.
exec 9>"$cache/.p11-kit-build.lock"
flock 9
if [[ ${FORCE:-0} != 1 ]] && built; then
  echo "$prefix"
  exit 0
fi

for tool in gcc make pkg-config xz; do
  command -v "$tool" >/dev/null || { log "missing $tool (run scripts/ensure-deps.sh as root)"; exit 1; }
done
pkg-config --exists libffi || { log "missing libffi-dev (run scripts/ensure-deps.sh as root)"; exit 1; }

downloads="$cache/downloads"
mkdir -p "$downloads"
tarball="$downloads/$ORIG"

sha_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$ORIG_SHA256" ]]; }

fetch_with_apt() {
  [[ $(id -u) -eq 0 ]] || return 1
  command -v apt-get >/dev/null || return 1
  [[ -f $KEYRING ]] || return 1
  local added=0
  if [[ ! -f $LIST_FILE ]]; then
    log "adding $LIST_FILE (deb-src only: binary packages still come from bookworm)"
    echo "deb-src [signed-by=$KEYRING] http://deb.debian.org/debian trixie main" >"$LIST_FILE"
    added=1
  fi
  # Refresh only this source's index; the other lists are left as they are. A list that cannot be
  # refreshed would break every later `apt-get update`, so one added here is taken out again.
  if ! apt-get update -qq -o Dir::Etc::sourcelist="$LIST_FILE" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >&2; then
    ((added)) && rm -f "$LIST_FILE"
    return 1
  fi
  local work
  work="$(mktemp -d "$downloads/apt.XXXXXX")"
  # apt checks each file against the signed Sources index. Its exit status is not used: some mirrors serve the
  # tarballs but not the .dsc or .asc, and the tarball is all this build needs (its SHA-256 is checked below).
  (cd "$work" && apt-get source --download-only -qq p11-kit/trixie >&2) || true
  if [[ -f $work/$ORIG ]]; then
    mv -f "$work/$ORIG" "$tarball"
    rm -rf "$work"
    return 0
  fi
  log "apt did not fetch $ORIG (got: $(ls "$work" | tr '\n' ' ')); trying the pool"
  rm -rf "$work"
  return 1
}

fetch_from_pool() {
  command -v curl >/dev/null || { log "curl missing"; return 1; }
  log "downloading $POOL_URL"
  curl -fsSL --retry 3 -o "$tarball.part" "$POOL_URL" && mv -f "$tarball.part" "$tarball"
}

if ! sha_ok "$tarball"; then
  rm -f "$tarball"
  fetch_with_apt || fetch_from_pool || { log "cannot download $ORIG"; exit 1; }
fi
if ! sha_ok "$tarball"; then
  log "$ORIG does not match the pinned SHA-256 $ORIG_SHA256"
  rm -f "$tarball"
  exit 1
fi

build="$(mktemp -d "$cache/build-p11kit.XXXXXX")"
trap 'rm -rf "$build"' EXIT
tar -xJf "$tarball" -C "$build"
src="$build/p11-kit-$VERSION"
log "building p11-kit $VERSION into $prefix (about a minute)"
(
  cd "$src"
  ./configure --prefix="$prefix" --disable-nls --without-systemd --disable-doc --disable-trust-module --without-libtasn1 >"$build/configure.log" 2>&1 ||
    { tail -n 30 "$build/configure.log" >&2; exit 1; }
  make -j"$(nproc 2>/dev/null || echo 2)" >"$build/make.log" 2>&1 || { tail -n 40 "$build/make.log" >&2; exit 1; }
  # Staged install, then one rename: an interrupted build never leaves a half-installed prefix behind.
  make install DESTDIR="$build/stage" >"$build/install.log" 2>&1 || { tail -n 30 "$build/install.log" >&2; exit 1; }
)
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
mv "$build/stage$prefix" "$prefix"
built || { log "build finished but $prefix lacks bin/p11-kit or p11-kit-client.so"; exit 1; }
log "built p11-kit $VERSION in $prefix"
echo "$prefix"
