-- upsert.lua: create or update a record by an external key (the order
-- number): the same number sent twice updates the first record instead of
-- adding a second.
--
--   certgate table create u_order number:text status:text amount:real --roles push
--   certgate resource add --api acme/orders --method PUT --path /orders/{number} \
--       --script contrib/scripts/upsert.lua --roles push
local number = request.params.number
local b = request.body
if type(b) ~= "table" then
  return certgate.fail(400, "Invalid request", "the body must be a JSON object")
end
if b.amount ~= nil and type(b.amount) ~= "number" then
  return certgate.fail(400, "Invalid field", "amount must be a number")
end
local fields = { number = number, status = b.status, amount = b.amount }
local found = db.query("u_order", { number = number }, { limit = 1 })
if #found > 0 then
  db.update("u_order", found[1].sys_id, fields)
  response.status = 200
  response.body = { result = { sys_id = found[1].sys_id, created = false } }
else
  local id = db.insert("u_order", fields)
  response.status = 201
  response.body = { result = { sys_id = id, created = true } }
end
