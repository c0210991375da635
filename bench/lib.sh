# Shared by the bench scripts (sourced, not run).
# bench_push_db CERTGATE TOP PKI: the push set-up in the database named by
# $CERTGATE_DB (created): the test PKI's CA chain, user integrator1 with
# role push mapped to PKI/client.pem, the data table u_inbound and the
# scripted resource POST /api/acme/inbound/records (contrib/scripts/push.lua).
bench_push_db() {
    "$1" init >/dev/null
    "$1" ca add "$3/chain.pem" >/dev/null
    "$1" user add integrator1 --roles push >/dev/null
    "$1" cert map integrator1 "$3/client.pem" >/dev/null
    "$1" table create u_inbound name:text payload:json source:text --roles push >/dev/null
    "$1" resource add --api acme/inbound --method POST --path /records \
        --script "$2/contrib/scripts/push.lua" --roles push >/dev/null
}
