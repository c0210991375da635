#!/bin/sh
# mkpki.sh OUTDIR: a complete test PKI for certgate's tests, made with certtool
# (GnuTLS) and, for key formats and one CRL, openssl. Keys are ECDSA P-256
# unless noted; .key files are unencrypted PKCS#8. Files:
#   root.pem/.key          CN=certgate Test Root CA (self-signed CA)
#   int.pem/.key           CN=certgate Test Issuing CA (signed by root, path_len 0)
#   chain.pem              int + root;  chain-reversed.pem: root + int
#   client.pem/.key        CN=integrator1,O=Acme (email/DNS/URI SANs, clientAuth); client-fullchain.pem
#   client2.pem/.key       CN=integrator2,O=Acme
#   client-renewed.pem/.key  CN=integrator1,O=Acme, new key
#   client-samekey.pem     CN=integrator1,O=Acme re-issued with client.key
#   foreign-root.pem/.key, foreign-int.pem/.key, foreign-chain.pem (int + root)
#   foreign-client.pem/.key  CN=integrator1,O=Acme issued by foreign-int
#   expired.pem/.key, notyet.pem/.key   clients outside their validity
#   selfsigned.pem/.key    CN=selfsigned-client, self-signed, not a CA
#   wrong-eku.pem/.key     serverAuth only;  wrong-ku.pem/.key  keyEncipherment only (RSA)
#   revoked.pem/.key       revoked in int.crl (next update in 30 days)
#   int-stale.crl          the same revocation, next update in the past
#   foreign.crl            a CRL signed by foreign-root
#   server.pem/.key        CN=localhost, DNS localhost, IP 127.0.0.1; server-fullchain.pem
#   server2.pem/.key       another server certificate for the same names
#   server-rsa.pem/.key    RSA 2048 server certificate, PKCS#1 key
#   expired-ca.pem         a self-signed CA entirely in the past
#   int-unknown-root.pem   an intermediate signed by foreign-root
#   leaf-as-ca.pem         copy of client.pem;  with-key.pem: client.pem + client.key
#   garbage.pem            a CERTIFICATE block with invalid base64;  empty.pem; text.pem
# Copies of one CA and CRLs of every kind, for the trust tests:
#   int-renewed.pem        the issuing CA renewed: same subject and key, signed by root
#   int-cross.pem          the issuing CA cross-signed: same subject and key, by foreign-root
#   revoked-renewed.pem    revoked.pem + int-renewed.pem;  client-renewed-int.pem likewise
#   revoked-cross.pem      revoked.pem + int-cross.pem
#   int-newer.crl          complete CRL of int, number 3, revoking revoked and client2
#   int-delta.crl          delta CRL of int (critical deltaCRLIndicator), number 5, no entries
#   int-idp.crl            CRL of int for a partitioned scope (issuingDistributionPoint)
#   int-critext.crl        CRL of int with an unknown critical extension
#   nc-int.pem/.key        intermediate under root, permitted directoryName O=Good
#   nc-good.pem/.key       O=Good,CN=nc-good under nc-int
#   nc-escaped.pem/.key    one RDN OU="x,O=Good" (an escaped comma), then CN, under nc-int
set -eu

out=${1:?usage: mkpki.sh OUTDIR}
mkdir -p "$out"
cd "$out"
serial=1000

key() {
    certtool --generate-privkey --key-type ecdsa --curve secp256r1 --no-text \
        --outfile "$1.sec1" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$1.sec1" -out "$1.key"
    rm -f "$1.sec1"
}

rsakey() {
    certtool --generate-privkey --key-type rsa --bits 2048 --no-text --outfile "$1.key" \
        2>/dev/null
}

tmpl() {
    serial=$((serial + 1))
    { echo "serial = $serial"; printf '%s\n' "$@"; } >"$name.tmpl"
}

# selfsign NAME LINES...: a self-signed certificate NAME.pem with NAME.key.
selfsign() {
    name=$1
    shift
    tmpl "$@"
    certtool --generate-self-signed --load-privkey "$name.key" --template "$name.tmpl" \
        --outfile "$name.pem" --no-text 2>/dev/null
    rm -f "$name.tmpl"
}

# issue NAME CA LINES...: NAME.pem signed by CA.pem/CA.key with NAME.key.
issue() {
    name=$1
    ca=$2
    shift 2
    tmpl "$@"
    certtool --generate-certificate --load-privkey "$name.key" --load-ca-certificate "$ca.pem" \
        --load-ca-privkey "$ca.key" --template "$name.tmpl" --outfile "$name.pem" --no-text \
        2>/dev/null
    rm -f "$name.tmpl"
}

CA="ca cert_signing_key crl_signing_key"
CLIENT="tls_www_client signing_key"

key root
selfsign root 'cn = "certgate Test Root CA"' 'organization = "certgate tests"' $CA \
    'expiration_days = 3650'
key int
issue int root 'cn = "certgate Test Issuing CA"' 'organization = "certgate tests"' $CA \
    'path_len = 0' 'expiration_days = 1825'
cat int.pem root.pem >chain.pem
cat root.pem int.pem >chain-reversed.pem

key client
issue client int 'cn = "integrator1"' 'organization = "Acme"' $CLIENT \
    'email = "integrator1@example.com"' 'dns_name = "integrator1.example.com"' \
    'uri = "spiffe://acme/integrator1"' 'expiration_days = 365'
cat client.pem int.pem >client-fullchain.pem
key client2
issue client2 int 'cn = "integrator2"' 'organization = "Acme"' $CLIENT 'expiration_days = 365'
key client-renewed
issue client-renewed int 'cn = "integrator1"' 'organization = "Acme"' $CLIENT \
    'expiration_days = 730'
cp client.key client-samekey.key
issue client-samekey int 'cn = "integrator1"' 'organization = "Acme"' $CLIENT \
    'expiration_days = 400'
rm -f client-samekey.key

key foreign-root
selfsign foreign-root 'cn = "Foreign Root CA"' $CA 'expiration_days = 3650'
key foreign-int
issue foreign-int foreign-root 'cn = "Foreign Issuing CA"' $CA 'expiration_days = 1825'
cat foreign-int.pem foreign-root.pem >foreign-chain.pem
key foreign-client
issue foreign-client foreign-int 'cn = "integrator1"' 'organization = "Acme"' $CLIENT \
    'expiration_days = 365'

key expired
issue expired int 'cn = "expired-client"' $CLIENT 'activation_date = "2020-01-01 00:00:00"' \
    'expiration_date = "2021-01-01 00:00:00"'
key notyet
issue notyet int 'cn = "notyet-client"' $CLIENT 'activation_date = "2035-01-01 00:00:00"' \
    'expiration_date = "2036-01-01 00:00:00"'
key selfsigned
selfsign selfsigned 'cn = "selfsigned-client"' $CLIENT 'expiration_days = 365'
key wrong-eku
issue wrong-eku int 'cn = "wrong-eku-client"' tls_www_server signing_key 'expiration_days = 365'
rsakey wrong-ku
issue wrong-ku int 'cn = "wrong-ku-client"' tls_www_client encryption_key 'expiration_days = 365'
key revoked
issue revoked int 'cn = "revoked-client"' $CLIENT 'expiration_days = 365'

# CRLs: int.crl (fresh), int-stale.crl (next update in the past, via openssl
# because certtool cannot date a CRL in the past), foreign.crl.
name=crl
printf 'crl_next_update = 30\ncrl_number = 1\n' >crl.tmpl
certtool --generate-crl --load-ca-privkey int.key --load-ca-certificate int.pem \
    --load-certificate revoked.pem --template crl.tmpl --outfile int.crl --no-text 2>/dev/null
printf 'crl_next_update = 30\ncrl_number = 1\n' >crl.tmpl
certtool --generate-crl --load-ca-privkey foreign-root.key --load-ca-certificate foreign-root.pem \
    --template crl.tmpl --outfile foreign.crl --no-text 2>/dev/null
rm -f crl.tmpl
mkdir -p ossl
: >ossl/index.txt
rserial=$(certtool -i --infile revoked.pem | sed -n 's/^[[:space:]]*Serial Number (hex): //p')
printf 'R\t300101000000Z\t200101000000Z\t%s\tunknown\t/CN=revoked-client\n' \
    "$(echo "$rserial" | tr a-f A-F)" >ossl/index.txt
cat >ossl/ca.cnf <<CNF
[ca]
default_ca = d
[d]
database = ossl/index.txt
crlnumber = ossl/crlnumber
default_md = sha256
CNF
echo 02 >ossl/crlnumber
openssl ca -config ossl/ca.cnf -gencrl -keyfile int.key -cert int.pem \
    -crl_lastupdate 20200101000000Z -crl_nextupdate 20200201000000Z -out int-stale.crl \
    2>/dev/null
rm -rf ossl

# The issuing CA renewed (same key, new serial and dates) and cross-signed
# by another root: copies of one CA.
cp int.key int-renewed.key
issue int-renewed root 'cn = "certgate Test Issuing CA"' 'organization = "certgate tests"' $CA \
    'path_len = 0' 'expiration_days = 1900'
cp int.key int-cross.key
issue int-cross foreign-root 'cn = "certgate Test Issuing CA"' 'organization = "certgate tests"' \
    $CA 'path_len = 0' 'expiration_days = 1000'
rm -f int-renewed.key int-cross.key
cat revoked.pem int-renewed.pem >revoked-renewed.pem
cat client.pem int-renewed.pem >client-renewed-int.pem
cat revoked.pem int-cross.pem >revoked-cross.pem

# CRLs of int beyond the complete one: openssl, with raw extensions where
# its configuration has no name for them.
mkdir -p ossl
: >ossl/index.txt
for f in revoked client2; do
    s=$(certtool -i --infile "$f.pem" | sed -n 's/^[[:space:]]*Serial Number (hex): //p')
    printf 'R\t300101000000Z\t250101000000Z\t%s\tunknown\t/CN=%s\n' \
        "$(echo "$s" | tr a-f A-F)" "$f" >>ossl/index.txt
done
# crl NAME NUMBER EXTENSION-LINES...: int-NAME.crl with CRL number NUMBER.
crl() {
    out=$1
    echo "$2" >ossl/crlnumber
    shift 2
    {
        printf '[ca]\ndefault_ca = d\n[d]\ndatabase = ossl/index.txt\n'
        printf 'crlnumber = ossl/crlnumber\ndefault_md = sha256\ncrl_extensions = ext\n'
        printf '[ext]\nauthorityKeyIdentifier = keyid:always\n'
        printf '%s\n' "$@"
    } >ossl/ca.cnf
    openssl ca -config ossl/ca.cnf -gencrl -keyfile int.key -cert int.pem -crldays 30 \
        -out "int-$out.crl" 2>/dev/null
}
crl newer 03
: >ossl/index.txt
crl delta 05 '2.5.29.27 = critical,DER:02:01:03'
crl idp 06 'issuingDistributionPoint = critical,@idp' '[idp]' 'fullname = URI:http://crl.example/int-part1.crl'
crl critext 07 '1.3.6.1.4.1.55555.1 = critical,DER:05:00'
rm -rf ossl

# A CA constrained to directoryName O=Good, a leaf inside, and a leaf whose
# one OU value holds an escaped comma: "OU=x\,O=Good" is not in O=Good.
mkdir -p ossl
cat >ossl/ext.cnf <<'CNF'
[nc]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nameConstraints = critical,permitted;dirName:good
[good]
O = Good
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
# ossl_issue NAME CA SUBJECT SECTION
ossl_issue() {
    key "$1"
    openssl req -new -key "$1.key" -subj "$3" -out ossl/req.pem
    serial=$((serial + 1))
    openssl x509 -req -in ossl/req.pem -CA "$2.pem" -CAkey "$2.key" -set_serial "$serial" \
        -days 365 -sha256 -extfile ossl/ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
}
ossl_issue nc-int root '/O=Good/CN=Good Issuing CA' nc
ossl_issue nc-good nc-int '/O=Good/CN=nc-good' leaf
ossl_issue nc-escaped nc-int '/OU=x,O=Good/CN=nc-escaped' leaf
rm -rf ossl

key server
issue server int 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
    tls_www_server signing_key encryption_key 'expiration_days = 365'
cat server.pem int.pem >server-fullchain.pem
key server2
issue server2 int 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
    tls_www_server signing_key encryption_key 'expiration_days = 365'
rsakey server-rsa
issue server-rsa int 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
    tls_www_server signing_key encryption_key 'expiration_days = 365'
openssl pkey -in server-rsa.key -traditional -out server-rsa.pkcs1 2>/dev/null ||
    openssl rsa -in server-rsa.key -traditional -out server-rsa.pkcs1 2>/dev/null
mv server-rsa.pkcs1 server-rsa.key

key expired-ca
selfsign expired-ca 'cn = "Expired Root CA"' $CA 'activation_date = "2015-01-01 00:00:00"' \
    'expiration_date = "2016-01-01 00:00:00"'
key int-unknown-root
issue int-unknown-root foreign-root 'cn = "Orphan Issuing CA"' $CA 'expiration_days = 1825'

cp client.pem leaf-as-ca.pem
cat client.pem client.key >with-key.pem
printf -- '-----BEGIN CERTIFICATE-----\nThis is !!! not base64 at all ###\n-----END CERTIFICATE-----\n' \
    >garbage.pem
: >empty.pem
echo "just some text, no certificate here" >text.pem
chmod 600 ./*.key
