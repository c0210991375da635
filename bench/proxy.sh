#!/bin/sh
# What --proxy-protocol costs: full mTLS handshakes per second (openssl
# s_time -new, GET /api/certgate/v1/whoami) and certgate's CPU per
# handshake, in four set-ups on this machine:
#   direct   certgate listening itself, the client connecting directly
#   direct+  certgate --proxy-protocol (trusted 10.255.255.255/32, so the
#            client is untrusted): the acceptor peeks at the first byte and
#            hands the socket over
#   haproxy  through HAProxy (TCP mode) to certgate listening itself
#   haproxy+ through HAProxy with send-proxy-v2 to certgate --proxy-protocol
# Compare direct with direct+, and haproxy with haproxy+; direct against
# haproxy is not a like-for-like comparison (HAProxy shares the cores).
# Needs haproxy (apt-get install haproxy).
#   usage: sh bench/proxy.sh [SECONDS] (default 10; ROUNDS=3 runs each three times,
#   interleaved: the default is 2)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
secs=${1:-10}
rounds=${ROUNDS:-2}
certgate=${CERTGATE:-$top/build/werror/src/certgate}
[ -x "$certgate" ] || certgate=$top/build/demo/src/certgate
[ -x "$certgate" ] || { echo "bench: build certgate first (or set CERTGATE)" >&2; exit 1; }
command -v haproxy >/dev/null 2>&1 || { echo "bench: apt-get install haproxy" >&2; exit 1; }

pid=""
hpid=""
BENCH_PIDS="pid hpid"
bench_tmp proxy
export CERTGATE_DB="$t/bench.db"
sh "$top/tests/pki/mkpki.sh" "$t/pki" >/dev/null 2>&1
bench_trust_db "$certgate" "$t/pki"

# serve [ARGS...]: certgate on 127.0.0.1:18445.
serve() {
    "$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
        --listen 127.0.0.1:18445 --log-file /dev/null "$@" &
    pid=$!
    sleep 1
}

# haproxy_to [SERVER-OPTIONS]: HAProxy on 127.0.0.1:18446 to certgate.
haproxy_to() {
    cat >"$t/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:18446
    default_backend be
backend be
    server node1 127.0.0.1:18445 $1
EOF
    haproxy -db -f "$t/haproxy.cfg" >"$t/haproxy.log" 2>&1 &
    hpid=$!
    sleep 0.5
}

stop() {
    kill $pid $hpid 2>/dev/null || true
    wait $pid $hpid 2>/dev/null || true
    pid=""
    hpid=""
}

# CPU time (user + system, in clock ticks) of a process.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# CPU time of certgate's PROXY acceptor thread (0 without one).
acceptor_ticks() {
    for task in /proc/"$pid"/task/*; do
        if [ "$(cat "$task/comm" 2>/dev/null)" = cg-proxy-accept ]; then
            awk '{ print $14 + $15 }' "$task/stat"
            return
        fi
    done
    echo 0
}

# measure PORT: two parallel s_time clients for SECONDS; prints
# "HANDSHAKES/S US-OF-CERTGATE-CPU US-OF-ACCEPTOR-CPU" (per handshake).
measure() {
    c0=$(cpu_ticks "$pid")
    a0=$(acceptor_ticks)
    for c in 1 2; do
        openssl s_time -connect "127.0.0.1:$1" -new -time "$secs" -cert "$t/pki/client.pem" \
            -key "$t/pki/client.key" -CAfile "$t/pki/root.pem" \
            -www /api/certgate/v1/whoami >"$t/st-$c" 2>/dev/null &
    done
    wait $(jobs -p | grep -v -e "^$pid\$" -e "^${hpid:-x}\$") 2>/dev/null || true
    c1=$(cpu_ticks "$pid")
    a1=$(acceptor_ticks)
    # "N connections in T real seconds" (the line before counts the
    # client's user CPU seconds, not the time)
    cat "$t"/st-* | sed -n 's/^\([0-9]*\) connections in \([0-9]*\) real seconds.*/\1 \2/p' |
        awk -v c0="$c0" -v c1="$c1" -v a0="$a0" -v a1="$a1" -v tck="$(getconf CLK_TCK)" '
            { rate += $1 / $2; n += $1 }
            END {
                printf "%.0f %.0f %.1f", rate, n ? (c1 - c0) / tck * 1e6 / n : 0,
                    n ? (a1 - a0) / tck * 1e6 / n : 0
            }'
    rm -f "$t"/st-*
}

for r in $(seq 1 "$rounds"); do
    echo "round $r ($secs s each)"
    serve
    printf '  direct    %s\n' "$(measure 18445)"
    stop
    serve --proxy-protocol --trusted-proxy 10.255.255.255/32
    printf '  direct+   %s\n' "$(measure 18445)"
    stop
    serve
    haproxy_to ""
    printf '  haproxy   %s\n' "$(measure 18446)"
    stop
    serve --proxy-protocol --trusted-proxy 127.0.0.1/32
    haproxy_to send-proxy-v2
    printf '  haproxy+  %s\n' "$(measure 18446)"
    stop
done | awk '/^round/ { print; next }
    { printf "  %-9s %5d handshakes/s  %5d us of certgate CPU per handshake, %5.1f us of it in the acceptor\n", $1, $2, $3, $4 }'
