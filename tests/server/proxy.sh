#!/bin/sh
# certgate serve --proxy-protocol behind a real HAProxy (TCP mode,
# send-proxy-v2): the client's address from the PROXY header in the logs,
# the per-address connection limit and the Basic-auth limiter; the header
# refused from untrusted peers, required from trusted ones, and cut at
# --head-timeout. Forged and malformed headers are written raw by proxy.py.
. "$TESTS_SRCDIR/server/lib.sh"
need haproxy
make_pki
setup_db
for u in scripter pusher; do
    printf 'a long enough password\n' | "$CERTGATE" user add $u --roles push --password-stdin \
        >/dev/null
done
WHO=/api/certgate/v1/whoami
PROXY_PY="$TESTS_SRCDIR/server/proxy.py"

# via SRC ARGS...: curl through HAProxy from source address SRC.
via() {
    src=$1
    shift
    req --interface "$src" "$@"
}

# log_has DESC PATTERN: a line of the server log matches (grep -E).
log_has() {
    if grep -Eq "$2" "$SERVER_LOG"; then
        pass "$1"
    else
        fail "$1: no line matching $2"
    fi
}

raw() {
    python3 "$PROXY_PY" send "$1" 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
        "$PKI/client.key" "$2" "$WHO"
}

# ---- startup: the flags are checked before anything is opened ----
cg serve --cert "$PKI/server-fullchain.pem" --key "$PKI/server.key" --proxy-protocol
[ "$RC" = 2 ] && grep -q -- "--proxy-protocol needs --trusted-proxy" "$T/err" &&
    pass "--proxy-protocol without --trusted-proxy: exit 2 naming it" ||
    fail "--proxy-protocol alone: exit $RC: $(cat "$T/err")"
for bad in 10.0.0.1/8 10.0.0.0/33 lb.example.com "10.0.0.0/8,,::1" "::1/129"; do
    cg serve --cert "$PKI/server-fullchain.pem" --key "$PKI/server.key" --proxy-protocol \
        --trusted-proxy "$bad"
    [ "$RC" = 2 ] && grep -q -- "--trusted-proxy '$bad'" "$T/err" &&
        pass "--trusted-proxy $bad: exit 2 naming it" ||
        fail "--trusted-proxy $bad: exit $RC: $(cat "$T/err")"
done
printf 'proxy-protocol = on\ntrusted-proxy = 127.0.0.1/32, ::1\n' >"$T/proxy.conf"
cg serve --cert "$PKI/server-fullchain.pem" --key "$PKI/server.key" --config "$T/proxy.conf" \
    --check-config
[ "$RC" = 0 ] && pass "the config file keys proxy-protocol and trusted-proxy" ||
    fail "config keys: exit $RC: $(cat "$T/err")"
printf 'proxy-protocol = yes\n' >"$T/bad.conf"
cg serve --cert "$PKI/server-fullchain.pem" --key "$PKI/server.key" --config "$T/bad.conf"
[ "$RC" = 2 ] && grep -q "proxy-protocol: 'yes'" "$T/err" &&
    pass "proxy-protocol = yes in the file: exit 2 naming it" || fail "bad key: $(cat "$T/err")"

start_server --proxy-protocol --trusted-proxy 127.0.0.1/32 --head-timeout 2 \
    --max-connections-per-ip 3
start_haproxy "$PORT"

# ---- through_haproxy_the_log_shows_the_client ----
via 127.0.0.2 $(as client) "https://127.0.0.1:$HPORT$WHO"
expect_status "whoami from 127.0.0.2 through HAProxy" 200
expect_body "as integrator1" "j['result']['user']" integrator1
log_has "the access log names 127.0.0.2" "\"path\":\"$WHO\",\"remote\":\"127.0.0.2\""
grep "\"event\":\"request\".*\"remote\":\"127.0.0.1\"" "$SERVER_LOG" | grep -qv '"path":"/healthz"' &&
    fail "a request logged with HAProxy's address 127.0.0.1" ||
    pass "no request logged with HAProxy's address (but its health checks)"
via 127.0.0.2 -u "scripter:a long enough password" "https://127.0.0.1:$HPORT$WHO"
expect_status "Basic through HAProxy" 200

# ---- a_direct_tls_client_from_an_untrusted_address_is_served ----
req --interface 127.0.0.3 $(as client) "$URL$WHO"
expect_status "direct TLS client from 127.0.0.3 (not a trusted proxy)" 200
log_has "logged with its own address" "\"path\":\"$WHO\",\"remote\":\"127.0.0.3\""

# ---- headers a trusted peer may send, the ClientHello in the same write ----
out=$(raw 127.0.0.1 v4:192.0.2.7)
[ "$out" = 200 ] && pass "trusted peer, v2 IPv4 header + ClientHello in one write: 200" ||
    fail "v4 header: $out"
log_has "logged as 192.0.2.7" "\"path\":\"$WHO\",\"remote\":\"192.0.2.7\""
out=$(raw 127.0.0.1 v6:2001:db8::42)
[ "$out" = 200 ] && pass "v2 IPv6 header: 200" || fail "v6 header: $out"
log_has "logged as 2001:db8::42" "\"path\":\"$WHO\",\"remote\":\"2001:db8::42\""
out=$(raw 127.0.0.1 v4tlv:192.0.2.8)
[ "$out" = 200 ] && pass "v2 header with 300 bytes of TLVs: 200" || fail "TLVs: $out"
log_has "logged as 192.0.2.8" "\"path\":\"$WHO\",\"remote\":\"192.0.2.8\""
out=$(raw 127.0.0.1 local)
[ "$out" = 200 ] && pass "LOCAL header: 200" || fail "LOCAL: $out"
log_has "LOCAL: logged with the proxy's own address" "\"path\":\"$WHO\",\"remote\":\"127.0.0.1\""

# ---- a_forged_header_from_an_untrusted_address_is_refused ----
out=$(raw 127.0.0.3 v4:10.9.9.9)
case "$out" in
refused:*) pass "forged v2 header from 127.0.0.3: connection refused" ;;
*) fail "forged v2 header from 127.0.0.3: $out" ;;
esac
log_has "logged as proxy_header_refused for the untrusted peer" \
    '"event":"proxy_header_refused","reason":"untrusted_peer","remote":"127.0.0.3","time":"[^"]*","trusted":false'
out=$(raw 127.0.0.3 v1:10.9.9.9)
case "$out" in
refused:*) pass "forged v1 header from 127.0.0.3: connection refused" ;;
*) fail "forged v1 header: $out" ;;
esac
[ "$(grep -c '"reason":"untrusted_peer","remote":"127.0.0.3"' "$SERVER_LOG")" = 2 ] &&
    pass "one line each" || fail "untrusted_peer lines: $(grep -c untrusted_peer "$SERVER_LOG")"
grep -q '"remote":"10.9.9.9"' "$SERVER_LOG" && fail "the forged address reached the log" ||
    pass "the forged address 10.9.9.9 is never used"

# ---- a_trusted_peer_must_send_a_valid_header ----
req $(as client) "$URL$WHO"
[ "$STATUS" = 000 ] && pass "direct TLS from the trusted 127.0.0.1, no header: refused" ||
    fail "trusted without header: status $STATUS"
log_has "logged: no header" \
    '"detail":"no PROXY protocol v2 header \(first byte 0x16, a TLS handshake\)[^"]*","event":"proxy_header_refused","reason":"no_header","remote":"127.0.0.1"'
for kind in version3 unix v1:192.0.2.7; do
    out=$(raw 127.0.0.1 "$kind")
    case "$out" in
    refused:*) pass "trusted peer, $kind header: refused" ;;
    *) fail "trusted peer, $kind header: $out" ;;
    esac
done
log_has "version 3 logged" '"detail":"PROXY header version 3, not 2".*"reason":"bad_header"'
log_has "Unix socket family logged" '"detail":"PROXY header address family 3[^"]*Unix socket'
log_has "v1 from a trusted peer logged" '"reason":"v1_header","remote":"127.0.0.1"'
python3 "$PROXY_PY" partial 127.0.0.1 127.0.0.1 "$PORT"
sleep 0.3
log_has "a header cut short logged" \
    '"detail":"the connection closed after 20 bytes, before a complete PROXY protocol v2 header".*"reason":"incomplete"'

# ---- slow_headers_are_cut_at_head_timeout (2 s) ----
out=$(python3 "$PROXY_PY" trickle 127.0.0.1 127.0.0.1 "$PORT" 8)
case "$out" in
"closed after "[2-3]" s") pass "a header trickled by a trusted peer: $out" ;;
*) fail "trickled header: $out" ;;
esac
log_has "head_timeout logged for the PROXY header" \
    '"event":"head_timeout","head_timeout":2,"remote":"127.0.0.1","stage":"PROXY protocol header"'
out=$(python3 "$PROXY_PY" silent 127.0.0.3 127.0.0.1 "$PORT" 8)
case "$out" in
"closed after "[2-3]" s") pass "an untrusted peer that sends nothing: $out" ;;
*) fail "silent untrusted peer: $out" ;;
esac
log_has "head_timeout logged for it" '"event":"head_timeout","head_timeout":2,"remote":"127.0.0.3"'
out=$(python3 "$PROXY_PY" silent 127.0.0.2 127.0.0.1 "$HPORT" 8)
case "$out" in
"closed after "[2-3]" s") pass "a client that sends nothing through HAProxy: $out" ;;
*) fail "silent client through HAProxy: $out" ;;
esac
log_has "head_timeout logged with the client's address" \
    '"event":"head_timeout","head_timeout":2,"remote":"127.0.0.2","stage":"TLS handshake'
via 127.0.0.2 $(as client) "https://127.0.0.1:$HPORT$WHO"
expect_status "and clients are still served" 200

# ---- the_per_address_connection_limit_counts_the_client (3 per address) ----
python3 "$PROXY_PY" hold 127.0.0.5 127.0.0.1 "$HPORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" 4 4 >"$T/hold" &
hold_pid=$!
for _ in $(seq 1 50); do
    [ -s "$T/hold" ] && break
    sleep 0.1
done
[ "$(cat "$T/hold")" = "200 200 200 refused" ] &&
    pass "127.0.0.5 through HAProxy: 3 connections served, the 4th refused" ||
    fail "held connections: $(cat "$T/hold")"
via 127.0.0.6 $(as client) "https://127.0.0.1:$HPORT$WHO"
expect_status "meanwhile 127.0.0.6 through the same HAProxy is served" 200
wait $hold_pid

# ---- the_basic_auth_limiter_counts_the_client ----
for i in $(seq 1 10); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 --cacert "$PKI/root.pem" \
        --interface 127.0.0.2 -u "scripter:wrong $i" "https://127.0.0.1:$HPORT$WHO"
done >"$T/wrong"
[ "$(grep -c '^401$' "$T/wrong")" = 10 ] && pass "10 wrong passwords from 127.0.0.2: 401 each" ||
    fail "wrong passwords: $(sort "$T/wrong" | uniq -c | tr '\n' ' ')"
log_has "127.0.0.2 is barred, by its own address" '"event":"basic_barred".*"remote":"127.0.0.2"'
# (pusher's password was never verified: scripter's is remembered, no check)
via 127.0.0.2 -u "pusher:a long enough password" "https://127.0.0.1:$HPORT$WHO"
expect_status "127.0.0.2: even a right password is refused while barred" 401 bad_password
expect_body "as barred" "'too many wrong passwords' in j['error']['detail']" True
via 127.0.0.4 -u "pusher:a long enough password" "https://127.0.0.1:$HPORT$WHO"
expect_status "127.0.0.4 through the same HAProxy is not barred" 200

# ---- haproxy_health_checks_send_a_local_header (the README's haproxy.cfg) ----
log_has "HAProxy's health check (LOCAL header, TLS, GET /healthz) logged with its own address" \
    '"method":"GET","path":"/healthz","remote":"127.0.0.1".*"status":200'
grep -q "Server certgate_nodes/node1 is DOWN" "$T/haproxy.log" &&
    fail "HAProxy marked certgate down: $(grep DOWN "$T/haproxy.log")" ||
    pass "HAProxy never marked certgate down"

# ---- sighup_keeps_serving, sigterm_stops ----
kill -HUP "$SERVER_PID"
for _ in $(seq 1 50); do
    grep -q '"event":"reloaded"' "$SERVER_LOG" && break
    sleep 0.1
done
log_has "SIGHUP reloads" '"event":"reloaded"'
via 127.0.0.4 $(as client) "https://127.0.0.1:$HPORT$WHO"
expect_status "served after the reload" 200
stop_server
[ "$SERVER_RC" = 0 ] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $SERVER_RC"
log_has "all requests answered" '"detail":"all requests answered","event":"stopped"'
via 127.0.0.4 $(as client) "https://127.0.0.1:$HPORT$WHO"
[ "$STATUS" = 000 ] && pass "nothing listens after the stop" || fail "after stop: $STATUS"
stop_haproxy

done_testing
