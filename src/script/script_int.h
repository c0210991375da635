/*
 * script_int: what the files of src/script/ share with each other: the VM
 * struct, the registry keys, the caps, the guard that owns C memory across a
 * Lua error, and the Lua -> JSON conversion state. Not part of the script
 * interface: nothing outside src/script/ includes this header.
 *   script.c    entry points: VM life, compile cache, script_run
 *   sandbox.c   the caps, the allowed libraries, certgate.*, log
 *   json_lua.c  JSON <-> Lua, json.encode/decode
 *   dbapi.c     db.insert/get/query/update
 */
#ifndef CG_SCRIPT_INT_H
#define CG_SCRIPT_INT_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "script/script.h"

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
/* Compiled chunks kept per VM. */
#define CHUNK_CACHE 128

/* Registry keys (addresses of these are unique). */
extern const char k_null;     /* certgate.null sentinel (a full userdata, in the registry) */
extern const char k_array_mt; /* metatable marking decoded arrays */
extern const char k_fail_mt;  /* metatable of certgate.fail errors */
extern const char k_vm;       /* the struct script_vm */
extern const char k_guard_mt; /* metatable of struct guard */

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

/* sandbox.c */

/** The VM that owns @p L. */
struct script_vm *vm_of(lua_State *L);
/** A new empty guard on the stack, closed when the calling C function returns or raises. */
struct guard *guard_new(lua_State *L);
/** The message of a cap reached (instructions or wall time). */
const char *limit_text(enum script_outcome o);
/** Charge @p n units of work to the caps; never raises. @return whether a cap is reached */
bool over_caps(lua_State *L, struct script_vm *vm, uint64_t n);
/** The count hook: raises once a cap is reached. */
void hook(lua_State *L, lua_Debug *ar);
/** Charge @p n units of work to the caps; raises when one is reached. */
void charge(lua_State *L, uint64_t n);
/** Push the globals of one request: fresh copies of the allowed libraries. */
void push_env(lua_State *L);
/** Build the sandbox of a new state (a protected C function). */
int setup(lua_State *L);

/* json_lua.c */

/** Push @p v as a Lua value; raises at a memory error or a cap. @return 0, or -1: too deep */
int push_json(lua_State *L, json_t *v);
/** Start a conversion with @p heap and @p bytes of budget. */
void conv_init(struct conv *c, lua_State *L, struct script_vm *vm, size_t heap, size_t bytes,
               const char *what, char *err, size_t errlen);
/** Charge the work of @p c since its last charge. @return false (c->stop set) at a cap */
bool conv_finish(struct conv *c);
/** Take @p heap bytes of Lua data and @p bytes of JSON text from the budget of @p c. */
bool take(struct conv *c, size_t heap, size_t bytes);
/** Bytes of @p s as a JSON string, counted high. */
size_t quoted_len(const char *s, size_t len);
/** Convert the value at @p idx for C to keep until the request ends, from its budget. */
json_t *convert_kept(lua_State *L, int idx, const char *what, char *err, size_t errlen,
                     struct conv *c);
/** Raise the error of a conversion that stopped; @p fn names the function. */
int raise_conv(lua_State *L, const char *fn, const struct conv *c);
/** json.encode(value) */
int l_json_encode(lua_State *L);
/** json.decode(text) */
int l_json_decode(lua_State *L);

/* dbapi.c */

/** db.insert(table, record) */
int l_db_insert(lua_State *L);
/** db.update(table, sys_id, record) */
int l_db_update(lua_State *L);
/** db.get(table, sys_id) */
int l_db_get(lua_State *L);
/** db.query(table, filter, options) */
int l_db_query(lua_State *L);

#endif
