#!/bin/sh
# tlsfuzzer's client-certificate and ClientHello scripts against certgate and,
# for comparison, against nginx with `ssl_verify_client on`, the same
# certificates and the same TLS policy (TLS 1.2/1.3, ECDHE with AEAD, the
# server's order). Prints each script's PASS/FAIL counts for both servers.
#
# tlsfuzzer is no Debian package and the suite has no network: run it from
# clones kept outside this repository (python3-ecdsa from Debian):
#   git clone https://github.com/tlsfuzzer/tlsfuzzer
#   git clone https://github.com/tlsfuzzer/tlslite-ng
#   sh bench/tlsfuzzer.sh PATH/TO/tlsfuzzer [PATH/TO/tlslite-ng]
# (tlslite-ng defaults to beside tlsfuzzer). Environment: CERTGATE (the
# binary), SCRIPTS (a subset, space-separated names without .py),
# CLIENT_CERT (certgate's --client-cert, default request), KEEP (a directory
# for the per-script logs; by default a temporary one, kept when a script
# fails), PORT (certgate's; nginx gets PORT+1, default 18543), PROBES (only
# these probes of each script, by name, separated by "|").
#
# The certificates are RSA, from an RSA root: these scripts offer only RSA
# signature algorithms in TLS 1.2 and rsa_pss_rsae_sha256 in TLS 1.3, and
# the CertificateVerify scripts pad and fuzz RSA signatures. TLS 1.2 scripts that take a cipher run with
# TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, the suites of both servers' policy.
set -eu

usage="usage: sh bench/tlsfuzzer.sh PATH/TO/tlsfuzzer [PATH/TO/tlslite-ng]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
tf=$(cd "$1" && pwd)
tl=$(cd "${2:-$tf/../tlslite-ng}" && pwd)
[ -f "$tf/scripts/test-certificate-request.py" ] || {
    echo "bench: $tf is no tlsfuzzer clone (no scripts/test-certificate-request.py)" >&2
    exit 2
}
[ -d "$tl/tlslite" ] || { echo "bench: $tl is no tlslite-ng clone (no tlslite/)" >&2; exit 2; }

top=$(cd "$(dirname "$0")/.." && pwd)
certgate=${CERTGATE:-$top/build/werror/src/certgate}
[ -x "$certgate" ] || certgate=$top/build/demo/src/certgate
[ -x "$certgate" ] || { echo "bench: build certgate first (or set CERTGATE)" >&2; exit 1; }
command -v nginx >/dev/null 2>&1 || { echo "bench: needs nginx (apt-get install nginx-light)" >&2; exit 1; }

# A python3 that has ecdsa (tlslite-ng needs it): the first on PATH may be
# another installation than Debian's, which has python3-ecdsa.
python=""
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import ecdsa' 2>/dev/null; then
        python=$p
        break
    fi
done
[ -n "$python" ] || { echo "bench: no python3 with ecdsa (apt-get install python3-ecdsa)" >&2; exit 1; }

port=${PORT:-18543}
nport=$((port + 1))
t=$(mktemp -d "${TMPDIR:-/tmp}/certgate-tlsfuzzer.XXXXXX")
logs=${KEEP:-$t/logs}
mkdir -p "$logs"
pid=""
npid=""
failed=0
cleanup() {
    rc=$?
    for p in $pid $npid; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then
        rm -rf "$t"
    elif [ "$failed" -ne 0 ]; then
        rm -rf "$t/pki" "$t/nginx" "$t"/bench.db*
        echo "bench: logs kept in $logs"
    else
        rm -rf "$t"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An RSA PKI of its own: a root, the server and the client under it. The
# scripts offer only RSA in signature_algorithms_cert, so an OpenSSL server
# (nginx) refuses a chain signed with ECDSA, as tests/pki/mkpki.sh's are.
pki=$t/pki
mkdir -p "$pki"
serial=4240
# rsa_cert NAME CA|- TEMPLATE-LINE...: $pki/NAME.pem and NAME.key (RSA 2048).
rsa_cert() {
    name=$1
    ca=$2
    shift 2
    serial=$((serial + 1))
    certtool --generate-privkey --key-type rsa --bits 2048 --no-text \
        --outfile "$pki/$name.key" 2>/dev/null
    { echo "serial = $serial"; echo 'expiration_days = 30'; printf '%s\n' "$@"; } \
        >"$pki/$name.tmpl"
    if [ "$ca" = - ]; then
        certtool --generate-self-signed --load-privkey "$pki/$name.key" \
            --template "$pki/$name.tmpl" --outfile "$pki/$name.pem" --no-text 2>/dev/null
    else
        certtool --generate-certificate --load-privkey "$pki/$name.key" \
            --load-ca-certificate "$pki/$ca.pem" --load-ca-privkey "$pki/$ca.key" \
            --template "$pki/$name.tmpl" --outfile "$pki/$name.pem" --no-text 2>/dev/null
    fi
}
rsa_cert root - 'cn = "tlsfuzzer bench RSA root"' ca cert_signing_key crl_signing_key
rsa_cert server root 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
    tls_www_server signing_key encryption_key
rsa_cert client root 'cn = "tlsfuzzer"' 'organization = "Acme"' tls_www_client signing_key

export CERTGATE_DB="$t/bench.db"
"$certgate" init >/dev/null
"$certgate" ca add "$pki/root.pem" >/dev/null
"$certgate" user add tlsfuzzer --roles push >/dev/null
"$certgate" cert map tlsfuzzer "$pki/client.pem" >/dev/null
"$certgate" serve --cert "$pki/server.pem" --key "$pki/server.key" \
    --client-cert "${CLIENT_CERT:-request}" --listen "127.0.0.1:$port" \
    --log-file "$logs/certgate.log" &
pid=$!

mkdir -p "$t/nginx"
cat >"$t/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $logs/nginx-error.log info;
pid $t/nginx/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $t/nginx;
    proxy_temp_path $t/nginx;
    fastcgi_temp_path $t/nginx;
    uwsgi_temp_path $t/nginx;
    scgi_temp_path $t/nginx;
    server {
        listen 127.0.0.1:$nport ssl;
        ssl_certificate $pki/server.pem;
        ssl_certificate_key $pki/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        ssl_prefer_server_ciphers on;
        ssl_client_certificate $pki/root.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / { default_type application/json; return 200 '{"ok":true}'; }
    }
}
CONF
nginx -c "$t/nginx/nginx.conf" -g 'daemon off;' &
npid=$!

for p in $port $nport; do
    i=0
    until "$python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$p" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || { echo "bench: nothing listens on 127.0.0.1:$p" >&2; exit 1; }
        sleep 0.1
    done
done

cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
# The signature algorithms each server names in its CertificateRequest
# (what the sigalgs probes compare with): certgate's priority string, and
# OpenSSL 3.0's defaults for nginx. The TLS 1.3 CertificateRequest carries
# certificate_authorities (47) from both, and status_request from GnuTLS.
cg_sigs="ecdsa_secp256r1_sha256 ecdsa_secp384r1_sha384 ecdsa_secp521r1_sha512
rsa_pss_rsae_sha256 rsa_pss_rsae_sha384 rsa_pss_rsae_sha512 rsa_pkcs1_sha256 rsa_pkcs1_sha384
rsa_pkcs1_sha512 ed25519"
ng_sigs="ecdsa_secp256r1_sha256 ecdsa_secp384r1_sha384 ecdsa_secp521r1_sha512 ed25519 ed448
rsa_pss_pss_sha256 rsa_pss_pss_sha384 rsa_pss_pss_sha512 rsa_pss_rsae_sha256 rsa_pss_rsae_sha384
rsa_pss_rsae_sha512 rsa_pkcs1_sha256 rsa_pkcs1_sha384 rsa_pkcs1_sha512 sha224+ecdsa sha224+rsa"
ng_dsa="sha224+dsa sha256+dsa sha384+dsa sha512+dsa" # TLS 1.2 only
# args SCRIPT SERVER: the script's options besides -p, one per line (an
# option's value may have spaces).
args() {
    sigs=$cg_sigs
    types="rsa_sign ecdsa_sign"
    exts="supported_versions:SH key_share:SH status_request:CR 47:CR"
    if [ "$2" = nginx ]; then
        sigs=$ng_sigs
        case $1 in
        test-tls13-*) ;;
        *) sigs="$sigs $ng_dsa" ;;
        esac
        types="rsa_sign dss_sign ecdsa_sign"
        exts="supported_versions:SH key_share:SH supported_groups:EE 47:CR"
    fi
    sigs=$(printf '%s' "$sigs" | tr '\n' ' ')
    client="-k
$pki/client.key
-c
$pki/client.pem"
    case $1 in
    test-certificate-request) printf '%s\n' "$client" -d -C "$cipher" -s "$sigs" -T "$types" ;;
    test-certificate-verify | test-certificate-malformed | test-certificate-verify-malformed)
        printf '%s\n' "$client" -d -C "$cipher"
        ;;
    test-tls13-certificate-request) printf '%s\n' "$client" -s "$sigs" -E "$exts" ;;
    test-tls13-certificate-verify) printf '%s\n' "$client" -s "$sigs" ;;
    test-truncating-of-client-hello) printf '%s\n' -d -C "$cipher" ;;
    *) ;;
    esac
}

scripts=${SCRIPTS:-"test-certificate-request test-certificate-verify test-certificate-malformed
test-certificate-verify-malformed test-tls13-certificate-request test-tls13-certificate-verify
test-invalid-client-hello test-truncating-of-client-hello test-invalid-cipher-suites
test-tls13-invalid-ciphers test-tls13-keyshare-omitted"}

# counts LOG: "PASS pass FAIL fail" from the script's summary, "error"
# without one (the script did not run to its end).
counts() {
    awk '/^TOTAL: / { t = $2 } /^PASS: / { p = $2 } /^FAIL: / { f = $2 }
        END { if (t == "") print "error"; else printf "%s pass %s fail", p, f }' "$1"
}

# reasons LOG: the failed probes' errors, counted (the last line of each
# traceback; record lengths dropped so that equal causes add up).
reasons() {
    grep -E '^[A-Za-z.]*(Error|Exception)[A-Za-z]*: ' "$1" | sed 's/(len=[0-9]*)//' | cut -c1-150 |
        sort | uniq -c | sort -rn
}

printf '%-36s %-20s %-20s\n' script certgate nginx
for s in $scripts; do
    line=$(printf '%-36s' "$s")
    for server in certgate nginx; do
        p=$port
        [ "$server" = nginx ] && p=$nport
        log="$logs/$server-$s.log"
        # shellcheck disable=SC2046 # args is a list of options
        # the options and the probes' names (PROBES, split on "|") become
        # the positional arguments: both may hold spaces
        set -f
        old_ifs=$IFS
        IFS=$(printf '\n+')
        IFS=${IFS%+}
        # shellcheck disable=SC2046 # one argument per line
        set -- $(args "$s" "$server")
        IFS='|'
        # shellcheck disable=SC2086 # PROBES is split on "|"
        set -- "$@" ${PROBES:-}
        IFS=$old_ifs
        set +f
        if ! PYTHONPATH="$tf:$tl" timeout "${TIMEOUT:-900}" "$python" "$tf/scripts/$s.py" \
            -p "$p" "$@" >"$log" 2>&1; then
            failed=1
        fi
        line="$line $(printf '%-20s' "$(counts "$log")")"
    done
    echo "$line"
done
echo
echo "Why probes failed (count, error), per script and server:"
for s in $scripts; do
    for server in certgate nginx; do
        r=$(reasons "$logs/$server-$s.log")
        [ -n "$r" ] && printf '%s on %s:\n%s\n' "$s" "$server" "$r"
    done
done
echo "per-script logs: $logs (each ends with FAILED: and the failed probes' names)"
