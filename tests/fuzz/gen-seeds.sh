#!/bin/sh
# gen-seeds.sh OUTDIR: seed inputs for the certificate harnesses, made from
# a test PKI generated now (tests/pki/mkpki.sh, plus a few certificates
# with awkward names). The private keys stay in a temporary directory that
# is removed at the end: no seed holds a key. Writes OUTDIR/TARGET/NAME for
# fuzz_bundle, fuzz_crl, fuzz_dn and fuzz_verify (input formats: the
# comments at the top of each fuzz_TARGET.c; pieces are joined by "@@@@").
set -eu

out=${1:?usage: gen-seeds.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/certgate-seeds.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

sh "$here/../pki/mkpki.sh" "$tmp/pki" >/dev/null
cd "$tmp/pki"

# Certificates whose subjects test DN writing and canonicalisation: each is
# a typed DN (as certtool's template takes it) and a file name.
serial=5000
odd() {
    serial=$((serial + 1))
    printf 'serial = %s\ndn = "%s"\nemail = "a@example.com"\ndns_name = "x.example.com"\nuri = "urn:x:1"\ntls_www_client\nsigning_key\nexpiration_days = 365\n' \
        "$serial" "$2" >"$1.tmpl"
    if certtool --generate-certificate --load-privkey client.key --load-ca-certificate int.pem \
        --load-ca-privkey int.key --template "$1.tmpl" --outfile "$1.pem" --no-text \
        2>/dev/null; then
        printf '%s' "$2" >"$1.dn"
    else
        rm -f "$1.pem"
    fi
    rm -f "$1.tmpl"
}
odd dn-comma 'CN=Acme\, Inc.,O=Acme'
odd dn-utf8 'CN=Müller Grüße,O=Bücher,C=DE'
odd dn-escapes 'CN=a\+b\=c\;d\\e,OU=x\"y\"'
odd dn-dc 'UID=jdoe,DC=example,DC=com'
odd dn-multi 'CN=one+UID=two,O=Acme'
odd dn-space 'CN= lead and trail ,O=Acme'
odd dn-hash 'CN=\#hash,O=<angle>'
printf 'CN=integrator1,O=Acme' >client.dn

der() {
    openssl x509 -in "$1.pem" -outform DER -out "$1.der"
}
for c in client int root revoked selfsigned server-rsa expired notyet wrong-ku; do
    der "$c"
done
openssl crl -in int.crl -outform DER -out int-crl.der
openssl crl -in foreign.crl -outform DER -out foreign-crl.der

S='@@@@'
mkdir -p "$out/fuzz_bundle" "$out/fuzz_crl" "$out/fuzz_dn" "$out/fuzz_verify"

# Bundles: PEM in any order and DER; never with-key.pem.
for f in client.pem chain.pem chain-reversed.pem client-fullchain.pem server-rsa.pem \
    wrong-ku.pem wrong-eku.pem expired-ca.pem leaf-as-ca.pem garbage.pem text.pem \
    client.der root.der server-rsa.der dn-*.pem; do
    [ -f "$f" ] && cp "$f" "$out/fuzz_bundle/$f"
done

# CRLs, alone and with the CA that should have signed them.
cp int.crl int-stale.crl foreign.crl int-crl.der foreign-crl.der "$out/fuzz_crl/"
{ cat int.crl; printf '%s' "$S"; cat int.pem; } >"$out/fuzz_crl/int-crl-and-ca"
{ cat foreign.crl; printf '%s' "$S"; cat int.pem; } >"$out/fuzz_crl/foreign-crl-and-other-ca"
{ cat int-crl.der; printf '%s' "$S"; cat int.der; } >"$out/fuzz_crl/int-crl-and-ca.der"

# DNs: the typed DN, the certificate, a rule.
for c in client.pem dn-*.pem; do
    c=${c%.pem}
    if [ ! -f "$c.pem" ] || [ ! -f "$c.dn" ]; then
        continue
    fi
    { cat "$c.dn"; printf '%s' "$S"; cat "$c.pem"; printf '%scn=integrator1' "$S"; } \
        >"$out/fuzz_dn/$c"
    { cat "$c.dn"; printf '%s' "$S"; cat "$c.pem"; printf '%sdn=' "$S"; cat "$c.dn"; } \
        >"$out/fuzz_dn/$c-dn-rule"
done
{ printf 'cn=x%s' "$S"; cat client.der; printf '%semail=A@EXAMPLE.COM' "$S"; } \
    >"$out/fuzz_dn/der-email"

# Chains: 4 control bytes (roles of certificates 2.., the time, the CRL's
# CA), then the leaf and the others. Roles per certificate, two bits from
# the lowest: 0 active table CA, 1 sent, 2 disabled table CA, 3 both.
chain() {
    name=$1
    ctl=$2
    shift 2
    {
        # shellcheck disable=SC2059 # the control bytes are octal escapes
        printf "$ctl"
        first=1
        for f in "$@"; do
            [ $first = 1 ] || printf '%s' "$S"
            first=0
            cat "$f"
        done
    } >"$out/fuzz_verify/$name"
}
chain ok-int-sent '\001\000\200\000' client.pem int.pem root.pem
chain ok-int-table '\000\000\200\000' client.pem int.pem root.pem
chain ok-der '\001\000\200\000' client.der int.der root.der
chain ok-fullchain '\001\000\200\000' client-fullchain.pem root.pem
chain root-disabled '\001\002\200\000' client.pem int.pem root.pem
chain int-disabled '\002\000\200\000' client.pem int.pem root.pem
chain missing-int '\000\000\200\000' client.pem root.pem
chain revoked '\000\000\200\000' revoked.pem int.pem root.pem int.crl
chain revoked-stale '\000\000\200\000' revoked.pem int.pem root.pem int-stale.crl
chain expired '\001\000\377\000' expired.pem int.pem root.pem
chain notyet '\001\000\376\000' notyet.pem int.pem root.pem
chain wrong-eku '\001\000\200\000' wrong-eku.pem int.pem root.pem
chain wrong-ku '\001\000\200\000' wrong-ku.pem int.pem root.pem
chain selfsigned '\000\000\200\000' selfsigned.pem root.pem
chain foreign '\021\000\200\000' foreign-client.pem foreign-int.pem root.pem foreign-root.pem
chain unknown-root '\001\000\200\000' client.pem int-unknown-root.pem root.pem
chain leaf-as-ca '\000\000\200\000' client.pem leaf-as-ca.pem int.pem root.pem
chain odd-dn '\001\000\200\000' dn-comma.pem int.pem root.pem
