#!/bin/sh
# The TLS front door tells a refused client why, in the protocol's words:
# every failed handshake ends with the alert the RFC names before the
# close, as nginx does, and the log says the reason with the address.
. "$TESTS_SRCDIR/server/lib.sh"
need openssl curl
make_pki
setup_db
printf 'response.status = 201\nresponse.body = { ok = true }\n' >"$T/in.lua"
cg resource add --api t/in --method POST --path /rec --script "$T/in.lua" --roles push >/dev/null
start_server --client-cert require

# s_client ARGS...: a handshake with openssl; its output in $T/sc.
s_client() {
    openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI/root.pem" "$@" </dev/null \
        >"$T/sc" 2>&1
}

# has_alert DESC ALERT: openssl reported the alert it received.
has_alert() {
    if grep -q "alert $2" "$T/sc"; then
        pass "$1"
    else
        fail "$1: no 'alert $2' in: $(grep -i 'alert\|error\|eof' "$T/sc" | head -3)"
    fi
}

s_client -tls1_1 -cipher 'DEFAULT@SECLEVEL=0'
has_alert "TLS 1.1 is refused with protocol_version" "protocol version"
s_client -tls1_2 -cipher AES128-SHA
has_alert "a TLS 1.2 client with only CBC-SHA1 suites gets handshake_failure" "handshake failure"

# --client-cert require, no certificate: TLS 1.3 names certificate_required
# (RFC 8446 4.4.2.4); curl shows it instead of "Empty reply from server".
msg=$(curl -sS --tlsv1.3 --cacert "$PKI/root.pem" "$URL/healthz" 2>&1)
case $msg in
*"certificate required"*) pass "TLS 1.3 without a certificate: certificate_required" ;;
*) fail "TLS 1.3 without a certificate: curl said: $msg" ;;
esac
msg=$(curl -sS --tlsv1.2 --tls-max 1.2 --cacert "$PKI/root.pem" "$URL/healthz" 2>&1)
case $msg in
*"alert handshake failure"* | *"handshake failure"*)
    pass "TLS 1.2 without a certificate: handshake_failure" ;;
*) fail "TLS 1.2 without a certificate: curl said: $msg" ;;
esac

# The log line says why, and to whom.
if grep -q '"event":"tls_handshake_failed".*"remote":"127.0.0.1"' "$SERVER_LOG"; then
    pass "the log has tls_handshake_failed with the client's address"
else
    fail "no tls_handshake_failed line: $(tail -3 "$SERVER_LOG")"
fi
if grep -q 'handshake message out of context' "$SERVER_LOG"; then
    fail "libmicrohttpd's reasonless handshake line is still logged"
else
    pass "no reasonless 'handshake message out of context' line"
fi
# The CertificateRequest names each signature algorithm once, in both
# versions, and none with SHA-1 or SHA-224 (RFC 9155).
for v in -tls1_2 -tls1_3; do
    s_client "$v" -cert "$PKI/client.pem" -key "$PKI/client.key"
    algs=$(sed -n 's/^Requested Signature Algorithms: //p' "$T/sc")
    dups=$(echo "$algs" | tr ':' '\n' | sort | uniq -d | tr '\n' ' ')
    if [ -z "$algs" ]; then
        fail "$v: no CertificateRequest signature algorithms: $(grep -i 'alert\|error' "$T/sc" | head -3)"
    elif [ -n "$dups" ]; then
        fail "$v: the CertificateRequest repeats $dups: $algs"
    elif echo "$algs" | grep -q -i 'SHA1\|SHA224'; then
        fail "$v: the CertificateRequest offers SHA-1 or SHA-224: $algs"
    else
        pass "$v: the CertificateRequest names each signature algorithm once"
    fi
done
# Client-initiated renegotiation (TLS 1.2) is refused with no_renegotiation,
# which the client reports (testssl.sh: "not vulnerable").
(printf 'R\n'; sleep 1) | openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 \
    -CAfile "$PKI/root.pem" -cert "$PKI/client.pem" -key "$PKI/client.key" >"$T/sc" 2>&1
if grep -q "RENEGOTIATING" "$T/sc" && grep -q "no renegotiation" "$T/sc"; then
    pass "a client's renegotiation is refused with no_renegotiation"
else
    fail "renegotiation: $(grep -i 'reneg\|alert\|error' "$T/sc" | head -3)"
fi
# A client with its certificate still gets in.
req $(as client) "$URL/api/certgate/v1/whoami"
expect_status "a client with its certificate still gets in" 200

# One record per answer: head and body of a small answer arrive in one TLS
# record, as from nginx (libmicrohttpd alone sends two). openssl -msg shows
# each record the server sent; after the handshake, the inner content type
# 17 marks application data (TLS 1.3), the record type 17 (TLS 1.2).
#   app_records VERSION_FLAG IS_TLS12: the count of application-data records.
app_records() {
    printf 'GET /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
        openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI/root.pem" -cert "$PKI/client.pem" \
            -key "$PKI/client.key" -msg -ign_eof "$1" 2>/dev/null >"$T/sc"
    awk '/^<<< .*InnerContent/ { inner = 1; next }
         inner && /^    17/ { n++ } { inner = 0 }
         /^<<< TLS 1.2, RecordHeader/ { getline; if (tls12 && $1 == "17") n++ }
         END { print n + 0 }' tls12="$2" "$T/sc"
}
for v in 1.3 1.2; do
    n=$(app_records "-tls$(echo $v | tr . _)" "$([ $v = 1.2 ] && echo 1)")
    if [ "$n" = 1 ] && grep -q '"user":"integrator1"' "$T/sc"; then
        pass "TLS $v: the answer's head and body come in one record"
    else
        fail "TLS $v: $n application-data records for one small answer (want 1)"
    fi
done

# Answers that reach clients still sending: a 413 for a body over the limit
# and a 431 for a head over --max-header-size are written while the client
# is still sending; the server then drains what it sends (lingering close)
# instead of resetting the connection, which would cost the client its
# answer (newman and Postman report ECONNRESET). The client writes its whole
# 20 MB body, then reads the answer.
flood() {
    python3 "$TESTS_SRCDIR/server/client.py" flood 127.0.0.1 "$PORT" "$PKI/root.pem" \
        "$PKI/client.pem" "$PKI/client.key" /api/t/in/rec "$@" >"$T/flood" 2>&1
}
flood 10 20000000
if grep -q '^sent all' "$T/flood" && grep -q '^413 .*"Request body too large"' "$T/flood"; then
    pass "a client still sending a body over the limit gets the 413 JSON"
else
    fail "413 while sending: $(tr '\n' ' ' <"$T/flood" | cut -c1-300)"
fi
flood 20000 20000000
if grep -q '^sent all' "$T/flood" && grep -q '^431 .*"Request header fields too large"' "$T/flood"; then
    pass "a client still sending after a head over the limit gets the 431 JSON"
else
    fail "431 while sending: $(tr '\n' ' ' <"$T/flood" | cut -c1-300)"
fi
# The server is still well and serves the next client.
req $(as client) "$URL/api/certgate/v1/whoami"
expect_status "the server serves on after the lingering closes" 200

# Session resumption: a client that reconnects with its session ticket
# skips the certificate exchange and is still the user of its certificate,
# checked against the trust data of now.
#   resume FLAG: one whoami on a new session, one on a resumed one; the
#   second's s_client output in $T/sc.
resume() {
    rm -f "$T/sess"
    for i in 1 2; do
        (printf 'GET /api/certgate/v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
            sleep 0.5) | openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI/root.pem" \
            -cert "$PKI/client.pem" -key "$PKI/client.key" "$1" -sess_out "$T/sess" \
            $([ $i = 2 ] && echo "-sess_in $T/sess") -ign_eof >"$T/sc" 2>&1
    done
}
for v in 1.3 1.2; do
    resume "-tls$(echo $v | tr . _)"
    if grep -q '^Reused' "$T/sc" && grep -q '"user":"integrator1"' "$T/sc"; then
        pass "TLS $v: a resumed session is its certificate's user"
    else
        fail "TLS $v resumption: $(grep -a '^New\|^Reused\|HTTP/1.1' "$T/sc" | tr '\n' ' ')"
    fi
done
cg user lock integrator1 >/dev/null
sleep 1.2
resume -tls1_3
if grep -q '^Reused' "$T/sc" && grep -q 'HTTP/1.1 401' "$T/sc" && grep -q 'X-Certgate-Reason: user_locked' "$T/sc"; then
    pass "a resumed session of a user locked since is refused (401 user_locked)"
else
    fail "resumed after lock: $(grep -a '^New\|^Reused\|HTTP/1.1\|X-Certgate-Reason' "$T/sc" | tr '\n' ' ')"
fi
cg user unlock integrator1 >/dev/null
done_testing
