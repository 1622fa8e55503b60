#!/usr/bin/env bash
# Inventory hold-and-release throughput on PostgreSQL, side by side with the database's own
# ceiling for the same work — pgbench running just the service's hold and release statements
# (bench/inventory-hold.sql) against the service's own database — in one run.
#
#   bench/inventory.sh            # 32 clients, 10 s per phase (after 2 s unmeasured)
#   CLIENTS=16 SECS=20 WARMUP=5 POOL=32 bench/inventory.sh
#
# Phases, each on one hot SKU and on many (MANY, 1,000): gRPC straight to inventory (Hold,
# Release); through the gateway as shoppers (add to cart, remove from cart; the shop holds and
# releases; the bench SKUs are made catalog products first); pgbench on both SKU counts.
# The shop sends its releases in batches (inventory's ReleaseMany), so the gateway phases are
# also set against a pgbench run of the same batches: B holds then one batch release, B the
# mean batch that phase reached (read off inventory's metrics).
# After every service phase: wait for all holds to be gone, check that no SKU is oversold or
# changed and that the admin consistency check passes. Results: one JSON file under
# bench/results/ and a summary on stdout.
#
# Needs PostgreSQL (trust auth on 127.0.0.1:5432), NATS (4222) and Redis (6379) running, and
# pgbench (Debian: postgresql-contrib / postgresql-client). Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
CLIENTS="${CLIENTS:-32}"
SECS="${SECS:-10}"
WARMUP="${WARMUP:-2}"
MANY="${MANY:-1000}"
# Pooled PostgreSQL connections per service: the platform's default. 32 per service (five
# services) put over a hundred backends on two cores; see REPORT-inventory.md.
POOL="${POOL:-16}"
# pgbench's clients (its ceiling at the services' 32 clients by default).
PGBENCH_CLIENTS="${PGBENCH_CLIENTS:-$CLIENTS}"
export POOL PGBENCH_CLIENTS
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
RUN="mpinv$(date +%s)"
WORK="$(mktemp -d)"
OUT="${OUT:-bench/results/inventory-$(date -u +%Y%m%dT%H%M%SZ).json}"
mkdir -p "$(dirname "$OUT")"
# The hold path and what the gateway phases need (payments only because the shop requires it).
CMD=(serve identity payments inventory shop gateway)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p motorpool -p motorpool-inventory-bench
fi
BIN="$CARGO_TARGET_DIR/release"

GW=127.0.0.1:18181
INV=127.0.0.1:18191
SHOP_ADDR=127.0.0.1:18192
for addr in $GW $INV $SHOP_ADDR; do
  if curl -s -o /dev/null "http://$addr/" 2>/dev/null; then echo "$addr is taken" >&2; exit 1; fi
done

cleanup() {
  [ -n "${MP_PID:-}" ] && kill "$MP_PID" 2>/dev/null && wait "$MP_PID" 2>/dev/null || true
  for db in $(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}%'"); do
    psql "$PG/postgres" -qc "drop database if exists \"$db\" with (force)" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/motorpool" "${CMD[@]}" \
  --set data_dir="$WORK" --set log.level=warn \
  --set storage.backend=postgres --set storage.postgres_url="$PG" --set storage.database_prefix="$RUN" \
  --set storage.max_connections="$POOL" \
  --set events.backend=nats --set events.namespace="$RUN" \
  --set cache.backend=redis --set cache.namespace="$RUN" --set discovery.backend=redis \
  --set gateway.rate_limit_enabled=false \
  --set identity.argon2_memory_kib=4096 --set identity.argon2_iterations=1 \
  --set identity.bootstrap_admin_email=bench-admin@motorpool.local \
  --set identity.bootstrap_admin_password=bench-admin-password \
  --set listen.gateway=$GW --set listen.inventory=$INV \
  --set listen.identity=127.0.0.1:0 --set listen.payments=127.0.0.1:0 --set listen.shop=$SHOP_ADDR \
  --set listen.notifications=127.0.0.1:0 \
  2>"$WORK/motorpool.log" &
MP_PID=$!
for _ in $(seq 1 300); do
  curl -fs "http://$GW/ready" >/dev/null 2>&1 && curl -fs "http://$INV/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$GW/ready" >/dev/null || { tail -20 "$WORK/motorpool.log" >&2; exit 1; }
curl -fs "http://$INV/ready" >/dev/null

# Every phase starts from the same footing: this run's databases vacuumed and analysed, no
# checkpoint pending. (Retried: other users of the server may hold every connection a moment.)
settle_db() {
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    vacuum_all && psql "$PG/postgres" -qc "checkpoint" 2>/dev/null && return
    sleep 1
  done
  echo "could not vacuum and checkpoint before a phase" >&2
}
vacuum_all() {
  local dbs db
  dbs=$(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}\_%'" 2>/dev/null) || return 1
  for db in $dbs; do
    psql "$PG/$db" -qc "vacuum analyze" 2>/dev/null || return 1
  done
}

# What else used the machine while a phase ran: wall time x cores, minus idle (and iowait)
# time, minus the CPU time of this benchmark's own processes (motorpool, PostgreSQL's server
# processes and its backends serving this run's databases, NATS, Redis, the load generator or
# pgbench) — the share left is others' (compilers, browsers, other test suites and their
# PostgreSQL backends). A lower bound: others' backends that ended during the phase are
# counted as ours, with everything else PostgreSQL's server process reaped.
others() {
  python3 - "$1" "${MP_PID:-0}" "$BASHPID" "$RUN" >>"$WORK/others.txt" <<'PY'
import os, sys, time
def ticks(pid, children=False):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
servers = {"postgres", "nats-server", "redis-server"}
own = ticks(sys.argv[2]) + ticks(sys.argv[3], children=True)
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{pid}/comm").read().strip() not in servers:
            continue
        # A backend's title: "postgres: 15/main: <user> <database> <client address> <state>".
        title = open(f"/proc/{pid}/cmdline").read().replace("\0", " ").split()
        is_backend = len(title) >= 5 and title[0] == "postgres:" and ("(" in title[4] or title[4] == "[local]")
        if is_backend and not title[3].startswith(sys.argv[4]) and title[3] != "postgres":
            continue
        # With the children it reaped: PostgreSQL's backends end with their connections.
        own += ticks(pid, children=True)
    except OSError:
        pass
cpu = open("/proc/stat").readline().split()
print(sys.argv[1], time.monotonic(), int(cpu[4]) + int(cpu[5]), own)
PY
}

bench() {
  "$BIN/motorpool-inventory-bench" --gateway "http://$GW" --inventory "http://$INV" \
    --admin-email bench-admin@motorpool.local --admin-password bench-admin-password "$@"
}
# The sum of one of inventory's counters over its label sets.
counter() { curl -fs "http://$INV/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { print s + 0 }'; }
# The shop's grouped cart statements: "kind statements items" per kind of statement.
groups() {
  curl -fs "http://$SHOP_ADDR/metrics" | awk '/^shop_grouped_(statements|items)_total[{]/ {
    match($1, /kind="[^"]*"/); k = substr($1, RSTART + 6, RLENGTH - 7)
    if ($1 ~ /^shop_grouped_items/) items[k] = $NF; else stmts[k] = $NF
  } END { for (k in stmts) print k, stmts[k], items[k] + 0 }'
}
run() {
  bench --mode "$1" --skus "$2" --setup-only >/dev/null
  settle_db
  others "$1_$2_start"
  local batches holds
  batches=$(counter inventory_release_batches_total) holds=$(counter inventory_release_batch_holds_total)
  groups >"$WORK/groups_$1_$2.start"
  bench --mode "$1" --skus "$2" --clients "$CLIENTS" --duration-secs "$SECS" --warmup-secs "$WARMUP"
  # The shop's release queue sends its releases in batches: their mean size this phase.
  echo "$(( $(counter inventory_release_batches_total) - batches )) $(( $(counter inventory_release_batch_holds_total) - holds ))" \
    >"$WORK/batches_$1_$2"
  groups >"$WORK/groups_$1_$2.end"
  others "$1_$2_end"
}
# The gateway phases need the shop's cart; wait for its catalog to be served.
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$GW/api/shop/products?limit=1")" = 200 ] && break
  sleep 0.1
done
SHOP=0
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$GW/api/shop/products?limit=1")" = 200 ] && SHOP=1
# Every SKU of every phase is in stock before the first one, so that every phase, pgbench's
# included, works on the same table: a hot row shares its page with others (its updates are
# then not always HOT), and the planner's statistics count every SKU (with those of an
# emptier table it plans scans of the whole stock table per hold).
bench --mode grpc --skus "$MANY" --setup-only >/dev/null
[ "$SHOP" = 1 ] && bench --mode gateway --skus "$MANY" --setup-only >/dev/null

GRPC_1=$(run grpc 1)
GRPC_MANY=$(run grpc "$MANY")
GW_1=null GW_MANY=null
if [ "$SHOP" = 1 ]; then
  # A failing gateway phase is reported (its error is on stderr) without losing the others.
  GW_1=$(run gateway 1) || { echo "gateway phase, 1 SKU: failed" >&2; GW_1=null; }
  GW_MANY=$(run gateway "$MANY") || { echo "gateway phase, $MANY SKUs: failed" >&2; GW_MANY=null; }
else
  echo "the shop serves no catalog: gateway phases skipped" >&2
fi
kill "$MP_PID"; wait "$MP_PID" 2>/dev/null || true; MP_PID=

# The database's ceiling: the same two statements, 32 clients, on the BENCH-xxxx SKUs stocked
# before the first phase (1,000,000 units each, nothing held).
CREATED='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c11","type":"inventory.hold.created.v1","source":"inventory","time":"2026-11-23T21:03:00.123Z","subject":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","data":{"holdId":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","owner":"cart:bench-0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c0f","sku":"BENCH-0001","quantity":1,"expiresAt":"2026-11-23T21:18:00.123Z"}}'
LOW='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c12","type":"inventory.stock.low.v1","source":"inventory","time":"2026-11-23T21:03:00.123Z","subject":"BENCH-0001","data":{"sku":"BENCH-0001","quantity":0,"held":0,"available":0,"threshold":5}}'
RELEASED='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c13","type":"inventory.hold.released.v1","source":"inventory","time":"2026-11-23T21:03:00.223Z","subject":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","data":{"holdId":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","owner":"cart:bench-0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c0f","sku":"","quantity":0}}'
pgb() {
  settle_db
  others "pgbench_$1_start"
  pgbench -n -M prepared -f bench/inventory-hold.sql -D skus="$1" -D now="$(date +%s%3N)" \
    -D "created=$CREATED" -D "low=$LOW" -D "released=$RELEASED" \
    -c "$PGBENCH_CLIENTS" -j 2 -T "$SECS" -l --log-prefix="$WORK/pgb$1" "$PG/${RUN}_inventory" 2>"$WORK/pgb$1.err" >"$WORK/pgb$1.out" \
    || { cat "$WORK/pgb$1.err" >&2; exit 1; }
  others "pgbench_$1_end"
  # Nothing may be left held: every script run released what it held.
  psql "$PG/${RUN}_inventory" -Atc \
    "select count(*) filter (where held <> 0) || ' ' || count(*) filter (where held > quantity) from stock" >"$WORK/pgb$1.check"
}
pgb 1
pgb "$MANY"

# The gateway phases' own ceiling: the shop releases in batches (ReleaseMany), so pgbench runs
# script runs of B holds and one batch release of them, B the mean batch of that phase
# (bench/inventory-release-batch.sql after B copies of the hold statement); pairs/s = tps x B.
pgbb() {
  local b
  b=$(awk '{ print ($1 > 0) ? int($2 / $1 + 0.5) : 1 }' "$WORK/batches_gateway_$1")
  [ "$b" -ge 1 ] || b=1
  python3 - "$b" >"$WORK/batch$1.sql" <<'PY'
import re, sys
b = int(sys.argv[1])
text = open("bench/inventory-hold.sql").read()
end = "SELECT quantity, held FROM s;"
hold = text[text.index("WITH s AS ("):text.index(end) + len(end)]
out = [line for line in text.splitlines() if line.startswith("\\set") and not line.startswith("\\set i ")]
out += [f"\\set i{k} random(1, :skus)" for k in range(1, b + 1)]
out += [re.sub(r":i\b", f":i{k}", hold).replace(":r::text", f":r::text || '-{k}'") for k in range(1, b + 1)]
out.append(open("bench/inventory-release-batch.sql").read())
print("\n".join(out))
PY
  echo "$b" >"$WORK/pgbb$1.b"
  settle_db
  others "pgbench_batch_$1_start"
  pgbench -n -M prepared -f "$WORK/batch$1.sql" -D skus="$1" -D b="$b" -D now="$(date +%s%3N)" \
    -D "created=$CREATED" -D "low=$LOW" -D "released=$RELEASED" \
    -c "$PGBENCH_CLIENTS" -j 2 -T "$SECS" "$PG/${RUN}_inventory" 2>"$WORK/pgbb$1.err" >"$WORK/pgbb$1.out" \
    || { cat "$WORK/pgbb$1.err" >&2; exit 1; }
  others "pgbench_batch_$1_end"
  psql "$PG/${RUN}_inventory" -Atc \
    "select count(*) filter (where held <> 0) || ' ' || count(*) filter (where held > quantity) from stock" >"$WORK/pgbb$1.check"
}
if [ "$SHOP" = 1 ]; then
  [ -f "$WORK/batches_gateway_1" ] && pgbb 1
  [ -f "$WORK/batches_gateway_$MANY" ] && pgbb "$MANY"
fi

python3 - "$WORK" "$CLIENTS" "$SECS" "$OUT" "${CMD[*]}" "$MANY" "$GRPC_1" "$GRPC_MANY" "$GW_1" "$GW_MANY" <<'PY'
import glob, json, os, re, sys
work, clients, secs, out, services, many = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
phases = dict(zip(("grpc_1", f"grpc_{many}", "gateway_1", f"gateway_{many}"), (json.loads(a) for a in sys.argv[7:11])))

def pgbench(skus):
    text = open(f"{work}/pgb{skus}.out").read()
    logs = [f for f in glob.glob(f"{work}/pgb{skus}.*") if re.search(r"\.\d+(\.\d+)?$", f)]
    lat = sorted(int(line.split()[2]) for f in logs for line in open(f))
    pick = lambda p: lat[round((len(lat) - 1) * p)] if lat else 0
    held, oversold = (int(x) for x in open(f"{work}/pgb{skus}.check").read().split())
    return {"skus": skus, "tps": float(re.search(r"^tps = ([\d.]+)", text, re.M).group(1)),
            "failed": int(re.search(r"number of failed transactions: (\d+)", text).group(1)),
            "latency_avg_ms": float(re.search(r"latency average = ([\d.]+)", text).group(1)),
            "p50_us": pick(0.50), "p99_us": pick(0.99), "skus_left_held": held, "skus_oversold": oversold}

pg = {int(m.group(1)): pgbench(int(m.group(1))) for f in glob.glob(f"{work}/pgb*.out") if (m := re.search(r"pgb(\d+)\.out$", f))}

def pgbench_batched(skus):
    text = open(f"{work}/pgbb{skus}.out").read()
    b = int(open(f"{work}/pgbb{skus}.b").read())
    held, oversold = (int(x) for x in open(f"{work}/pgbb{skus}.check").read().split())
    runs = float(re.search(r"^tps = ([\d.]+)", text, re.M).group(1))
    return {"skus": skus, "batch": b, "script_runs_per_sec": runs, "tps": runs * b,
            "failed": int(re.search(r"number of failed transactions: (\d+)", text).group(1)),
            "skus_left_held": held, "skus_oversold": oversold}

pgb = {int(m.group(1)): pgbench_batched(int(m.group(1))) for f in glob.glob(f"{work}/pgbb*.out") if (m := re.search(r"pgbb(\d+)\.out$", f))}
batches = {}
for f in glob.glob(f"{work}/batches_gateway_*"):
    calls, holds = (int(x) for x in open(f).read().split())
    batches[int(f.rsplit("_", 1)[1])] = {"release_many_calls": calls, "holds_released": holds}
hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count()
marks = {}
for line in open(f"{work}/others.txt"):
    name, t, idle, own = line.split()
    marks[name] = (float(t), int(idle), int(own))
others = {}
for name, (t1, idle1, own1) in marks.items():
    if name.endswith("_end") and (start := marks.get(name[:-4] + "_start")):
        capacity = (t1 - start[0]) * hz * cores
        others[name[:-4]] = {"others_cpu_pct": round(max(0.0, capacity - (idle1 - start[1]) - (own1 - start[2])) / capacity * 100, 1),
                             "own_cpu_pct": round((own1 - start[2]) / capacity * 100, 1)}
res = {"services": services, "clients": clients, "pgbench_clients": int(os.environ["PGBENCH_CLIENTS"]),
       "pool_per_service": int(os.environ["POOL"]), "seconds": secs, "pgbench": list(pg.values()),
       "pgbench_batched": list(pgb.values()), "release_batches": batches, "phases": phases, "others": others}
targets = {"grpc": 0.50, "gateway": 0.30}
ms = lambda us: f"{us / 1000:.2f}"
def busy(phase):
    o = others.get(phase)
    return f"[others used {o['others_cpu_pct']:.0f} % of the CPU, this benchmark {o['own_cpu_pct']:.0f} %]" if o else ""
for n, r in sorted(pg.items()):
    print(f"pgbench, {n} SKUs: {r['tps']:.0f} ops/s, p50 {ms(r['p50_us'])} ms, p99 {ms(r['p99_us'])} ms, "
          f"failed {r['failed']}, SKUs left held {r['skus_left_held']}, oversold {r['skus_oversold']} {busy(f'pgbench_{n}')}")
for n, r in sorted(pgb.items()):
    print(f"pgbench with batched releases of {r['batch']}, {n} SKUs: {r['tps']:.0f} ops/s ({r['script_runs_per_sec']:.0f} script runs/s), "
          f"failed {r['failed']}, SKUs left held {r['skus_left_held']}, oversold {r['skus_oversold']} {busy(f'pgbench_batch_{n}')}")
for name, r in phases.items():
    if r is None:
        print(f"{name}: not run")
        continue
    # The gateway phases release in batches: their ceiling runs the same batches.
    single = pg[r["skus"]]["tps"]
    ceiling = pgb[r["skus"]]["tps"] if r["mode"] == "gateway" and r["skus"] in pgb else single
    r["vs_pgbench_single_release"] = r["ops_per_sec_with_drain"] / single
    # Through the gateway an op ends when the shop has sent its release: count the drain.
    rate = r["ops_per_sec_with_drain"]
    ratio = rate / ceiling
    target = targets[r["mode"]]
    r["vs_pgbench"] = ratio
    r["pgbench_tps"] = ceiling
    st = r["stock"]
    print(f"{r['mode']}, {r['skus']} SKUs: {r['ops_per_sec']:.0f} ops/s answered, {rate:.0f} ops/s with the releases drained "
          f"= {ratio:.0%} of pgbench (target {target:.0%}: {'met' if ratio >= target else 'MISSED'}); "
          f"op p50 {ms(r['p50_us'])} / p99 {ms(r['p99_us'])} ms, hold p50 {ms(r['hold_p50_us'])} / p99 {ms(r['hold_p99_us'])} ms; "
          f"refused {sum(r['refused'].values())}{' ' + str(r['refused']) if r['refused'] else ''}, errors {r['errors']}, oversold SKUs {st['oversold_skus']}, quantity changed {st['quantity_changed_skus']}, "
          f"held at end {st['held_at_end']} -> {st['held_after']} after {st['drain_ms']} ms, consistent {r['consistent']} {busy(name)}"
          + (f"; vs pgbench with single releases {r['vs_pgbench_single_release']:.0%}" if ceiling != single else ""))
    # How many cart changes the shop's grouped statements carried each, this phase.
    start, end = (f"{work}/groups_{name}.{e}" for e in ("start", "end"))
    if os.path.exists(start) and os.path.exists(end):
        read = lambda f: {k: (int(a), int(b)) for k, a, b in (line.split() for line in open(f) if line.strip())}
        a, b = read(start), read(end)
        r["shop_grouped"] = {k: {"statements": b[k][0] - a.get(k, (0, 0))[0], "items": b[k][1] - a.get(k, (0, 0))[1]} for k in b}
        if any(g["statements"] for g in r["shop_grouped"].values()):
            print("  shop's grouped statements, changes per statement: " + ", ".join(
                f"{k} {g['items'] / g['statements']:.2f} ({g['statements']} statements)" for k, g in sorted(r["shop_grouped"].items()) if g["statements"]))
json.dump(res, open(out, "w"), indent=2)
print(f"written to {out}")
PY
