/*
 * sqlite: what the files of the SQLite storage code share and nothing else
 * includes: the connection struct, the statements by index and the column
 * helpers. Relies on SQLite. Does not appear in any header outside src/db/.
 */
#ifndef CG_SQLITE_H
#define CG_SQLITE_H

#include <sqlite3.h>

#include "db/store.h"

/* Statements prepared once per connection, by index. */
enum stmt_id {
    ST_TRUST_VERSION,
    ST_CA_INSERT,
    ST_CA_BY_ID,
    ST_CA_BY_FP,
    ST_CA_BY_FP_PREFIX,
    ST_CA_LIST,
    ST_CA_SET_ACTIVE,
    ST_CA_DEPS,
    ST_CA_CHILDREN,
    ST_CA_DELETE,
    ST_CA_DELETE_RULES,
    ST_CA_COPY,
    ST_CA_COPY_DISABLED,
    ST_CA_MOVE_RULES,
    ST_CA_BURY,
    ST_CA_UNBURY,
    ST_CA_DELETED_LIST,
    ST_CRL_SCOPE,
    ST_CRL_DELETE_SCOPE,
    ST_CRL_INSERT,
    ST_CRL_LIST,
    ST_USER_INSERT,
    ST_USER_SAME_CASE,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_LIST,
    ST_USER_ROLES,
    ST_ROLE_INSERT,
    ST_ROLE_CLEAR,
    ST_USER_SET_LOCKED,
    ST_USER_SET_PASSWORD,
    ST_USER_TOUCH,
    ST_USER_DELETE,
    ST_MAP_INSERT,
    ST_MAP_BY_ID,
    ST_MAP_BY_FP,
    ST_MAP_LIST,
    ST_MAP_LIST_USER,
    ST_MAP_DELETE,
    ST_MAP_RULE_EXISTS,
    ST_COUNT,
};

struct store {
    sqlite3 *db;                  /* the connection */
    char *path;                   /* file name, for messages */
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared on first use */
    int depth;                    /* open transaction levels (savepoints inside) */
};

/* A failed step or prepare: the message naming the file, and CG_EDB. */
int db_fail(struct store *s, struct cg_err *err, const char *what);
/* A prepared statement, reset and unbound, ready to bind. */
sqlite3_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err);
static inline void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Column @p i as a malloc'd string, NULL when SQL NULL (or out of memory). */
char *col_str(sqlite3_stmt *st, int i);
/* Column @p i copied into @p buf ("" when NULL). */
void col_buf(sqlite3_stmt *st, int i, char *buf, size_t size);
/* Column @p i as malloc'd bytes, NULL when empty. */
unsigned char *col_blob(sqlite3_stmt *st, int i, size_t *out_len);
/* Now, ISO 8601. */
void now_iso(char out[static 21]);
/* Binds text, or NULL for a NULL pointer. */
int bind_text(sqlite3_stmt *st, int i, const char *v);
/* Steps a statement that returns no row: CG_OK, CG_EEXIST (a constraint), CG_EDB. */
int step_done(struct store *s, sqlite3_stmt *st, struct cg_err *err, const char *what);

#endif
