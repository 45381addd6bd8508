#!/usr/bin/env bash
# Runs a table on this machine: builds the web console when its inputs changed
# (infra/web-build.sh, when present), then starts the local gateway with the given options,
# from the repository root (so the console is found in shared/web/dist and the data in
# ./.dlab/data).
#
#   bash infra/run.sh [gateway options]        e.g. bash infra/run.sh --demo, bash infra/run.sh --lan
#
# A console that does not build does not stop the gateway: it starts anyway, and its /app/ page
# says how to build the console. DLAB_CARGO_PROFILE picks the cargo profile (default `local`:
# release without LTO, see the README; `release` works too).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -f infra/web-build.sh ]]; then
    if ! bash infra/web-build.sh; then
        echo "run: the web console did not build (see above); starting the gateway without it: its /app/ page says how to build it" >&2
    fi
else
    echo "run: infra/web-build.sh is missing; starting the gateway without building the console" >&2
fi

LOCKED=()
[[ -f Cargo.lock ]] && LOCKED=(--locked)
exec cargo run "${LOCKED[@]}" --profile "${DLAB_CARGO_PROFILE:-local}" -p local-gateway -- "$@"
