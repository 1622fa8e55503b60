#!/usr/bin/env bash
# Benchmarks of the Motorpool platform chassis. Run from the repository root:
#
#     bench/run.sh
#
# Builds the release binaries, then in one run measures: cold start to all-ready, idle RSS,
# closed-loop and open-loop HTTP performance of identity (direct), the gateway and nginx, and
# the CPU time the gateway spends per proxied request. Raw results (JSON lines, wrk output,
# logs) and a Markdown summary go to bench/results/<UTC timestamp>/. Everything listens and
# connects on 127.0.0.1 only; every load run is bounded in time; every process the script
# starts is stopped when it exits, however it exits. See bench/README.md for what each figure
# means.
set -euo pipefail

# ---- Settings (override from the environment) -------------------------------------------
DURATION=${DURATION:-10}          # seconds of each measured load run
WARMUP=${WARMUP:-2}               # seconds of unmeasured load before each target's first run
CONNECTIONS=${CONNECTIONS:-64}    # closed loop: concurrent connections
THREADS=${THREADS:-2}             # wrk -t and loadgen --threads
RATES=${RATES:-"2000 5000 10000"} # open loop: offered requests per second
CPU_RATE=${CPU_RATE:-5000}        # CPU per request is also measured at this fixed rate
COLD_RUNS=${COLD_RUNS:-5}
IDLE_SECS=${IDLE_SECS:-3}         # idle time before reading RSS
GATEWAY_PORT=${GATEWAY_PORT:-8080}
IDENTITY_PORT=${IDENTITY_PORT:-8101}
NGINX_PORT=${NGINX_PORT:-18080}   # nginx with 1 worker; the $(nproc)-worker variant uses +1
NGINX=${NGINX:-/usr/sbin/nginx}
SKIP_BUILD=${SKIP_BUILD:-0}       # 1: use the binaries already built

ROUTE=/.well-known/jwks.json
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS=$OUT/results.jsonl

die() {
    echo "run.sh: $*" >&2
    exit 1
}
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

for tool in cargo curl jq wrk awk pgrep timeout "$NGINX"; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
cd "$ROOT"
mkdir -p "$OUT"
[[ ! -e $RESULTS ]] || die "$OUT already holds results; choose another OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/motorpool-bench.XXXXXX")

# ---- Process bookkeeping: everything started here is stopped on exit ----------------------
STARTED=()

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    # motorpool drains in-flight requests for up to http.shutdown_timeout (10 s) + 2 s.
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${STARTED[@]}"; do
        stop_pid "$pid"
    done
    STARTED=()
}

cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Small measurements -----------------------------------------------------------------
now_us() { echo "${EPOCHREALTIME/./}"; }

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true; }

# The status of each URL, one per line, from a single curl process (a poll costs one spawn).
http_codes() {
    local url args=()
    for url in "$@"; do args+=(-o /dev/null "$url"); done
    curl -s --max-time 1 -w '%{http_code}\n' "${args[@]}" || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

source "$ROOT/bench/lib.sh"  # wait_for, cpu_ticks, CLK_TCK, machine_idle_ticks, own_ticks

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- Interference: CPU used outside this benchmark while a figure was taken -------------
# The machine is shared, so each figure carries the share of the machine's CPU that went to
# anything but this script's processes (other processes and hypervisor steal) during it:
# machine busy time minus the CPU time of the servers we started (and their children) and of
# this shell and the children it has reaped (wrk, loadgen, curl, ...). Busy time is wall time
# x cores minus idle and iowait from /proc/stat: the kernel measures idle time exactly,
# whereas its busy counters are sampled at timer ticks and miss most of a bursty load's work.
bg_begin() { BG_START=("$(now_us)" "$(machine_idle_ticks)" "$(own_ticks)"); }

# Leaves, for the next `record`, others' CPU share since bg_begin, load and rustc count.
# (A file, not a variable: `record` runs at the end of pipelines, in a subshell.)
bg_end() {
    local elapsed_us=$(($(now_us) - BG_START[0])) idle=$(($(machine_idle_ticks) - BG_START[1])) own=$(($(own_ticks) - BG_START[2]))
    jq -n --argjson idle "$idle" --argjson own "$own" --argjson us "$elapsed_us" --argjson hz "$CLK_TCK" --argjson n "$NPROC" \
        --arg load "$(cut -d' ' -f1 /proc/loadavg)" --argjson rustc "$(pgrep -c -x rustc || true)" \
        '($us / 1e6 * $hz * $n) as $capacity
         | {others_cpu_pct: (($capacity - $idle - $own) / $capacity * 1000 | round / 10),
            bench_cpu_pct: ($own / $capacity * 1000 | round / 10), loadavg1: ($load | tonumber), rustc_procs: $rustc}' >"$WORK/bg.json"
}

# Appends one JSON object (stdin) to the results, with the interference of the last bg_end
# if it was not recorded yet.
record() {
    local bg=null
    if [[ -f $WORK/bg.json ]]; then
        bg=$(<"$WORK/bg.json")
        rm -f "$WORK/bg.json"
    fi
    jq -c --argjson bg "$bg" '. + {bg: $bg}' >>"$RESULTS"
}

# Waits (bounded) until every URL answers 200; fails if process $1 dies meanwhile.
wait_ready() {
    local pid=$1 url deadline=$(($(now_us) + 30000000))
    shift
    for url in "$@"; do
        until [[ $(http_code "$url") == 200 ]]; do
            kill -0 "$pid" 2>/dev/null || die "process $pid exited before $url was ready (see $OUT/*.log)"
            (($(now_us) < deadline)) || die "$url not ready after 30 s"
            sleep 0.01
        done
    done
}

# ---- Build ------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries (motorpool, motorpool-loadgen)"
    cargo build --release -p motorpool -p motorpool-loadgen
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)}
MOTORPOOL=$TARGET_DIR/release/motorpool
LOADGEN=$TARGET_DIR/release/motorpool-loadgen
[[ -x $MOTORPOOL && -x $LOADGEN ]] || die "release binaries missing under $TARGET_DIR/release"

# nginx with one worker, and with as many workers as cores: the gateway's tokio runtime has
# one worker thread per core, so the second variant may use the same CPU the gateway may.
NPROC=$(nproc)
NGINX_WORKERS=(1)
if ((NPROC > 1)); then NGINX_WORKERS+=("$NPROC"); fi

GW=http://127.0.0.1:$GATEWAY_PORT
ID=http://127.0.0.1:$IDENTITY_PORT
declare -A URL=([direct]=$ID$ROUTE [gateway]=$GW$ROUTE)
TARGETS=(direct gateway)
i=0
for w in "${NGINX_WORKERS[@]}"; do
    URL[nginx-w$w]=http://127.0.0.1:$((NGINX_PORT + i))$ROUTE
    TARGETS+=("nginx-w$w")
    i=$((i + 1))
done

LISTEN=(--set "listen.gateway=127.0.0.1:$GATEWAY_PORT" --set "listen.identity=127.0.0.1:$IDENTITY_PORT" --set log.level=warn)

# Every service `motorpool up` runs, as name=host:port, read from the effective configuration
# so that "all ready" keeps meaning every service as services are added.
mapfile -t SERVICES < <("$MOTORPOOL" config "${LISTEN[@]}" |
    awk '/^\[/ { listen = ($0 == "[listen]"); next } listen && NF == 3 { gsub(/"/, "", $3); print $1 "=" $3 }')
((${#SERVICES[@]} > 0)) || die "could not read the services' listen addresses from 'motorpool config'"
for port in "${SERVICES[@]##*:}" "$NGINX_PORT" $((NGINX_PORT + 1)); do
    ! port_in_use "$port" || die "127.0.0.1:$port is already in use; set GATEWAY_PORT/IDENTITY_PORT/NGINX_PORT or free it"
done
READY_URLS=()
for svc in "${SERVICES[@]}"; do READY_URLS+=("http://${svc#*=}/ready"); done

# ---- Machine and versions ---------------------------------------------------------------
{
    echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $NPROC"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "memory:"
    free -h
    echo "rustc: $(rustc --version)"
    echo "cargo: $(cargo --version)"
    echo "motorpool: $("$MOTORPOOL" --version), binary built $(date -u -r "$MOTORPOOL" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$MOTORPOOL" | cut -c1-16)"
    echo "nginx: $("$NGINX" -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -n1 || true)"
    echo "curl: $(curl --version | head -n1)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(git status --porcelain 2>/dev/null | wc -l) paths modified or untracked)"
    echo "loadavg_at_start: $(cat /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- Starting things --------------------------------------------------------------------
# Starts motorpool with the given arguments; sets MP_PID.
start_motorpool() {
    local name=$1
    shift
    "$MOTORPOOL" "$@" 2>>"$OUT/motorpool-$name.log" &
    MP_PID=$!
    STARTED+=("$MP_PID")
}

# nginx as a reverse proxy to identity with upstream keep-alive; sets NGINX_PID.
start_nginx() {
    local workers=$1 port=$2 prefix=$WORK/nginx-w$1
    # The gateway adds X-Forwarded-For too; keep the work comparable.
    nginx_conf "$prefix" "$workers" "    upstream identity {
        server 127.0.0.1:$IDENTITY_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://identity;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }"
    "$NGINX" -t -q -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" || die "nginx config test failed"
    "$NGINX" -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" &
    NGINX_PID=$!
    STARTED+=("$NGINX_PID")
    cp "$prefix/nginx.conf" "$OUT/nginx-w$workers.conf"
}

start_nginxes() {
    local i=0 w
    declare -gA NGINX_PIDS=()
    for w in "${NGINX_WORKERS[@]}"; do
        start_nginx "$w" $((NGINX_PORT + i))
        NGINX_PIDS[nginx-w$w]=$NGINX_PID
        wait_ready "$NGINX_PID" "http://127.0.0.1:$((NGINX_PORT + i))$ROUTE"
        i=$((i + 1))
    done
}

# nginx master and workers.
nginx_pids() { echo "$1" $(pgrep -P "$1"); }

# ---- Load runs --------------------------------------------------------------------------
wrk_json() {
    awk -v target="$1" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return (v + 0) * 1000
            if (v ~ /s$/) return (v + 0) * 1000000
            if (v ~ /m$/) return (v + 0) * 60000000
            return v + 0
        }
        $1 == "Latency" && NF >= 4 { max = us($4) }
        $1 == "50%" { p50 = us($2) }
        $1 == "90%" { p90 = us($2) }
        $1 == "99%" { p99 = us($2) }
        $2 == "requests" && $3 == "in" { requests = $1 }
        $1 == "Requests/sec:" { rps = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { sock = $4 + $6 + $8 + $10 }
        END {
            printf "{\"tool\":\"wrk\",\"target\":\"%s\",\"requests\":%d,\"errors\":%d,\"non_2xx\":%d,\"socket_errors\":%d,\"rps\":%s,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
                target, requests, non2xx + sock, non2xx, sock, rps + 0, p50, p90, p99, max
        }'
}

# Closed loop with wrk: prints the JSON summary and keeps wrk's own output.
run_wrk() {
    local target=$1 url=$2 tag=$3
    timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$OUT/wrk-$tag.txt"
    wrk_json "$target" <"$OUT/wrk-$tag.txt"
}

run_loadgen() {
    local target=$1
    shift
    timeout $((DURATION + 30)) "$LOADGEN" "$@" --threads "$THREADS" --duration "$DURATION" --label "$target" |
        jq -c --arg target "$target" '. + {tool: "loadgen", target: $target}'
}

warm_up() { timeout $((WARMUP + 30)) "$LOADGEN" "$1" --connections "$CONNECTIONS" --threads "$THREADS" --duration "$WARMUP" >/dev/null; }

# ---- a, b: cold start to all-ready, idle RSS --------------------------------------------
log "cold start x$COLD_RUNS (motorpool up --no-demo, fresh data dir each time; services: ${SERVICES[*]%%=*})"
for ((run = 1; run <= COLD_RUNS; run++)); do
    data=$(mktemp -d "$WORK/cold.XXXXXX")
    declare -A ready_at=()
    bg_begin
    t0=$(now_us)
    start_motorpool cold-start up --no-demo --set "data_dir=$data" "${LISTEN[@]}"
    while ((${#ready_at[@]} < ${#SERVICES[@]})); do
        kill -0 "$MP_PID" 2>/dev/null || die "motorpool exited during cold start (see $OUT/motorpool-cold-start.log)"
        (($(now_us) - t0 < 30000000)) || die "not ready 30 s after spawning"
        # A command substitution, not `< <(...)`, so curl is reaped (and its CPU counted) at once.
        polled_codes=$(http_codes "${READY_URLS[@]}")
        mapfile -t codes <<<"$polled_codes"
        polled=$((($(now_us) - t0) / 1000))
        for i in "${!SERVICES[@]}"; do
            name=${SERVICES[$i]%%=*}
            if [[ -z ${ready_at[$name]:-} && ${codes[$i]:-} == 200 ]]; then ready_at[$name]=$polled; fi
        done
        if ((${#ready_at[@]} < ${#SERVICES[@]})); then sleep 0.01; fi
    done
    bg_end
    sleep "$IDLE_SECS"
    rss=$(rss_kb "$MP_PID")
    for name in "${!ready_at[@]}"; do echo "$name ${ready_at[$name]}"; done |
        jq -Rn --argjson run "$run" --argjson rss "$rss" \
            '[inputs | split(" ") | {key: .[0], value: (.[1] | tonumber)}] | from_entries
             | {kind: "cold_start", run: $run, ready_ms: ., all_ready_ms: ([.[]] | max), idle_rss_kb: $rss}' | record
    log "  run $run: $(tail -n1 "$RESULTS" | jq -r '"all ready after \(.all_ready_ms) ms (\(.ready_ms | to_entries | map("\(.key) \(.value)") | join(", "))), idle RSS \(.idle_rss_kb) kB"')"
    unset ready_at
    stop_all
done

# ---- c, d, e: one `motorpool up`, nginx in front of its identity ------------------------
log "starting motorpool up (gateway rate limit disabled) and nginx (${NGINX_WORKERS[*]} workers)"
start_motorpool up up --no-demo --set "data_dir=$(mktemp -d "$WORK/up.XXXXXX")" "${LISTEN[@]}" --set gateway.rate_limit_enabled=false
UP_PID=$MP_PID
wait_ready "$UP_PID" "${READY_URLS[@]}"
start_nginxes
for t in "${TARGETS[@]}"; do
    [[ $(curl -sf --max-time 2 "${URL[$t]}") == "$(curl -sf --max-time 2 "${URL[direct]}")" ]] || die "$t does not serve the same body as identity"
done
jq -n --argjson rss "$(rss_kb "$UP_PID")" '{kind: "rss_before_load", rss_kb: $rss}' | record

log "closed loop: $CONNECTIONS connections, ${DURATION}s per run"
for t in "${TARGETS[@]}"; do warm_up "${URL[$t]}"; done
for tool in wrk loadgen; do
    for t in "${TARGETS[@]}"; do
        bg_begin
        if [[ $tool == wrk ]]; then
            out=$(run_wrk "$t" "${URL[$t]}" "closed-$t")
        else
            out=$(run_loadgen "$t" "${URL[$t]}" --connections "$CONNECTIONS")
        fi
        bg_end
        jq -c '. + {kind: "closed"}' <<<"$out" | record
        log "  $tool $t: $(tail -n1 "$RESULTS" | jq -r '"\(.rps) rps, p50 \(.p50_us) us, p99 \(.p99_us) us, errors \(.errors)"')"
    done
done

log "open loop: rates $RATES, ${DURATION}s per run"
for rate in $RATES; do
    for t in "${TARGETS[@]}"; do
        bg_begin
        out=$(run_loadgen "$t" "${URL[$t]}" --rate "$rate")
        bg_end
        jq -c '. + {kind: "open"}' <<<"$out" | record
        log "  $rate/s $t: $(tail -n1 "$RESULTS" | jq -r '"p50 \(.p50_us) us, p99 \(.p99_us) us, errors \(.errors), unsent \(.unsent)"')"
    done
done
jq -n --argjson rss "$(rss_kb "$UP_PID")" '{kind: "rss_after_load", rss_kb: $rss}' | record
stop_all

# ---- f: CPU per proxied request, gateway and identity in separate processes -------------
log "CPU per request: motorpool serve identity + motorpool serve gateway (static discovery)"
start_motorpool serve-identity serve identity --set "data_dir=$(mktemp -d "$WORK/identity.XXXXXX")" "${LISTEN[@]}" --set cache.backend=memory
ID_PID=$MP_PID
wait_ready "$ID_PID" "$ID/ready"
start_motorpool serve-gateway serve gateway --set "data_dir=$(mktemp -d "$WORK/gateway.XXXXXX")" "${LISTEN[@]}" \
    --set cache.backend=memory --set gateway.rate_limit_enabled=false \
    --set discovery.backend=static --set "discovery.peers.identity=[\"127.0.0.1:$IDENTITY_PORT\"]"
GW_PID=$MP_PID
wait_ready "$GW_PID" "$GW/ready" "${URL[gateway]}"
start_nginxes

# Runs one load ($2: wrk or rate) against target $1 and records the CPU the proxy process(es)
# and identity spent per request.
cpu_run() {
    local target=$1 load=$2 proxy_pids out before id_before after id_after requests
    case $target in
        direct) proxy_pids=() ;;
        gateway) proxy_pids=("$GW_PID") ;;
        *) read -ra proxy_pids <<<"$(nginx_pids "${NGINX_PIDS[$target]}")" ;;
    esac
    warm_up "${URL[$target]}"
    before=$(cpu_ticks "${proxy_pids[@]}")
    id_before=$(cpu_ticks "$ID_PID")
    bg_begin
    if [[ $load == wrk ]]; then
        out=$(run_wrk "$target" "${URL[$target]}" "cpu-$target")
    else
        out=$(run_loadgen "$target" "${URL[$target]}" --rate "$load")
    fi
    bg_end
    after=$(cpu_ticks "${proxy_pids[@]}")
    id_after=$(cpu_ticks "$ID_PID")
    requests=$(jq .requests <<<"$out")
    jq -c --arg load "$load" --argjson ticks $((after - before)) --argjson id_ticks $((id_after - id_before)) \
        --argjson hz "$CLK_TCK" --argjson procs "${#proxy_pids[@]}" \
        '{kind: "cpu", load: $load, target, tool, requests, errors, rps, p50_us, p99_us, proxy_processes: $procs,
          proxy_cpu_s: ($ticks / $hz), identity_cpu_s: ($id_ticks / $hz),
          proxy_us_per_req: (if .requests > 0 then $ticks / $hz * 1e6 / .requests else null end),
          identity_us_per_req: (if .requests > 0 then $id_ticks / $hz * 1e6 / .requests else null end)}' <<<"$out" | record
    log "  $target ($load): $(tail -n1 "$RESULTS" | jq -r '"\(.requests) requests, proxy \(if .proxy_processes > 0 then .proxy_us_per_req * 10 | round / 10 else "-" end) us/req, identity \(.identity_us_per_req * 10 | round / 10) us/req, errors \(.errors)"')"
}
for load in wrk "$CPU_RATE"; do
    for t in "${TARGETS[@]}"; do cpu_run "$t" "$load"; done
done
stop_all

# ---- Problems the servers logged --------------------------------------------------------
for f in "$OUT"/motorpool-*.log; do
    jq -n --arg file "${f##*/}" --argjson warn "$(grep -c '"level":"WARN"' "$f" || true)" --argjson error "$(grep -c '"level":"ERROR"' "$f" || true)" \
        '{kind: "log", file: $file, warn_lines: $warn, error_lines: $error}' | record
done
echo "loadavg_at_end: $(cat /proc/loadavg)" >>"$OUT/machine.txt"

"$ROOT/bench/summarize.sh" "$RESULTS" "$OUT/machine.txt" >"$OUT/summary.md"
log "done: $OUT/summary.md"
cat "$OUT/summary.md"
