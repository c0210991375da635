#!/bin/sh
# Cluster benchmark: pushes (POST of one JSON record to push.lua, one
# durable insert each) with the load generator (bench/loadgen.c) and a
# client certificate, in five set-ups on this machine:
#   pg-1/2/3   1, 2 or 3 certgate nodes on one private PostgreSQL (tests/pg.sh,
#              Unix socket), behind one HAProxy (TCP mode, send-proxy-v2,
#              round robin, health checks GET /healthz), --proxy-protocol
#   sqlite     one node on SQLite, the client connecting directly
#   pg         one node on PostgreSQL, directly
# each with CONNS keep-alive connections and with CONNS clients that open a
# new connection (full handshake) per push. For each run: requests/s, group
# commits per second, pushes per commit, the average commit's duration, and
# the CPU per push (user + system, from /proc/PID/stat) of certgate (all
# nodes), of PostgreSQL (the postmaster and all its children: the nodes'
# connections are persistent, so their backends live through the run), of
# HAProxy and of the load generator; and checks that every 2xx is a
# committed row. Writes a Markdown table and a cost model paragraph
# (throughput on N cores ~ N / CPU per push) to OUT.md, the raw loadgen
# lines to OUT.raw.
# Needs haproxy, PostgreSQL 15 (contrib/install-deps.sh --test), cc,
# pkg-config and GnuTLS's headers (for loadgen), sqlite3.
#   usage: sh bench/cluster.sh [-s SECS] [-c CONNS] [-o OUT.md]
#   defaults: 10 s per run, 16 connections, bench/results/cluster-DATE.md
#   CERTGATE=path/to/certgate (default build/werror/src/certgate, else
#   build/src/certgate); DURABILITY=full|normal (default full);
#   CONFIGS: the set-ups to run (default "pg-1 pg-2 pg-3 sqlite pg")
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
command_line="${CERTGATE:+CERTGATE=$CERTGATE }${DURABILITY:+DURABILITY=$DURABILITY }${CONFIGS:+CONFIGS=\"$CONFIGS\" }sh bench/cluster.sh${*:+ $*}"
secs=10
conns=16
out=$top/bench/results/cluster-$(date +%Y%m%d).md
while getopts s:c:o: o; do
    case $o in
    s) secs=$OPTARG ;;
    c) conns=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n 's/^#   usage: //p' "$0" >&2; exit 2 ;;
    esac
done
configs=${CONFIGS:-pg-1 pg-2 pg-3 sqlite pg}

certgate=${CERTGATE:-$top/build/werror/src/certgate}
[ -x "$certgate" ] || certgate=$top/build/src/certgate
[ -x "$certgate" ] || { echo "bench: build certgate first (or set CERTGATE)" >&2; exit 1; }
for tool in haproxy cc pkg-config sqlite3 pgrep ss; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "bench: $tool is needed (sh contrib/install-deps.sh --test; apt-get install gcc pkg-config libgnutls28-dev sqlite3 procps iproute2)" >&2; exit 1; }
done

t=$(mktemp -d /tmp/certgate-cluster.XXXXXX)
node_pids=""
hpid=""
stop_all() {
    for p in $hpid $node_pids; do
        kill "$p" 2>/dev/null || true
    done
    for p in $hpid $node_pids; do
        wait "$p" 2>/dev/null || true
    done
    node_pids=""
    hpid=""
}
cleanup() {
    rc=$?
    stop_all
    if [ -n "${PG_DIR:-}" ]; then pg_stop; fi
    rm -rf "$t"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The load generator: built here, not by the project's build.
bench_loadgen "$top"

set +u
. "$top/tests/pg.sh"
set -u
pg_start
postmaster=$(head -n 1 "$PG_DIR/data/postmaster.pid")
sqlite_db=$t/bench.db
sh "$top/tests/pki/mkpki.sh" "$t/pki" >/dev/null 2>&1
for db in "$PG_URI" "$sqlite_db"; do
    export CERTGATE_DB="$db"
    bench_push_db "$certgate" "$top" "$t/pki"
done

# rows DB: the pushes stored so far.
rows() {
    if [ "$1" = "$sqlite_db" ]; then
        sqlite3 "$1" "SELECT count(*) FROM u_inbound"
    else
        pg_sql "SELECT count(*) FROM u_inbound"
    fi
}

# start_nodes DB N [ARGS...]: N nodes on DB; sets node_pids, node_ports
# and metric_ports.
start_nodes() {
    db=$1
    n=$2
    shift 2
    node_ports=""
    metric_ports=""
    i=1
    while [ "$i" -le "$n" ]; do
        : >"$t/node$i.log"
        CERTGATE_DB=$db "$certgate" serve --cert "$t/pki/server-fullchain.pem" \
            --key "$t/pki/server.key" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
            --durability "${DURABILITY:-full}" --log-file "$t/node$i.log" "$@" &
        node_pids="$node_pids $!"
        port=""
        mport=""
        for _ in $(seq 1 100); do
            port=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)","basic_auth".*/\1/p' "$t/node$i.log" | head -n 1)
            mport=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*"event":"metrics_listening".*/\1/p' \
                "$t/node$i.log" | head -n 1)
            [ -n "$port" ] && [ -n "$mport" ] && break
            sleep 0.1
        done
        [ -n "$port" ] && [ -n "$mport" ] || { echo "bench: node $i did not start" >&2; cat "$t/node$i.log" >&2; exit 1; }
        node_ports="$node_ports $port"
        metric_ports="$metric_ports $mport"
        i=$((i + 1))
    done
}

# start_haproxy: HAProxy on hport in front of node_ports (the README's
# backend: TCP, send-proxy-v2, round robin, TLS health checks).
start_haproxy() {
    hport=$((20000 + $$ % 20000))
    while ss -Htln "sport = :$hport" | grep -q .; do
        hport=$((hport + 1))
    done
    {
        cat <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout check 2s
frontend fe
    bind 127.0.0.1:$hport
    default_backend certgate_nodes
backend certgate_nodes
    balance roundrobin
    option httpchk GET /healthz
EOF
        i=1
        for p in $node_ports; do
            echo "    server node$i 127.0.0.1:$p send-proxy-v2 check check-send-proxy check-ssl verify none inter 1s"
            i=$((i + 1))
        done
    } >"$t/haproxy.cfg"
    haproxy -db -f "$t/haproxy.cfg" >"$t/haproxy.log" 2>&1 &
    hpid=$!
    for _ in $(seq 1 50); do
        ss -Htln "sport = :$hport" | grep -q . && return 0
        sleep 0.1
    done
    echo "bench: haproxy did not start" >&2
    cat "$t/haproxy.log" >&2
    exit 1
}

# ticks PID...: "PID TICKS" (utime + stime of all its threads) per process
# still running.
ticks() {
    for p in "$@"; do
        awk -v p="$p" '{ sub(/.*\) /, ""); print p, $12 + $13 }' "/proc/$p/stat" 2>/dev/null || true
    done
}

# PostgreSQL's processes: the postmaster and its children.
pg_pids() { echo "$postmaster $(pgrep -P "$postmaster" | tr '\n' ' ')"; }

# snap NAME: CPU ticks of each group in $t/NAME.{cg,pg,hp}.
snap() {
    # shellcheck disable=SC2086 # lists of pids
    ticks $node_pids >"$t/$1.cg"
    # shellcheck disable=SC2046
    ticks $(pg_pids) >"$t/$1.pg"
    # shellcheck disable=SC2086
    ticks $hpid >"$t/$1.hp"
}

# used GROUP: ticks used between snap a and snap b (a process that started
# meanwhile counts from zero; one that ended meanwhile is not counted).
used() {
    awk 'NR == FNR { s[$1] = $2; next } { u += $2 - ($1 in s ? s[$1] : 0) } END { print u + 0 }' \
        "$t/a.$1" "$t/b.$1"
}

# metric NAME: the sum of a metric (a full line prefix) over the nodes.
metric() {
    s=0
    for mp in $metric_ports; do
        v=$(curl -s --max-time 5 "http://127.0.0.1:$mp/metrics" | grep -F "$1 " | grep -v '^#' |
            awk '{ print $NF }' | head -n 1)
        s=$(echo "$s ${v:-0}" | awk '{ printf "%.6f", $1 + $2 }')
    done
    echo "$s"
}

commits=certgate_db_commit_duration_seconds_count
commit_s=certgate_db_commit_duration_seconds_sum
pushes='certgate_requests_total{status="201",resource="POST acme/inbound/records"}'
xacts() { pg_sql "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }

load=$(cut -d ' ' -f 1-3 /proc/loadavg)
tck=$(getconf CLK_TCK)
cores=$(nproc)
raw=${out%.md}.raw
mkdir -p "$(dirname "$out")"
: >"$raw"
status=0

# measure CONFIG MODE DB PORT: one loadgen run; one "key=value..." line
# added to $raw.
measure() {
    cfg=$1
    mode=$2
    db=$3
    r0=$(rows "$db")
    c0=$(metric "$commits")
    cs0=$(metric "$commit_s")
    p0=$(metric "$pushes")
    x0=$(xacts)
    snap a
    w0=$(date +%s%N)
    line=$("$t/loadgen" --connect "127.0.0.1:$4" --cert "$t/pki/client.pem" \
        --key "$t/pki/client.key" --ca "$t/pki/root.pem" --expect 201 \
        -p /api/acme/inbound/records -b 200 --mode "$mode" -c "$conns" -d "$secs" --warmup 0 \
        --label "$cfg" || true)
    w1=$(date +%s%N)
    snap b
    r1=$(rows "$db")
    c1=$(metric "$commits")
    cs1=$(metric "$commit_s")
    p1=$(metric "$pushes")
    x1=$(xacts)
    all=$(echo "$line" | sed -n 's/.* all_ok=\([0-9]*\).*/\1/p')
    d=$((r1 - r0 - ${all:-0}))
    check=ok
    if [ "$d" -lt 0 ] || [ "$d" -gt "$conns" ]; then
        echo "bench: $cfg $mode: $((r1 - r0)) rows committed for ${all:-0} answers 201" >&2
        check=ROWS_MISMATCH
        status=1
    fi
    pg_used=$(used pg)
    [ "$cfg" = sqlite ] && pg_used=-
    echo "cfg=$cfg $line stored=$((r1 - r0)) rows_minus_2xx=$d check=$check wall_ns=$((w1 - w0))" \
        "cg_ticks=$(used cg) pg_ticks=$pg_used hp_ticks=$(used hp) commits=$(echo "$c0 $c1" | awk '{ print $2 - $1 }')" \
        "commit_s=$(echo "$cs0 $cs1" | awk '{ printf "%.6f", $2 - $1 }') pushes=$(echo "$p0 $p1" | awk '{ print $2 - $1 }')" \
        "pg_xacts=$((x1 - x0))" >>"$raw"
    tail -n 1 "$raw" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "  %-7s %-9s %6s req/s  %s x 201, %s stored (%s)\n", v["cfg"], v["mode"], v["rps"],
            v["all_ok"], v["stored"], v["check"] }'
}

# run CONFIG: start its nodes (and HAProxy), measure both modes, stop.
run() {
    case $1 in
    pg-*)
        start_nodes "$PG_URI" "${1#pg-}" --proxy-protocol --trusted-proxy 127.0.0.1/32
        start_haproxy
        sleep 1 # HAProxy's first health checks
        port=$hport
        db=$PG_URI
        ;;
    sqlite)
        start_nodes "$sqlite_db" 1
        port=${node_ports# }
        db=$sqlite_db
        ;;
    pg)
        start_nodes "$PG_URI" 1
        port=${node_ports# }
        db=$PG_URI
        ;;
    esac
    measure "$1" keepalive "$db" "$port"
    measure "$1" new "$db" "$port"
    if [ -n "$hpid" ] && grep -q ' is DOWN' "$t/haproxy.log"; then
        echo "bench: $1: HAProxy marked a node down: $(grep DOWN "$t/haproxy.log")" >&2
        status=1
    fi
    stop_all
}

echo "certgate $certgate, $secs s per run, $conns connections; raw lines in $raw"
for c in $configs; do
    run "$c"
done

# The report: one table row per run, then the cost model.
{
    echo "# Cluster benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "\`$command_line\`: $secs s per run, $conns connections (keep-alive: back to back on"
    echo "each; new: a full TLS 1.3 handshake per push), a 200-byte JSON body, push.lua (one"
    echo "insert), --durability ${DURABILITY:-full}. Machine: $cores cores"
    echo "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), shared by the"
    echo "load generator, certgate, PostgreSQL and HAProxy; $("$certgate" --version | head -n 1),"
    echo "$("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) /PostgreSQL /') (private server, Unix socket, fsync on),"
    echo "$(haproxy -v | head -n 1 | sed 's/ - https.*//'). Load average before the first run: $load."
    echo
    echo "CPU per push: user + system time over the run divided by the rows it stored;"
    echo "PostgreSQL is the postmaster and all its children. Commits and pushes per"
    echo "commit come from certgate's /metrics (group commits of the writer); PG xact/s"
    echo "is pg_stat_database's xact_commit (also the trust pollers' transactions)."
    echo
    echo "| set-up | mode | req/s | 2xx = rows | commits/s | pushes/commit | commit ms | PG xact/s | certgate µs | PostgreSQL µs | HAProxy µs | client µs | server µs | $cores cores: push/s |"
    echo "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -v tck="$tck" -v cores="$cores" '
        function us(x) { return x == "-" ? "-" : sprintf("%.0f", x / tck * 1e6 / n) }
        {
            delete v
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            n = v["stored"] > 0 ? v["stored"] : 1
            wall = v["wall_ns"] / 1e9
            hp = v["cfg"] ~ /^pg-/ ? v["hp_ticks"] : "-"
            srv = v["cg_ticks"] + (v["pg_ticks"] == "-" ? 0 : v["pg_ticks"]) + (hp == "-" ? 0 : hp)
            srv_us = srv / tck * 1e6 / n
            client_us = v["rps"] > 0 ? v["client_cpu_pct"] / 100 * 1e6 / v["rps"] : 0
            printf "| %s | %s | %s | %s (%s x 2xx, %s rows) | %.0f | %.1f | %.1f | %.0f | %s | %s | %s | %.0f | %.0f | %.0f |\n",
                v["cfg"], v["mode"], v["rps"], (v["check"] == "ok" ? "yes" : "**NO**"), v["all_ok"],
                v["stored"], v["commits"] / wall, (v["commits"] > 0 ? v["pushes"] / v["commits"] : 0),
                (v["commits"] > 0 ? v["commit_s"] / v["commits"] * 1000 : 0), v["pg_xacts"] / wall,
                us(v["cg_ticks"]), us(v["pg_ticks"]), us(hp), client_us, srv_us,
                (srv_us > 0 ? cores * 1e6 / srv_us : 0)
        }' "$raw"
    echo
    echo "server µs = certgate + PostgreSQL + HAProxy CPU per push; \"$cores cores: push/s\" = $cores x 10^6 / server µs,"
    echo "what these cores would carry with the load generator elsewhere, if CPU were the only limit."
    echo
    # The cost model from the largest pg-N set-up (the cluster through HAProxy).
    awk -v tck="$tck" -v cores="$cores" '
        {
            delete v
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            if (v["cfg"] !~ /^pg-/) next
            k = v["cfg"] " " v["mode"]
            n = v["stored"] > 0 ? v["stored"] : 1
            cg[k] = v["cg_ticks"] / tck * 1e6 / n
            pg[k] = v["pg_ticks"] / tck * 1e6 / n
            hp[k] = v["hp_ticks"] / tck * 1e6 / n
            cl[k] = v["rps"] > 0 ? v["client_cpu_pct"] / 100 * 1e6 / v["rps"] : 0
            rps[k] = v["rps"]
            ms[k] = v["commits"] > 0 ? v["commit_s"] / v["commits"] * 1000 : 0
            b[k] = v["commits"] > 0 ? v["pushes"] / v["commits"] : 0
            nodes = substr(v["cfg"], 4) + 0
            if (nodes > top) top = nodes
            seen[k] = 1
        }
        END {
            if (!top) exit
            cfg = "pg-" top
            printf "**Cost model.** On N cores, throughput ~ N / (certgate + PostgreSQL + HAProxy CPU per\n"
            printf "push), as long as the CPUs are the limit. With %d node(s) behind HAProxy (%s):\n", top, cfg
            split("keepalive new", modes, " ")
            for (m = 1; m <= 2; m++) {
                k = cfg " " modes[m]
                if (!seen[k]) continue
                s = cg[k] + pg[k] + hp[k]
                printf "%s: certgate %.0f + PostgreSQL %.0f + HAProxy %.0f = %.0f µs per push, about\n", \
                    (modes[m] == "new" ? "With a new connection per push" : "On keep-alive connections"), \
                    cg[k], pg[k], hp[k], s
                printf "%.0f pushes/s per core (%.0f on 4 cores, %.0f on 8, %.0f on 16). Here the %d cores\n", \
                    1e6 / s, 4e6 / s, 8e6 / s, 16e6 / s, cores
                printf "also ran the load generator (%.0f µs per push): %d x 10^6 / %.0f = %.0f predicted,\n", \
                    cl[k], cores, s + cl[k], cores * 1e6 / (s + cl[k])
                printf "%.0f measured, with the cores %.0f%% busy.\n", rps[k], \
                    (s + cl[k]) * rps[k] / 1e6 / cores * 100
            }
            k = cfg " keepalive"
            if (!seen[k] || ms[k] <= 0) exit
            printf "The limit that is not CPU: all nodes take one advisory lock from BEGIN to COMMIT,\n"
            printf "so commits are serialised; the COMMIT alone (its WAL flush) took %.2f ms at %.1f\n", ms[k], b[k]
            printf "pushes per commit on keep-alive, so one database carries at most ~%.0f pushes/s\n", \
                b[k] / ms[k] * 1000
            printf "however many cores (less: the lock is held longer than the COMMIT). Each node\n"
            printf "batches only its own pushes: pushes per commit on keep-alive"
            for (i = 1; i <= top; i++)
                if (seen["pg-" i " keepalive"])
                    printf "%s %.1f with %d node(s)", (i > 1 ? "," : ""), b["pg-" i " keepalive"], i
            printf ".\n"
        }' "$raw"
} >"$out"
cat "$out"
echo "wrote $out and $raw"
exit "$status"
