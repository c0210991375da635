#!/bin/sh
# Where certgate's CPU goes under load: `perf record -g` of a certgate
# serving one of bench/compare.sh's loads with bench/loadgen.c, then the top
# symbols by self time and the split by shared object.
#   usage: sh bench/profile.sh [keepalive|new] [SECONDS] [CONNECTIONS]
#   default: keepalive 10 16 (durable scripted insert push, 200 B body;
#   BODY=BYTES another size);
#   new: a new TLS connection per push. Needs perf (linux-perf).
#   CERTGATE=path/to/certgate (default build/w/src/certgate); PERF_OUT=DIR
#   keeps perf.data there; SERVE_ARGS passes flags to certgate serve (for
#   instance "--threads 1 --script-threads 1").
# Also prints the context switches per request (voluntary and not, from
# /proc/PID/task/*/status over the recording) and the CPU split by thread:
# how much the hand-offs between threads cost.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
mode=${1:-keepalive}
secs=${2:-10}
conns=${3:-16}
certgate=${CERTGATE:-$top/build/w/src/certgate}
[ -x "$certgate" ] || { echo "profile: build certgate first ($certgate)" >&2; exit 1; }
command -v perf >/dev/null 2>&1 || { echo "profile: perf is needed (apt-get install linux-perf)" >&2; exit 1; }

pid=""
lg=""
BENCH_PIDS="lg pid"
bench_tmp prof

bench_loadgen "$top"
bench_push_setup "$certgate" "$top"
"$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
    --listen 127.0.0.1:0 --log-file "$t/certgate.log" --max-connections-per-ip 1024 \
    ${SERVE_ARGS:-} &
pid=$!
port=$(bench_port "$t/certgate.log") || { echo "profile: certgate did not start" >&2; exit 1; }

# the load runs 2 s longer than the recording, on both sides of it
"$t/loadgen" --connect "127.0.0.1:$port" --cert "$t/pki/client.pem" --key "$t/pki/client.key" \
    --ca "$t/pki/root.pem" --priority NORMAL:-GROUP-ALL:+GROUP-X25519 --expect 201 \
    -p /api/acme/inbound/records --mode "$mode" -c "$conns" -b "${BODY:-200}" -d "$((secs + 1))" \
    --warmup 1 --pids "$pid" >"$t/loadgen.out" &
lg=$!
sleep 1.5
# switches SUFFIX: every thread's name and context switches, one per line
switches() {
    for task in /proc/"$pid"/task/*; do
        printf '%s %s %s\n' "$(cat "$task/comm")" \
            "$(sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' "$task/status")" \
            "$(sed -n 's/^nonvoluntary_ctxt_switches:[[:space:]]*//p' "$task/status")"
    done >"$t/switches.$1"
}
switches before
perf record -g -o "$t/perf.data" -p "$pid" -- sleep "$secs" 2>"$t/perf.err" >/dev/null
switches after
wait "$lg" || true
lg=""
echo "load: $(cat "$t/loadgen.out")"
rps=$(tr ' ' '\n' <"$t/loadgen.out" | sed -n 's/^rps=//p')
echo
echo "context switches over the recording ($secs s), per request at $rps requests/s:"
paste "$t/switches.before" "$t/switches.after" | awk -v s="$secs" -v rps="$rps" '
    { v[$1] += $5 - $2; n[$1] += $6 - $3; tv += $5 - $2; tn += $6 - $3 }
    END {
        for (k in v) printf "  %-12s %6.2f voluntary, %5.2f involuntary\n", k, v[k] / s / rps, n[k] / s / rps
        printf "  %-12s %6.2f voluntary, %5.2f involuntary\n", "all", tv / s / rps, tn / s / rps
    }'
echo
echo "CPU by thread name (perf report --sort comm):"
perf report -i "$t/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | head -n 8
echo
echo "top 25 symbols by self time (perf report --no-children -g none --sort dso,symbol):"
perf report -i "$t/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | head -n 25
echo
echo "by shared object (perf report --no-children -g none --sort dso):"
perf report -i "$t/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | head -n 20
if [ -n "${PERF_OUT:-}" ]; then
    mkdir -p "$PERF_OUT"
    cp "$t/perf.data" "$PERF_OUT/perf.data"
    echo "perf.data kept in $PERF_OUT"
fi
