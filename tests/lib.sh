# Shared helpers for the shell tests: a temp dir with a test PKI made by
# tests/pki/mkpki.sh, a database, the real certgate binary, and assertions.
# Source it with: . "$TESTS_SRCDIR/lib.sh"
# Every assertion prints "ok - ..." or "not ok - ..."; the script's exit
# status is the number of failures (capped), 77 when a prerequisite is missing.

set -u

: "${CERTGATE:?CERTGATE must point at the certgate binary (make check sets it)}"
: "${TESTS_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"

# Every file a test writes lives under $T; without it they would land in the
# current directory (or /), so a failed mktemp stops the test here.
T=$(mktemp -d "${TMPDIR:-/tmp}/certgate-test.XXXXXX") && [ -d "$T" ] || {
    echo "Bail out! cannot create a work directory under ${TMPDIR:-/tmp}" >&2
    exit 99
}
PKI="$T/pki"
DB="$T/certgate.db"
export CERTGATE_DB="$DB"
FAILED=0
PASSED=0
CLEANUP_HOOKS=""

cleanup() {
    for hook in $CLEANUP_HOOKS; do
        "$hook" || true
    done
    if [ "$FAILED" -eq 0 ]; then
        rm -rf "$T"
    else
        echo "# test files kept in $T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# on_pg: whether the tests run on PostgreSQL (CERTGATE_TEST_PG=1).
on_pg() {
    [ "${CERTGATE_TEST_PG:-0}" = 1 ]
}

# reset_db: no database any more (the next cg init makes a new one).
reset_db() {
    if on_pg; then
        pg_sql "DROP SCHEMA public CASCADE" "CREATE SCHEMA public" >/dev/null
    else
        rm -f "$DB" "$DB-wal" "$DB-shm"
    fi
}

# CERTGATE_TEST_PG=1: the database is a fresh PostgreSQL one (tests/pg.sh
# starts a private server per test script), and the tests' sqlite3 "$DB" SQL
# pokes run the same SQL through psql.
if [ "${CERTGATE_TEST_PG:-0}" = 1 ]; then
    . "$TESTS_SRCDIR/pg.sh"
    pg_start
    DB=$PG_URI
    export CERTGATE_DB="$DB"
    CLEANUP_HOOKS="$CLEANUP_HOOKS pg_stop"
    sqlite3() {
        if [ "${1:-}" != "$DB" ]; then
            command sqlite3 "$@"
            return
        fi
        shift
        # A boolean reads as SQLite's 1 or 0.
        if [ $# -eq 0 ]; then
            "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$PG_URI" -f -
        else
            pg_sql "$@"
        fi | sed -e 's/^t$/1/' -e 's/^f$/0/'
    }
fi

need() {
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "SKIP: $tool is not installed"
            exit 77
        fi
    done
}

# make_pki: the test PKI in $PKI (root, intermediate, clients, CRLs...).
make_pki() {
    need certtool
    mkdir -p "$PKI"
    if ! sh "$TESTS_SRCDIR/pki/mkpki.sh" "$PKI" >"$T/mkpki.log" 2>&1; then
        cat "$T/mkpki.log"
        echo "Bail out! mkpki.sh failed"
        exit 99
    fi
}

pass() {
    PASSED=$((PASSED + 1))
    echo "ok $((PASSED + FAILED)) - $*"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "not ok $((PASSED + FAILED)) - $*"
}

# run CMD...: run a command, stdout in $T/out, stderr in $T/err, status in $RC.
run() {
    "$@" >"$T/out" 2>"$T/err"
    RC=$?
    return 0
}

# cg ARGS...: run certgate the same way.
cg() {
    run "$CERTGATE" "$@"
}

# RUNNER: what expect_ok and expect_refused call (cg, or run for a shell line).
RUNNER=cg

# db_state: a digest of the database (its dump, schema version and journal
# mode), to prove a refused command changed nothing. Fails (status 1, the
# reason on stdout) when the database cannot be read, so a broken dump can
# never pass for an unchanged database.
db_state() {
    if [ "${CERTGATE_TEST_PG:-0}" = 1 ]; then
        # Without pg_dump's random \restrict keys, and without the identity
        # sequences, which a refused INSERT advances (they are not transactional).
        if ! "$PG_BIN/pg_dump" --no-owner "$DB" >"$T/state.raw" 2>"$T/state.err"; then
            echo "cannot dump $DB: $(cat "$T/state.err")"
            return 1
        fi
        grep -v -e '^\\restrict ' -e '^\\unrestrict ' -e '^SELECT pg_catalog.setval' \
            "$T/state.raw" | md5sum
        return 0
    fi
    if [ ! -e "$DB" ]; then
        echo "no database"
        return 0
    fi
    if ! sqlite3 "$DB" .dump 'PRAGMA user_version' 'PRAGMA journal_mode' \
        >"$T/state" 2>"$T/state.err" || [ -s "$T/state.err" ]; then
        echo "cannot dump $DB: $(cat "$T/state.err")"
        return 1
    fi
    md5sum <"$T/state"
}

# meaningful PATTERN: whether PATTERN says something about the text (at least
# four characters, not just '.'-style wildcards).
meaningful() {
    case $1 in
    *[A-Za-z0-9]*[A-Za-z0-9]*[A-Za-z0-9]*) [ ${#1} -ge 4 ] ;;
    *) return 1 ;;
    esac
}

# expect_ok DESCRIPTION ARGS...: the command succeeds.
expect_ok() {
    desc=$1
    shift
    $RUNNER "$@"
    if [ "$RC" -eq 0 ]; then
        pass "$desc"
    else
        fail "$desc: exit $RC, stderr: $(cat "$T/err")"
    fi
}

# expect_status STATUS DESCRIPTION PATTERN ARGS...: the command exits with
# STATUS, its stderr matches the extended regex PATTERN, and the database is
# unchanged.
expect_status() {
    want=$1
    desc=$2
    pattern=$3
    shift 3
    if ! meaningful "$pattern"; then
        fail "$desc: the test's stderr pattern /$pattern/ proves nothing"
        return
    fi
    if ! before=$(db_state); then
        fail "$desc: before the command: $before"
        return
    fi
    $RUNNER "$@"
    if ! after=$(db_state); then
        fail "$desc: after the command: $after"
    elif [ "$RC" -ne "$want" ]; then
        fail "$desc: exit $RC, expected $want; stdout: $(head -c 500 "$T/out"); stderr: $(cat "$T/err")"
    elif ! grep -Eq -- "$pattern" "$T/err"; then
        fail "$desc: stderr does not match /$pattern/: $(cat "$T/err")"
    elif [ "$before" != "$after" ]; then
        fail "$desc: the database changed although the command was refused"
    else
        pass "$desc"
    fi
}

# expect_refused DESCRIPTION PATTERN ARGS...: the command is refused (exit
# exactly 1), its stderr matches PATTERN, and the database is unchanged.
expect_refused() {
    expect_status 1 "$@"
}

# expect_usage DESCRIPTION PATTERN ARGS...: a usage error (exit exactly 2)
# with PATTERN on stderr and the database unchanged.
expect_usage() {
    expect_status 2 "$@"
}

# expect_out DESCRIPTION PATTERN: the last command's stdout matches PATTERN.
expect_out() {
    if grep -Eq -- "$2" "$T/out"; then
        pass "$1"
    else
        fail "$1: stdout does not match /$2/: $(head -c 2000 "$T/out")"
    fi
}

# expect_err DESCRIPTION PATTERN: the last command's stderr matches PATTERN.
expect_err() {
    if ! meaningful "$2"; then
        fail "$1: the test's stderr pattern /$2/ proves nothing"
    elif grep -Eq -- "$2" "$T/err"; then
        pass "$1"
    else
        fail "$1: stderr does not match /$2/: $(cat "$T/err")"
    fi
}

# json_get EXPR: evaluate a python expression on the last stdout parsed as JSON
# (bound to `j`), print the result.
json_get() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$T/out" "$1"
}

# expect_json DESCRIPTION EXPR EXPECTED: json_get EXPR equals EXPECTED.
expect_json() {
    got=$(json_get "$2" 2>&1)
    if [ "$got" = "$3" ]; then
        pass "$1"
    else
        fail "$1: $2 is '$got', expected '$3'"
    fi
}

# done_testing: print the summary line and exit with the failure count.
done_testing() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -gt 100 ] && FAILED=100
    exit "$FAILED"
}
