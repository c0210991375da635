-- batch.lua: accept a JSON array of records in one request. Every item is
-- checked first; if any is invalid the request fails with 400, lists the
-- errors per item, and nothing is written (all writes of a request are one
-- transaction).
--
--   certgate resource add --api acme/inbound --method POST --path /batch \
--       --script contrib/scripts/batch.lua --roles push
local items = request.body
if type(items) ~= "table" or #items == 0 then
  return certgate.fail(400, "Invalid request", "the body must be a non-empty JSON array")
end
if #items > 1000 then
  return certgate.fail(413, "Batch too large", "at most 1000 items per request")
end
local errors = {}
for i, item in ipairs(items) do
  if type(item) ~= "table" or type(item.name) ~= "string" or #item.name == 0 then
    errors[#errors + 1] = { index = i, error = "name is required" }
  end
end
if #errors > 0 then
  return certgate.fail(400, "Invalid batch", json.encode(errors))
end
local ids = {}
for i, item in ipairs(items) do
  ids[i] = db.insert("u_inbound", { name = item.name, payload = item, source = request.user.name })
end
response.status = 201
response.body = { result = { inserted = #ids, sys_ids = ids } }
