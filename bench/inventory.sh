#!/usr/bin/env bash
# Inventory hold-and-release throughput on PostgreSQL, side by side with the database's own
# ceiling for the same work — pgbench running just the service's hold and release statements
# (bench/inventory-hold.sql) against the service's own database — in one run.
#
#   bench/inventory.sh            # 32 clients, 10 s per phase
#   CLIENTS=16 SECS=20 bench/inventory.sh
#
# Phases, each on one hot SKU and on 1,000 SKUs: gRPC straight to inventory (Hold, Release);
# through the gateway as shoppers (add to cart, remove from cart; the shop holds and releases);
# pgbench. After every service phase: wait for all holds to be gone, check no SKU is oversold
# and the admin consistency check passes.
#
# Needs PostgreSQL (trust auth on 127.0.0.1:5432), NATS (4222) and Redis (6379) running, and
# pgbench (Debian: postgresql-contrib / postgresql-client). Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
CLIENTS="${CLIENTS:-32}"
SECS="${SECS:-10}"
MANY="${MANY:-1000}"
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
for addr in $GW $INV; do
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
  --set storage.max_connections=32 \
  --set events.backend=nats --set events.namespace="$RUN" \
  --set cache.backend=redis --set cache.namespace="$RUN" --set discovery.backend=redis \
  --set gateway.rate_limit_enabled=false \
  --set identity.argon2_memory_kib=4096 --set identity.argon2_iterations=1 \
  --set identity.bootstrap_admin_email=bench-admin@motorpool.local \
  --set identity.bootstrap_admin_password=bench-admin-password \
  --set listen.gateway=$GW --set listen.inventory=$INV \
  --set listen.identity=127.0.0.1:0 --set listen.payments=127.0.0.1:0 --set listen.shop=127.0.0.1:0 \
  --set listen.notifications=127.0.0.1:0 \
  2>"$WORK/motorpool.log" &
MP_PID=$!
for _ in $(seq 1 300); do
  curl -fs "http://$GW/ready" >/dev/null 2>&1 && curl -fs "http://$INV/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$GW/ready" >/dev/null || { tail -20 "$WORK/motorpool.log" >&2; exit 1; }
curl -fs "http://$INV/ready" >/dev/null

# Every phase starts from the same footing: dead rows of the previous one vacuumed, no
# checkpoint pending.
settle_db() {
  psql "$PG/${RUN}_inventory" -qc "vacuum analyze" && psql "$PG/postgres" -qc "checkpoint"
}

run() {
  settle_db
  "$BIN/motorpool-inventory-bench" --gateway "http://$GW" --inventory "http://$INV" --mode "$1" --skus "$2" \
    --clients "$CLIENTS" --duration-secs "$SECS" \
    --admin-email bench-admin@motorpool.local --admin-password bench-admin-password
}
GRPC_1=$(run grpc 1)
GRPC_MANY=$(run grpc "$MANY")
# The gateway phases need the shop's cart; wait for its catalog to be served.
GW_1=null GW_MANY=null
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$GW/api/shop/products?limit=1")" = 200 ] && break
  sleep 0.1
done
if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$GW/api/shop/products?limit=1")" = 200 ]; then
  # A failing gateway phase is reported (its error is on stderr) without losing the others.
  GW_1=$(run gateway 1) || { echo "gateway phase, 1 SKU: failed" >&2; GW_1=null; }
  GW_MANY=$(run gateway "$MANY") || { echo "gateway phase, $MANY SKUs: failed" >&2; GW_MANY=null; }
else
  echo "the shop serves no catalog: gateway phases skipped" >&2
fi
kill "$MP_PID"; wait "$MP_PID" 2>/dev/null || true; MP_PID=

# The database's ceiling: the same two statements, 32 clients, on the BENCH-xxxx SKUs the
# gRPC phases created (all stocked with 1,000,000 units and nothing held).
CREATED='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c11","type":"inventory.hold.created.v1","source":"inventory","time":"2026-11-23T21:03:00.123Z","subject":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","data":{"holdId":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","owner":"cart:bench-0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c0f","sku":"BENCH-0001","quantity":1,"expiresAt":"2026-11-23T21:18:00.123Z"}}'
LOW='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c12","type":"inventory.stock.low.v1","source":"inventory","time":"2026-11-23T21:03:00.123Z","subject":"BENCH-0001","data":{"sku":"BENCH-0001","quantity":0,"held":0,"available":0,"threshold":5}}'
RELEASED='{"id":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c13","type":"inventory.hold.released.v1","source":"inventory","time":"2026-11-23T21:03:00.223Z","subject":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","data":{"holdId":"0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c10","owner":"cart:bench-0199f0b2-3c7e-7a01-9c3e-5d2f1a0b7c0f","sku":"","quantity":0}}'
pgb() {
  settle_db
  pgbench -n -M prepared -f bench/inventory-hold.sql -D skus="$1" -D now="$(date +%s%3N)" \
    -D "created=$CREATED" -D "low=$LOW" -D "released=$RELEASED" \
    -c "$CLIENTS" -j 2 -T "$SECS" -l --log-prefix="$WORK/pgb$1" "$PG/${RUN}_inventory" 2>"$WORK/pgb$1.err" >"$WORK/pgb$1.out" \
    || { cat "$WORK/pgb$1.err" >&2; exit 1; }
  # Nothing may be left held: every script run released what it held.
  psql "$PG/${RUN}_inventory" -Atc \
    "select count(*) filter (where held <> 0) || ' ' || count(*) filter (where held > quantity) from stock" >"$WORK/pgb$1.check"
}
pgb 1
pgb "$MANY"

python3 - "$WORK" "$MANY" "$CLIENTS" "$SECS" "$OUT" "${CMD[*]}" "$GRPC_1" "$GRPC_MANY" "$GW_1" "$GW_MANY" <<'PY'
import glob, json, re, sys
work, many, clients, secs, out, services = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
phases = dict(zip(("grpc_1", "grpc_many", "gateway_1", "gateway_many"), (json.loads(a) for a in sys.argv[7:11])))

def pgbench(skus):
    text = open(f"{work}/pgb{skus}.out").read()
    lat = sorted(int(line.split()[2]) for f in glob.glob(f"{work}/pgb{skus}.*") if re.search(r"\.\d+(\.\d+)?$", f)
                 for line in open(f))
    pick = lambda p: lat[round((len(lat) - 1) * p)] if lat else 0
    held, oversold = (int(x) for x in open(f"{work}/pgb{skus}.check").read().split())
    return {"skus": int(skus), "tps": float(re.search(r"^tps = ([\d.]+)", text, re.M).group(1)),
            "failed": int(re.search(r"number of failed transactions: (\d+)", text).group(1)),
            "latency_avg_ms": float(re.search(r"latency average = ([\d.]+)", text).group(1)),
            "p50_us": pick(0.50), "p99_us": pick(0.99), "skus_left_held": held, "skus_oversold": oversold}

pg = {"1": pgbench("1"), "many": pgbench(many)}
res = {"services": services, "clients": clients, "seconds": secs, "pgbench": pg, "phases": phases}
targets = {"grpc": 0.50, "gateway": 0.30}
print(f"pgbench (hold + release statements): 1 SKU {pg['1']['tps']:.0f} tps (p50 {pg['1']['p50_us']/1000:.2f} / p99 {pg['1']['p99_us']/1000:.2f} ms), "
      f"{many} SKUs {pg['many']['tps']:.0f} tps (p50 {pg['many']['p50_us']/1000:.2f} / p99 {pg['many']['p99_us']/1000:.2f} ms), "
      f"failed {pg['1']['failed'] + pg['many']['failed']}, left held {pg['1']['skus_left_held'] + pg['many']['skus_left_held']}")
for name, r in phases.items():
    if r is None:
        print(f"{name}: skipped")
        continue
    ceiling = pg["1" if name.endswith("_1") else "many"]["tps"]
    ratio = r["ops_per_sec"] / ceiling
    target = targets[r["mode"]]
    res[f"{name}_vs_pgbench"] = ratio
    s = r["stock"]
    print(f"{name} ({r['skus']} SKUs): {r['ops_per_sec']:.0f} ops/s, p50 {r['p50_us']/1000:.2f} ms, p99 {r['p99_us']/1000:.2f} ms "
          f"(hold p50 {r['hold_p50_us']/1000:.2f} / p99 {r['hold_p99_us']/1000:.2f} ms), {ratio:.0%} of pgbench "
          f"(target {target:.0%}: {'met' if ratio >= target else 'MISSED'}), refused {r['refused']}, errors {r['errors']}, "
          f"oversold SKUs {s['oversold_skus']}, held after {s['held_after']} (drained in {s['drain_ms']} ms), "
          f"quantity changed {s['quantity_changed_skus']}, consistent {r['consistent']}")
json.dump(res, open(out, "w"), indent=2)
print(f"written to {out}")
PY
