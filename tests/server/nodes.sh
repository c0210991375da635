#!/bin/sh
# Two certgate nodes sharing one PostgreSQL (make check-pg runs it with
# CERTGATE_TEST_PG=1): a push on one is read on the other, an
# Idempotency-Key sent to both at once inserts once and replays on the
# other, a CA disabled with the CLI is refused on the other node's open
# keep-alive connection within a second (announced with LISTEN/NOTIFY; a
# node whose sessions were cut catches up when it reconnects), and a
# PostgreSQL restart under
# load gives 503 database_unavailable, loses no acknowledged row, and the
# nodes recover by themselves; a node killed with SIGKILL under load loses
# no acknowledged row and the other keeps serving.
. "$TESTS_SRCDIR/server/lib.sh"
if ! on_pg; then
    echo "SKIP: needs PostgreSQL: run it with make check-pg (CERTGATE_TEST_PG=1)"
    exit 77
fi
CLIENT_PY="$TESTS_SRCDIR/server/client.py"
make_pki
setup_db
setup_push

# Node A, then node B (start_server tracks the last one it started).
start_server --db-pool 1 --script-threads 2
A_PID=$SERVER_PID A=$URL
stop_a() {
    kill -KILL "$A_PID" 2>/dev/null
    wait "$A_PID" 2>/dev/null
    return 0
}
CLEANUP_HOOKS="$CLEANUP_HOOKS stop_a"
# Node B names the database with a password (the test server trusts any):
# no log line may show it, not even while PostgreSQL is down.
SERVER_LOG="$T/b.log"
CERTGATE_DB=$(echo "$DB" | sed 's|^postgresql://certgate@|postgresql://certgate:pw-SeCrEt@|')
start_server
CERTGATE_DB=$DB
B=$URL B_PORT=$PORT
C="$(as client)"
J="Content-Type: application/json"
rows() { pg_sql "SELECT count(*) FROM $1${2:+ WHERE $2}"; }
# whoami_until NODE STATUS TRIES: whoami on NODE every 0.1 s until it answers STATUS.
whoami_until() {
    for _ in $(seq 1 "$3"); do
        req $C "$1/api/certgate/v1/whoami"
        [ "$STATUS" = "$2" ] && return 0
        sleep 0.1
    done
}

# push_on_one_node_is_read_on_the_other
req $C -H "$J" -d '{"name":"from-a"}' "$A/api/acme/inbound/records"
expect_status "a push on node A: 201" 201
req $C "$B/api/now/table/u_inbound?name=from-a"
expect_status "node B reads it with the Table API: 200" 200
expect_body "the same record" "[r['name'] for r in j['result']]" "['from-a']"
expect_body "json is still json" "j['result'][0]['payload']['name']" "from-a"

# idempotency_key_is_global: each key sent to both nodes at the same time
pids=""
for k in 1 2 3 4 5 6 7 8; do
    curl -s -o "$T/ra$k" -w '%{http_code}\n' --cacert "$PKI/root.pem" $C -H "$J" \
        -H "Idempotency-Key: race-$k" -d "{\"name\":\"race-$k\"}" \
        "$A/api/acme/inbound/records" >"$T/sa$k" &
    pids="$pids $!"
    curl -s -o "$T/rb$k" -w '%{http_code}\n' --cacert "$PKI/root.pem" $C -H "$J" \
        -H "Idempotency-Key: race-$k" -d "{\"name\":\"race-$k\"}" \
        "$B/api/acme/inbound/records" >"$T/sb$k" &
    pids="$pids $!"
done
# shellcheck disable=SC2086 # a list of pids
wait $pids
n=$(rows u_inbound "name LIKE 'race-%'")
[ "$n" = 8 ] && pass "8 keys sent to two nodes at once: 8 rows" || fail "$n rows for 8 keys"
same=0
for k in 1 2 3 4 5 6 7 8; do
    if [ "$(cat "$T/sa$k")" = 201 ] && [ "$(cat "$T/sb$k")" = 201 ] &&
        cmp -s "$T/ra$k" "$T/rb$k"; then
        same=$((same + 1))
    fi
done
[ "$same" = 8 ] && pass "both nodes answer 201 with the same record (one replays)" ||
    fail "$same of 8 keys answered alike: $(cat "$T/ra1" "$T/rb1")"

# trust_change_on_one_node_applies_on_the_other_within_a_second: a
# keep-alive connection to node B, then `ca disable` with the CLI.
ID=$(pg_sql "SELECT min(id) FROM sys_ca_certificate WHERE subject LIKE 'CN=certgate Test Issuing%'")
out=$(python3 "$CLIENT_PY" keepalive-until 127.0.0.1 "$B_PORT" "$PKI/root.pem" \
    "$PKI/client.pem" "$PKI/client.key" /api/certgate/v1/whoami -- \
    "$CERTGATE" ca disable "$ID" 2>&1)
set -- $out
if [ "${1:-}" = 200 ] && [ "${2:-}" = 401 ] && [ "${3:-}" = ca_disabled ] &&
    [ "${4:-}" = same-connection ] && [ "${5:-9999}" -lt 1000 ]; then
    pass "ca disable on the CLI: the other node refuses its open connection in ${5} ms"
else
    fail "keep-alive on node B after ca disable: $out"
fi
# Node A polls on its own clock: within a second of the command as well.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    req $C "$A/api/certgate/v1/whoami"
    [ "$STATUS" = 401 ] && break
    sleep 0.1
done
expect_status "and node A refuses it too, within a second" 401 ca_disabled
cg ca enable "$ID"
for node in "$A" "$B"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        req $C "$node/api/certgate/v1/whoami"
        [ "$STATUS" = 200 ] && break
        sleep 0.2
    done
    expect_status "ca enable: trusted again on $node" 200
done

grep -q '"event":"trust_reloaded".*"via":"notify"' "$T/b.log" &&
    pass "node B reloaded on PostgreSQL's announcement (LISTEN/NOTIFY), not at a poll" ||
    fail "no trust_reloaded via notify in node B's log: $(grep trust_reloaded "$T/b.log" | head -3)"

# a_resource_added_with_the_cli_is_served_by_the_other_node_within_a_second
cg resource add --api acme/inbound --method POST --path /late \
    --script "$TESTS_SRCDIR/../contrib/scripts/push.lua" --roles push
t0=$(date +%s%N)
for _ in $(seq 1 20); do
    req $C -H "$J" -d '{"name":"late"}' "$B/api/acme/inbound/late"
    [ "$STATUS" = 201 ] && break
    sleep 0.05
done
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$STATUS" = 201 ] && [ "$ms" -lt 1000 ] &&
    pass "a resource added with the CLI is served by node B after ${ms} ms" ||
    fail "new resource on node B: $STATUS after $ms ms"

# a_node_that_missed_announcements_catches_up: every certgate session is
# cut (the listening ones too), the CA is disabled at once, while no node
# listens; each node reads the version when it reconnects.
pg_sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE application_name = 'certgate' AND pid <> pg_backend_pid()" >/dev/null
cg ca disable "$ID"
t0=$(date +%s%N)
for node in "$A" "$B"; do
    whoami_until "$node" 401 40
    expect_status "sessions cut, then ca disable: refused on $node after it reconnects" 401 ca_disabled
done
echo "# caught up in $((($(date +%s%N) - t0) / 1000000)) ms"
cg ca enable "$ID"
for node in "$A" "$B"; do
    whoami_until "$node" 200 20
    expect_status "ca enable: trusted again on $node" 200
done

# postgresql_restart_under_load: pushes to both nodes every 50 ms; the
# server stops, answers are 503 database_unavailable meanwhile, no node
# dies, and each recovers by itself once the server is back.
push_loop() {
    i=0
    while [ ! -f "$T/stop-load" ]; do
        i=$((i + 1))
        code=$(curl -s -o "$T/lb-$1" -w '%{http_code}' --max-time 10 --cacert "$PKI/root.pem" \
            $C -H "$J" -d "{\"name\":\"load-$1-$i\"}" "$2/api/acme/inbound/records")
        echo "$code load-$1-$i $(date +%s%N)" >>"$T/load-$1"
        [ "$code" = 503 ] && cp "$T/lb-$1" "$T/503-$1"
        sleep 0.05
    done
}
push_loop a "$A" &
LA=$!
push_loop b "$B" &
LB=$!
sleep 1
pg_halt
down=$(date +%s%N)
sleep 2
req $C -H "$J" -d '{"name":"while-down"}' "$A/api/acme/inbound/records"
expect_status "a push while PostgreSQL is down: 503" 503
expect_body "database_unavailable, in JSON" \
    "(j['error']['message'], j['error']['detail'].split(':')[0])" \
    "('Database unavailable', 'database_unavailable')"
kill -0 "$A_PID" 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null && pass "both nodes still run" ||
    fail "a node died"
pg_resume || fail "PostgreSQL did not start again"
up=$(date +%s%N)
back=""
for _ in $(seq 1 100); do
    req $C -H "$J" -d '{"name":"after"}' "$A/api/acme/inbound/records"
    a=$STATUS
    req $C -H "$J" -d '{"name":"after"}' "$B/api/acme/inbound/records"
    if [ "$a" = 201 ] && [ "$STATUS" = 201 ]; then
        back=$((($(date +%s%N) - up) / 1000000))
        break
    fi
    sleep 0.1
done
[ -n "$back" ] && [ "$back" -lt 5000 ] &&
    pass "both nodes serve again ${back} ms after PostgreSQL is back" ||
    fail "not back within 10 s: $STATUS $(head -c 300 "$T/body")"
sleep 0.5
: >"$T/stop-load"
wait "$LA" "$LB"
acked=$(cat "$T/load-a" "$T/load-b" | awk '$1 == 201' | wc -l)
n503=$(cat "$T/load-a" "$T/load-b" | awk '$1 == 503' | wc -l)
other=$(cat "$T/load-a" "$T/load-b" | awk '$1 != 201 && $1 != 503' | wc -l)
stored=$(rows u_inbound "name LIKE 'load-%'")
lost=0
for name in $(cat "$T/load-a" "$T/load-b" | awk '$1 == 201 {print $2}'); do
    [ "$(rows u_inbound "name = '$name'")" = 1 ] || lost=$((lost + 1))
done
[ "$lost" = 0 ] && [ "$acked" -gt 0 ] &&
    pass "no acknowledged row lost ($acked acknowledged, $stored stored, $n503 answered 503)" ||
    fail "$lost of $acked acknowledged rows lost"
[ "$n503" -gt 0 ] && [ "$other" = 0 ] && pass "every other answer was a 503" ||
    fail "$other answers neither 201 nor 503: $(awk '$1 != 201 && $1 != 503' "$T/load-a" "$T/load-b" | head -3)"
if [ -f "$T/503-a" ]; then
    grep -q '"detail":"database_unavailable' "$T/503-a" && pass "the load's 503s say database_unavailable" ||
        fail "503 body: $(cat "$T/503-a")"
fi
echo "# PostgreSQL down for $(((up - down) / 1000000)) ms; recovery ${back:-?} ms"
kill -0 "$A_PID" 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null && pass "no node died" ||
    fail "a node died"
# node_killed_under_load_loses_nothing_acknowledged: SIGKILL to node A
# while both take pushes; every 201 either gave is a stored row, and B
# keeps serving.
rm -f "$T/stop-load"
push_loop ka "$A" &
LA=$!
push_loop kb "$B" &
LB=$!
sleep 1
kill -KILL "$A_PID"
sleep 1
req $C -H "$J" -d '{"name":"after-kill"}' "$B/api/acme/inbound/records"
expect_status "node A killed: node B still takes pushes" 201
: >"$T/stop-load"
wait "$LA" "$LB"
acked=$(cat "$T/load-ka" "$T/load-kb" | awk '$1 == 201' | wc -l)
lost=0
for name in $(cat "$T/load-ka" "$T/load-kb" | awk '$1 == 201 {print $2}'); do
    [ "$(rows u_inbound "name = '$name'")" = 1 ] || lost=$((lost + 1))
done
acked_a=$(awk '$1 == 201' "$T/load-ka" | wc -l)
[ "$lost" = 0 ] && [ "$acked_a" -gt 0 ] &&
    pass "no acknowledged row lost ($acked acknowledged, $acked_a by the killed node)" ||
    fail "$lost of $acked acknowledged rows lost"
stop_server
[ "$SERVER_RC" = 0 ] && pass "node B stops cleanly" || fail "node B exit $SERVER_RC"
grep -q '"event":"trust_reload_failed"' "$T/b.log" && pass "node B logged the lost database" ||
    fail "no trust_reload_failed line in node B's log"
grep -q pw-SeCrEt "$T/b.log" "$T/server.out" && fail "node B's log shows the password" ||
    pass "and never the password of its URI"
done_testing
