#!/bin/sh
# Scripted resources, data tables and the Table API through the real server.
. "$TESTS_SRCDIR/server/lib.sh"
make_pki
setup_db
S="$TESTS_SRCDIR/../contrib/scripts"
cg table create u_inbound name:text payload:json source:text --roles push
cg table create u_order number:text status:text amount:real --roles push
cg table create u_private secret:text
cg resource add --api acme/inbound --method POST --path /records --script "$S/push.lua" \
    --roles push
cg resource add --api acme/inbound --method POST --path /batch --script "$S/batch.lua" \
    --roles push
cg resource add --api acme/orders --method PUT --path '/orders/{number}' \
    --script "$S/upsert.lua" --roles push --version v1
printf 'local x = nil\nresponse.body = { v = x.field }\n' >"$T/broken.lua"
printf 'db.insert("u_inbound", { name = "half" })\nerror("after the insert")\n' >"$T/half.lua"
cg resource add --api acme/test --method POST --path /half --script "$T/half.lua"
cg resource add --api acme/test --method GET --path /broken --script "$T/broken.lua"
printf 'response.body = { version = 1 }\n' >"$T/v.lua"
cg resource add --api acme/test --method GET --path /version --script "$T/v.lua"
printf 'response.body = { public = true }\n' >"$T/pub.lua"
cg resource add --api acme/test --method GET --path /public --script "$T/pub.lua" --auth none
cg resource add --api acme/test --method GET --path /certonly --script "$T/pub.lua" --auth cert
cg resource add --api acme/test --method GET --path /admin --script "$T/pub.lua" --roles boss
printf 'response.body = { which = "param", id = request.params.id }\n' >"$T/byid.lua"
printf 'response.body = { which = "latest" }\n' >"$T/latest.lua"
cg resource add --api acme/o --method GET --path '/orders/{id}' --script "$T/byid.lua"
cg resource add --api acme/o --method GET --path /orders/latest --script "$T/latest.lua"
printf 'response.body = { q = request.query }\n' >"$T/query.lua"
cg resource add --api acme/test --method GET --path /query --script "$T/query.lua"
printf 'while true do end\n' >"$T/loop.lua"
cg resource add --api acme/test --method GET --path /loop --script "$T/loop.lua"
# a Lua error raised while db.query holds the converted filter in C
printf 'db.query("u_inbound", { name = "x" }, { limit = "many" })\n' >"$T/badquery.lua"
cg resource add --api acme/test --method GET --path /badquery --script "$T/badquery.lua"
printf 'for i = 1, 200 do pcall(db.query, "u_inbound", { name = "x" }, { offset = {} }) end\n%s\n' \
    'response.body = { survived = true }' >"$T/badquery2.lua"
cg resource add --api acme/test --method GET --path /badquery2 --script "$T/badquery2.lua"
# Lua -> JSON amplification: 26 tables that reach each other twice are 2^26
# JSON values; the same through json.encode; and a large honest response
printf 'local t = {}\nfor i = 1, 26 do t = { t, t } end\nresponse.body = t\n' >"$T/double.lua"
cg resource add --api acme/test --method GET --path /double --script "$T/double.lua"
printf 'local t = {}\nfor i = 1, 26 do t = { t, t } end\nresponse.body = { text = json.encode(t) }\n' \
    >"$T/double_encode.lua"
cg resource add --api acme/test --method GET --path /double_encode --script "$T/double_encode.lua"
printf 'local t = {}\nfor i = 1, 50000 do t[i] = { id = i, name = "item " .. i } end\n%s\n' \
    'response.body = { result = t }' >"$T/large.lua"
cg resource add --api acme/test --method GET --path /large --script "$T/large.lua"
# a C loop over the script's data, called again and again
printf 'local t = {}\nfor i = 1, 5e5 do t[i] = (i * 7919) %% 1000003 end\n%s\n' \
    'while true do table.sort(t) end' >"$T/sortloop.lua"
cg resource add --api acme/test --method GET --path /sortloop --script "$T/sortloop.lua"
# state between requests: a seed, and the CPU clock
draw='local t = {}\nfor i = 1, 4 do t[i] = math.random(1, 1000000000) end\nresponse.body = t\n'
printf "math.randomseed(42)\n$draw" >"$T/seeded.lua"
cg resource add --api acme/test --method GET --path /seeded --script "$T/seeded.lua"
printf 'math.randomseed(42)\n' >"$T/seedonly.lua"
cg resource add --api acme/test --method GET --path /seedonly --script "$T/seedonly.lua"
printf "$draw" >"$T/draw.lua"
cg resource add --api acme/test --method GET --path /draw --script "$T/draw.lua"
printf 'response.body = { clock = os.clock() }\n' >"$T/clock.lua"
cg resource add --api acme/test --method GET --path /clock --script "$T/clock.lua"
printf 'a long enough password\n' | "$CERTGATE" user add scripter --roles push --password-stdin \
    >/dev/null
start_server --metrics-listen 127.0.0.1:0
MPORT=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*"event":"metrics_listening".*/\1/p' \
    "$SERVER_LOG" | head -n 1)
C="$(as client)"
J="Content-Type: application/json"
rows() { sqlite3 "$DB" "SELECT count(*) FROM $1"; }

# push_with_client_certificate
req $C -H "$J" -d '{"name":"order 42","amount":12.5}' "$URL/api/acme/inbound/records"
expect_status "push a record: 201" 201
id=$(body_json "j['result']['sys_id']")
[ "$(rows u_inbound)" = 1 ] && pass "the row is in the table" || fail "rows: $(rows u_inbound)"
if on_pg; then
    who=$(pg_sql "SELECT sys_created_by || '|' || source || '|' || (payload->>'amount') FROM u_inbound WHERE sys_id = '$id'")
else
    who=$(sqlite3 "$DB" "SELECT sys_created_by || '|' || source || '|' || json_extract(payload, '\$.amount') FROM u_inbound WHERE sys_id = '$id'")
fi
[ "$who" = "integrator1|integrator1|12.5" ] && pass "read back with sqlite3" || fail "row: $who"

# table_api_reads_it_back
req $C "$URL/api/now/table/u_inbound/$id"
expect_status "Table API GET by sys_id: 200" 200
expect_body "the record" "j['result']['name']" "order 42"
expect_body "json column decoded" "j['result']['payload']['amount']" 12.5
expect_body "sys_created_by" "j['result']['sys_created_by']" integrator1
req $C "$URL/api/now/table/u_inbound?sysparm_limit=5&name=order%2042"
expect_status "Table API list with a filter: 200" 200
expect_body "one match" "len(j['result'])" 1
req $C "$URL/api/now/table/u_inbound/no-such-id"
expect_status "Table API unknown sys_id: 404" 404
req $C -H "$J" -d '{"name":"direct","source":"api"}' "$URL/api/now/table/u_inbound"
expect_status "Table API POST: 201" 201
expect_body "returns the record with its sys_id" "len(j['result']['sys_id'])" 36
req $C -H "$J" -d '{"bogus":1}' "$URL/api/now/table/u_inbound"
expect_status "Table API unknown column: 400" 400
expect_body "naming it" "j['error']['detail']" "unknown column 'bogus' in table 'u_inbound'"
req $C -H "$J" -d '{"name":5}' "$URL/api/now/table/u_inbound"
expect_status "Table API wrong type: 400" 400
req $C "$URL/api/now/table/u_private"
expect_status "a table created without --roles is not exposed: 404" 404
req $C "$URL/api/now/table/u_nothing"
expect_status "an unknown table: 404" 404
cg user add reader
cg cert map reader "$PKI/client2.pem"
sleep 1.2
req $(as client2) "$URL/api/now/table/u_inbound"
expect_status "Table API without the table's role: 403" 403 role_missing
req $(as client2) -H "$J" -d '{"name":"x"}' "$URL/api/acme/inbound/records"
expect_status "resource without its role: 403" 403 role_missing

# script_validation_error_is_400
before=$(rows u_inbound)
req $C -H "$J" -d '{"amount":1}' "$URL/api/acme/inbound/records"
expect_status "script refuses the body: 400" 400
expect_body "with the script's message" "j['error']['message']" "Missing field"
expect_body "and detail" "j['error']['detail']" "name is required"
req $C -H "$J" -d 'not json' "$URL/api/acme/inbound/records"
expect_status "invalid JSON: 400" 400
expect_body "parser detail" "j['error']['detail'].startswith('the body is not valid JSON')" True
req $C -H "Content-Type: text/plain" -d '{"name":"x"}' "$URL/api/acme/inbound/records"
expect_status "not JSON content type: 415" 415
expect_body "the 415 names the Content-Type that was sent" "j['error']['detail']" \
    "the body was sent as Content-Type: text/plain; send it as Content-Type: application/json"
req $C -H "Content-Type:" -d '{"name":"x"}' "$URL/api/acme/inbound/records"
expect_status "no content type: 415" 415
expect_body "the 415 says none was sent" "j['error']['detail']" \
    "the body was sent without a Content-Type; send it as Content-Type: application/json"
[ "$(rows u_inbound)" = "$before" ] && pass "no row from refused requests" ||
    fail "rows $before -> $(rows u_inbound)"

# runtime_error_is_500_and_writes_nothing
req $C -H "$J" -d '{}' "$URL/api/acme/test/half"
expect_status "runtime error after an insert: 500" 500
expect_body "generic message" "j['error']['message']" "Internal server error"
expect_body "no stack trace, the request id" "j['error']['detail'] == '$(header X-Request-Id)'" True
n=$(sqlite3 "$DB" "SELECT count(*) FROM u_inbound WHERE name = 'half'")
[ "$n" = 0 ] && pass "the insert before the error is rolled back" || fail "$n half rows"
grep '"event":"script_error"' "$SERVER_LOG" | grep -q "half.lua:2: after the insert" &&
    pass "the Lua error is in the log" || fail "no script_error line"
req $C "$URL/api/acme/test/broken"
expect_status "nil index: 500" 500
req $C "$URL/api/acme/test/loop"
expect_status "infinite loop stopped: 500" 500
req $C "$URL/api/acme/test/version"
expect_status "and the server keeps serving" 200

# doubling_table_is_a_quick_json_error_and_rss_stays_bounded
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }
peak_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status"; }
rss_before=$(rss_kb)
for path in double double_encode double; do
    start=$(date +%s%N)
    req $C "$URL/api/acme/test/$path"
    ms=$((($(date +%s%N) - start) / 1000000))
    expect_status "$path: a table reached 2^26 times is a 500" 500
    expect_body "$path: the JSON error" "j['status'] + ' ' + j['error']['message']" \
        "failure Internal server error"
    # without the budget: minutes, gigabytes, or a dead daemon
    [ "$ms" -lt 10000 ] && pass "$path: answered in ${ms} ms" || fail "$path: took ${ms} ms"
done
grep '"event":"script_error"' "$SERVER_LOG" | grep '"path":"/api/acme/test/double"' |
    grep -q "memory limit reached: response.body would be more than the memory cap allows" &&
    pass "the log names the memory cap" || fail "no memory-cap line for double.lua"
grep '"event":"script_error"' "$SERVER_LOG" | grep "double_encode.lua" |
    grep -q "json.encode: the text would be more than the memory cap allows" &&
    pass "the log names json.encode" || fail "no memory-cap line for double_encode.lua"
# At 16 MiB of --script-memory jansson's copy is some 40 MiB at most on each
# script thread (about 200 MiB in all under AddressSanitizer, whose
# quarantine keeps freed memory); without the budget it is gigabytes.
peak=$(peak_kb)
[ $((peak - rss_before)) -lt 524288 ] &&
    pass "peak RSS stayed bounded (${rss_before} kB before, peak ${peak} kB)" ||
    fail "peak RSS ${peak} kB from ${rss_before} kB"
req $C "$URL/api/acme/test/large"
expect_status "a large honest response (50,000 records) still works" 200
expect_body "all of it" "len(j['result']) == 50000 and j['result'][-1]['name'] == 'item 50000'" \
    True
req $C "$URL/api/acme/test/version"
expect_status "and the server keeps serving" 200

# os_clock_is_per_request
req $C "$URL/api/acme/test/clock"
expect_body "os.clock() counts this request's CPU time, not the server's" "j['clock'] < 0.5" True

# table_sort_in_a_loop_stops_at_the_caps (the hook looked at the clock once
# per 250 sorts: half a minute past a 5 s cap)
start=$(date +%s%N)
req $C "$URL/api/acme/test/sortloop"
ms=$((($(date +%s%N) - start) / 1000000))
expect_status "table.sort in a loop: 500" 500
[ "$ms" -lt 5000 ] && pass "stopped within the wall-time cap (${ms} ms)" ||
    fail "table.sort loop took ${ms} ms"
grep '"event":"script_error"' "$SERVER_LOG" | grep '"path":"/api/acme/test/sortloop"' |
    grep -q "instruction limit reached" && pass "by the instruction cap, each sort charged" ||
    fail "no instruction-limit line for sortloop"

# db_query_bad_argument_is_500_and_leaks_nothing (the sanitizer build's
# LeakSanitizer reports any leak when the server stops: see the end)
req $C "$URL/api/acme/test/badquery"
expect_status "db.query with a non-integer limit: 500" 500
expect_body "the JSON error" "j['status'] + ' ' + j['error']['message']" "failure Internal server error"
grep '"event":"script_error"' "$SERVER_LOG" | grep -q "bad argument" &&
    pass "the argument error is in the log" || fail "no script_error line for badquery"
req $C "$URL/api/acme/test/badquery2"
expect_status "200 caught argument errors in db.query: the script goes on" 200
expect_body "and answers" "j['survived']" True

# batch_failure_writes_nothing
before=$(rows u_inbound)
req $C -H "$J" -d '[{"name":"a"},{"nope":1},{"name":"c"}]' "$URL/api/acme/inbound/batch"
expect_status "batch with a bad item: 400" 400
expect_body "per-item errors" "'\"index\":2' in j['error']['detail']" True
[ "$(rows u_inbound)" = "$before" ] && pass "nothing of the batch is written" || fail "rows moved"
req $C -H "$J" -d '[{"name":"a"},{"name":"b"},{"name":"c"}]' "$URL/api/acme/inbound/batch"
expect_status "good batch: 201" 201
[ "$(rows u_inbound)" = $((before + 3)) ] && pass "all three rows" || fail "rows $(rows u_inbound)"

# versioned path, default version, upsert by external key
req $C -X PUT -H "$J" -d '{"status":"new","amount":3}' "$URL/api/acme/orders/v1/orders/A-1"
expect_status "versioned path: 201 (created)" 201
req $C -X PUT -H "$J" -d '{"status":"paid"}' "$URL/api/acme/orders/orders/A-1"
expect_status "default version at the unversioned path: 200 (updated)" 200
st=$(sqlite3 "$DB" "SELECT count(*) || '|' || max(status) FROM u_order WHERE number = 'A-1'")
[ "$st" = "1|paid" ] && pass "upsert kept one row" || fail "u_order: $st"
req $C -X POST -H "$J" -d '{}' "$URL/api/acme/orders/v1/orders/A-1"
expect_status "wrong method on a resource: 405" 405
[ "$(header Allow)" = PUT ] && pass "with Allow: PUT" || fail "Allow $(header Allow)"
req $C "$URL/api/acme/orders/v2/orders/A-1"
expect_status "unknown version: 404" 404

# the_most_specific_route_answers
req $C "$URL/api/acme/o/orders/latest"
expect_body "a literal segment wins over a parameter added before it" "j['which']" latest
req $C "$URL/api/acme/o/orders/A-7"
expect_body "the parameter route answers the rest" "j['id']" A-7

# table_api_parameters
req $C -X PUT -H "$J" -d '{"status":"new","amount":2.5}' "$URL/api/acme/orders/v1/orders/R-1"
req $C "$URL/api/now/table/u_order?amount=2.5"
expect_status "a filter on a real column" 200
expect_body "compares as a number" "[r['number'] for r in j['result']]" "['R-1']"
req $C "$URL/api/now/table/u_order?amount=2.50"
expect_body "whatever its spelling" "len(j['result'])" 1
req $C "$URL/api/now/table/u_inbound?payload=%7B%22name%22%3A%22order%2042%22%2C%22amount%22%3A12.5%7D"
expect_body "a filter on a json column compares the JSON" "len(j['result'])" 1
for bad in sysparm_limit=0 sysparm_limit=1001 sysparm_limit=x sysparm_offset=-1 \
    sysparm_query=active%3Dtrue sysparm_fields=name; do
    req $C "$URL/api/now/table/u_inbound?$bad"
    expect_status "Table API $bad: 400" 400
done
expect_body "an unsupported parameter is named" "j['error']['detail'].startswith('sysparm_fields')" True
req $C "$URL/api/now/table/u_inbound?sysparm_limit=1000"
expect_status "sysparm_limit=1000: 200" 200

# auth modes
req "$URL/api/acme/test/public"
expect_status "--auth none: no credentials needed" 200
req -u "scripter:a long enough password" "$URL/api/acme/test/certonly"
expect_status "--auth cert refuses Basic: 401" 401 cert_required
req $C "$URL/api/acme/test/certonly"
expect_status "--auth cert with a certificate: 200" 200
req -u "scripter:a long enough password" -H "$J" -d '{"name":"basic"}' \
    "$URL/api/acme/inbound/records"
expect_status "Basic on an --auth any resource: 201" 201
req $C "$URL/api/acme/test/admin"
expect_status "resource roles: 403 without them" 403 role_missing
req "$URL/api/acme/test/version"
expect_status "a resource without credentials: 401" 401 no_credentials

# resource changed while the server runs
printf 'response.body = { version = 2 }\n' >"$T/v.lua"
cg resource update "$(sqlite3 "$DB" "SELECT id FROM sys_ws_operation WHERE path = '/version'")" \
    --script "$T/v.lua"
sleep 1.2
req $C "$URL/api/acme/test/version"
expect_body "an updated script is served within a second" "j['version']" 2
printf 'response.body = { added = true }\n' >"$T/new.lua"
cg resource add --api acme/test --method GET --path /new --script "$T/new.lua"
sleep 1.2
req $C "$URL/api/acme/test/new"
expect_status "an added resource is served within a second" 200

# idempotent_retry_returns_same_sys_id
req $C -H "$J" -H "Idempotency-Key: k-123" -d '{"name":"once"}' "$URL/api/acme/inbound/records"
expect_status "first idempotent push: 201" 201
first=$(body_json "j['result']['sys_id']")
req $C -H "$J" -H "Idempotency-Key: k-123" -d '{"name":"once"}' "$URL/api/acme/inbound/records"
expect_status "the retry: 201" 201
expect_body "the same sys_id" "j['result']['sys_id']" "$first"
[ "$(header Idempotent-Replayed)" = true ] && pass "marked as replayed" || fail "not replayed"
n=$(sqlite3 "$DB" "SELECT count(*) FROM u_inbound WHERE name = 'once'")
[ "$n" = 1 ] && pass "one row for two idempotent requests" || fail "$n rows"

# 16 concurrent pushers, some failing by design
PYTHONPATH="$TESTS_SRCDIR/server" python3 - "$URL" "$PKI" >"$T/conc.out" <<'PY'
import json, sys
from parallel import call, connect, run
url, pki = sys.argv[1], sys.argv[2]
def worker(n):
    c = connect(url, pki)
    out = []
    for i in range(25):
        good = (n + i) % 3 != 0
        body = {"name": "c-%d-%d" % (n, i)} if good else {"amount": i}
        status, data = call(c, "POST", "/api/acme/inbound/records", body)
        out.append((status, body.get("name"), data))
    return out
print(json.dumps(run(16, worker)))
PY
sqlite3 "$DB" "SELECT name FROM u_inbound WHERE name LIKE 'c-%'" >"$T/conc.names"
python3 - "$T/conc.out" "$T/conc.names" <<'PY' >"$T/conc.check"
import json, sys
results = json.load(open(sys.argv[1]))
names = set(open(sys.argv[2]).read().split())
ok = [r for r in results if r[0] == 201]
bad = [r for r in results if r[0] != 201]
missing = [r for r in ok if r[1] not in names]
extra = len(names) - len(ok)
wrong = [r for r in bad if r[0] != 400]
print(len(results), len(ok), len(bad), len(missing), extra, len(wrong))
PY
read total ok bad missing extra wrong <"$T/conc.check"
[ "$total" = 400 ] && pass "16 pushers sent 400 requests" || fail "total $total"
[ "$missing" = 0 ] && [ "$ok" -gt 0 ] && pass "every 2xx's row is present ($ok)" ||
    fail "$missing of $ok committed rows missing"
[ "$extra" = 0 ] && pass "no failed request's row is present" || fail "$extra extra rows"
[ "$wrong" = 0 ] && [ "$bad" -gt 0 ] && pass "the failures are the designed 400s ($bad)" ||
    fail "$wrong unexpected statuses"
# metrics on the separate plain-HTTP listener
curl -s --max-time 10 "http://127.0.0.1:$MPORT/metrics" >"$T/metrics"
metric() {
    v=$(grep -v '^#' "$T/metrics" | grep -F "$1" | head -n 1 | awk '{ print $NF }')
    if [ -n "$v" ] && awk "BEGIN { exit !($v $2) }"; then
        pass "metrics: $1 $2"
    else
        fail "metrics: $1 is '$v', expected $2"
    fi
}
metric 'certgate_requests_total{status="201",resource="POST acme/inbound/records"}' ">= 260"
metric 'certgate_requests_total{status="400",resource="POST acme/inbound/records"}' ">= 100"
metric 'certgate_requests_total{status="200",resource="table_api"}' ">= 2"
metric 'certgate_auth_refusals_total{reason="no_credentials"}' ">= 1"
metric 'certgate_auth_refusals_total{reason="role_missing"}' ">= 2"
metric 'certgate_auth_refusals_total{reason="cert_required"}' ">= 1"
metric 'certgate_tls_connections_total' ">= 16"
metric 'certgate_script_errors_total' ">= 8"
metric 'certgate_request_duration_seconds_count' ">= 430"
metric 'certgate_db_commit_duration_seconds_count' ">= 1"
metric 'certgate_cas_expiring_30d' "== 0"
metric 'certgate_certificates_expiring_30d' "== 0"
grep -q '^# TYPE certgate_request_duration_seconds histogram' "$T/metrics" &&
    pass "metrics: Prometheus text format" || fail "no TYPE line"
stop_server
[ "$SERVER_RC" = 0 ] && pass "clean stop" || fail "exit $SERVER_RC"
cp "$T/server.out" "$T/server1.out"

# a_seed_does_not_reach_the_next_request: with one script thread every
# request runs in the same Lua state, where a shared generator would carry
# one request's math.randomseed(42) into the next one's math.random
start_server --script-threads 1
req $C "$URL/api/acme/test/seeded"
expect_status "a script may seed its own generator" 200
s42=$(cat "$T/body")
req $C "$URL/api/acme/test/seeded"
[ "$(cat "$T/body")" = "$s42" ] && pass "and its sequence repeats within a request" ||
    fail "seed 42 gave $s42, then $(cat "$T/body")"
same=0
: >"$T/draws"
for _ in 1 2 3 4; do
    req $C "$URL/api/acme/test/seedonly"
    req $C "$URL/api/acme/test/draw"
    [ "$(cat "$T/body")" = "$s42" ] && same=$((same + 1))
    cat "$T/body" >>"$T/draws"
    echo >>"$T/draws"
    req $C "$URL/api/acme/test/draw"
    cat "$T/body" >>"$T/draws"
    echo >>"$T/draws"
done
[ "$same" = 0 ] && pass "math.randomseed(42) does not make the next request's numbers known" ||
    fail "$same of 4 draws after a seeded request were seed 42's sequence $s42"
[ "$(sort -u "$T/draws" | wc -l)" = 8 ] && pass "8 requests that do not seed drew 8 sequences" ||
    fail "draws repeat: $(sort "$T/draws" | uniq -d | head -n 1)"
stop_server
[ "$SERVER_RC" = 0 ] && pass "clean stop (one script thread)" || fail "exit $SERVER_RC"
cat "$T/server1.out" >>"$T/server.out"
if grep -q "LeakSanitizer" "$T/server.out"; then
    fail "the server leaked: $(grep -A 12 'ERROR: LeakSanitizer' "$T/server.out" | head -n 30)"
else
    pass "no leak reported when the server stops"
fi
done_testing
