#!/bin/sh
# certgate serve: who gets in, and what a refused client is told.
. "$TESTS_SRCDIR/server/lib.sh"
make_pki
setup_db
cg crl add "$PKI/int.crl"
cg user add revoked-user
cg cert map revoked-user "$PKI/revoked.pem"
cg user add pinned-user
cg cert map pinned-user "$PKI/selfsigned.pem" --pinned
start_server
WHO="$URL/api/certgate/v1/whoami"

# no_cert_gets_401_json
req "$WHO"
expect_status "no certificate: 401" 401 no_credentials
printf '%s' "$NO_CREDS" >"$T/expected"
if cmp -s "$T/body" "$T/expected"; then
    pass "no certificate: the exact 401 body, byte for byte"
else
    fail "no certificate: body $(cat "$T/body")"
fi
[ "$(header Content-Type)" = application/json ] && pass "errors are application/json" ||
    fail "content type $(header Content-Type)"
[ -n "$(header X-Request-Id)" ] && pass "errors carry X-Request-Id" || fail "no X-Request-Id"
[ "$(header X-Content-Type-Options)" = nosniff ] && pass "security headers on errors" ||
    fail "no X-Content-Type-Options"
[ "$(header Strict-Transport-Security)" = "max-age=31536000" ] && pass "HSTS" || fail "no HSTS"

# leaf_only_with_intermediate_in_table
req $(as client) "$WHO"
expect_status "leaf only, intermediate in the table: 200" 200
expect_body "whoami names the user" "j['result']['user']" integrator1
expect_body "whoami lists the roles" "j['result']['roles']" "['push']"
expect_body "whoami says how" "j['result']['auth']" certificate
expect_body "whoami shows the subject" "j['result']['certificate']['subject']" "CN=integrator1,O=Acme"
expect_body "whoami shows the issuer" "j['result']['certificate']['issuer']" \
    "CN=certgate Test Issuing CA,O=certgate tests"
expect_body "whoami shows the fingerprint" "len(j['result']['certificate']['fingerprint'])" 64
expect_body "whoami shows the expiry" "j['result']['certificate']['not_after'][-1]" Z
[ "$(header Cache-Control)" = no-store ] && pass "security headers on success" ||
    fail "Cache-Control $(header Cache-Control)"

# leaf_plus_chain
req --cert "$PKI/client-fullchain.pem" --key "$PKI/client.key" "$WHO"
expect_status "leaf plus chain: 200" 200

# refusals, each with its reason
req $(as foreign-client) "$WHO"
expect_status "foreign CA: 401" 401 untrusted_issuer
expect_body "the detail names the unknown issuer" "'Foreign Issuing CA' in j['error']['detail']" True
expect_body "same message as no certificate" "j['error']['message']" "User Not Authenticated"
req $(as expired) "$WHO"
expect_status "expired: 401" 401 expired
expect_body "the detail says expired" "'expired on' in j['error']['detail']" True
req $(as notyet) "$WHO"
expect_status "not yet valid: 401" 401 not_yet_valid
req $(as selfsigned) "$WHO"
expect_status "self-signed and pinned: 200" 200
expect_body "pinned maps to its user" "j['result']['user']" pinned-user
cg cert unmap "$(sqlite3 "$DB" "SELECT id FROM sys_user_certificate WHERE kind='pinned'")"
sleep 1.2
req $(as selfsigned) "$WHO"
expect_status "self-signed, not pinned: 401" 401 self_signed
req $(as client2) "$WHO"
expect_status "trusted but unmapped: 401" 401 not_mapped
expect_body "the detail says how to map it" "'certgate cert map' in j['error']['detail']" True
req $(as wrong-eku) "$WHO"
expect_status "wrong extended key usage: 401" 401 bad_key_usage
req $(as revoked) "$WHO"
expect_status "revoked by a CRL: 401" 401 revoked

# renewed_cert_matches_rule, and the same CN from another CA does not
req $(as client-renewed) "$WHO"
expect_status "renewed certificate before the rule: 401" 401 not_mapped
cg cert rule integrator1 --ca 1 --match cn=integrator1
cg ca add "$PKI/foreign-chain.pem"
sleep 1.2
req $(as client-renewed) "$WHO"
expect_status "renewed certificate through the cn rule: 200" 200
expect_body "as integrator1" "j['result']['user']" integrator1
req $(as foreign-client) "$WHO"
expect_status "same CN issued by another CA: 401" 401 not_mapped

# root_disabled_while_intermediate_stays
cg ca disable 2
sleep 1.2
req $(as client) "$WHO"
expect_status "root disabled: 401" 401 ca_disabled
cg ca enable 2
sleep 1.2
req $(as client) "$WHO"
expect_status "root enabled again: 200" 200

# role_missing_gets_403
req $(as client) "$URL/api/certgate/v1/admin/trust"
expect_status "role missing: 403" 403 role_missing
expect_body "403 message" "j['error']['message']" "User Not Authorized"
expect_body "403 detail names the role" "j['error']['detail']" "the role 'certgate_admin' is required"
cg user roles integrator1 push,certgate_admin
sleep 1.2
req $(as client) "$URL/api/certgate/v1/admin/trust"
expect_status "with the role: 200" 200

# routing
req $(as client) "$URL/api/nothing/here"
expect_status "unknown /api path: 404" 404
expect_body "404 message" "j['error']['message']" "Requested URI does not represent any resource"
expect_body "404 detail is the path" "j['error']['detail']" /api/nothing/here
req "$URL/api/nothing/here"
expect_status "unknown /api path without credentials: 401 first" 401 no_credentials
req -X POST $(as client) "$WHO"
expect_status "wrong method: 405" 405
[ "$(header Allow)" = "GET, HEAD" ] && pass "405 carries Allow" || fail "Allow: $(header Allow)"
expect_body "405 message" "j['error']['message']" "Method not Supported"
req "$URL/healthz"
expect_status "healthz needs no authentication" 200

# a path or query that is not text is a JSON 400 before routing: bytes that
# are not UTF-8 once decoded, or a NUL that would cut the path short
for target in '/%ff' '/api/x/%ff' '/healthz%00junk' '/api/certgate/v1/whoami?k=%c3'; do
    req $(as client) "$URL$target"
    expect_status "target $target: 400" 400
    expect_body "target $target: Invalid request" "j['error']['message']" "Invalid request"
done
grep '"status":400' "$SERVER_LOG" | grep -q '"path":"/healthz%00junk"' &&
    pass "the log shows a NUL path as sent" || fail "no access line for /healthz%00junk"

# query_keys_keep_their_case: headers reach scripts lower-cased, query keys
# as sent; a header value that is not UTF-8 is repaired, not dropped
cat >"$T/echo.lua" <<'LUA'
response.status = 200
response.body = { query = request.query, headers = request.headers }
LUA
cg resource add --api t/echo --method GET --path /q --script "$T/echo.lua" --auth none
sleep 1.2
req -H "X-Mixed-Case: $(printf 'a\377b')" "$URL/api/t/echo/q?CamelKey=Value&lower=x"
expect_status "echo resource: 200" 200
expect_body "query keys keep their case" "sorted(j['query'].keys())" "['CamelKey', 'lower']"
expect_body "header names are lower-case" "'x-mixed-case' in j['headers']" True
expect_body "a header value that is not UTF-8 is repaired" "j['headers']['x-mixed-case']" \
    'a\xffb'
req "$URL/api/t/echo/q?k=%ff"
expect_status "a query value that is not UTF-8: 400" 400
expect_body "400 says where" "j['error']['detail']" \
    "the query string is not valid UTF-8 once percent-decoded"

# non_ascii_subjects: UTF-8 names reach whoami intact, and a long one is cut
# without losing the fix or the JSON
issue_client utf8 'cn = "Jürgen Müller"' 'organization = "Acme"' 'expiration_days = 30'
cg user add juergen
cg cert map juergen "$PKI/utf8.pem"
issue_client longdn 'cn = "Jürgen"' \
    "organization = \"$(python3 -c 'print("ü" * 300)')\"" 'expiration_days = 30'
sleep 1.2
req $(as utf8) "$WHO"
expect_status "a non-ASCII subject: 200" 200
expect_body "whoami shows the UTF-8 subject" "j['result']['certificate']['subject']" \
    "CN=Jürgen Müller,O=Acme"
req $(as longdn) "$WHO"
expect_status "a long non-ASCII subject, unmapped: 401 with its reason" 401 not_mapped
expect_body "the detail keeps the fix" "'certgate cert map' in j['error']['detail']" True
[ -n "$(header X-Request-Id)" ] && pass "and the answer carries its request id" ||
    fail "no X-Request-Id on the long-subject refusal"
grep '"event":"auth_refused"' "$SERVER_LOG" | grep '"reason":"not_mapped"' |
    grep '"cert_subject":"CN=Jürgen,O=üü' | grep -q '"detail":"the certificate is trusted' &&
    pass "the refusal line keeps every field" || fail "auth_refused line for the long subject"

# basic_auth_fallback
printf 'a long enough password\n' | "$CERTGATE" user add scripter --roles push --password-stdin >/dev/null
sleep 1.2
req -u "scripter:a long enough password" "$WHO"
expect_status "Basic fallback: 200" 200
expect_body "auth is basic" "j['result']['auth']" basic
req -u "scripter:wrong password" "$WHO"
expect_status "Basic with a wrong password: 401" 401 bad_password
req -u "nobody:a long enough password" "$WHO"
expect_status "Basic for an unknown user: 401" 401 bad_password
expect_body "does not say whether the user exists" "j['error']['detail']" \
    "the user name or password is wrong"

# the log: one access line per request, one reason line per refusal, no secrets
grep -q '"event":"auth_refused".*"reason":"untrusted_issuer"' "$SERVER_LOG" &&
    pass "refusals are logged with their reason" || fail "no auth_refused line"
grep '"event":"auth_refused"' "$SERVER_LOG" | grep -q '"reason":"no_credentials"' &&
    pass "a request without credentials has its auth_refused line too" ||
    fail "no auth_refused line for no_credentials"
grep -q '"event":"request".*"status":200.*' "$SERVER_LOG" && pass "access log lines" ||
    fail "no access log line"
b64_good=$(printf 'scripter:a long enough password' | base64)
b64_bad=$(printf 'scripter:wrong password' | base64)
if grep -q -e "a long enough password" -e "PRIVATE KEY" -e "Authorization" -e "$b64_good" \
    -e "$b64_bad" "$SERVER_LOG"; then
    fail "the log holds a secret"
else
    pass "no password, key or Authorization value in the log"
fi
stop_server
[ "$SERVER_RC" = 0 ] && pass "SIGTERM: exit 0" || fail "exit $SERVER_RC"
done_testing
