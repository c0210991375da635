# Helpers for the server tests, on top of tests/lib.sh: a real `certgate
# serve` on 127.0.0.1 with a free port, and curl with the test PKI.
. "$TESTS_SRCDIR/lib.sh"
need curl python3 sqlite3

SERVER_PID=""
SERVER_LOG="$T/server.log"

stop_server_quietly() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=""
}
CLEANUP_HOOKS="$CLEANUP_HOOKS stop_server_quietly"

# setup_db: a database with the test CA chain and integrator1 mapped to client.pem.
setup_db() {
    cg init || return 1
    cg ca add "$PKI/chain.pem"
    cg user add integrator1 --roles push
    cg cert map integrator1 "$PKI/client.pem"
}

# start_server [ARGS...]: serve with the test server certificate on a free
# port; sets PORT and URL. Fails the script if it does not come up in 10 s.
start_server() {
    : >"$SERVER_LOG"
    "$CERTGATE" serve --cert "${SERVER_CERT:-$PKI/server-fullchain.pem}" \
        --key "${SERVER_KEY:-$PKI/server.key}" \
        --listen 127.0.0.1:0 --log-file "$SERVER_LOG" "$@" >"$T/server.out" 2>&1 &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 1 100); do
        # the "listening" line (its next key is basic_auth), any address
        ADDRESS=$(sed -n 's/.*"address":"\([^"]*:[0-9]*\)","basic_auth".*/\1/p' "$SERVER_LOG" |
            tail -n 1)
        PORT=${ADDRESS##*:}
        [ -n "$PORT" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        echo "# server did not start:"
        cat "$T/server.out" "$SERVER_LOG"
        fail "server starts"
        done_testing
    fi
    URL="https://127.0.0.1:$PORT"
}

# stop_server: SIGTERM and wait (at most 40 s); SERVER_RC holds its exit code.
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null
    SERVER_RC=124
    for _ in $(seq 1 400); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID"
            SERVER_RC=$?
            break
        fi
        sleep 0.1
    done
    SERVER_PID=""
}

# req ARGS...: curl against the server (trusting the test root); sets STATUS,
# the body in $T/body and the headers in $T/headers.
req() {
    STATUS=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 20 \
        --cacert "$PKI/root.pem" "$@")
    CURL_RC=$?
}

# as NAME: curl arguments presenting $PKI/NAME.pem with its key.
as() {
    echo "--cert $PKI/$1.pem --key $PKI/$1.key"
}

header() {
    tr -d '\r' <"$T/headers" | sed -n "s/^$1: //Ip" | tail -n 1
}

# expect_status DESC STATUS [REASON]: after req.
expect_status() {
    reason=$(header X-Certgate-Reason)
    if [ "$STATUS" != "$2" ]; then
        fail "$1: status $STATUS (curl $CURL_RC), expected $2: $(head -c 400 "$T/body")"
    elif [ -n "${3:-}" ] && [ "$reason" != "$3" ]; then
        fail "$1: X-Certgate-Reason '$reason', expected '$3'"
    else
        pass "$1"
    fi
}

# body_json EXPR: python expression on the response body as `j`.
body_json() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$T/body" "$1" 2>&1
}

expect_body() {
    got=$(body_json "$2")
    if [ "$got" = "$3" ]; then
        pass "$1"
    else
        fail "$1: $2 is '$got', expected '$3'"
    fi
}

NO_CREDS='{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}'

# issue_client NAME TEMPLATE-LINE...: $PKI/NAME.pem and NAME.key, a client
# certificate issued by the test issuing CA (certtool template lines, e.g.
# 'cn = "x"' or 'expiration_date = "..."').
issue_client() {
    name=$1
    shift
    certtool --generate-privkey --key-type ecdsa --curve secp256r1 --no-text \
        --outfile "$PKI/$name.key" 2>/dev/null
    { echo "serial = $(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"; echo tls_www_client
        echo signing_key; printf '%s\n' "$@"; } >"$T/$name.tmpl"
    certtool --generate-certificate --load-privkey "$PKI/$name.key" \
        --load-ca-certificate "$PKI/int.pem" --load-ca-privkey "$PKI/int.key" \
        --template "$T/$name.tmpl" --outfile "$PKI/$name.pem" --no-text 2>/dev/null
}

# raw_req [--no-cert] FILE...: send each FILE as it is on one TLS connection
# (client.py raw); one "STATUS BODY" line per answer then "open" or
# "closed", in $T/raw.
raw_req() {
    if [ "$1" = --no-cert ]; then
        shift
        set -- - - "$@"
    else
        set -- "$PKI/client.pem" "$PKI/client.key" "$@"
    fi
    python3 "$TESTS_SRCDIR/server/client.py" raw 127.0.0.1 "$PORT" "$PKI/root.pem" "$@" \
        >"$T/raw" 2>&1
}

# raw_line N: line N of $T/raw.
raw_line() {
    sed -n "${1}p" "$T/raw"
}
