#include "config.h"
#include "script/script.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "script/luapat.h"
#include "base/util.h"

/* Deepest JSON/Lua nesting converted; deeper (or cyclic) is refused. */
#define MAX_DEPTH SCRIPT_MAX_DEPTH
/* The count hook runs every this many VM instructions. */
#define HOOK_EVERY 1000
/*
 * Lua values become JSON in C, outside the Lua allocator and the count
 * hook, and a table reached twice is converted twice: {t, t} nested 26 deep
 * is 2^26 values from a few kilobytes of Lua. So what a conversion walks is
 * counted as the least it can take in the Lua heap (a value's slot, a hash
 * node's key, a table's header), and a request may hand C at most its
 * memory cap of that and its memory cap of JSON text (see struct conv): data
 * that fits the cap without sharing always fits, and jansson's copy is a few
 * times the cap at most, however much is shared.
 */
#define SLOT_BYTES 16  /* a TValue: any value, in an array part or on the stack */
#define NODE_EXTRA 8   /* a hash node (24 bytes) holds its key besides the value */
#define TABLE_BYTES 56 /* a Table header, besides the slot that holds it */
/* Bytes a library loop (a scan, a copy) does in the time of one instruction. */
#define BYTES_PER_STEP 16
/* Values converted (either way) per charge to the instruction cap; each
 * value counts as one instruction, and the wall clock is looked at then. */
#define CHARGE_EVERY 1024
/* What a db.* call leaves in C until the request ends besides its JSON (its
 * entry in the request's read or write set), charged to the same budget. */
#define DB_CALL_BYTES 128
/* How json.encode writes: compact, in the order the keys came. */
#define JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
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
static const char k_guard_mt = 0; /* metatable of struct guard */

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
    bool in_request;                  /* a script_run is under way: the caps apply */
    uint64_t count;                   /* instructions of the current request */
    int64_t deadline_ms;              /* wall-time limit of the current request (clock_ms) */
    enum script_outcome limit_hit;    /* which cap stopped it */
    const struct script_db_ops *db;   /* current request's database */
    unsigned log_lines;               /* log() calls of the current request */
    struct timespec cpu_start;        /* the thread's CPU time when the request began */
    size_t json_heap;                 /* Lua heap bytes the request may still convert */
    size_t json_bytes;                /* bytes of JSON text it may still hand to C */
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

/*
 * C memory that a library function holds while it can still raise a Lua
 * error (a luaL_check*, a memory error in lua_push* or lua_createtable, a
 * cap): a to-be-closed userdata on the function's own stack owns it, so the
 * error's unwinding frees it, as does the function's return. A longjmp
 * skips every free() written after the call that raised.
 */
struct guard {
    json_t *json[2]; /* values to json_decref */
    char *text;      /* text from json_dumps, freed with jansson's free */
};

static int guard_close(lua_State *L)
{
    struct guard *g = lua_touserdata(L, 1);

    for (size_t i = 0; i < sizeof(g->json) / sizeof(g->json[0]); i++) {
        json_decref(g->json[i]);
        g->json[i] = NULL;
    }
    if (g->text) {
        json_free_t jfree;

        json_get_alloc_funcs(NULL, &jfree);
        jfree(g->text);
        g->text = NULL;
    }
    return 0;
}

/* A new empty guard at the top of the stack, closed when the calling C
 * function returns or raises. Call it before any C allocation. */
static struct guard *guard_new(lua_State *L)
{
    struct guard *g = lua_newuserdatauv(L, sizeof(*g), 0);

    memset(g, 0, sizeof(*g));
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_guard_mt);
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    return g;
}

static void hook(lua_State *L, lua_Debug *ar);

static const char *limit_text(enum script_outcome o)
{
    return o == SCRIPT_LIMIT_TIME ? "wall-time limit reached" : "instruction limit reached";
}

/*
 * Charges @p n units of work to the instruction cap and looks at the wall
 * clock, as the count hook does; never raises, so code that holds C memory
 * can free it first. Once a cap is reached, every following instruction
 * raises again, so a script that catches the error with pcall cannot go on.
 * @return whether a cap is reached (vm->limit_hit says which)
 */
static bool over_caps(lua_State *L, struct script_vm *vm, uint64_t n)
{
    uint64_t before = vm->count;

    if (!vm->in_request)
        return false; /* script_push_json, script_pop_json: nothing to charge */
    if (vm->limit_hit != SCRIPT_OK)
        return true;
    vm->count += n;
    if (vm->limits.instructions && vm->count > vm->limits.instructions)
        vm->limit_hit = SCRIPT_LIMIT_INSTRUCTIONS;
    /* The clock as often as the hook looks at it: small charges of many
     * cheap calls add up to a look, not one each. */
    if (vm->limit_hit == SCRIPT_OK &&
        (n >= HOOK_EVERY || before / HOOK_EVERY != vm->count / HOOK_EVERY)) {
        if (clock_ms() > vm->deadline_ms)
            vm->limit_hit = SCRIPT_LIMIT_TIME;
    }
    if (vm->limit_hit == SCRIPT_OK)
        return false;
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);
    return true;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    struct script_vm *vm = vm_of(L);

    (void)ar;
    if (over_caps(L, vm, HOOK_EVERY))
        luaL_error(L, "%s", limit_text(vm->limit_hit));
}

/* Charges @p n units of work to the caps; raises when one is reached. For
 * library calls that loop in C, where the count hook never runs. */
static void charge(lua_State *L, uint64_t n)
{
    struct script_vm *vm = vm_of(L);

    if (over_caps(L, vm, n))
        luaL_error(L, "%s", limit_text(vm->limit_hit));
}

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
static int push_json(lua_State *L, json_t *v)
{
    unsigned n = 0;

    return push(L, v, 0, &n);
}

/* ---- Lua -> JSON ---- */

/* Why a conversion stopped. */
enum conv_stop {
    CONV_DONE,    /* it did not */
    CONV_BAD,     /* a value JSON cannot represent (the script's mistake) */
    CONV_TOO_BIG, /* over its budget: the memory cap */
    CONV_CAP,     /* the instruction or wall-time cap (vm->limit_hit) */
};

/*
 * One Lua -> JSON conversion and what it may still make. It never raises (a
 * raise would leak the half-made value): it stops, frees what it made and
 * says why in err. The bytes are those of the compact text, counted high
 * (escapes, 24 for any real), so the text is never longer.
 */
struct conv {
    lua_State *L;         /* the state */
    struct script_vm *vm; /* its VM, for the caps */
    size_t heap;          /* bytes of Lua heap it may still walk (see SLOT_BYTES) */
    size_t bytes;         /* bytes of JSON text it may still make */
    size_t max_heap;      /* what it started with, for the message */
    size_t max_bytes;     /* what it started with, for the message */
    unsigned uncharged;   /* values made since the last charge */
    enum conv_stop stop;  /* why it stopped */
    const char *what;     /* what is converted, for the message ("response.body") */
    char *err;            /* the reason, on failure */
    size_t errlen;        /* its size */
};

static void conv_init(struct conv *c, lua_State *L, struct script_vm *vm, size_t heap, size_t bytes,
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
static bool conv_finish(struct conv *c)
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
static bool take(struct conv *c, size_t heap, size_t bytes)
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
static size_t quoted_len(const char *s, size_t len)
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
static json_t *convert_kept(lua_State *L, int idx, const char *what, char *err, size_t errlen,
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
static int raise_conv(lua_State *L, const char *fn, const struct conv *c)
{
    /* Over the budget is over the memory cap: the run ends as one. */
    if (c->stop == CONV_TOO_BIG)
        c->vm->hit_memory = true;
    return luaL_error(L, "%s: %s", fn, c->err);
}

/* The running request's database, or a Lua error outside a request. Each
 * call takes its entry in the request's read or write set from the budget. */
static const struct script_db_ops *db_of(lua_State *L, const char *fn)
{
    struct script_vm *vm = vm_of(L);

    if (!vm->db || !vm->db->insert)
        luaL_error(L, "the database is not available here");
    if (vm->json_heap < DB_CALL_BYTES) {
        vm->hit_memory = true;
        luaL_error(L,
                   "%s: the request's database calls would hold more than the memory cap "
                   "allows in C",
                   fn);
    }
    vm->json_heap -= DB_CALL_BYTES;
    return vm->db;
}

/* The Lua value at @p idx as JSON that C keeps until the request ends,
 * owned by @p g (its slot @p slot); raises what cannot be represented. */
static json_t *arg_json(lua_State *L, int idx, const char *fn, const char *what, struct guard *g,
                        int slot)
{
    char err[300];
    struct conv c;

    g->json[slot] = convert_kept(L, idx, what, err, sizeof(err), &c);
    if (!g->json[slot])
        raise_conv(L, fn, &c);
    return g->json[slot];
}

/* Every argument is checked before anything is allocated in C, and what is
 * allocated then belongs to a guard: a raise at any point leaks nothing. */
static int l_db_insert(lua_State *L)
{
    const struct script_db_ops *db = db_of(L, "db.insert");
    const char *table = luaL_checkstring(L, 1);
    char id[37], err[300] = "";
    struct guard *g;
    json_t *fields;

    luaL_checktype(L, 2, LUA_TTABLE);
    g = guard_new(L);
    fields = arg_json(L, 2, "db.insert", "the record", g, 0);
    if (db->insert(db->ctx, table, fields, id, err, sizeof(err)))
        return luaL_error(L, "db.insert: %s", err);
    lua_pushstring(L, id);
    return 1;
}

static int l_db_update(lua_State *L)
{
    const struct script_db_ops *db = db_of(L, "db.update");
    const char *table = luaL_checkstring(L, 1), *sys_id = luaL_checkstring(L, 2);
    char err[300] = "";
    struct guard *g;
    json_t *fields;
    int rc;

    luaL_checktype(L, 3, LUA_TTABLE);
    g = guard_new(L);
    fields = arg_json(L, 3, "db.update", "the record", g, 0);
    rc = db->update(db->ctx, table, sys_id, fields, err, sizeof(err));
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
    const struct script_db_ops *db = db_of(L, "db.get");
    const char *table = luaL_checkstring(L, 1), *sys_id = luaL_checkstring(L, 2);
    char err[300] = "";
    struct guard *g = guard_new(L);
    int rc = db->get(db->ctx, table, sys_id, &g->json[0], err, sizeof(err));

    if (rc == CG_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc)
        return luaL_error(L, "db.get: %s", err);
    /* A memory error while the record becomes Lua values frees it too. */
    if (push_json(L, g->json[0]))
        return luaL_error(L, "db.get: record too deep");
    return 1;
}

static int l_db_query(lua_State *L)
{
    const struct script_db_ops *db = db_of(L, "db.query");
    const char *table = luaL_checkstring(L, 1);
    char err[300] = "";
    struct guard *g;
    json_t *filter = NULL;
    long limit = 100, offset = 0;
    int rc;

    lua_settop(L, 3); /* the guard goes above the arguments, absent or not */
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    /* The options may run metamethods and raise: read them before the
     * filter is converted. */
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "limit");
        if (!lua_isnil(L, -1))
            limit = (long)luaL_checkinteger(L, -1);
        lua_getfield(L, 3, "offset");
        if (!lua_isnil(L, -1))
            offset = (long)luaL_checkinteger(L, -1);
        lua_pop(L, 2);
    }
    g = guard_new(L);
    if (!lua_isnil(L, 2)) {
        filter = arg_json(L, 2, "db.query", "the filter", g, 0);
        if (json_is_array(filter) && json_array_size(filter) == 0) {
            json_decref(filter);
            filter = json_object();
            g->json[0] = filter;
        }
    }
    rc = db->query(db->ctx, table, filter, limit, offset, &g->json[1], err, sizeof(err));
    if (rc)
        return luaL_error(L, "db.query: %s", err);
    if (push_json(L, g->json[1]))
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

        while (w <= 4 && i + w <= len && !utf8_valid(line + i, w))
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

static int l_json_decode(lua_State *L)
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

/* ---- the sandbox ---- */

/* Library functions a script may use; everything else is absent. */
static const char *const base_allowed[] = {
    "assert", "error",    "ipairs",       "next",         "pairs",    "pcall",    "rawequal",
    "rawget", "rawlen",   "rawset",       "select",       "tonumber", "tostring", "type",
    "xpcall", "_VERSION", "getmetatable", "setmetatable", NULL,
};
/* Copied into each request; math is made anew for each (push_math). */
static const char *const libs_allowed[] = {"string", "table", "utf8", NULL};
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

/* 128 bits for math.randomseed, from the kernel; should that fail, the
 * clocks and a counter, so that no two requests share a sequence. */
static void fresh_seed(lua_Integer out[2])
{
    static unsigned long counter;
    struct timespec now;
    uint64_t n[2];

    if (getrandom(n, sizeof(n), GRND_NONBLOCK) != (ssize_t)sizeof(n)) {
        clock_gettime(CLOCK_REALTIME, &now);
        n[0] = ((uint64_t)now.tv_sec << 30) ^ (uint64_t)now.tv_nsec;
        clock_gettime(CLOCK_MONOTONIC, &now);
        n[1] = ((uint64_t)now.tv_nsec << 20) ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    }
    memcpy(out, n, sizeof(n));
}

/*
 * A math library of this request's own. Lua's math.random and
 * math.randomseed share their generator as an upvalue, so a copy of the
 * table would share it with every request on the thread: one request's
 * randomseed(42) would make the next one's numbers known. Lua seeds a new
 * one from the time in seconds and an address, the same for two requests
 * in one second, so it is seeded here from fresh_seed.
 */
static void push_math(lua_State *L)
{
    lua_Integer seed[2];

    lua_pushcfunction(L, luaopen_math); /* a new table and generator each call */
    lua_call(L, 0, 1);
    fresh_seed(seed);
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, seed[0]);
    lua_pushinteger(L, seed[1]);
    lua_call(L, 2, 0);
}

/* Builds the globals of one request: fresh copies of the allowed libraries,
 * so nothing a script changes survives it. The pristine libraries live in
 * the registry ("cg.libs"). */
static void push_env(lua_State *L)
{
    lua_newtable(L);                               /* env */
    lua_getfield(L, LUA_REGISTRYINDEX, "cg.libs"); /* env libs */
    lua_getfield(L, -1, "string");
    luapat_reset(L, -1);
    lua_pop(L, 1);
    for (const char *const *b = base_allowed; *b; b++) {
        lua_getfield(L, -1, *b);
        lua_setfield(L, -3, *b);
    }
    for (const char *const *l = libs_allowed; *l; l++) {
        lua_getfield(L, -1, *l);
        copy_table(L);
        lua_setfield(L, -3, *l);
    }
    push_math(L);
    lua_setfield(L, -3, "math");
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

/* Pattern matching work (luapat): one matcher step costs about what one VM
 * instruction does, so it counts against the instruction cap, and the wall
 * clock is checked as the count hook would. */
static void charge_steps(lua_State *L, unsigned long steps)
{
    charge(L, steps);
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

/* What a wrapped table function costs (l_charged). */
enum cost {
    COST_SORT,   /* n log n comparisons */
    COST_INSERT, /* table.insert(t, pos, v) shifts up to n items */
    COST_REMOVE, /* table.remove(t, pos) shifts up to n items */
    COST_CONCAT, /* table.concat(t, sep, i, j): j - i + 1 items */
    COST_UNPACK, /* table.unpack(t, i, j): j - i + 1 items */
};

/* Items from @p i to @p j, 0 when none, not overflowing. */
static uint64_t span(lua_Integer i, lua_Integer j)
{
    return j >= i ? (uint64_t)j - (uint64_t)i + 1 : 0;
}

/*
 * A table function that loops in C over the script's table, charged to the
 * caps by its size before it runs: the count hook never fires inside it, so
 * `while true do table.sort(t) end` on 500,000 items ran 33 s past a 1 s
 * wall-time cap (the hook looks at the clock once per 250 sorts). The sizes
 * are raw (no __len runs twice); upvalue 1 is Lua's function, 2 its cost.
 */
static int l_charged(lua_State *L)
{
    uint64_t n = lua_type(L, 1) == LUA_TTABLE ? lua_rawlen(L, 1) : 0, lg = 1;
    int top = lua_gettop(L);

    switch ((enum cost)lua_tointeger(L, lua_upvalueindex(2))) {
    case COST_SORT:
        while (lg < 63 && (UINT64_C(1) << lg) < n)
            lg++;
        n *= lg;
        break;
    case COST_INSERT: n = top >= 3 ? n : 0; break;
    case COST_REMOVE: n = top >= 2 ? n : 0; break;
    case COST_CONCAT:
        n = span(luaL_optinteger(L, 3, 1), luaL_optinteger(L, 4, (lua_Integer)n));
        break;
    case COST_UNPACK:
        n = span(luaL_optinteger(L, 2, 1), luaL_optinteger(L, 3, (lua_Integer)n));
        break;
    }
    charge(L, n > UINT64_MAX / 4 ? UINT64_MAX / 4 : n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, top, LUA_MULTRET);
    return lua_gettop(L);
}

/*
 * A library function whose work grows with its string arguments
 * (string.upper, utf8.len, string.format, os.date, tonumber...), charged one
 * instruction per call and per BYTES_PER_STEP bytes of them before it runs:
 * a loop of utf8.len over 7 MB ran 2.6 s past a 1 s wall-time cap, the hook
 * looking at the clock once per 250 calls. Upvalue 1 holds Lua's function
 * (a C function without upvalues, called in this frame: no second call), 2
 * the VM (the registry is slower).
 */
static int l_bytes(lua_State *L)
{
    lua_CFunction f = *(lua_CFunction *)lua_touserdata(L, lua_upvalueindex(1));
    struct script_vm *vm = lua_touserdata(L, lua_upvalueindex(2));
    int top = lua_gettop(L);
    uint64_t n = 1;

    for (int i = 1; i <= top; i++) {
        if (lua_type(L, i) == LUA_TSTRING)
            n += lua_rawlen(L, i) / BYTES_PER_STEP;
    }
    if (over_caps(L, vm, n))
        return luaL_error(L, "%s", limit_text(vm->limit_hit));
    return f(L);
}

/* Replaces the C function at the top by its l_bytes closure. */
static void push_bytes_closure(lua_State *L)
{
    lua_CFunction f = lua_tocfunction(L, -1);
    lua_CFunction *slot = lua_newuserdatauv(L, sizeof(*slot), 0);

    *slot = f;
    lua_remove(L, -2);
    lua_pushlightuserdata(L, vm_of(L));
    lua_pushcclosure(L, l_bytes, 2);
}

/* Wraps every function of the table at the top in l_bytes, but those named
 * in @p skip (charged their own way). */
static void charge_bytes_of(lua_State *L, const char *const *skip)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        bool skipped = lua_type(L, -2) != LUA_TSTRING || !lua_iscfunction(L, -1);

        /* only C functions without upvalues can run in l_bytes' frame */
        if (!skipped && lua_getupvalue(L, -1, 1) != NULL) {
            lua_pop(L, 1);
            skipped = true;
        }
        for (const char *const *k = skip; !skipped && *k; k++)
            skipped = strcmp(lua_tostring(L, -2), *k) == 0;
        if (skipped) {
            lua_pop(L, 1);
            continue;
        }
        push_bytes_closure(L);
        /* setting an existing field keeps lua_next going */
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
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

/* os.clock: CPU time of this request's thread since the request began.
 * Lua's is the whole process's, which shows what other requests and threads
 * have done. */
static int l_clock(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    struct timespec now;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    lua_pushnumber(L, (double)(now.tv_sec - vm->cpu_start.tv_sec) +
                          (double)(now.tv_nsec - vm->cpu_start.tv_nsec) / 1e9);
    return 1;
}

static int l_null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

static int setup(lua_State *L)
{
    /* string.rep and the pattern functions are charged by what they do */
    static const char *const string_own_charges[] = {"rep",    "find", "match",
                                                     "gmatch", "gsub", NULL};
    static const char *const none[] = {NULL};
    static const struct {
        const char *name; /* in table */
        enum cost cost;   /* how l_charged charges it */
    } charged_fns[] = {
        {"sort", COST_SORT},     {"insert", COST_INSERT}, {"remove", COST_REMOVE},
        {"concat", COST_CONCAT}, {"unpack", COST_UNPACK},
    };
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
    charge_bytes_of(L, string_own_charges);
    lua_pushcfunction(L, l_rep);
    lua_setfield(L, -2, "rep");
    luapat_install(L, lua_gettop(L), charge_steps);
    lua_pop(L, 1);
    lua_getfield(L, -1, "utf8");
    charge_bytes_of(L, none);
    lua_pop(L, 1);
    lua_getfield(L, -1, "table");
    lua_getfield(L, -1, "move");
    lua_pushcclosure(L, l_move, 1);
    lua_setfield(L, -2, "move");
    for (size_t i = 0; i < sizeof(charged_fns) / sizeof(charged_fns[0]); i++) {
        lua_getfield(L, -1, charged_fns[i].name);
        lua_pushinteger(L, charged_fns[i].cost);
        lua_pushcclosure(L, l_charged, 2);
        lua_setfield(L, -2, charged_fns[i].name);
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_getfield(L, -2, "os");
    for (const char *const *o = os_allowed; *o; o++) {
        lua_getfield(L, -1, *o);
        lua_setfield(L, -3, *o);
    }
    lua_pop(L, 1);
    charge_bytes_of(L, none); /* os.date's format */
    lua_pushcfunction(L, l_clock);
    lua_setfield(L, -2, "clock");
    lua_setfield(L, -3, "os");
    lua_pop(L, 1);                   /* the real globals */
    lua_getfield(L, -1, "tonumber"); /* it scans its string */
    push_bytes_closure(L);
    lua_setfield(L, -2, "tonumber");

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
    /* Guards never reach a script; they are closed, not collected. */
    lua_newtable(L);
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushliteral(L, "guard");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_guard_mt);
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

size_t script_vm_memory(const struct script_vm *vm)
{
    return vm->used;
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
    if (req->params ? push_json(L, req->params) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "params");
    if (req->query ? push_json(L, req->query) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "query");
    if (req->headers ? push_json(L, req->headers) : (lua_newtable(L), 0))
        return -1;
    lua_setfield(L, -2, "headers");
    if (req->body) {
        if (push_json(L, req->body))
            return -1;
    } else {
        lua_pushnil(L);
    }
    lua_setfield(L, -2, "body");
    lua_pushlstring(L, req->raw_body ? req->raw_body : "", req->raw_body ? req->raw_len : 0);
    lua_setfield(L, -2, "raw_body");
    if (req->user ? push_json(L, req->user) : (lua_newtable(L), 0))
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

/* How a run ends whose response could not be converted: a cap reached
 * raises as the hook would; otherwise @p out says which mistake. */
static void stopped(lua_State *L, const struct conv *c, struct script_result *out)
{
    if (c->stop == CONV_CAP)
        luaL_error(L, "%s", limit_text(c->vm->limit_hit));
    out->outcome = c->stop == CONV_TOO_BIG ? SCRIPT_LIMIT_MEMORY : SCRIPT_BAD_RESPONSE;
    snprintf(out->log_detail, sizeof(out->log_detail), "%s%s",
             c->stop == CONV_TOO_BIG ? "memory limit reached: " : "", c->err);
}

/* Reads `response` (at the top of the stack) into @p out, with raw access
 * only: no metamethod of the script runs here. */
static void read_response(lua_State *L, struct script_result *out)
{
    struct script_vm *vm = vm_of(L);
    int t = lua_gettop(L);
    char err[300];
    struct conv c;

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
        out->body = convert_kept(L, -1, "response.body", err, sizeof(err), &c);
        if (!out->body) {
            stopped(L, &c, out);
            lua_pop(L, 1);
            return;
        }
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "headers");
    lua_rawget(L, t);
    if (lua_istable(L, -1)) {
        conv_init(&c, L, vm, vm->json_heap, vm->json_bytes, "response.headers", err, sizeof(err));
        out->headers = json_object();
        lua_pushnil(L);
        while (out->headers && lua_next(L, -2)) {
            /* lua_tostring would turn a number key into a string and
             * break lua_next: the types first. */
            bool strings = lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING;
            const char *name = strings ? lua_tostring(L, -2) : "";
            const char *value = strings ? lua_tostring(L, -1) : "";

            if (strings && valid_header(name, value) &&
                !take(&c, SLOT_BYTES + NODE_EXTRA,
                      quoted_len(name, strlen(name)) + quoted_len(value, strlen(value)) + 2)) {
                stopped(L, &c, out);
                lua_pop(L, 2);
                break;
            }
            if (!strings || !valid_header(name, value) ||
                json_object_set_new(out->headers, name, json_string(value)) != 0) {
                out->outcome = SCRIPT_BAD_RESPONSE;
                snprintf(out->log_detail, sizeof(out->log_detail),
                         "response.headers must map header names to UTF-8 strings without "
                         "CR/LF");
                lua_pop(L, 2);
                break;
            }
            lua_pop(L, 1);
        }
        if (out->outcome == SCRIPT_OK && !conv_finish(&c))
            stopped(L, &c, out);
        vm->json_heap = c.heap;
        vm->json_bytes = c.bytes;
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
    if (!utf8_valid(out, strlen(out)))
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
        snprintf(out->log_detail, sizeof(out->log_detail), "memory limit reached%s%s",
                 lua_type(L, e) == LUA_TSTRING ? ": " : "",
                 lua_type(L, e) == LUA_TSTRING ? lua_tostring(L, e) : "");
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
    /* stack: chunk; one copy stays below for after the run */
    lua_pushvalue(L, -1);
    lua_pushcfunction(L, run_protected);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, &args);

    vm->db = db;
    vm->count = 0;
    vm->log_lines = 0;
    vm->limit_hit = SCRIPT_OK;
    vm->hit_memory = false;
    vm->json_heap = vm->limits.memory;
    vm->json_bytes = vm->limits.memory;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &vm->cpu_start);
    vm->deadline_ms = clock_ms() + (int64_t)vm->limits.wall_ms;
    baseline = vm->used;
    vm->cap = baseline + vm->limits.memory;
    vm->in_request = true;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_EVERY);
    rc = lua_pcall(L, 2, 0, 0);
    if (rc != LUA_OK) {
        script_result_free(out);
        read_error(L, vm, rc, out);
    } else if (out->outcome != SCRIPT_OK) {
        out->status = 500;
    }
    lua_sethook(L, NULL, 0, 0);
    /* Outside a request nothing is capped (script_push_json, the GC). */
    vm->in_request = false;
    vm->cap = 0;
    vm->limit_hit = SCRIPT_OK;
    /* The cached chunk's _ENV would keep this request's globals, and all
     * they reach (its body, records, user), alive until the chunk runs
     * again: it points nowhere between runs. */
    lua_pushnil(L);
    lua_setupvalue(L, base + 1, 1);
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
