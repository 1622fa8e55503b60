#!/usr/bin/env bash
# The gateway with token verification and rate limiting on, against HAProxy doing the same
# in front of the same upstream, in one run (issue 6: "target at least HAProxy's throughput
# and no worse p99").
#
# Starts, on 127.0.0.1 only:
#   - an upstream: nginx (1 worker) answering every GET with a fixed 150-byte JSON body, the
#     one process both proxies forward to, over kept-alive connections;
#   - `motorpool serve identity` (fresh data dir; one user registered, one real token from
#     login) and `motorpool serve gateway` (static discovery: identity, and the stub as the
#     `notifications` service, so GET /api/notifications/bench is an authenticated route,
#     Access::User), rate limit on with limits no load here reaches;
#   - HAProxy (Debian package, one process, nbthread = the gateway's worker threads) with
#     bench/haproxy/haproxy.cfg: jwt_verify, alg/iss/aud/exp/nbf/role checks, a stick-table
#     rate limit keyed by the token's `sub`, X-Forwarded-For and X-Request-Id added. HAProxy
#     2.6 cannot verify EdDSA, so it gets the same claims signed with ES256 (one frontend) and
#     RS256 (another).
# and, for reference, the same two proxies on a public route (no token; rate limit keyed by
# client address): `gateway-notoken` (GET /api/configure/bench, the stub standing in for the
# configurator) and `haproxy-notoken`;
# then checks that every target accepts good tokens and refuses bad ones (401) and that both
# rate limiters answer 429 when set low, and measures, in alternating rounds, wrk
# (THREADS x CONNECTIONS, --latency) against each target in two variants:
#   one   every request carries the same token (the gateway's verified-token cache hits);
#   many  each request carries the next of TOKENS tokens of as many users (a wrk thread sends
#         no token twice in a run and at most 16,384 fit the gateway's memo, so it verifies
#         most of them).
# Per run: req/s, p50, p99, errors, CPU per request of the proxy and of the upstream (utime +
# stime from /proc), and the share of the machine used by anything else (`others`).
#
#   BIN=/path/to/motorpool bench/haproxy.sh
#   ROUNDS=5 DUR=10 VARIANTS=many bench/haproxy.sh
#   BASE_BIN=/path/to/older/motorpool bench/haproxy.sh   # adds target gateway-base: the same
#       gateway set-up from another build, in the same rounds (an A/B of a gateway change)
#   PACED_RATES="10000 18000" bench/haproxy.sh   # then also every token target at each of these
#       offered rates (open loop, motorpool-loadgen, a new user's token per request), so the
#       tails compare at one load rather than at each proxy's own closed-loop throughput
#
# Needs bash, curl, wrk, haproxy, nginx, openssl, ss (iproute2) and python3 with `cryptography`
# (Debian: python3-cryptography). Results: $OUT (bench/results/haproxy-<UTC time>/,
# git-ignored): results.tsv, summary.md, the wrk outputs and the configs used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/bench/haproxy
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/motorpool}
DUR=${DUR:-6}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
NPROC=$(nproc)
PROXY_THREADS=${PROXY_THREADS:-$NPROC}
TOKENS=${TOKENS:-200000}
RS_TOKENS=${RS_TOKENS:-20000}
VARIANTS=${VARIANTS:-one many}
BASE_BIN=${BASE_BIN:-}
PACED_RATES=${PACED_RATES:-}
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/motorpool-loadgen}
TARGETS=${TARGETS:-gateway ${BASE_BIN:+gateway-base }haproxy-es256 haproxy-rs256 gateway-notoken haproxy-notoken}
RATE=${RATE:-1000000}
PORT_BASE=${PORT_BASE:-28500}
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
OUT=${OUT:-$ROOT/bench/results/haproxy-$(date -u +%Y%m%dT%H%M%SZ)}
ROUTE=/api/notifications/bench
PUBLIC_ROUTE=/api/configure/bench

GW_PORT=$PORT_BASE ID_PORT=$((PORT_BASE + 1)) UP_PORT=$((PORT_BASE + 2))
HAP_ES_PORT=$((PORT_BASE + 3)) HAP_RS_PORT=$((PORT_BASE + 4))
CHK_GW_PORT=$((PORT_BASE + 5)) CHK_ES_PORT=$((PORT_BASE + 6)) CHK_RS_PORT=$((PORT_BASE + 7))
HAP_PLAIN_PORT=$((PORT_BASE + 8)) CHK_PLAIN_PORT=$((PORT_BASE + 9)) BASE_GW_PORT=$((PORT_BASE + 10))

die() { echo "haproxy.sh: $*" >&2; exit 1; }
[[ -x $BIN ]] || die "no binary at $BIN (cargo build --release -p motorpool, or BIN=...)"
for tool in curl wrk openssl python3 timeout pgrep ss; do command -v "$tool" >/dev/null || die "needs $tool"; done
[[ -x $NGINX ]] || die "needs nginx at $NGINX (Debian: nginx-light)"
[[ -x $HAPROXY ]] || die "needs haproxy at $HAPROXY (Debian: haproxy)"
[[ -z $PACED_RATES || -x $LOADGEN ]] || die "PACED_RATES needs $LOADGEN (cargo build --release -p motorpool-loadgen, or LOADGEN=...)"
python3 -c 'import cryptography' 2>/dev/null || die "needs python3's cryptography (Debian: python3-cryptography)"
for port in $(seq "$PORT_BASE" $((PORT_BASE + 9))); do
    [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]] || die "port $port is taken (PORT_BASE=... moves them all)"
done
[[ ! -e $OUT/results.tsv ]] || die "$OUT already holds results"
# The gateway remembers up to 16,384 verified tokens: with fewer, `many` measures its memo.
((TOKENS > 100000)) || echo "haproxy.sh: TOKENS=$TOKENS: the gateway will find most of them in its memo of 16,384 verified tokens; use more than 100,000 to measure verification" >&2
mkdir -p "$OUT"

WORK=$(mktemp -d)
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
now_us() { echo $(($(date +%s%N) / 1000)); }

# ---- The upstream: one nginx worker with a fixed answer -----------------------------------
nginx_conf "$WORK/nginx" 1 "    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / {
            default_type application/json;
            return 200 '{\"items\":[{\"id\":\"0190a5e1-7c2b-7d3e-8f40-1a2b3c4d5e6f\",\"kind\":\"order_status\",\"title\":\"Your order is being built\",\"read\":false}],\"next\":null}';
        }
    }"
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
UP_PID=$!
STARTED+=("$UP_PID")
wait_for "http://127.0.0.1:$UP_PORT/ready"

# ---- identity and the gateway ---------------------------------------------------------------
COMMON=(--set "listen.identity=127.0.0.1:$ID_PORT" --set log.level=warn --set cache.backend=memory --set "worker_threads=$PROXY_THREADS")
"$BIN" serve identity --set "data_dir=$WORK/identity" "${COMMON[@]}" 2>"$OUT/identity.log" &
ID_PID=$!
STARTED+=("$ID_PID")
wait_for "http://127.0.0.1:$ID_PORT/ready"

# start_gateway PORT PER_SEC BURST [BINARY]: the pid is left in LAST_PID.
start_gateway() {
    "${4:-$BIN}" serve gateway --set "data_dir=$WORK/gateway-$1" "${COMMON[@]}" --set "listen.gateway=127.0.0.1:$1" \
        --set gateway.rate_limit_enabled=true --set "gateway.rate_limit_per_sec=$2" --set "gateway.rate_limit_burst=$3" \
        --set discovery.backend=static --set "discovery.peers.identity=[\"127.0.0.1:$ID_PORT\"]" \
        --set "discovery.peers.notifications=[\"127.0.0.1:$UP_PORT\"]" \
        --set "discovery.peers.configurator=[\"127.0.0.1:$UP_PORT\"]" >/dev/null 2>>"$OUT/gateway.log" &
    LAST_PID=$!
}
start_gateway "$GW_PORT" "$RATE" "$RATE"
GW_PID=$LAST_PID
STARTED+=("$GW_PID")
wait_for "http://127.0.0.1:$GW_PORT/ready"
if [[ -n $BASE_BIN ]]; then
    [[ -x $BASE_BIN ]] || die "no binary at BASE_BIN=$BASE_BIN"
    start_gateway "$BASE_GW_PORT" "$RATE" "$RATE" "$BASE_BIN"
    BASE_GW_PID=$LAST_PID
    STARTED+=("$BASE_GW_PID")
    wait_for "http://127.0.0.1:$BASE_GW_PORT/ready"
fi

# One user, one real access token (EdDSA, signed by identity).
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
USER_BODY='{"email":"bench@example.com","password":"bench-password-123","fullName":"Bench User"}'
curl -sf -o /dev/null -H 'content-type: application/json' -d "$USER_BODY" "http://127.0.0.1:$ID_PORT/api/auth/register" ||
    die "register failed"
TOKEN=$(curl -sf -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"bench-password-123"}' \
    "http://127.0.0.1:$ID_PORT/api/auth/login" | json_field accessToken) || die "login failed"

# ---- Keys and tokens ------------------------------------------------------------------------
KEYS=$WORK/keys
mkdir -p "$KEYS"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEYS/es256.key" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/rs256.key" 2>/dev/null
openssl pkey -in "$KEYS/es256.key" -pubout -out "$KEYS/es256.pub"
openssl pkey -in "$KEYS/rs256.key" -pubout -out "$KEYS/rs256.pub"
echo "minting tokens: $TOKENS users (EdDSA, ES256), $RS_TOKENS (RS256)" >&2
t0=$(now_us)
python3 "$HERE/tokens.py" "$WORK" "$TOKEN" "$WORK/identity/identity.sqlite" "$TOKENS" "$RS_TOKENS" "$KEYS/es256.key" "$KEYS/rs256.key"
echo "  done in $((($(now_us) - t0) / 1000)) ms" >&2

# ---- HAProxy --------------------------------------------------------------------------------
# start_haproxy ES_PORT RS_PORT PLAIN_PORT RATE_LIMIT SOCKET: the pid is left in LAST_PID.
start_haproxy() {
    HAP_THREADS=$PROXY_THREADS HAP_ES_PORT=$1 HAP_RS_PORT=$2 HAP_PLAIN_PORT=$3 UP_PORT=$UP_PORT KEYS=$KEYS RATE_LIMIT=$4 \
        RATE_TABLE_SIZE=100000 STATS_SOCK=$5 "$HAPROXY" -db -f "$HERE/haproxy.cfg" >/dev/null 2>>"$OUT/haproxy.log" &
    LAST_PID=$!
}
start_haproxy "$HAP_ES_PORT" "$HAP_RS_PORT" "$HAP_PLAIN_PORT" "$RATE" "$WORK/haproxy.sock"
HAP_PID=$LAST_PID
STARTED+=("$HAP_PID")
wait_401() { # HAProxy answers 401 to a request without a token once it listens
    for _ in $(seq 200); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1") == 401 ]] && return 0
        sleep 0.05
    done
    die "$1 did not come up"
}
wait_401 "http://127.0.0.1:$HAP_ES_PORT$ROUTE"
wait_401 "http://127.0.0.1:$HAP_RS_PORT$ROUTE"

url_of() {
    case $1 in
        gateway) echo "http://127.0.0.1:$GW_PORT$ROUTE" ;;
        gateway-base) echo "http://127.0.0.1:$BASE_GW_PORT$ROUTE" ;;
        haproxy-es256) echo "http://127.0.0.1:$HAP_ES_PORT$ROUTE" ;;
        haproxy-rs256) echo "http://127.0.0.1:$HAP_RS_PORT$ROUTE" ;;
        gateway-notoken) echo "http://127.0.0.1:$GW_PORT$PUBLIC_ROUTE" ;;
        haproxy-notoken) echo "http://127.0.0.1:$HAP_PLAIN_PORT$PUBLIC_ROUTE" ;;
    esac
}
alg_of() {
    case $1 in gateway*) echo eddsa ;; haproxy-es256 | haproxy-notoken) echo es256 ;; haproxy-rs256) echo rs256 ;; esac
}
pids_of() {
    case $1 in gateway-base) echo "$BASE_GW_PID" ;; gateway*) echo "$GW_PID" ;; haproxy-*) echo "$HAP_PID" ;; esac
}
status() { # status URL [TOKEN]
    if [[ -n ${2:-} ]]; then
        curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$1"
    else
        curl -s -o /dev/null -w '%{http_code}' "$1"
    fi
}

# ---- Checks: good tokens pass, bad ones are refused, the limiters limit ---------------------
{
    echo "# Admission checks"
    echo
    echo "| Target | good (one) | good (many, first) | no token | expired | tampered sub | alg none | other proxy's alg |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$OUT/checks.md"
failed=0
for target in $TARGETS; do
    [[ $target == *-notoken ]] && continue
    url=$(url_of "$target") alg=$(alg_of "$target")
    other=$([[ $alg == es256 ]] && echo rs256 || echo es256)
    got=("$(status "$url" "$(<"$WORK/one.$alg")")" "$(status "$url" "$(head -1 "$WORK/many.$alg")")" "$(status "$url")"
        "$(status "$url" "$(<"$WORK/bad.$alg.expired")")" "$(status "$url" "$(<"$WORK/bad.$alg.tampered")")"
        "$(status "$url" "$(<"$WORK/bad.none")")" "$(status "$url" "$(<"$WORK/one.$other")")")
    want=(200 200 401 401 401 401 401)
    row="| $target |"
    for g in "${got[@]}"; do row+=" $g |"; done
    echo "$row" >>"$OUT/checks.md"
    [[ ${got[*]} == "${want[*]}" ]] || { echo "$target: got ${got[*]}, want ${want[*]}" >&2; failed=1; }
done
# A gateway and a HAProxy with low limits (5/s, burst 10; rate over 1 s above 10): 30 quick
# requests of one user must see 429s after about 10.
start_gateway "$CHK_GW_PORT" 5 10
CHK_GW_PID=$LAST_PID
STARTED+=("$CHK_GW_PID")
start_haproxy "$CHK_ES_PORT" "$CHK_RS_PORT" "$CHK_PLAIN_PORT" 10 "$WORK/haproxy-check.sock"
CHK_HAP_PID=$LAST_PID
STARTED+=("$CHK_HAP_PID")
wait_for "http://127.0.0.1:$CHK_GW_PORT/ready"
wait_401 "http://127.0.0.1:$CHK_ES_PORT$ROUTE"
burst() { # burst URL TOKEN: status counts of 30 requests on one connection
    local args=() i
    for i in $(seq 30); do args+=(-o /dev/null "$1"); done
    curl -s -w '%{http_code}\n' -H "Authorization: Bearer $2" "${args[@]}" | sort | uniq -c | awk '{printf "%s%s x %s", sep, $2, $1; sep=", "}'
}
{
    echo
    echo "Rate limit check, 30 requests of one user in a row with low limits (gateway 5/s burst 10; HAProxy http_req_rate(1s) > 10):"
    echo
    echo "- gateway: $(burst "http://127.0.0.1:$CHK_GW_PORT$ROUTE" "$(<"$WORK/one.eddsa")")"
    echo "- haproxy-es256: $(burst "http://127.0.0.1:$CHK_ES_PORT$ROUTE" "$(<"$WORK/one.es256")")"
    echo "- haproxy-notoken (by client address): $(burst "http://127.0.0.1:$CHK_PLAIN_PORT$PUBLIC_ROUTE" "")"
    echo
    echo "Without a token, the reference targets' public route: gateway-notoken $(status "http://127.0.0.1:$GW_PORT$PUBLIC_ROUTE"), haproxy-notoken $(status "http://127.0.0.1:$HAP_PLAIN_PORT$PUBLIC_ROUTE")."
} >>"$OUT/checks.md"
kill "$CHK_GW_PID" "$CHK_HAP_PID"
wait "$CHK_GW_PID" "$CHK_HAP_PID" 2>/dev/null || true
STARTED=("$UP_PID" "$ID_PID" "$GW_PID" "$HAP_PID" ${BASE_GW_PID:+"$BASE_GW_PID"})
grep -q '429 x' <<<"$(sed -n '/^- gateway/p' "$OUT/checks.md")" || { echo "the gateway's rate limit did not limit" >&2; failed=1; }
grep -q '429 x' <<<"$(sed -n '/^- haproxy-es256/p' "$OUT/checks.md")" || { echo "HAProxy's rate limit did not limit" >&2; failed=1; }
grep -q 'gateway-notoken 200, haproxy-notoken 200' "$OUT/checks.md" || { echo "the public route does not answer 200" >&2; failed=1; }
cat "$OUT/checks.md" >&2
((failed == 0)) || die "admission checks failed (see above)"

# ---- One signature verification, by algorithm (OpenSSL, one core, servers idle) ------------------
# What HAProxy's jwt_verify calls; the gateway verifies Ed25519 with curve25519-dalek instead
# (not measurable from here: see bench/REPORT.md for its share of a profile).
openssl speed -seconds 1 ed25519 ecdsap256 rsa2048 2>/dev/null | grep -E 'sign|rsa|ecdsa|EdDSA' >"$OUT/openssl-speed.txt" || true

# ---- Measurement ------------------------------------------------------------------------------
# wrk's arguments as an array (the header holds a space, so no word splitting).
wrk_cmd() { # wrk_cmd VARIANT TARGET -> sets WRK_ARGS
    local alg
    alg=$(alg_of "$2")
    if [[ $1 == one ]]; then
        WRK_ARGS=(-H "Authorization: Bearer $(<"$WORK/one.$alg")" "$(url_of "$2")")
    else
        WRK_ARGS=(-s "$HERE/tokens.lua" "$(url_of "$2")" -- "$WORK/many.$alg" "$THREADS")
    fi
}

# wrk's "50%  713.00us" -> microseconds.
to_us() { awk '{ v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v); m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : 0; printf "%.0f", v * m }'; }

printf 'variant\tround\ttarget\trps\trequests\tp50_us\tp99_us\terrors\tproxy_cpu_s\tproxy_us_per_req\tupstream_us_per_req\tidentity_cpu_s\tothers_pct\trustc\n' >"$OUT/results.tsv"
measure() { # measure VARIANT ROUND TARGET
    local variant=$1 round=$2 target=$3 file p0 p1 u0 u1 i0 i1 idle0 idle1 own0 own1 t0 t1 out
    file="$OUT/wrk-$variant-$round-$target.txt"
    local proxy_pids upstream_pids
    read -ra proxy_pids <<<"$(pids_of "$target")"
    upstream_pids=("$UP_PID" $(pgrep -P "$UP_PID"))
    wrk_cmd "$variant" "$target"
    t0=$(now_us) idle0=$(machine_idle_ticks) own0=$(own_ticks)
    p0=$(cpu_ticks "${proxy_pids[@]}") u0=$(cpu_ticks "${upstream_pids[@]}") i0=$(cpu_ticks "$ID_PID")
    timeout $((DUR + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DUR}s" --latency "${WRK_ARGS[@]}" >"$file" 2>&1
    p1=$(cpu_ticks "${proxy_pids[@]}") u1=$(cpu_ticks "${upstream_pids[@]}") i1=$(cpu_ticks "$ID_PID")
    t1=$(now_us) idle1=$(machine_idle_ticks) own1=$(own_ticks)
    out=$(<"$file")
    local requests rps p50 p99 errors
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    p50=$(grep -E '^ +50%' <<<"$out" | to_us)
    p99=$(grep -E '^ +99%' <<<"$out" | to_us)
    errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i} END {print n + 0}' <<<"$out")
    awk -v OFS='\t' -v v="$variant" -v r="$round" -v t="$target" -v rps="$rps" -v q="$requests" -v p50="$p50" -v p99="$p99" -v e="$errors" \
        -v pt=$((p1 - p0)) -v ut=$((u1 - u0)) -v it=$((i1 - i0)) -v hz="$CLK_TCK" -v n="$NPROC" \
        -v us=$((t1 - t0)) -v idle=$((idle1 - idle0)) -v own=$((own1 - own0)) -v rustc="$(pgrep -c -x rustc || true)" \
        'BEGIN { cap = us / 1e6 * hz * n;
                 print v, r, t, rps, q, p50, p99, e, pt / hz, sprintf("%.2f", pt / hz * 1e6 / q), sprintf("%.2f", ut / hz * 1e6 / q),
                       it / hz, sprintf("%.0f", (cap - idle - own) / cap * 100), rustc }' >>"$OUT/results.tsv"
    tail -1 "$OUT/results.tsv" | awk -F'\t' '{ printf "%-5s r%s %-14s %7d req/s  p50 %6d us  p99 %6d us  proxy %6.2f us/req  upstream %5.2f us/req  errors %s  others %s%%\n", $1, $2, $3, $4, $6, $7, $10, $11, $8, $13 }' >&2
}

read -ra TARGET_LIST <<<"$TARGETS"
for variant in $VARIANTS; do
    targets=()
    for target in "${TARGET_LIST[@]}"; do
        # Without a token, one variant is enough.
        [[ $variant != one && $target == *-notoken ]] && continue
        targets+=("$target")
    done
    for target in "${targets[@]}"; do
        wrk_cmd "$variant" "$target"
        timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${WRK_ARGS[@]}" >/dev/null 2>&1
    done
    for round in $(seq "$ROUNDS"); do
        # Each round starts with another target, so none always runs first.
        n=${#targets[@]}
        for i in $(seq 0 $((n - 1))); do
            measure "$variant" "$round" "${targets[$(((i + round - 1) % n))]}"
        done
    done
done

# ---- Paced: each token target at one offered rate, a new user's token per request ----------
if [[ -n $PACED_RATES ]]; then
    paced_targets=()
    for target in "${TARGET_LIST[@]}"; do [[ $target == *-notoken ]] || paced_targets+=("$target"); done
    for rate in $PACED_RATES; do
        for round in $(seq "$ROUNDS"); do
            n=${#paced_targets[@]}
            for i in $(seq 0 $((n - 1))); do
                target=${paced_targets[$(((i + round - 1) % n))]}
                timeout $((DUR + 30)) "$LOADGEN" "$(url_of "$target")" --rate "$rate" --duration "$DUR" --threads "$THREADS" \
                    --bearer-file "$WORK/many.$(alg_of "$target")" --label "$rate $round $target" >>"$OUT/paced.jsonl"
                tail -1 "$OUT/paced.jsonl" | python3 -c 'import json, sys; r = json.load(sys.stdin); print("paced %-26s %8.0f req/s  p50 %6d us  p99 %6d us  errors %d  unsent %d" % (r["label"], r["rps"], r["p50_us"], r["p99_us"], r["errors"], r["unsent"]))' >&2
            done
        done
    done
fi

# HAProxy's stick table after the load: one entry per user seen (bookkeeping really done).
python3 - "$WORK/haproxy.sock" >"$OUT/haproxy-table.txt" <<'PY' || true
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show table rate_per_user data.http_req_rate gt 1000000000\n")
print(s.makefile().readline().strip())
PY

# How many of the gateway's signature checks went in batches (0 on builds before batching).
curl -s "http://127.0.0.1:$GW_PORT/metrics" | grep -E '^auth_signature' >"$OUT/gateway-batches.txt" || true

cp "$HERE/haproxy.cfg" "$OUT/"
cp "$WORK/nginx/nginx.conf" "$OUT/upstream-nginx.conf"
{
    echo "binary: $BIN ($(sha256sum "$BIN" | cut -c1-16)…)"
    [[ -z $BASE_BIN ]] || echo "base binary (gateway-base): $BASE_BIN ($(sha256sum "$BASE_BIN" | cut -c1-16)…)"
    echo "haproxy: $("$HAPROXY" -v | head -1)"
    echo "nginx: $("$NGINX" -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "openssl: $(openssl version)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $NPROC"
    echo "kernel: $(uname -r)"
    echo "settings: DUR=$DUR WARMUP=$WARMUP ROUNDS=$ROUNDS THREADS=$THREADS CONNECTIONS=$CONNECTIONS PROXY_THREADS=$PROXY_THREADS TOKENS=$TOKENS RS_TOKENS=$RS_TOKENS RATE=$RATE"
} >"$OUT/env.txt"
python3 "$HERE/summarize.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
