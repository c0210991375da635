# A private PostgreSQL for the tests: Debian's postgresql-15 (initdb and
# pg_ctl), started in a temporary directory on a Unix socket only (no TCP
# port), owned and run by an unprivileged user, since PostgreSQL refuses to
# run as root (CI runs as root: the server then runs as nobody).
# Source it (tests/lib.sh does when CERTGATE_TEST_PG=1), then:
#   pg_start      start a server; sets PG_DIR (its directory, the socket's
#                 too) and PG_URI (a libpq URI of its empty database certgate)
#   pg_newdb NAME create another empty database and print its URI
#   pg_sql SQL... run SQL on the certgate database (psql, unaligned, no header)
#   pg_halt       stop the server (fast shutdown), keeping its data
#   pg_resume     start it again after pg_halt
#   pg_stop       stop the server and remove its directory
# Or run it: sh tests/pg.sh CMD... starts a server, runs CMD with PG_URI
# exported, and stops it.
# The data directory of a fresh initdb is made once per user and copied for
# each server (initdb takes seconds, a copy a tenth of one).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# pg_as CMD...: run CMD as the server's user.
pg_as() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

# A directory the server's user can reach: under $TMPDIR when it can, else /tmp.
pg_mkdir() {
    for base in "${TMPDIR:-/tmp}" /tmp; do
        d=$(mktemp -d "$base/certgate-pg.XXXXXX" 2>/dev/null) || continue
        chmod 700 "$d"
        [ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$d"
        if pg_as test -w "$d"; then
            echo "$d"
            return 0
        fi
        rm -rf "$d"
    done
    return 1
}

pg_start() {
    if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
        echo "SKIP: PostgreSQL is not installed ($PG_BIN/initdb; apt-get install postgresql-15)"
        exit 77
    fi
    PG_USER=$(id -un)
    [ "$(id -u)" -eq 0 ] && PG_USER=nobody
    # The template: one initdb, kept (a fresh data directory) for the next servers.
    tpl="${TMPDIR:-/tmp}/certgate-pg-template-$(id -u)-15"
    if [ ! -f "$tpl/ready" ]; then
        if mkdir "$tpl.lock" 2>/dev/null; then
            rm -rf "$tpl"
            t=$(pg_mkdir) || {
                rmdir "$tpl.lock"
                echo "Bail out! no directory $PG_USER can write for PostgreSQL"
                exit 99
            }
            if ! pg_as "$PG_BIN/initdb" -D "$t/data" -A trust -U certgate -E UTF8 \
                --locale=C.UTF-8 --no-sync >"$t/initdb.log" 2>&1; then
                cat "$t/initdb.log"
                rmdir "$tpl.lock"
                echo "Bail out! initdb failed"
                exit 99
            fi
            mv "$t" "$tpl" && : >"$tpl/ready"
            rmdir "$tpl.lock"
        else
            i=0
            while [ ! -f "$tpl/ready" ] && [ $i -lt 600 ]; do
                sleep 0.1
                i=$((i + 1))
            done
            if [ ! -f "$tpl/ready" ]; then
                echo "Bail out! no PostgreSQL template in $tpl after 60 s (another test's initdb"
                echo "Bail out! died? remove $tpl.lock when no test runs)"
                exit 99
            fi
        fi
    fi
    PG_DIR=$(pg_mkdir) || {
        echo "Bail out! no directory $PG_USER can write for PostgreSQL"
        exit 99
    }
    pg_as cp -a "$tpl/data" "$PG_DIR/data"
    if ! pg_resume; then
        cat "$PG_DIR/log"
        echo "Bail out! PostgreSQL did not start"
        exit 99
    fi
    PG_URI=$(pg_newdb certgate) || {
        echo "Bail out! cannot create the database"
        exit 99
    }
}

pg_resume() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 \
        -o "-k $PG_DIR -c listen_addresses= -c fsync=on -c max_connections=200" \
        start >/dev/null 2>&1
}

pg_halt() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -m fast stop >/dev/null 2>&1
}

pg_newdb() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        "postgresql://certgate@/postgres?host=$PG_DIR" -c "CREATE DATABASE $1" >/dev/null || return 1
    echo "postgresql://certgate@/$1?host=$PG_DIR"
}

pg_sql() {
    for q in "$@"; do
        "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$PG_URI" -c "$q" || return 1
    done
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -m immediate stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
    PG_DIR=
}

# sh tests/pg.sh CMD...
case "${0##*/}" in
pg.sh)
    set -u
    pg_start
    export PG_URI PG_DIR
    trap pg_stop EXIT
    trap 'exit 130' INT TERM
    "$@"
    ;;
esac
