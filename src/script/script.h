/*
 * script: the Lua 5.4 sandbox that runs scripted resources, and the
 * conversion between JSON (jansson) and Lua values. Relies on Lua and
 * jansson; database work goes through the callbacks of struct script_db_ops,
 * so the caller decides transactions. Does not know HTTP: it gets a request
 * as JSON pieces and returns a status, a JSON body and headers.
 * One struct script_vm is one lua_State: one thread at a time.
 */
#ifndef CG_SCRIPT_H
#define CG_SCRIPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/** Per-request caps. */
struct script_limits {
    uint64_t instructions; /* Lua VM instructions (default 10,000,000) */
    size_t memory;         /* bytes allocated above the VM's baseline (default 16 MiB), and
                              the budget of what a request converts to JSON in C */
    unsigned wall_ms;      /* wall time in milliseconds (default 5000) */
};

/** Database access for db.insert/get/query/update; each returns 0 or fills err. */
struct script_db_ops {
    void *ctx; /* passed back */
    int (*insert)(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
                  size_t errlen);
    int (*get)(void *ctx, const char *table, const char *sys_id, json_t **out, char *err,
               size_t errlen);
    int (*query)(void *ctx, const char *table, json_t *filter, long limit, long offset,
                 json_t **out, char *err, size_t errlen);
    int (*update)(void *ctx, const char *table, const char *sys_id, json_t *fields, char *err,
                  size_t errlen);
    void (*log)(void *ctx, const char *message);
};

/** What the script sees as `request`. */
struct script_request {
    const char *method;   /* GET, POST, ... */
    const char *path;     /* request path */
    json_t *params;       /* object: path parameters */
    json_t *query;        /* object: query string */
    json_t *headers;      /* object: lower-case names */
    json_t *body;         /* decoded JSON body, NULL when none */
    const char *raw_body; /* the body as sent, "" when none */
    size_t raw_len;       /* its length */
    json_t *user;         /* object: name, roles, auth, certificate */
};

/** How a run ended. */
enum script_outcome {
    SCRIPT_OK,                 /* status/body/headers are the response */
    SCRIPT_FAILED,             /* certgate.fail: status, message, detail */
    SCRIPT_ERROR,              /* runtime error: 500, error text in log_detail */
    SCRIPT_LIMIT_INSTRUCTIONS, /* instruction cap: 500 */
    SCRIPT_LIMIT_MEMORY,       /* memory cap: 500 */
    SCRIPT_LIMIT_TIME,         /* wall-time cap: 503 */
    SCRIPT_BAD_RESPONSE,       /* response not representable: 500 */
};

/** The result of a run. */
struct script_result {
    enum script_outcome outcome; /* see above */
    int status;                  /* HTTP status */
    json_t *body;                /* response body (owned), NULL: none */
    json_t *headers;             /* object of extra headers (owned), NULL: none */
    char message[256];           /* certgate.fail message */
    char detail[512];            /* certgate.fail detail */
    char log_detail[512];        /* for the log only: the Lua error or what was wrong */
};

struct script_vm;

/** Defaults for the limits. */
void script_limits_default(struct script_limits *l);

/**
 * A new sandboxed Lua state.
 * @return CG_OK or CG_ENOMEM
 */
int script_vm_new(const struct script_limits *limits, struct script_vm **out_vm);
void script_vm_free(struct script_vm *vm);

/**
 * Bytes the VM's Lua state holds now; between requests, what it keeps.
 * @param vm the VM
 * @return bytes allocated by its allocator
 */
size_t script_vm_memory(const struct script_vm *vm);

/**
 * Compile a script (text only, never bytecode) to check its syntax.
 * @param name chunk name used in messages ("push.lua")
 * @param err "push.lua:3: message" on failure
 * @return CG_OK or CG_EPARSE
 */
int script_check_syntax(const char *source, size_t len, const char *name, char *err, size_t errlen);

/**
 * Run a resource's script for one request. The chunk is compiled once per
 * (@p key) and kept; a different key recompiles it.
 * @param key identifies the script version, e.g. "12@2026-11-24T22:00:00Z"
 * @return CG_OK (see out->outcome), or negative when the VM itself failed
 */
int script_run(struct script_vm *vm, const char *key, const char *source, const char *name,
               const struct script_request *req, const struct script_db_ops *db,
               struct script_result *out);

/** Free the members of a result. */
void script_result_free(struct script_result *r);

/** Nesting deepest a script gets (a body nested deeper is the client's fault). */
#define SCRIPT_MAX_DEPTH 64
/** Whether @p v is nested no deeper than SCRIPT_MAX_DEPTH (NULL: yes). */
bool script_json_fits(json_t *v);

/* JSON <-> Lua, for tests and the runtime. */
struct lua_State;
/**
 * Push @p v as a Lua value (arrays marked, null as certgate.null).
 * @return CG_OK (the value is on the stack), CG_EINVAL (nested too deeply) or CG_ENOMEM
 */
int script_push_json(struct script_vm *vm, json_t *v);
/**
 * Convert the Lua value on top of the VM's stack to JSON (pops it).
 * @param err what cannot be represented
 * @return the JSON value or NULL
 */
json_t *script_pop_json(struct script_vm *vm, char *err, size_t errlen);
/** Run a snippet in the sandbox and return its first result as JSON (tests). */
json_t *script_eval_json(struct script_vm *vm, const char *code, char *err, size_t errlen);

#endif
