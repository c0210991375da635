#!/bin/sh
# Where an idle connection's memory goes: certgate under jemalloc's heap
# profiler, N connections opened that each carry one durable push and then
# stay idle (bench/loadgen.c --mode idle), a heap profile dumped before and
# after them, and jeprof's difference by allocating function.
#   usage: sh bench/heap.sh [N]   (default 2000)
#   CERTGATE=path/to/certgate (default build/w/src/certgate); needs gdb and
#   jeprof (libjemalloc-dev), and certgate linked with jemalloc (configure
#   does when it finds it). Sampling every 1 KiB (lg_prof_sample:10): the
#   totals are estimates within a few percent.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
n=${1:-2000}
certgate=${CERTGATE:-$top/build/w/src/certgate}
[ -x "$certgate" ] || { echo "heap: build certgate first ($certgate)" >&2; exit 1; }
for tool in gdb jeprof; do
    command -v "$tool" >/dev/null 2>&1 || { echo "heap: $tool is needed" >&2; exit 1; }
done
ldd "$certgate" | grep -q jemalloc || { echo "heap: $certgate is not linked with jemalloc" >&2; exit 1; }

pid=""
lg=""
BENCH_PIDS="lg pid"
bench_tmp heap

bench_loadgen "$top"
bench_push_setup "$certgate" "$top"
MALLOC_CONF="prof:true,prof_active:true,lg_prof_sample:10,prof_prefix:$t/jeprof" \
    "$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
    --listen 127.0.0.1:0 --log-file "$t/certgate.log" --max-connections-per-ip "$((n + 10))" \
    --max-connections "$((n + 10))" --idle-timeout 3600 &
pid=$!
port=$(bench_port "$t/certgate.log") || { echo "heap: certgate did not start" >&2; exit 1; }
dump() { gdb -p "$pid" -batch -ex 'call (int)mallctl("prof.dump", 0, 0, 0, 0)' >/dev/null 2>&1; }
sleep 1
dump
rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
"$t/loadgen" --connect "127.0.0.1:$port" --cert "$t/pki/client.pem" --key "$t/pki/client.key" \
    --ca "$t/pki/root.pem" --priority NORMAL:-GROUP-ALL:+GROUP-X25519 --expect 201 \
    -p /api/acme/inbound/records --mode idle -c "$n" -d 3600 -b 200 >"$t/idle.out" &
lg=$!
for _ in $(seq 1 1200); do
    grep -q idle_ready "$t/idle.out" && break
    sleep 0.25
done
grep -q idle_ready "$t/idle.out" || { echo "heap: the idle connections did not come up" >&2; exit 1; }
sleep 1
dump
rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
set -- "$t"/jeprof.*.heap
[ $# -ge 2 ] || { echo "heap: no heap profiles were written" >&2; exit 1; }
echo "$n idle connections: RSS $rss0 -> $rss1 kB ($(((rss1 - rss0) / n)) kB each)"
echo "heap allocated since they opened, by function (jeprof --base; libmicrohttpd's own"
echo "functions are not exported, so its allocations carry a neighbouring exported name):"
jeprof --text --base="$1" "$certgate" "$2" 2>/dev/null | sed -n '1,25p'
