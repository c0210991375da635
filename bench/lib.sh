# Shared by the bench scripts (sourced, not run).

# bench_tmp NAME: a temporary directory in $t, removed at exit with every
# process whose pid is in one of the variables named by $BENCH_PIDS (set
# it before; the variables are read at exit). The exit status is kept: a
# failing kill of a server that has exited must not turn a good run into 1.
bench_tmp() {
    t=$(mktemp -d "/tmp/certgate-$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    rc=$?
    for v in $BENCH_PIDS; do
        eval "p=\${$v:-}"
        [ -n "$p" ] && kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$t"
    exit "$rc"
}

# bench_trust_db CERTGATE PKI: in the database named by $CERTGATE_DB
# (created), the test PKI's CA chain and user integrator1 (role push)
# mapped to PKI/client.pem.
bench_trust_db() {
    "$1" init >/dev/null
    "$1" ca add "$2/chain.pem" >/dev/null
    "$1" user add integrator1 --roles push >/dev/null
    "$1" cert map integrator1 "$2/client.pem" >/dev/null
}

# bench_push_db CERTGATE TOP PKI: bench_trust_db, and the data table
# u_inbound with the scripted resource POST /api/acme/inbound/records
# (contrib/scripts/push.lua).
bench_push_db() {
    bench_trust_db "$1" "$3"
    "$1" table create u_inbound name:text payload:json source:text --roles push >/dev/null
    "$1" resource add --api acme/inbound --method POST --path /records \
        --script "$2/contrib/scripts/push.lua" --roles push >/dev/null
}

# bench_loadgen TOP: builds bench/loadgen.c into $t/loadgen.
bench_loadgen() {
    # shellcheck disable=SC2046 # pkg-config's flags are words
    cc -O2 -o "$t/loadgen" "$1/bench/loadgen.c" $(pkg-config --cflags --libs gnutls) -lpthread
}

# bench_port LOG: waits (at most 10 s) for the "listening" line of a
# certgate logging to LOG on 127.0.0.1 and prints its port; fails without.
bench_port() {
    for _ in $(seq 1 100); do
        bp=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$1" 2>/dev/null | head -n 1)
        [ -n "$bp" ] && { echo "$bp"; return 0; }
        sleep 0.1
    done
    return 1
}

# bench_push_setup CERTGATE TOP: a test PKI in $t/pki, and in a new SQLite
# database $t/bench.db (exported as CERTGATE_DB) what bench_push_db adds.
bench_push_setup() {
    sh "$2/tests/pki/mkpki.sh" "$t/pki" >/dev/null 2>&1
    CERTGATE_DB="$t/bench.db"
    export CERTGATE_DB
    bench_push_db "$1" "$2" "$t/pki"
}
