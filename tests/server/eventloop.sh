#!/bin/sh
# --event-loop epoll: the same server behaviour on libmicrohttpd's epoll
# loop as on the default poll loop, where certgate adds its own parts
# (live trust changes on a keep-alive connection, the head timeout, the
# lingering close, one record per answer) and a bad value refused.
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

start_server --event-loop epoll --head-timeout 2
req $(as client) "$URL$WHO"
expect_status "epoll: a client with its certificate gets in" 200
req $(as client) -H 'Content-Type: application/json' -d '{"a":1}' "$URL/api/t/in/rec"
expect_status "epoll: a scripted push is answered" 201
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
done_testing
