#!/bin/sh
# Installs the Debian packages certgate needs, and only those that are
# missing. Safe to re-run. Needs root (or sudo).
#   sh contrib/install-deps.sh          to build and run certgate (the demo)
#   sh contrib/install-deps.sh --test   also what the test suite needs
#                                       (python3, clang-format, cppcheck, clang
#                                       and its runtime for the fuzz harnesses,
#                                       sslscan and testssl.sh for the TLS scans,
#                                       haproxy for server/proxy.sh, and
#                                       Node.js and npm for newman)
set -eu

# Build: compiler, autotools, the libraries' headers and Check (configure
# requires it); run: certtool and openssl for the PKI scripts, sqlite3 and
# curl for the demo. libpq-dev: a database may be PostgreSQL (a URI).
# libjemalloc-dev: the allocator certgate links when it is there.
PACKAGES="build-essential autoconf automake pkg-config ca-certificates
libmicrohttpd-dev libgnutls28-dev gnutls-bin libjansson-dev libsqlite3-dev sqlite3 libpq-dev
liblua5.4-dev libinih-dev libjemalloc-dev check curl openssl"
# The fuzz harnesses (tests/fuzz) build with clang -fsanitize=fuzzer: clang
# 14 finds libFuzzer in libclang-rt-14-dev (libclang_rt.fuzzer), which clang
# only recommends, so it is named here; libfuzzer-14-dev is not needed.
# sslscan and testssl.sh: tests/server/scanners.sh (make check, make tls-check).
TEST_PACKAGES="python3 clang-format cppcheck clang libclang-rt-14-dev sslscan testssl.sh haproxy postgresql-15"

what="build and run"
case "${1:-}" in
"") ;;
--test)
    PACKAGES="$PACKAGES $TEST_PACKAGES"
    what="build, run and test"
    ;;
-h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "install-deps: unknown option '$1' (usage: install-deps.sh [--test])" >&2
    exit 2
    ;;
esac

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# The Postman collection test runs newman, an npm package: it needs Node.js
# and npm (the Debian packages, unless the machine has them already).
if [ "$what" != "build and run" ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

if [ -z "$missing" ]; then
    echo "install-deps: all $what dependencies are installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages:$missing; run this script as root" >&2
        exit 1
    fi
fi
echo "install-deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
