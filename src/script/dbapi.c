/*
 * dbapi: the db.insert, db.get, db.query and db.update functions a script
 * calls. Checks the arguments, converts them to JSON from the request's
 * budget and hands them to the struct script_db_ops of the running request.
 * Relies on json_lua.c for the conversions and on sandbox.c for the guards.
 * Does not touch SQLite or decide transactions: the caller's callbacks do.
 */
#include "config.h"
#include "script/script_int.h"

#include <lauxlib.h>
#include <lua.h>

/* What a db.* call leaves in C until the request ends besides its JSON (its
 * entry in the request's read or write set), charged to the same budget. */
#define DB_CALL_BYTES 128

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
int l_db_insert(lua_State *L)
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

int l_db_update(lua_State *L)
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

int l_db_get(lua_State *L)
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

int l_db_query(lua_State *L)
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
