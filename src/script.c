#include "config.h"
#include "script.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "luapat.h"
#include "util.h"

/* Deepest JSON/Lua nesting converted; deeper (or cyclic) is refused. */
#define MAX_DEPTH SCRIPT_MAX_DEPTH
/* The count hook runs every this many VM instructions. */
#define HOOK_EVERY 1000
/* Compiled chunks kept per VM. */
#define CHUNK_CACHE 128
/* log(): longest line kept, and lines per request. */
#define LOG_MAX_BYTES 4096
#define LOG_MAX_LINES 100

/* Registry keys (addresses of these are unique). */
static const char k_null = 0;     /* certgate.null sentinel (a full userdata, in the registry) */
static const char k_array_mt = 0; /* metatable marking decoded arrays */
static const char k_fail_mt = 0;  /* metatable of certgate.fail errors */
static const char k_vm = 0;       /* the struct script_vm */

struct chunk {
    char *key; /* script version */
    int ref;   /* registry reference of the compiled function */
};

struct script_vm {
    lua_State *L;                     /* the state */
    struct script_limits limits;      /* caps */
    size_t used;                      /* bytes allocated now */
    size_t cap;                       /* allocation limit while a request runs (0: none) */
    bool hit_memory;                  /* the allocator refused because of the cap */
    uint64_t count;                   /* instructions of the current request */
    struct timespec deadline;         /* wall-time limit of the current request */
    enum script_outcome limit_hit;    /* which cap stopped it */
    const struct script_db_ops *db;   /* current request's database */
    unsigned log_lines;               /* log() calls of the current request */
    struct chunk chunks[CHUNK_CACHE]; /* compiled scripts */
};

void script_limits_default(struct script_limits *l)
{
    l->instructions = 10000000;
    l->memory = 16 * 1024 * 1024;
    l->wall_ms = 5000;
}

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct script_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        vm->used -= old;
        return NULL;
    }
    if (vm->cap && nsize > old && vm->used - old + nsize > vm->cap) {
        vm->hit_memory = true;
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (p)
        vm->used = vm->used - old + nsize;
    return p;
}

static struct script_vm *vm_of(lua_State *L)
{
    struct script_vm *vm;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_vm);
    vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return vm;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    struct script_vm *vm = vm_of(L);
    struct timespec now;

    (void)ar;
    /* Once a cap is hit, every following instruction raises again, so a
     * script that catches the error with pcall cannot go on. */
    if (vm->limit_hit != SCRIPT_OK) {
        luaL_error(L, "%s",
                   vm->limit_hit == SCRIPT_LIMIT_TIME ? "wall-time limit reached"
                                                      : "instruction limit reached");
    }
    vm->count += HOOK_EVERY;
    if (vm->count > vm->limits.instructions) {
        vm->limit_hit = SCRIPT_LIMIT_INSTRUCTIONS;
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "instruction limit reached");
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > vm->deadline.tv_sec ||
        (now.tv_sec == vm->deadline.tv_sec && now.tv_nsec > vm->deadline.tv_nsec)) {
        vm->limit_hit = SCRIPT_LIMIT_TIME;
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "wall-time limit reached");
    }
}

/* ---- JSON -> Lua ---- */

static int push_json(lua_State *L, json_t *v, int depth)
{
    size_t i;
    const char *key;
    json_t *item;

    if (depth > MAX_DEPTH)
        return -1;
    if (!lua_checkstack(L, 4))
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach(v, key, item)
        {
            if (push_json(L, item, depth + 1))
                return -1;
            lua_setfield(L, -2, key);
        }
        return 0;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, item)
        {
            if (push_json(L, item, depth + 1))
                return -1;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_array_mt);
        lua_setmetatable(L, -2);
        return 0;
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); return 0;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); return 0;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); return 0;
    case JSON_TRUE:
    case JSON_FALSE: lua_pushboolean(L, json_is_true(v)); return 0;
    case JSON_NULL:
    default: lua_rawgetp(L, LUA_REGISTRYINDEX, &k_null); return 0;
    }
}

/* ---- Lua -> JSON ---- */

static json_t *to_json(lua_State *L, int idx, int depth, char *err, size_t errlen);

/* Whether @p s holds well-formed UTF-8 (no overlongs, no surrogates). */
static bool utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        unsigned c = *p++, n, cp;

        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return false;
        if ((size_t)(end - p) < n)
            return false;
        for (unsigned i = 0; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        p += n;
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}

/* Whether the value at @p idx is certgate.null. */
static bool is_null(lua_State *L, int idx)
{
    bool yes;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_null);
    yes = lua_rawequal(L, idx < 0 ? idx - 1 : idx, -1);
    lua_pop(L, 1);
    return yes;
}

static json_t *table_to_json(lua_State *L, int idx, int depth, char *err, size_t errlen)
{
    bool marked_array = false;
    lua_Integer n = 0, max = 0;
    json_t *out;

    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_array_mt);
        marked_array = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    /* Count keys: all positive integers 1..n make an array. */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            lua_Integer k = lua_tointeger(L, -1);

            if (k > max)
                max = k;
            n++;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            if (n > 0 || marked_array) {
                lua_pop(L, 1);
                goto mixed;
            }
            n = -1; /* object */
            while (lua_next(L, idx)) {
                lua_pop(L, 1);
                if (lua_type(L, -1) != LUA_TSTRING) {
                    lua_pop(L, 1);
                    goto mixed;
                }
            }
            break;
        } else {
            snprintf(err, errlen, "a table key of type %s cannot be a JSON key",
                     luaL_typename(L, -1));
            lua_pop(L, 1);
            return NULL;
        }
    }
    if (n > 0 || marked_array || n == 0) {
        if (n == 0 && !marked_array)
            return json_object(); /* {} unless it was decoded from [] */
        if (n != max) {
            snprintf(err, errlen,
                     "a table with integer keys is not a sequence 1..n (sparse "
                     "arrays cannot be JSON arrays)");
            return NULL;
        }
        out = json_array();
        for (lua_Integer i = 1; out && i <= n; i++) {
            json_t *item;

            lua_rawgeti(L, idx, i);
            item = to_json(L, lua_gettop(L), depth + 1, err, errlen);
            lua_pop(L, 1);
            if (!item || json_array_append_new(out, item)) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    out = json_object();
    lua_pushnil(L);
    while (out && lua_next(L, idx)) {
        json_t *item = to_json(L, lua_gettop(L), depth + 1, err, errlen);
        size_t klen;
        const char *k;

        lua_pop(L, 1);
        if (!item) {
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
        k = lua_tolstring(L, -1, &klen);
        /* A key must survive the trip as it is: no NUL inside, UTF-8. */
        if (strlen(k) != klen || json_object_set_new(out, k, item) != 0) {
            snprintf(err, errlen, "a table key %s",
                     strlen(k) != klen ? "holds a NUL byte" : "is not valid UTF-8");
            if (strlen(k) != klen)
                json_decref(item);
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
    }
    return out;
mixed:
    snprintf(err, errlen, "a table mixes string keys and array items");
    return NULL;
}

static json_t *to_json(lua_State *L, int idx, int depth, char *err, size_t errlen)
{
    json_t *v;
    size_t len;
    const char *s;

    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "the value is nested more than %d levels deep (or cyclic)",
                 MAX_DEPTH);
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(err, errlen, "NaN and infinity cannot be represented in JSON");
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        v = json_stringn(s, len);
        if (!v)
            snprintf(err, errlen, "a string is not valid UTF-8");
        return v;
    case LUA_TUSERDATA:
        if (is_null(L, idx))
            return json_null();
        break;
    case LUA_TTABLE:
        if (!lua_checkstack(L, 8)) {
            snprintf(err, errlen, "the value is nested too deeply");
            return NULL;
        }
        return table_to_json(L, idx, depth, err, errlen);
    default: break;
    }
    snprintf(err, errlen, "a %s cannot be represented in JSON", luaL_typename(L, idx));
    return NULL;
}

static bool fits(json_t *v, int depth)
{
    size_t i;
    const char *key;
    json_t *item;

    if (depth > MAX_DEPTH)
        return false;
    if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            if (!fits(item, depth + 1))
                return false;
        }
    } else if (json_is_object(v)) {
        json_object_foreach(v, key, item)
        {
            if (!fits(item, depth + 1))
                return false;
        }
    }
    return true;
}

bool script_json_fits(json_t *v)
{
    return !v || fits(v, 0);
}

int script_push_json(struct script_vm *vm, json_t *v)
{
    return push_json(vm->L, v, 0) ? CG_EINVAL : CG_OK;
}

json_t *script_pop_json(struct script_vm *vm, char *err, size_t errlen)
{
    json_t *v = to_json(vm->L, lua_gettop(vm->L), 0, err, errlen);

    lua_pop(vm->L, 1);
    return v;
}

/* ---- the script API ---- */

/* The running request's database, or a Lua error outside a request. */
static const struct script_db_ops *db_of(lua_State *L)
{
    struct script_vm *vm = vm_of(L);

    if (!vm->db || !vm->db->insert)
        luaL_error(L, "the database is not available here");
    return vm->db;
}

static json_t *arg_json(lua_State *L, int idx)
{
    char err[200];
    json_t *v;

    v = to_json(L, idx, 0, err, sizeof(err));
    if (!v)
        luaL_error(L, "%s", err);
    return v;
}

/* Raises a Lua error carrying a C message, after freeing @p tmp. */
static int raise_db(lua_State *L, const char *what, const char *err, json_t *tmp)
{
    json_decref(tmp);
    return luaL_error(L, "%s: %s", what, err);
}

static int l_db_insert(lua_State *L)
{
    const struct script_db_ops *db = db_of(L);
    const char *table = luaL_checkstring(L, 1);
    char id[37], err[300] = "";
    json_t *fields;

    luaL_checktype(L, 2, LUA_TTABLE);
    fields = arg_json(L, 2);
    if (db->insert(db->ctx, table, fields, id, err, sizeof(err)))
        return raise_db(L, "db.insert", err, fields);
    json_decref(fields);
    lua_pushstring(L, id);
    return 1;
}

static int l_db_update(lua_State *L)
{
    const struct script_db_ops *db = db_of(L);
    const char *table = luaL_checkstring(L, 1), *sys_id = luaL_checkstring(L, 2);
    char err[300] = "";
    json_t *fields;
    int rc;

    luaL_checktype(L, 3, LUA_TTABLE);
    fields = arg_json(L, 3);
    rc = db->update(db->ctx, table, sys_id, fields, err, sizeof(err));
    json_decref(fields);
    if (rc == CG_ENOTFOUND) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc)
        return luaL_error(L, "db.update: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_db_get(lua_State *L)
{
    const struct script_db_ops *db = db_of(L);
    const char *table = luaL_checkstring(L, 1), *sys_id = luaL_checkstring(L, 2);
    char err[300] = "";
    json_t *rec = NULL;
    int rc = db->get(db->ctx, table, sys_id, &rec, err, sizeof(err));

    if (rc == CG_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc)
        return luaL_error(L, "db.get: %s", err);
    rc = push_json(L, rec, 0);
    json_decref(rec);
    if (rc)
        return luaL_error(L, "db.get: record too deep");
    return 1;
}

static int l_db_query(lua_State *L)
{
    const struct script_db_ops *db = db_of(L);
    const char *table = luaL_checkstring(L, 1);
    char err[300] = "";
    json_t *filter = NULL, *rows = NULL;
    long limit = 100, offset = 0;
    int rc;

    /* The options first: a Lua error raised while reading them would leak
     * a filter already converted (found by fuzz_script). */
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "limit");
        if (!lua_isnil(L, -1))
            limit = (long)luaL_checkinteger(L, -1);
        lua_getfield(L, 3, "offset");
        if (!lua_isnil(L, -1))
            offset = (long)luaL_checkinteger(L, -1);
        lua_pop(L, 2);
    }
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        filter = arg_json(L, 2);
        if (json_is_array(filter) && json_array_size(filter) == 0) {
            json_decref(filter);
            filter = json_object();
        }
    }
    rc = db->query(db->ctx, table, filter, limit, offset, &rows, err, sizeof(err));
    json_decref(filter);
    if (rc)
        return luaL_error(L, "db.query: %s", err);
    rc = push_json(L, rows, 0);
    json_decref(rows);
    if (rc)
        return luaL_error(L, "db.query: records too deep");
    return 1;
}

static int l_fail(lua_State *L)
{
    lua_Integer status = luaL_optinteger(L, 1, 400);
    const char *message = luaL_optstring(L, 2, "Invalid request");
    const char *detail = luaL_optstring(L, 3, "");

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status >= 400 && status <= 599 ? status : 500);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, detail);
    lua_setfield(L, -2, "detail");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
    lua_setmetatable(L, -2);
    return lua_error(L);
}

static int l_log(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    char line[LOG_MAX_BYTES + 4];
    size_t len = 0;
    int n = lua_gettop(L);

    /* A log line per call, bounded in size and in number per request, so
     * a script cannot flood the server log. */
    if (++vm->log_lines > LOG_MAX_LINES) {
        if (vm->log_lines == LOG_MAX_LINES + 1 && vm->db && vm->db->log)
            vm->db->log(vm->db->ctx, "(further log lines of this request are dropped)");
        return 0;
    }
    for (int i = 1; i <= n && len < LOG_MAX_BYTES; i++) {
        size_t l;
        const char *p = luaL_tolstring(L, i, &l);

        if (i > 1)
            line[len++] = ' ';
        if (l > LOG_MAX_BYTES - len)
            l = LOG_MAX_BYTES - len;
        memcpy(line + len, p, l);
        len += l;
        lua_pop(L, 1);
    }
    if (len >= LOG_MAX_BYTES) {
        memcpy(line + LOG_MAX_BYTES, "...", 3);
        len = LOG_MAX_BYTES + 3;
    }
    line[len] = '\0';
    /* The log is JSON: bytes that are not UTF-8 become '?'. */
    for (size_t i = 0; i < len;) {
        size_t w = 1;

        while (w <= 4 && i + w <= len && !utf8_ok(line + i, w))
            w++;
        if (w > 4 || i + w > len) {
            line[i++] = '?';
            continue;
        }
        i += w;
    }
    if (vm->db && vm->db->log)
        vm->db->log(vm->db->ctx, line);
    return 0;
}

static int l_json_encode(lua_State *L)
{
    char err[200];
    json_t *v;
    char *text;

    luaL_checkany(L, 1);
    v = to_json(L, 1, 0, err, sizeof(err));
    if (!v)
        return luaL_error(L, "json.encode: %s", err);
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(v);
    if (!text)
        return luaL_error(L, "json.encode: out of memory");
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    json_error_t jerr;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    int rc;

    if (!v) {
        lua_pushnil(L);
        lua_pushfstring(L, "line %d: %s", jerr.line, jerr.text);
        return 2;
    }
    rc = push_json(L, v, 0);
    json_decref(v);
    if (rc)
        return luaL_error(L, "json.decode: nested too deeply");
    return 1;
}

/* ---- the sandbox ---- */

/* Library functions a script may use; everything else is absent. */
static const char *const base_allowed[] = {
    "assert", "error",    "ipairs",       "next",         "pairs",    "pcall",    "rawequal",
    "rawget", "rawlen",   "rawset",       "select",       "tonumber", "tostring", "type",
    "xpcall", "_VERSION", "getmetatable", "setmetatable", NULL,
};
static const char *const libs_allowed[] = {"string", "table", "math", "utf8", NULL};
static const char *const os_allowed[] = {"time", "clock", "date", "difftime", NULL};

/* A fresh shallow copy of table @p src (at the top) into a new table. */
static void copy_table(lua_State *L)
{
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

/* Builds the globals of one request: fresh copies of the allowed libraries,
 * so nothing a script changes survives it. The pristine libraries live in
 * the registry ("cg.libs"). */
static void push_env(lua_State *L)
{
    lua_newtable(L);                               /* env */
    lua_getfield(L, LUA_REGISTRYINDEX, "cg.libs"); /* env libs */
    for (const char *const *b = base_allowed; *b; b++) {
        lua_getfield(L, -1, *b);
        lua_setfield(L, -3, *b);
    }
    for (const char *const *l = libs_allowed; *l; l++) {
        lua_getfield(L, -1, *l);
        copy_table(L);
        lua_setfield(L, -3, *l);
    }
    lua_getfield(L, -1, "os");
    copy_table(L);
    lua_setfield(L, -3, "os");
    lua_getfield(L, -1, "certgate");
    copy_table(L);
    lua_setfield(L, -3, "certgate");
    lua_getfield(L, -1, "json");
    copy_table(L);
    lua_setfield(L, -3, "json");
    lua_getfield(L, -1, "db");
    copy_table(L);
    lua_setfield(L, -3, "db");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "print");
}

/* setmetatable without __gc: a finalizer would run after the request, outside
 * its caps and its database context. Otherwise as Lua's own. */
static int l_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE && lua_rawget(L, (lua_pushliteral(L, "__gc"), 2)) != LUA_TNIL)
        return luaL_error(L, "setmetatable: __gc metamethods are not allowed in scripts");
    lua_settop(L, 2);
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_setmetatable(L, 1);
    return 1;
}

/* Charges @p n units of work to the instruction cap; raises when over it.
 * For library calls that loop in C, where the count hook never runs. */
static void charge(lua_State *L, uint64_t n)
{
    struct script_vm *vm = vm_of(L);

    if (vm->limits.instructions == 0)
        return;
    vm->count += n;
    if (vm->count > vm->limits.instructions) {
        vm->limit_hit = SCRIPT_LIMIT_INSTRUCTIONS;
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "instruction limit reached");
    }
}

/* Pattern matching work (luapat): one matcher step costs about what one VM
 * instruction does, so it counts against the instruction cap, and the wall
 * clock is checked as the count hook would. */
static void charge_steps(lua_State *L, unsigned long steps)
{
    struct script_vm *vm = vm_of(L);
    struct timespec now;

    charge(L, steps);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (vm->deadline.tv_sec &&
        (now.tv_sec > vm->deadline.tv_sec ||
         (now.tv_sec == vm->deadline.tv_sec && now.tv_nsec > vm->deadline.tv_nsec))) {
        vm->limit_hit = SCRIPT_LIMIT_TIME;
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "wall-time limit reached");
    }
}

/* string.rep: Lua's loops n times even when the result is empty. */
static int l_rep(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    luaL_Buffer b;

    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (l + lsep < l || (uint64_t)(l + lsep) > (uint64_t)(SIZE_MAX / 2) / (uint64_t)n)
        return luaL_error(L, "resulting string too large");
    /* A result over the memory cap fails at once, not after the copying. */
    if (vm->cap && (uint64_t)(l + lsep) * (uint64_t)n > vm->cap - vm->used) {
        vm->hit_memory = true;
        return luaL_error(L, "not enough memory");
    }
    charge(L, (uint64_t)n / 64);
    luaL_buffinit(L, &b);
    for (lua_Integer i = 0; i < n; i++) {
        luaL_addlstring(&b, s, l);
        if (lsep && i + 1 < n)
            luaL_addlstring(&b, sep, lsep);
    }
    luaL_pushresult(&b);
    return 1;
}

/* table.move with its element count charged to the instruction cap. */
static int l_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);

    if (e >= f) {
        uint64_t n = (uint64_t)e - (uint64_t)f + 1;

        charge(L, n > UINT64_MAX / 4 ? UINT64_MAX / 4 : n);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* certgate.array(t): marks a table to be encoded as a JSON array, so a
 * script can answer [] (an empty table is {} otherwise). */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1))
        return luaL_error(L, "certgate.array: the table already has a metatable");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_array_mt);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

static int setup(lua_State *L)
{
    static const luaL_Reg db_fns[] = {
        {"insert", l_db_insert}, {"get", l_db_get}, {"query", l_db_query},
        {"update", l_db_update}, {NULL, NULL},
    };
    static const luaL_Reg json_fns[] = {
        {"encode", l_json_encode},
        {"decode", l_json_decode},
        {NULL, NULL},
    };

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_settop(L, 0);

    lua_newtable(L); /* cg.libs */
    lua_pushglobaltable(L);
    for (const char *const *b = base_allowed; *b; b++) {
        lua_getfield(L, -1, *b);
        lua_setfield(L, -3, *b);
    }
    for (const char *const *l = libs_allowed; *l; l++) {
        lua_getfield(L, -1, *l);
        lua_setfield(L, -3, *l);
    }
    /* string.dump would hand out bytecode; os keeps only its clock. */
    lua_getfield(L, -1, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pushcfunction(L, l_rep);
    lua_setfield(L, -2, "rep");
    luapat_install(L, lua_gettop(L), charge_steps);
    lua_pop(L, 1);
    lua_getfield(L, -1, "table");
    lua_getfield(L, -1, "move");
    lua_pushcclosure(L, l_move, 1);
    lua_setfield(L, -2, "move");
    lua_pop(L, 1);
    lua_newtable(L);
    lua_getfield(L, -2, "os");
    for (const char *const *o = os_allowed; *o; o++) {
        lua_getfield(L, -1, *o);
        lua_setfield(L, -3, *o);
    }
    lua_pop(L, 1);
    lua_setfield(L, -3, "os");
    lua_pop(L, 1); /* the real globals */

    lua_pushcfunction(L, l_setmetatable);
    lua_setfield(L, -2, "setmetatable");

    /* certgate.null: one userdata whose metatable scripts cannot reach. */
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "null");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_null);

    lua_newtable(L); /* certgate */
    lua_pushcfunction(L, l_fail);
    lua_setfield(L, -2, "fail");
    lua_pushcfunction(L, l_array);
    lua_setfield(L, -2, "array");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_null);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "certgate");
    luaL_newlib(L, json_fns);
    lua_setfield(L, -2, "json");
    luaL_newlib(L, db_fns);
    lua_setfield(L, -2, "db");
    lua_setfield(L, LUA_REGISTRYINDEX, "cg.libs");

    /* Strings share one metatable: scripts must not reach it. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "protected");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* The metatables certgate shares between requests are protected: a
     * script that changed them would change what the next request sees. */
    lua_newtable(L);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_array_mt);
    lua_newtable(L);
    lua_pushliteral(L, "certgate.fail");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
    return 0;
}

int script_vm_new(const struct script_limits *limits, struct script_vm **out_vm)
{
    struct script_vm *vm = calloc(1, sizeof(*vm));

    if (!vm)
        return CG_ENOMEM;
    if (limits)
        vm->limits = *limits;
    else
        script_limits_default(&vm->limits);
    vm->L = lua_newstate(alloc, vm);
    if (!vm->L) {
        free(vm);
        return CG_ENOMEM;
    }
    lua_pushlightuserdata(vm->L, vm);
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &k_vm);
    lua_pushcfunction(vm->L, setup);
    if (lua_pcall(vm->L, 0, 0, 0) != LUA_OK) {
        script_vm_free(vm);
        return CG_ENOMEM;
    }
    for (int i = 0; i < CHUNK_CACHE; i++)
        vm->chunks[i].ref = LUA_NOREF;
    *out_vm = vm;
    return CG_OK;
}

void script_vm_free(struct script_vm *vm)
{
    if (!vm)
        return;
    for (int i = 0; i < CHUNK_CACHE; i++)
        free(vm->chunks[i].key);
    if (vm->L)
        lua_close(vm->L);
    free(vm);
}

int script_check_syntax(const char *source, size_t len, const char *name, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    char chunkname[300];
    int rc;

    if (!L) {
        snprintf(err, errlen, "out of memory");
        return CG_ENOMEM;
    }
    snprintf(chunkname, sizeof(chunkname), "=%s", name);
    rc = luaL_loadbufferx(L, source, len, chunkname, "t");
    if (rc != LUA_OK)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return rc == LUA_OK ? CG_OK : CG_EPARSE;
}

/* Leaves the compiled chunk for @p key on the stack. */
static int load_chunk(struct script_vm *vm, const char *key, const char *source, const char *name,
                      char *err, size_t errlen)
{
    lua_State *L = vm->L;
    struct chunk *slot = &vm->chunks[0];
    char chunkname[300];

    for (int i = 0; i < CHUNK_CACHE; i++) {
        if (vm->chunks[i].key && strcmp(vm->chunks[i].key, key) == 0) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, vm->chunks[i].ref);
            return CG_OK;
        }
        if (!vm->chunks[i].key)
            slot = &vm->chunks[i];
    }
    snprintf(chunkname, sizeof(chunkname), "=%s", name);
    if (luaL_loadbufferx(L, source, strlen(source), chunkname, "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return CG_EPARSE;
    }
    if (slot->key) {
        luaL_unref(L, LUA_REGISTRYINDEX, slot->ref);
        free(slot->key);
    }
    slot->key = strdup(key);
    lua_pushvalue(L, -1);
    slot->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return CG_OK;
}

static int push_request(lua_State *L, const struct script_request *req)
{
    lua_createtable(L, 0, 9);
    lua_pushstring(L, req->method ? req->method : "");
    lua_setfield(L, -2, "method");
    lua_pushstring(L, req->path ? req->path : "");
    lua_setfield(L, -2, "path");
    if (req->params ? push_json(L, req->params, 0) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "params");
    if (req->query ? push_json(L, req->query, 0) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "query");
    if (req->headers ? push_json(L, req->headers, 0) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "headers");
    if (req->body) {
        if (push_json(L, req->body, 0))
            return -1;
    } else {
        lua_pushnil(L);
    }
    lua_setfield(L, -2, "body");
    lua_pushlstring(L, req->raw_body ? req->raw_body : "", req->raw_body ? req->raw_len : 0);
    lua_setfield(L, -2, "raw_body");
    if (req->user ? push_json(L, req->user, 0) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "user");
    return 0;
}

static bool valid_header(const char *name, const char *value)
{
    if (!*name || strlen(name) > 64)
        return false;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return false;
    }
    return !strpbrk(value, "\r\n") && strlen(value) < 4096;
}

/* Reads `response` (at the top of the stack) into @p out, with raw access
 * only: no metamethod of the script runs here. */
static void read_response(lua_State *L, struct script_result *out)
{
    int t = lua_gettop(L);

    if (!lua_istable(L, t)) {
        out->outcome = SCRIPT_BAD_RESPONSE;
        snprintf(out->log_detail, sizeof(out->log_detail), "response must be a table");
        return;
    }
    lua_pushliteral(L, "status");
    lua_rawget(L, t);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 200 && lua_tointeger(L, -1) <= 599)
        out->status = (int)lua_tointeger(L, -1);
    else if (!lua_isnil(L, -1)) {
        out->outcome = SCRIPT_BAD_RESPONSE;
        snprintf(out->log_detail, sizeof(out->log_detail),
                 "response.status must be an integer from 200 to 599");
    }
    lua_pop(L, 1);
    if (out->outcome != SCRIPT_OK)
        return;
    lua_pushliteral(L, "body");
    lua_rawget(L, t);
    if (!lua_isnil(L, -1)) {
        out->body = to_json(L, lua_gettop(L), 0, out->log_detail, sizeof(out->log_detail));
        if (!out->body) {
            out->outcome = SCRIPT_BAD_RESPONSE;
            lua_pop(L, 1);
            return;
        }
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "headers");
    lua_rawget(L, t);
    if (lua_istable(L, -1)) {
        out->headers = json_object();
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING &&
                valid_header(lua_tostring(L, -2), lua_tostring(L, -1)) &&
                json_object_set_new(out->headers, lua_tostring(L, -2),
                                    json_string(lua_tostring(L, -1))) == 0) {
                /* kept */
            } else if (out->outcome == SCRIPT_OK) {
                out->outcome = SCRIPT_BAD_RESPONSE;
                snprintf(out->log_detail, sizeof(out->log_detail),
                         "response.headers must map header names to UTF-8 strings without "
                         "CR/LF");
            }
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        out->outcome = SCRIPT_BAD_RESPONSE;
        snprintf(out->log_detail, sizeof(out->log_detail), "response.headers must be a table");
    }
    lua_pop(L, 1);
}

/* A string field of a certgate.fail object, read raw; "" when it is not one. */
static void fail_field(lua_State *L, int t, const char *name, char *out, size_t outlen)
{
    lua_pushstring(L, name);
    lua_rawget(L, t);
    snprintf(out, outlen, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    /* The message goes into a JSON body: keep it UTF-8. */
    if (!utf8_ok(out, strlen(out)))
        snprintf(out, outlen, "(not valid UTF-8)");
}

/* Reads the error object of a failed run (at the top) into @p out. */
static void read_error(lua_State *L, struct script_vm *vm, int rc, struct script_result *out)
{
    bool is_fail = false;
    int e = lua_gettop(L);

    out->status = 500;
    if (vm->limit_hit == SCRIPT_LIMIT_INSTRUCTIONS || vm->limit_hit == SCRIPT_LIMIT_TIME) {
        out->outcome = vm->limit_hit;
        out->status = vm->limit_hit == SCRIPT_LIMIT_TIME ? 503 : 500;
        snprintf(out->log_detail, sizeof(out->log_detail), "%s",
                 vm->limit_hit == SCRIPT_LIMIT_TIME ? "wall-time limit reached"
                                                    : "instruction limit reached");
        return;
    }
    if (rc == LUA_ERRMEM || vm->hit_memory) {
        out->outcome = SCRIPT_LIMIT_MEMORY;
        snprintf(out->log_detail, sizeof(out->log_detail), "memory limit reached");
        return;
    }
    if (lua_type(L, e) == LUA_TTABLE && lua_getmetatable(L, e)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
        is_fail = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!is_fail) {
        out->outcome = SCRIPT_ERROR;
        snprintf(out->log_detail, sizeof(out->log_detail), "script error: %s%s",
                 lua_type(L, e) == LUA_TSTRING ? "" : "error object of type ",
                 lua_type(L, e) == LUA_TSTRING ? lua_tostring(L, e) : luaL_typename(L, e));
        return;
    }
    out->outcome = SCRIPT_FAILED;
    lua_pushliteral(L, "status");
    lua_rawget(L, e);
    out->status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 500;
    lua_pop(L, 1);
    if (out->status < 400 || out->status > 599)
        out->status = 500;
    fail_field(L, e, "message", out->message, sizeof(out->message));
    fail_field(L, e, "detail", out->detail, sizeof(out->detail));
    if (!out->message[0])
        snprintf(out->message, sizeof(out->message), "Invalid request");
}

/* What run_protected needs. */
struct run_args {
    const struct script_request *req; /* the request */
    struct script_result *out;        /* filled on success */
};

/*
 * One run, as a protected C function: the chunk (at index 1) gets a fresh
 * environment with request and response, runs, and its response is read,
 * all under the caps, so that nothing the script left behind (a metamethod,
 * a loop) can run outside them.
 */
static int run_protected(lua_State *L)
{
    struct run_args *a = lua_touserdata(L, 2);

    lua_settop(L, 1);
    push_env(L);
    if (push_request(L, a->req))
        return luaL_error(L, "the request is nested too deeply");
    lua_setfield(L, -2, "request");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, 200);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    lua_setfield(L, -2, "headers");
    lua_setfield(L, -2, "response");
    /* _ENV of this run: the chunk's first upvalue. */
    lua_pushvalue(L, 2);
    lua_setupvalue(L, 1, 1);
    lua_pushvalue(L, 1);
    lua_call(L, 0, 0);
    lua_pushliteral(L, "response");
    lua_rawget(L, 2);
    read_response(L, a->out);
    return 0;
}

int script_run(struct script_vm *vm, const char *key, const char *source, const char *name,
               const struct script_request *req, const struct script_db_ops *db,
               struct script_result *out)
{
    lua_State *L = vm->L;
    struct run_args args;
    size_t baseline;
    int rc, base = lua_gettop(L);

    memset(out, 0, sizeof(*out));
    out->status = 200;
    args.req = req;
    args.out = out;
    if (load_chunk(vm, key, source, name, out->log_detail, sizeof(out->log_detail))) {
        out->outcome = SCRIPT_ERROR;
        out->status = 500;
        return CG_OK;
    }
    /* stack: chunk */
    lua_pushcfunction(L, run_protected);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, &args);

    vm->db = db;
    vm->count = 0;
    vm->log_lines = 0;
    vm->limit_hit = SCRIPT_OK;
    vm->hit_memory = false;
    clock_gettime(CLOCK_MONOTONIC, &vm->deadline);
    vm->deadline.tv_sec += vm->limits.wall_ms / 1000;
    vm->deadline.tv_nsec += (long)(vm->limits.wall_ms % 1000) * 1000000L;
    if (vm->deadline.tv_nsec >= 1000000000L) {
        vm->deadline.tv_sec++;
        vm->deadline.tv_nsec -= 1000000000L;
    }
    baseline = vm->used;
    vm->cap = baseline + vm->limits.memory;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_EVERY);
    rc = lua_pcall(L, 2, 0, 0);
    if (rc != LUA_OK) {
        script_result_free(out);
        read_error(L, vm, rc, out);
    } else if (out->outcome == SCRIPT_BAD_RESPONSE) {
        out->status = 500;
    }
    lua_sethook(L, NULL, 0, 0);
    vm->cap = 0;
    lua_settop(L, base);
    vm->db = NULL;
    /* Keep the state small between requests (no finalizer can run here:
     * scripts cannot set __gc). */
    if (vm->used > baseline + 1024 * 1024)
        lua_gc(L, LUA_GCCOLLECT);
    else
        lua_gc(L, LUA_GCSTEP, 0);
    return CG_OK;
}

void script_result_free(struct script_result *r)
{
    json_decref(r->body);
    json_decref(r->headers);
    r->body = r->headers = NULL;
}

json_t *script_eval_json(struct script_vm *vm, const char *code, char *err, size_t errlen)
{
    static const struct script_db_ops none = {0};
    struct script_request req = {0};
    struct script_result res;
    char src[8192];
    json_t *v;

    snprintf(src, sizeof(src), "response.body = { value = (function() %s end)() }", code);
    script_run(vm, src, src, "eval", &req, &none, &res);
    if (res.outcome != SCRIPT_OK) {
        snprintf(err, errlen, "%d %s %s", res.outcome, res.message, res.log_detail);
        script_result_free(&res);
        return NULL;
    }
    v = json_incref(json_object_get(res.body, "value"));
    if (!v)
        v = json_null();
    script_result_free(&res);
    return v;
}
