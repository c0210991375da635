#!/bin/sh
# What a security team's scanners see: sslscan and testssl.sh against a real
# certgate on loopback, with the default TLS policy, in both client-cert
# modes. From their machine-readable reports (sslscan --xml, testssl.sh
# --jsonfile): TLS 1.2 and 1.3 offered, SSLv2/SSLv3/TLS 1.0/TLS 1.1 not, no
# client-initiated renegotiation, and no testssl.sh finding of severity
# MEDIUM or above but the test PKI's own (listed in `excepted` with why).
#
# TLS_CHECK=quick (the default, in make check: about 30 s): sslscan in both
# modes, testssl.sh's protocol and renegotiation checks (-p -R) against the
# default `--client-cert request`. TLS_CHECK=full (make tls-check: several
# minutes): testssl.sh's whole default run in both modes. TLS_CHECK=none:
# skipped (contrib/run-tests.sh's sanitizer pass).
. "$TESTS_SRCDIR/server/lib.sh"

mode=${TLS_CHECK:-quick}
case $mode in
quick | full) ;;
none)
    # contrib/run-tests.sh's sanitizer pass: the -Werror pass ran the scans.
    echo "1..0 # SKIP TLS_CHECK=none (the scans ran in the -Werror pass)"
    exit 77
    ;;
*)
    echo "Bail out! TLS_CHECK is '$mode': quick or full"
    exit 99
    ;;
esac
# Debian names the testssl.sh program testssl; upstream calls it testssl.sh.
TESTSSL=$(command -v testssl || command -v testssl.sh || true)
for tool in sslscan "${TESTSSL:-testssl}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ -n "${CI:-}" ]; then
            fail "$tool is not installed (contrib/install-deps.sh --test installs it)"
            done_testing
        fi
        echo "SKIP: $tool is not installed (apt-get install sslscan testssl.sh)"
        exit 77
    fi
done

# excepted ID: when a testssl.sh finding of MEDIUM or above comes from the
# test PKI, not from certgate, say why (status 0); else status 1.
excepted() {
    case $1 in
    cert_revocation)
        # HIGH "Neither CRL nor OCSP URI provided": tests/pki/mkpki.sh puts
        # no CRL distribution point or OCSP URI in its certificates.
        echo "the test server certificate names no CRL distribution point or OCSP URI"
        ;;
    *) return 1 ;;
    esac
}

# untestable TEXT: testssl.sh says a check needs the client certificate it
# cannot present (3.0 has no option for one); with --client-cert require the
# checks that need a finished handshake (renegotiation, session resumption,
# HTTP) are left to the request run.
untestable() {
    case $1 in
    *"client x509-based authentication prevents this"* | *"because of client authentication"*)
        return 0
        ;;
    esac
    return 1
}

# sslscan_check LABEL: sslscan against $PORT, its XML report asserted on.
sslscan_check() {
    label=$1
    xml="$T/sslscan-$label.xml"
    timeout 300 sslscan --no-colour --xml="$xml" "127.0.0.1:$PORT" >"$T/sslscan-$label.out" 2>&1
    if ! python3 "$TESTS_SRCDIR/server/scanreport.py" sslscan "$xml" >"$T/ss" 2>&1; then
        fail "$label: sslscan gave no report: $(cat "$T/ss") $(tail -3 "$T/sslscan-$label.out")"
        return
    fi
    for v in tls1.2 tls1.3; do
        if grep -qx "protocol $v enabled" "$T/ss"; then
            pass "$label: sslscan sees $v enabled"
        else
            fail "$label: sslscan does not see $v enabled: $(grep "protocol $v" "$T/ss")"
        fi
    done
    for v in ssl2 ssl3 tls1.0 tls1.1; do
        if grep -qx "protocol $v disabled" "$T/ss"; then
            pass "$label: sslscan sees $v disabled"
        else
            fail "$label: sslscan does not see $v disabled: $(grep "protocol $v" "$T/ss")"
        fi
    done
    if grep -q '^renegotiation supported=0' "$T/ss"; then
        pass "$label: sslscan: no client-initiated renegotiation"
    else
        fail "$label: sslscan: $(grep '^renegotiation' "$T/ss" || echo 'no renegotiation result')"
    fi
    if grep -q 'vulnerable=1' "$T/ss"; then
        fail "$label: sslscan: $(grep 'vulnerable=1' "$T/ss")"
    fi
    # Ciphers: only sslscan's "strong"/"acceptable" ones, TLS 1.3's among them.
    weak=$(grep '^cipher ' "$T/ss" | grep -v -e ' strong$' -e ' acceptable$')
    if [ -n "$weak" ]; then
        fail "$label: sslscan rates ciphers below acceptable: $weak"
    elif grep -q '^cipher TLSv1.3 ' "$T/ss"; then
        pass "$label: sslscan: $(grep -c '^cipher ' "$T/ss") ciphers, all strong or acceptable"
    else
        fail "$label: sslscan lists no TLS 1.3 cipher: $(grep '^cipher' "$T/ss")"
    fi
}

# testssl_check LABEL ARGS...: testssl.sh ARGS against $PORT, its JSON
# report asserted on.
testssl_check() {
    label=$1
    shift
    json="$T/testssl-$label.json"
    started=$(date +%s)
    timeout 900 "$TESTSSL" --quiet --color 0 --warnings batch --nodns none \
        --add-ca "$PKI/root.pem" --jsonfile "$json" "$@" "127.0.0.1:$PORT" \
        >"$T/testssl-$label.out" 2>&1
    echo "# $label: testssl.sh $* took $(($(date +%s) - started)) s"
    testssl_assess "$label" "$json"
}

# testssl_assess LABEL JSON: the assertions on a testssl.sh JSON report.
testssl_assess() {
    label=$1
    json=$2
    if ! python3 "$TESTS_SRCDIR/server/scanreport.py" testssl "$json" >"$T/ts" 2>&1; then
        fail "$label: testssl.sh gave no report: $(cat "$T/ts") $(tail -5 "$T/testssl-$label.out")"
        return
    fi
    # finding ID: the finding testssl.sh reported under ID (empty if none).
    finding() { awk -F '\t' -v id="$1" '$1 == id { print $3; exit }' "$T/ts"; }
    for id in TLS1_2 TLS1_3; do
        case $(finding $id) in
        offered*) pass "$label: testssl.sh: $id offered" ;;
        *) fail "$label: testssl.sh: $id is '$(finding $id)', expected offered" ;;
        esac
    done
    for id in SSLv2 SSLv3 TLS1 TLS1_1; do
        if [ "$(finding $id)" = "not offered" ]; then
            pass "$label: testssl.sh: $id not offered"
        else
            fail "$label: testssl.sh: $id is '$(finding $id)', expected not offered"
        fi
    done
    if [ "$(finding secure_client_renego)" = "not vulnerable" ]; then
        pass "$label: testssl.sh: client-initiated renegotiation not vulnerable"
    elif [ "$label" = require ] && untestable "$(finding secure_client_renego)"; then
        echo "# $label: testssl.sh cannot renegotiate without a certificate (request covers it)"
    else
        fail "$label: testssl.sh: secure_client_renego is '$(finding secure_client_renego)'"
    fi
    # MEDIUM, HIGH, CRITICAL, and WARN (a check that could not run).
    bad=0
    awk -F '\t' '$2 ~ /^(MEDIUM|HIGH|CRITICAL|WARN)$/' "$T/ts" >"$T/ts-severe"
    while IFS="$(printf '\t')" read -r id severity text; do
        if why=$(excepted "$id"); then
            echo "# $label: excepted $severity $id ($text): $why"
        elif [ "$label" = require ] && [ "$severity" = WARN ] && untestable "$text"; then
            echo "# $label: not testable without a client certificate: $id ($text)"
        else
            fail "$label: testssl.sh: $severity $id: $text"
            bad=1
        fi
    done <"$T/ts-severe"
    [ "$bad" -eq 0 ] && pass "$label: testssl.sh: $(wc -l <"$T/ts") findings, none MEDIUM or above" \
        "but the test PKI's"
}

if [ "$mode" = full ]; then
    # testssl.sh's default run: protocols, ciphers, preferences, server
    # defaults and certificate, headers, vulnerabilities, client simulation.
    TESTSSL_ARGS=""
else
    TESTSSL_ARGS="-p -R"
fi

make_pki
setup_db
start_server
sslscan_check request
# shellcheck disable=SC2086 # TESTSSL_ARGS is a list of options
testssl_check request $TESTSSL_ARGS
stop_server

start_server --client-cert require
sslscan_check require
if [ "$mode" = full ]; then
    testssl_check require
fi
done_testing
