#!/usr/bin/env bash
# Turns the raw results of one bench/run.sh run into Markdown tables (stdout):
#
#     bench/summarize.sh bench/results/<run>/results.jsonl bench/results/<run>/machine.txt
#
# Only computes from what was recorded; it never measures anything itself.
set -euo pipefail

RESULTS=${1:?usage: summarize.sh results.jsonl [machine.txt]}
MACHINE=${2:-}

q() { jq -rs "$1" "$RESULTS"; }

# Shared jq helpers: median of a list, rounding, yes/no, and the background load marker.
DEFS='
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r($n): if . == null then "-" else (. * pow(10; $n) | round) / pow(10; $n) end;
def yn: if . then "**yes**" else "**NO**" end;
def bg: if .bg then "\([.bg.others_cpu_pct, 0] | max | round) %" + (if .bg.rustc_procs > 0 then " (rustc \(.bg.rustc_procs))" else "" end) else "-" end;
'

echo "# Motorpool chassis benchmark: summary"
echo
if [[ -n $MACHINE && -f $MACHINE ]]; then
    echo '```'
    cat "$MACHINE"
    echo '```'
    echo
fi

echo "## Targets"
echo
echo "| Figure | Measured | Target | Met |"
echo "| --- | --- | --- | --- |"
q "$DEFS"'
  ([.[] | select(.kind == "cold_start")]) as $cold
  | ([.[] | select(.kind == "cpu" and .target == "gateway" and .load == "wrk")][0]) as $cpu
  | ($cold | map(.all_ready_ms)) as $t
  | ($cold | map(.idle_rss_kb)) as $rss
  | "| Cold start to all-ready, median / max of \($t | length) | \($t | median) ms / \($t | max) ms | < 1500 ms | \(($t | max) < 1500 | yn) |",
    "| Idle RSS of `motorpool up` after \("ready + idle"), median / max | \($rss | median / 1024 | r(1)) MiB / \($rss | max / 1024 | r(1)) MiB (\($rss | max * 1024 / 1e6 | r(1)) MB) | < 120 MB | \((($rss | max) * 1024 / 1e6) < 120 | yn) |",
    (if $cpu then "| Gateway CPU per proxied request (closed loop, wrk) | \($cpu.proxy_us_per_req | r(1)) µs | < 12 µs | \($cpu.proxy_us_per_req < 12 | yn) |" else empty end)
'
echo
echo "\`others\` column: share of the machine's CPU (all $(nproc) cores) used outside this benchmark's processes while the figure was taken (other processes, hypervisor steal), and rustc processes seen at its end. Figures taken with a high share are less reliable."
echo

echo "## Cold start (\`motorpool up --no-demo\`, fresh data dir, every service's /ready polled every 10 ms)"
echo
echo "| Run | all ready | each service's /ready first 200 | idle RSS | others |"
echo "| --- | --- | --- | --- | --- |"
q "$DEFS"'.[] | select(.kind == "cold_start")
  | "| \(.run) | \(.all_ready_ms) ms | \(.ready_ms | to_entries | sort_by(.value) | map("\(.key) \(.value) ms") | join(", ")) | \(.idle_rss_kb / 1024 | r(1)) MiB | \(bg) |"'
q "$DEFS"'
  (.[] | select(.kind == "rss_before_load") | "\nRSS of the benchmark `motorpool up` before load: \(.rss_kb / 1024 | r(1)) MiB"),
  (.[] | select(.kind == "rss_after_load") | "RSS after all closed- and open-loop runs: \(.rss_kb / 1024 | r(1)) MiB")
'
echo

echo "## Closed loop"
echo
echo "| Target | Tool | req/s | p50 | p90 | p99 | max | requests | errors | others |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
q "$DEFS"'.[] | select(.kind == "closed") | "| \(.target) | \(.tool) | \(.rps | r(0)) | \(.p50_us) µs | \(.p90_us) µs | \(.p99_us) µs | \(.max_us) µs | \(.requests) | \(.errors) | \(bg) |"'
echo
echo "Ratios (same run, same tool):"
echo
echo "| Tool | Ratio | req/s | p50 | p99 |"
echo "| --- | --- | --- | --- | --- |"
q "$DEFS"'
  [.[] | select(.kind == "closed")] as $c
  | ($c | map(.tool) | unique[]) as $tool
  | ($c | map(select(.tool == $tool)) | map({key: .target, value: .}) | from_entries) as $by
  | ($by | keys | map(select(startswith("nginx"))) | [.[], "direct"][]) as $base
  | select($by.gateway and $by[$base])
  | "| \($tool) | gateway / \($base) | \($by.gateway.rps / $by[$base].rps | r(2)) | \($by.gateway.p50_us / $by[$base].p50_us | r(2)) | \($by.gateway.p99_us / $by[$base].p99_us | r(2)) |"
'
echo

echo "## Open loop (loadgen, fixed rate, latency from the scheduled send time)"
echo
echo "| Offered req/s | Target | achieved req/s | p50 | p90 | p99 | max | errors | unsent | send lag p99 | added p50 | added p99 | others |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
q "$DEFS"'
  [.[] | select(.kind == "open")] as $o
  | $o[]
  | . as $x
  | ($o | map(select(.target == "direct" and .target_rps == $x.target_rps))[0]) as $d
  | "| \(.target_rps) | \(.target) | \(.rps | r(0)) | \(.p50_us) µs | \(.p90_us) µs | \(.p99_us) µs | \(.max_us) µs | \(.errors) | \(.unsent) | \(.send_lag_p99_us) µs | "
    + (if .target == "direct" or $d == null then "- | - |" else "\(.p50_us - $d.p50_us) µs | \(.p99_us - $d.p99_us) µs |" end)
    + " \(bg) |"
'
echo
echo "\"added\" = this target's percentile minus the direct (identity) percentile at the same offered rate."
echo

echo "## CPU per request (identity and gateway in separate processes)"
echo
echo "| Load | Target | requests | req/s | p50 | p99 | proxy processes | proxy CPU | proxy µs/req | identity µs/req | errors | others |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
q "$DEFS"'.[] | select(.kind == "cpu")
  | "| \(if .load == "wrk" then "closed loop (wrk)" else "open loop \(.load)/s" end) | \(.target) | \(.requests) | \(.rps | r(0)) | \(.p50_us) µs | \(.p99_us) µs | \(.proxy_processes) | \(.proxy_cpu_s | r(2)) s | \(if .proxy_processes > 0 then (.proxy_us_per_req | r(2)) else "-" end) | \(.identity_us_per_req | r(2)) | \(.errors) | \(bg) |"'
echo
echo "CPU is utime + stime from /proc/PID/stat (clock ticks of 1/$(getconf CLK_TCK) s), read before and after the run; nginx = master + workers."
echo

echo "## Server logs (warn / error lines)"
echo
echo "| Log | warn | error |"
echo "| --- | --- | --- |"
q '.[] | select(.kind == "log") | "| \(.file) | \(.warn_lines) | \(.error_lines) |"'
