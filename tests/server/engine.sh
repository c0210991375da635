#!/bin/sh
# How scripted requests run side by side: scripts on their own threads
# against a snapshot, writes group-committed, conflicts redone, so that a
# slow script holds no one else up and concurrent requests behave as if they
# ran one at a time.
. "$TESTS_SRCDIR/server/lib.sh"
make_pki
setup_db
S="$TESTS_SRCDIR/../contrib/scripts"
cg table create u_inbound name:text payload:json source:text --roles push
cg table create u_order number:text status:text amount:real --roles push
cg resource add --api acme/inbound --method POST --path /records --script "$S/push.lua" \
    --roles push
cg resource add --api acme/orders --method PUT --path '/orders/{number}' \
    --script "$S/upsert.lua" --roles push
# Spins until the wall-time cap stops it.
printf 'local t = os.clock() while os.clock() - t < 60 do end\n' >"$T/spin.lua"
cg resource add --api acme/test --method GET --path /spin --script "$T/spin.lua"
# Inserts first, then fails when asked to: its row must vanish.
cat >"$T/flaky.lua" <<'EOF'
local b = request.body
local id = db.insert("u_inbound", { name = b.name })
if b.fail then
  return certgate.fail(409, "Refused", "asked to fail after inserting " .. id)
end
response.status = 201
response.body = { result = { sys_id = id } }
EOF
cg resource add --api acme/test --method POST --path /flaky --script "$T/flaky.lua"
# Reads its own writes: an insert, an update of it, a get and a query.
cat >"$T/own.lua" <<'EOF'
local a = db.insert("u_order", { number = request.body.number, status = "new", amount = 1 })
local b = db.insert("u_order", { number = request.body.number, status = "new", amount = 2 })
db.update("u_order", a, { status = "seen" })
local got = db.get("u_order", a)
local all = db.query("u_order", { number = request.body.number })
local seen = db.query("u_order", { number = request.body.number, status = "seen" })
local second = db.query("u_order", { number = request.body.number }, { limit = 1, offset = 1 })
response.body = { get = got.status, n = #all, first = all[1].sys_id == a,
                  seen = #seen, second = second[1].sys_id == b,
                  missing = db.update("u_order", "no-such-id", {}) }
EOF
cg resource add --api acme/test --method POST --path /own --script "$T/own.lua"
# An upsert of many items by key in one request, keys repeating.
cat >"$T/bulk.lua" <<'EOF'
local n = 0
for _, item in ipairs(request.body) do
  local found = db.query("u_order", { number = item.number }, { limit = 1 })
  if #found > 0 then
    db.update("u_order", found[1].sys_id, { amount = found[1].amount + item.amount })
  else
    db.insert("u_order", { number = item.number, amount = item.amount })
    n = n + 1
  end
end
response.body = { created = n }
EOF
cg resource add --api acme/test --method POST --path /bulk --script "$T/bulk.lua"
printf 'response.status = 201\nresponse.headers["Location"] = "/x/" .. db.insert("u_inbound", { name = "loc" })\nresponse.headers["X-Certgate-Reason"] = "forged"\nresponse.body = { ok = true }\n' \
    >"$T/loc.lua"
cg resource add --api acme/test --method POST --path /loc --script "$T/loc.lua"
cg user add someone
# The classic trim: quadratic backtracking inside one string.match call.
printf 'local s = request.body.text:match("^%%s*(.-)%%s*$")\nresponse.body = { n = #s }\n' \
    >"$T/trim.lua"
cg resource add --api acme/test --method POST --path /trim --script "$T/trim.lua"

start_server --script-threads 2 --script-instructions 100000000000 --script-timeout 3000
C="$(as client)"
J="Content-Type: application/json"
rows() { sqlite3 "$DB" "SELECT count(*) FROM $1${2:+ WHERE $2}"; }

# slow_script_does_not_hold_up_others: four slow requests, more than there
# are script threads; one resource may hold all threads but one.
SPINS=""
for k in 1 2 3; do
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 --cacert "$PKI/root.pem" $C \
        "$URL/api/acme/test/spin" >"$T/spin$k.status" &
    SPINS="$SPINS $!"
done
curl -s -o "$T/spin.body" -w '%{http_code}' --max-time 20 --cacert "$PKI/root.pem" $C \
    "$URL/api/acme/test/spin" >"$T/spin.status" &
SPIN=$!
sleep 0.5
ok=0
for i in $(seq 1 20); do
    req $C -H "$J" -d "{\"name\":\"during-$i\"}" "$URL/api/acme/inbound/records"
    [ "$STATUS" = 201 ] && ok=$((ok + 1))
done
kill -0 "$SPIN" 2>/dev/null && pass "the slow script is still running" ||
    fail "the slow script ended too early"
[ "$ok" = 20 ] && pass "20 pushes answered 201 meanwhile" || fail "$ok of 20 pushes"
[ "$(rows u_inbound "name LIKE 'during-%'")" = 20 ] && pass "and their rows are committed" ||
    fail "rows $(rows u_inbound "name LIKE 'during-%'")"
"$CERTGATE" --db "$DB" user lock someone >"$T/lock.out" 2>&1 &&
    pass "an admin can lock a user while the script runs" || fail "$(cat "$T/lock.out")"
# shellcheck disable=SC2086
wait "$SPIN" $SPINS
[ "$(cat "$T/spin.status")" = 503 ] && pass "the slow script ends with 503 at its wall-time cap" ||
    fail "spin: $(cat "$T/spin.status")"
[ "$(cat "$T/spin1.status" "$T/spin2.status" "$T/spin3.status")" = 503503503 ] &&
    pass "and so do the three others, one after the other" ||
    fail "spins: $(cat "$T/spin1.status" "$T/spin2.status" "$T/spin3.status")"

# reads_see_own_writes
req $C -H "$J" -d '{"number":"OWN-1"}' "$URL/api/acme/test/own"
expect_status "a script reading its own writes: 200" 200
expect_body "db.get sees the updated insert" "j['get']" seen
expect_body "db.query sees both inserts" "j['n']" 2
expect_body "in insertion order" "j['first']" True
expect_body "a filter applies to the updated values" "j['seen']" 1
expect_body "offset and limit apply to the merged answer" "j['second']" True
expect_body "db.update of a missing record is false" "j['missing']" False
[ "$(rows u_order "number = 'OWN-1' AND status = 'seen'")" = 1 ] &&
    pass "the update of the request's own insert is committed" || fail "OWN-1 rows"

# one_request_upserts_repeated_keys
req $C -H "$J" -d '[{"number":"B-1","amount":1},{"number":"B-2","amount":2},{"number":"B-1","amount":3}]' \
    "$URL/api/acme/test/bulk"
expect_status "an upsert of repeated keys in one request" 200
expect_body "creates each key once" "j['created']" 2
# (SQLite prints a real 4 as 4.0, PostgreSQL as 4)
awk "BEGIN { exit !($(sqlite3 "$DB" "SELECT amount FROM u_order WHERE number = 'B-1'") == 4) }" &&
    pass "and adds to the record it created" || fail "B-1: $(sqlite3 "$DB" "SELECT * FROM u_order WHERE number = 'B-1'")"

# concurrent_upserts_of_one_key_make_one_record
PYTHONPATH="$TESTS_SRCDIR/server" python3 - "$URL" "$PKI" >"$T/hot.out" <<'PY'
import sys
from parallel import call, connect, run
url, pki = sys.argv[1], sys.argv[2]
def worker(n):
    c = connect(url, pki)
    out = []
    for i in range(10):
        status, body = call(c, "PUT", "/api/acme/orders/orders/HOT", {"status": "s%d-%d" % (n, i)})
        out.append((status, body.get("result", {}).get("created")))
    return out
results = run(16, worker)
print(len(results), sum(1 for s, c in results if s == 201 and c is True),
      sum(1 for s, c in results if s == 200 and c is False))
PY
read total created updated <"$T/hot.out"
[ "$total" = 160 ] && pass "16 clients sent 160 upserts of one key" || fail "total $total"
[ "$created" = 1 ] && pass "exactly one of them created the record" || fail "$created created"
[ "$updated" = 159 ] && pass "the other 159 updated it" || fail "$updated updated"
[ "$(rows u_order "number = 'HOT'")" = 1 ] && pass "one record for the key" ||
    fail "$(rows u_order "number = 'HOT'") records"

# concurrent_failures_roll_back_only_their_own_rows
PYTHONPATH="$TESTS_SRCDIR/server" python3 - "$URL" "$PKI" >"$T/flaky.run" <<'PY'
import json, sys
from parallel import call, connect, run
url, pki = sys.argv[1], sys.argv[2]
def worker(n):
    c = connect(url, pki)
    out = []
    for i in range(20):
        name = "f-%d-%d" % (n, i)
        fail = (n * 7 + i) % 3 == 0
        status, _ = call(c, "POST", "/api/acme/test/flaky", {"name": name, "fail": fail})
        out.append((status, name, fail))
    return out
print(json.dumps(run(16, worker)))
PY
sqlite3 "$DB" "SELECT name FROM u_inbound WHERE name LIKE 'f-%'" >"$T/flaky.names"
python3 - "$T/flaky.run" "$T/flaky.names" >"$T/flaky.out" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
names = set(open(sys.argv[2]).read().split())
good = [r for r in results if r[0] == 201]
bad = [r for r in results if r[0] == 409]
print(len(results), len(good), len(bad),
      sum(1 for r in good if r[1] not in names), sum(1 for r in bad if r[1] in names),
      sum(1 for r in results if (r[0] == 409) != r[2]))
PY
read total good bad lost kept wrong <"$T/flaky.out"
[ "$total" = 320 ] && pass "16 clients sent 320 inserts, a third failing after the insert" ||
    fail "total $total"
[ "$lost" = 0 ] && [ "$good" -gt 0 ] && pass "every 201's row is committed ($good)" ||
    fail "$lost of $good rows lost"
[ "$kept" = 0 ] && [ "$bad" -gt 0 ] && pass "no failed request's row is ($bad)" ||
    fail "$kept rows of failed requests kept"
[ "$wrong" = 0 ] && pass "each request failed exactly when asked to" || fail "$wrong wrong"

# idempotency_key_reused_for_another_request_is_422
req $C -H "$J" -H "Idempotency-Key: same-key" -d '{"name":"first"}' \
    "$URL/api/acme/inbound/records"
expect_status "first request with a key: 201" 201
req $C -H "$J" -H "Idempotency-Key: same-key" -d '{"name":"other"}' \
    "$URL/api/acme/inbound/records"
expect_status "the key with another body: 422" 422
expect_body "says the key was reused" "j['error']['message']" "Idempotency-Key reused"
[ "$(rows u_inbound "name = 'other'")" = 0 ] && pass "and writes nothing" || fail "row written"
# idempotency_key_binds_the_query_string: the same key, body and path with
# another query string is another request: refused, and the script does
# not run again; the first request itself is still replayed
req $C -H "$J" -H "Idempotency-Key: query-key" -d '{"name":"query"}' \
    "$URL/api/acme/inbound/records?a=1"
expect_status "a key sent with ?a=1: 201" 201
req $C -H "$J" -H "Idempotency-Key: query-key" -d '{"name":"query"}' \
    "$URL/api/acme/inbound/records?a=2"
expect_status "the key with ?a=2 instead: 422, not a replay" 422
expect_body "says the key was reused" "j['error']['message']" "Idempotency-Key reused"
expect_body "naming the first request with its query" \
    "'/api/acme/inbound/records?a=1' in j['error']['detail']" True
[ -z "$(header Idempotent-Replayed)" ] && pass "and is not marked as replayed" ||
    fail "Idempotent-Replayed: $(header Idempotent-Replayed)"
req $C -H "$J" -H "Idempotency-Key: query-key" -d '{"name":"query"}' \
    "$URL/api/acme/inbound/records"
expect_status "the key without a query string: 422" 422
req $C -H "$J" -H "Idempotency-Key: query-key" -d '{"name":"query"}' \
    "$URL/api/acme/inbound/records?a=1"
[ "$STATUS" = 201 ] && [ "$(header Idempotent-Replayed)" = true ] &&
    pass "the first request sent again with ?a=1 is replayed" ||
    fail "retry of ?a=1: $STATUS, Idempotent-Replayed '$(header Idempotent-Replayed)'"
[ "$(rows u_inbound "name = 'query'")" = 1 ] && pass "the script ran once for the four" ||
    fail "$(rows u_inbound "name = 'query'") rows for one key"
# A row stored before the hash covered the query string (SHA-256 of method,
# decoded path and body, or nothing at all) cannot tell ?a=1 from ?a=2: it
# is refused, never replayed, even for what looks like the same request.
old=$(python3 -c 'import hashlib; print(hashlib.sha256(b"POST\0/api/acme/inbound/records\0{\"name\":\"legacy\"}").hexdigest())')
for h in "$old" ""; do
    kind=${h:+"SHA-256 of method, path and body"}
    sqlite3 "$DB" "INSERT INTO sys_idempotency (user_name, idem_key, method, path, status, body,
        created_at, request_sha256) VALUES ('integrator1', 'legacy-key', 'POST',
        '/api/acme/inbound/records', 201, '{\"legacy\":true}', $(date +%s),
        '$h') ON CONFLICT (user_name, idem_key) DO UPDATE SET request_sha256 = excluded.request_sha256"
    req $C -H "$J" -H "Idempotency-Key: legacy-key" -d '{"name":"legacy"}' \
        "$URL/api/acme/inbound/records?a=2"
    expect_status "a key stored with ${kind:-no hash}: 422, not a replay" 422
    expect_body "saying it cannot tell the requests apart" \
        "'older certgate' in j['error']['detail']" True
done
[ "$(rows u_inbound "name = 'legacy'")" = 0 ] && pass "and nothing ran" ||
    fail "$(rows u_inbound "name = 'legacy'") rows for a legacy key"
req $C -H "$J" -H "Idempotency-Key: loc-key" -d '{}' "$URL/api/acme/test/loc"
expect_status "a script that sets Location: 201" 201
loc=$(header Location)
[ -n "$loc" ] && pass "the Location header is sent" || fail "no Location"
[ "$(header X-Certgate-Reason)" = "" ] && pass "a script cannot set X-Certgate-* headers" ||
    fail "X-Certgate-Reason: $(header X-Certgate-Reason)"
req $C -H "$J" -H "Idempotency-Key: loc-key" -d '{}' "$URL/api/acme/test/loc"
[ "$(header Location)" = "$loc" ] && [ "$(header Idempotent-Replayed)" = true ] &&
    pass "a replay answers with the first Location" || fail "replay Location '$(header Location)'"
PYTHONPATH="$TESTS_SRCDIR/server" python3 - "$URL" "$PKI" >"$T/idem.out" <<'PY'
import sys
from parallel import call, connect, run
url, pki = sys.argv[1], sys.argv[2]
def worker(_):
    status, body = call(connect(url, pki), "POST", "/api/acme/inbound/records", {"name": "race"},
                        {"Idempotency-Key": "race-key"})
    return [(status, body["result"]["sys_id"])]
ids = run(16, worker)
print(len(ids), len({i for _, i in ids}), sum(1 for s, _ in ids if s == 201))
PY
read n distinct created <"$T/idem.out"
[ "$n" = 16 ] && [ "$distinct" = 1 ] && [ "$created" = 16 ] &&
    pass "16 racing requests with one key get one sys_id" || fail "$n answers, $distinct ids"
[ "$(rows u_inbound "name = 'race'")" = 1 ] && pass "and one row" ||
    fail "$(rows u_inbound "name = 'race'") rows"

# a_backtracking_pattern_is_capped
req $C -H "$J" -d '{"text":"  padded  "}' "$URL/api/acme/test/trim"
expect_body "trim works on ordinary input" "j['n']" 6
python3 -c 'import json; print(json.dumps({"text": "a" + " " * 900000 + "b"}))' >"$T/spaces.json"
req $C -H "$J" --data-binary "@$T/spaces.json" "$URL/api/acme/test/trim"
expect_status "trim on 900,000 spaces stops at the wall-time cap: 503" 503
req $C -H "$J" -d '{"name":"after-trim"}' "$URL/api/acme/inbound/records"
expect_status "and the server goes on serving" 201

# too_deep_a_body_is_400
deep=$(python3 -c 'print("[" * 100 + "]" * 100)')
req $C -H "$J" -d "$deep" "$URL/api/acme/inbound/records"
expect_status "a body nested 100 levels deep: 400" 400

# a_resource_changed_twice_in_a_second_serves_the_last
printf 'response.body = { v = "a" }\n' >"$T/va.lua"
printf 'response.body = { v = "b" }\n' >"$T/vb.lua"
cg resource add --api acme/test --method GET --path /twice --script "$T/va.lua"
rid=$(sqlite3 "$DB" "SELECT id FROM sys_ws_operation WHERE path = '/twice'")
sleep 1.2
req $C "$URL/api/acme/test/twice"
expect_body "the first script" "j['v']" a
cg resource update "$rid" --script "$T/vb.lua"
cg resource update "$rid" --script "$T/va.lua"
cg resource update "$rid" --script "$T/vb.lua"
sleep 1.2
req $C "$URL/api/acme/test/twice"
expect_body "the last of three updates in a second is served" "j['v']" b

stop_server
[ "$SERVER_RC" = 0 ] && pass "clean stop" || fail "exit $SERVER_RC"
echo "# $(grep '"event":"writer_stats"' "$SERVER_LOG")"
done_testing
