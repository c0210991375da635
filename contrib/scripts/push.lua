-- push.lua: accept one record pushed by an integrator, validate it, store it.
--
--   certgate table create u_inbound name:text payload:json source:text --roles push
--   certgate resource add --api acme/inbound --method POST --path /records \
--       --script contrib/scripts/push.lua --roles push
--
--   curl --cert client.pem --key client.key -H 'Content-Type: application/json' \
--        -d '{"name":"order 42","amount":12.5}' https://HOST:8443/api/acme/inbound/records
local b = request.body
if type(b) ~= "table" or b.name == nil then
  return certgate.fail(400, "Missing field", "name is required")
end
if type(b.name) ~= "string" or #b.name == 0 or #b.name > 200 then
  return certgate.fail(400, "Invalid field", "name must be a string of 1 to 200 characters")
end
local id = db.insert("u_inbound", { name = b.name, payload = b, source = request.user.name })
log("stored record", id, "for", request.user.name)
response.status = 201
response.body = { result = { sys_id = id, name = b.name } }
