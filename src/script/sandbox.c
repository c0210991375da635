/*
 * sandbox: the Lua state a script runs in and what it may do there. Provides
 * the caps (the count hook, charging library calls that loop in C, the
 * instruction and wall-time limits), the guard that frees C memory when a
 * Lua error unwinds, the libraries a script may use (base functions without
 * load/require/dofile, string without dump, table, utf8, a math of its own,
 * os with time, clock, date and difftime), certgate.fail/array/null and
 * log/print, and the fresh globals of each request. Relies on Lua, luapat
 * for the pattern functions and the VM struct of script_int.h. Does not
 * convert JSON (json_lua.c), reach the database (dbapi.c) or run a request
 * (script.c).
 */
#include "config.h"
#include "script/script_int.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "script/luapat.h"

/* Bytes a library loop (a scan, a copy) does in the time of one instruction. */
#define BYTES_PER_STEP 16
/* log(): longest line kept, and lines per request. */
#define LOG_MAX_BYTES 4096
#define LOG_MAX_LINES 100

/* Registry keys (addresses of these are unique). */
const char k_null = 0;     /* certgate.null sentinel (a full userdata, in the registry) */
const char k_array_mt = 0; /* metatable marking decoded arrays */
const char k_fail_mt = 0;  /* metatable of certgate.fail errors */
const char k_vm = 0;       /* the struct script_vm */
const char k_guard_mt = 0; /* metatable of struct guard */

struct script_vm *vm_of(lua_State *L)
{
    struct script_vm *vm;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_vm);
    vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return vm;
}

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
struct guard *guard_new(lua_State *L)
{
    struct guard *g = lua_newuserdatauv(L, sizeof(*g), 0);

    memset(g, 0, sizeof(*g));
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_guard_mt);
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    return g;
}

const char *limit_text(enum script_outcome o)
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
bool over_caps(lua_State *L, struct script_vm *vm, uint64_t n)
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

void hook(lua_State *L, lua_Debug *ar)
{
    struct script_vm *vm = vm_of(L);

    (void)ar;
    if (over_caps(L, vm, HOOK_EVERY))
        luaL_error(L, "%s", limit_text(vm->limit_hit));
}

/* Charges @p n units of work to the caps; raises when one is reached. For
 * library calls that loop in C, where the count hook never runs. */
void charge(lua_State *L, uint64_t n)
{
    struct script_vm *vm = vm_of(L);

    if (over_caps(L, vm, n))
        luaL_error(L, "%s", limit_text(vm->limit_hit));
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
void push_env(lua_State *L)
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

int setup(lua_State *L)
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
