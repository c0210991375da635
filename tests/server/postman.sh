#!/bin/sh
# The Postman collection in contrib/postman, run by newman against a live
# server with the demo-style setup, so the collection can never rot.
. "$TESTS_SRCDIR/server/lib.sh"
need npm node

# newman from the npm registry, installed once into $NEWMAN_CACHE
# (contrib/run-tests.sh points both of its passes at build/node), else once
# per build directory. Installed beside it and renamed when complete, so an
# interrupted install is not taken for a working one.
NEWMAN=${NEWMAN:-}
if [ -z "$NEWMAN" ] && command -v newman >/dev/null 2>&1; then
    NEWMAN=$(command -v newman)
fi
if [ -z "$NEWMAN" ]; then
    dir=${NEWMAN_CACHE:-$TESTS_BUILDDIR/node}
    if ! "$dir/node_modules/.bin/newman" --version >/dev/null 2>&1; then
        tmp="$dir.tmp.$$"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        if ! npm install --no-audit --no-fund --prefix "$tmp" newman@6 >"$T/npm.log" 2>&1; then
            rm -rf "$tmp"
            cat "$T/npm.log"
            echo "SKIP: newman could not be installed from the npm registry"
            exit 77
        fi
        rm -rf "$dir"
        mv "$tmp" "$dir"
        echo "# newman installed in $dir"
    fi
    NEWMAN="$dir/node_modules/.bin/newman"
fi

make_pki
setup_db
S="$TESTS_SRCDIR/../contrib/scripts"
cg table create u_inbound name:text payload:json source:text --roles push
cg resource add --api acme/inbound --method POST --path /records --script "$S/push.lua" \
    --roles push
cg resource add --api acme/inbound --method POST --path /batch --script "$S/batch.lua" \
    --roles push
start_server

cat >"$T/certs.json" <<JSON
[{"name": "integrator1", "matches": ["https://127.0.0.1:$PORT/*"],
  "cert": {"src": "$PKI/client.pem"}, "key": {"src": "$PKI/client.key"}}]
JSON
"$NEWMAN" run "$TESTS_SRCDIR/../contrib/postman/certgate.postman_collection.json" \
    -e "$TESTS_SRCDIR/../contrib/postman/certgate.postman_environment.json" \
    --env-var "baseUrl=https://127.0.0.1:$PORT" --env-var "noCertUrl=https://localhost:$PORT" \
    --ssl-extra-ca-certs "$PKI/root.pem" --ssl-client-cert-list "$T/certs.json" \
    --reporters cli --color off >"$T/newman.out" 2>&1
rc=$?
sed 's/^/# /' "$T/newman.out" | tail -n 40
[ "$rc" = 0 ] && pass "the Postman collection passes under newman" || fail "newman exit $rc"
asserts=$(sed -n 's/.*assertions *│ *\([0-9]*\) *│ *\([0-9]*\).*/\1 \2/p' "$T/newman.out")
set -- $asserts
[ "${1:-0}" -ge 13 ] && [ "${2:-1}" = 0 ] && pass "all ${1:-0} assertions ran and held" ||
    fail "assertions: ${asserts:-none}"
n=$(sqlite3 "$DB" "SELECT count(*) FROM u_inbound")
[ "$n" = 3 ] && pass "the collection's pushes are in the table" || fail "$n rows"
stop_server
done_testing
