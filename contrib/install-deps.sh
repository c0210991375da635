#!/bin/sh
# Installs the Debian packages certgate needs to build, test and run, and
# only those that are missing. Safe to re-run. Needs root (or sudo).
set -eu

PACKAGES="build-essential autoconf automake pkg-config ca-certificates
libmicrohttpd-dev libgnutls28-dev gnutls-bin libjansson-dev libsqlite3-dev sqlite3
liblua5.4-dev libinih-dev check curl openssl python3 clang-format cppcheck"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# The Postman collection test runs newman, an npm package: it needs Node.js
# and npm (the Debian packages, unless the machine has them already).
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

if [ -z "$missing" ]; then
    echo "install-deps: all build and test dependencies are installed"
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
