#!/usr/bin/env bash
# The one test command: installs and starts the local servers, runs the whole workspace's tests
# against them, fuzzes the HTTP API with schemathesis (infra/schemathesis.sh), runs every
# benchmark scenario at smoke size, and stops the servers again however the run ends.
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
# The client core must stay free of tokio, system time and system randomness: it is compiled
# for the browser. A dependency that breaks that shows up here, not in the web build.
section "wasm32 build of the client core (dlab-core, dlab-client without native)"
t0=$SECONDS
wasm_rc=0
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown || wasm_rc=$?
fi
if ((wasm_rc == 0)); then
    wasm_args=(build -p dlab-core -p dlab-client --no-default-features --target wasm32-unknown-unknown)
    [[ -f Cargo.lock ]] && wasm_args+=(--locked)
    cargo "${wasm_args[@]}" || wasm_rc=$?
fi
section "wasm32 build: exit $wasm_rc in $((SECONDS - t0))s"
((rc != 0)) || rc=$wasm_rc

section "schemathesis (infra/schemathesis.sh)"
t0=$SECONDS
st_rc=0
bash "$ROOT/infra/schemathesis.sh" || st_rc=$?
section "schemathesis: exit $st_rc in $((SECONDS - t0))s"
((rc != 0)) || rc=$st_rc

# Every benchmark scenario at a tiny size (BENCHMARKS.md): it proves they still run, it measures
# nothing. The socket.io baseline needs Node.js and npm.
section "benchmark smoke run (dlab-bench all --smoke)"
t0=$SECONDS
bench_rc=0
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
    fi
fi
build_args=(build -p local-gateway -p dlab-bench)
[[ -f Cargo.lock ]] && build_args+=(--locked)
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
if cargo "${build_args[@]}"; then
    "$target_dir/debug/dlab-bench" --gateway "$target_dir/debug/local-gateway" \
        --out "$target_dir/bench-smoke" all --smoke || bench_rc=$?
    # The two end-to-end scenarios again on the persistent embedded default (SQLite).
    for scenario in seed-load rooms; do
        "$target_dir/debug/dlab-bench" --gateway "$target_dir/debug/local-gateway" --store sqlite \
            --out "$target_dir/bench-smoke-sqlite" "$scenario" --smoke || bench_rc=$?
    done
else
    bench_rc=$?
fi
section "benchmark smoke run: exit $bench_rc in $((SECONDS - t0))s"
((rc != 0)) || rc=$bench_rc

# The web console: the client core built for the browser and the Vue app (infra/web-build.sh,
# which skips what did not change), then its browser scenario in headless Chromium against the
# debug gateway built above. Debian's chromium: Playwright's own download cannot be reached.
section "web console: build (infra/web-build.sh) and browser test (npm test in shared/web)"
t0=$SECONDS
web_rc=0
if ! command -v chromium >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
        apt_install || { apt-get update -q >/dev/null && apt_install; } || web_rc=$?
    else
        echo "test: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
        web_rc=1
    fi
fi
((web_rc != 0)) || bash "$ROOT/infra/web-build.sh" || web_rc=$?
if ((web_rc == 0)); then
    (cd "$ROOT/shared/web" && DLAB_GATEWAY_BIN="$target_dir/debug/local-gateway" npm test) || web_rc=$?
fi
section "web console: exit $web_rc in $((SECONDS - t0))s"
((rc != 0)) || rc=$web_rc
exit "$rc"
