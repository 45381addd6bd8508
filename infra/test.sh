#!/usr/bin/env bash
# The one test command: installs and starts the local servers, runs the whole workspace's tests
# against them, fuzzes the HTTP API with schemathesis (infra/schemathesis.sh), and stops the
# servers again however the run ends.
#
#   bash infra/test.sh [extra cargo test args...]     e.g. bash infra/test.sh -- --nocapture
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVICES=(bash "$ROOT/infra/services.sh")

section() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }

# shellcheck disable=SC2317  # called through the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    section "stopping services"
    "${SERVICES[@]}" stop || rc=$((rc == 0 ? 1 : rc))
    section "done (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "installing services"
"${SERVICES[@]}" install

section "starting services"
"${SERVICES[@]}" start
env_lines="$("${SERVICES[@]}" env)"
eval "$env_lines"
sed 's/^export /    /' <<<"$env_lines" >&2

cargo_args=(test --workspace)
[[ -f Cargo.lock ]] && cargo_args+=(--locked)
section "cargo ${cargo_args[*]}${*:+ $*}"
rc=0
t0=$SECONDS
cargo "${cargo_args[@]}" "$@" || rc=$?
section "cargo test: exit $rc in $((SECONDS - t0))s"

# HTTP API fuzzing against a gateway of its own (memory backend, 127.0.0.1, stopped by pid).
section "schemathesis (infra/schemathesis.sh)"
t0=$SECONDS
st_rc=0
bash "$ROOT/infra/schemathesis.sh" || st_rc=$?
section "schemathesis: exit $st_rc in $((SECONDS - t0))s"
((rc != 0)) || rc=$st_rc
exit "$rc"
