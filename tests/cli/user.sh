#!/bin/sh
# certgate user add/list/show/lock/unlock/roles/password/delete.
. "$TESTS_SRCDIR/lib.sh"
need sqlite3 python3
cg init
expect_ok "user add with roles" user add integrator1 --roles push,read
expect_out "user add reports the roles" "roles: push,read"
expect_refused "a duplicate user is refused" "user 'integrator1' already exists" user add integrator1
expect_refused "a name differing only in case is refused, naming the existing user" \
    "a user 'integrator1' already exists, and names that differ only in case are refused \\('Integrator1' vs 'integrator1'\\)" \
    user add Integrator1
expect_refused "a name starting with '-' is refused" "invalid user name '-x'.*not starting with '-'" \
    user add -- -x
expect_usage "an option that is no option is a usage error" "unknown option -x" user add -x
expect_ok "a role given twice is stored once" user add dup --roles push,read,push
expect_out "and printed as stored" "roles: push,read\\)"
n=$(sqlite3 "$DB" "SELECT count(*) FROM sys_user_role r JOIN sys_user u ON u.id = r.user_id WHERE u.name = 'dup'")
[ "$n" = 2 ] && pass "two roles stored" || fail "$n roles stored"
expect_ok "--json user add" --json user add dup2 --roles "b, a,b"
expect_json "--json user add prints the stored user" "(j['name'], j['roles'], j['has_password'])" \
    "('dup2', ['a', 'b'], False)"
for bad in ",a" "a,,b" "a," " , "; do
    expect_refused "an empty role in '$bad' is refused" "an empty role in '$bad'" \
        user add empty --roles "$bad"
done
expect_refused "user roles refuses an empty role too" "an empty role in 'a,,b'" \
    user roles dup "a,,b"
expect_ok "user roles dedupes" user roles dup "admin,admin"
expect_out "and prints what is stored" "user dup now has roles: admin\$"
expect_refused "a bad user name is refused" "invalid user name" user add "bad name;--"
expect_refused "a bad role name is refused" "invalid role name" user add bob --roles "ok,not ok"
RUNNER=run expect_ok "a user with a password from stdin" sh -c \
    "printf 'correct horse battery\n' | \"$CERTGATE\" user add bob --password-stdin"
hash=$(sqlite3 "$DB" "SELECT password_hash FROM sys_user WHERE name = 'bob'")
case "$hash" in
pbkdf2-sha256\$600000\$*) pass "the password is stored as a PBKDF2 hash" ;;
*) fail "stored password: $hash" ;;
esac
if sqlite3 "$DB" .dump | grep -q "correct horse"; then
    fail "the plain password is in the database"
else
    pass "the plain password is nowhere in the database"
fi
RUNNER=run expect_refused "an empty password is refused" "empty" sh -c \
    "printf '\n' | \"$CERTGATE\" user add carol --password-stdin"
RUNNER=run expect_refused "a short password is refused" "at least 12" sh -c \
    "printf 'short\n' | \"$CERTGATE\" user add carol --password-stdin"
expect_ok "user list" user list
expect_out "user list shows roles" "integrator1 +active +no +push,read"
expect_ok "user list --json" user list --json
expect_json "bob has a password" "[u['has_password'] for u in j if u['name']=='bob'][0]" True
expect_ok "user show" user show integrator1
expect_out "user show suggests mapping a certificate" "certgate cert map integrator1"
expect_ok "user lock" user lock integrator1
expect_ok "user show --json after lock" user show integrator1 --json
expect_json "locked" "j['locked']" True
expect_ok "user unlock" user unlock integrator1
expect_refused "lock of an unknown user" "no user named 'nobody'" user lock nobody
expect_ok "user roles replaces roles" user roles integrator1 admin,push
expect_ok "user show --json" user show integrator1 --json
expect_json "roles sorted and replaced" "j['roles']" "['admin', 'push']"
expect_ok "user roles with an empty list clears them" user roles integrator1 ""
expect_ok "user password --clear" user password bob --clear
h=$(sqlite3 "$DB" "SELECT password_hash IS NULL FROM sys_user WHERE name = 'bob'")
[ "$h" = 1 ] && pass "the password is removed" || fail "password still set"
expect_ok "user delete" user delete bob
expect_refused "delete of an unknown user" "no user named 'bob'" user delete bob
done_testing
