/*
 * script: the entry points of src/script/ (script.h): a VM's life, the
 * compiled-chunk cache, and one run of a script for one request: its
 * request table, its caps set and cleared, its response or error read into
 * a struct script_result. Relies on sandbox.c for the state's globals and
 * caps and on json_lua.c for the conversions. Does not define what a script
 * may call (sandbox.c, dbapi.c).
 */
#include "config.h"
#include "script/script.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "script/script_int.h"
#include "base/util.h"

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
