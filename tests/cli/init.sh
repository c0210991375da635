#!/bin/sh
# certgate init and the database checks every command makes.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3

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
