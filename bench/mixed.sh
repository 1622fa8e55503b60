#!/usr/bin/env bash
# The mixed workload with its correctness oracle (bench/mixed, `motorpool-mixed`) against four
# deployments in ONE run, with the same users, weights and duration, so the figures compare:
#
#   embedded   `motorpool up`, one process, SQLite + in-process event log + memory cache
#   postgres   `motorpool up`, one process, PostgreSQL + NATS JetStream + Redis
#   cluster    deploy/local/cluster.sh: one process per replica on 127.0.0.x, two gateways,
#              two replicas each of shop, inventory, factory and payments, one of the rest,
#              on PostgreSQL + NATS + Redis (discovery through Redis)
#   scaling    the same cluster again with the busiest service of the `cluster` run (by the
#              CPU its processes used, from /proc/<pid>/stat) at one replica instead of two
#              (or at two, if it had one): the throughput ratio two ÷ one
#   control    (only when named in VARIANTS) the embedded platform with WEIGHTS=cancel=0
#
#   BIN=/work/bin/motorpool-37e5c30 bench/mixed.sh
#   USERS=32 DURATION=30 VARIANTS="embedded postgres" bench/mixed.sh
#
# Settings (environment):
#   BIN        the motorpool binary (default /work/bin/motorpool-37e5c30)
#   MIXED      the motorpool-mixed binary (default $CARGO_TARGET_DIR/release/motorpool-mixed,
#              built if missing)
#   USERS      virtual users (32)          DURATION   measured seconds per variant (30)
#   WARMUP     unmeasured seconds (3)      SETTLE     longest wait for the oracle (30)
#   WEIGHTS    operation weights (motorpool-mixed's defaults)
#   VARIANTS   which of "embedded postgres cluster scaling" to run (all)
#   SCALING_ROUNDS  pairs of cluster runs for the scaling figure (1: the cluster variant and
#              one more; 2 adds another pair, in alternation, to show the run-to-run spread)
#   PG_URL NATS_URL REDIS_URL    the servers (127.0.0.1, default ports; PostgreSQL trust auth)
#   OUT        results directory (bench/results/mixed-<UTC time>)
#
# Platform settings for every variant (same for all): the gateway's rate limit off (all the
# load comes from one address); factory.lead_days=0 and factory.daily_capacity=20 so that
# the first 20 car orders of the day go into production within the run (their parts are
# used) and the rest are scheduled on later days (their parts held); factory.tick_ms=200;
# log level warn. PostgreSQL pools: 8 connections per service for the single process (7
# services × 8 fit the server's 100), 4 per process in the cluster (its default).
#
# Loopback only; every step bounded by `timeout`; whatever it started is stopped on exit
# (trap), and the databases, streams and Redis keys it created are dropped. Exits non-zero if
# any variant's oracle failed or a variant could not run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-mixed}
BIN=${BIN:-/work/bin/motorpool-37e5c30}
MIXED=${MIXED:-$CARGO_TARGET_DIR/release/motorpool-mixed}
USERS=${USERS:-32}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-3}
SETTLE=${SETTLE:-30}
WEIGHTS=${WEIGHTS:-}
VARIANTS=${VARIANTS:-embedded postgres cluster scaling}
SCALING_ROUNDS=${SCALING_ROUNDS:-1}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/mixed-$STAMP}
TS=$(date +%s)
CLUSTER_STATE=/tmp/motorpool-mixed-cluster-$TS
CLUSTER_IP_BASE=${CLUSTER_IP_BASE:-40}
ADMIN_EMAIL=admin@motorpool.local
ADMIN_PASSWORD=motorpool-admin
DEFAULT_REPLICAS="gateway=2 identity=1 configurator=1 notifications=1 payments=2 inventory=2 shop=2 factory=2"

log() { printf '%s mixed: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $BIN ]] || die "no motorpool binary at $BIN (BIN=...)"
if [[ ! -x $MIXED ]]; then
    log "building motorpool-mixed (release) into $CARGO_TARGET_DIR"
    cargo build --release -q -p motorpool-mixed
fi
for tool in curl jq python3 psql redis-cli timeout; do command -v "$tool" >/dev/null || die "needs $tool"; done
mkdir -p "$OUT"
[[ -z $(ls -A "$OUT") ]] || die "$OUT already holds results"

# The same platform settings for every variant, as MOTORPOOL_* variables (cluster.sh passes
# them on to every process it starts).
export MOTORPOOL_GATEWAY__RATE_LIMIT_ENABLED=false
export MOTORPOOL_FACTORY__LEAD_DAYS=0
export MOTORPOOL_FACTORY__DAILY_CAPACITY=20
export MOTORPOOL_FACTORY__TICK_MS=200
export MOTORPOOL_LOG__LEVEL=warn

UP_PID=
CLUSTER_UP=0
PG_PREFIXES=()
NS_LIST=()
cleanup() {
    local rc=$?
    if [[ -n $UP_PID ]] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        timeout 20 tail --pid="$UP_PID" -f /dev/null 2>/dev/null || kill -KILL "$UP_PID" 2>/dev/null || true
    fi
    if ((CLUSTER_UP)); then
        STATE_DIR=$CLUSTER_STATE CLEAN=1 timeout 60 "$ROOT/deploy/local/cluster.sh" down >>"$OUT/cluster-down.log" 2>&1 || true
    fi
    drop_namespaces
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

drop_namespaces() {
    local p db ns
    for p in "${PG_PREFIXES[@]}"; do
        for db in $(psql "$PG_URL/postgres" -Atc "select datname from pg_database where starts_with(datname, '${p}_')" 2>/dev/null); do
            psql "$PG_URL/postgres" -qc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
        done
    done
    for ns in "${NS_LIST[@]}"; do
        redis-cli -u "$REDIS_URL" --scan --pattern "$ns:*" 2>/dev/null | xargs -r -n 200 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
        timeout 30 python3 "$ROOT/deploy/local/nats-streams.py" "$NATS_URL" "$ns" --delete >/dev/null 2>&1 || true
    done
    PG_PREFIXES=()
    NS_LIST=()
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The load and the verdict against the given gateways; extra arguments go to motorpool-mixed.
# The JSON line goes to $OUT/<label>.json, the table to $OUT/<label>.txt.
mixed() {
    local label=$1 gateways=$2
    shift 2
    local args=(--gateway "$gateways" --admin-email "$ADMIN_EMAIL" --admin-password "$ADMIN_PASSWORD" --users "$USERS"
        --duration-secs "$DURATION" --warmup-secs "$WARMUP" --settle-secs "$SETTLE" --label "$label" --run-id "$label-$TS")
    [[ -n $WEIGHTS ]] && args+=(--weights "$WEIGHTS")
    log "$label: $USERS users, ${DURATION}s (+${WARMUP}s warm-up) against $gateways"
    echo "$label" >>"$OUT/order.txt"
    local rc=0
    timeout $((DURATION + WARMUP + SETTLE + 240)) "$MIXED" "${args[@]}" "$@" >"$OUT/$label.json" 2>"$OUT/$label.txt" || rc=$?
    cat "$OUT/$label.txt" >&2
    if [[ ! -s $OUT/$label.json ]]; then
        log "$label: no result (exit $rc)"
        FAILED+=("$label")
    elif ((rc != 0)); then
        log "$label: the oracle FAILED (exit $rc)"
        FAILED+=("$label")
    fi
}

# The infrastructure servers' processes, to measure their CPU too (PostgreSQL's backends by
# name: they come and go with the pools). Whatever else ran is reported by command name.
infra_watch() {
    local pid
    printf -- '--watch-comm\0postgres=infra-postgres\0'
    for pid in $(pgrep -x nats-server || true); do printf -- '--watch\0nats-%s:infra-nats=%s\0' "$pid" "$pid"; done
    for pid in $(pgrep -x redis-server || true); do printf -- '--watch\0redis-%s:infra-redis=%s\0' "$pid" "$pid"; done
}

# `motorpool up` with the given extra environment; waits for "Motorpool is up".
start_up() {
    local label=$1
    shift
    local port data
    port=$(free_port)
    data=$(mktemp -d "/tmp/motorpool-mixed-$label.XXXXXX")
    local sets=(--set "listen.gateway=127.0.0.1:$port")
    for s in identity payments inventory shop configurator factory notifications; do sets+=(--set "listen.$s=127.0.0.1:0"); done
    env "$@" MOTORPOOL_DATA_DIR="$data/data" "$BIN" "${sets[@]}" up >"$OUT/$label-platform.log" 2>&1 &
    UP_PID=$!
    GW_URL=http://127.0.0.1:$port
    local started=$SECONDS
    until grep -q 'Motorpool is up' "$OUT/$label-platform.log" 2>/dev/null && curl -fs -o /dev/null "$GW_URL/ready"; do
        kill -0 "$UP_PID" 2>/dev/null || die "$label: motorpool up exited: $(tail -5 "$OUT/$label-platform.log")"
        ((SECONDS - started < 120)) || die "$label: not up after 120 s"
        sleep 0.2
    done
    log "$label: up in $((SECONDS - started)) s at $GW_URL (pid $UP_PID)"
}

stop_up() {
    kill -TERM "$UP_PID" 2>/dev/null || true
    timeout 30 tail --pid="$UP_PID" -f /dev/null 2>/dev/null || kill -KILL "$UP_PID" 2>/dev/null || true
    UP_PID=
}

# A cluster with the given replica plan; sets CLUSTER_GWS and CLUSTER_WATCH.
cluster_up() {
    local label=$1 replicas=$2 ns
    ns=mixed_${TS}_$label
    ns=${ns//-/_}
    PG_PREFIXES+=("$ns")
    NS_LIST+=("$ns")
    log "$label: starting the cluster ($replicas)"
    local started=$SECONDS
    CLUSTER_UP=1
    STATE_DIR=$CLUSTER_STATE NAMESPACE=$ns REPLICAS=$replicas IP_BASE=$CLUSTER_IP_BASE LOG_LEVEL=warn BIN=$BIN \
        PG_URL=$PG_URL NATS_URL=$NATS_URL REDIS_URL=$REDIS_URL READY_TIMEOUT=150 \
        timeout 240 "$ROOT/deploy/local/cluster.sh" up >"$OUT/$label-cluster-up.log" 2>&1 ||
        die "$label: the cluster did not come up: $(tail -5 "$OUT/$label-cluster-up.log")"
    log "$label: cluster ready in $((SECONDS - started)) s"
    CLUSTER_GWS=$(STATE_DIR=$CLUSTER_STATE "$ROOT/deploy/local/cluster.sh" list | awk '$2 == "gateway" {print "http://" $3}' | paste -sd, -)
    CLUSTER_WATCH=()
    local name service addr
    while read -r name service addr; do
        CLUSTER_WATCH+=(--watch "$name:$service=$(STATE_DIR=$CLUSTER_STATE "$ROOT/deploy/local/cluster.sh" pid "$name")")
    done < <(STATE_DIR=$CLUSTER_STATE "$ROOT/deploy/local/cluster.sh" list)
    STATE_DIR=$CLUSTER_STATE "$ROOT/deploy/local/cluster.sh" status >"$OUT/$label-cluster-status.txt" 2>&1 || true
}

cluster_down() {
    STATE_DIR=$CLUSTER_STATE CLEAN=1 timeout 60 "$ROOT/deploy/local/cluster.sh" down >>"$OUT/cluster-down.log" 2>&1 || true
    CLUSTER_UP=0
    drop_namespaces
}

FAILED=()
began=$SECONDS
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "binary: $BIN ($("$BIN" --version 2>/dev/null))"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "users=$USERS duration=$DURATION warmup=$WARMUP settle=$SETTLE weights=${WEIGHTS:-default}"
    echo "platform: $(env | grep '^MOTORPOOL_' | sort | tr '\n' ' ')"
    echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg); rustc processes: $(pgrep -c rustc || true)"
} >"$OUT/run.txt"
cat "$OUT/run.txt" >&2

mapfile -d '' INFRA_WATCH < <(infra_watch)

for variant in $VARIANTS; do
    case $variant in
        embedded)
            start_up embedded
            mixed embedded "$GW_URL" --watch "up=$UP_PID"
            stop_up
            ;;
        control)
            # Not in the default set: the embedded platform with no cancellations, to tell the
            # failures that need a cancellation from the rest.
            start_up control
            WEIGHTS=${WEIGHTS:-cancel=0} mixed control "$GW_URL" --watch "up=$UP_PID"
            stop_up
            ;;
        postgres)
            ns=mixed_${TS}_pg
            PG_PREFIXES+=("$ns")
            NS_LIST+=("$ns")
            start_up postgres MOTORPOOL_STORAGE__BACKEND=postgres "MOTORPOOL_STORAGE__POSTGRES_URL=$PG_URL" \
                "MOTORPOOL_STORAGE__DATABASE_PREFIX=$ns" MOTORPOOL_STORAGE__MAX_CONNECTIONS=8 \
                MOTORPOOL_EVENTS__BACKEND=nats "MOTORPOOL_EVENTS__NATS_URL=$NATS_URL" "MOTORPOOL_EVENTS__NAMESPACE=$ns" \
                MOTORPOOL_CACHE__BACKEND=redis "MOTORPOOL_CACHE__REDIS_URL=$REDIS_URL" "MOTORPOOL_CACHE__NAMESPACE=$ns" \
                MOTORPOOL_DISCOVERY__BACKEND=local
            mixed postgres "$GW_URL" --watch "up=$UP_PID" "${INFRA_WATCH[@]}"
            stop_up
            drop_namespaces
            ;;
        cluster)
            cluster_up cluster "$DEFAULT_REPLICAS"
            mixed cluster "$CLUSTER_GWS" "${CLUSTER_WATCH[@]}" "${INFRA_WATCH[@]}"
            cluster_down
            ;;
        scaling)
            [[ -s $OUT/cluster.json ]] || die "scaling needs the cluster variant first (VARIANTS=\"cluster scaling\")"
            busiest=$(jq -r '.cpu.busiest_service // empty' "$OUT/cluster.json")
            [[ -n $busiest ]] || die "scaling: the cluster run named no busiest service"
            had=$(tr ' ' '\n' <<<"$DEFAULT_REPLICAS" | awk -F= -v s="$busiest" '$1 == s {print $2}')
            if [[ $had == 2 ]]; then other=1; else other=2; fi
            replicas=$(tr ' ' '\n' <<<"$DEFAULT_REPLICAS" | awk -F= -v s="$busiest" -v n="$other" '$1 == s {$2 = n} {print $1 "=" $2}' | paste -sd' ' -)
            label=cluster-$busiest-x$other
            echo "$busiest $had $other $label" >"$OUT/scaling.txt"
            cluster_up "$label" "$replicas"
            mixed "$label" "$CLUSTER_GWS" "${CLUSTER_WATCH[@]}" "${INFRA_WATCH[@]}"
            cluster_down
            # More rounds, alternating, to see the run-to-run spread next to the difference.
            for ((r = 2; r <= SCALING_ROUNDS; r++)); do
                cluster_up "cluster-r$r" "$DEFAULT_REPLICAS"
                mixed "cluster-r$r" "$CLUSTER_GWS" "${CLUSTER_WATCH[@]}" "${INFRA_WATCH[@]}"
                cluster_down
                cluster_up "$label-r$r" "$replicas"
                mixed "$label-r$r" "$CLUSTER_GWS" "${CLUSTER_WATCH[@]}" "${INFRA_WATCH[@]}"
                cluster_down
            done
            ;;
        *) die "unknown variant $variant (embedded postgres cluster scaling control)" ;;
    esac
done
log "all variants in $((SECONDS - began)) s"

# Side by side.
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, os, sys
out = sys.argv[1]
runs = []
order = os.path.join(out, "order.txt")
for name in (open(order).read().split() if os.path.exists(order) else []):
    p = os.path.join(out, name + ".json")
    if os.path.exists(p) and os.path.getsize(p):
        runs.append(json.loads(open(p).read().strip().splitlines()[-1]))
if not runs:
    sys.exit(0)
ops = ["browse", "configure", "add", "checkout", "checkout_replay", "order", "order_replay", "cancel"]
head = "| | " + " | ".join(r["label"] for r in runs) + " |"
print(head)
print("|---" * (len(runs) + 1) + "|")
row = lambda name, f: print(f"| {name} | " + " | ".join(f(r) for r in runs) + " |")
row("ops/s", lambda r: f"**{r['ops_per_sec']:.0f}**")
row("ops (measured)", lambda r: str(r["ops"]))
row("p50 / p99 all ops (ms)", lambda r: f"{r['p50_ms']} / {r['p99_ms']}")
for op in ops:
    def cell(r, op=op):
        s = r["per_op"].get(op)
        return "–" if not s else f"{s['count']}: {s['p50_ms']} / {s['p99_ms']}"
    row(f"{op} (count: p50 / p99 ms)", cell)
row("refused", lambda r: str(r["refused"]))
row("errors", lambda r: str(r["errors"]))
row("oracle", lambda r: ("**pass**" if r["oracle"]["ok"] else "**FAIL: " + ", ".join(c["name"] for c in r["oracle"]["checks"] if not c["ok"]) + "**") + f" (settled {r['oracle']['settle_s']} s)")
row("machine CPU busy", lambda r: f"{r['cpu']['machine_busy_share']*100:.0f} %")
def cpu(r):
    c = r["cpu"]
    svc = c["per_service_cpu_s"]
    platform = sum(v for k, v in svc.items() if not k.startswith("infra-"))
    infra = lambda k: svc.get(k, 0)
    return (f"{platform:.1f} / {infra('infra-postgres'):.1f} / {infra('infra-nats') + infra('infra-redis'):.1f} / "
            f"{c['loadgen_cpu_s']:.1f} / {c['other_processes_cpu_s']:.1f} / {c['unattributed_cpu_s']:.1f} of {c['cores'] * c['window_s']:.0f}")
row("CPU s: motorpool / PostgreSQL / NATS+Redis / load generator / other processes / kernel+unattributed", cpu)
row("busiest service (CPU s)", lambda r: (lambda c: f"{c['busiest_service']} ({c['per_service_cpu_s'][c['busiest_service']]})" if c.get("busiest_service") else "–")(r["cpu"]))
sc = os.path.join(out, "scaling.txt")
if os.path.exists(sc):
    import re
    busiest, had, other, label = open(sc).read().split()
    default = [r for r in runs if re.fullmatch(r"cluster(-r\d+)?", r["label"])]
    changed = [r for r in runs if re.fullmatch(re.escape(label) + r"(-r\d+)?", r["label"])]
    if default and changed:
        two, one = (default, changed) if had == "2" else (changed, default)
        mean = lambda rs: sum(r["ops_per_sec"] for r in rs) / len(rs)
        each = lambda rs: ", ".join(f"{r['ops_per_sec']:.0f}" for r in rs)
        print()
        print(f"Scaling: {busiest} ×2 {mean(two):.0f} ops/s ({each(two)}) vs ×1 {mean(one):.0f} ops/s ({each(one)}): ratio {mean(two) / mean(one):.2f}")
PY

if ((${#FAILED[@]})); then
    log "FAILED: ${FAILED[*]} (see $OUT)"
    exit 1
fi
log "results in $OUT"
