#!/bin/sh
# certgate crl add/list.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
make_pki
cg init
expect_refused "a CRL whose CA is not in the table is refused" "not a CA in the table" \
    crl add "$PKI/int.crl"
cg ca add "$PKI/chain.pem"
expect_refused "a CRL of a foreign CA is refused" "not a CA in the table" \
    crl add "$PKI/foreign.crl"
expect_refused "a certificate is not a CRL" "int.pem: " crl add "$PKI/int.pem"
expect_refused "garbage is not a CRL" "garbage.pem: " crl add "$PKI/garbage.pem"
expect_ok "a CRL signed by the intermediate" crl add "$PKI/int.crl"
expect_out "it names the CA and the count" "from CA 1 .*: 1 revoked"
expect_refused "the same CRL twice is refused" "CRL from this CA issued at the same time or later is already loaded" crl add "$PKI/int.crl"
expect_ok "crl list --json" crl list --json
expect_json "one CRL, one revoked" "(len(j), j[0]['revoked'])" "(1, 1)"
expect_json "not stale" "j[0]['stale']" False
expect_ok "ca show shows the CRL" ca show 1
expect_out "CRL line" "CRL: +1 revoked"
done_testing
