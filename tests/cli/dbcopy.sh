#!/bin/sh
# certgate db copy --to URI: an SQLite database copied into an empty
# PostgreSQL one (make check-pg runs it: CERTGATE_TEST_PG=1 gives $DB, a
# fresh PostgreSQL database), everything kept: ids, trust data, resources,
# data tables with their rows in order, idempotency keys. A target that
# holds certgate data is refused and left as it was.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
if ! on_pg; then
    echo "SKIP: needs PostgreSQL: run it with make check-pg (CERTGATE_TEST_PG=1)"
    exit 77
fi
make_pki
SRC="$T/src.db"
lite() { cg --db "$SRC" "$@"; }

# The source: every kind of record, ids with gaps.
lite init
lite ca add "$PKI/chain.pem"
lite ca add "$PKI/foreign-root.pem"
lite ca add "$PKI/foreign-int.pem"
lite ca delete "$(sqlite3 "$SRC" "SELECT id FROM sys_ca_certificate WHERE subject = 'CN=Foreign Issuing CA'")"
lite crl add "$PKI/int.crl"
lite user add integrator1 --roles push,read
lite user add basic1 --roles push
lite user add gone
lite user delete gone
lite cert map integrator1 "$PKI/client.pem"
lite cert rule basic1 --ca 1 --match cn=basic1
lite table create u_inbound name:text payload:json n:integer x:real --roles push
lite table create u_empty a
lite resource add --api acme/inbound --method POST --path /records \
    --script "$TESTS_SRCDIR/../contrib/scripts/push.lua" --roles push
sqlite3 "$SRC" "INSERT INTO u_inbound (sys_id, sys_created_on, sys_created_by, name, payload, n, x)
    VALUES ('id-1', '2026-01-01T00:00:00.000Z', 'integrator1', 'first', '{\"b\":[1,2],\"a\":\"é\"}', 7, 1.5),
           ('id-2', '2026-01-01T00:00:01.000Z', 'integrator1', 'second', NULL, NULL, NULL),
           ('id-3', '2026-01-01T00:00:02.000Z', 'integrator1', 'third', '\"text\"', -1, 0.1);
    DELETE FROM u_inbound WHERE sys_id = 'id-2';
    INSERT INTO u_inbound (sys_id, sys_created_on, sys_created_by, name) VALUES ('id-0', '2026-01-02T00:00:00.000Z', 'x', 'last');
    INSERT INTO sys_idempotency (user_name, idem_key, method, path, status, body, created_at, request_sha256, headers)
    VALUES ('integrator1', 'k1', 'POST', '/api/acme/inbound/records', 201, '{\"result\":1}', $(date +%s), 'v2:abc', '{\"Location\":\"/x\"}')"

expect_ok "db copy into an empty PostgreSQL database" db copy --db "$SRC" --to "$DB"
expect_out "says what it copied" "3 CA records, 1 deleted CA keys, 1 CRLs"
expect_out "users and mappings" "2 users \\(3 roles\\), 2 certificate mappings and rules"
expect_out "resources, tables, rows and keys" "1 resources, 2 data tables with 3 rows, 1 idempotency keys"

# Every list reads the same from both databases (ids included).
for what in "ca list" "crl list" "user list" "cert list" "table list" "resource list" \
    "table show u_inbound" "resource show 1" "ca show 1"; do
    # shellcheck disable=SC2086 # the words of a command
    lite --json $what
    cp "$T/out" "$T/lite.json"
    # shellcheck disable=SC2086
    cg --json $what
    if [ "$RC" = 0 ] && cmp -s "$T/out" "$T/lite.json"; then
        pass "$what reads the same on PostgreSQL"
    else
        fail "$what differs: $(diff "$T/lite.json" "$T/out" | head -5)"
    fi
done
rows=$(pg_sql "SELECT string_agg(sys_id || ' ' || coalesce(payload::text, '-') || ' ' || coalesce(n::text, '-') || ' ' || coalesce(x::text, '-'), ', ' ORDER BY sys_rowid) FROM u_inbound")
[ "$rows" = 'id-1 {"a": "é", "b": [1, 2]} 7 1.5, id-3 "text" -1 0.1, id-0 - - -' ] &&
    pass "rows copied in insertion order, json as jsonb" || fail "rows: $rows"
k=$(pg_sql "SELECT user_name || ' ' || idem_key || ' ' || status || ' ' || body || ' ' || (headers->>'Location') FROM sys_idempotency")
[ "$k" = 'integrator1 k1 201 {"result":1} /x' ] && pass "the idempotency key and its answer" ||
    fail "idempotency: $k"
cg check "$PKI/client.pem"
expect_out "the copied trust data maps the client" "integrator1"
expect_ok "a new user gets the next id" user add after --json
expect_json "after the highest copied one, as on SQLite" "j['id']" 3

# A target that holds certgate data is refused, naming what it holds.
before=$(db_state)
expect_refused "a second copy is refused" \
    "is not empty \\(.*in sys_ca_certificate.*\\): db copy copies into an empty database only" \
    db copy --db "$SRC" --to "$DB"
after=$(db_state)
[ "$before" = "$after" ] && pass "and the target is unchanged" || fail "the target changed"
# Refusals that need no server.
expect_refused "a target that is not a URI" "--to needs a PostgreSQL URI" \
    db copy --db "$SRC" --to "$T/other.db"
expect_refused "a source that is not SQLite" "copies an SQLite database" db copy --to "$DB"
expect_refused "a missing source" "does not exist" db copy --db "$T/nothing.db" --to "$DB"
expect_usage "--to is required" "usage: certgate db copy --to" db copy --db "$SRC"
other=$(pg_newdb other2)
expect_refused "an unreachable target is named, without its password" \
    "cannot open database postgresql://certgate@/x\\?host=$T/none" \
    db copy --db "$SRC" --to "postgresql://certgate:pw-secret@/x?host=$T/none"
grep -q pw-secret "$T/err" && fail "the password is shown" || pass "the password is not shown"
# A copy that fails halfway commits nothing: a table name PostgreSQL
# already has makes its CREATE TABLE fail after the trust data went in.
cg --db "$other" init
"$PG_BIN/psql" -X -q "$other" -c "CREATE TABLE u_empty (a int)"
expect_refused "a target with a foreign table in the way" "u_empty" \
    db copy --db "$SRC" --to "$other"
n=$("$PG_BIN/psql" -X -A -t "$other" -c "SELECT count(*) FROM sys_ca_certificate")
[ "$n" = 0 ] && pass "and nothing of it was committed" || fail "$n CAs left behind"
done_testing
