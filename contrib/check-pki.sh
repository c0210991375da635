#!/bin/sh
# Tests contrib/pki/certgate-pki: refusal to replace files, atomic failures,
# option errors, revocation (once, with a date that stays), and that
# certgate itself takes its CRLs. Prints TAP-like lines and a summary;
# exit 0 when all pass.
#   usage: sh contrib/check-pki.sh CERTGATE
set -u

[ $# = 1 ] && [ -x "$1" ] || {
    echo "usage: sh contrib/check-pki.sh CERTGATE" >&2
    exit 2
}
certgate=$1
pkitool="$(cd "$(dirname "$0")" && pwd)/pki/certgate-pki"
t=$(mktemp -d "${TMPDIR:-/tmp}/check-pki.XXXXXX") || exit 2
trap 'rm -rf "$t"' EXIT
d="$t/pki"
passed=0
failed=0

ok() {
    passed=$((passed + 1))
    echo "ok $((passed + failed)) - $*"
}
not_ok() {
    failed=$((failed + 1))
    echo "not ok $((passed + failed)) - $*"
}
# pki ARGS...: run certgate-pki; RC, $t/out and $t/err.
pki() {
    sh "$pkitool" "$@" >"$t/out" 2>"$t/err"
    RC=$?
}
check() { # check DESC 'SHELL CONDITION' (after pki: RC and $t/err)
    if eval "$2"; then ok "$1"; else not_ok "$1: rc $RC, $(head -c 300 "$t/err")"; fi
}
sum() { sha256sum "$1" | cut -c1-16; }
verifies() { openssl verify -CAfile "$d/root.pem" -untrusted "$d/issuing.pem" "$1" >/dev/null 2>&1; }
first_line() { head -n 1 "$t/out"; }

pki demo "$d"
check "demo makes a PKI" '[ "$RC" = 0 ] && [ -f "$d/integrator1.p12" ] && [ -f "$d/issuing.crl" ]'
root_sum=$(sum "$d/root.pem")
pki root "$d"
check "root again is refused" '[ "$RC" = 1 ]'
check "naming the file and --force" 'grep -q "root.key exists: not replacing it (--force" "$t/err"'
check "and the root is unchanged" '[ "$(sum "$d/root.pem")" = "$root_sum" ]'
check "so the issuing CA still verifies" 'verifies "$d/issuing.pem"'
key_sum=$(sum "$d/integrator1.key")
pki client "$d" integrator1
check "client NAME again is refused" '[ "$RC" = 1 ] && [ "$(sum "$d/integrator1.key")" = "$key_sum" ]'
pki server "$d" localhost
check "server NAME again is refused" '[ "$RC" = 1 ]'
pki issuing "$d"
check "issuing again is refused" '[ "$RC" = 1 ]'
pki client "$d" integrator1 --force
check "--force replaces a client" '[ "$RC" = 0 ] && [ "$(sum "$d/integrator1.key")" != "$key_sum" ]'
check "and the new one verifies" 'verifies "$d/integrator1.pem"'

pki client "$d" c2 --days
check "--days without a value is a usage error" '[ "$RC" = 2 ]'
check "that says so" 'grep -q -- "--days needs a value" "$t/err"'
pki crl "$d" --days 0
check "crl --days 0 is refused" '[ "$RC" = 2 ] && grep -q "at least 1" "$t/err"'
pki crl "$d" --days x
check "--days x is refused" '[ "$RC" = 2 ]'
pki root --help
check "root --help prints the usage" '[ "$RC" = 0 ] && first_line | grep -q "^usage: certgate-pki"'
pki --help
check "the usage starts at its beginning" 'first_line | grep -q "^usage: certgate-pki COMMAND DIR"'
check "and shows DIR after the command" 'grep -q "certgate-pki server  DIR NAME" "$t/out"'
pki bogus "$t/newdir"
check "an unknown command is a usage error" '[ "$RC" = 2 ]'
check "that creates no directory" '[ ! -e "$t/newdir" ]'
pki client "$d" c3 --bogus
check "an unknown option is a usage error" '[ "$RC" = 2 ] && [ ! -e "$d/c3.key" ]'

mkdir -p "$t/empty"
pki server "$t/empty" foo
check "server without an issuing CA is refused" '[ "$RC" = 1 ] && grep -q "no issuing CA" "$t/err"'
check "and leaves no file behind" '[ -z "$(ls -A "$t/empty")" ]'
printf 'not a key\n' >"$t/bad.key"
pki client "$d" c4 --key-from "$t/bad.key"
check "a bad --key-from is refused" '[ "$RC" = 1 ]'
check "and leaves no file behind" '[ ! -e "$d/c4.key" ] && [ ! -e "$d/c4.pem" ]'
check "nor a staging directory" '[ -z "$(find "$d" -name ".certgate-pki.*")" ]'

# revocation: once, dated when revoked, and certgate takes the CRLs
db="$t/cg.db"
cg() { # cg ARGS...: certgate on the test database; RC, $t/out and $t/err
    "$certgate" --db "$db" "$@" >"$t/out" 2>"$t/err"
    RC=$?
}
cg init
cg ca add "$d/chain.pem"
cg crl add "$d/issuing.crl"
check "certgate crl add takes the demo CRL" '[ "$RC" = 0 ]'
pki client "$d" gone
cg user add gone
cg cert map gone "$d/gone.pem"
pki revoke "$d" gone
check "revoke writes a CRL" '[ "$RC" = 0 ] && grep -q "^CRL:" "$t/out"'
serial=$(openssl x509 -in "$d/gone.pem" -noout -serial | sed 's/^serial=//')
crl_text() { openssl crl -in "$d/issuing.crl" -noout -text; }
revoked_on() { crl_text | grep -A1 "Serial Number: $serial" | sed -n 's/.*Revocation Date: //p'; }
check "the CRL lists the serial" '[ "$(crl_text | grep -c "Serial Number: $serial")" = 1 ]'
first=$(revoked_on)
pki revoke "$d" gone
check "revoke twice is refused" '[ "$RC" = 1 ] && grep -q "already revoked" "$t/err"'
sleep 2
pki crl "$d" --days 7
check "a new CRL lists the serial once" '[ "$(crl_text | grep -c "Serial Number: $serial")" = 1 ]'
check "with the same revocation date ($first)" '[ -n "$first" ] && [ "$(revoked_on)" = "$first" ]'
cg crl add "$d/issuing.crl"
check "certgate takes the newer CRL" '[ "$RC" = 0 ]'
cg check "$d/gone.pem"
check "and refuses the revoked certificate" 'grep -q "REFUSED (revoked)" "$t/out"'

if [ "$failed" = 0 ]; then
    echo "check-pki: all $passed checks hold"
else
    echo "check-pki: $failed of $((passed + failed)) checks failed"
fi
[ "$failed" = 0 ]
