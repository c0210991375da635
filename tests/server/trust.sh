#!/bin/sh
# certgate serve under ordinary PKI events, as an attacker or a renewal
# would meet it: a CA is its name and key (renewed, cross-signed, disabled,
# deleted), a CRL never un-revokes, and name constraints compare names. Live
# changes made with the CLI apply to the running server within a second.
. "$TESTS_SRCDIR/server/lib.sh"
need openssl
make_pki
setup_db
cg ca add "$PKI/int-renewed.pem"
cg ca add "$PKI/foreign-root.pem"
cg crl add "$PKI/int.crl"
cg user add revoked-user
cg cert map revoked-user "$PKI/revoked.pem"
cg cert map integrator1 "$PKI/nc-escaped.pem"
start_server
WHO="$URL/api/certgate/v1/whoami"
ID=$(sqlite3 "$DB" "SELECT min(id) FROM sys_ca_certificate WHERE subject LIKE 'CN=certgate Test Issuing%'")

# as_chain LEAF CA: curl arguments presenting LEAF.pem followed by CA.pem
# (the intermediate the client sends), with LEAF.key.
as_chain() {
    cat "$PKI/$1.pem" "$PKI/$2.pem" >"$T/$1+$2.pem"
    echo "--cert $T/$1+$2.pem --key $PKI/$1.key"
}

# wait_for DESC STATUS REASON CURL-ARGS...: the trust change applies within
# a second (the server polls every 200 ms): poll for up to 2 s.
wait_for() {
    desc=$1 want=$2 reason=$3
    shift 3
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        req "$@"
        [ "$STATUS" = "$want" ] && [ "$(header X-Certgate-Reason)" = "$reason" ] && break
        sleep 0.2
    done
    expect_status "$desc" "$want" "$reason"
}

# revoked_leaf_refused_on_every_path
req $(as revoked) "$WHO"
expect_status "a revoked leaf sent alone: 401 revoked" 401 revoked
req $(as_chain revoked int-renewed) "$WHO"
expect_status "a revoked leaf sent with the renewed intermediate: 401 revoked" 401 revoked
req $(as_chain revoked int-cross) "$WHO"
expect_status "a revoked leaf sent with the cross-signed intermediate: 401 revoked" 401 revoked
req $(as_chain client int-renewed) "$WHO"
expect_status "a valid leaf through the renewed intermediate: 200" 200

# delta_crl_does_not_unrevoke
cg crl add "$PKI/int-delta.crl"
[ "$RC" -eq 1 ] && grep -q "it is a delta CRL" "$T/err" && pass "crl add refuses the delta CRL" ||
    fail "crl add of a delta CRL: exit $RC: $(cat "$T/err")"
req $(as revoked) "$WHO"
expect_status "the revoked leaf stays refused" 401 revoked

# disabled_ca_refused_whatever_copy_is_sent (on an open server, within 1 s)
cg ca disable "$ID"
wait_for "after ca disable, the renewed copy sent by the client: 401 ca_disabled" 401 \
    ca_disabled $(as_chain client int-renewed) "$WHO"
req $(as_chain client int-cross) "$WHO"
expect_status "the cross-signed copy: 401 ca_disabled" 401 ca_disabled
req $(as client) "$WHO"
expect_status "the leaf alone: 401 ca_disabled" 401 ca_disabled
cg ca enable "$ID"
wait_for "ca enable trusts it again" 200 "" $(as client) "$WHO"

# deleted_ca_refused_and_its_crl_kept
for id in $(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject LIKE 'CN=certgate Test Issuing%' ORDER BY id DESC"); do
    cg ca delete "$id" --force
done
wait_for "after ca delete, the client sending the deleted CA itself: 401" 401 untrusted_issuer \
    --cert "$PKI/client-fullchain.pem" --key "$PKI/client.key" "$WHO"
expect_body "the detail says it was deleted" "'was deleted' in j['error']['detail']" True
req $(as_chain revoked int-renewed) "$WHO"
expect_status "the revoked leaf with a renewed copy: still 401" 401
cg ca add "$PKI/int.pem"
wait_for "added again, the CA is trusted" 200 "" --cert "$PKI/client-fullchain.pem" \
    --key "$PKI/client.key" "$WHO"
req --cert "$T/revoked+int-renewed.pem" --key "$PKI/revoked.key" "$WHO"
expect_status "and its CRL, kept, still revokes" 401 revoked

# escaped_comma_is_not_an_rdn_boundary
cg ca add "$PKI/nc-int.pem"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    req $(as_chain nc-escaped nc-int) "$WHO"
    grep -q directoryName "$T/body" && break
    sleep 0.2
done
expect_status "OU=x\\,O=Good under a CA constrained to O=Good: 401" 401 untrusted_issuer
expect_body "the detail names the constraint" \
    "'outside the directoryName constraints' in j['error']['detail']" True

stop_server
done_testing
