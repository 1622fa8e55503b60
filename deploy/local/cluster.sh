#!/usr/bin/env bash
# Motorpool as a multi-process deployment on this machine's loopback addresses: every replica
# is its own `motorpool serve <service>` process on PostgreSQL + NATS JetStream + Redis, and
# they find each other through Redis registrations (discovery.backend = redis).
#
#   deploy/local/cluster.sh up       # start, wait until every process answers /ready 200
#   deploy/local/cluster.sh status   # each process: pid, address, /ready
#   deploy/local/cluster.sh down     # SIGTERM everything, SIGKILL after STOP_TIMEOUT s
#                                    # (CLEAN=1: also drop the namespace on shared servers)
#   PRIVATE_INFRA=1 deploy/local/cluster.sh up   # own PostgreSQL, NATS and Redis too
#
# Plan (REPLICAS): gateway ×2 on 127.0.0.2:8080 and 127.0.0.3:8080; shop, inventory,
# factory, payments ×2; identity, configurator, notifications ×1. Replica k of a service
# listens on 127.0.0.<IP_BASE+1+k> at the service's usual port (127.0.0.4 and 127.0.0.5 by
# default); gateway k on 127.0.0.<IP_BASE+k-1>:GW_PORT. Demo data is on
# (demo@motorpool.local / motorpool-demo; admin@motorpool.local / motorpool-admin, also
# the identity bootstrap admin).
#
# By default the machine's servers are used (PostgreSQL postgres://postgres@127.0.0.1:5432
# with trust auth, NATS nats://127.0.0.1:4222, Redis redis://127.0.0.1:6379), kept apart from
# anything else on them by NAMESPACE: databases <NAMESPACE>_<service>, NATS streams
# <NAMESPACE>_<SERVICE> and subjects <NAMESPACE>.*, Redis keys <NAMESPACE>:*. `up` drops
# what a previous run left under that namespace first (FRESH=0 keeps it). With
# PRIVATE_INFRA=1 it runs its own PostgreSQL (initdb in STATE_DIR, port PRIVATE_PG_PORT, as the
# `postgres` user when run as root), nats-server -js (PRIVATE_NATS_PORT) and redis-server
# without persistence (PRIVATE_REDIS_PORT), and `down` stops them and deletes their data.
#
# Settings (environment, read by `up` and kept in STATE_DIR/cluster.env for later commands):
#   BIN            motorpool binary (default ${CARGO_TARGET_DIR:-target}/release/motorpool)
#   STATE_DIR      pids, logs, data (default /tmp/motorpool-cluster)
#   NAMESPACE      database prefix, NATS and Redis namespace (default motorpool_cluster)
#   PG_URL NATS_URL REDIS_URL    servers to use when PRIVATE_INFRA=0
#   PRIVATE_INFRA  1: start private servers   PRIVATE_PG_PORT PRIVATE_NATS_PORT PRIVATE_REDIS_PORT
#   REPLICAS       e.g. "gateway=2 identity=1 configurator=1 notifications=1 payments=2 inventory=2 shop=2 factory=2"
#   IP_PREFIX IP_BASE GW_PORT    addresses (default 127.0.0, 2, 8080)
#   TTL_SECS       discovery.ttl_secs (default 10)   POOL  storage.max_connections per process
#   LOG_LEVEL      (default info)   READY_TIMEOUT (default 120 s)   STOP_TIMEOUT (default 15 s)
#   MOTORPOOL_*    passed to every process as well (e.g. MOTORPOOL_GATEWAY__RATE_LIMIT_ENABLED=false)
#
# More commands, for scripts that inject faults (bench/faults.sh):
#   list                       every process of the plan: name service address
#   start NAME                 start one process of the plan (if it is not running)
#   signal NAME SIG            send SIG (KILL, STOP, CONT, TERM...) to one process
#   stop NAME                  SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL
#   pid NAME | addr NAME       print its pid / address
#   wait-ready [NAME...]       wait until they (default all) answer /ready 200
#   infra start|stop|restart pg|nats|redis    (PRIVATE_INFRA=1 only)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE_DIR=${STATE_DIR:-/tmp/motorpool-cluster}
ENV_FILE=$STATE_DIR/cluster.env
CMD=${1:-}
[[ -n $CMD ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
shift

# The settings: from cluster.env once `up` wrote it, else from the environment.
if [[ $CMD != up && -f $ENV_FILE ]]; then
    # shellcheck disable=SC1090
    source "$ENV_FILE"
else
    BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/motorpool}
    NAMESPACE=${NAMESPACE:-motorpool_cluster}
    PRIVATE_INFRA=${PRIVATE_INFRA:-0}
    PRIVATE_PG_PORT=${PRIVATE_PG_PORT:-25432}
    PRIVATE_NATS_PORT=${PRIVATE_NATS_PORT:-24222}
    PRIVATE_REDIS_PORT=${PRIVATE_REDIS_PORT:-26379}
    if [[ $PRIVATE_INFRA == 1 ]]; then
        PG_URL=postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT
        NATS_URL=nats://127.0.0.1:$PRIVATE_NATS_PORT
        REDIS_URL=redis://127.0.0.1:$PRIVATE_REDIS_PORT
        POOL=${POOL:-10}
    else
        PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
        NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
        REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
        # The machine's PostgreSQL allows 100 connections and is shared.
        POOL=${POOL:-4}
    fi
    REPLICAS=${REPLICAS:-gateway=2 identity=1 configurator=1 notifications=1 payments=2 inventory=2 shop=2 factory=2}
    IP_PREFIX=${IP_PREFIX:-127.0.0}
    IP_BASE=${IP_BASE:-2}
    GW_PORT=${GW_PORT:-8080}
    TTL_SECS=${TTL_SECS:-10}
    LOG_LEVEL=${LOG_LEVEL:-info}
    READY_TIMEOUT=${READY_TIMEOUT:-120}
    STOP_TIMEOUT=${STOP_TIMEOUT:-15}
    FRESH=${FRESH:-1}
    PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
    NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}
    REDIS_SERVER=${REDIS_SERVER:-redis-server}
    ADMIN_EMAIL=${ADMIN_EMAIL:-admin@motorpool.local}
    ADMIN_PASSWORD=${ADMIN_PASSWORD:-motorpool-admin}
    PASS_ENV=()
fi
SETTINGS=(BIN NAMESPACE PRIVATE_INFRA PRIVATE_PG_PORT PRIVATE_NATS_PORT PRIVATE_REDIS_PORT PG_URL NATS_URL REDIS_URL POOL
    REPLICAS IP_PREFIX IP_BASE GW_PORT TTL_SECS LOG_LEVEL READY_TIMEOUT STOP_TIMEOUT FRESH PG_BIN NATS_SERVER REDIS_SERVER
    ADMIN_EMAIL ADMIN_PASSWORD)
PIDS=$STATE_DIR/pids
LOGS=$STATE_DIR/logs
INFRA=$STATE_DIR/infra

log() { printf '%s cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

port_of() {
    case $1 in
        gateway) echo "$GW_PORT" ;; identity) echo 8101 ;; inventory) echo 8111 ;; shop) echo 8112 ;;
        payments) echo 8113 ;; notifications) echo 8114 ;; configurator) echo 8115 ;; factory) echo 8116 ;;
        *) die "unknown service $1" ;;
    esac
}

# Every process of the plan: "name service address", gateways last (they start last).
plan() {
    local entry service count k host
    for entry in $REPLICAS; do
        service=${entry%%=*} count=${entry#*=}
        [[ $service == gateway ]] && continue
        for ((k = 1; k <= count; k++)); do
            host=$IP_PREFIX.$((IP_BASE + 1 + k))
            echo "$service-$k $service $host:$(port_of "$service")"
        done
    done
    for entry in $REPLICAS; do
        service=${entry%%=*} count=${entry#*=}
        [[ $service == gateway ]] || continue
        for ((k = 1; k <= count; k++)); do
            echo "gateway-$k gateway $IP_PREFIX.$((IP_BASE + k - 1)):$GW_PORT"
        done
    done
}

entry_of() {
    local name service addr
    while read -r name service addr; do
        [[ $name == "$1" ]] && { echo "$service $addr"; return 0; }
    done < <(plan)
    die "no process $1 in the plan (see: $0 list)"
}

pid_of() { [[ -f $PIDS/$1.pid ]] && cat "$PIDS/$1.pid"; }
# Whether a pid runs (a killed process not yet reaped, a zombie, does not).
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
alive() {
    local pid
    pid=$(pid_of "$1") || return 1
    running "$pid"
}

ready_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1/ready" 2>/dev/null || true; }

# Starts a command in its own session, output to a log, its pid (the command's own, after
# exec) in a pid file.
spawn() {
    local pidfile=$1 logfile=$2
    shift 2
    rm -f "$pidfile"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    for _ in $(seq 100); do [[ -s $pidfile ]] && return 0; sleep 0.02; done
    die "could not start $*"
}

# The environment of every motorpool process.
motorpool_env() {
    local v
    MP_ENV=(
        MOTORPOOL_DEMO_DATA=true
        MOTORPOOL_LOG__FORMAT=json
        "MOTORPOOL_LOG__LEVEL=$LOG_LEVEL"
        MOTORPOOL_STORAGE__BACKEND=postgres
        "MOTORPOOL_STORAGE__POSTGRES_URL=$PG_URL"
        "MOTORPOOL_STORAGE__DATABASE_PREFIX=$NAMESPACE"
        "MOTORPOOL_STORAGE__MAX_CONNECTIONS=$POOL"
        MOTORPOOL_EVENTS__BACKEND=nats
        "MOTORPOOL_EVENTS__NATS_URL=$NATS_URL"
        "MOTORPOOL_EVENTS__NAMESPACE=$NAMESPACE"
        MOTORPOOL_CACHE__BACKEND=redis
        "MOTORPOOL_CACHE__REDIS_URL=$REDIS_URL"
        "MOTORPOOL_CACHE__NAMESPACE=$NAMESPACE"
        MOTORPOOL_DISCOVERY__BACKEND=redis
        "MOTORPOOL_DISCOVERY__TTL_SECS=$TTL_SECS"
        "MOTORPOOL_IDENTITY__BOOTSTRAP_ADMIN_EMAIL=$ADMIN_EMAIL"
        "MOTORPOOL_IDENTITY__BOOTSTRAP_ADMIN_PASSWORD=$ADMIN_PASSWORD"
    )
    # The caller's own MOTORPOOL_* settings (saved by `up`) come after, so they win.
    for v in "${PASS_ENV[@]}"; do MP_ENV+=("$v"); done
}

start_one() {
    local name=$1 service addr
    read -r service addr < <(entry_of "$name")
    if alive "$name"; then
        log "$name is already running (pid $(pid_of "$name"))"
        return 0
    fi
    mkdir -p "$STATE_DIR/data/$name" "$PIDS" "$LOGS"
    motorpool_env
    spawn "$PIDS/$name.pid" "$LOGS/$name.log" env "${MP_ENV[@]}" "MOTORPOOL_DATA_DIR=$STATE_DIR/data/$name" \
        "$BIN" --set "listen.$service=$addr" serve "$service"
}

# Waits until every named process (default: all) answers /ready with 200.
wait_ready() {
    local names=("$@") name service addr deadline pending
    ((${#names[@]})) || mapfile -t names < <(plan | awk '{print $1}')
    deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        pending=()
        for name in "${names[@]}"; do
            read -r service addr < <(entry_of "$name")
            alive "$name" || die "$name exited; last lines of $LOGS/$name.log:$(echo; tail -n 15 "$LOGS/$name.log")"
            [[ $(ready_code "$addr") == 200 ]] || pending+=("$name")
        done
        ((${#pending[@]} == 0)) && return 0
        if ((SECONDS >= deadline)); then
            for name in "${pending[@]}"; do
                read -r service addr < <(entry_of "$name")
                log "$name ($addr) not ready: $(curl -s --max-time 2 "http://$addr/ready" || echo no answer)"
            done
            die "not ready after ${READY_TIMEOUT}s: ${pending[*]} (logs in $LOGS)"
        fi
        sleep 0.25
    done
}

# Stops one process: SIGTERM (after SIGCONT, in case it is paused), then SIGKILL after STOP_TIMEOUT.
stop_pid() {
    local pid=$1 what=$2
    running "$pid" || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT * 10))); do
        running "$pid" || return 0
        sleep 0.1
    done
    log "$what (pid $pid) did not stop in ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ready() { "$PG_BIN/pg_isready" -q -d "$PG_URL/postgres" -t 1 2>/dev/null; }
redis_ping() { [[ $(redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]; }
nats_up() { curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$((PRIVATE_NATS_PORT + 1))/healthz?js-enabled-only=true" 2>/dev/null; }

infra_start() {
    [[ $PRIVATE_INFRA == 1 ]] || die "infra commands need PRIVATE_INFRA=1 (this cluster uses shared servers)"
    mkdir -p "$INFRA" "$LOGS" "$PIDS"
    case $1 in
        pg)
            local data=$INFRA/pg
            if [[ ! -f $data/PG_VERSION ]]; then
                mkdir -p "$data"
                chmod 700 "$data"
                [[ $(id -u) == 0 ]] && chown postgres: "$data"
                as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$LOGS/initdb.log" 2>&1 ||
                    die "initdb failed: $(tail -5 "$LOGS/initdb.log")"
                cat >>"$data/postgresql.conf" <<CONF
port = $PRIVATE_PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 128MB
fsync = off
full_page_writes = off
CONF
            fi
            touch "$LOGS/postgres.log"
            [[ $(id -u) == 0 ]] && chown postgres: "$LOGS/postgres.log"
            as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$LOGS/postgres.log" -w -t 60 start >/dev/null || die "PostgreSQL did not start"
            ;;
        nats)
            mkdir -p "$INFRA/nats"
            spawn "$PIDS/infra-nats.pid" "$LOGS/nats.log" "$NATS_SERVER" -js -sd "$INFRA/nats" -a 127.0.0.1 -p "$PRIVATE_NATS_PORT" \
                -m "$((PRIVATE_NATS_PORT + 1))"
            for _ in $(seq 100); do
                running "$(cat "$PIDS/infra-nats.pid")" || break
                nats_up && return 0
                sleep 0.1
            done
            die "nats-server did not start: $(tail -3 "$LOGS/nats.log")"
            ;;
        redis)
            mkdir -p "$INFRA/redis"
            spawn "$PIDS/infra-redis.pid" "$LOGS/redis.log" "$REDIS_SERVER" --bind 127.0.0.1 --port "$PRIVATE_REDIS_PORT" \
                --save "" --appendonly no --dir "$INFRA/redis" --daemonize no
            for _ in $(seq 100); do
                running "$(cat "$PIDS/infra-redis.pid")" || break
                redis_ping && return 0
                sleep 0.1
            done
            die "redis-server did not start: $(tail -3 "$LOGS/redis.log")"
            ;;
        *) die "infra: pg, nats or redis" ;;
    esac
}

infra_stop() {
    [[ $PRIVATE_INFRA == 1 ]] || die "infra commands need PRIVATE_INFRA=1 (this cluster uses shared servers)"
    case $1 in
        pg)
            [[ -f $INFRA/pg/postmaster.pid ]] || return 0
            as_pg "$PG_BIN/pg_ctl" -D "$INFRA/pg" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1 || {
                local pid
                pid=$(head -1 "$INFRA/pg/postmaster.pid" 2>/dev/null) && kill -KILL "$pid" 2>/dev/null || true
                log "PostgreSQL killed after ${STOP_TIMEOUT}s"
            }
            ;;
        nats | redis)
            local pid
            pid=$(cat "$PIDS/infra-$1.pid" 2>/dev/null) || return 0
            stop_pid "$pid" "$1"
            rm -f "$PIDS/infra-$1.pid"
            ;;
        *) die "infra: pg, nats or redis" ;;
    esac
}

# Drops what an earlier run left under NAMESPACE on shared servers.
clean_namespace() {
    local db
    for db in $(psql "$PG_URL/postgres" -Atc "select datname from pg_database where starts_with(datname, '${NAMESPACE}_')"); do
        psql "$PG_URL/postgres" -qc "drop database if exists \"$db\" with (force)" >/dev/null
    done
    redis-cli -u "$REDIS_URL" --scan --pattern "$NAMESPACE:*" | xargs -r -n 200 redis-cli -u "$REDIS_URL" del >/dev/null
    python3 "$ROOT/deploy/local/nats-streams.py" "$NATS_URL" "$NAMESPACE" --delete >/dev/null
}

cmd_up() {
    [[ -x $BIN ]] || die "no motorpool binary at $BIN (cargo build --release -p motorpool, or BIN=...)"
    command -v curl >/dev/null || die "needs curl"
    if [[ -f $ENV_FILE ]] && ls "$PIDS"/*.pid >/dev/null 2>&1; then
        for f in "$PIDS"/*.pid; do
            running "$(cat "$f")" && die "a cluster is running in $STATE_DIR ($0 down first)"
        done
    fi
    if [[ -f $INFRA/pg/postmaster.pid ]] && kill -0 "$(head -1 "$INFRA/pg/postmaster.pid")" 2>/dev/null; then
        die "a private PostgreSQL is running in $INFRA/pg ($0 down first)"
    fi
    rm -rf "$PIDS" "$STATE_DIR/data" "$INFRA" "$LOGS"
    # A failed start stops whatever it started (the private servers included).
    trap 'log "start failed; stopping what was started"; cmd_down' EXIT
    mkdir -p "$STATE_DIR" "$PIDS" "$LOGS"
    chmod 755 "$STATE_DIR"
    # Refuse addresses that are taken.
    local name service addr
    while read -r name service addr; do
        (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && die "$addr ($name) is taken"
    done < <(plan)
    PASS_ENV=()
    while IFS= read -r v; do PASS_ENV+=("$v"); done < <(env | grep -E '^MOTORPOOL_[A-Z0-9_]+=' | grep -v '^MOTORPOOL_DATA_DIR=' || true)
    {
        for v in "${SETTINGS[@]}"; do printf '%s=%q\n' "$v" "${!v}"; done
        printf 'PASS_ENV=('
        for v in "${PASS_ENV[@]}"; do printf '%q ' "$v"; done
        printf ')\n'
    } >"$ENV_FILE"

    if [[ $PRIVATE_INFRA == 1 ]]; then
        log "starting private PostgreSQL :$PRIVATE_PG_PORT, NATS :$PRIVATE_NATS_PORT, Redis :$PRIVATE_REDIS_PORT in $INFRA"
        infra_start pg
        infra_start nats
        infra_start redis
    else
        pg_ready || die "no PostgreSQL at $PG_URL"
        redis_ping || die "no Redis at $REDIS_URL"
        [[ $FRESH == 1 ]] && { log "dropping what a previous run left under '$NAMESPACE'"; clean_namespace; }
    fi
    log "migrating"
    motorpool_env
    env "${MP_ENV[@]}" "MOTORPOOL_DATA_DIR=$STATE_DIR/data/migrate" "$BIN" migrate >>"$LOGS/migrate.log" 2>&1 ||
        die "migrations failed: $(tail -5 "$LOGS/migrate.log")"
    local started=$SECONDS
    while read -r name service addr; do
        start_one "$name"
    done < <(plan)
    log "$(plan | wc -l) processes started; waiting for /ready"
    wait_ready
    trap - EXIT
    log "all ready in $((SECONDS - started)) s"
    plan | awk '$2 == "gateway" {print "http://" $3 "/"}'
}

cmd_down() {
    local f name pids=() jobs=() job
    if [[ -d $PIDS ]]; then
        # Gateways first, then the rest, all in parallel.
        for f in "$PIDS"/gateway-*.pid "$PIDS"/*.pid; do
            [[ -f $f ]] || continue
            name=$(basename "$f" .pid)
            [[ $name == infra-* ]] && continue
            [[ " ${pids[*]} " == *" $name "* ]] && continue
            pids+=("$name")
            stop_pid "$(cat "$f")" "$name" &
            jobs+=($!)
        done
        # Only these: after a failed `up`, the servers it started are children of this shell too.
        for job in "${jobs[@]}"; do wait "$job" || true; done
        for name in "${pids[@]}"; do rm -f "$PIDS/$name.pid"; done
    fi
    if [[ $PRIVATE_INFRA == 1 ]]; then
        infra_stop redis
        infra_stop nats
        infra_stop pg
        rm -rf "$INFRA"
    elif [[ ${CLEAN:-0} == 1 ]]; then
        log "dropping the databases, streams and keys of '$NAMESPACE'"
        clean_namespace
    fi
    log "stopped (logs kept in $LOGS)"
}

cmd_status() {
    local name service addr pid code state all=0
    printf '%-16s %-14s %-22s %-8s %s\n' NAME SERVICE ADDRESS PID READY
    while read -r name service addr; do
        pid=$(pid_of "$name" 2>/dev/null || echo -)
        if alive "$name"; then
            state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
            code=$(ready_code "$addr")
            [[ $state == T ]] && code="$code (stopped)"
        else
            code=down
        fi
        [[ $code == 200 ]] || all=1
        printf '%-16s %-14s %-22s %-8s %s\n' "$name" "$service" "$addr" "$pid" "$code"
    done < <(plan)
    if [[ $PRIVATE_INFRA == 1 ]]; then
        echo "postgres $PG_URL: $(pg_ready && echo up || echo down)"
        echo "nats     $NATS_URL: $(nats_up && echo up || echo down)"
        echo "redis    $REDIS_URL: $(redis_ping && echo up || echo down)"
    fi
    return $all
}

case $CMD in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    list) plan ;;
    start) [[ $# -ge 1 ]] || die "start NAME"; for n in "$@"; do start_one "$n"; done ;;
    signal)
        [[ $# -eq 2 ]] || die "signal NAME SIG"
        p=$(pid_of "$1") || die "$1 has no pid (not started)"
        kill -"$2" "$p"
        ;;
    stop) [[ $# -ge 1 ]] || die "stop NAME"; for n in "$@"; do p=$(pid_of "$n") && stop_pid "$p" "$n"; done ;;
    pid) pid_of "$1" ;;
    addr) read -r _ a < <(entry_of "$1"); echo "$a" ;;
    wait-ready) wait_ready "$@" ;;
    infra)
        [[ $# -eq 2 ]] || die "infra start|stop|restart pg|nats|redis"
        case $1 in
            start) infra_start "$2" ;;
            stop) infra_stop "$2" ;;
            restart)
                if [[ $2 == pg ]]; then
                    as_pg "$PG_BIN/pg_ctl" -D "$INFRA/pg" -l "$LOGS/postgres.log" -m fast -w -t 60 restart >/dev/null
                else
                    infra_stop "$2"
                    infra_start "$2"
                fi
                ;;
            *) die "infra start|stop|restart pg|nats|redis" ;;
        esac
        ;;
    *) die "unknown command $CMD (up, down, status, list, start, signal, stop, pid, addr, wait-ready, infra)" ;;
esac
