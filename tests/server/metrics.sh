#!/bin/sh
# GET /metrics: exact per-resource counters by status code, labels from the
# live catalog, TLS handshakes counted when they complete, and the conflict
# log emptied when no run is in flight.
. "$TESTS_SRCDIR/server/lib.sh"
make_pki
setup_db
S="$TESTS_SRCDIR/../contrib/scripts"
J='Content-Type: application/json'
R=certgate_requests_total
cg table create u_inbound name:text payload:json source:text --roles push
cg resource add --api acme/m --method POST --path /a --script "$S/push.lua" --roles push
# id 510 shared resource 1's counter under the old 3 + id % 509 slots
sqlite3 "$DB" "INSERT INTO sys_ws_operation SELECT 510, namespace, api, version, method, '/b',
    script_name, script, roles, auth, active, created_on, updated_on FROM sys_ws_operation"
start_server --metrics-listen 127.0.0.1:0
MPORT=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*"event":"metrics_listening".*/\1/p' \
    "$SERVER_LOG" | head -n 1)
push() { req $(as client) -H "$J" -d "${2:-{\"name\":\"m\"\}}" "$URL/api/acme/m$1"; }
served() { for _ in $(seq 1 30); do push "$1" '{}'; [ "$STATUS" = 400 ] && return; sleep 0.1; done; }
expect_metric() {
    v=$(curl -s "http://127.0.0.1:$MPORT/metrics" | grep -v '^#' | grep -F "$1 " | awk '{ print $NF }')
    [ "${v:-absent}" = "$2" ] && pass "metrics: $1 = $2" || fail "metrics: $1 is ${v:-absent}, not $2"
}
push /a; push /a; push /a; push /a '{}'; push /b; push /b
expect_metric "$R{status=\"201\",resource=\"POST acme/m/a\"}" 3
expect_metric "$R{status=\"400\",resource=\"POST acme/m/a\"}" 1
expect_metric "$R{status=\"201\",resource=\"POST acme/m/b\"}" 2
# nothing in flight: no committed write is kept for conflict checks
expect_metric certgate_conflict_log_writes 0
# 6 handshakes; neither a TCP connection closed before one, nor one the client aborts, counts
python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$PORT"
curl -s --max-time 5 -o /dev/null "$URL/healthz"
expect_metric certgate_tls_connections_total 6
# a deleted resource is not listed; one that gets a deleted id back starts from zero
cg resource delete 510
cg resource add --api acme/m --method POST --path /c --script "$S/push.lua" --roles push
served /c; push /c
cg resource delete 2
cg resource add --api acme/m --method POST --path /d --script "$S/push.lua" --roles push
[ "$(sqlite3 "$DB" "SELECT id FROM sys_ws_operation WHERE path = '/d'")" = 2 ] &&
    pass "the new resource took the deleted one's id" || fail "ids differ"
served /d; push /d
expect_metric "$R{status=\"201\",resource=\"POST acme/m/d\"}" 1
expect_metric "$R{status=\"400\",resource=\"POST acme/m/d\"}" 1
expect_metric "$R{status=\"201\",resource=\"POST acme/m/b\"}" absent
expect_metric "$R{status=\"201\",resource=\"POST acme/m/c\"}" absent
stop_server
[ "$SERVER_RC" = 0 ] && pass "clean stop" || fail "exit $SERVER_RC"
done_testing
