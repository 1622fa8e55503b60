#!/usr/bin/env bash
# A quick check of the gateway's CPU per proxied request against nginx, for use while
# working on the proxy path (bench/run.sh is the full suite and the one the report quotes).
#
# Starts `motorpool serve identity` and `motorpool serve gateway` (static discovery) and an
# nginx with one worker proxying to the same identity, then runs wrk (2 threads, 64
# connections) against the gateway ROUNDS times and once against nginx, printing req/s and
# CPU microseconds per request (utime + stime of the proxy's processes from /proc).
#
#   bench/gw-cpu.sh                      # release binary from CARGO_TARGET_DIR (or target/)
#   GATEWAY_ENV=MOTORPOOL_WORKER_THREADS=1 DUR=10 bench/gw-cpu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/motorpool}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
NGINX=${NGINX:-/usr/sbin/nginx}
GW_PORT=${GW_PORT:-28080}
ID_PORT=${ID_PORT:-28101}
NGINX_PORT=${NGINX_PORT:-28180}
ROUTE=/.well-known/jwks.json
[[ -x $BIN ]] || { echo "no binary at $BIN (cargo build --release -p motorpool)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (Debian: wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

source "$ROOT/bench/lib.sh"

COMMON=(--set "listen.gateway=127.0.0.1:$GW_PORT" --set "listen.identity=127.0.0.1:$ID_PORT" --set log.level=warn --set cache.backend=memory)
"$BIN" serve identity --set "data_dir=$WORK/identity" "${COMMON[@]}" 2>"$WORK/identity.log" &
ID_PID=$!
PIDS+=("$ID_PID")
wait_for "http://127.0.0.1:$ID_PORT/ready"
env ${GATEWAY_ENV:-} "$BIN" serve gateway --set "data_dir=$WORK/gateway" "${COMMON[@]}" --set gateway.rate_limit_enabled=false \
    --set discovery.backend=static --set "discovery.peers.identity=[\"127.0.0.1:$ID_PORT\"]" 2>"$WORK/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
wait_for "http://127.0.0.1:$GW_PORT$ROUTE"

nginx_conf "$WORK/nginx" 1 "    upstream identity { server 127.0.0.1:$ID_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://identity; proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }"
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_for "http://127.0.0.1:$NGINX_PORT$ROUTE"


# measure NAME URL PID...: one wrk run, CPU of the given processes per request.
measure() {
    local name=$1 url=$2 before after out requests rps
    shift 2
    before=$(cpu_ticks "$@")
    out=$(wrk -t2 -c64 -d"${DUR}s" "$url")
    after=$(cpu_ticks "$@")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    awk -v n="$name" -v r="$rps" -v t=$((after - before)) -v q="$requests" -v hz="$CLK_TCK" -v e="$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" \
        'BEGIN { printf "%-8s %8.0f req/s  %6.2f us CPU/req  %s\n", n, r, t / hz * 1e6 / q, e }'
}

wrk -t2 -c64 -d2s "http://127.0.0.1:$GW_PORT$ROUTE" >/dev/null
wrk -t2 -c64 -d2s "http://127.0.0.1:$NGINX_PORT$ROUTE" >/dev/null
for _ in $(seq "$ROUNDS"); do measure gateway "http://127.0.0.1:$GW_PORT$ROUTE" "$GW_PID"; done
measure nginx "http://127.0.0.1:$NGINX_PORT$ROUTE" "$NGINX_PID" $(pgrep -P "$NGINX_PID")
