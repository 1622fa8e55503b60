# Helpers the benchmark scripts share; `source "$ROOT/bench/lib.sh"` (or relative to the
# script). Process accounting reads /proc, so it is Linux only.

# wait_for URL: until it answers 2xx (10 s at most), else the script stops.
wait_for() {
    for _ in $(seq 200); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "$(basename "$0"): $1 did not come up" >&2
    exit 1
}

# cpu_ticks PID...: utime + stime of the processes, in clock ticks (CLK_TCK per second); a
# process's /proc/PID/stat sums all its threads, and fields are counted after ")" because
# the command name can contain spaces.
cpu_ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        total=$((total + $(awk '{print $12 + $13}' <<<"${stat##*) }")))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# The machine's idle and iowait ticks so far: wall x cores minus their growth is the machine's
# busy time (the kernel measures idle time exactly; its busy counters are sampled at timer
# ticks and miss most of a bursty load's work).
machine_idle_ticks() { awk '$1 == "cpu" { print $5 + $6; exit }' /proc/stat; }

# own_ticks: CPU ticks of the processes in STARTED (and their children) and of this shell
# and the children it has reaped (wrk, curl, ...): subtracted from the busy time, the rest is
# what other work on the machine took.
own_ticks() {
    local pid pids=() self
    for pid in "${STARTED[@]}"; do
        if [[ -e /proc/$pid ]]; then pids+=("$pid" $(pgrep -P "$pid")); fi
    done
    self=$(<"/proc/$$/stat")
    echo $(($(cpu_ticks "${pids[@]}") + $(awk '{ print $12 + $13 + $14 + $15 }' <<<"${self##*) }")))
}

# nginx_conf DIR WORKERS HTTP_BLOCK: writes DIR/nginx.conf for an nginx run in the foreground
# with its pid, log and temp files under DIR, no access log, and keep-alive connections never
# closed after N requests (neither does the gateway); HTTP_BLOCK goes inside `http { }`
# (upstreams and servers). Start it with: nginx -p DIR -e DIR/error.log -c DIR/nginx.conf
nginx_conf() {
    local dir=$1 workers=$2 body=$3
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy; fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
$body
}
CONF
}
