/*
 * dtable_int: what the files of the dtable module share and nothing else
 * includes: the connection struct and the statement helpers. Relies on
 * SQLite. Does not appear in any header outside src/db/.
 */
#ifndef CG_DTABLE_INT_H
#define CG_DTABLE_INT_H

#include <sqlite3.h>

#include "db/dtable.h"

/* Statements cached per connection, keyed by their SQL text. */
#define STMT_CACHE 64
struct cached {
    char *sql;          /* key */
    sqlite3_stmt *st;   /* prepared once */
    unsigned long used; /* for eviction */
};

struct dtable_db {
    sqlite3 *db;                     /* the connection */
    struct cached cache[STMT_CACHE]; /* prepared statements */
    unsigned long tick;              /* use counter */
    int sp_depth;                    /* open savepoints */
    int64_t deadline_ms;             /* interrupt statements after this, 0: never */
};

/* A failed step or prepare: the message, and CG_EDB. */
int fail_db(struct dtable_db *db, struct cg_err *err, const char *what);
/* A prepared statement for @p sql, reset and unbound. */
sqlite3_stmt *prep(struct dtable_db *db, const char *sql, struct cg_err *err);
static inline void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Roles as stored: a comma list (malloc'd). */
char *join_roles(char *const *roles, size_t n);
/* The columns a filter or record may name besides the admin's. */
extern const struct dtable_column sys_text_cols[3];
/* The column @p name of @p t, the sys_ ones included when @p with_sys. */
const struct dtable_column *column(const struct dtable_table *t, const char *name, bool with_sys);
/* The text a json column stores for @p v (malloc'd). */
char *json_text(json_t *v);

#endif
