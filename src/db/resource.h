/*
 * resource: the scripted resource definitions (sys_ws_operation) and their
 * operations. Does not run scripts and does not route requests.
 */
#ifndef CG_RESOURCE_H
#define CG_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct dtable_db;

/** How a resource authenticates its callers. */
enum dtable_auth {
    DT_AUTH_ANY,   /* certificate or Basic */
    DT_AUTH_CERT,  /* certificate only */
    DT_AUTH_BASIC, /* Basic only */
    DT_AUTH_NONE,  /* public */
};

/** A scripted resource. */
struct dtable_resource {
    int64_t id;             /* sys_ws_operation id */
    char *ns;               /* namespace */
    char *api;              /* API name */
    char *version;          /* "v1" or "" */
    char *method;           /* GET, POST, PUT, PATCH, DELETE */
    char *path;             /* template, "/orders/{id}" */
    char *script_name;      /* the file it came from */
    char *script;           /* Lua source */
    char **roles;           /* roles that may call it; none: any authenticated user */
    size_t n_roles;         /* count */
    enum dtable_auth auth;  /* authentication */
    bool is_active;         /* active flag */
    char updated_on[21];    /* ISO 8601 */
    char script_sha256[65]; /* SHA-256 of the script (hex), to key its compiled chunk */
};

/** Name of an auth mode ("any", ...), and the reverse (-1 when unknown). */
const char *dtable_auth_name(enum dtable_auth a);
int dtable_auth_parse(const char *name);

/* ---- resources ---- */

/** Add a resource (id filled in). @return CG_OK, CG_EEXIST, CG_EDB */
int dtable_resource_add(struct dtable_db *db, struct dtable_resource *r, struct cg_err *err);
/** Replace script, roles, auth of a resource. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_resource_update(struct dtable_db *db, const struct dtable_resource *r,
                           struct cg_err *err);
int dtable_resource_delete(struct dtable_db *db, int64_t id, struct cg_err *err);
int dtable_resource_get(struct dtable_db *db, int64_t id, struct dtable_resource *out,
                        struct cg_err *err);
/** All resources (active and not), by id. */
int dtable_resource_list(struct dtable_db *db, struct dtable_resource **out, size_t *out_n,
                         struct cg_err *err);
void dtable_resource_free(struct dtable_resource *r);
void dtable_resource_list_free(struct dtable_resource *r, size_t n);
/** Counter that grows with every change of resources or tables. */
int dtable_resource_version(struct dtable_db *db, int64_t *out_version);
/**
 * Whether a change of resources or tables was announced since the last
 * call (PostgreSQL: NOTIFY certgate_resource, schema 5; the first call
 * listens). Never waits and sends nothing to the server.
 * @return 1 announced, 0 not, CG_ENOTSUP on SQLite (read the version),
 *         CG_EDB while the connection is lost
 */
int dtable_resource_announced(struct dtable_db *db);

#endif
