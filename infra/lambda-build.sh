#!/usr/bin/env bash
# Deployment tooling: SAM / cfn-lint / cargo-lambda in a private venv, the template check and the
# release build of every Lambda.
#
#   infra/lambda-build.sh [build]   install the tools if needed, then `cargo lambda build --release`
#                                   for every function crate in functions/ (x86_64 by default), one
#                                   cargo call per function, and check what each binary links
#   infra/lambda-build.sh validate  install the tools if needed, then `sam validate --lint` on
#                                   infra/template.yaml (offline)
#   infra/lambda-build.sh install   only install the tools venv (.dlab/tools-venv)
#   infra/lambda-build.sh env       print the PATH line that puts the tools first (eval "$(...)")
#
# The function list is read from `cargo metadata`: every workspace package whose manifest lives
# under functions/, so a new function crate is built as soon as it joins the workspace.
#
# One cargo call per function: a single call for all of them would unify the features of
# dlab-service and dlab-store across the functions and link every adapter (and its SDK) into
# every binary. Built one by one, each links only the adapters its Cargo.toml enables; shared
# dependencies with the same features are compiled once and reused from target/.
#
# Environment:
#   LAMBDA_TARGET     target triple: x86_64-unknown-linux-gnu (default) or aarch64-unknown-linux-gnu
#                     (the template's default architecture, Graviton; built with `--arm64`, and
#                     needs `rustup target add aarch64-unknown-linux-gnu` once, which CI does)
#   LAMBDA_COMPILER   cargo-lambda backend: cargo-zigbuild (default; links against the old glibc
#                     that Lambda's provided.al2023 has, with the zig that the PyPI package
#                     bundles, no download) or cargo (host linker; checked for glibc <= 2.34 below)
#   LAMBDA_LTO        overrides [profile.release] lto for this build only. CI sets `off`: its build
#                     is a check (every function compiles and links for Lambda), and on 2 cores a
#                     cold build took 6.5 min without LTO against 25.5 min with the profile's thin
#                     LTO, for binaries 1.5% larger. `sam build` always uses the profile as is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DLAB="$ROOT/.dlab"
VENV="$DLAB/tools-venv"

# Versions the template and the build were checked with; bump here.
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CARGO_LAMBDA_VERSION=1.9.2

# Lambda's provided.al2023 runtime ships glibc 2.34: a binary that needs a newer symbol fails to
# start there.
MAX_GLIBC=2.34

# Crates a function's deployed binary must not contain (checked on the bootstrap itself, by the
# source paths that every crate leaves in a binary's panic locations): `ws-connect` verifies a
# ticket and writes the registry, so it must start while Redis or MongoDB is down and stay small.
declare -A FORBIDDEN=(
    [ws-connect]="mongodb redis bson"
    [ws-disconnect]="mongodb redis bson"
    [compaction]="aws-sdk-dynamodb aws-sdk-apigatewaymanagement"
)

TARGET=${LAMBDA_TARGET:-x86_64-unknown-linux-gnu}
COMPILER=${LAMBDA_COMPILER:-cargo-zigbuild}
TEMPLATE="$ROOT/infra/template.yaml"

log() { printf '%s\n' "$*" >&2; }
die() {
    log "lambda-build.sh: error: $*"
    exit 1
}

# Runs a command with its output captured; prints the output only when it fails.
quiet() {
    local out rc
    out="$(mktemp)"
    if "$@" >"$out" 2>&1; then
        rm -f "$out"
    else
        rc=$?
        log "lambda-build.sh: command failed (exit $rc): $*"
        cat "$out" >&2
        rm -f "$out"
        return "$rc"
    fi
}

# Everything runs offline with the venv first on PATH (cargo-lambda finds the bundled zig through
# the venv's `python3 -m ziglang`), without SAM telemetry or update checks.
tool_env() {
    export PATH="$VENV/bin:$PATH"
    export SAM_CLI_TELEMETRY=0
    export SAM_CLI_DISABLE_VERSION_CHECK=1
    export AWS_REGION=${AWS_REGION:-us-east-1}
    export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$AWS_REGION}
}

# ---------------------------------------------------------------------------------------------
# install

venv_ok() {
    [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c '' 2>/dev/null
}

tools_ok() {
    "$VENV/bin/python" - "$SAM_VERSION" "$CFN_LINT_VERSION" "$CARGO_LAMBDA_VERSION" 2>/dev/null <<'PY' &&
import sys
from importlib.metadata import version
assert version("aws-sam-cli") == sys.argv[1]
assert version("cfn-lint") == sys.argv[2]
assert version("cargo-lambda") == sys.argv[3]
import samcli, cfnlint, ziglang  # noqa: F401
PY
        [[ -x $VENV/bin/sam && -x $VENV/bin/cfn-lint && -x $VENV/bin/cargo-lambda ]]
}

cmd_install() {
    if venv_ok; then
        if tools_ok; then
            log "tools: sam $SAM_VERSION, cfn-lint $CFN_LINT_VERSION, cargo-lambda $CARGO_LAMBDA_VERSION already installed (.dlab/tools-venv)"
            return
        fi
    else
        log "tools: creating .dlab/tools-venv"
        rm -rf "$VENV"
        mkdir -p "$DLAB"
        if ! quiet python3 -m venv "$VENV"; then
            # Debian's own python3 ships venv support separately.
            if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
                die "python3 -m venv failed"
            fi
            log "tools: installing python3-venv with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            quiet apt-get update -q
            quiet apt-get install -y -q --no-install-recommends python3-venv
            rm -rf "$VENV"
            quiet python3 -m venv "$VENV"
        fi
    fi
    log "tools: pip install aws-sam-cli==$SAM_VERSION cfn-lint==$CFN_LINT_VERSION cargo-lambda==$CARGO_LAMBDA_VERSION"
    local t0=$SECONDS
    quiet "$VENV/bin/pip" install --disable-pip-version-check -q \
        "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
    tools_ok || die "the tools venv is still incomplete after pip install"
    log "tools: installed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# validate

cmd_validate() {
    cmd_install
    tool_env
    [[ -f $TEMPLATE ]] || die "missing $TEMPLATE"
    local t0=$SECONDS
    log "validate: sam validate --lint -t infra/template.yaml"
    # `sam validate --lint` runs cfn-lint and the SAM translator locally: no AWS call, no
    # credentials.
    (cd "$ROOT" && sam validate --lint -t "$TEMPLATE" --region "$AWS_REGION")
    log "validate: done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# build

# Prints the workspace packages whose manifests live under functions/, one a line.
function_packages() {
    (cd "$ROOT" && cargo metadata --no-deps --format-version 1 --locked) |
        python3 -c '
import json, os, sys
root = os.path.realpath(sys.argv[1])
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
for p in meta["packages"]:
    rel = os.path.relpath(os.path.realpath(p["manifest_path"]), root)
    if p["id"] in members and rel.startswith("functions" + os.sep):
        print(p["name"])
' "$ROOT"
}

# Fails when a crate in functions/ is not a workspace member (it would silently not be built).
check_members() {
    local dir name
    for dir in "$ROOT"/functions/*/; do
        [[ -f $dir/Cargo.toml ]] || continue
        name="$(basename "$dir")"
        grep -qx "$name" <<<"$1" ||
            die "functions/$name has a Cargo.toml but is not a workspace member (add it to [workspace].members)"
    done
}

# Highest GLIBC_x.y symbol version an ELF binary needs (empty for a static binary).
max_glibc() {
    python3 - "$1" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
versions = {tuple(map(int, m.split(b"."))) for m in re.findall(rb"GLIBC_(\d+\.\d+(?:\.\d+)?)\x00", data)}
print(".".join(map(str, max(versions))) if versions else "")
PY
}

# Whether an ELF binary contains code of a crates.io crate: every crate leaves the source path
# of its panic locations (`.../<crate>-<version>/src/...`) in the binary, stripped or not.
links_crate() {
    python3 - "$1" "$2" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
pattern = re.compile(rb"[/\\]" + re.escape(sys.argv[2].encode()) + rb"-\d+\.\d+\.\d+[^/\\]*[/\\]src[/\\]")
sys.exit(0 if pattern.search(data) else 1)
PY
}

# The CPU an ELF binary is for (its header's e_machine): x86_64, aarch64, or the raw number.
elf_machine() {
    python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    header = f.read(20)
machine = struct.unpack_from("<H", header, 18)[0] if header[:4] == b"\x7fELF" else -1
print({62: "x86_64", 183: "aarch64"}.get(machine, str(machine)))
PY
}

version_le() {
    [[ $(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1) == "$1" ]]
}

cmd_build() {
    cmd_install
    tool_env
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET" ||
        die "the Rust standard library for $TARGET is not installed (rustup target list --installed)"

    local packages
    packages="$(function_packages)"
    [[ -n $packages ]] || die "no function crates found under functions/"
    check_members "$packages"

    local args=(lambda build --release --compiler "$COMPILER") machine
    case $TARGET in
        aarch64-unknown-linux-gnu)
            args+=(--arm64)
            machine=aarch64
            ;;
        x86_64-unknown-linux-gnu)
            args+=(--target "$TARGET")
            machine=x86_64
            ;;
        *) die "LAMBDA_TARGET must be x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu, not $TARGET" ;;
    esac
    [[ -f $ROOT/Cargo.lock ]] && args+=(--locked)

    if [[ -n ${LAMBDA_LTO:-} ]]; then
        export CARGO_PROFILE_RELEASE_LTO=$LAMBDA_LTO
        log "build: [profile.release] lto overridden: $LAMBDA_LTO"
    fi
    local t0=$SECONDS name t1
    while read -r name; do
        t1=$SECONDS
        log "build: cargo ${args[*]} -p $name"
        # No rustup download: the target was checked above.
        (cd "$ROOT" && cargo "${args[@]}" -p "$name" --skip-target-check)
        log "build: $name compiled in $((SECONDS - t1))s"
    done <<<"$packages"
    log "build: every function compiled in $((SECONDS - t0))s"

    local bootstrap bytes glibc crate arch rc=0
    printf '%-16s %-8s %12s  %s\n' function arch bytes glibc >&2
    while read -r name; do
        bootstrap="${CARGO_TARGET_DIR:-$ROOT/target}/lambda/$name/bootstrap"
        if [[ ! -x $bootstrap ]]; then
            log "build: MISSING target/lambda/$name/bootstrap"
            rc=1
            continue
        fi
        bytes="$(stat -c %s "$bootstrap")"
        glibc="$(max_glibc "$bootstrap")"
        arch="$(elf_machine "$bootstrap")"
        printf '%-16s %-8s %12s  %s\n' "$name" "$arch" "$bytes" "${glibc:-static}" >&2
        if [[ $arch != "$machine" ]]; then
            log "build: target/lambda/$name/bootstrap is a $arch binary, not $machine"
            rc=1
        fi
        if [[ -n $glibc ]] && ! version_le "$glibc" "$MAX_GLIBC"; then
            log "build: target/lambda/$name/bootstrap needs GLIBC_$glibc, newer than provided.al2023's $MAX_GLIBC"
            rc=1
        fi
        for crate in ${FORBIDDEN[$name]:-}; do
            if links_crate "$bootstrap" "$crate"; then
                log "build: target/lambda/$name/bootstrap links the $crate crate, which $name must not use"
                rc=1
            fi
        done
    done <<<"$packages"
    ((rc == 0)) || die "some bootstrap binaries are missing, unusable on Lambda, or link what they must not"
    log "build: done in $((SECONDS - t0))s"
}

cmd_env() {
    # shellcheck disable=SC2016  # $PATH is expanded by the shell that evals this line
    printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    printf 'export SAM_CLI_TELEMETRY=0\n'
}

case ${1:-build} in
    install) cmd_install ;;
    validate) cmd_validate ;;
    build) cmd_build ;;
    env) cmd_env ;;
    *)
        log "usage: $0 [build|validate|install|env]"
        exit 2
        ;;
esac
