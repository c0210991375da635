#!/bin/sh
# certgate init and the database checks every command makes.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3

# On PostgreSQL (CERTGATE_TEST_PG=1): the URI form, its refusals, the schema.
if on_pg; then
    LATEST=$(ls "$TESTS_SRCDIR/../schema/"[0-9][0-9][0-9]_*.sql | wc -l)
    PGN=$(ls "$TESTS_SRCDIR/../schema/pg/"[0-9][0-9][0-9]_*.sql | wc -l)
    [ "$PGN" = "$LATEST" ] && pass "every migration has its PostgreSQL twin" ||
        fail "$LATEST migrations, $PGN PostgreSQL twins"
    expect_refused "a command on an empty database is refused" "has no certgate schema: run certgate init" \
        ca list
    expect_ok "init creates the schema" init
    expect_out "init names the database and the version" "ready \\(schema version $LATEST\\)"
    expect_ok "init again is harmless" --json init
    expect_json "init --json reports the schema version" "j['schema_version']" "$LATEST"
    for t in sys_ca_certificate sys_crl sys_user sys_user_role sys_user_certificate sys_db_table \
        sys_ws_operation sys_idempotency sys_ca_deleted; do
        n=$(pg_sql "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '$t'")
        [ "$n" = 1 ] && pass "table $t exists" || fail "table $t missing"
    done
    n=$(pg_sql "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY table_name)
        FROM information_schema.columns WHERE data_type = 'jsonb'")
    [ "$n" = "sys_db_table.columns sys_idempotency.headers" ] && pass "JSON columns are jsonb" ||
        fail "jsonb columns: $n"
    v0=$(pg_sql "SELECT value FROM sys_meta WHERE key = 'trust_version'")
    cg user add vera
    v1=$(pg_sql "SELECT value FROM sys_meta WHERE key = 'trust_version'")
    [ "$v1" -gt "$v0" ] && pass "a trust change bumps the trust version ($v0 -> $v1)" ||
        fail "trust version $v0 -> $v1"
    cg user lock nobody-here
    v2=$(pg_sql "SELECT value FROM sys_meta WHERE key = 'trust_version'")
    [ "$v2" = "$v1" ] && pass "a change of nothing does not" || fail "trust version $v1 -> $v2"
    expect_ok "postgres:// is a URI too" --db "$(echo "$DB" | sed 's|^postgresql://|postgres://|')" \
        user list
    expect_out "and reads the same database" "vera"
    expect_ok "CERTGATE_DB names it" user list
    # Refusals, each a clear message and no crash.
    other=$(pg_newdb other)
    "$PG_BIN/psql" -X -q "$other" -c "CREATE TABLE other_app (x int)"
    expect_refused "a database of another application is refused" \
        "is not a certgate database \\(it has tables but no certgate schema\\)" --db "$other" init
    expect_refused "an unreachable server is named" \
        "cannot open database postgresql://certgate@/certgate\\?host=$T/nothing-here: .*" \
        --db "postgresql://certgate@/certgate?host=$T/nothing-here" user list
    expect_refused "a database that does not exist is named" \
        "cannot open database postgresql://certgate@/nosuchdb\\?host=.*does not exist" \
        --db "postgresql://certgate@/nosuchdb?host=$PG_DIR" user list
    expect_refused "a bad URI is refused" "cannot open database postgresql://\\[: .*" \
        --db "postgresql://[" user list
    cg --db "postgresql://certgate:s3cr3tpw@/nosuchdb?host=$PG_DIR" user list
    [ "$RC" = 1 ] && ! grep -q s3cr3tpw "$T/err" && grep -q "postgresql://certgate@/nosuchdb" "$T/err" &&
        pass "the password in a URI is never shown" || fail "rc $RC, stderr: $(cat "$T/err")"
    cg --db "postgresql:///nosuchdb?host=$PG_DIR&user=certgate&password=s3cr3tpw" user list
    [ "$RC" = 1 ] && ! grep -q s3cr3tpw "$T/err" && pass "nor a password= parameter" ||
        fail "rc $RC, stderr: $(cat "$T/err")"
    done_testing
fi

expect_refused "a command on a missing database is refused" "does not exist.*certgate init" \
    ca list
[ ! -e "$DB" ] && pass "the refused command did not create the file" || fail "file created"

# The newest schema version: the number of migrations in schema/.
LATEST=$(ls "$TESTS_SRCDIR/../schema/"[0-9][0-9][0-9]_*.sql | wc -l)
expect_ok "init creates the database" init
expect_out "init names the database and the version" "ready \\(schema version $LATEST\\)"
mode=$(stat -c %a "$DB")
[ "$mode" = 600 ] && pass "a new database is readable by its owner only" \
    || fail "database mode is $mode"
expect_ok "init again is harmless" init
expect_ok "init --json" --json init
expect_json "init --json reports the schema version" "j['schema_version']" "$LATEST"
mode=$(sqlite3 "$DB" 'PRAGMA journal_mode')
[ "$mode" = wal ] && pass "the database is in WAL mode" || fail "journal mode $mode"
for t in sys_ca_certificate sys_crl sys_user sys_user_role sys_user_certificate; do
    n=$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='$t'")
    [ "$n" = 1 ] && pass "table $t exists" || fail "table $t missing"
done

expect_ok "--db in front of the command" --db "$DB" user list
expect_ok "--db after the command" user list --db "$DB"
CERTGATE_DB="$T/other.db" cg init
[ -f "$T/other.db" ] && pass "\$CERTGATE_DB names the database" || fail "CERTGATE_DB ignored"

sqlite3 "$DB" 'PRAGMA user_version = 42'
expect_refused "a database from a newer certgate is refused" \
    "schema version 42.*newer" user list
sqlite3 "$DB" "PRAGMA user_version = $LATEST"

# A version-1 database (before scripted resources), made from the text of
# schema/001_init.sql, is upgraded in place.
rm -f "$DB" "$DB-wal" "$DB-shm"
{ cat "$TESTS_SRCDIR/../schema/001_init.sql"; echo "PRAGMA user_version = 1;
    INSERT INTO sys_user (name, created_on, updated_on) VALUES ('keepme', 'x', 'x');"; } |
    sqlite3 "$DB"
expect_ok "a command on a version-1 database" user list
expect_out "keeps its data" "keepme"
v=$(sqlite3 "$DB" "PRAGMA user_version")
[ "$v" = "$LATEST" ] && pass "and upgrades it to version $LATEST" || fail "version $v"
n=$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_master WHERE name = 'sys_ws_operation'")
[ "$n" = 1 ] && pass "with the new tables" || fail "sys_ws_operation missing"

: >"$T/e.db"
cg --db "$T/e.db" ca list
[ "$RC" -eq 1 ] && pass "a command on an empty file is refused" || fail "exit $RC"
expect_err "it says to run init" "e.db is not a certgate database: run certgate init"
size=$(stat -c %s "$T/e.db")
[ "$size" = 0 ] && pass "the refused command left the empty file empty" || fail "it grew to $size bytes"
[ ! -e "$T/e.db-wal" ] && [ ! -e "$T/e.db-shm" ] && pass "and made no WAL files" ||
    fail "WAL files left: $(ls "$T"/e.db-*)"
expect_ok "init turns the empty file into a database" --db "$T/e.db" init

echo "this is not a database" >"$T/text.db"
expect_refused "a file that is not a database is refused" "not a certgate database" \
    --db "$T/text.db" user list

expect_ok "--help on a command" ca add --help
expect_out "--help prints the usage" "usage: certgate ca add FILE.pem"
# --help on every command certgate --help lists: exit 0, its usage on stdout.
cg --help
sed -n 's/^  certgate \([a-z]*\)\( [a-z][a-z]*\)\{0,1\}\( .*\)\{0,1\}$/\1\2/p' "$T/out" >"$T/commands"
n=$(wc -l <"$T/commands")
[ "$n" -ge 30 ] && pass "certgate --help lists $n commands" || fail "only $n commands listed"
while read -r group name; do
    # "init", "serve", "check" stand alone; the others are "GROUP NAME".
    case $group in init | serve | check) name="" ;; esac
    # shellcheck disable=SC2086
    cg $group $name --help
    if [ "$RC" -eq 0 ] && grep -q "^usage: certgate $group${name:+ $name}\b" "$T/out"; then
        pass "certgate $group${name:+ $name} --help prints its usage"
    else
        fail "certgate $group${name:+ $name} --help: exit $RC: $(head -c 300 "$T/out") $(cat "$T/err")"
    fi
done <"$T/commands"
cg frobnicate
[ "$RC" -eq 2 ] && pass "an unknown command is a usage error" || fail "exit $RC"
cg ca frobnicate
[ "$RC" -eq 2 ] && pass "an unknown sub-command is a usage error" || fail "exit $RC"
cg ca add
[ "$RC" -eq 2 ] && pass "a missing argument is a usage error" || fail "exit $RC"
expect_err "the usage error says how to call it" "usage: certgate ca add"
# expect_option_error LINE ARGS...: a usage error (exit 2) whose stderr is
# exactly the one line LINE (an extended regex).
expect_option_error() {
    line=$1
    shift
    expect_usage "certgate $* is a one-line usage error" "^$line\$" "$@"
    n=$(wc -l <"$T/err")
    [ "$n" -eq 1 ] && pass "certgate $*: one line on stderr" ||
        fail "certgate $*: $n lines on stderr: $(cat "$T/err")"
}
expect_option_error "certgate ca add: option --name needs a value \\(see certgate ca add --help\\)" \
    ca add chain.pem --name
expect_option_error "certgate ca add: unknown option --frob \\(see certgate ca add --help\\)" \
    ca add chain.pem --frob
expect_option_error "certgate ca add: unknown option -x \\(see certgate ca add --help\\)" \
    ca add chain.pem -x
expect_option_error "certgate ca delete: option --force takes no value \\(see certgate ca delete --help\\)" \
    ca delete 1 --force=yes
expect_option_error "certgate cert map: option --name needs a value \\(see certgate cert map --help\\)" \
    cert map u client.pem --name
expect_option_error "certgate cert rule: option --ca needs a value \\(see certgate cert rule --help\\)" \
    cert rule u --match cn=x --ca
expect_option_error "certgate cert list: option --user needs a value \\(see certgate cert list --help\\)" \
    cert list --user
expect_option_error "certgate user add: option --roles needs a value \\(see certgate user add --help\\)" \
    user add u --roles
expect_option_error "certgate user password: unknown option --bogus \\(see certgate user password --help\\)" \
    user password u --bogus
cg --db
[ "$RC" -eq 2 ] && pass "--db without a value is a usage error" || fail "exit $RC"
done_testing
