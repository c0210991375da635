#!/bin/sh
# Full mTLS handshakes per second and keep-alive requests per second,
# certgate against nginx with the same certificates on this machine.
#   certgate: GET /api/certgate/v1/whoami (chain check + mapping + JSON)
#   nginx:    ssl_verify_client on with the same CA chain, a static 200
# Handshakes: `openssl s_time -new` (one new connection per request,
# client certificate, TLS 1.3). Keep-alive: curl with N requests on one
# connection. Needs nginx (apt-get install nginx-light) for the comparison.
#   usage: sh bench/handshake.sh [SECONDS] (default 10)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
secs=${1:-10}
certgate=${CERTGATE:-$top/build/werror/src/certgate}
[ -x "$certgate" ] || certgate=$top/build/demo/src/certgate
[ -x "$certgate" ] || { echo "bench: build certgate first" >&2; exit 1; }

pid=""
npid=""
BENCH_PIDS="pid npid"
bench_tmp hs
export CERTGATE_DB="$t/bench.db"
sh "$top/tests/pki/mkpki.sh" "$t/pki" >/dev/null 2>&1
bench_trust_db "$certgate" "$t/pki"
"$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
    --listen 127.0.0.1:18443 --log-file /dev/null &
pid=$!
sleep 1

# CLIENTS parallel s_time processes (default 2: the server's cores stay busy
# while a client waits for its answer); the sum of their rates.
handshakes() {
    for c in $(seq 1 "${CLIENTS:-2}"); do
        openssl s_time -connect "127.0.0.1:$1" -new -time "$secs" -cert "$t/pki/client.pem" \
            -key "$t/pki/client.key" -CAfile "$t/pki/root.pem" -www "$2" >"$t/st-$c" 2>/dev/null &
    done
    wait $(jobs -p | grep -v -e "^$pid\$" -e "^${npid:-x}\$") 2>/dev/null || true
    sleep 0.2
    cat "$t"/st-* | sed -n 's/^\([0-9]*\) connections in \([0-9.]*\)s.*/\1 \2/p' |
        awk '{ s += $1 / $2 } END { printf "%.0f", s }'
    rm -f "$t"/st-*
}

keepalive() {
    n=$((secs * 1000))
    cfg="$t/ka-$1.cfg"
    : >"$cfg"
    i=0
    while [ "$i" -lt "$n" ]; do
        printf 'url = "https://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$1" "$2" >>"$cfg"
        i=$((i + 1))
    done
    start=$(date +%s.%N)
    curl -s --cacert "$t/pki/root.pem" --cert "$t/pki/client.pem" --key "$t/pki/client.key" \
        -K "$cfg"
    end=$(date +%s.%N)
    echo "$start $end $n" | awk '{ printf "%.0f", $3 / ($2 - $1) }'
}

# CPU time (user + system, in clock ticks) of a process and its children.
cpu_ticks() {
    t=0
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}

# Server CPU per full handshake: one s_time client for SECONDS.
cpu_per_handshake() {
    port=$1
    path=$2
    shift 2
    c0=$(cpu_ticks "$@")
    n=$(openssl s_time -connect "127.0.0.1:$port" -new -time "$secs" -cert "$t/pki/client.pem" \
        -key "$t/pki/client.key" -CAfile "$t/pki/root.pem" -www "$path" 2>/dev/null |
        sed -n 's/^\([0-9]*\) connections in [0-9.]*s.*/\1/p' | head -n 1)
    c1=$(cpu_ticks "$@")
    echo "$c0 $c1 ${n:-0} $(getconf CLK_TCK)" |
        awk '{ if ($3 > 0) printf "%.0f", ($2 - $1) / $4 * 1e6 / $3; else print "?" }'
}

cg_hs=$(handshakes 18443 /api/certgate/v1/whoami)
cg_ka=$(keepalive 18443 /api/certgate/v1/whoami)
cg_cpu=$(cpu_per_handshake 18443 /api/certgate/v1/whoami "$pid")
echo "certgate: $cg_hs full mTLS handshakes/s, $cg_ka keep-alive requests/s," \
    "$cg_cpu us of server CPU per handshake"

if command -v nginx >/dev/null 2>&1; then
    mkdir -p "$t/nginx"
    cat >"$t/nginx/nginx.conf" <<CONF
worker_processes auto;
error_log $t/nginx/error.log;
pid $t/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $t/nginx;
    proxy_temp_path $t/nginx;
    fastcgi_temp_path $t/nginx;
    uwsgi_temp_path $t/nginx;
    scgi_temp_path $t/nginx;
    server {
        listen 127.0.0.1:18444 ssl;
        ssl_certificate $t/pki/server-fullchain.pem;
        ssl_certificate_key $t/pki/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate $t/pki/chain.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / { default_type application/json; return 200 '{"ok":true}'; }
    }
}
CONF
    nginx -c "$t/nginx/nginx.conf" -g 'daemon off;' &
    npid=$!
    sleep 1
    ng_hs=$(handshakes 18444 /)
    ng_ka=$(keepalive 18444 /)
    ng_cpu=$(cpu_per_handshake 18444 / $(pgrep -P "$npid") "$npid")
    echo "nginx:    $ng_hs full mTLS handshakes/s, $ng_ka keep-alive requests/s," \
        "$ng_cpu us of server CPU per handshake"
    echo "$cg_hs $ng_hs $cg_ka $ng_ka $cg_cpu $ng_cpu" |
        awk '{ printf "certgate/nginx: handshakes %.2fx, keep-alive %.2fx, CPU per handshake %.2fx\n", $1 / $2, $3 / $4, $5 / $6 }'
else
    echo "nginx is not installed: apt-get install nginx-light for the comparison"
fi
