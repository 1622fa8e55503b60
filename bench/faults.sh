#!/usr/bin/env bash
# Fault tests of the multi-process cluster under load (issue 6): bench/faults/run.py brings up
# deploy/local/cluster.sh with PRIVATE_INFRA=1 (its own PostgreSQL, NATS and Redis, so
# restarting or cutting them disturbs nothing else on the machine), runs customers through
# both gateways, and injects, one after the other: kill -9 of a shop and of an inventory
# replica, NATS stopped, PostgreSQL restarted, SIGSTOP of a shop and of a payments replica,
# Redis stopped, SIGTERM of a shop replica. After each fault and at the end it checks that no
# acknowledged order is lost, nothing is charged twice, nothing is oversold and stock is
# conserved, every outbox row is published and every process is ready again, and reports the
# error rate and p50/p99 of each fault's window. Exit status 1 when an invariant fails.
#
#   bench/faults.sh                                   # about three minutes
#   FAULTS=kill9-shop,sigterm-shop bench/faults.sh    # some faults only
#   REPORT=bench/REPORT-faults.md bench/faults.sh     # also write the report there
#
# Settings (environment; defaults in bench/faults/run.py):
#   BIN            motorpool binary (default ${CARGO_TARGET_DIR:-target}/release/motorpool)
#   FAULTS         comma list of: kill9-shop kill9-inventory kill9-payments kill9-factory nats-stop
#                  pg-restart sigstop-shop sigstop-payments sigstop-inventory redis-stop sigterm-shop
#                  sigterm-payments sigterm-inventory
#   WORKERS (8) THINK_MS (40) HOT_SKUS/HOT_QTY (6/120) COLD_SKUS/COLD_QTY (6/100000) FACTORY_EVERY (8)
#   DOWN_SECS (5: NATS, Redis down)  PAUSE_SECS (8: SIGSTOP)  TTL_SECS (10: discovery.ttl_secs)
#   UPSTREAM_TIMEOUT_MS (3000: gateway.upstream_timeout_ms)  EJECT_BOUND (2 s)  READY_BOUND (30 s)
#   OUTBOX_BOUND (30 s)  SETTLE_BOUND (60 s)  STATE_DIR (/tmp/motorpool-faults)
#   IP_BASE (102: gateways on 127.0.0.102-103, replicas on .104-.105)
#   PRIVATE_PG_PORT PRIVATE_NATS_PORT PRIVATE_REDIS_PORT (25432 24222 26379)
#   OUT (bench/results/faults-<UTC time>/: report.md, requests.jsonl, told.json, logs/)
#   KEEP_CLUSTER=1 leaves the cluster running afterwards (deploy/local/cluster.sh down to stop it)
#
# Needs python3 (3.11, standard library only), curl, psql, PostgreSQL's server binaries
# (/usr/lib/postgresql/15/bin), nats-server and redis-server. Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/motorpool}
export FAULTS_CMDLINE=${FAULTS_CMDLINE:-"$(env | grep -E '^(FAULTS|WORKERS|BIN|PAUSE_SECS|DOWN_SECS|TTL_SECS|REPORT)=' | sort | tr '\n' ' ')bench/faults.sh"}
exec python3 "$ROOT/bench/faults/run.py" "$@"
