#!/bin/sh
# The demo in one command: installs what building and running needs, builds
# certgate, makes a demo PKI (root CA, issuing CA, a server certificate for
# localhost and 127.0.0.1, a client certificate for integrator1 as PEM and
# PKCS#12), a demo database (CA chain, CRL, user with a role, certificate
# mapping, a data table and two scripted resources), and runs the gateway on
# https://127.0.0.1:8443 in the foreground. Safe to re-run: ./demo/ is kept
# and reused once complete. It is built in build/demo-state.tmp and renamed
# to ./demo/ only when every step has worked, so an interrupted run (or a
# ./demo/ made by hand) is rebuilt, never served half-made.
#   usage: sh contrib/demo.sh [--port N]
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
port=8443
case "${1:-}" in
"") ;;
--port)
    port=${2:-}
    case "$port" in
    "" | *[!0-9]*) echo "demo: --port needs a port number" >&2; exit 2 ;;
    esac
    ;;
*) echo "usage: sh contrib/demo.sh [--port N]" >&2; exit 2 ;;
esac
demo="$top/demo"
pki="$demo/pki"
db="$demo/certgate.db"
done_marker="$demo/.complete"
build="$top/build/demo"
certgate="$build/src/certgate"

sh "$top/contrib/install-deps.sh"
if [ -f "$top/config.status" ]; then
    # configure refuses to build elsewhere from a tree configured in place.
    echo "demo: $top was configured in place; running make distclean there first"
    make -C "$top" distclean >/dev/null 2>&1 || {
        echo "demo: make distclean failed in $top: remove config.status and Makefile there" >&2
        exit 1
    }
fi
if [ ! -x "$certgate" ] || [ -n "$(find "$top/src" "$top/schema" "$top/configure.ac" \
    "$top/Makefile.am" -newer "$certgate" -print 2>/dev/null | head -n 1)" ]; then
    echo "demo: building certgate in $build"
    (cd "$top" && autoreconf -fi >/dev/null 2>&1)
    mkdir -p "$build"
    (cd "$build" && "$top/configure" >configure.out 2>&1 && make -j"$(nproc)" >make.out 2>&1) || {
        echo "demo: the build failed; see $build/configure.out and $build/make.out" >&2
        exit 1
    }
fi

if [ ! -f "$done_marker" ]; then
    tmp="$top/build/demo-state.tmp"
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 130' INT TERM
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if [ -d "$demo" ]; then
        echo "demo: $demo is incomplete (an earlier run did not finish): making it again"
    fi
    echo "demo: creating the demo PKI and database"
    sh "$top/contrib/pki/certgate-pki" demo "$tmp/pki" >/dev/null
    tdb="$tmp/certgate.db"
    "$certgate" --db "$tdb" init >/dev/null
    "$certgate" --db "$tdb" ca add "$tmp/pki/chain.pem" --name "certgate demo PKI" >/dev/null
    "$certgate" --db "$tdb" crl add "$tmp/pki/issuing.crl" >/dev/null
    "$certgate" --db "$tdb" user add integrator1 --roles push >/dev/null
    "$certgate" --db "$tdb" cert map integrator1 "$tmp/pki/integrator1.pem" \
        --name "demo client" >/dev/null
    "$certgate" --db "$tdb" table create u_inbound name:text payload:json source:text \
        --roles push >/dev/null
    "$certgate" --db "$tdb" resource add --api acme/inbound --method POST --path /records \
        --script "$top/contrib/scripts/push.lua" --roles push >/dev/null
    "$certgate" --db "$tdb" resource add --api acme/inbound --method POST --path /batch \
        --script "$top/contrib/scripts/batch.lua" --roles push >/dev/null
    # The proof that the setup works: the server's own verification.
    "$certgate" --db "$tdb" check "$tmp/pki/integrator1.pem" >"$tmp/check.out" 2>&1 || {
        cat "$tmp/check.out" >&2
        echo "demo: the demo client certificate is refused; see above" >&2
        exit 1
    }
    rm -f "$tmp/check.out"
    : >"$tmp/.complete"
    rm -rf "$demo"
    mv "$tmp" "$demo"
    trap - EXIT
    echo "demo: the demo PKI and database are in $demo"
elif ! "$certgate" --db "$db" check "$pki/integrator1.pem" >/dev/null 2>&1; then
    echo "demo: warning: the demo database now refuses integrator1 (certgate --db $db check" \
        "$pki/integrator1.pem says why); rm -rf $demo to start over" >&2
fi

cat <<MSG

certgate demo: https://127.0.0.1:$port  (Ctrl-C stops it)

  Push a record (201, committed to disk before the answer):
    curl --cacert $pki/root.pem --cert $pki/integrator1.pem --key $pki/integrator1.key \\
         -H 'Content-Type: application/json' -d '{"name":"order 42","amount":12.5}' \\
         https://127.0.0.1:$port/api/acme/inbound/records

  Read the records back through the Table API:
    curl --cacert $pki/root.pem --cert $pki/integrator1.pem --key $pki/integrator1.key \\
         https://127.0.0.1:$port/api/now/table/u_inbound

  Who am I, with the client certificate:
    curl --cacert $pki/root.pem --cert $pki/integrator1.pem --key $pki/integrator1.key \\
         https://127.0.0.1:$port/api/certgate/v1/whoami

  Without a certificate (the 401 JSON):
    curl --cacert $pki/root.pem https://127.0.0.1:$port/api/certgate/v1/whoami

  Postman: Settings > Certificates > Add certificate, host 127.0.0.1 port $port,
  PFX file $pki/integrator1.p12, passphrase changeit; CA certificate $pki/root.pem.

  What would certgate decide for a certificate:
    $certgate --db $db check $pki/integrator1.pem

MSG
exec "$certgate" --db "$db" serve --cert "$pki/localhost-fullchain.pem" \
    --key "$pki/localhost.key" --listen "127.0.0.1:$port"
