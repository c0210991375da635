/*
 * json_lua: JSON (jansson) <-> Lua values, and the json.encode/json.decode a
 * script calls. JSON arrays become tables marked as arrays, null becomes
 * certgate.null. Converting Lua to JSON never raises: it stops within the
 * request's budget (see SLOT_BYTES in script_int.h) and the caps, and says
 * why. Relies on the caps and guards of sandbox.c. Does not decide what a
 * conversion is for: the caller picks the budget and the message.
 */
#include "config.h"
#include "script/script_int.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Deepest JSON/Lua nesting converted; deeper (or cyclic) is refused. */
#define MAX_DEPTH SCRIPT_MAX_DEPTH
/* Values converted (either way) per charge to the instruction cap; each
 * value counts as one instruction, and the wall clock is looked at then. */
#define CHARGE_EVERY 1024
/* How json.encode writes: compact, in the order the keys came. */
#define JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)

/* ---- JSON -> Lua ---- */

static int push(lua_State *L, json_t *v, int depth, unsigned *io_n)
{
    size_t i;
    const char *key;
    json_t *item;

    if (depth > MAX_DEPTH)
        return -1;
    if (!lua_checkstack(L, 4))
        return -1;
    /* The Lua heap counts what is made; the work counts here. */
    if (++*io_n == CHARGE_EVERY) {
        *io_n = 0;
        charge(L, CHARGE_EVERY);
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach(v, key, item)
        {
            if (push(L, item, depth + 1, io_n))
                return -1;
            lua_setfield(L, -2, key);
        }
        return 0;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, item)
        {
            if (push(L, item, depth + 1, io_n))
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

/*
 * Pushes @p v as a Lua value. Raises on a memory error or a cap: the caller
 * must own @p v through something the unwinding frees.
 * @return 0, or -1 when @p v is nested too deeply
 */
int push_json(lua_State *L, json_t *v)
{
    unsigned n = 0;

    return push(L, v, 0, &n);
}

/* ---- Lua -> JSON ---- */

void conv_init(struct conv *c, lua_State *L, struct script_vm *vm, size_t heap, size_t bytes,
               const char *what, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->L = L;
    c->vm = vm;
    c->heap = c->max_heap = heap;
    c->bytes = c->max_bytes = bytes;
    c->what = what;
    c->err = err;
    c->errlen = errlen;
}

/* The script's mistake: @p fmt says what cannot be JSON. */
static void conv_bad(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conv_bad(struct conv *c, const char *fmt, ...)
{
    va_list ap;

    c->stop = CONV_BAD;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

/* Charges the work a conversion did since its last charge.
 * @return false (c->stop set) when that reaches a cap */
bool conv_finish(struct conv *c)
{
    unsigned n = c->uncharged;

    c->uncharged = 0;
    if (!over_caps(c->L, c->vm, n))
        return true;
    c->stop = CONV_CAP;
    snprintf(c->err, c->errlen, "%s", limit_text(c->vm->limit_hit));
    return false;
}

/* Takes @p heap bytes of Lua data walked and @p bytes of JSON text from the
 * budget; each value (a @p heap of SLOT_BYTES or more) also counts as an
 * instruction. @return false (c->stop set) when the budget or a cap is out */
bool take(struct conv *c, size_t heap, size_t bytes)
{
    if (heap > c->heap || bytes > c->bytes) {
        c->stop = CONV_TOO_BIG;
        snprintf(c->err, c->errlen,
                 "%s would be more than the memory cap allows (%zu bytes of Lua data walked, "
                 "%zu bytes of JSON; a table reached twice counts twice)",
                 c->what, c->max_heap, c->max_bytes);
        return false;
    }
    c->heap -= heap;
    c->bytes -= bytes;
    if (heap >= SLOT_BYTES)
        c->uncharged++;
    return c->uncharged < CHARGE_EVERY || conv_finish(c);
}

/* Bytes of @p s as a JSON string, counted high: jansson escapes '"', '\\'
 * and control characters, the longest way six bytes (\u001f). */
size_t quoted_len(const char *s, size_t len)
{
    size_t n = len + 2;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\')
            n += 1;
        else if (ch < 0x20)
            n += 5;
    }
    return n;
}

/* Takes a string of @p len bytes, not reading it when it cannot fit. */
static bool take_string(struct conv *c, const char *s, size_t len)
{
    return take(c, SLOT_BYTES, len + 2 > c->bytes ? len + 2 : quoted_len(s, len));
}

/* Bytes of @p n in decimal. */
static size_t integer_len(lua_Integer n)
{
    lua_Unsigned u = n < 0 ? 0 - (lua_Unsigned)n : (lua_Unsigned)n;
    size_t len = n < 0 ? 2 : 1;

    while (u >= 10) {
        u /= 10;
        len++;
    }
    return len;
}

static json_t *to_json(struct conv *c, int idx, int depth);

/* Whether the value at @p idx is certgate.null. */
static bool is_null(lua_State *L, int idx)
{
    bool yes;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_null);
    yes = lua_rawequal(L, idx < 0 ? idx - 1 : idx, -1);
    lua_pop(L, 1);
    return yes;
}

static json_t *table_to_json(struct conv *c, int idx, int depth)
{
    lua_State *L = c->L;
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
            conv_bad(c, "a table key of type %s cannot be a JSON key", luaL_typename(L, -1));
            lua_pop(L, 1);
            return NULL;
        }
    }
    if (n > 0 || marked_array || n == 0) {
        if (n == 0 && !marked_array)
            return json_object(); /* {} unless it was decoded from [] */
        if (n != max) {
            conv_bad(c, "%s",
                     "a table with integer keys is not a sequence 1..n (sparse "
                     "arrays cannot be JSON arrays)");
            return NULL;
        }
        out = json_array();
        if (!out)
            goto nomem;
        for (lua_Integer i = 1; i <= n; i++) {
            json_t *item;

            /* the comma before every item but the first */
            if (i > 1 && !take(c, 0, 1)) {
                json_decref(out);
                return NULL;
            }
            lua_rawgeti(L, idx, i);
            item = to_json(c, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (!item || json_array_append_new(out, item)) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    out = json_object();
    if (!out)
        goto nomem;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        json_t *item;
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);

        /* The key, its colon, and the comma before it (counted high for
         * the first member). */
        if (!take(c, NODE_EXTRA, quoted_len(k, klen) + 2)) {
            lua_pop(L, 2);
            json_decref(out);
            return NULL;
        }
        item = to_json(c, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (!item) {
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
        /* A key must survive the trip as it is: no NUL inside, UTF-8. */
        if (strlen(k) != klen || json_object_set_new(out, k, item) != 0) {
            conv_bad(c, "a table key %s",
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
    conv_bad(c, "a table mixes string keys and array items");
    return NULL;
nomem:
    conv_bad(c, "out of memory");
    return NULL;
}

static json_t *to_json(struct conv *c, int idx, int depth)
{
    lua_State *L = c->L;
    json_t *v;
    size_t len;
    const char *s;

    if (depth > MAX_DEPTH) {
        c->stop = CONV_BAD;
        snprintf(c->err, c->errlen, "the value is nested more than %d levels deep (or cyclic)",
                 MAX_DEPTH);
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return take(c, SLOT_BYTES, 4) ? json_null() : NULL;
    case LUA_TBOOLEAN:
        return take(c, SLOT_BYTES, lua_toboolean(L, idx) ? 4 : 5)
                   ? json_boolean(lua_toboolean(L, idx))
                   : NULL;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            if (!take(c, SLOT_BYTES, integer_len(lua_tointeger(L, idx))))
                return NULL;
            return json_integer((json_int_t)lua_tointeger(L, idx));
        }
        if (!isfinite(lua_tonumber(L, idx))) {
            conv_bad(c, "NaN and infinity cannot be represented in JSON");
            return NULL;
        }
        /* "%.17g", and ".0" when that looks like an integer: 24 at most */
        return take(c, SLOT_BYTES, 24) ? json_real(lua_tonumber(L, idx)) : NULL;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        if (!take_string(c, s, len))
            return NULL;
        /* As for keys: request bodies with \u0000 are refused, and a JSON
         * string with one breaks C clients; jansson would write it. */
        if (memchr(s, '\0', len)) {
            conv_bad(c, "a string holds a NUL byte, which JSON text from certgate never carries");
            return NULL;
        }
        v = json_stringn(s, len);
        if (!v)
            conv_bad(c, "a string is not valid UTF-8");
        return v;
    case LUA_TUSERDATA:
        if (is_null(L, idx))
            return take(c, SLOT_BYTES, 4) ? json_null() : NULL;
        break;
    case LUA_TTABLE:
        if (!lua_checkstack(L, 8)) {
            conv_bad(c, "the value is nested too deeply");
            return NULL;
        }
        /* the brackets */
        if (!take(c, SLOT_BYTES + TABLE_BYTES, 2))
            return NULL;
        return table_to_json(c, idx, depth);
    default: break;
    }
    conv_bad(c, "a %s cannot be represented in JSON", luaL_typename(L, idx));
    return NULL;
}

/* Converts the value at @p idx, all its work charged.
 * @return the value, or NULL with c->stop and c->err set */
static json_t *convert(struct conv *c, int idx)
{
    json_t *v = to_json(c, lua_absindex(c->L, idx), 0);

    if (!v && c->stop == CONV_DONE)
        conv_bad(c, "out of memory"); /* jansson's own allocation failed */
    if (v && !conv_finish(c)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/*
 * Converts the value at @p idx for C to keep until the request ends (the
 * response, what db.* calls hand over), from the request's budget.
 * @return the value, or NULL with c->stop and c->err set
 */
json_t *convert_kept(lua_State *L, int idx, const char *what, char *err, size_t errlen,
                     struct conv *c)
{
    struct script_vm *vm = vm_of(L);
    json_t *v;

    conv_init(c, L, vm, vm->json_heap, vm->json_bytes, what, err, errlen);
    v = convert(c, idx);
    if (v) {
        vm->json_heap = c->heap;
        vm->json_bytes = c->bytes;
    }
    return v;
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

/* script_push_json's work, run protected: out of memory is an answer there,
 * not a panic of the state. */
static int push_protected(lua_State *L)
{
    if (push_json(L, lua_touserdata(L, 1)))
        return luaL_error(L, "nested too deeply");
    return 1;
}

int script_push_json(struct script_vm *vm, json_t *v)
{
    int rc;

    lua_pushcfunction(vm->L, push_protected);
    lua_pushlightuserdata(vm->L, v);
    rc = lua_pcall(vm->L, 1, 1, 0);
    if (rc == LUA_OK)
        return CG_OK;
    lua_pop(vm->L, 1);
    return rc == LUA_ERRMEM ? CG_ENOMEM : CG_EINVAL;
}

json_t *script_pop_json(struct script_vm *vm, char *err, size_t errlen)
{
    struct conv c;
    json_t *v;

    conv_init(&c, vm->L, vm, vm->limits.memory, vm->limits.memory, "the value", err, errlen);
    v = convert(&c, -1);
    lua_pop(vm->L, 1);
    return v;
}

/* ---- the script API ---- */

/* Raises the error of a conversion that stopped; @p fn names the function. */
int raise_conv(lua_State *L, const char *fn, const struct conv *c)
{
    /* Over the budget is over the memory cap: the run ends as one. */
    if (c->stop == CONV_TOO_BIG)
        c->vm->hit_memory = true;
    return luaL_error(L, "%s: %s", fn, c->err);
}

int l_json_encode(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    char err[300];
    struct guard *g;
    struct conv c;
    size_t len, bytes = vm->limits.memory;

    luaL_checkany(L, 1);
    /* The tree is freed on return, so each call may make as much as a
     * request keeps; its text must fit the memory the script has left. */
    if (vm->cap) {
        size_t room = vm->cap > vm->used ? vm->cap - vm->used : 0;

        if (room < bytes)
            bytes = room;
    }
    conv_init(&c, L, vm, vm->limits.memory, bytes, "the text", err, sizeof(err));
    g = guard_new(L);
    g->json[0] = convert(&c, 1);
    if (!g->json[0])
        return raise_conv(L, "json.encode", &c);
    g->text = json_dumps(g->json[0], JSON_FLAGS);
    if (!g->text)
        return luaL_error(L, "json.encode: out of memory");
    len = strlen(g->text); /* jansson writes a NUL inside a string as \u0000 */
    charge(L, len / 16);
    lua_pushlstring(L, g->text, len);
    return 1;
}

/* The most values JSON text @p s can hold: the first, and one after each
 * '[', '{' and ',' outside strings. */
static size_t values_max(const char *s, size_t len)
{
    size_t n = 1;
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_string = false;
        } else if (s[i] == '"') {
            in_string = true;
        } else if (s[i] == ',' || s[i] == '[' || s[i] == '{') {
            n++;
        }
    }
    return n;
}

int l_json_decode(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    json_error_t jerr;
    struct guard *g;

    /* jansson parses into C memory, tens of bytes a value (\"[[],[],..."
     * is twenty times its length); each value then takes at least
     * SLOT_BYTES of the Lua heap. A text with more values than the memory
     * left could hold fails now, before it is parsed. */
    charge(L, len / 16);
    n = values_max(s, len);
    if (vm->cap && (vm->used >= vm->cap || n > (vm->cap - vm->used) / SLOT_BYTES)) {
        vm->hit_memory = true;
        return luaL_error(L, "json.decode: not enough memory for up to %zu values", n);
    }
    g = guard_new(L);
    g->json[0] = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    if (!g->json[0]) {
        lua_pushnil(L);
        lua_pushfstring(L, "line %d: %s", jerr.line, jerr.text);
        return 2;
    }
    if (push_json(L, g->json[0]))
        return luaL_error(L, "json.decode: nested too deeply");
    return 1;
}
