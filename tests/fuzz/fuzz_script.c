/*
 * fuzz_script: a JSON request body through the Lua sandbox to a JSON
 * response (script_run with the default caps, as the script threads run
 * it). Input: a body; or a Lua script, FUZZ_SEP, and a body. Without a
 * script, a fixed one echoes the body, converts it both ways and hands it to
 * db.insert/get/query/update (in-memory stand-ins here).
 * Properties: every run ends in an outcome; a response is representable:
 * its status is in range, its body encodes to JSON text that parses again,
 * its headers are names and values without CR/LF.
 */
#include "config.h"

#include <jansson.h>

#include "fuzz.h"
#include "script/script.h"

/* Exercises what a script does with a body: conversions both ways, the db
 * API, certgate.fail, response headers; each step under pcall so that a
 * refusal of one does not hide the next. */
static const char fixed_script[] =
    "local b = request.body\n"
    "local out = { kind = type(b), echo = b }\n"
    "local ok, text = pcall(json.encode, b)\n"
    "if ok then out.text = text; out.again = json.decode(text) end\n"
    "if type(b) == 'table' then\n"
    "  local n = 0\n"
    "  for k, v in pairs(b) do n = n + 1 end\n"
    "  out.n = n\n"
    "  if type(b.headers) == 'table' then\n"
    "    for k, v in pairs(b.headers) do response.headers[k] = v end\n"
    "  end\n"
    "  local ok2, id = pcall(db.insert, 'u_rec', b)\n"
    "  if ok2 then\n"
    "    out.id = id\n"
    "    out.got = db.get('u_rec', id)\n"
    "    pcall(db.update, 'u_rec', id, b)\n"
    "  end\n"
    "  out.rows = select(2, pcall(db.query, 'u_rec', b.filter, b.opts))\n"
    "  if b.fail ~= nil then return certgate.fail(b.status, tostring(b.fail), b.detail) end\n"
    "  if b.status ~= nil then response.status = b.status end\n"
    "  if b.array then out.arr = certgate.array(b.array) end\n"
    "end\n"
    "response.body = out\n";

/* The records the stand-in db holds during one run. */
static json_t *rows;

static int db_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
                     size_t errlen)
{
    (void)ctx;
    (void)table;
    if (!json_is_object(fields)) {
        snprintf(err, errlen, "the record must be an object");
        return CG_EINVAL;
    }
    snprintf(out_id, 37, "00000000-0000-4000-8000-%012zx", json_array_size(rows));
    json_array_append_new(rows, json_deep_copy(fields));
    return CG_OK;
}

static int db_get(void *ctx, const char *table, const char *sys_id, json_t **out, char *err,
                  size_t errlen)
{
    size_t i;

    (void)ctx;
    (void)table;
    if (strlen(sys_id) != 36 || sscanf(sys_id + 24, "%zx", &i) != 1 || i >= json_array_size(rows)) {
        snprintf(err, errlen, "no record %s", sys_id);
        return CG_ENOTFOUND;
    }
    *out = json_deep_copy(json_array_get(rows, i));
    return *out ? CG_OK : CG_ENOMEM;
}

static int db_query(void *ctx, const char *table, json_t *filter, long limit, long offset,
                    json_t **out, char *err, size_t errlen)
{
    (void)ctx;
    (void)table;
    (void)limit;
    (void)offset;
    if (filter && !json_is_object(filter)) {
        snprintf(err, errlen, "a filter must be an object");
        return CG_EINVAL;
    }
    *out = json_deep_copy(rows);
    return *out ? CG_OK : CG_ENOMEM;
}

static int db_update(void *ctx, const char *table, const char *sys_id, json_t *fields, char *err,
                     size_t errlen)
{
    json_t *row = NULL;
    int rc = db_get(ctx, table, sys_id, &row, err, errlen);

    if (rc)
        return rc;
    json_decref(row);
    if (!json_is_object(fields)) {
        snprintf(err, errlen, "the fields must be an object");
        return CG_EINVAL;
    }
    return CG_OK;
}

static void db_log(void *ctx, const char *message)
{
    (void)ctx;
    (void)message;
}

static void check_result(const struct script_result *res)
{
    const char *key;
    json_t *v;

    switch (res->outcome) {
    case SCRIPT_OK:
        FUZZ_ASSERT(res->status >= 200 && res->status <= 599, "status %d", res->status);
        if (res->body) {
            char *text =
                json_dumps(res->body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            json_error_t jerr;
            json_t *again;

            FUZZ_ASSERT(text, "the body does not encode");
            again = json_loads(text, JSON_DECODE_ANY, &jerr);
            FUZZ_ASSERT(again, "the body's JSON does not parse: %s", jerr.text);
            json_decref(again);
            free(text);
        }
        json_object_foreach(res->headers, key, v)
        {
            const char *s = json_string_value(v);

            FUZZ_ASSERT(*key && !strpbrk(key, "\r\n: "), "header name '%s'", key);
            FUZZ_ASSERT(s && !strpbrk(s, "\r\n") && fuzz_is_utf8(s), "header value");
        }
        break;
    case SCRIPT_FAILED:
        FUZZ_ASSERT(res->status >= 400 && res->status <= 599, "fail status %d", res->status);
        break;
    case SCRIPT_ERROR:
    case SCRIPT_LIMIT_INSTRUCTIONS:
    case SCRIPT_LIMIT_MEMORY:
    case SCRIPT_LIMIT_TIME:
    case SCRIPT_BAD_RESPONSE: break;
    default: FUZZ_ASSERT(false, "outcome %d", (int)res->outcome);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct script_db_ops ops = {NULL, db_insert, db_get, db_query, db_update, db_log};
    struct fuzz_piece p[2];
    size_t n = fuzz_split(data, size, p, 2);
    const struct fuzz_piece *b = &p[n - 1];
    struct script_request req;
    struct script_result res;
    struct script_vm *vm = NULL;
    json_error_t jerr;
    char *source, *raw;

    memset(&req, 0, sizeof(req));
    raw = fuzz_strndup(b->data, b->len);
    req.body = json_loadb(raw, b->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    /* The server answers 400 before any script runs for these. */
    if ((b->len && !req.body) || !script_json_fits(req.body)) {
        json_decref(req.body);
        free(raw);
        return 0;
    }
    source = n == 2 ? fuzz_strndup(p[0].data, p[0].len) : strdup(fixed_script);
    req.method = "POST";
    req.path = "/api/fuzz/echo/things";
    req.params = json_pack("{s:s}", "id", "42");
    req.query = json_pack("{s:s}", "q", "x");
    req.headers = json_pack("{s:s}", "content-type", "application/json");
    req.raw_body = raw;
    req.raw_len = b->len;
    req.user = json_pack("{s:s, s:[s], s:s}", "name", "fuzzer", "roles", "push", "auth", "basic");
    rows = json_array();
    if (!source || !req.params || !req.query || !req.headers || !req.user || !rows ||
        script_vm_new(NULL, &vm))
        abort();
    FUZZ_ASSERT(script_run(vm, "fuzz", source, "fuzz.lua", &req, &ops, &res) == CG_OK,
                "the VM failed");
    check_result(&res);
    script_result_free(&res);
    script_vm_free(vm);
    json_decref(rows);
    json_decref(req.body);
    json_decref(req.params);
    json_decref(req.query);
    json_decref(req.headers);
    json_decref(req.user);
    free(source);
    free(raw);
    return 0;
}
