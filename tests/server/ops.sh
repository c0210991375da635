#!/bin/sh
# certgate serve: modes, limits, signals, reloads, configuration.
. "$TESTS_SRCDIR/server/lib.sh"
need openssl
make_pki
setup_db
WHO=/api/certgate/v1/whoami
CLIENT_PY="$TESTS_SRCDIR/server/client.py"

# bad command lines and files are refused before anything listens
cg serve --key "$PKI/server.key"
[ "$RC" = 2 ] && pass "serve without --cert is a usage error" || fail "exit $RC"
expect_err "and says what is missing" "--cert and --key are required"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --threads lots
[ "$RC" = 2 ] && pass "a bad --threads is refused" || fail "exit $RC"
expect_err "naming the flag" "threads: 'lots' is not a number"
cg serve --cert "$PKI/server.pem" --key "$PKI/client.key" --listen 127.0.0.1:0
[ "$RC" = 2 ] && pass "a key that does not match the certificate is refused" || fail "exit $RC"
expect_err "in words" "key does not belong to the certificate"
openssl pkcs8 -topk8 -in "$PKI/server.key" -out "$T/enc.key" -passout pass:secret 2>/dev/null
cg serve --cert "$PKI/server.pem" --key "$T/enc.key"
[ "$RC" = 2 ] && pass "an encrypted server key is refused" || fail "exit $RC"
expect_err "saying so, and how to decrypt it" "the private key is encrypted.*openssl pkey -in"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --client-cert maybe
[ "$RC" = 2 ] && pass "a bad --client-cert is refused" || fail "exit $RC"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --listen nowhere
[ "$RC" = 2 ] && pass "a bad --listen is a usage error" || fail "exit $RC"
expect_err "naming the address" "--listen 'nowhere' is not ADDRESS:PORT"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --listen :99999
[ "$RC" = 2 ] && pass "a port over 65535 is a usage error" || fail "exit $RC"
expect_err "saying the range" "the port must be 0 to 65535"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --listen example.com:8443
[ "$RC" = 2 ] && pass "a host name is refused" || fail "exit $RC"
expect_err "saying that names are not looked up" "is not an IP address"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --listen nowhere --check-config
[ "$RC" = 2 ] && pass "--check-config refuses a bad --listen" || fail "exit $RC: $(cat "$T/out")"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --metrics-listen bogus --check-config
[ "$RC" = 2 ] && pass "--check-config refuses a bad --metrics-listen" || fail "exit $RC"
expect_err "naming it" "--metrics-listen 'bogus'"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --listen localhost:0 --check-config
[ "$RC" = 0 ] && pass "localhost:PORT is accepted" || fail "localhost: $(cat "$T/err")"
printf 'listen = 127.0.0.1:0\ntls-priority = %s\n' "$(python3 -c 'print("NORMAL" + ":%COMPAT" * 40)')" \
    >"$T/long.conf"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/long.conf" --check-config
[ "$RC" = 2 ] && pass "a config line too long for the parser is refused" || fail "exit $RC"
expect_err "saying so, with its number" "long.conf: line 2 is longer than 199 characters"
printf 'listen = 127.0.0.1:0\nbogus = 1\n' >"$T/bad.conf"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/bad.conf"
[ "$RC" = 2 ] && pass "an unknown config key is refused" || fail "exit $RC"
expect_err "naming file, key and line" "bad.conf: unknown key 'bogus' \\(line 2\\)"
cg serve --config "$TESTS_SRCDIR/../contrib/certgate.conf.example" --cert "$PKI/server.pem" \
    --key "$PKI/server.key" --check-config
[ "$RC" = 0 ] && pass "the example config file parses" || fail "example config: $(cat "$T/err")"
expect_out "--check-config says so" "configuration OK"
# the config file's db key: outranks $CERTGATE_DB, --db outranks it
"$CERTGATE" --db "$T/other.db" init >/dev/null
printf 'db = %s\n' "$T/other.db" >"$T/db.conf"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/db.conf" --check-config
[ "$RC" = 0 ] && grep -q "database $T/other.db," "$T/out" &&
    pass "the config key db names the database, over \$CERTGATE_DB" ||
    fail "db key: exit $RC: $(cat "$T/out" "$T/err")"
cg --db "$CERTGATE_DB" serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/db.conf" \
    --check-config
[ "$RC" = 0 ] && grep -q "database $CERTGATE_DB," "$T/out" && pass "--db outranks the db key" ||
    fail "--db and db key: $(cat "$T/out" "$T/err")"
printf 'db = %s\n' "$T/absent.db" >"$T/db.conf"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/db.conf" --check-config
[ "$RC" = 1 ] && pass "a db key naming no database is refused" || fail "absent db: exit $RC"
expect_err "naming it, with the fix" "database $T/absent.db does not exist: run certgate init"
printf 'db =\n' >"$T/db.conf"
cg serve --cert "$PKI/server.pem" --key "$PKI/server.key" --config "$T/db.conf" --check-config
[ "$RC" = 2 ] && pass "an empty db key is refused" || fail "empty db: exit $RC"
expect_err "saying what it takes" "db.conf: db: give a file path or a postgresql:// URI"
cg serve --config "$T/missing.conf"
[ "$RC" = 2 ] && pass "a missing config file is refused" || fail "exit $RC"
cg --db "$T/none.db" serve --cert "$PKI/server.pem" --key "$PKI/server.key"
[ "$RC" -ne 0 ] && pass "a missing database is refused" || fail "exit $RC"
expect_err "with the fix" "run certgate init"

# the certificate request names the CA table (or not), and an RSA server key
# in PKCS#1 form works as well as the ECDSA PKCS#8 one
start_server
names=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null |
    grep -A3 'Acceptable client certificate CA names' | tr '\n' ' ')
case "$names" in
*"certgate Test Issuing CA"*"certgate Test Root CA"* | *"certgate Test Root CA"*"certgate Test Issuing CA"*)
    pass "the certificate request names the CA table's CAs" ;;
*) fail "CA names: $names" ;;
esac
stop_server
start_server --send-ca-names none
out=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null)
case "$out" in
*"No client certificate CA names sent"*) pass "--send-ca-names none sends none" ;;
*) fail "--send-ca-names none: $(echo "$out" | grep -i 'CA names')" ;;
esac
req $(as client) "$URL$WHO"
expect_status "and clients still authenticate" 200
stop_server
cat "$PKI/server-rsa.pem" "$PKI/int.pem" >"$T/rsa-full.pem"
SERVER_CERT="$T/rsa-full.pem" SERVER_KEY="$PKI/server-rsa.key" start_server
head -n 1 "$PKI/server-rsa.key" | grep -q "BEGIN RSA PRIVATE KEY" && pass "the RSA key is PKCS#1" ||
    fail "key form: $(head -n 1 "$PKI/server-rsa.key")"
req $(as client) "$URL$WHO"
expect_status "an RSA server key (PKCS#1) serves" 200
stop_server

# require mode: no certificate, no handshake
start_server --client-cert require
req "$URL$WHO"
[ "$STATUS" = 000 ] && [ "$CURL_RC" -ne 0 ] && pass "require: no certificate, handshake refused" ||
    fail "require without certificate: status $STATUS"
req $(as client) "$URL$WHO"
expect_status "require: with a certificate, 200" 200
req $(as foreign-client) "$URL$WHO"
expect_status "require: an untrusted certificate still gets the reason" 401 untrusted_issuer
stop_server

# IPv6: [::1]:PORT listens, for the API and for the metrics
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    start_server --listen '[::1]:0' --metrics-listen '[::1]:0'
    case "$ADDRESS" in
    "[::1]:"*) pass "--listen [::1]:0 listens on IPv6 ($ADDRESS)" ;;
    *) fail "listening on $ADDRESS" ;;
    esac
    req --connect-to "localhost:$PORT:[::1]:$PORT" $(as client) "https://localhost:$PORT$WHO"
    expect_status "a client reaches it over IPv6" 200
    grep '"event":"request"' "$SERVER_LOG" | grep -q '"remote":"::1"' &&
        pass "the log shows the IPv6 peer" || fail "no request from ::1 in the log"
    mport=$(sed -n 's/.*"address":"\[::1\]:\([0-9]*\)","event":"metrics_listening".*/\1/p' \
        "$SERVER_LOG")
    curl -s -g "http://[::1]:$mport/metrics" | grep -q '^certgate_requests_total' &&
        pass "--metrics-listen [::1]:0 serves the metrics" || fail "no metrics on [::1]:$mport"
    stop_server
else
    pass "IPv6 listening # SKIP this host has no ::1"
fi

# TLS versions, generic details, body limit, config file
printf '# test config\nbasic-auth = off\nerror-detail = generic\nmax-body-size = 64\n' \
    >"$T/good.conf"
start_server --config "$T/good.conf"
# curl on Debian will not offer TLS 1.1 itself: ask GnuTLS's client, which
# will (it succeeds against a server that allows it, below)
tls_client() {
    gnutls-cli --priority "NORMAL:-VERS-ALL:+VERS-$1" --x509cafile "$PKI/root.pem" -p "$PORT" \
        localhost </dev/null >"$T/gnutls-cli.out" 2>&1
}
if command -v gnutls-cli >/dev/null 2>&1; then
    tls_client TLS1.1 && fail "TLS 1.1: the handshake completed" || pass "TLS 1.1 is refused"
    tls_client TLS1.2 && pass "the same client with TLS 1.2 connects" ||
        fail "gnutls-cli TLS 1.2: $(tail -n 2 "$T/gnutls-cli.out")"
else
    pass "TLS 1.1 is refused # SKIP gnutls-cli (gnutls-bin) is not installed"
fi
req --tls-max 1.2 $(as client) "$URL$WHO"
expect_status "TLS 1.2 is accepted" 200
req --tlsv1.3 $(as client) "$URL$WHO"
expect_status "TLS 1.3 is accepted" 200
req $(as foreign-client) "$URL$WHO"
expect_status "generic detail: still 401 with the reason header" 401 untrusted_issuer
expect_body "generic detail hides the words" "j['error']['detail']" \
    "Required to provide Auth information"
grep '"reason":"untrusted_issuer"' "$SERVER_LOG" | grep -q "Foreign Issuing CA" &&
    pass "generic detail: the log keeps the words" || fail "log lacks the detail"
printf 'a long enough password\n' | "$CERTGATE" user add scripter --password-stdin >/dev/null
sleep 1.2
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "basic-auth = off in the config file: Basic is not accepted" 401 no_credentials
req $(as client) -H 'Content-Type: application/json' --data-binary \
    "$(python3 -c 'print("{\"x\":\"" + "a" * 200 + "\"}")')" -X GET "$URL$WHO"
expect_status "a body over max-body-size: 413" 413
expect_body "413 names the limit" "j['error']['detail']" "the limit is 64 bytes"
stop_server
if command -v gnutls-cli >/dev/null 2>&1; then
    start_server --tls-priority 'NORMAL:+VERS-TLS1.1'
    tls_client TLS1.1 && pass "that TLS 1.1 client does connect where TLS 1.1 is allowed" ||
        fail "TLS 1.1 client against a TLS 1.1 server: $(tail -n 2 "$T/gnutls-cli.out")"
    stop_server
fi

# request framing: answers decided from the head keep the connection when
# the request is complete, framings that could smuggle a request are refused
start_server --max-body-size 64
curl -sv --cacert "$PKI/root.pem" $(as client) "$URL/nothing" "$URL/healthz" >/dev/null \
    2>"$T/curl.err"
grep -q "Re-using existing connection" "$T/curl.err" &&
    pass "a 404 keeps the keep-alive connection (curl reuses it)" ||
    fail "404 then 200: $(grep -E '^< HTTP|Connection|closing' "$T/curl.err" | tr '\n' ' ')"
printf 'GET /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/who"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/ok"
raw_req --no-cert "$T/who" "$T/ok"
[ "$(raw_line 1 | cut -c1-3)" = 401 ] && [ "$(raw_line 2 | cut -c1-3)" = 200 ] &&
    [ "$(raw_line 3)" = open ] && pass "a 401 without a body keeps the connection" ||
    fail "401 then 200: $(tr '\n' '|' <"$T/raw")"
printf 'POST /api/nothing/here HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%b' \
    'Content-Length: 10\r\n\r\n0123456789' >"$T/post404"
raw_req "$T/post404" "$T/ok"
[ "$(raw_line 1 | cut -c1-3)" = 404 ] && [ "$(raw_line 2 | cut -c1-3)" = 200 ] &&
    [ "$(raw_line 3)" = open ] &&
    pass "a 404 for a POST with a body: the body is read and dropped, the connection stays" ||
    fail "POST 404 then 200: $(tr '\n' '|' <"$T/raw")"
req -I $(as client) "$URL/healthz"
expect_status "HEAD /healthz: 200" 200
! grep -q '{' "$T/body" && [ "$(header Content-Length)" = 15 ] &&
    pass "HEAD: no body, the Content-Length of GET" || fail "HEAD answer: $(cat "$T/body")"
req -I $(as client) "$URL/api/certgate/v1/whoami"
expect_status "HEAD on whoami: 200" 200
req -X DELETE $(as client) "$URL/healthz"
[ "$(header Allow)" = "GET, HEAD" ] && pass "405 lists HEAD in Allow" || fail "Allow: $(header Allow)"
printf 'POST /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n%b' \
    'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' >"$T/clte"
raw_req "$T/clte" "$T/ok"
case "$(raw_line 1)" in
'400 {"error":{"message":"Invalid request","detail":"the request has both Content-Length and Transfer-Encoding; send only one of them"},"status":"failure"}')
    pass "Content-Length with Transfer-Encoding: JSON 400" ;;
*) fail "CL+TE: $(raw_line 1)" ;;
esac
[ "$(raw_line 2)" = "none -" ] && pass "and the connection is closed" || fail "CL+TE then: $(raw_line 2)"
printf 'POST /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n%b' \
    'Content-Length: 6\r\n\r\nhello!' >"$T/cl2"
raw_req "$T/cl2"
case "$(raw_line 1)" in
'400 {"error":{"message":"Invalid request","detail":"the request has Content-Length headers that disagree"}'*)
    pass "two different Content-Length headers: JSON 400" ;;
*) fail "two CL: $(raw_line 1)" ;;
esac
# a chunked body over the limit is cut there: the client never sends the
# last chunk, and still gets its 413
{ printf 'GET /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
    printf 'Transfer-Encoding: chunked\r\n\r\n64\r\n'; head -c 100 /dev/zero | tr '\0' a
    printf '\r\n'; } >"$T/chunked"
raw_req "$T/chunked"
case "$(raw_line 1)" in
'413 {"error":{"message":"Request body too large","detail":"the limit is 64 bytes"}'*)
    pass "a chunked body over the limit: JSON 413 at the limit, not at the end" ;;
*) fail "chunked over the limit: $(raw_line 1)" ;;
esac
# what libmicrohttpd answers itself (a broken request line, HTTP/2.0, a
# broken chunk, a head over the memory pool) goes out as certgate's JSON
# error (tls/wire replaces its HTML), and is logged with the client's address
printf 'GARBAGE\r\n\r\n' >"$T/garbage"
raw_req "$T/garbage"
[ "$(raw_line 1)" = "none -" ] && pass "a broken request line: connection closed" ||
    fail "garbage: $(raw_line 1)"
printf 'GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n' >"$T/h2"
raw_req "$T/h2"
case "$(raw_line 1)" in
'505 {"error":{"message":"HTTP version not supported","detail":"the HTTP version is not supported: send HTTP/1.1 or HTTP/1.0"},"status":"failure"}')
    pass "HTTP/2.0 in a request line: JSON 505 (libmicrohttpd's, replaced)" ;;
*) fail "HTTP/2.0: $(raw_line 1)" ;;
esac
[ "$(raw_line 2)" = closed ] && pass "... and the connection is closed after it" ||
    fail "after the 505: $(raw_line 2)"
[ "$(grep -c '"event":"connection_closed".*"remote":"127.0.0.1"' "$SERVER_LOG")" -ge 2 ] &&
    pass "both are logged with the remote address" || fail "no connection_closed lines"
printf 'POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' >"$T/badchunk"
raw_req --no-cert "$T/badchunk"
case "$(raw_line 1)" in
'400 {"error":{"message":"Invalid request","detail":"the request is malformed: '*)
    pass "a broken chunk: JSON 400 (libmicrohttpd's, replaced)" ;;
*) fail "broken chunk: $(raw_line 1)" ;;
esac
grep '"event":"request"' "$SERVER_LOG" | grep '"path":"/api/x"' | grep '"answered_by":"libmicrohttpd"' |
    grep -q '"status":400' && pass "its access line says who answered and the 400 sent, not the 401 decided before" ||
    fail "access line: $(grep '"path":"/api/x"' "$SERVER_LOG")"
# heads over --max-header-size get a JSON 431: from certgate up to what the
# memory pool holds (--max-header-size + 8 KiB), from libmicrohttpd's own
# answer (replaced) beyond it; never no answer, never HTML
for size in 16500 24000 40000 65000 70000; do
    req -H "X-Big: $(head -c $size /dev/zero | tr '\0' a)" $(as client) "$URL/healthz"
    expect_body "a $size-byte header: JSON 431" "j['error']['message']" \
        "Request header fields too large"
done
grep -qi '^content-type: application/json' "$T/headers" &&
    grep -qi '^x-content-type-options: nosniff' "$T/headers" &&
    grep -qi '^strict-transport-security:' "$T/headers" &&
    pass "libmicrohttpd's 431, replaced, has the headers of every answer" ||
    fail "replaced 431 headers: $(tr '\r\n' '  ' <"$T/headers")"
grep '"status":431' "$SERVER_LOG" | grep -q '"request_id"' &&
    pass "431 answers have their access-log line" || fail "no access line for a 431"
stop_server

# hostile headers get a clear answer and the server keeps serving
start_server --max-connections-per-ip 2
req -H "Authorization: Basic !!!not-base64!!!" "$URL$WHO"
expect_status "garbage Basic credentials: 401" 401 bad_password
req -H "Authorization: Basic $(printf 'no-colon-here' | base64)" "$URL$WHO"
expect_status "Basic without a colon: 401" 401 bad_password
req -H "Authorization: Bearer abc" "$URL$WHO"
expect_status "another scheme: 401 no credentials" 401 no_credentials
req --path-as-is $(as client) "$URL/api/certgate/v1/whoami/../../../etc/passwd"
expect_status "a path with .. reaches the router as it is: 404" 404
expect_body "404 JSON naming that path" "(j['error']['message'], j['error']['detail'])" \
    "('Requested URI does not represent any resource', '/api/certgate/v1/whoami/../../../etc/passwd')"
# two connections held open by this address fill its quota
python3 - "$PORT" "$PKI" >"$T/hold.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=pki + "/root.pem")
ctx.load_cert_chain(pki + "/client.pem", pki + "/client.key")
held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        for _ in range(2)]
print("holding", flush=True)
time.sleep(3)
PY
hold=$!
for _ in $(seq 1 50); do
    grep -q holding "$T/hold.out" 2>/dev/null && break
    sleep 0.1
done
req $(as client) "$URL$WHO"
[ "$STATUS" = 000 ] && pass "--max-connections-per-ip refuses a third connection" ||
    fail "third connection: $STATUS"
wait "$hold"
req $(as client) "$URL$WHO"
expect_status "and accepts again once they close" 200
stop_server

# the total connection limit, and the idle timeout
start_server --max-connections 2 --idle-timeout 2
python3 - "$PORT" "$PKI" >"$T/hold.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=pki + "/root.pem")
ctx.load_cert_chain(pki + "/client.pem", pki + "/client.key")
held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        for _ in range(2)]
for s in held:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
print("holding", flush=True)
time.sleep(3)
PY
hold=$!
for _ in $(seq 1 50); do
    grep -q holding "$T/hold.out" 2>/dev/null && break
    sleep 0.1
done
# a third connection waits in the listen queue, unserved, until a slot
# frees (here: the idle timeout closes the two held ones after 2 s)
req --max-time 1 $(as client) "$URL$WHO"
[ "$STATUS" = 000 ] && pass "--max-connections 2 does not serve a third connection" ||
    fail "third connection over --max-connections: $STATUS"
wait "$hold"
out=$(python3 "$CLIENT_PY" trickle 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" idle 5)
case "$out" in
"closed after "[1-3]" s") pass "--idle-timeout 2 closes a quiet keep-alive connection ($out)" ;;
*) fail "idle timeout: $out" ;;
esac
req $(as client) "$URL$WHO"
expect_status "and accepts connections again" 200
stop_server

# password_checks_block_nobody: PBKDF2 (about 0.15-0.25 s) runs on its own
# threads, so certificate clients are answered during a burst of wrong
# passwords even with one worker thread; an address with 10 wrong passwords
# in a minute gets no more checks for 60 s (401 bad_password, Retry-After)
start_server --threads 1
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "Basic works before the burst" 200
burst=""
for i in $(seq 1 30); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 --cacert "$PKI/root.pem" \
        -u "scripter:wrong $i" "$URL$WHO" >>"$T/burst" &
    burst="$burst $!"
done
sleep 0.3
whos=""
for _ in $(seq 1 10); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 --cacert "$PKI/root.pem" \
        $(as client) "$URL$WHO" >>"$T/whos" &
    whos="$whos $!"
done
wait $whos $burst
ok=$(grep -c '^200$' "$T/whos")
[ "$ok" = 10 ] && pass "during 30 wrong passwords, 10 whoami by certificate are all answered in 2 s" ||
    fail "only $ok of 10 whoami by certificate were answered in 2 s during the burst"
[ "$(grep -c '^401$' "$T/burst")" = 30 ] && pass "the 30 wrong passwords got their 401" ||
    fail "burst answers: $(sort "$T/burst" | uniq -c | tr '\n' ' ')"
grep -q '"event":"basic_barred".*"remote":"127.0.0.1"' "$SERVER_LOG" &&
    pass "the address is barred, and the log says so" || fail "no basic_barred line"
req -u "scripter:yet another guess" "$URL$WHO"
expect_status "a barred address: 401 bad_password" 401 bad_password
expect_body "saying why" "'too many wrong passwords' in j['error']['detail']" True
[ -n "$(header Retry-After)" ] && pass "with Retry-After" || fail "no Retry-After"
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "a password verified before the bar still works (remembered, no KDF)" 200
stop_server

# wrong_passwords_at_once_get_no_more_checks_than_the_limit: 30 wrong
# passwords sent together from one address, with four password-check
# threads: exactly 10 are checked (a wrong password), the other 20 are
# refused as barred without a check, including those queued before the bar
start_server --threads 8
burst=""
for i in $(seq 1 30); do
    curl -s -o "$T/guess.$i" -w '%{http_code}\n' --max-time 60 --cacert "$PKI/root.pem" \
        -u "scripter:guess $i" "$URL$WHO" >>"$T/guesses" &
    burst="$burst $!"
done
wait $burst
checked=$(grep -l 'the user name or password is wrong' "$T"/guess.* | wc -l)
barred=$(grep -l 'too many wrong passwords' "$T"/guess.* | wc -l)
[ "$(grep -c '^401$' "$T/guesses")" = 30 ] && pass "30 wrong passwords at once: 30 answers of 401" ||
    fail "answers: $(sort "$T/guesses" | uniq -c | tr '\n' ' ')"
[ "$checked" = 10 ] && [ "$barred" = 20 ] &&
    pass "10 were checked and 20 refused as barred without a check" ||
    fail "$checked checked (10 at most), $barred barred"
[ "$(grep -c '"event":"basic_barred"' "$SERVER_LOG")" = 1 ] && pass "one basic_barred line" ||
    fail "$(grep -c '"event":"basic_barred"' "$SERVER_LOG") basic_barred lines"
stop_server

# addresses_that_shared_a_slot_keep_their_own_counts: 127.0.0.14 and
# 127.0.0.144 fell into one slot of the former 512-slot table (FNV-1a), where
# each wrong password of one reset the other's count. Alternating wrong
# passwords, each address is barred after its own tenth, and only it.
start_server
A=127.0.0.14
B=127.0.0.144
guess() {
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 --cacert "$PKI/root.pem" \
        --interface "$1" -u "scripter:$2" "$URL$WHO"
}
for i in $(seq 1 10); do
    guess $A "wrong a$i"
    guess $B "wrong b$i"
done >"$T/alternating"
[ "$(grep -c '^401$' "$T/alternating")" = 20 ] &&
    pass "20 alternating wrong passwords from $A and $B: 401 each" ||
    fail "alternating answers: $(sort "$T/alternating" | uniq -c | tr '\n' ' ') (can curl bind $A?)"
for a in $A $B; do
    grep -q "\"event\":\"basic_barred\".*\"remote\":\"$a\"" "$SERVER_LOG" &&
        pass "$a is barred after its own ten" || fail "$a is not barred"
    req --interface $a -u "scripter:a long enough password" "$URL$WHO"
    expect_status "$a: even the right password is refused while barred" 401 bad_password
    expect_body "as barred" "'too many wrong passwords' in j['error']['detail']" True
done
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "127.0.0.1 is not barred by them" 200
stop_server

# slow_clients_are_cut: --idle-timeout measures silence only; the TLS
# handshake and each request head must be complete within --head-timeout,
# counted from the connection or from the first byte after a request
start_server --head-timeout 2
trickle() {
    python3 "$CLIENT_PY" trickle 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
        "$PKI/client.key" "$1" 8
}
for mode in head silent idle-then-head; do
    out=$(trickle $mode)
    case "$out" in
    "closed after "[1-5]" s") pass "head timeout, $mode: $out" ;;
    *) fail "head timeout, $mode: $out" ;;
    esac
done
[ "$(grep -c '"event":"head_timeout"' "$SERVER_LOG")" = 3 ] &&
    pass "each cut connection has its head_timeout line" ||
    fail "head_timeout lines: $(grep -c '"event":"head_timeout"' "$SERVER_LOG")"
req $(as client) "$URL$WHO"
expect_status "and other clients are served" 200
stop_server

# locked user on an open keep-alive connection, then on a new one (this
# server also runs the RSS check below: under AddressSanitizer, freed memory
# would otherwise sit in its quarantine and count as growth)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" start_server
out=$(python3 "$CLIENT_PY" keepalive 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" -- "$CERTGATE" --db "$DB" user lock integrator1)
[ "$out" = "200 401 user_locked same-connection" ] &&
    pass "locked user refused within a second on the open keep-alive connection" ||
    fail "keep-alive lock: $out"
req $(as client) "$URL$WHO"
expect_status "locked user refused on a new connection" 401 user_locked
cg user unlock integrator1
sleep 1.2
req $(as client) "$URL$WHO"
expect_status "unlocked again" 200
out=$(python3 "$CLIENT_PY" keepalive 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" -- "$CERTGATE" --db "$DB" ca disable 2)
[ "$out" = "200 401 ca_disabled same-connection" ] &&
    pass "a root disabled is refused within a second on the open keep-alive connection" ||
    fail "keep-alive ca disable: $out"
cg ca enable 2
sleep 1.2
map_id=$(sqlite3 "$DB" "SELECT c.id FROM sys_user_certificate c JOIN sys_user u ON u.id = c.user_id
    WHERE u.name = 'integrator1' AND c.kind = 'cert'")
out=$(python3 "$CLIENT_PY" keepalive 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" -- "$CERTGATE" --db "$DB" cert unmap "$map_id")
[ "$out" = "200 401 not_mapped same-connection" ] &&
    pass "a mapping removed is refused within a second on the open keep-alive connection" ||
    fail "keep-alive unmap: $out"
cg cert map integrator1 "$PKI/client.pem"
sleep 1.2
req $(as client) "$URL$WHO"
expect_status "mapped again" 200

# a certificate that expires during an open keep-alive connection is refused
# from then on: the cached decision is still checked against the clock
soon=$(($(date +%s) + 8))
TZ=UTC issue_client shortlived 'cn = "shortlived"' \
    "activation_date = \"$(date -u -d "@$((soon - 600))" '+%Y-%m-%d %H:%M:%S')\"" \
    "expiration_date = \"$(date -u -d "@$soon" '+%Y-%m-%d %H:%M:%S')\""
cg user add shortlived
cg cert map shortlived "$PKI/shortlived.pem"
sleep 1.2
out=$(python3 "$CLIENT_PY" keepalive 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/shortlived.pem" \
    "$PKI/shortlived.key" "$WHO" -- sleep $((soon - $(date +%s) + 1)))
[ "$out" = "200 401 expired same-connection" ] &&
    pass "a certificate that expires on an open keep-alive connection is refused then" ||
    fail "expiry on keep-alive: $out"

# a stale CRL still applies, and the log says so: a warning when the trust
# data is loaded, and a flag on the requests whose chain used it
cg crl add "$PKI/int-stale.crl"
sleep 1.2
req $(as client) "$URL$WHO"
expect_status "a chain checked against a stale CRL is still accepted" 200
grep '"event":"crl_stale"' "$SERVER_LOG" | grep -q '"crl_issuer":"CN=certgate Test Issuing CA' &&
    pass "loading a stale CRL logs a warning" || fail "no crl_stale warning"
grep '"event":"request"' "$SERVER_LOG" | grep '"crl_stale":true' |
    grep -q '"crl_issuer":"CN=certgate Test Issuing CA,O=certgate tests"' &&
    pass "the request line flags the stale CRL and names its issuer" ||
    fail "no crl_stale flag on the request line"
req $(as revoked) "$URL$WHO"
grep '"event":"auth_refused"' "$SERVER_LOG" | grep '"reason":"revoked"' | grep -q '"crl_stale":true' &&
    pass "and so does a refusal by it" || fail "no crl_stale flag on the refusal"

# credentials_do_not_leak: a trust change that names no new CA (a user lock)
# reuses the handshake credentials, and superseded ones are freed when their
# last connection closes; 200 lock/unlock cycles, a handshake after each
cg ca add "$PKI/foreign-chain.pem"
sleep 1.2
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SERVER_PID/status"; }
handshake() { curl -s -o /dev/null --cacert "$PKI/root.pem" $(as client) "$URL/healthz"; }
cycle() {
    cg user lock integrator1
    cg user unlock integrator1
    # every 20th cycle the CA table's names change too: new credentials
    [ $(($1 % 20)) = 0 ] && cg ca disable 4
    [ $(($1 % 20)) = 10 ] && cg ca enable 4
    sleep 0.21 # the trust poller runs every 200 ms
    handshake
}
# the allocator's arenas grow during the first reloads, then stay
for i in $(seq 1 30); do cycle "$i"; done
before=$(rss)
for i in $(seq 1 200); do cycle "$i"; done
after=$(rss)
[ $((after - before)) -lt 3072 ] &&
    pass "200 trust changes with a handshake each: RSS $before -> $after kB" ||
    fail "RSS grew from $before to $after kB over 200 trust changes"
req $(as client) "$URL$WHO"
expect_status "and clients still authenticate" 200

# SIGHUP: a new server certificate without dropping the listening socket
before=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null \
    2>/dev/null | openssl x509 -noout -serial)
stop_server
cp "$PKI/server-fullchain.pem" "$T/live.pem"
cp "$PKI/server.key" "$T/live.key"
SERVER_CERT="$T/live.pem" SERVER_KEY="$T/live.key" start_server
( for _ in $(seq 1 30); do
    curl -s -o /dev/null -w '%{http_code}\n' --cacert "$PKI/root.pem" "$URL/healthz"
    sleep 0.05
done ) >"$T/during" &
loop=$!
cat "$PKI/server2.pem" "$PKI/int.pem" >"$T/live.pem"
cp "$PKI/server2.key" "$T/live.key"
kill -HUP "$SERVER_PID"
wait "$loop"
after=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null \
    2>/dev/null | openssl x509 -noout -serial)
want=$(openssl x509 -in "$PKI/server2.pem" -noout -serial)
[ "$after" = "$want" ] && [ "$after" != "$before" ] &&
    pass "SIGHUP: new connections get the new certificate" || fail "serial $before -> $after"
[ "$(grep -c '^200$' "$T/during")" = 30 ] &&
    pass "SIGHUP: no connection refused while reloading" ||
    fail "during reload: $(sort "$T/during" | uniq -c | tr '\n' ' ')"
printf 'not a key\n' >"$T/live.key"
kill -HUP "$SERVER_PID"
sleep 0.5
req $(as client) "$URL$WHO"
expect_status "SIGHUP with a broken key keeps serving with the old one" 200
grep -q '"event":"reload_failed"' "$SERVER_LOG" && pass "and logs why" || fail "no reload_failed"

# SIGHUP re-reads the config file: settings that can change live do
printf 'basic-auth = on\n' >"$T/live.conf"
stop_server
start_server --config "$T/live.conf"
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "Basic accepted before the reload" 200
printf 'basic-auth = off\nerror-detail = generic\nmax-connections = 5\n' >"$T/live.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
req -u "scripter:a long enough password" "$URL$WHO"
expect_status "SIGHUP: basic-auth = off applies without a restart" 401 no_credentials
grep '"event":"reload_partial"' "$SERVER_LOG" | grep -q '"settings":\["max-connections"\]' &&
    pass "SIGHUP: a changed connection limit is reported as needing a restart, by name" ||
    fail "no reload_partial line naming max-connections"
# the TLS policy applies to new connections at once; script limits and the
# metrics address are named as needing a restart
printf '%s\n' 'send-ca-names = none' 'tls-priority = NORMAL:-VERS-ALL:+VERS-TLS1.2' \
    'script-timeout = 100' 'metrics-listen = 127.0.0.1:0' >"$T/live.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
out=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null)
case "$out" in
*"No client certificate CA names sent"*) pass "SIGHUP: send-ca-names = none applies live" ;;
*) fail "send-ca-names after SIGHUP: $(echo "$out" | grep -i 'CA names')" ;;
esac
req --tlsv1.3 $(as client) "$URL$WHO"
[ "$STATUS" = 000 ] && pass "SIGHUP: a TLS 1.2-only priority string refuses TLS 1.3 at once" ||
    fail "TLS 1.3 after the reload: $STATUS"
req --tls-max 1.2 $(as client) "$URL$WHO"
expect_status "and TLS 1.2 still works" 200
grep '"event":"reload_partial"' "$SERVER_LOG" | tail -n 1 |
    grep -q '"settings":\["script-timeout","metrics-listen"\]' &&
    pass "SIGHUP: script limits and the metrics address are named as needing a restart" ||
    fail "reload_partial: $(grep reload_partial "$SERVER_LOG" | tail -n 1)"
printf 'basic-auth = maybe\n' >"$T/live.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
grep '"event":"reload_failed"' "$SERVER_LOG" | grep -q "basic-auth: 'maybe'" &&
    pass "SIGHUP with a broken config keeps the running settings and says why" ||
    fail "no reload_failed for the config"
req $(as client) "$URL$WHO"
expect_status "and keeps serving" 200

# SIGTERM during a request: it is answered, then the server exits 0
rm -f "$T/marker"
python3 "$CLIENT_PY" slow 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" "$T/marker" >"$T/slow.out" 2>&1 &
slow=$!
for _ in $(seq 1 100); do
    [ -f "$T/marker" ] && break
    sleep 0.1
done
sleep 0.5 # the server has read the headers: the request is in flight
kill -TERM "$SERVER_PID"
sleep 0.3
rm -f "$T/marker"
wait "$slow"
grep -q "^HTTP/1.1 200" "$T/slow.out" && pass "SIGTERM: the request in flight is answered" ||
    fail "slow request got: $(cat "$T/slow.out")"
stop_server
[ "$SERVER_RC" = 0 ] && pass "SIGTERM: exit 0 after draining" || fail "exit $SERVER_RC"
req "$URL/healthz"
[ "$STATUS" = 000 ] && pass "and nothing listens any more" || fail "still answering"

# a request that stalls during the drain is dropped, and the log says so
start_server --idle-timeout 2
rm -f "$T/marker"
python3 "$CLIENT_PY" slow 127.0.0.1 "$PORT" "$PKI/root.pem" "$PKI/client.pem" \
    "$PKI/client.key" "$WHO" "$T/marker" >"$T/slow.out" 2>&1 &
slow=$!
for _ in $(seq 1 100); do
    [ -f "$T/marker" ] && break
    sleep 0.1
done
sleep 0.5
stop_server
rm -f "$T/marker"
wait "$slow"
[ "$SERVER_RC" = 0 ] && pass "SIGTERM with a stalled request: exit 0" || fail "exit $SERVER_RC"
grep '"event":"stopped"' "$SERVER_LOG" | grep -q '"dropped":1' &&
    pass "the log says one request got no answer" ||
    fail "stopped line: $(grep '"event":"stopped"' "$SERVER_LOG")"
done_testing
