#!/bin/sh
# Push benchmark: POSTs of one JSON record to a scripted resource (push.lua,
# one insert each) over keep-alive connections with a client certificate,
# with 1 connection and with 16, against a real `certgate serve` on
# 127.0.0.1. Prints requests per second, checks every 201 is a committed row,
# and reports group-commit batching.
#   usage: sh bench/push.sh [REQUESTS_PER_RUN] (default 4000)
#   CERTGATE=path/to/certgate (default: build/werror/src/certgate, else the
#   demo build); DURABILITY=full|normal (default full); BENCH_PG=1: on
#   PostgreSQL (a private server from tests/pg.sh) instead of SQLite.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
n=${1:-4000}
certgate=${CERTGATE:-$top/build/werror/src/certgate}
[ -x "$certgate" ] || certgate=$top/build/demo/src/certgate
[ -x "$certgate" ] || { echo "bench: build certgate first (sh contrib/run-tests.sh)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is needed" >&2; exit 1; }

t=$(mktemp -d /tmp/certgate-bench.XXXXXX)
pid=""
# Stops the server if it still runs (after a successful run it has already
# exited: a failing kill must not turn the exit status into 1 under set -e).
cleanup() {
    rc=$?
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "${PG_DIR:-}" ]; then pg_stop; fi
    rm -rf "$t"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export CERTGATE_DB="$t/bench.db"
count() { sqlite3 "$CERTGATE_DB" "SELECT count(*) FROM u_inbound"; }
if [ "${BENCH_PG:-0}" = 1 ]; then
    set +u
    . "$top/tests/pg.sh"
    set -u
    pg_start
    CERTGATE_DB=$PG_URI
    count() { pg_sql "SELECT count(*) FROM u_inbound"; }
fi
sh "$top/tests/pki/mkpki.sh" "$t/pki" >/dev/null 2>&1
bench_push_db "$certgate" "$top" "$t/pki"
"$certgate" serve --cert "$t/pki/server-fullchain.pem" --key "$t/pki/server.key" \
    --listen 127.0.0.1:0 --durability "${DURABILITY:-full}" --log-file "$t/server.log" ${SERVE_ARGS:-} &
pid=$!
port=$(bench_port "$t/server.log") || { echo "bench: server did not start" >&2; exit 1; }
url="https://127.0.0.1:$port/api/acme/inbound/records"

run() {
    conns=$1
    cfg="$t/curl-$conns.cfg"
    : >"$cfg"
    i=0
    while [ "$i" -lt "$n" ]; do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"
        i=$((i + 1))
    done
    before=$(count)
    start=$(date +%s.%N)
    if [ "$conns" = 1 ]; then
        curl -s --cacert "$t/pki/root.pem" --cert "$t/pki/client.pem" --key "$t/pki/client.key" \
            -H 'Content-Type: application/json' -d '{"name":"bench","amount":1}' \
            -w '%{http_code}\n' -K "$cfg" >"$t/codes"
    else
        curl -s --no-progress-meter --parallel --parallel-max "$conns" \
            --cacert "$t/pki/root.pem" \
            --cert "$t/pki/client.pem" --key "$t/pki/client.key" \
            -H 'Content-Type: application/json' -d '{"name":"bench","amount":1}' \
            -w '%{http_code}\n' -K "$cfg" >"$t/codes"
    fi
    end=$(date +%s.%N)
    after=$(count)
    ok=$(grep -c '^201$' "$t/codes" || true)
    rows=$((after - before))
    rate=$(echo "$start $end $n" | awk '{ printf "%.0f", $3 / ($2 - $1) }')
    echo "push, $conns connection(s): $n requests, $ok x 201, $rows rows committed, $rate requests/s"
    [ "$ok" = "$rows" ] || { echo "bench: 201 answers and committed rows differ" >&2; exit 1; }
}

run 1
run 16
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
pid=""
stats=$(grep '"event":"writer_stats"' "$t/server.log" | sed 's/.*"commits":\([0-9]*\).*"requests":\([0-9]*\).*/\1 \2/')
# shellcheck disable=SC2086 # two numbers
set -- $stats
if [ $# = 2 ] && [ "$1" -gt 0 ]; then
    echo "group commit: $2 requests in $1 transactions ($(echo "$1 $2" | awk '{ printf "%.1f", $2 / $1 }') requests per commit)"
else
    echo "group commit: no writer_stats line in the server log"
fi
if [ "${BENCH_PG:-0}" = 1 ]; then
    echo "database: PostgreSQL 15, private server on a Unix socket (synchronous_commit=$( [ "${DURABILITY:-full}" = full ] && echo on || echo off))"
else
    echo "durability: ${DURABILITY:-full} (synchronous=$( [ "${DURABILITY:-full}" = full ] && echo FULL || echo NORMAL))"
fi
