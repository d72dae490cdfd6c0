#!/bin/sh
# One demo HSM node: exports one SoftHSM token over a unix socket with `p11-kit server` (p11-kit 0.25.5,
# built in the Dockerfile's p11kit stage). The proxy reaches it through p11-kit-client.so with
# P11_KIT_SERVER_ADDRESS=unix:path=$HSM_NODE_SOCKET, as the failover drills do (loadtest/drill/hsm-node.ts).
#   HSM_NODE_SOCKET   socket path, in a volume shared with the proxies
#   HSM_TOKEN_LABEL   the token to export
#   SOFTHSM2_CONF     SoftHSM configuration (written by the demo init service)
#   HSM_PKCS11_MODULE the provider module (default: Debian's SoftHSM)
set -eu
: "${HSM_NODE_SOCKET:?HSM_NODE_SOCKET is not set}"
: "${HSM_TOKEN_LABEL:?HSM_TOKEN_LABEL is not set}"
: "${SOFTHSM2_CONF:?SOFTHSM2_CONF is not set}"
module="${HSM_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
p11kit="${P11KIT_PREFIX:-/opt/p11-kit}/bin/p11-kit"
[ -r "$SOFTHSM2_CONF" ] || { echo "hsm-node: $SOFTHSM2_CONF missing (has the init service run?)" >&2; exit 1; }
# A socket left by a killed server would make the new one fail to bind.
rm -f "$HSM_NODE_SOCKET"
umask 077
exec "$p11kit" server --foreground --provider "$module" --name "$HSM_NODE_SOCKET" "pkcs11:token=$HSM_TOKEN_LABEL"
