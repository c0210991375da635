/*
 * dtable_int: what the files of the dtable module share and nothing else
 * includes: the statement helpers over the SQLite core (sqlite.h). Relies on
 * SQLite. Does not appear in any header outside src/db/.
 */
#ifndef CG_DTABLE_INT_H
#define CG_DTABLE_INT_H

#include "db/dtable.h"
#include "db/core.h"

/* A failed step or prepare: the message, and CG_EDB. */
static inline int fail_db(struct dtable_db *db, struct cg_err *err, const char *what)
{
    return core_fail(&db->core, err, what);
}
/* A prepared statement for @p sql, reset and unbound. */
static inline struct db_stmt *prep(struct dtable_db *db, const char *sql, struct cg_err *err)
{
    return core_prep(&db->core, sql, err);
}

/* Roles as stored: a comma list (malloc'd). */
char *join_roles(char *const *roles, size_t n);
/* The columns a filter or record may name besides the admin's. */
extern const struct dtable_column sys_text_cols[3];
/* The column @p name of @p t, the sys_ ones included when @p with_sys. */
const struct dtable_column *column(const struct dtable_table *t, const char *name, bool with_sys);
/* CREATE TABLE for a data table on PostgreSQL (@p pg) or SQLite (malloc'd). */
char *table_ddl(bool pg, const char *name, const struct dtable_column *cols, size_t n_cols);
/* The text a json column stores for @p v (malloc'd). */
char *json_text(json_t *v);

#endif
