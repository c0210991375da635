#!/bin/sh
# certgate ca add/list/show/disable/enable/delete against a real test PKI.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
make_pki
cg init

expect_refused "an empty file is refused" "empty.pem: .*no certificate" ca add "$PKI/empty.pem"
expect_refused "a file with no PEM block is refused" "text.pem: .*no certificate" \
    ca add "$PKI/text.pem"
expect_refused "garbage inside a PEM block is refused, naming the block" \
    "garbage.pem: block 1" ca add "$PKI/garbage.pem"
expect_refused "a private key in the file is refused" "private key" ca add "$PKI/with-key.pem"
expect_refused "a client (non-CA) certificate is refused" \
    "certificate 1 \\(.*integrator1.*\\) is not a CA certificate" ca add "$PKI/leaf-as-ca.pem"
expect_refused "an expired CA is refused" "expired on .*--allow-expired" \
    ca add "$PKI/expired-ca.pem"
expect_refused "a missing file is refused" "nope.pem: No such file" ca add "$PKI/nope.pem"
expect_refused "a directory is refused" "is a directory" ca add "$PKI"
cat "$PKI/root.pem" "$PKI/client.pem" >"$T/mixed.pem"
expect_refused "one bad certificate in a bundle adds nothing" \
    "certificate 2 .*is not a CA certificate" ca add "$T/mixed.pem"

expect_ok "a root and an intermediate as one bundle" ca add "$PKI/chain.pem" --name "Test PKI"
expect_out "ca add prints what it added" "added CA 1: .*Issuing CA.*intermediate"
expect_out "ca add prints the root" "added CA 2: .*Root CA.*root"
n=$(sqlite3 "$DB" 'SELECT count(*) FROM sys_ca_certificate')
[ "$n" = 2 ] && pass "two records" || fail "$n records"
expect_refused "a certificate already in the table is refused" "already in the CA table as id 2" \
    ca add "$PKI/root.pem"
cat "$PKI/foreign-root.pem" "$PKI/foreign-root.pem" >"$T/twice.pem"
expect_refused "a bundle repeating a certificate is refused" "appears twice" \
    ca add "$T/twice.pem"

# mkca NAME LINES...: a self-signed CA $T/NAME.pem made by certtool from
# template LINES.
mkca() {
    name=$1
    shift
    certtool --generate-privkey --key-type ecdsa --no-text --outfile "$T/$name.key" 2>/dev/null
    printf '%s\n' "$@" >"$T/$name.tmpl"
    certtool --generate-self-signed --load-privkey "$T/$name.key" --template "$T/$name.tmpl" \
        --outfile "$T/$name.pem" --no-text 2>/dev/null
}

# The 30-day flag: a CA made to last 30 days is flagged, one of 31 is not.
mkca d30 'cn = "Thirty Days CA"' ca cert_signing_key 'expiration_days = 30'
mkca d31 'cn = "Thirty-one Days CA"' ca cert_signing_key 'expiration_days = 31'
expect_ok "a CA with 30 days left" ca add "$T/d30.pem"
expect_ok "a CA with 31 days left" ca add "$T/d31.pem"
expect_ok "ca list" ca list
expect_out "flags the one with 30 days left" "30 .*Thirty Days CA  \\[EXPIRES IN 30 DAYS\\]\$"
expect_out "not the one with 31" "31 .*Thirty-one Days CA\$"
expect_ok "ca list --json" --json ca list
expect_json "expires_soon for 30 days, not for 31" \
    "[(c['days_until_expiry'], c['expires_soon']) for c in j if 'Days CA' in c['subject']]" \
    "[(30, True), (31, False)]"
d30=$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject = 'CN=Thirty Days CA'")
expect_ok "ca show of the 30-day CA" ca show "$d30"
expect_out "says it expires soon" "expiry: +30 days left \\[EXPIRES SOON\\]"
cg ca delete "$d30"
cg ca delete "$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject = 'CN=Thirty-one Days CA'")"

# A CA certificate whose keyUsage does not allow signing certificates.
mkca nosign 'cn = "No Cert Sign CA"' ca crl_signing_key 'expiration_days = 90'
expect_refused "a CA:TRUE certificate without keyCertSign is refused" \
    "nosign.pem: certificate 1 \\(CN=No Cert Sign CA\\) is marked CA:TRUE but its keyUsage lacks keyCertSign" \
    ca add "$T/nosign.pem"

# A CA that is not valid yet is stored, with a warning.
mkca later 'cn = "Later CA"' ca cert_signing_key 'activation_date = "2035-01-01 00:00:00"' \
    'expiration_date = "2040-01-01 00:00:00"'
expect_ok "a CA that is not valid yet is added" ca add "$T/later.pem"
expect_err "with a warning saying from when" "warning: CN=Later CA \\(id [0-9]+\\) is not valid before 2035-01-01T00:00:00Z"
cg ca delete "$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject = 'CN=Later CA'")"

# Names and subjects are UTF-8 text, so --json always prints every record.
bad=$(printf 'Soci\351t\351')
expect_refused "a --name that is not UTF-8 is refused" "--name is not valid UTF-8" \
    ca add "$PKI/foreign-root.pem" --name "$bad"
expect_refused "a --name with a control character is refused" "--name is not valid UTF-8" \
    ca add "$PKI/foreign-root.pem" --name "$(printf 'a\tb')"
expect_refused "an empty --name is refused" "--name must be 1 to 200 bytes" \
    ca add "$PKI/foreign-root.pem" --name ""
certtool --generate-privkey --key-type ecdsa --no-text --outfile "$T/latin1.key" 2>/dev/null
printf 'cn = "%s \001CA"\norganization = "Acme"\nca\ncert_signing_key\nexpiration_days = 90\n' \
    "$bad" >"$T/latin1.tmpl"
certtool --generate-self-signed --load-privkey "$T/latin1.key" --template "$T/latin1.tmpl" \
    --outfile "$T/latin1.pem" --no-text 2>/dev/null
expect_ok "a CA whose subject is not UTF-8 is added" ca add "$T/latin1.pem" \
    --name "$(printf 'Soci\303\251t\303\251')"
expect_out "its subject is printed with the bytes escaped" 'CN=Soci\\E9t\\E9 \\01CA,O=Acme'
expect_ok "--json ca list" --json ca list
expect_json "lists that CA, with the escaped subject" \
    "[c['subject'] for c in j if c['name'] == 'Soci\u00e9t\u00e9']" \
    "['CN=Soci\\\\E9t\\\\E9 \\\\01CA,O=Acme']"
latin1=$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE name <> 'Test PKI'")
expect_ok "--json ca show of it" --json ca show "$latin1"
expect_json "shows its subject" "j['subject']" 'CN=Soci\E9t\E9 \01CA,O=Acme'
# A record an older certgate stored with raw bytes: refused loudly, not dropped.
# (PostgreSQL stores no text that is not UTF-8: nothing to test there.)
if ! on_pg; then
    sqlite3 "$DB" "UPDATE sys_ca_certificate SET name = CAST(X'536f6369e974e9' AS TEXT) WHERE id = 1"
    expect_refused "--json ca list of a record that is not UTF-8 fails" \
        "ca list: cannot write the JSON output: a stored text is not valid UTF-8" --json ca list
    [ ! -s "$T/out" ] && pass "and prints no partial list" || fail "stdout: $(cat "$T/out")"
    expect_refused "--json ca show of it fails too" "cannot write the JSON output" --json ca show 1
    sqlite3 "$DB" "UPDATE sys_ca_certificate SET name = 'Test PKI' WHERE id = 1"
fi
cg ca delete "$latin1"

# An intermediate whose issuer is in the table but disabled.
cg ca add "$PKI/foreign-root.pem"
froot=$(sqlite3 "$DB" "SELECT id FROM sys_ca_certificate WHERE subject = 'CN=Foreign Root CA'")
cg ca disable "$froot"
expect_ok "an intermediate of a disabled root is added" ca add "$PKI/foreign-int.pem"
expect_err "with a warning that its issuer is disabled" \
    "Foreign Issuing CA \\(id [0-9]+\\) is an intermediate whose issuer, CA $froot \\(CN=Foreign Root CA\\), is disabled in the table: clients chaining to it are refused until certgate ca enable $froot"
if grep -q "add its root first" "$T/err"; then
    fail "it also says the root is missing: $(cat "$T/err")"
else
    pass "it does not claim the root is missing"
fi

# One by one, intermediate first: warns to add its root.
reset_db; cg init
expect_ok "an intermediate alone is accepted" ca add "$PKI/int.pem"
expect_err "it warns that its root is missing" "add its root first"
openssl x509 -in "$PKI/root.pem" -outform DER -out "$T/root.der"
expect_ok "then its root, as DER" --json ca add "$T/root.der"
expect_json "--json ca add lists the added root" "[(c['kind'], c['subject']) for c in j['added']]" \
    "[('root', 'CN=certgate Test Root CA,O=certgate tests')]"

expect_ok "a reversed bundle (root first) is fine" ca add "$PKI/foreign-chain.pem"
expect_ok "an expired CA with --allow-expired" ca add "$PKI/expired-ca.pem" --allow-expired

expect_ok "ca list" ca list
expect_out "ca list shows the root" "root .*certgate Test Root CA"
expect_out "ca list flags an expired CA" "\\[EXPIRED\\]"
expect_ok "ca list --json" ca list --json
expect_json "ca list --json has 5 records" "len(j)" 5
expect_json "the first record is the intermediate" "j[0]['kind']" intermediate

fp=$(sqlite3 "$DB" 'SELECT fingerprint FROM sys_ca_certificate WHERE id = 1')
expect_ok "ca show by id" ca show 1
expect_out "ca show: subject" "subject: +CN=certgate Test Issuing CA"
expect_out "ca show: issuer record" "issued by: +CA 2 .*Root CA"
expect_out "ca show: fingerprint" "SHA-256: +$fp"
expect_out "ca show: days left" "[0-9]+ days left"
expect_out "ca show: status" "status: +active"
expect_ok "ca show of the root lists its child" ca show 2
expect_out "the root issues the intermediate" "issues: +CA 1 .*Issuing CA"
expect_ok "ca show by fingerprint prefix with colons" ca show \
    "$(echo "$fp" | cut -c1-12 | sed 's/../&:/g;s/:$//')"
expect_out "found by prefix" "CA 1"
expect_ok "ca show --json" ca show 1 --json
expect_json "json issuer record" "j['issuer_record']['id']" 2
expect_refused "ca show of an unknown id" "no CA with id" ca show 99
for id in abc 0 -1 12ab "1 2"; do
    expect_refused "ca show '$id' is refused" "no CA with id or fingerprint '$id'" ca show "$id"
done
expect_refused "ca show '' is refused" "no CA id or fingerprint given" ca show ""
expect_refused "cert show 0 is refused" "'0' is not a mapping id" cert show 0
expect_refused "cert unmap of a negative id is refused" "'-5' is not a mapping id" cert unmap -5

expect_ok "ca disable" ca disable 2
expect_out "disabled" "is now disabled"
s=$(sqlite3 "$DB" 'SELECT active FROM sys_ca_certificate WHERE id = 2')
[ "$s" = 0 ] && pass "stored as inactive" || fail "active=$s"
expect_ok "ca enable" ca enable 2
expect_refused "ca disable of an unknown id" "no CA" ca disable 42

cg user add alice
cg cert rule alice --ca 1 --match cn=integrator1
expect_refused "ca delete refuses a CA a rule depends on" "1 rule.*--force" ca delete 1
expect_ok "ca delete --force" ca delete 1 --force
n=$(sqlite3 "$DB" 'SELECT count(*) FROM sys_user_certificate')
[ "$n" = 0 ] && pass "its rules went with it" || fail "$n rules left"
expect_ok "ca delete of an unused CA" ca delete 3

# What depends on a CA counts through the CAs below it.
reset_db
cg init
cg ca add "$PKI/chain.pem"
expect_refused "ca delete of a root with a child CA in the table is refused" \
    "CA 2 has 1 child CA \\(CA 1 CN=certgate Test Issuing CA,O=certgate tests\\) depending on it" \
    ca delete 2
cg user add u
cg cert map u "$PKI/client.pem"
expect_refused "ca delete of the CA that issued a mapped certificate is refused" \
    "CA 1 has 1 mapped certificate it issued depending on it.*--force" ca delete 1
expect_refused "ca delete of the root counts the mapping below its child" \
    "1 child CA \\(CA 1 .*\\) with 0 rules and 1 mapped certificate below it" ca delete 2
expect_ok "ca show of the root" ca show 2
expect_out "counts what is below it" \
    "depends on it: 0 rules, 0 mapped certificates; 1 CAs below it, with 0 rules and 1 mapped"
expect_ok "ca delete --force of the root" ca delete 2 --force
expect_out "says what it removed" "deleted CA 2 \\(CN=certgate Test Root CA.*\\) with its 0 rules"
expect_out "and that its key stays refused" "every copy of this CA \\(same name and key\\) is refused"
expect_out "and what it left" "left in the table: 1 CA below it, 0 rules bound to those and 1 mapped certificate"
n=$(sqlite3 "$DB" 'SELECT count(*) FROM sys_ca_certificate')
[ "$n" = 1 ] && pass "the child CA stays" || fail "$n CAs left"
cg cert rule u --ca 1 --match cn=integrator1
expect_ok "--json ca delete --force" --json ca delete 1 --force
expect_json "reports what it removed and left" \
    "(j['deleted'], j['forced'], j['removed']['rules'], j['left']['mapped_certificates'])" \
    "(1, True, 1, 1)"
done_testing
