#!/usr/bin/env bash
# The web console's build: the client core compiled to WebAssembly, bound for the browser, then
# the Vue app (shared/web) built around it.
#
#   infra/web-build.sh           build what changed since the last build (see "Inputs")
#   infra/web-build.sh --force   build even when the inputs are unchanged
#
# Steps:
#   1. `rustup target add wasm32-unknown-unknown` when missing.
#   2. dlab-client's library for wasm32 (`--no-default-features --features wasm`: the pure core,
#      the `web` JSON mapping and the `wasm-bindgen` shell; no tokio), release, `--locked`.
#   3. wasm-bindgen-cli of exactly the wasm-bindgen version in Cargo.lock (the CLI refuses a
#      module made by another version), installed into .dlab/tools/ when missing or of another
#      version, then `wasm-bindgen --target web --typescript --out-dir shared/web/src/wasm`
#      (a git-ignored directory: generated, never committed).
#      The bound module is loaded in node (when installed) and driven one step: a module that
#      does not load stops the build here rather than in a browser.
#   4. `wasm-opt -Oz` (binaryen) when on PATH; installed with apt-get when running as root,
#      skipped with a message otherwise. Its result replaces the module only if it passes the
#      same load check (binaryen 108, Debian 12's, produces a module that does not load).
#   5. When shared/web/package.json exists: `npm ci` and `npm run build` in shared/web.
#
# Why `cargo rustc --crate-type cdylib` rather than `crate-type = ["cdylib", "rlib"]` in the
# manifest: cargo builds every crate type a library declares, also when it is a dependency, so
# the manifest's cdylib would make every native build (the CLI, the tests, the crates that use
# dlab-client) link a shared library of dlab-client with tokio and reqwest for nothing. Here
# only the browser build asks for the cdylib.
#
# Inputs: the build is skipped when the sha256 over the sorted hashes of its input files
# (shared/client, shared/core, Cargo.lock, Cargo.toml, this script, and shared/web except dist/,
# node_modules/, src/wasm/ and test-artifacts/) equals the stamp of the last successful build,
# shared/web/dist/.inputs, and the bound module exists.
#
# Environment:
#   CARGO_TARGET_DIR   honoured (cargo's own variable).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET=wasm32-unknown-unknown
WEB=shared/web
OUT="$WEB/src/wasm"
STAMP="$WEB/dist/.inputs"
TOOLS=.dlab/tools
WASM_BINDGEN="$TOOLS/bin/wasm-bindgen"
# The browser module is sized for download, not for speed: the workspace's release profile
# (opt-level 3, thin LTO, 4 codegen units, unwinding, stripped symbols) is overridden for this
# build only. Measured with wasm-bindgen 0.2.130, after wasm-bindgen: 1037 KB (324 KB gzipped)
# with the profile as is, 503 KB (189 KB) with these; wasm-opt -Oz (binaryen 108) then gives
# 472 KB raw and the same 189 KB gzipped (when its output loads at all). `strip` stays off: it would drop the
# `target_features` section that wasm-bindgen and wasm-opt read the module's Wasm features
# from; wasm-bindgen removes the name and producers sections instead.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=fat
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_STRIP=false

log() { printf '%s\n' "$*" >&2; }
section() { log ""; log "== $*"; }
die() { log "error: $*"; exit 1; }

force=false
case "${1:-}" in
    "") ;;
    --force) force=true ;;
    *) die "unknown argument ${1} (usage: infra/web-build.sh [--force])" ;;
esac

# Bytes of a file, raw and gzipped (-9, as a server would serve it).
sizes() {
    local raw gz
    raw=$(wc -c <"$1")
    gz=$(gzip -9c "$1" | wc -c)
    printf '%s bytes (%s KiB), gzip -9: %s bytes (%s KiB)' \
        "$raw" "$((raw / 1024))" "$gz" "$((gz / 1024))"
}

# Loads the bound module in Node (when installed) and drives one WasmSession a step: a module
# that wasm-bindgen or wasm-opt broke fails here, not in the browser. Fails when it does not
# load; succeeds without checking when there is no node.
smoke() {
    command -v node >/dev/null || { log "node not found: the load check is skipped"; return 0; }
    node --input-type=module -e '
        import { readFileSync } from "node:fs";
        import { pathToFileURL } from "node:url";
        const dir = process.argv[1];
        const m = await import(pathToFileURL(dir + "/dlab_client.js").href);
        m.initSync({ module: readFileSync(dir + "/dlab_client_bg.wasm") });
        const s = new m.WasmSession("s", "u", 1, 2);
        const out = JSON.parse(s.start(0));
        if (!out.some((o) => o.kind === "connect")) throw new Error("start() did not connect");
        if (JSON.parse(s.snapshot()).sessionId !== "s") throw new Error("bad snapshot()");
        try { s.submit("core:chat", "{", 0); throw new Error("no throw"); }
        catch (e) { if (!(e instanceof Error) || !/JSON/.test(e.message)) throw e; }
    ' "$1"
}

# ---- inputs ---------------------------------------------------------------------------------
section "Inputs"
inputs_hash() {
    {
        find shared/client shared/core -type f -print0
        find "$WEB" \( -path "$WEB/dist" -o -path "$WEB/node_modules" -o -path "$OUT" \
            -o -path "$WEB/test-artifacts" \) -prune -o -type f -print0 2>/dev/null || true
        printf '%s\0' Cargo.lock Cargo.toml infra/web-build.sh
    } | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
inputs=$(inputs_hash)
log "inputs: $inputs"
if ! $force && [[ -f "$STAMP" && -f "$OUT/dlab_client_bg.wasm" ]] \
    && [[ "$(cat "$STAMP")" == "$inputs" ]]; then
    log "unchanged since the last build ($STAMP): nothing to do (--force rebuilds)"
    log "wasm: $(sizes "$OUT/dlab_client_bg.wasm")"
    exit 0
fi

# ---- toolchain ------------------------------------------------------------------------------
section "Rust target $TARGET"
command -v rustup >/dev/null || die "rustup is needed to add the $TARGET target"
if rustup target list --installed | grep -qx "$TARGET"; then
    log "installed"
else
    rustup target add "$TARGET"
fi

# ---- the wasm module ------------------------------------------------------------------------
section "cargo: dlab-client for $TARGET (release)"
nice cargo rustc -p dlab-client --lib --crate-type cdylib --no-default-features --features wasm \
    --target "$TARGET" --release --locked
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
module="$target_dir/$TARGET/release/dlab_client.wasm"
[[ -f "$module" ]] || die "cargo built no $TARGET/release/dlab_client.wasm"
log "module: $(sizes "$module")"

# ---- wasm-bindgen ---------------------------------------------------------------------------
section "wasm-bindgen"
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
    Cargo.lock)
[[ -n "$version" ]] || die "no wasm-bindgen in Cargo.lock (is dlab-client's feature wasm there?)"
installed=""
if [[ -x "$WASM_BINDGEN" ]]; then
    installed=$("$WASM_BINDGEN" --version | awk '{print $2}')
fi
if [[ "$installed" == "$version" ]]; then
    log "wasm-bindgen-cli $version (in $TOOLS)"
else
    log "installing wasm-bindgen-cli $version into $TOOLS (found: ${installed:-none})"
    started=$SECONDS
    # `--locked` builds the CLI with the dependencies its release was tested with. A registry
    # index that lags behind its lock file (a mirror) cannot resolve them: then the newest
    # compatible ones are taken; the CLI's own version stays exact either way.
    if ! nice cargo install --locked wasm-bindgen-cli --version "=$version" --root "$TOOLS" \
        --force; then
        log "the locked install failed; installing with freshly resolved dependencies"
        nice cargo install wasm-bindgen-cli --version "=$version" --root "$TOOLS" --force
    fi
    log "installed in $((SECONDS - started)) s"
fi
rm -rf "$OUT"
"$WASM_BINDGEN" --target web --typescript --remove-name-section --remove-producers-section \
    --out-dir "$OUT" "$module"
bound="$OUT/dlab_client_bg.wasm"
log "bound: $(sizes "$bound")"
smoke "$OUT" || die "the bound module does not load in node"
log "loads and runs in node"

# ---- wasm-opt -------------------------------------------------------------------------------
section "wasm-opt -Oz"
if ! command -v wasm-opt >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing binaryen with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null \
        || log "binaryen could not be installed"
fi
if command -v wasm-opt >/dev/null; then
    log "$(wasm-opt --version)"
    cp "$bound" "$bound.orig"
    wasm-opt -Oz "$bound" -o "$bound.opt"
    mv "$bound.opt" "$bound"
    log "optimized: $(sizes "$bound")"
    # Old binaryen releases (Debian 12 ships 108) rewrite the externref table that
    # wasm-bindgen's glue fills: such a module fails to load. Keep the bound one then.
    if smoke "$OUT" 2>/dev/null; then
        log "the optimized module loads and runs in node"
        rm "$bound.orig"
    else
        mv "$bound.orig" "$bound"
        log "this wasm-opt breaks the module (it does not load): kept the module as bound"
    fi
else
    log "wasm-opt not found (package binaryen) and not root: skipped, the module stays as bound"
fi

# ---- the web app ----------------------------------------------------------------------------
section "web app ($WEB)"
if [[ -f "$WEB/package.json" ]]; then
    (cd "$WEB" && npm ci && npm run build)
else
    log "no $WEB/package.json yet: skipped"
fi

# ---- done -----------------------------------------------------------------------------------
mkdir -p "$(dirname "$STAMP")"
printf '%s\n' "$inputs" >"$STAMP"
section "Done"
log "wasm: $(sizes "$bound")"
