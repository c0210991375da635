#!/bin/sh
# certgate against nginx with the same PKI (ECDSA P-256), the same client
# certificate and the same load generator (bench/loadgen.c, GnuTLS), on this
# machine, in interleaved repetitions:
#   certgate: POST /api/acme/inbound/records through contrib/scripts/push.lua
#             (one durable insert each, --durability full unless DURABILITY)
#   nginx:    ssl_verify_client on with the same CA chain, `return 201` of a
#             static JSON body (nginx-light is enough)
# Figures (-f, any of these letters; default abcde):
#   a  new TLS connection + 1 POST, 8 clients
#   b  keep-alive POST, 16 connections
#   c  push latency with 10,000 idle TLS connections open vs none:
#      keep-alive POST on 1 connection, and new connection + POST, 1 client
#   d  RSS with 10,000 idle TLS connections (nginx: master + workers)
#   e  keep-alive POST, connections 1/16/64/256 x body 200 B/4 KiB/64 KiB
#   r  resumed TLS session (ticket) + 1 POST, 8 clients (if the server
#      offers no tickets, the line says so)
# Each run reports requests/s, the ratio certgate/nginx (taken per
# repetition, then the median) and the server's CPU time per request
# (utime + stime of all its threads over the measured window, from
# /proc/PID/stat; nginx: master + workers).
# Writes OUT.md (a Markdown table), OUT.svg (gnuplot: requests/s against
# connections for both servers), OUT.raw (every loadgen line).
#   usage: sh bench/compare.sh [-s SECS] [-r REPS] [-f FIGURES] [-i IDLE] [-o OUT.md]
#   defaults: 10 s per run, 3 repetitions, abcde, 10000 idle connections,
#   bench/results/compare-DATE.md
#   CERTGATE=path/to/certgate (default build/w/src/certgate);
#   LOADGEN_ARGS: extra loadgen options (e.g. -t 2)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
command_line="${CERTGATE:+CERTGATE=$CERTGATE }${DURABILITY:+DURABILITY=$DURABILITY }${SERVE_ARGS:+SERVE_ARGS=\"$SERVE_ARGS\" }${LOADGEN_ARGS:+LOADGEN_ARGS=\"$LOADGEN_ARGS\" }sh bench/compare.sh $*"
secs=10
reps=3
figs=abcde
idle=10000
out=$top/bench/results/compare-$(date +%Y%m%d-%H%M%S).md
while getopts s:r:f:i:o: o; do
    case $o in
    s) secs=$OPTARG ;;
    r) reps=$OPTARG ;;
    f) figs=$OPTARG ;;
    i) idle=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n 's/^#   usage: //p' "$0" >&2; exit 2 ;;
    esac
done
has() { case $figs in *"$1"*) return 0 ;; esac; return 1; }

certgate=${CERTGATE:-$top/build/w/src/certgate}
[ -x "$certgate" ] || { echo "compare: build certgate first ($certgate)" >&2; exit 1; }
for tool in nginx cc pkg-config sqlite3; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "compare: $tool is needed (apt-get install nginx-light gcc pkg-config libgnutls28-dev sqlite3)" >&2; exit 1; }
done
command -v gnuplot >/dev/null 2>&1 || { echo "compare: no gnuplot, no SVG (apt-get install gnuplot-nox)" >&2; }

# Both servers and the idle holder need a descriptor per connection
# (dash and bash both have ulimit -n and -H).
# shellcheck disable=SC3045
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle + 1000)) ]; then
    echo "compare: ulimit -n is $(ulimit -n), $((idle + 1000)) needed for $idle idle connections" >&2
    exit 1
fi

cg_pid=""
ng_pid=""
idle_pid=""
BENCH_PIDS="idle_pid cg_pid ng_pid"
bench_tmp compare

# The load generator: built here, not by the project's build.
bench_loadgen "$top"

mkdir -p "$(dirname "$out")"
base=${out%.md}
raw=$base.raw
: >"$raw"

bench_push_setup "$certgate" "$top"
# shellcheck disable=SC2086 # SERVE_ARGS are words
"$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
    --listen 127.0.0.1:0 --durability "${DURABILITY:-full}" --log-file "$t/certgate.log" \
    --max-connections $((idle + 2000)) --max-connections-per-ip $((idle + 2000)) \
    --idle-timeout 3600 ${SERVE_ARGS:-} &
cg_pid=$!
cg_port=$(bench_port "$t/certgate.log") || { echo "compare: certgate did not start" >&2; exit 1; }

# A free port for nginx (other servers may run on this machine).
ng_port=$((20000 + $$ % 20000))
while ss -Htln "sport = :$ng_port" | grep -q .; do
    ng_port=$((ng_port + 1))
done
mkdir -p "$t/nginx"
cat >"$t/nginx/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $((idle + 4000));
error_log $t/nginx/error.log;
pid $t/nginx/nginx.pid;
events { worker_connections $((idle + 2000)); }
http {
    access_log off;
    client_body_temp_path $t/nginx;
    proxy_temp_path $t/nginx;
    fastcgi_temp_path $t/nginx;
    uwsgi_temp_path $t/nginx;
    scgi_temp_path $t/nginx;
    keepalive_requests 100000000;
    keepalive_timeout 3600s;
    server {
        listen 127.0.0.1:$ng_port ssl;
        ssl_certificate $t/pki/server-fullchain.pem;
        ssl_certificate_key $t/pki/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate $t/pki/chain.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / {
            default_type application/json;
            return 201 '{"result":{"sys_id":"00000000000000000000000000000000","name":"bench"}}';
        }
    }
}
CONF
nginx -c "$t/nginx/nginx.conf" -g 'daemon off;' &
ng_pid=$!
sleep 1
kill -0 "$ng_pid" 2>/dev/null || { echo "compare: nginx did not start" >&2; cat "$t/nginx/error.log" >&2; exit 1; }

# pids SERVER: the processes whose CPU and memory count.
pids() {
    if [ "$1" = certgate ]; then
        echo "$cg_pid"
    else
        echo "$ng_pid $(pgrep -P "$ng_pid" | tr '\n' ' ')"
    fi
}
port() { if [ "$1" = certgate ]; then echo "$cg_port"; else echo "$ng_port"; fi; }
path() { if [ "$1" = certgate ]; then echo /api/acme/inbound/records; else echo /; fi; }

# The client offers X25519 only, so that both servers run the same key
# exchange (left alone, GnuTLS and OpenSSL settle on different groups).
prio=${PRIORITY:-NORMAL:-GROUP-ALL:+GROUP-X25519}

# lg SERVER ARGS...: one loadgen run against SERVER.
lg() {
    srv=$1
    shift
    # shellcheck disable=SC2086 # LOADGEN_ARGS are words
    "$t/loadgen" --connect "127.0.0.1:$(port "$srv")" --cert "$t/pki/client.pem" \
        --key "$t/pki/client.key" --ca "$t/pki/root.pem" --priority "$prio" --expect 201 \
        -p "$(path "$srv")" --pids "$(pids "$srv" | tr -s ' ' ',' | sed 's/,$//')" \
        ${LOADGEN_ARGS:-} "$@" || true
}

rows() { sqlite3 "$CERTGATE_DB" "SELECT count(*) FROM u_inbound"; }

# run TAG SERVER ARGS...: a measured run, recorded as "TAG srv=SERVER rep=N ...".
# For certgate, checks that every 201 is a committed row (at most one
# request per connection may be committed but unanswered when the run stops).
run() {
    tag=$1
    srv=$2
    shift 2
    [ "$srv" = certgate ] && r0=$(rows)
    line=$(lg "$srv" "$@")
    if [ "$srv" = certgate ]; then
        r1=$(rows)
        all=$(echo "$line" | sed -n 's/.* all_ok=\([0-9]*\).*/\1/p')
        c=$(echo "$line" | sed -n 's/.* conns=\([0-9]*\).*/\1/p')
        d=$((r1 - r0 - ${all:-0}))
        line="$line rows_minus_201=$d"
        if [ "$d" -lt 0 ] || [ "$d" -gt "${c:-0}" ]; then
            echo "compare: $tag: $((r1 - r0)) rows committed for ${all:-0} answers 201" >&2
            line="$line ROWS_MISMATCH"
        fi
    fi
    echo "$tag srv=$srv rep=$rep $line" >>"$raw"
    echo "$tag srv=$srv rep=$rep $line" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "  %-22s %-8s rep %s: %7s req/s  p50 %6s us  server %7s us/req  client cpu %s%%  errors %s\n",
            $1, v["srv"], v["rep"], v["rps"], v["p50_us"], v["server_cpu_us_per_req"],
            v["client_cpu_pct"], v["errors"] }'
}

# rss SERVER: VmRSS (kB) summed over its processes; PSS likewise.
rss() {
    r=0
    p=0
    for q in $(pids "$1"); do
        r=$((r + $(awk '/^VmRSS:/ { print $2 }' "/proc/$q/status")))
        p=$((p + $(awk '/^Pss:/ { print $2 }' "/proc/$q/smaps_rollup")))
    done
    echo "$r $p"
}

# idle_open SERVER: hold $idle TLS connections (one request each) open.
idle_open() {
    : >"$t/idle.out"
    # shellcheck disable=SC2086
    "$t/loadgen" --connect "127.0.0.1:$(port "$1")" --cert "$t/pki/client.pem" \
        --key "$t/pki/client.key" --ca "$t/pki/root.pem" --priority "$prio" --expect 201 \
        -p "$(path "$1")" --mode idle -c "$idle" -d 3600 -b 200 >"$t/idle.out" &
    idle_pid=$!
    for _ in $(seq 1 1200); do
        grep -q idle_ready "$t/idle.out" && break
        sleep 0.25
    done
    idle_up=$(sed -n 's/^idle_ready=\([0-9]*\).*/\1/p' "$t/idle.out")
    idle_failed=$(sed -n 's/^idle_ready=.* failed=\([0-9]*\).*/\1/p' "$t/idle.out")
}

idle_close() {
    kill "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    idle_pid=""
    sleep 3 # the server notices the closes
}

cg_version=$("$certgate" --version 2>/dev/null | head -n 1)
{
    echo "# \`$command_line\` ($secs s per run, $reps repetitions, figures $figs), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), load generator on the same cores; $cg_version --durability ${DURABILITY:-full}; $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(nginx -V 2>&1 | grep -o 'OpenSSL [0-9.]*' | head -n 1); TLS 1.3, ECDSA P-256 certificates, X25519 key exchange"
    echo "#=idle=$idle"
} >>"$raw"
echo "certgate pid $cg_pid port $cg_port; nginx pids $(pids nginx) port $ng_port;" \
    "$secs s per run, $reps repetitions, figures $figs"
echo "raw results: $raw"
rep=1
while [ "$rep" -le "$reps" ]; do
    # alternate which server goes first
    if [ $((rep % 2)) = 1 ]; then order="certgate nginx"; else order="nginx certgate"; fi
    echo "repetition $rep ($order first)"
    if has a; then
        for s in $order; do run fig=a "$s" --mode new -c 8 -d "$secs" -b 200; done
    fi
    if has r; then
        for s in $order; do run fig=r "$s" --mode resumed -c 8 -d "$secs" -b 200; done
    fi
    if has b; then
        for s in $order; do run fig=b "$s" -c 16 -d "$secs" -b 200; done
    fi
    if has e; then
        for b in 200 4096 65536; do
            for c in 1 16 64 256; do
                for s in $order; do run "fig=e,c$c,b$b" "$s" -c "$c" -d "$secs" -b "$b"; done
            done
        done
    fi
    if has c || has d; then
        for s in $order; do
            if has c; then
                run fig=c-ka-none "$s" -c 1 -d "$secs" -b 200
                run fig=c-new-none "$s" --mode new -c 1 -d "$secs" -b 200
            fi
            m0=$(rss "$s")
            idle_open "$s"
            m1=$(rss "$s")
            echo "fig=d srv=$s rep=$rep idle_up=${idle_up:-0} idle_failed=${idle_failed:-?} rss_kb_before=${m0%% *} pss_kb_before=${m0##* } rss_kb=${m1%% *} pss_kb=${m1##* }" >>"$raw"
            echo "  fig=d                  $s rep $rep: ${idle_up:-0} idle connections up (${idle_failed:-?} failed), RSS $((${m0%% *} / 1024)) -> $((${m1%% *} / 1024)) MiB"
            if has c; then
                run fig=c-ka-idle "$s" -c 1 -d "$secs" -b 200
                run fig=c-new-idle "$s" --mode new -c 1 -d "$secs" -b 200
            fi
            idle_close
        done
    fi
    rep=$((rep + 1))
done

# Stop certgate for its group-commit statistics.
kill -TERM "$cg_pid"
wait "$cg_pid" 2>/dev/null || true
cg_pid=""
wstats=$(grep '"event":"writer_stats"' "$t/certgate.log" | tail -n 1 |
    sed 's/.*"commits":\([0-9]*\).*"requests":\([0-9]*\).*/\1 \2/')
# shellcheck disable=SC2086 # two numbers
set -- $wstats
if [ $# = 2 ] && [ "$1" -gt 0 ]; then
    echo "# certgate group commit over the whole run: $2 requests in $1 transactions ($(echo "$1 $2" | awk '{ printf "%.2f", $2 / $1 }') per commit)" >>"$raw"
fi

sh "$top/bench/compare-report.sh" "$raw" "$base"
if [ -s "$base.svg" ]; then echo "wrote $out and $base.svg"; else echo "wrote $out"; fi
