#!/usr/bin/env bash
# Tests `local-gateway --lan` on a real non-loopback address without touching any network: the
# LAN suite (infra/local-gateway/tests/lan.rs) runs in a network namespace of its own (root, or
# unprivileged user namespaces, and `ip` are needed), where a veth pair holds 10.77.0.1 and
# 10.77.0.2 and the default route points at it. Nothing in there reaches the machine's
# interfaces: the gateway binds 10.77.0.1, the tests call it there, and the address detection
# of `--lan` (a UDP `connect`, which sends nothing) finds 10.77.0.1.
#
#   bash infra/lan-test.sh [extra cargo test args...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOCKED=()
[[ -f Cargo.lock ]] && LOCKED=(--locked)

# Build outside: the namespace has no network for cargo.
cargo test "${LOCKED[@]}" -p local-gateway --test lan --no-run

if ! unshare --net --map-root-user true 2>/dev/null && ! unshare --net true 2>/dev/null; then
    echo "lan-test: cannot create a network namespace here (needs root or user namespaces)" >&2
    exit 1
fi
UNSHARE=(unshare --net)
unshare --net true 2>/dev/null || UNSHARE=(unshare --net --map-root-user)

"${UNSHARE[@]}" bash -euo pipefail -c '
    ip link set lo up
    ip link add dlab-lan0 type veth peer name dlab-lan1
    ip addr add 10.77.0.1/24 dev dlab-lan0
    ip addr add 10.77.0.2/24 dev dlab-lan1
    ip link set dlab-lan0 up
    ip link set dlab-lan1 up
    ip route add default via 10.77.0.2 dev dlab-lan0
    DLAB_TEST_LAN_ADDR=10.77.0.1 DLAB_TEST_LAN_DETECT=1 \
        cargo test --offline "$@" -p local-gateway --test lan -- --nocapture
' lan-test "${LOCKED[@]}" "$@"
