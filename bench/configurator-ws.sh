#!/usr/bin/env bash
# Configurator live sessions through the gateway (issue target: the WebSocket pick-to-answer
# round trip under 10 ms p99 at 100 concurrent sessions), against a baseline taken in the same
# run on the same sockets: WebSocket Ping → Pong through the same gateway to the same service,
# which crosses the same transport without the configurator's work.
#
#   bench/configurator-ws.sh                  # 100 sessions, 2 s unmeasured + 10 s per phase
#   BACKEND=infra bench/configurator-ws.sh    # on PostgreSQL + NATS + Redis
#   BACKEND=both SESSIONS=100 SECS=10 WARMUP=2 ROUNDS=2 THINK_MS=0 bench/configurator-ws.sh
#
# BACKEND=local (default): SQLite, the embedded event log and the in-memory cache. infra:
# PostgreSQL (trust auth on 127.0.0.1:5432), NATS (4222) and Redis (6379) — a live session is
# stored in the cache after every pick, so there it costs a Redis write. both: one after the
# other, each on a fresh process. Each round is a ping phase then a pick phase on the same
# sessions (bench/configurator/src/bin/ws.rs). Results: one JSON file per backend under
# bench/results/ and a summary on stdout. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
BACKEND="${BACKEND:-local}"
SESSIONS="${SESSIONS:-100}"
SECS="${SECS:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-1}"
THINK_MS="${THINK_MS:-0}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
case "$BACKEND" in
  local | infra) BACKENDS=("$BACKEND") ;;
  both) BACKENDS=(local infra) ;;
  *) echo "BACKEND must be local, infra or both" >&2; exit 2 ;;
esac
mkdir -p bench/results

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p motorpool -p motorpool-bench-configurator
fi
BIN="$CARGO_TARGET_DIR/release"

GW=127.0.0.1:18281
CFG=127.0.0.1:18285
for addr in $GW $CFG; do
  if curl -s -o /dev/null "http://$addr/" 2>/dev/null; then echo "$addr is taken" >&2; exit 1; fi
done

WORK="$(mktemp -d)"
RUN=
cleanup() {
  [ -n "${MP_PID:-}" ] && kill "$MP_PID" 2>/dev/null && wait "$MP_PID" 2>/dev/null || true
  MP_PID=
  if [ -n "$RUN" ]; then
    for db in $(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}%'" 2>/dev/null); do
      psql "$PG/postgres" -qc "drop database if exists \"$db\" with (force)" || true
    done
    if command -v redis-cli >/dev/null; then
      redis-cli -u "$REDIS" --scan --pattern "${RUN}:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
    fi
    RUN=
  fi
}
trap 'cleanup; rm -rf "$WORK"' EXIT

run_backend() {
  local backend=$1 out flags=() own=()
  out="bench/results/configurator-ws-$backend-$STAMP.json"
  if [ "$backend" = infra ]; then
    RUN="mpcfgws$(date +%s)"
    flags=(--set storage.backend=postgres --set storage.postgres_url="$PG" --set storage.database_prefix="$RUN"
      --set events.backend=nats --set events.namespace="$RUN"
      --set cache.backend=redis --set cache.redis_url="$REDIS" --set cache.namespace="$RUN" --set discovery.backend=redis)
  fi
  mkdir -p "$WORK/$backend"
  # Identity because the gateway verifies tokens with its keys (and waits for it to be ready).
  "$BIN/motorpool" serve identity configurator gateway \
    --set data_dir="$WORK/$backend" --set log.level=warn \
    --set gateway.rate_limit_enabled=false \
    --set listen.gateway=$GW --set listen.configurator=$CFG --set listen.identity=127.0.0.1:0 \
    "${flags[@]}" \
    2>"$WORK/$backend/motorpool.log" &
  MP_PID=$!
  for _ in $(seq 1 300); do
    curl -fs "http://$GW/ready" >/dev/null 2>&1 && curl -fs "http://$CFG/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://$GW/ready" >/dev/null && curl -fs "http://$CFG/ready" >/dev/null \
    || { tail -20 "$WORK/$backend/motorpool.log" >&2; exit 1; }

  # CPU time of the servers under test counts as the benchmark's own, not as others'.
  own=(--own-pid "$MP_PID")
  if [ "$backend" = infra ]; then
    for pid in $(pgrep -x redis-server) $(pgrep -x nats-server); do own+=(--own-pid "$pid"); done
  fi
  local status=0
  "$BIN/motorpool-bench-configurator-ws" --gateway "$GW" --sessions "$SESSIONS" \
    --duration-secs "$SECS" --warmup-secs "$WARMUP" --rounds "$ROUNDS" --think-ms "$THINK_MS" \
    "${own[@]}" >"$out" 2>"$WORK/$backend/summary" || status=$?
  echo "$backend: $(cat "$WORK/$backend/summary")"
  # Per phase: how the machine's CPU (all cores = 100 %) was shared while it was measured.
  python3 - "$out" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
for x in r["per_round"]:
    m = x["machine"]
    busy = ", ".join(f"{k}: others {v['others_cpu_pct']:.0f} %, servers {v['servers_cpu_pct']:.0f} %, load generator {v['client_cpu_pct']:.0f} %, rustc {v['rustc_processes']}"
                     for k, v in m.items() if v)
    print(f"  round {x['round']}: pick p99 {x['pick']['p99_us'] / 1000:.2f} ms, ping p99 {x['ping']['p99_us'] / 1000:.2f} ms [{busy}]")
PY
  echo "  written to $out"
  if grep -qi "error\|panic" "$WORK/$backend/motorpool.log"; then
    echo "  motorpool logged errors:" >&2
    grep -i "error\|panic" "$WORK/$backend/motorpool.log" | tail -5 >&2
  fi
  cleanup
  return "$status"
}

STATUS=0
for backend in "${BACKENDS[@]}"; do
  run_backend "$backend" || STATUS=1
done
exit "$STATUS"
