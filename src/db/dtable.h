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

#include "base/util.h"

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
/**
 * Open a read-only connection (PRAGMA query_only): for the script threads,
 * which read at a snapshot and never write.
 */
int dtable_open_reader(const char *path, struct dtable_db **out_db, struct cg_err *err);
/** Start a read transaction (a snapshot) unless one is open. */
int dtable_read_begin(struct dtable_db *db, struct cg_err *err);
/** End the read transaction, if one is open. */
void dtable_read_end(struct dtable_db *db);
/** Close; NULL is allowed. */
void dtable_close(struct dtable_db *db);

/**
 * synchronous=FULL (durable: a commit survives power loss) or NORMAL (a
 * commit survives a crash of certgate, not of the machine).
 */
int dtable_set_durable(struct dtable_db *db, bool durable, struct cg_err *err);

/**
 * Interrupt any statement still running after @p deadline_ms (clock_ms,
 * milliseconds); 0 clears it. Keeps one slow query in a script from holding
 * the committer past the script's wall-time cap.
 */
void dtable_set_deadline(struct dtable_db *db, int64_t deadline_ms);

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

/** Most records one query returns. */
#define DTABLE_MAX_LIMIT 1000

/**
 * Whether @p fields (a JSON object of column -> value) may be written to
 * @p t: known columns, values of the column's type (null always).
 * @return CG_OK or CG_EINVAL with the message naming the column
 */
int dtable_check_record(const struct dtable_table *t, json_t *fields, struct cg_err *err);
/**
 * Whether @p filter (NULL, or an object of column -> value; sys_id,
 * sys_created_on and sys_created_by included) may query @p t.
 * @return CG_OK or CG_EINVAL
 */
int dtable_check_filter(const struct dtable_table *t, json_t *filter, struct cg_err *err);
/**
 * The record as reading it back would give it, for a row not yet written:
 * the sys_ columns, every column (null when absent), @p fields merged.
 * @return a new JSON object, or NULL when out of memory
 */
json_t *dtable_new_row(const struct dtable_table *t, const char *sys_id, const char *created_on,
                       const char *created_by, json_t *fields);
/** Merge checked @p fields into @p row as they would be stored. @return CG_OK or CG_ENOMEM */
int dtable_merge_fields(const struct dtable_table *t, json_t *row, json_t *fields);
/** Whether @p row has every column = value of @p filter (null: IS NULL), as a query compares. */
bool dtable_row_matches(const struct dtable_table *t, json_t *row, json_t *filter);
/**
 * dtable_row_matches, except that json columns, and values given as JSON
 * true in a text, integer or real column (unknown), always match (for
 * conflict checks, which may over-approximate).
 */
bool dtable_row_may_match(const struct dtable_table *t, json_t *row, json_t *filter);

/**
 * Insert a record with the given sys_ values (the caller made them).
 * @return CG_OK, CG_EINVAL (unknown column, wrong type: the message names it), CG_EDB
 */
int dtable_insert_row(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                      const char *created_on, const char *created_by, json_t *fields,
                      struct cg_err *err);
/**
 * Insert a record. @p fields is a JSON object of column → value.
 * @param out_sys_id the new UUID v4
 * @return CG_OK, CG_EINVAL (unknown column, wrong type: the message names it), CG_EDB
 */
int dtable_insert(struct dtable_db *db, const struct dtable_table *t, json_t *fields,
                  const char *user, char out_sys_id[37], struct cg_err *err);
/** Update columns of a record (none: only check it exists). @return CG_OK, CG_ENOTFOUND, CG_EINVAL,
 * CG_EDB */
int dtable_update(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t *fields, struct cg_err *err);
/** A record as a JSON object. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_get(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
               json_t **out_record, struct cg_err *err);
/** dtable_get, also giving the record's rowid (insertion order) when @p out_rowid is set. */
int dtable_get_ex(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t **out_record, int64_t *out_rowid, struct cg_err *err);
/**
 * Records whose columns equal @p filter's values (NULL: all; a null value
 * means IS NULL), in insertion order; @p limit is clamped to 1..DTABLE_MAX_LIMIT.
 * @return CG_OK, CG_EINVAL (unknown column, wrong type), CG_EDB
 */
int dtable_query(struct dtable_db *db, const struct dtable_table *t, json_t *filter, long limit,
                 long offset, json_t **out_array, struct cg_err *err);
/**
 * dtable_query with more control.
 * @param exclude NULL or a JSON array of sys_ids left out
 * @param limit exact LIMIT
 * @param max_bytes 0, or the largest result: beyond it CG_EINVAL says to ask for fewer
 * @param out_rowids NULL, or a JSON array of the records' rowids, in the same order
 */
int dtable_query_ex(struct dtable_db *db, const struct dtable_table *t, json_t *filter,
                    json_t *exclude, long limit, long offset, size_t max_bytes, json_t **out_array,
                    json_t **out_rowids, struct cg_err *err);

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

/** Size of a request hash from dtable_request_sha256, with its NUL. */
#define DTABLE_REQUEST_HASH_SIZE 68

/** A stored response of a request sent with an Idempotency-Key. */
struct dtable_idem {
    int status;                                    /* HTTP status */
    char *body;                                    /* response body */
    json_t *headers;                               /* the script's response headers, or NULL */
    char request_sha256[DTABLE_REQUEST_HASH_SIZE]; /* dtable_request_sha256 of the first request */
    char method[16];                               /* its method */
    char *path;                                    /* its request target (path and query) */
    int64_t created_at; /* seconds since the epoch; for put: replace rows older than this */
};

/**
 * The stored response for (@p user, @p key) newer than @p since.
 * @param out filled on CG_OK (free with dtable_idem_free)
 * @return CG_OK, CG_ENOTFOUND, CG_EDB
 */
int dtable_idem_get(struct dtable_db *db, const char *user, const char *key, int64_t since,
                    struct dtable_idem *out, struct cg_err *err);
/**
 * Store a response, replacing one created before @p resp->created_at.
 * @return CG_OK, CG_EEXIST (a newer response for the key is stored), CG_EDB
 */
int dtable_idem_put(struct dtable_db *db, const char *user, const char *key,
                    const struct dtable_idem *resp, int64_t now, struct cg_err *err);
/** Delete stored responses created before @p before. */
int dtable_idem_purge(struct dtable_db *db, int64_t before, struct cg_err *err);
/** Free the members of a stored response. */
void dtable_idem_free(struct dtable_idem *r);

/**
 * What identifies a request for Idempotency-Key: "v2:" and the SHA-256 (hex)
 * of its method, its request target exactly as sent (path and query string,
 * before percent-decoding) and its body. Rows stored before the hash
 * covered the query string hold the bare hash of method, decoded path and
 * body (or nothing, before schema 3): they never equal a "v2:" value, so
 * such a key is refused, never replayed for a request it cannot tell apart.
 * @param method the request method
 * @param target the request target as sent ("/api/a/b?x=1")
 * @param body the body, @p len bytes
 * @param out "v2:" and 64 hex digits
 * @return CG_OK, or CG_ERR when no hash could be made (@p out is then "")
 */
int dtable_request_sha256(const char *method, const char *target, const char *body, size_t len,
                          char out[DTABLE_REQUEST_HASH_SIZE]);

/** A fresh UUID v4 from GnuTLS's random generator, lower-case. */
void dtable_uuid(char out[37]);

#endif
