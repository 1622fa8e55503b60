#!/usr/bin/env bash
# Ledger transfer throughput on PostgreSQL, side by side with pgbench's tpcb-like (the
# classic bank-transfer benchmark) against the same server, in one run.
#
#   bench/ledger.sh            # 32 clients, 10 s per phase
#   CLIENTS=16 SECS=20 bench/ledger.sh
#
# Needs PostgreSQL (trust auth on 127.0.0.1:5432), NATS (4222) and Redis (6379) running, and
# pgbench (Debian: postgresql-contrib / postgresql-client). Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
CLIENTS="${CLIENTS:-32}"
# Which services run: the ledger path alone by default (notifications would add its own
# writes per payment to the same database server); ALL=1 runs the whole platform.
if [ "${ALL:-0}" = 1 ]; then CMD=(up --no-demo); else CMD=(serve identity payments gateway); fi
SECS="${SECS:-10}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
RUN="mpbench$(date +%s)"
WORK="$(mktemp -d)"
OUT="${OUT:-bench/results/ledger-$(date -u +%Y%m%dT%H%M%SZ).json}"
mkdir -p "$(dirname "$OUT")"

cargo build --release -q -p motorpool -p motorpool-ledger-bench
BIN="$CARGO_TARGET_DIR/release"

cleanup() {
  [ -n "${MP_PID:-}" ] && kill "$MP_PID" 2>/dev/null && wait "$MP_PID" 2>/dev/null || true
  for db in $(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}%'"); do
    psql "$PG/postgres" -qc "drop database if exists \"$db\" with (force)" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

GW=127.0.0.1:18180
PAY=127.0.0.1:18193
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
  --set listen.gateway=$GW --set listen.payments=$PAY \
  --set listen.identity=127.0.0.1:0 --set listen.notifications=127.0.0.1:0 \
  2>"$WORK/motorpool.log" &
MP_PID=$!
for _ in $(seq 1 300); do
  curl -fs "http://$GW/ready" >/dev/null 2>&1 && curl -fs "http://$PAY/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$GW/ready" >/dev/null

run() {
  "$BIN/motorpool-ledger-bench" --gateway "http://$GW" --payments "http://$PAY" --mode "$1" \
    --clients "$CLIENTS" --duration-secs "$SECS" \
    --admin-email bench-admin@motorpool.local --admin-password bench-admin-password
}
HTTP_JSON=$(run http)
GRPC_JSON=$(run grpc)
kill "$MP_PID"; wait "$MP_PID" 2>/dev/null || true; MP_PID=

psql "$PG/postgres" -qc "create database ${RUN}_pgbench"
pgbench -q -i -s "$CLIENTS" "$PG/${RUN}_pgbench" >/dev/null 2>&1
PGB=$(pgbench -n -b tpcb-like -c "$CLIENTS" -j 2 -T "$SECS" "$PG/${RUN}_pgbench" 2>/dev/null)
PGB_TPS=$(echo "$PGB" | awk '/^tps = /{print $3; exit}')
PGB_LAT=$(echo "$PGB" | awk '/latency average/{print $4; exit}')

python3 - "$HTTP_JSON" "$GRPC_JSON" "$PGB_TPS" "$PGB_LAT" "$CLIENTS" "$SECS" "$OUT" "${CMD[*]}" <<'PY'
import json, sys
http, grpc = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pgb, pgb_lat, clients, secs, out = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
res = {"services": sys.argv[8], "clients": int(clients), "seconds": int(secs), "pgbench_tpcb_like_tps": pgb, "pgbench_latency_ms": pgb_lat, "http": http, "grpc": grpc,
       "http_vs_pgbench": http["tps"] / pgb, "grpc_vs_pgbench": grpc["tps"] / pgb}
json.dump(res, open(out, "w"), indent=2)
print(f"pgbench tpcb-like: {pgb:.0f} tps (avg {pgb_lat} ms)")
for name, r in (("HTTP via gateway", http), ("gRPC direct", grpc)):
    print(f"{name}: {r['tps']:.0f} transfers/s, p50 {r['p50_us']/1000:.2f} ms, p99 {r['p99_us']/1000:.2f} ms, "
          f"errors {r['errors']}, ratio {r['tps']/pgb:.0%} of pgbench, ledger balanced: {r['ledger_balanced']}")
print(f"written to {out}")
PY
