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
# the body in $T/body and the headers in $T/headers (both emptied first: a
# request that gets no answer must not leave the last one's behind).
req() {
    : >"$T/body"
    : >"$T/headers"
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

HAPROXY_PID=""
stop_haproxy() {
    if [ -n "$HAPROXY_PID" ] && kill -0 "$HAPROXY_PID" 2>/dev/null; then
        kill "$HAPROXY_PID" 2>/dev/null
        wait "$HAPROXY_PID" 2>/dev/null
    fi
    HAPROXY_PID=""
}
CLEANUP_HOOKS="$CLEANUP_HOOKS stop_haproxy"

# free_port: a TCP port of 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_haproxy PORT...: HAProxy in the foreground (-db; fine as root too)
# on a free port HPORT, TCP mode, balancing round robin over certgate nodes
# node1, node2... on 127.0.0.1:PORT... with a PROXY v2 header each, and
# health checks that send a LOCAL header, do TLS and ask GET /healthz.
# HAPROXY_CHECK sets the checks' timing (default "inter 1s"; an answer may
# take 2 s, so a busy node is not taken for a dead one, while a closed port
# fails at once). HAProxy's own messages (a server going DOWN or UP) go to
# $T/haproxy.log. Waits until it listens (without connecting: a probe would
# be a connection too).
start_haproxy() {
    HPORT=$(free_port)
    {
        cat <<EOC
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 2s
frontend certgate_in
    bind 127.0.0.1:$HPORT
    default_backend certgate_nodes
backend certgate_nodes
    balance roundrobin
    option redispatch
    retries 2
    option httpchk GET /healthz
EOC
        node_n=0
        for node_port in "$@"; do
            node_n=$((node_n + 1))
            echo "    server node$node_n 127.0.0.1:$node_port send-proxy-v2 check check-send-proxy check-ssl verify none ${HAPROXY_CHECK:-inter 1s}"
        done
    } >"$T/haproxy.cfg"
    haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    for _ in $(seq 1 50); do
        python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' \
            "$HPORT" 2>/dev/null || return 0
        sleep 0.1
    done
    cat "$T/haproxy.log"
    fail "haproxy starts"
    done_testing
}

# setup_push: the data table u_inbound and contrib/scripts/push.lua as
# POST /api/acme/inbound/records, for role push (the benchmarks' push).
setup_push() {
    cg table create u_inbound name:text payload:json source:text --roles push
    cg resource add --api acme/inbound --method POST --path /records \
        --script "$TESTS_SRCDIR/../contrib/scripts/push.lua" --roles push
}
