#!/usr/bin/env bash
# HTTP API fuzzing (issue 12, reliability suite): schemathesis generates requests from the local
# gateway's own /openapi.json, valid and invalid, and checks that no answer is a 5xx
# (not_a_server_error), that every answer matches the schema the document declares for its
# status (response_schema_conformance), and that its status is one the document lists
# (status_code_conformance).
#
#   bash infra/schemathesis.sh              install if needed, start a gateway, fuzz, stop it
#   bash infra/schemathesis.sh install      only create .dlab/schemathesis-venv
#
# Environment:
#   DLAB_SCHEMATHESIS_EXAMPLES   test cases per operation and phase (default 100: about 3,000
#                                requests, well under a minute on 2 cores)
#   DLAB_SCHEMATHESIS_SEED       a seed to replay a run (schemathesis prints the one it used)
#   DLAB_SCHEMATHESIS_CHECKS     checks to run (default: not_a_server_error,
#                                response_schema_conformance,status_code_conformance; "all" also
#                                reports where the document is looser than the server)
#   DLAB_GATEWAY_BIN             the local-gateway binary (default: the debug build in the
#                                target directory, brought up to date with cargo build)
#
# The gateway runs on the memory backend (the server variables of infra/services.sh are
# cleared for it), binds 127.0.0.1 on a free port, and is stopped by its pid however the run
# ends. schemathesis lives in its own venv next to the services' one (.dlab/venv): its pinned
# dependencies must not move moto's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DLAB="$ROOT/.dlab"
VENV="$DLAB/schemathesis-venv"
RUN="$DLAB/run"

# The version the script was checked with; bump here.
SCHEMATHESIS_VERSION=4.32.5

EXAMPLES=${DLAB_SCHEMATHESIS_EXAMPLES:-100}
CHECKS=${DLAB_SCHEMATHESIS_CHECKS:-not_a_server_error,response_schema_conformance,status_code_conformance}
START_TIMEOUT=60
STOP_TIMEOUT=10

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

install() {
    if [[ -x $VENV/bin/st ]] && [[ $("$VENV/bin/st" --version 2>/dev/null) == *" $SCHEMATHESIS_VERSION" ]]; then
        log "schemathesis $SCHEMATHESIS_VERSION already installed (.dlab/schemathesis-venv)"
        return
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into .dlab/schemathesis-venv"
    local t0=$SECONDS
    rm -rf "$VENV"
    mkdir -p "$DLAB"
    python3 -m venv "$VENV" || die "python3 -m venv failed (bash infra/services.sh install sets up python3-venv)"
    "$VENV/bin/pip" install --disable-pip-version-check -q "schemathesis==$SCHEMATHESIS_VERSION"
    log "installed in $((SECONDS - t0))s"
}

gateway_bin() {
    if [[ -n ${DLAB_GATEWAY_BIN:-} ]]; then
        [[ -x $DLAB_GATEWAY_BIN ]] || die "DLAB_GATEWAY_BIN=$DLAB_GATEWAY_BIN is not an executable"
        printf '%s' "$DLAB_GATEWAY_BIN"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    # Always through cargo, so the binary is never older than the source; after `cargo test`
    # this is a no-op or a short link step (same profile and dependencies).
    local args=(build -q -p local-gateway)
    [[ -f $ROOT/Cargo.lock ]] && args+=(--locked)
    (cd "$ROOT" && cargo "${args[@]}") >&2 || die "cargo build -p local-gateway failed"
    printf '%s' "$target/debug/local-gateway"
}

GATEWAY_PID=""
# shellcheck disable=SC2317  # called through the trap
stop_gateway() {
    [[ -n $GATEWAY_PID ]] || return 0
    if kill -0 "$GATEWAY_PID" 2>/dev/null; then
        # SIGINT is the gateway's Ctrl-C: it closes its sockets and stops.
        kill -INT "$GATEWAY_PID" 2>/dev/null || true
        local waited=0
        while kill -0 "$GATEWAY_PID" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$GATEWAY_PID" 2>/dev/null; then
            log "the gateway (pid $GATEWAY_PID) did not stop; killing it"
            kill -KILL "$GATEWAY_PID" 2>/dev/null || true
        fi
    fi
    wait "$GATEWAY_PID" 2>/dev/null || true
    GATEWAY_PID=""
}

run() {
    install
    local bin
    bin="$(gateway_bin)"
    mkdir -p "$RUN"
    local gw_log="$RUN/schemathesis-gateway.log"
    local report="$RUN/schemathesis"

    trap stop_gateway EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # The log exists before the gateway starts: the wait below reads it at once, and the child
    # opens its redirection only when it gets to run (a race that `set -e` turned into an exit).
    : >"$gw_log"
    # Memory backend whatever the caller's environment says; port 0 picks a free port.
    env -u REDIS_URL -u REDIS_CLUSTER -u MONGODB_URI -u AWS_ENDPOINT_URL -u JWT_SECRET \
        RUST_LOG="${RUST_LOG:-warn}" \
        "$bin" --listen 127.0.0.1:0 --no-compaction --ephemeral --no-compendium >"$gw_log" 2>&1 &
    GATEWAY_PID=$!

    local base="" waited=0
    while [[ -z $base ]]; do
        kill -0 "$GATEWAY_PID" 2>/dev/null || {
            cat "$gw_log" >&2
            die "the gateway exited before it listened"
        }
        ((waited < START_TIMEOUT * 10)) || die "the gateway did not print its address within ${START_TIMEOUT}s"
        base="$(sed -n 's#^  HTTP API:  \(http://127\.0\.0\.1:[0-9]*\) .*#\1#p' "$gw_log" | head -n1)"
        [[ -n $base ]] || {
            sleep 0.1
            waited=$((waited + 1))
        }
    done
    log "gateway (pid $GATEWAY_PID) on $base"

    local token
    token="$(curl -sf --noproxy '*' -X POST "$base/dev/token" -H 'content-type: application/json' \
        -d '{"userId":"gm"}' | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')" ||
        die "POST /dev/token failed"

    local args=(
        run "$base/openapi.json"
        --url "$base"
        --header "Authorization: Bearer $token"
        --checks "$CHECKS"
        --max-examples "$EXAMPLES"
        --workers 2
        --request-timeout 10
        --generation-database none
        --report junit --report-dir "$report"
        --no-color
    )
    [[ -n ${DLAB_SCHEMATHESIS_SEED:-} ]] && args+=(--seed "$DLAB_SCHEMATHESIS_SEED")
    log "st ${args[*]/Bearer */Bearer <dev token>}"
    local rc=0
    # No proxy: everything stays on 127.0.0.1. From .dlab/run, where schemathesis keeps its
    # .schemathesis/ state (for `st replay`), out of the repository's tree.
    (cd "$RUN" && NO_PROXY='*' no_proxy='*' "$VENV/bin/st" "${args[@]}") || rc=$?
    if ((rc != 0)); then
        log "failed (exit $rc); gateway log: $gw_log, JUnit report: $report"
    fi
    return "$rc"
}

case ${1:-run} in
    install) install ;;
    run) run ;;
    *) die "unknown command: $1 (expected: install, run)" ;;
esac
