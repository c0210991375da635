#!/bin/sh
# certgate table ... and certgate resource ...: every refusal leaves the
# database as it was.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
cg init
S="$TESTS_SRCDIR/../contrib/scripts"

expect_ok "table create with every type" table create u_inbound name payload:json n:integer \
    x:real --roles push,read
expect_out "it lists the columns" "name \\(text\\), payload \\(json\\), n \\(integer\\), x \\(real\\)"
if on_pg; then
    t=$(pg_sql "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
        FROM information_schema.columns WHERE table_name = 'u_inbound'")
    case "$t" in
    *"payload jsonb, n bigint, x double precision"*) pass "a PostgreSQL table, json as jsonb" ;;
    *) fail "table columns: $t" ;;
    esac
else
    t=$(sqlite3 "$DB" "SELECT sql FROM sqlite_master WHERE name = 'u_inbound'")
    case "$t" in
    *STRICT*) pass "a real STRICT SQLite table" ;;
    *) fail "table sql: $t" ;;
    esac
fi
expect_refused "a duplicate table" "already exists" table create u_inbound a
expect_refused "a table name with SQL in it" "invalid table name" \
    table create 'x"; DROP TABLE sys_user; --' a
expect_refused "a sys_ table name" "invalid table name" table create sys_evil a
expect_refused "an upper-case name" "invalid table name" table create Orders a
expect_refused "a column with SQL in it" "invalid column name" table create t2 'a"b'
expect_refused "a reserved column" "invalid column name" table create t2 sys_id
expect_refused "a duplicate column" "listed twice" table create t2 a b a
expect_refused "an unknown type" "unknown type 'blob'" table create t2 a:blob
expect_usage "no column" "usage: certgate table create" table create t2
expect_refused "a bad role" "invalid role name" table create t2 a --roles "no way"
expect_ok "table list" table list --json
expect_json "one table" "[t['name'] for t in j]" "['u_inbound']"
expect_ok "table show" table show u_inbound
expect_out "the Table API path" "/api/now/table/u_inbound for roles push,read"
expect_refused "show an unknown table" "no table named 'nope'" table show nope
expect_refused "drop without --force" "--force" table drop u_inbound

expect_ok "resource add" resource add --api acme/inbound --method POST --path /records \
    --script "$S/push.lua" --roles push
expect_out "it prints the URL" "POST /api/acme/inbound/records"
printf 'local x = \nif then end\n' >"$T/bad.lua"
expect_refused "a script with a syntax error, with file and line" \
    "bad.lua: syntax error: bad.lua:2:" resource add --api acme/inbound --method POST \
    --path /bad --script "$T/bad.lua"
printf '\033Lua\0bytecode' >"$T/bc.lua"
expect_refused "bytecode" "not a text file" resource add --api acme/inbound --method POST \
    --path /bc --script "$T/bc.lua"
expect_refused "a duplicate resource" "answers the same URLs" resource add --api acme/inbound \
    --method POST --path /records --script "$S/push.lua"
expect_refused "a bad method" "--method 'FETCH'" resource add --api acme/inbound \
    --method FETCH --path /x --script "$S/push.lua"
expect_refused "a bad path" "--path" resource add --api acme/inbound --method GET \
    --path 'x/../y' --script "$S/push.lua"
expect_refused "a bad api" "NAMESPACE/API" resource add --api acme --method GET --path /x \
    --script "$S/push.lua"
expect_refused "the reserved namespace now" "reserved" resource add --api now/table \
    --method GET --path /x --script "$S/push.lua"
expect_refused "a bad version" "--version" resource add --api acme/x --method GET --path /x \
    --script "$S/push.lua" --version 1.0
expect_refused "a bad auth mode" "--auth" resource add --api acme/x --method GET --path /x \
    --script "$S/push.lua" --auth maybe
expect_refused "a missing script" "nope.lua" resource add --api acme/x --method GET --path /x \
    --script "$T/nope.lua"
# resources that would answer the same URLs as another are refused
expect_ok "a resource with a parameter" resource add --api acme/o --method GET \
    --path '/orders/{id}' --script "$S/push.lua"
expect_refused "the same path with another parameter name" "answers the same URLs" \
    resource add --api acme/o --method GET --path '/orders/{number}' --script "$S/push.lua"
expect_ok "the same path for another method" resource add --api acme/o --method PUT \
    --path '/orders/{number}' --script "$S/push.lua"
expect_ok "a literal where the other has a parameter" resource add --api acme/o --method GET \
    --path /orders/latest --script "$S/push.lua"
expect_refused "a parameter named twice" "--path" resource add --api acme/o --method GET \
    --path '/a/{id}/{id}' --script "$S/push.lua"
expect_refused "an unversioned path that starts with a version" "--version v1" \
    resource add --api acme/o --method GET --path /v1/orders --script "$S/push.lua"
expect_refused "--auth none with --roles" "public" resource add --api acme/o --method GET \
    --path /pub --script "$S/push.lua" --auth none --roles boss
for id in $(sqlite3 "$DB" "SELECT id FROM sys_ws_operation WHERE api = 'o'"); do
    cg resource delete "$id"
done
expect_ok "resource list" resource list --json
expect_json "one resource" "len(j)" 1
expect_ok "resource show" resource show 1
expect_out "the script text" "db.insert"
expect_refused "update to --auth none of a resource with roles" "public" resource update 1 \
    --auth none
expect_ok "resource update" resource update 1 --auth cert
expect_ok "shown again" resource show 1 --json
expect_json "auth updated" "j['auth']" cert
expect_refused "update with a broken script" "syntax error" resource update 1 --script "$T/bad.lua"
expect_ok "resource delete" resource delete 1
expect_refused "delete again" "no resource with id 1" resource delete 1
expect_ok "table drop --force" table drop u_inbound --force
if on_pg; then
    n=$(pg_sql "SELECT count(*) FROM pg_tables WHERE tablename = 'u_inbound'")
else
    n=$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_master WHERE name = 'u_inbound'")
fi
[ "$n" = 0 ] && pass "the table is gone" || fail "still there"
done_testing
