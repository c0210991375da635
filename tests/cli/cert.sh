#!/bin/sh
# certgate cert map/rule/list/show/unmap.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
make_pki
cg init
cg ca add "$PKI/chain.pem"
cg user add integrator1 --roles push
cg user add other

expect_refused "mapping to an unknown user is refused" "no user named 'ghost'" \
    cert map ghost "$PKI/client.pem"
expect_refused "a file holding a private key is refused" \
    "attach only the certificate" cert map integrator1 "$PKI/with-key.pem"
expect_refused "a CA certificate is refused" "is a CA certificate" \
    cert map integrator1 "$PKI/int.pem"
expect_refused "a self-signed certificate is refused without --pinned" \
    "self-signed.*--pinned" cert map integrator1 "$PKI/selfsigned.pem"
expect_refused "--pinned on a CA-issued certificate is refused" \
    "only for self-signed" cert map integrator1 "$PKI/client.pem" --pinned
cat "$PKI/client.pem" "$PKI/client2.pem" >"$T/two-leaves.pem"
expect_refused "two client certificates in one file are refused" "2 client certificates" \
    cert map integrator1 "$T/two-leaves.pem"
cat "$PKI/client.pem" "$PKI/foreign-root.pem" >"$T/other-chain.pem"
expect_refused "a CA that is not the leaf's chain is refused" "not part of the chain" \
    cert map integrator1 "$T/other-chain.pem"
expect_refused "garbage is refused" "garbage.pem" cert map integrator1 "$PKI/garbage.pem"
# Non-PEM input: DER keys and PKCS#12 are refused as keys, broken DER says so.
openssl pkcs12 -export -in "$PKI/client.pem" -inkey "$PKI/client.key" -passout pass:changeit \
    -out "$T/client.p12"
openssl pkcs8 -topk8 -nocrypt -in "$PKI/client.key" -outform DER -out "$T/client.key.der"
openssl x509 -in "$PKI/client.pem" -outform DER -out "$T/client.der"
openssl x509 -in "$PKI/client2.pem" -outform DER -out "$T/client2.der"
head -c 300 "$T/client.der" >"$T/truncated.der"
cat "$T/client.der" "$T/client2.der" >"$T/two.der"
{ cat "$T/client.der"; printf 'junk'; } >"$T/trailing.der"
expect_refused "a PKCS#12 file is refused as a private key" \
    "client.p12: this is a PKCS#12 bundle .*holds a private key: attach only the certificate" \
    cert map integrator1 "$T/client.p12"
expect_refused "a DER PKCS#8 key is refused as a private key" \
    "client.key.der: this is a private key \\(DER PKCS#8.*attach only the certificate" \
    cert map integrator1 "$T/client.key.der"
expect_refused "truncated DER is unparsable, saying why" \
    "truncated.der: unparsable DER: the file is truncated" cert map integrator1 "$T/truncated.der"
expect_refused "DER with trailing bytes is unparsable, saying why" \
    "trailing.der: unparsable DER: 4 bytes of trailing data" cert map integrator1 "$T/trailing.der"
expect_refused "two DER certificates in one file are unparsable, saying why" \
    "two.der: unparsable DER: the file holds more than one DER structure" \
    cert map integrator1 "$T/two.der"

bad=$(printf 'Soci\351t\351')
expect_refused "a --name that is not UTF-8 is refused" "--name is not valid UTF-8" \
    cert map integrator1 "$PKI/client.pem" --name "$bad"
expect_refused "a cn= value that is not UTF-8 is refused" "--match value is not valid UTF-8" \
    cert rule integrator1 --ca 1 --match "cn=$bad"
expect_refused "a rule --name that is not UTF-8 is refused" "--name is not valid UTF-8" \
    cert rule integrator1 --ca 1 --match cn=x --name "$bad"
expect_ok "map the leaf" cert map integrator1 "$PKI/client.pem" --name laptop
expect_out "it prints the mapping" "integrator1.*mapping 1"
if grep -q "warning" "$T/err"; then
    fail "a trusted certificate gave a warning: $(cat "$T/err")"
else
    pass "no warning for a certificate that chains to the table"
fi
expect_refused "the same certificate twice is refused" "already mapped" \
    cert map other "$PKI/client.pem"
cat "$PKI/client2.pem" "$PKI/int.pem" "$PKI/root.pem" >"$T/client2-chain.pem"
n=$(sqlite3 "$DB" "SELECT count(*) FROM sys_user_certificate")
expect_ok "a leaf followed by its own chain" cert map other "$T/client2-chain.pem"
n2=$(sqlite3 "$DB" "SELECT count(*) FROM sys_user_certificate")
[ "$n2" -eq $((n + 1)) ] && pass "only the leaf is mapped" || fail "$n -> $n2 records"
expect_out "the mapped certificate is the leaf" "integrator2"
openssl x509 -in "$PKI/client-renewed.pem" -outform DER -out "$T/renewed.der"
expect_ok "a DER client certificate maps" --json cert map other "$T/renewed.der"
expect_json "--json cert map names the user and the leaf" "(j['user'], j['kind'], j['subject'])" \
    "('other', 'cert', 'CN=integrator1,O=Acme')"
cg cert unmap "$(json_get "j['id']")"
expect_ok "an untrusted certificate maps with a warning" cert map other "$PKI/foreign-client.pem"
expect_err "the warning says what the server would do" "warning: .*untrusted_issuer"
expect_ok "a pinned self-signed certificate" cert map other "$PKI/selfsigned.pem" --pinned
expect_out "pinned" "\\(pinned\\)"

expect_refused "a rule with an unknown field is refused" "unknown match field" \
    cert rule integrator1 --ca 1 --match serial=1
expect_refused "a rule without FIELD=VALUE is refused" "FIELD=VALUE" \
    cert rule integrator1 --ca 1 --match cn
expect_refused "a rule for an unknown CA is refused" "no CA" \
    cert rule integrator1 --ca 77 --match cn=integrator1
expect_refused "a bad spki value is refused" "64 hex" \
    cert rule integrator1 --ca 1 --match spki=abc
expect_ok "a cn rule" cert rule integrator1 --ca 1 --match cn=integrator1
expect_refused "the same rule twice is refused" "same rule already exists for user integrator1" \
    cert rule integrator1 --ca 1 --match cn=integrator1
expect_ok "an email rule" cert rule integrator1 --ca 1 --match email=integrator1@example.com
expect_ok "a root-bound rule warns" cert rule integrator1 --ca 2 --match cn=x
expect_err "warning about the root" "is a root"

expect_ok "cert list" cert list
expect_out "cert list shows the rule" "rule +- +cn=integrator1 issued by CA 1"
expect_ok "cert list --user" cert list --user other --json
expect_json "other has three mappings" "len(j)" 3
# A client certificate whose CN is not UTF-8: stored and printed escaped.
certtool --generate-privkey --key-type ecdsa --no-text --outfile "$T/latin1.key" 2>/dev/null
printf 'cn = "%s"\ntls_www_client\nsigning_key\nexpiration_days = 90\n' "$bad" >"$T/latin1.tmpl"
certtool --generate-certificate --load-privkey "$T/latin1.key" --load-ca-certificate "$PKI/int.pem" \
    --load-ca-privkey "$PKI/int.key" --template "$T/latin1.tmpl" --outfile "$T/latin1.pem" \
    --no-text 2>/dev/null
expect_ok "a certificate whose CN is not UTF-8 is mapped" --json cert map other "$T/latin1.pem"
expect_json "--json cert map prints its escaped subject" "j['subject']" 'CN=Soci\E9t\E9'
expect_ok "a cn= rule with the escaped form is accepted" cert rule other --ca 1 \
    --match 'cn=Soci\E9t\E9'
expect_ok "--json cert list" --json cert list --user other
expect_json "lists every mapping of other, the odd one included" \
    "sorted(m.get('subject', m.get('match_value')) for m in j if 'E9' in m.get('subject', m.get('match_value', '')))" \
    "['CN=Soci\\\\E9t\\\\E9', 'Soci\\\\E9t\\\\E9']"
expect_refused "cert list --user of an unknown user" "no user named" cert list --user ghost
expect_ok "cert show" cert show 1
expect_out "cert show: subject" "subject: +CN=integrator1"
expect_out "cert show: days left" "[0-9]+ days left"
expect_ok "cert show --json" cert show 1 --json
expect_json "json fingerprint" "len(j['fingerprint'])" 64
expect_refused "cert show of a bad id" "not a mapping id" cert show abc
expect_ok "cert unmap" cert unmap 1
expect_refused "cert unmap twice" "no mapping with id 1" cert unmap 1
expect_ok "user delete removes its mappings" user delete other
n=$(sqlite3 "$DB" "SELECT count(*) FROM sys_user_certificate WHERE user_id NOT IN (SELECT id FROM sys_user)")
[ "$n" = 0 ] && pass "no orphan mapping" || fail "$n orphans"
# Only the root in the table: a leaf+intermediate file verifies, but a
# client sending only its leaf would be refused; cert map says so.
reset_db
cg init
cg ca add "$PKI/root.pem"
cg user add postman
expect_ok "a leaf with its intermediate maps" cert map postman "$PKI/client-fullchain.pem"
expect_err "it warns about clients that send only the leaf" \
    "warning: clients that send only this leaf certificate \\(as Postman does\\) will be refused \\((untrusted_issuer|missing_intermediate): .*\\) until 'CN=certgate Test Issuing CA,O=certgate tests' is added with certgate ca add"
cg cert unmap 1
cg ca add "$PKI/int.pem"
expect_ok "with the intermediate in the table" cert map postman "$PKI/client-fullchain.pem"
if grep -q "warning" "$T/err"; then
    fail "it still warns: $(cat "$T/err")"
else
    pass "there is nothing to warn about"
fi

# dn= rules are stored in certgate's own form of the DN, so they match.
reset_db
cg init
cg ca add "$PKI/chain.pem"
cg user add dnuser
expect_refused "a dn= value that is no DN is refused" "dn=garbage: it is not an RFC 4514 DN" \
    cert rule dnuser --ca 1 --match dn=garbage
expect_refused "a multi-valued RDN is refused, saying why" "multi-valued RDN" \
    cert rule dnuser --ca 1 --match "dn=CN=a+UID=b,O=Acme"
expect_ok "a dn= rule in lower case with spaces" cert rule dnuser --ca 1 \
    --match "dn=cn=integrator1, o=Acme"
expect_out "it prints the canonical form it stored" "dn=CN=integrator1,O=Acme map to user dnuser"
expect_out "and says it rewrote it" "you gave 'cn=integrator1, o=Acme'"
v=$(sqlite3 "$DB" "SELECT match_value FROM sys_user_certificate WHERE match_field = 'dn'")
[ "$v" = "CN=integrator1,O=Acme" ] && pass "the canonical form is stored" || fail "stored '$v'"
cg --json check "$PKI/client.pem"
expect_json "a certificate with that subject maps to the user" "(j['reason'], j['user'])" \
    "('ok', 'dnuser')"
expect_refused "the same DN written differently is the same rule" "same rule already exists" \
    cert rule dnuser --ca 1 --match "dn=CN = integrator1,O = Acme"
expect_ok "--json cert rule with a DN" --json cert rule dnuser --ca 1 \
    --match 'dn=CN=Doe\2C John,O=Acme'
expect_json "prints the canonical value" "(j['match_field'], j['match_value'])" \
    "('dn', 'CN=Doe\\\\, John,O=Acme')"
done_testing
