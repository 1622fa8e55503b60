#!/usr/bin/env bash
# New-car order placements per second, end to end through the gateway (the factory's whole
# placing saga: configuration over gRPC, parts held in inventory, deposit through payments,
# production day booked), against order reads by the same clients in the same run.
#
#   bench/factory-orders.sh                    # embedded defaults, 16 clients, 10 s per phase
#   BACKEND=infra CLIENTS=16 SECS=10 bench/factory-orders.sh   # PostgreSQL + NATS + Redis
#
# Needs for BACKEND=infra: PostgreSQL (trust auth, 127.0.0.1:5432), NATS (4222), Redis (6379).
# Loopback only, bounded in time. The result JSON goes to bench/results/ and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
BACKEND="${BACKEND:-local}"
CLIENTS="${CLIENTS:-16}"
SECS="${SECS:-10}"
WARMUP="${WARMUP:-2}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
GW=127.0.0.1:18381
OUT="bench/results/factory-orders-$BACKEND-$(date -u +%Y%m%dT%H%M%SZ).json"
mkdir -p bench/results
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p motorpool -p motorpool-bench-configurator
fi
BIN="$CARGO_TARGET_DIR/release"
if curl -s -o /dev/null "http://$GW/" 2>/dev/null; then echo "$GW is taken" >&2; exit 1; fi

WORK="$(mktemp -d)"
RUN="mporders$(date +%s)"
cleanup() {
  [ -n "${MP_PID:-}" ] && kill "$MP_PID" 2>/dev/null && wait "$MP_PID" 2>/dev/null || true
  if [ "$BACKEND" = infra ]; then
    for db in $(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}%'" 2>/dev/null); do
      psql "$PG/postgres" -qc "drop database if exists \"$db\" with (force)" || true
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

flags=()
if [ "$BACKEND" = infra ]; then
  flags=(--set storage.backend=postgres --set storage.postgres_url="$PG" --set storage.database_prefix="$RUN"
    --set events.backend=nats --set events.namespace="$RUN"
    --set cache.backend=redis --set cache.namespace="$RUN" --set discovery.backend=redis)
fi
"$BIN/motorpool" serve identity payments inventory configurator factory gateway \
  --set data_dir="$WORK" --set log.level=warn \
  --set gateway.rate_limit_enabled=false \
  --set identity.argon2_memory_kib=4096 --set identity.argon2_iterations=1 \
  --set identity.bootstrap_admin_email=bench-admin@motorpool.local \
  --set identity.bootstrap_admin_password=bench-admin-password \
  --set factory.daily_capacity=100 \
  --set listen.gateway=$GW --set listen.identity=127.0.0.1:0 --set listen.payments=127.0.0.1:0 \
  --set listen.inventory=127.0.0.1:0 --set listen.configurator=127.0.0.1:0 --set listen.factory=127.0.0.1:0 \
  "${flags[@]}" 2>"$WORK/motorpool.log" &
MP_PID=$!
for _ in $(seq 1 300); do
  curl -fs "http://$GW/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$GW/ready" >/dev/null || { tail -20 "$WORK/motorpool.log" >&2; exit 1; }
"$BIN/motorpool-bench-orders" --gateway "http://$GW" --clients "$CLIENTS" --duration-secs "$SECS" --warmup-secs "$WARMUP" \
  --admin-email bench-admin@motorpool.local --admin-password bench-admin-password | tee "$OUT"
