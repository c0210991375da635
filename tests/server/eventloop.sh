#!/bin/sh
# --event-loop: epoll (the default) named explicitly, and poll. On epoll,
# the server behaves as on poll where certgate adds its own parts
# (live trust changes on a keep-alive connection, the head timeout, the
# lingering close, one record per answer) and a bad value refused; and a
# TLS handshake that waits for the client costs no CPU while it waits
# (libmicrohttpd 0.9.75 alone spins a core: http/park.c), ends at
# --head-timeout, and does not keep the server from stopping. poll still
# serves, and ends a stalled handshake at --head-timeout.
. "$TESTS_SRCDIR/server/lib.sh"
need openssl curl python3
make_pki
setup_db
printf 'response.status = 201\nresponse.body = { ok = true }\n' >"$T/in.lua"
cg resource add --api t/in --method POST --path /rec --script "$T/in.lua" --roles push >/dev/null
CLIENT_PY="$TESTS_SRCDIR/server/client.py"
WHO=/api/certgate/v1/whoami

if "$CERTGATE" serve --cert "$PKI/server.pem" --key "$PKI/server.key" --event-loop select \
    >"$T/out" 2>&1; then
    fail "--event-loop select was accepted"
else
    grep -q "event-loop: 'select' is not one of the allowed values" "$T/out" &&
        pass "--event-loop select is refused, naming the flag" ||
        fail "--event-loop select: $(cat "$T/out")"
fi

# serves LOOP: the running server lets a client in and answers a push.
serves() {
    req $(as client) "$URL$WHO"
    expect_status "$1: a client with its certificate gets in" 200
    req $(as client) -H 'Content-Type: application/json' -d '{"a":1}' "$URL/api/t/in/rec"
    expect_status "$1: a scripted push is answered" 201
}

start_server --event-loop epoll --head-timeout 2
serves epoll
out=$(python3 "$CLIENT_PY" keepalive 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" -- "$CERTGATE" --db "$DB" user lock integrator1)
[ "$out" = "200 401 user_locked same-connection" ] &&
    pass "epoll: a user locked is refused within a second on the open connection" ||
    fail "epoll keep-alive lock: $out"
cg user unlock integrator1 >/dev/null
sleep 1.2
out=$(python3 "$CLIENT_PY" trickle 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" head 8)
case "$out" in
"closed after "[1-5]" s") pass "epoll: a trickled head is cut at --head-timeout ($out)" ;;
*) fail "epoll head timeout: $out" ;;
esac
python3 "$CLIENT_PY" flood 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" /api/t/in/rec 10 20000000 >"$T/flood" 2>&1
if grep -q '^sent all' "$T/flood" && grep -q '^413 ' "$T/flood"; then
    pass "epoll: a client still sending gets its 413 (lingering close)"
else
    fail "epoll 413 while sending: $(tr '\n' ' ' <"$T/flood" | cut -c1-300)"
fi
printf 'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' "$WHO" |
    openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI/root.pem" -cert "$PKI/client.pem" \
        -key "$PKI/client.key" -msg -ign_eof 2>/dev/null >"$T/sc"
n=$(awk '/^<<< .*InnerContent/ { inner = 1; next } inner && /^    17/ { n++ } { inner = 0 }
    END { print n + 0 }' "$T/sc")
[ "$n" = 1 ] && pass "epoll: one record per answer" || fail "epoll: $n records for one answer"
# The server's CPU time so far, in clock ticks (utime + stime).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
ticks_per_s=$(getconf CLK_TCK)
# Each client holds its handshake for --head-timeout (2 s); libmicrohttpd's
# spin would cost about 2 s of CPU, so a quarter of that is the bound.
for mode in silent stall; do
    before=$(cpu_ticks)
    if [ "$mode" = silent ]; then
        out=$(python3 "$CLIENT_PY" trickle 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
            "$PKI/client.key" silent 8)
    else
        out=$(python3 "$CLIENT_PY" stall 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
            "$PKI/client.key" 8)
    fi
    used=$(($(cpu_ticks) - before))
    case "$out" in
    "closed after "[1-5]" s") pass "epoll: a handshake stalled ($mode) ends at --head-timeout ($out)" ;;
    *) fail "epoll stalled handshake ($mode): $out" ;;
    esac
    [ "$used" -lt $((ticks_per_s / 2)) ] &&
        pass "epoll: the server waits for a stalled handshake ($mode) without spinning ($used ticks)" ||
        fail "epoll: $used ticks of CPU ($ticks_per_s a second) while a handshake ($mode) waited"
done
req $(as client) "$URL$WHO"
expect_status "epoll: handshakes still complete after the stalled ones" 200

# A stop while a handshake waits: it is resumed, and the server ends well.
python3 "$CLIENT_PY" stall 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" 8 >"$T/stalled" 2>"$T/stalled.err" &
stalled=$!
for _ in $(seq 1 100); do
    grep -q stalled "$T/stalled.err" && break
    sleep 0.1
done
stop_server
wait "$stalled" || true
if [ "$SERVER_RC" = 0 ] && grep -q stalled "$T/stalled.err" &&
    ! grep -qi "suspended" "$T/server.out" "$SERVER_LOG"; then
    pass "epoll: the server stops with a handshake waiting ($(cat "$T/stalled"))"
else
    fail "epoll stop with a waiting handshake: rc $SERVER_RC, $(cat "$T/server.out" "$T/stalled.err")"
fi

start_server --event-loop poll --head-timeout 2
serves poll
out=$(python3 "$CLIENT_PY" stall 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" 8 2>/dev/null)
case "$out" in
"closed after "[1-5]" s") pass "poll: a stalled handshake ends at --head-timeout ($out)" ;;
*) fail "poll stalled handshake: $out" ;;
esac
stop_server

# A stalled handshake ends at --idle-timeout when that is the sooner one
# (the parked connection is out of libmicrohttpd's own timeout).
start_server --idle-timeout 1 --head-timeout 6
out=$(python3 "$CLIENT_PY" stall 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" 8 2>/dev/null)
case "$out" in
"closed after "[1-2]" s") pass "a stalled handshake ends at --idle-timeout when sooner ($out)" ;;
*) fail "stalled handshake with --idle-timeout 1: $out" ;;
esac
grep -q '"event":"head_timeout".*sooner than --head-timeout' "$SERVER_LOG" ||
    grep -q 'sooner than --head-timeout.*"event":"head_timeout"' "$SERVER_LOG" &&
    pass "its log line names --idle-timeout" || fail "log: $(grep head_timeout "$SERVER_LOG")"
done_testing
