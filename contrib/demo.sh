#!/bin/sh
# The demo in one command: installs what is missing, builds certgate, makes a
# demo PKI (root CA, issuing CA, a server certificate for localhost and
# 127.0.0.1, a client certificate for integrator1 as PEM and PKCS#12), a demo
# database (CA chain, user with a role, certificate mapping), and runs the
# gateway on https://127.0.0.1:8443 in the foreground. Safe to re-run: the
# PKI and database in ./demo/ are kept and reused.
#   usage: sh contrib/demo.sh [--port N]
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
port=8443
[ "${1:-}" = "--port" ] && port=${2:?--port needs a number}
demo="$top/demo"
pki="$demo/pki"
db="$demo/certgate.db"
build="$top/build/demo"
certgate="$build/src/certgate"

sh "$top/contrib/install-deps.sh"
if [ ! -x "$certgate" ] || [ -n "$(find "$top/src" "$top/schema" -newer "$certgate" -print -quit)" ]; then
    echo "demo: building certgate in $build"
    (cd "$top" && autoreconf -fi >/dev/null 2>&1)
    mkdir -p "$build"
    (cd "$build" && "$top/configure" >/dev/null && make -j"$(nproc)" >/dev/null)
fi

mkdir -p "$demo"
if [ ! -f "$pki/integrator1.p12" ]; then
    echo "demo: creating the demo PKI in $pki"
    rm -rf "$pki"
    sh "$top/contrib/pki/certgate-pki" demo "$pki"
fi

if [ ! -f "$db" ]; then
    echo "demo: creating the demo database $db"
    "$certgate" --db "$db" init
    "$certgate" --db "$db" ca add "$pki/chain.pem" --name "certgate demo PKI"
    "$certgate" --db "$db" crl add "$pki/issuing.crl"
    "$certgate" --db "$db" user add integrator1 --roles push
    "$certgate" --db "$db" cert map integrator1 "$pki/integrator1.pem" --name "demo client"
    "$certgate" --db "$db" table create u_inbound name:text payload:json source:text --roles push
    "$certgate" --db "$db" resource add --api acme/inbound --method POST --path /records \
        --script "$top/contrib/scripts/push.lua" --roles push
    "$certgate" --db "$db" resource add --api acme/inbound --method POST --path /batch \
        --script "$top/contrib/scripts/batch.lua" --roles push
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
