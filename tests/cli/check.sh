#!/bin/sh
# certgate check: the server's decision for a certificate, in words and JSON.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
make_pki
cg init
cg ca add "$PKI/chain.pem"
cg user add integrator1 --roles push
cg cert map integrator1 "$PKI/client.pem"

# check_reason DESC FILE CODE [ARGS...]: exit status and reason code in --json.
check_reason() {
    desc=$1
    file=$2
    code=$3
    shift 3
    cg check "$PKI/$file" --json "$@"
    want=1
    [ "$code" = ok ] && want=0
    if [ "$RC" -ne "$want" ]; then
        fail "$desc: exit $RC, expected $want: $(cat "$T/err")"
        return
    fi
    got=$(json_get "j['reason']" 2>&1)
    if [ "$got" = "$code" ]; then
        pass "$desc"
    else
        fail "$desc: reason '$got', expected '$code'"
    fi
}

check_reason "a mapped certificate is accepted" client.pem ok
expect_json "as its user" "j['user']" integrator1
expect_json "through the exact mapping" "j['mapping_kind']" cert
expect_json "with the built chain" "len(j['chain'])" 3
check_reason "a leaf with its chain is accepted" client-fullchain.pem ok
check_reason "a trusted but unmapped certificate" client2.pem not_mapped
check_reason "a certificate from a foreign CA" foreign-client.pem untrusted_issuer
check_reason "a foreign chain sent in full" foreign-client.pem untrusted_issuer \
    --chain "$PKI/foreign-chain.pem"
check_reason "an expired certificate" expired.pem expired
check_reason "a certificate not yet valid" notyet.pem not_yet_valid
check_reason "a self-signed certificate" selfsigned.pem self_signed
check_reason "serverAuth only" wrong-eku.pem bad_key_usage
check_reason "no digitalSignature" wrong-ku.pem bad_key_usage
check_reason "a sent intermediate whose issuer is neither sent nor stored" foreign-client.pem \
    missing_intermediate --chain "$PKI/foreign-int.pem"
check_reason "--at in the future: expired then" client.pem expired --at 2099-01-01T00:00:00Z

cg cert map integrator1 "$PKI/revoked.pem"
check_reason "mapped but not yet revoked" revoked.pem ok
cg crl add "$PKI/int.crl"
check_reason "revoked by a CRL in the table" revoked.pem revoked

cg ca disable 2
check_reason "root disabled while its intermediate stays" client.pem ca_disabled
cg ca enable 2
cg user lock integrator1
check_reason "a locked user" client.pem user_locked
cg user unlock integrator1

check_reason "a renewed certificate before a rule" client-renewed.pem not_mapped
cg cert rule integrator1 --ca 1 --match cn=integrator1
check_reason "a renewed certificate through a cn rule" client-renewed.pem ok
expect_json "through the rule" "j['mapping_kind']" rule
cg ca add "$PKI/foreign-chain.pem"
check_reason "same CN from another CA is not mapped" foreign-client.pem not_mapped
cg cert rule integrator1 --ca 1 --match \
    "spki=$(certtool --pubkey-info --infile "$PKI/client.key" --outder 2>/dev/null |
        openssl dgst -sha256 -r | cut -d' ' -f1)"
check_reason "same key re-issued: matched by spki" client-samekey.pem ok

cg cert map integrator1 "$PKI/selfsigned.pem" --pinned
check_reason "a pinned self-signed certificate" selfsigned.pem ok

cg check "$PKI/client2.pem"
expect_out "the text names the decision" "decision: +REFUSED \\(not_mapped\\)"
expect_out "the text gives the fix" "fix: +map it: certgate cert map"
cg check "$PKI/client.pem"
expect_out "accepted in words" "decision: +ACCEPTED as user integrator1"
cg check "$PKI/with-key.pem"
[ "$RC" -eq 2 ] && pass "a private key file is a usage error" || fail "exit $RC"
expect_err "naming the key" "private key"
cg check "$PKI/nope.pem"
[ "$RC" -eq 2 ] && pass "a missing file is a usage error" || fail "exit $RC"
cg check "$PKI/client.pem" --at yesterday
[ "$RC" -eq 2 ] && pass "a bad --at is a usage error" || fail "exit $RC"
cg check "$PKI/client.pem" --bogus
[ "$RC" -eq 2 ] && pass "an unknown option is a usage error" || fail "exit $RC"
expect_err "in one line naming it" "^certgate check: unknown option --bogus"
[ "$(wc -l <"$T/err" 2>/dev/null || echo 0)" -le 1 ] && pass "one line only" ||
    fail "$(wc -l <"$T/err") lines"
cg check
[ "$RC" -eq 2 ] && pass "no file is a usage error" || fail "exit $RC"
expect_err "saying what to give" "name the client certificate file"
done_testing
