#!/bin/sh
# A CA is its name and key: renewed and cross-signed copies, disable and
# delete, CRLs that belong to a key and never un-revoke, and name
# constraints that compare names. Every decision through certgate check,
# the verifier the server runs.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3 openssl
make_pki
cg init
cg ca add "$PKI/chain.pem"
cg user add integrator1 --roles push
cg cert map integrator1 "$PKI/client.pem"
cg cert map integrator1 "$PKI/revoked.pem"

# check_reason DESC FILE CODE: certgate check's reason code in --json.
check_reason() {
    cg check "$PKI/$2" --json
    got=$(json_get "j['reason']" 2>&1)
    if [ "$got" = "$3" ]; then
        pass "$1"
    else
        fail "$1: reason '$got', expected '$3': $(json_get "j.get('detail')" 2>&1)"
    fi
}

# -- renewal: two records of the issuing CA, one CRL ---------------------------
expect_ok "a renewed copy of the issuing CA (same name and key) is added" \
    ca add "$PKI/int-renewed.pem"
int2=$(sqlite3 "$DB" "SELECT max(id) FROM sys_ca_certificate")
expect_ok "the CRL of that key is loaded" crl add "$PKI/int.crl"
check_reason "a revoked leaf sent alone is refused" revoked.pem revoked
check_reason "a revoked leaf sent with the renewed copy is refused" revoked-renewed.pem revoked
check_reason "a revoked leaf sent with a cross-signed copy is refused" revoked-cross.pem revoked
check_reason "the valid leaf through the renewed copy is accepted" client-renewed-int.pem ok
expect_ok "ca list" ca list --json
expect_json "both copies show the CRL of their key" \
    "sorted(c['subject'] for c in j if c.get('crl') and c['crl']['revoked'] == 1)" \
    "['CN=certgate Test Issuing CA,O=certgate tests', 'CN=certgate Test Issuing CA,O=certgate tests']"

# -- disable: every copy of the key, whatever the client sends -------------------
expect_ok "disabling the first record of the issuing CA" ca disable 1
expect_out "names the other copy" "so are the other records of its key.*: $int2"
check_reason "a client sending the renewed copy is refused" client-renewed-int.pem ca_disabled
check_reason "a client sending only its leaf is refused" client.pem ca_disabled
sqlite3 "$DB" "DELETE FROM sys_ca_certificate WHERE id = $int2"
check_reason "a renewed copy the table does not hold is refused too" client-renewed-int.pem \
    ca_disabled
expect_ok "a copy of a disabled CA is added" ca add "$PKI/int-renewed.pem"
expect_err "and says it comes in disabled" "copy of a disabled CA .* added disabled"
int2=$(sqlite3 "$DB" "SELECT max(id) FROM sys_ca_certificate")
[ "$(sqlite3 "$DB" "SELECT active FROM sys_ca_certificate WHERE id = $int2")" = 0 ] &&
    pass "the new copy is disabled in the table" || fail "the new copy is active"
expect_ok "enabling one copy" ca enable "$int2"
check_reason "enables the CA" client-renewed-int.pem ok

# -- delete: the last copy leaves its key refused, and its CRL kept --------------
expect_ok "deleting one of two copies" ca delete "$int2"
expect_out "keeps the CA through the other" "stays in the table through record 1"
check_reason "the CA still works" client.pem ok
expect_ok "deleting the last copy (--force: mappings depend on it)" ca delete 1 --force
expect_out "says every copy is refused" "every copy of this CA .* is refused from now on"
expect_out "and that its CRL is kept" "its 1 CRL is kept"
check_reason "a client sending the deleted CA itself is refused" client-fullchain.pem \
    untrusted_issuer
expect_json "saying it was deleted" "'was deleted' in j['detail']" True
check_reason "a client sending a renewed copy is refused" client-renewed-int.pem untrusted_issuer
expect_ok "crl list" crl list
expect_out "the CRL stays, marked" "\\[its CA was deleted\\]"
expect_ok "adding the CA again" ca add "$PKI/int.pem"
expect_err "says it is trusted again" "had been deleted from the table"
check_reason "trusts it again" client-fullchain.pem ok
check_reason "and its revocations apply again" revoked.pem revoked

# -- cross-signed copy under another active root ---------------------------------
cg ca add "$PKI/foreign-root.pem"
check_reason "the cross-signed path is accepted while the CA is active" revoked-cross.pem revoked
int1=$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject LIKE 'CN=certgate Test Issuing%'")
cg ca disable "$int1"
cg cert map integrator1 "$PKI/client2.pem"
printf '%s\n' "$(cat "$PKI/client2.pem" "$PKI/int-cross.pem")" >"$T/client2-cross.pem"
cg check "$T/client2-cross.pem" --json
expect_json "a cross-signed copy of a disabled CA is refused" "j['reason']" ca_disabled
cg ca enable "$int1"

# -- CRLs: only a newer complete CRL replaces one --------------------------------
expect_refused "a delta CRL is refused, saying what to load" \
    "int-delta.crl: refused: it is a delta CRL \\(deltaCRLIndicator\\).*load the issuer's complete CRL" \
    crl add "$PKI/int-delta.crl"
expect_refused "a CRL of a partitioned scope is refused" \
    "int-idp.crl: refused: it covers only part of its issuer's certificates \\(issuingDistributionPoint\\)" \
    crl add "$PKI/int-idp.crl"
expect_refused "a CRL with an unknown critical extension is refused" \
    "int-critext.crl: refused: it has the critical extension 1.3.6.1.4.1.55555.1" \
    crl add "$PKI/int-critext.crl"
check_reason "the revocation stands after the refusals" revoked.pem revoked
expect_ok "a newer complete CRL replaces it" crl add "$PKI/int-newer.crl"
expect_out "saying so" "replaces the older CRL"
check_reason "its revocations apply" client2.pem revoked
expect_refused "the older complete CRL cannot come back" \
    "int.crl: a CRL from this CA issued at the same time or later is already loaded .*number 3" \
    crl add "$PKI/int.crl"
expect_ok "crl list --json" crl list --json
expect_json "one CRL of that CA, with two revoked" "[c['revoked'] for c in j]" "[2]"

# -- name constraints compare names, not text -------------------------------------
cg ca add "$PKI/nc-int.pem"
cg cert map integrator1 "$PKI/nc-good.pem"
cg cert map integrator1 "$PKI/nc-escaped.pem"
check_reason "a subject inside the permitted directoryName is accepted" nc-good.pem ok
check_reason "an OU value with an escaped comma is not O=Good" nc-escaped.pem untrusted_issuer
expect_json "saying which constraint" "'outside the directoryName constraints' in j['detail']" True

done_testing
