#!/bin/sh
# Three certgate nodes on one PostgreSQL behind one real HAProxy (TCP mode,
# send-proxy-v2, round robin, health checks GET /healthz every 500 ms);
# make check-pg runs it (CERTGATE_TEST_PG=1). Through HAProxy: pushes reach
# every node and each logs the client's address, never the balancer's; a CA
# disabled with the CLI is refused on an open keep-alive connection to each
# node within a second, and trusted again after ca enable; a node killed
# with SIGKILL under load loses no acknowledged row, HAProxy takes it out,
# and the other two keep serving.
. "$TESTS_SRCDIR/server/lib.sh"
if ! on_pg; then
    echo "SKIP: needs PostgreSQL: run it with make check-pg (CERTGATE_TEST_PG=1)"
    exit 77
fi
need haproxy
CLIENT_PY="$TESTS_SRCDIR/server/client.py"
make_pki
setup_db
setup_push

# Nodes 1 to 3, each with its own log: PID1..3, PORT1..3, LOG1..3.
for i in 1 2 3; do
    SERVER_LOG="$T/node$i.log"
    start_server --proxy-protocol --trusted-proxy 127.0.0.1/32
    eval "PID$i=\$SERVER_PID PORT$i=\$PORT LOG$i=\$SERVER_LOG"
done
stop_nodes() {
    for pid in $PID1 $PID2 $PID3; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    return 0
}
CLEANUP_HOOKS="$CLEANUP_HOOKS stop_nodes"
HAPROXY_CHECK="inter 500ms fall 1 rise 2"
start_haproxy "$PORT1" "$PORT2" "$PORT3"
H="https://127.0.0.1:$HPORT"
C="$(as client)"
J="Content-Type: application/json"
PUSH=/api/acme/inbound/records
WHO=/api/certgate/v1/whoami
log_of() { eval "echo \$LOG$1"; }

# node_of SRC PATH: the nodes whose log has a PATH request from SRC.
node_of() {
    for i in 1 2 3; do
        grep -q "\"path\":\"$2\",\"remote\":\"$1\"" "$(log_of $i)" && printf '%s' "$i"
    done
}

# ---- pushes_reach_every_node_with_the_client_address ----
ok=0
for i in 1 2 3 4 5 6 7 8 9; do
    req --interface 127.0.0.2 $C -H "$J" -d "{\"name\":\"spread-$i\"}" "$H$PUSH"
    [ "$STATUS" = 201 ] && ok=$((ok + 1))
done
[ "$ok" = 9 ] && pass "9 pushes from 127.0.0.2 through HAProxy: 201 each" ||
    fail "$ok of 9 pushes answered 201 (last: $STATUS $(head -c 300 "$T/body"))"
n=$(pg_sql "SELECT count(*) FROM u_inbound WHERE name LIKE 'spread-%'")
[ "$n" = 9 ] && pass "9 rows stored" || fail "$n rows for 9 pushes"
spread=""
for i in 1 2 3; do
    c=$(grep -c "\"path\":\"$PUSH\",\"remote\":\"127.0.0.2\"" "$(log_of $i)")
    spread="$spread $c"
    [ "$c" -gt 0 ] && pass "node $i logged $c of the pushes, from 127.0.0.2" ||
        fail "node $i logged no push from 127.0.0.2"
    grep '"event":"request"' "$(log_of $i)" | grep '"remote":"127.0.0.1"' |
        grep -qv '"path":"/healthz"' &&
        fail "node $i logged a request with HAProxy's address 127.0.0.1" ||
        pass "node $i: no request logged with HAProxy's address (but the health checks)"
    grep -q '"method":"GET","path":"/healthz","remote":"127.0.0.1".*"status":200' "$(log_of $i)" &&
        pass "node $i answered HAProxy's health checks" || fail "node $i saw no health check"
done
echo "# pushes per node:$spread"

# ---- trust_change_reaches_an_open_connection_on_every_node_within_a_second ----
# One keep-alive connection per node, each from its own address (the node
# logs tell which node has which), then `ca disable` with the CLI.
# trust_round DESC WANT1 WANT2 REASON SOURCES CMD...: the three connections
# answered WANT1, then WANT2 (with REASON, and for ca_disabled a JSON detail
# that says so) within 1000 ms of CMD, each on its own node.
trust_round() {
    desc=$1
    want1=$2
    want2=$3
    reason=$4
    srcs=$5
    shift 5
    python3 "$CLIENT_PY" keepalive-many 127.0.0.1 "$HPORT" "$PKI/root.pem" "$PKI/client.pem" \
        "$PKI/client.key" "$WHO" "$srcs" -- "$@" >"$T/many" 2>&1
    nodes=""
    good=0
    while read -r src s1 s2 r2 same ms detail; do
        node=$(node_of "$src" "$WHO")
        nodes="$nodes$node"
        echo "# node ${node:-?} (connection from $src): $s1 then $s2 $r2 after $ms ms, $same"
        case $reason:$detail in
        ca_disabled:*_is_disabled_in_the_CA_certificate_chain_table* | -:-) said=yes ;;
        *) said=no ;;
        esac
        if [ "$s1" = "$want1" ] && [ "$s2" = "$want2" ] && [ "$r2" = "$reason" ] &&
            [ "$same" = same-connection ] && [ "${ms:-9999}" -lt 1000 ] && [ "$said" = yes ]; then
            good=$((good + 1))
        else
            fail "$desc: on node ${node:-?}: $src $s1 $s2 $r2 $same $ms ms $detail"
        fi
    done <"$T/many"
    [ "$good" = 3 ] && pass "$desc: $want2 on each of the 3 open connections within 1000 ms" ||
        fail "$desc: $good of 3 connections as expected: $(cat "$T/many")"
    case $nodes in
    123 | 132 | 213 | 231 | 312 | 321) pass "one connection on each node ($nodes)" ;;
    *) fail "the connections were not one per node: nodes '$nodes'" ;;
    esac
}
ID=$(pg_sql "SELECT min(id) FROM sys_ca_certificate WHERE subject LIKE 'CN=certgate Test Issuing%'")
trust_round "ca disable" 200 401 ca_disabled 127.0.0.11,127.0.0.12,127.0.0.13 \
    "$CERTGATE" ca disable "$ID"
req --interface 127.0.0.2 $C "$H$WHO"
expect_status "a new connection through HAProxy: 401 ca_disabled" 401 ca_disabled
trust_round "ca enable" 401 200 - 127.0.0.21,127.0.0.22,127.0.0.23 "$CERTGATE" ca enable "$ID"

# ---- node_killed_under_load_loses_nothing_acknowledged ----
# Four push loops through HAProxy, a new connection each, a unique name
# per request; "CODE NAME START_NS END_NS" per request in $T/load-L.
push_loop() {
    i=0
    while [ ! -f "$T/stop-load" ]; do
        i=$((i + 1))
        t0=$(date +%s%N)
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --interface 127.0.0.2 \
            --cacert "$PKI/root.pem" $C -H "$J" -d "{\"name\":\"kill-$1-$i\"}" "$H$PUSH")
        echo "$code kill-$1-$i $t0 $(date +%s%N)" >>"$T/load-$1"
    done
}
# Each node's 201 pushes from 127.0.0.2 so far.
served() { grep -c "\"path\":\"$PUSH\",\"remote\":\"127.0.0.2\".*\"status\":201" "$(log_of $1)"; }
start2=$(served 2)
loops=""
for l in 1 2 3 4; do
    push_loop "$l" &
    loops="$loops $!"
done
sleep 1
before1=$(served 1)
before3=$(served 3)
killed=$(date +%s%N)
kill -KILL "$PID2"
wait "$PID2" 2>/dev/null
n=$(($(served 2) - start2))
[ "$n" -gt 0 ] && pass "node 2 had answered $n pushes of the load when it was killed" ||
    fail "node 2 took no push of the load before the kill"
down=""
for _ in $(seq 1 100); do
    if grep -q 'certgate_nodes/node2 is DOWN' "$T/haproxy.log"; then
        down=$(date +%s%N)
        break
    fi
    sleep 0.05
done
[ -n "$down" ] && pass "HAProxy marks the killed node DOWN, $(((down - killed) / 1000000)) ms after the kill" ||
    fail "HAProxy did not mark node 2 DOWN within 5 s: $(cat "$T/haproxy.log")"
down=${down:-$((killed + 5000000000))}
# Keep pushing for 2 s and until 12 pushes begun after the DOWN are
# answered 201 (a request HAProxy sent to the dead node before the DOWN
# holds its loop for 3 s: three retries a second apart), at most 15 s.
for i in $(seq 1 150); do
    [ "$i" -gt 20 ] && [ "$(cat "$T"/load-? | awk -v d="$down" '$1 == 201 && $3 > d' |
        wc -l)" -ge 12 ] && break
    sleep 0.1
done
: >"$T/stop-load"
# shellcheck disable=SC2086 # a list of pids
wait $loops
cat "$T"/load-? >"$T/load"
acked=$(awk '$1 == 201' "$T/load" | wc -l)
total=$(wc -l <"$T/load")
# The acknowledged names that are not exactly one row, in one query.
names=$(awk '$1 == 201 { printf "%s(\047%s\047)", (n++ ? "," : ""), $2 }' "$T/load")
lost=none
[ "$acked" -gt 0 ] && lost=$(pg_sql "SELECT count(*) FROM (VALUES $names) AS a(name)
    WHERE (SELECT count(*) FROM u_inbound u WHERE u.name = a.name) <> 1")
stored=$(pg_sql "SELECT count(*) FROM u_inbound WHERE name LIKE 'kill-%'")
[ "$acked" -gt 0 ] && [ "$lost" = 0 ] &&
    pass "every 201 is exactly one stored row ($acked acknowledged, $stored stored, $total sent)" ||
    fail "$lost of $acked acknowledged pushes are not exactly one row"
after=$(awk -v d="$down" '$1 == 201 && $3 > d' "$T/load" | wc -l)
[ "$after" -gt 0 ] && pass "$after pushes answered 201 after HAProxy took the node out" ||
    fail "no 201 after the node went DOWN"
for i in 1 3; do
    eval "b=\$before$i"
    a=$(served $i)
    [ "$a" -gt "$b" ] && pass "node $i kept serving: $((a - b)) pushes after the kill" ||
        fail "node $i served no push after the kill"
done
# Failures only between the kill and HAProxy's DOWN (half a second of
# slack for a request already on its way): every other answer is 201.
bad=$(awk '$1 != 201' "$T/load" | wc -l)
early=$(awk -v k="$killed" '$1 != 201 && $4 < k' "$T/load" | wc -l)
late=$(awk -v d="$down" '$1 != 201 && $3 > d + 500000000' "$T/load" | wc -l)
echo "# non-201 answers: $bad of $total$(awk '$1 != 201 { print $1 }' "$T/load" | sort |
    uniq -c | awk '{ printf "%s%s x %s", (n++ ? ", " : ": "), $1, $2 }')"
[ "$early" = 0 ] && [ "$late" = 0 ] &&
    pass "$bad non-201 answers, all between the kill and HAProxy's DOWN" ||
    fail "non-201 outside the kill window: $early before, $late after: $(awk '$1 != 201' "$T/load" | head -5)"
grep -Eq 'node[13] is DOWN' "$T/haproxy.log" &&
    fail "HAProxy took a surviving node out: $(grep DOWN "$T/haproxy.log")" ||
    pass "HAProxy never took a surviving node out"
for i in 1 3; do
    eval "SERVER_PID=\$PID$i"
    stop_server
    [ "$SERVER_RC" = 0 ] && pass "node $i stops cleanly" || fail "node $i exit $SERVER_RC"
done
stop_haproxy
done_testing
