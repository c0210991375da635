#!/bin/sh
# configure names the package to install for what is missing: pkg-config
# itself, gnutls (which libmicrohttpd.pc requires), and Check, which only
# make check needs. Runs the real configure in scratch build directories,
# with a pkg-config search path that lacks one package.
. "$TESTS_SRCDIR/lib.sh"
need pkg-config make
CONFIGURE="$TESTS_SRCDIR/../configure"
[ -x "$CONFIGURE" ] || { echo "SKIP: no configure script in $TESTS_SRCDIR/.."; exit 77; }

# pc_without NAME...: a pkg-config directory holding every .pc file of this
# machine but NAME.pc.
pc_without() {
    rm -rf "$T/pc"
    mkdir -p "$T/pc"
    for d in $(pkg-config --variable pc_path pkg-config | tr ':' ' '); do
        [ -d "$d" ] && cp "$d"/*.pc "$T/pc/" 2>/dev/null
    done
    for name in "$@"; do
        rm -f "$T/pc/$name.pc"
    done
}

# configure_in DIR ENV...: run configure in a fresh DIR with ENV settings.
configure_in() {
    dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    run sh -c 'cd "$1" && shift && env "$@" "$0" --quiet' "$CONFIGURE" "$dir" "$@"
}

configure_in "$T/b1" PKG_CONFIG=/nonexistent/pkg-config
[ "$RC" -ne 0 ] && pass "without pkg-config configure stops" || fail "configure succeeded"
expect_err "and says to install pkgconf" "pkg-config not found.*install pkgconf \\(or pkg-config\\)"
if grep -q "libmicrohttpd" "$T/err"; then
    fail "it blames libmicrohttpd: $(cat "$T/err")"
else
    pass "it does not blame libmicrohttpd"
fi

pc_without gnutls
configure_in "$T/b2" PKG_CONFIG_LIBDIR="$T/pc" PKG_CONFIG_PATH=
[ "$RC" -ne 0 ] && pass "without gnutls configure stops" || fail "configure succeeded"
expect_err "and names gnutls's Debian package" "gnutls >= .* not found: install the Debian package libgnutls28-dev"
if grep -q "libmicrohttpd-dev" "$T/err"; then
    fail "it blames libmicrohttpd: $(cat "$T/err")"
else
    pass "it does not blame libmicrohttpd"
fi

pc_without check
configure_in "$T/b3" PKG_CONFIG_LIBDIR="$T/pc" PKG_CONFIG_PATH=
[ "$RC" -eq 0 ] && pass "without Check configure still succeeds (the binary needs no Check)" ||
    fail "configure failed: $(tail -n 3 "$T/err")"
expect_err "it warns that make check needs it" "make check fails until you install the Debian package check"
run make -C "$T/b3/tests" check
[ "$RC" -ne 0 ] && pass "make check then fails" || fail "make check succeeded without Check"
expect_err "naming the package" "install the Debian package check"
done_testing
