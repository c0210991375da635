#!/bin/sh
# The TLS front door tells a refused client why, in the protocol's words:
# every failed handshake ends with the alert the RFC names before the
# close, as nginx does, and the log says the reason with the address.
. "$TESTS_SRCDIR/server/lib.sh"
need openssl curl
make_pki
setup_db
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
done_testing
