#!/bin/sh
# certgate crl add/list.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
make_pki
cg init

# mkca NAME ISSUER-DN-LINES... (template lines): a self-signed CA NAME.pem/.key in $T.
mkca() {
    name=$1
    shift
    certtool --generate-privkey --key-type ecdsa --no-text --outfile "$T/$name.key" 2>/dev/null
    printf '%s\n' "$@" >"$T/$name.tmpl"
    certtool --generate-self-signed --load-privkey "$T/$name.key" --template "$T/$name.tmpl" \
        --outfile "$T/$name.pem" --no-text 2>/dev/null
}
# mkcrl NAME: a CRL NAME.crl signed by $T/NAME.pem and .key.
mkcrl() {
    printf 'crl_next_update = 30\ncrl_number = 7\n' >"$T/crl.tmpl"
    certtool --generate-crl --load-ca-privkey "$T/$1.key" --load-ca-certificate "$T/$1.pem" \
        --template "$T/crl.tmpl" --outfile "$T/$1.crl" --no-text 2>/dev/null
}

expect_refused "a CRL whose CA is not in the table is refused" \
    "int.crl: the CRL's issuer 'CN=certgate Test Issuing CA,O=certgate tests' is not a CA in the table: add the issuing CA first" \
    crl add "$PKI/int.crl"
cg ca add "$PKI/chain.pem"
expect_refused "a CRL of a foreign CA is refused" "issuer 'CN=Foreign Root CA' is not a CA in the table" \
    crl add "$PKI/foreign.crl"
# Same issuer name as CA 1, another key: the signature check must catch it.
mkca forged 'cn = "certgate Test Issuing CA"' 'organization = "certgate tests"' ca \
    cert_signing_key crl_signing_key 'expiration_days = 30'
mkcrl forged
expect_refused "a forged CRL with the name of a table CA but another key is refused" \
    "forged.crl: the CRL names CA 1 \\(CN=certgate Test Issuing CA,O=certgate tests\\) as its issuer, but its signature does not verify with the key of that CA" \
    crl add "$T/forged.crl"
# The hard case: same issuer DN (same string types), and an authority key id
# equal to CA 1's subject key id, but another key. Only the signature check
# can refuse it (openssl, because certtool cannot set a key identifier).
need openssl
mkdir -p "$T/forge"
ski=$(certtool -i --infile "$PKI/int.pem" | sed -n '/Subject Key Identifier/{n;p}' |
    tr -d ' \t' | sed 's/../&:/g;s/:$//')
cat >"$T/forge/f.cnf" <<CNF
[req]
distinguished_name = dn
string_mask = default
prompt = no
x509_extensions = ext
[dn]
O = certgate tests
CN = certgate Test Issuing CA
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = $ski
[ca]
default_ca = d
[d]
database = $T/forge/index.txt
crlnumber = $T/forge/crlnumber
default_md = sha256
default_crl_days = 30
crl_extensions = crlext
[crlext]
authorityKeyIdentifier = keyid:always
CNF
: >"$T/forge/index.txt"
echo 05 >"$T/forge/crlnumber"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/forge/f.key"
openssl req -x509 -new -key "$T/forge/f.key" -config "$T/forge/f.cnf" -days 30 \
    -out "$T/forge/f.pem"
openssl ca -config "$T/forge/f.cnf" -gencrl -keyfile "$T/forge/f.key" -cert "$T/forge/f.pem" \
    -out "$T/forge/same-aki.crl" 2>/dev/null
aki=$(openssl crl -in "$T/forge/same-aki.crl" -noout -text | sed -n '/Authority Key Identifier/{n;p}' |
    tr -d ' \t' | tr A-F a-f)
[ "$aki" = "$ski" ] && pass "the forged CRL carries CA 1's key identifier" || fail "AKI $aki, SKI $ski"
expect_refused "a forged CRL with CA 1's name and key identifier but another key is refused" \
    "same-aki.crl: the CRL names CA 1 .* but its signature does not verify with the key of that CA" \
    crl add "$T/forge/same-aki.crl"
# A CA whose key usage leaves out cRLSign may not sign CRLs.
mkca nocrlsign 'cn = "No CRL Sign CA"' ca cert_signing_key 'expiration_days = 30'
cg ca add "$T/nocrlsign.pem"
mkcrl nocrlsign
expect_refused "a CRL from a CA without cRLSign is refused, saying so" \
    "names CA 3 \\(CN=No CRL Sign CA\\) as its issuer, but that CA's key usage does not allow signing CRLs" \
    crl add "$T/nocrlsign.crl"
expect_refused "a certificate is not a CRL" "int.pem: no CRL found" crl add "$PKI/int.pem"
expect_refused "garbage is not a CRL" "garbage.pem: no CRL found" crl add "$PKI/garbage.pem"
expect_ok "a CRL signed by the intermediate" crl add "$PKI/int.crl"
expect_out "it names the CA and the count" "from CA 1 .*: 1 revoked"
expect_refused "the same CRL twice is refused" \
    "CRL from this CA issued at the same time or later is already loaded" crl add "$PKI/int.crl"
expect_ok "crl list --json" crl list --json
expect_json "one CRL, one revoked" "(len(j), j[0]['revoked'])" "(1, 1)"
expect_json "not stale" "j[0]['stale']" False
expect_ok "ca show shows the CRL" ca show 1
expect_out "CRL line" "CRL: +1 revoked"
mkca own 'cn = "Own CA"' ca cert_signing_key crl_signing_key 'expiration_days = 30'
cg ca add "$T/own.pem"
mkcrl own
expect_ok "--json crl add" --json crl add "$T/own.crl"
expect_json "reports the CRL, its CA and the count" "(j['ca_id'], j['issuer'], j['revoked'])" \
    "(4, 'CN=Own CA', 0)"
done_testing
