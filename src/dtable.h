/*
 * dtable: the data tables admins create (records with sys_id, sys_created_on,
 * sys_created_by), the scripted resource definitions, and stored responses
 * for Idempotency-Key. Relies on SQLite (its own connection; identifiers are
 * validated and quoted, values always bound) and jansson (records are JSON
 * objects). Does not run scripts and does not decide who may call what.
 * One struct dtable_db is one connection: one thread at a time.
 */
#ifndef CG_DTABLE_H
#define CG_DTABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct dtable_db;

/** Column types of a data table. */
enum dtable_type {
    DT_TEXT,    /* UTF-8 string */
    DT_INTEGER, /* 64-bit integer */
    DT_REAL,    /* double */
    DT_JSON,    /* any JSON value, stored as compact text */
};

/** A column of a data table. */
struct dtable_column {
    char name[64];         /* validated name */
    enum dtable_type type; /* its type */
};

/** A data table's definition. */
struct dtable_table {
    int64_t id;                 /* sys_db_table id */
    char *name;                 /* validated name */
    struct dtable_column *cols; /* admin's columns (the sys_ ones not included) */
    size_t n_cols;              /* count */
    char **roles;               /* roles of the Table API; none: not exposed */
    size_t n_roles;             /* count */
    char created_on[21];        /* ISO 8601 */
};

/** How a resource authenticates its callers. */
enum dtable_auth {
    DT_AUTH_ANY,   /* certificate or Basic */
    DT_AUTH_CERT,  /* certificate only */
    DT_AUTH_BASIC, /* Basic only */
    DT_AUTH_NONE,  /* public */
};

/** A scripted resource. */
struct dtable_resource {
    int64_t id;            /* sys_ws_operation id */
    char *ns;              /* namespace */
    char *api;             /* API name */
    char *version;         /* "v1" or "" */
    char *method;          /* GET, POST, PUT, PATCH, DELETE */
    char *path;            /* template, "/orders/{id}" */
    char *script_name;     /* the file it came from */
    char *script;          /* Lua source */
    char **roles;          /* roles that may call it; none: any authenticated user */
    size_t n_roles;        /* count */
    enum dtable_auth auth; /* authentication */
    bool is_active;        /* active flag */
    char updated_on[21];   /* ISO 8601 */
};

/** Name of a type ("text", ...), and the reverse (-1 when unknown). */
const char *dtable_type_name(enum dtable_type t);
int dtable_type_parse(const char *name);
/** Name of an auth mode ("any", ...), and the reverse (-1 when unknown). */
const char *dtable_auth_name(enum dtable_auth a);
int dtable_auth_parse(const char *name);

/**
 * Whether @p name may name a table or column: [a-z][a-z0-9_]{0,62}, not
 * starting with sys_ or sqlite_.
 */
bool dtable_valid_name(const char *name);

/**
 * Open the database for records (it must exist and be current: the caller
 * opened it with store_open before, which applies migrations).
 * @return CG_OK or CG_EDB
 */
int dtable_open(const char *path, struct dtable_db **out_db, struct cg_err *err);
/** Close; NULL is allowed. */
void dtable_close(struct dtable_db *db);

/**
 * synchronous=FULL (durable: a commit survives power loss) or NORMAL (a
 * commit survives a crash of certgate, not of the machine).
 */
int dtable_set_durable(struct dtable_db *db, bool durable, struct cg_err *err);

/**
 * Interrupt any statement still running after @p deadline_ms (CLOCK_MONOTONIC
 * milliseconds); 0 clears it. Keeps one slow query in a script from holding
 * the committer past the script's wall-time cap.
 */
void dtable_set_deadline(struct dtable_db *db, int64_t deadline_ms);

/** Monotonic clock in milliseconds, for dtable_set_deadline. */
int64_t dtable_now_ms(void);

/* Transactions: begin takes the write lock; savepoints nest inside. */
int dtable_begin(struct dtable_db *db, struct cg_err *err);
int dtable_commit(struct dtable_db *db, struct cg_err *err);
void dtable_rollback(struct dtable_db *db);
int dtable_savepoint(struct dtable_db *db, struct cg_err *err);
int dtable_release(struct dtable_db *db, struct cg_err *err);
void dtable_rollback_to(struct dtable_db *db);

/* ---- tables ---- */

/**
 * Create a data table and register it, in one transaction.
 * @return CG_OK, CG_EINVAL (bad name, column or type), CG_EEXIST, CG_EDB
 */
int dtable_table_create(struct dtable_db *db, const char *name, const struct dtable_column *cols,
                        size_t n_cols, char *const *roles, size_t n_roles, struct cg_err *err);
/** All tables, by name. */
int dtable_table_list(struct dtable_db *db, struct dtable_table **out_tables, size_t *out_n,
                      struct cg_err *err);
/** One table. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_table_get(struct dtable_db *db, const char *name, struct dtable_table *out_table,
                     struct cg_err *err);
/** Rows in a table. */
int dtable_table_count(struct dtable_db *db, const char *name, int64_t *out_n, struct cg_err *err);
/** Drop a table and its registry row. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_table_drop(struct dtable_db *db, const char *name, struct cg_err *err);
void dtable_table_free(struct dtable_table *t);
void dtable_table_list_free(struct dtable_table *t, size_t n);
/** The column named @p name, or NULL. */
const struct dtable_column *dtable_column(const struct dtable_table *t, const char *name);

/* ---- records ---- */

/**
 * Insert a record. @p fields is a JSON object of column → value.
 * @param out_sys_id the new UUID v4
 * @return CG_OK, CG_EINVAL (unknown column, wrong type: the message names it), CG_EDB
 */
int dtable_insert(struct dtable_db *db, const struct dtable_table *t, json_t *fields,
                  const char *user, char out_sys_id[37], struct cg_err *err);
/** Update columns of a record. @return CG_OK, CG_ENOTFOUND, CG_EINVAL, CG_EDB */
int dtable_update(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t *fields, struct cg_err *err);
/** A record as a JSON object. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_get(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
               json_t **out_record, struct cg_err *err);
/**
 * Records whose columns equal @p filter's values (NULL: all), in insertion
 * order; @p limit is clamped to 1..1000.
 * @return CG_OK, CG_EINVAL (unknown column), CG_EDB
 */
int dtable_query(struct dtable_db *db, const struct dtable_table *t, json_t *filter, long limit,
                 long offset, json_t **out_array, struct cg_err *err);

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

/* ---- idempotency ---- */

/**
 * The stored response for (@p user, @p key) newer than @p since.
 * @return CG_OK, CG_ENOTFOUND, CG_EDB
 */
int dtable_idem_get(struct dtable_db *db, const char *user, const char *key, int64_t since,
                    int *out_status, char **out_body, struct cg_err *err);
/** Store a response (replacing an expired one). */
int dtable_idem_put(struct dtable_db *db, const char *user, const char *key, const char *method,
                    const char *path, int status, const char *body, int64_t now,
                    struct cg_err *err);

/** A fresh UUID v4 from GnuTLS's random generator, lower-case. */
void dtable_uuid(char out[37]);

#endif
