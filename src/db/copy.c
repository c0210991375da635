#include "config.h"
#include "db/copy.h"
#include "db/core.h"
#include "db/dtable_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The certgate tables, parents before children (sys_meta is the target's own). */
static const struct {
    const char *name; /* table */
    size_t count;     /* offset of its counter in struct db_copy_counts */
} sys_tables[] = {
    {"sys_ca_certificate", offsetof(struct db_copy_counts, cas)},
    {"sys_ca_deleted", offsetof(struct db_copy_counts, ca_deleted)},
    {"sys_crl", offsetof(struct db_copy_counts, crls)},
    {"sys_user", offsetof(struct db_copy_counts, users)},
    {"sys_user_role", offsetof(struct db_copy_counts, roles)},
    {"sys_user_certificate", offsetof(struct db_copy_counts, mappings)},
    {"sys_db_table", offsetof(struct db_copy_counts, tables)},
    {"sys_ws_operation", offsetof(struct db_copy_counts, resources)},
    {"sys_idempotency", offsetof(struct db_copy_counts, idempotency)},
};
#define N_SYS (sizeof(sys_tables) / sizeof(sys_tables[0]))

/* Whether @p name may be spliced into SQL as a quoted identifier. */
static bool plain_name(const char *name)
{
    if (!name || !*name || strlen(name) > 63)
        return false;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    }
    return true;
}

/* INSERT INTO "table" ("c1", ...) VALUES (?, ...) for the columns of @p src. */
static char *insert_sql(struct db_stmt *src, const char *table)
{
    int n = st_column_count(src);
    size_t cap = 64 + strlen(table) + (size_t)n * 72, len;
    char *sql = malloc(cap);

    if (!sql)
        return NULL;
    len = (size_t)snprintf(sql, cap, "INSERT INTO \"%s\" (", table);
    for (int i = 0; i < n; i++) {
        const char *c = st_column_name(src, i);

        if (!plain_name(c)) {
            free(sql);
            return NULL;
        }
        len += (size_t)snprintf(sql + len, cap - len, "%s\"%s\"", i ? ", " : "", c);
    }
    len += (size_t)snprintf(sql + len, cap - len, ") VALUES (");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(sql + len, cap - len, "%s?", i ? ", " : "");
    snprintf(sql + len, cap - len, ")");
    return sql;
}

/* Binds column @p i of the source row to parameter @p i + 1 of @p dst. */
static int bind_from(struct db_stmt *dst, struct db_stmt *src, int i)
{
    switch (st_column_type(src, i)) {
    case 1: return st_bind_int64(dst, i + 1, st_column_int64(src, i));
    case 2: return st_bind_double(dst, i + 1, st_column_double(src, i));
    case 4: {
        const void *b = st_column_blob(src, i);

        return st_bind_blob(dst, i + 1, b ? b : "", st_column_bytes(src, i));
    }
    case 5: return st_bind_null(dst, i + 1);
    default:
        return st_bind_text(dst, i + 1, (const char *)st_column_text(src, i),
                            st_column_bytes(src, i));
    }
}

/* Copies every row of @p table (read with @p select) into the same table of @p dst. */
static int copy_rows(struct db *src, struct db *dst, const char *table, const char *select,
                     int64_t *out_n, struct cg_err *err)
{
    struct db_stmt *s = core_prep(src, select, err), *d = NULL;
    char what[128];
    int rc = CG_OK, step;

    *out_n = 0;
    snprintf(what, sizeof(what), "copy %s", table);
    if (!s)
        return CG_EDB;
    while ((step = st_step(s)) == DB_ROW) {
        if (!d) {
            char *sql = insert_sql(s, table);

            if (!sql) {
                cg_err_set(err, "%s: a column name certgate does not write", what);
                rc = CG_EINVAL;
                break;
            }
            d = core_prep(dst, sql, err);
            free(sql);
            if (!d) {
                rc = CG_EDB;
                break;
            }
        }
        st_reset(d);
        st_clear_bindings(d);
        for (int i = 0; i < st_column_count(s) && rc == CG_OK; i++)
            rc = bind_from(d, s, i) ? CG_ENOMEM : CG_OK;
        if (rc == CG_OK)
            rc = core_step_done(dst, d, err, what);
        if (rc)
            break;
        (*out_n)++;
    }
    if (rc == CG_OK && step != DB_DONE)
        rc = core_fail(src, err, what);
    done(s);
    done(d);
    return rc;
}

/* The rows certgate keeps in the target: refused unless there are none. */
static int check_empty(struct db *dst, struct cg_err *err)
{
    char held[512] = "";
    size_t len = 0;

    for (size_t i = 0; i < N_SYS; i++) {
        char sql[96];
        int64_t n = 0;

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", sys_tables[i].name);
        if (core_one_int64(core_prep(dst, sql, err), &n))
            return core_fail(dst, err, "count the target's rows");
        if (n > 0 && len < sizeof(held) - 64)
            len += (size_t)snprintf(held + len, sizeof(held) - len, "%s%lld in %s", len ? ", " : "",
                                    (long long)n, sys_tables[i].name);
    }
    if (len) {
        cg_err_set(err,
                   "%s is not empty (%s): db copy copies into an empty database only, so that "
                   "nothing there is overwritten or mixed",
                   dst->label, held);
        return CG_EEXIST;
    }
    return CG_OK;
}

/* Copies the data tables: their tables, rows in insertion order, and the
 * insertion counter past the last row. */
static int copy_tables(struct dtable_db *src, struct dtable_db *dst, struct db_copy_counts *out,
                       struct cg_err *err)
{
    struct dtable_table *ts = NULL;
    size_t n = 0;
    int rc = dtable_table_list(src, &ts, &n, err);

    for (size_t i = 0; rc == CG_OK && i < n; i++) {
        char *ddl, sql[320];
        int64_t rows = 0;

        if (!dtable_valid_name(ts[i].name)) {
            cg_err_set(err, "copy: a data table named '%s' cannot be copied", ts[i].name);
            rc = CG_EINVAL;
            break;
        }
        ddl = table_ddl(true, ts[i].name, ts[i].cols, ts[i].n_cols);
        if (!ddl) {
            rc = CG_ENOMEM;
            break;
        }
        rc = core_exec(&dst->core, ddl, err);
        free(ddl);
        snprintf(sql, sizeof(sql), "SELECT rowid AS sys_rowid, * FROM \"%s\" ORDER BY rowid",
                 ts[i].name);
        if (rc == CG_OK)
            rc = copy_rows(&src->core, &dst->core, ts[i].name, sql, &rows, err);
        snprintf(sql, sizeof(sql),
                 "SELECT setval(pg_get_serial_sequence(?, 'sys_rowid'), "
                 "(SELECT coalesce(max(sys_rowid), 0) + 1 FROM \"%s\"), false)",
                 ts[i].name);
        if (rc == CG_OK) {
            struct db_stmt *st = core_prep(&dst->core, sql, err);

            rc = st ? CG_OK : CG_EDB;
            if (st) {
                st_bind_text(st, 1, ts[i].name, -1);
                rc = st_step(st) == DB_ROW ? CG_OK : core_fail(&dst->core, err, "set sys_rowid");
                done(st);
            }
        }
        out->rows += rows;
    }
    dtable_table_list_free(ts, n);
    return rc;
}

int db_copy(const char *from, const char *to, struct db_copy_counts *out, struct cg_err *err)
{
    struct store *s = NULL;
    struct dtable_db *src = NULL, *dst = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!from || core_is_pg(from)) {
        cg_err_set(err, "db copy copies an SQLite database: name it with --db PATH");
        return CG_EINVAL;
    }
    if (!core_is_pg(to)) {
        cg_err_set(err, "--to needs a PostgreSQL URI (postgresql://...), not '%s'", to ? to : "");
        return CG_EINVAL;
    }
    /* The source must be current; the target gets the schema if it has none. */
    rc = store_open(from, STORE_OPEN_READONLY, &s, err);
    store_close(s);
    s = NULL;
    if (rc == CG_OK)
        rc = store_open(to, STORE_OPEN_INIT, &s, err);
    store_close(s);
    if (rc == CG_OK)
        rc = dtable_open_reader(from, &src, err);
    if (rc == CG_OK)
        rc = dtable_open(to, &dst, err);
    if (rc == CG_OK)
        rc = core_read_begin(&src->core, err);
    if (rc == CG_OK)
        rc = core_begin(&dst->core, err); /* the writers' lock, then one transaction */
    if (rc == CG_OK)
        rc = check_empty(&dst->core, err);
    for (size_t i = 0; rc == CG_OK && i < N_SYS; i++) {
        char sql[96];
        int64_t *count = (int64_t *)((char *)out + sys_tables[i].count);

        snprintf(sql, sizeof(sql), "SELECT * FROM %s", sys_tables[i].name);
        rc = copy_rows(&src->core, &dst->core, sys_tables[i].name, sql, count, err);
    }
    if (rc == CG_OK)
        rc = copy_tables(src, dst, out, err);
    if (dst && dst->core.depth > 0)
        rc = core_end(&dst->core, rc, err);
    dtable_close(src);
    dtable_close(dst);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}
