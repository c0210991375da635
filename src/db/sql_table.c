#include "config.h"
#include "db/dtable.h"
#include "db/dtable_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What dtable_query_ex's loop stops on besides the drivers' codes. */
enum { DB_NOMEM = 7, DB_TOOBIG = 18 };

/* Most columns a data table may have. */
#define MAX_COLUMNS 64

/* A connection with @p flags, then @p pragmas. */
static int open_conn(const char *path, int flags, const char *pragmas, struct dtable_db **out_db,
                     struct cg_err *err)
{
    struct dtable_db *db = calloc(1, sizeof(*db));
    int rc;

    if (!db)
        return CG_ENOMEM;
    rc = core_connect(&db->core, path, flags, false, err);
    if (rc == CG_OK)
        rc = core_exec(&db->core, pragmas, err);
    if (rc) {
        dtable_close(db);
        return rc == CG_ENOMEM ? rc : CG_EDB;
    }
    *out_db = db;
    return CG_OK;
}

int dtable_open(const char *path, struct dtable_db **out_db, struct cg_err *err)
{
    /* PostgreSQL: pg_connect sets the session up (synchronous_commit on). */
    return open_conn(path, CORE_OPEN_READWRITE,
                     core_is_pg(path) ? "SELECT 1"
                                      : "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; "
                                        "PRAGMA synchronous = FULL",
                     out_db, err);
}

int dtable_open_reader(const char *path, struct dtable_db **out_db, struct cg_err *err)
{
    return open_conn(path, CORE_OPEN_READONLY,
                     core_is_pg(path) ? "SELECT 1" : "PRAGMA query_only = ON", out_db, err);
}

bool dtable_lost(struct dtable_db *db)
{
    return db && core_lost(&db->core);
}

void dtable_close(struct dtable_db *db)
{
    if (!db)
        return;
    core_disconnect(&db->core);
    free(db);
}

void dtable_set_deadline(struct dtable_db *db, int64_t deadline_ms)
{
    core_set_deadline(&db->core, deadline_ms);
}

int dtable_set_durable(struct dtable_db *db, bool durable, struct cg_err *err)
{
    if (db->core.kind == DB_PG)
        return core_exec(&db->core,
                         durable ? "SET synchronous_commit = on" : "SET synchronous_commit = off",
                         err);
    return core_exec(&db->core,
                     durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", err);
}

/* The script threads' snapshot: idempotent, as a script may read more than once. */
int dtable_read_begin(struct dtable_db *db, struct cg_err *err)
{
    if (db->core.depth > 0)
        return CG_OK;
    return core_read_begin(&db->core, err);
}

void dtable_read_end(struct dtable_db *db)
{
    core_rollback_all(&db->core); /* a snapshot has nothing to commit */
}

/* The committer's batch is the transaction, each request in it a savepoint:
 * both are levels of the core's one scheme. */
int dtable_begin(struct dtable_db *db, struct cg_err *err)
{
    return core_begin(&db->core, err);
}

int dtable_commit(struct dtable_db *db, struct cg_err *err)
{
    return core_commit(&db->core, err);
}

void dtable_rollback(struct dtable_db *db)
{
    core_rollback_all(&db->core);
}

int dtable_savepoint(struct dtable_db *db, struct cg_err *err)
{
    return core_begin(&db->core, err);
}

int dtable_release(struct dtable_db *db, struct cg_err *err)
{
    int rc;

    if (db->core.depth <= 1)
        return CG_OK;
    rc = core_commit(&db->core, err);
    if (rc)
        core_rollback(&db->core); /* the level ends either way */
    return rc;
}

void dtable_rollback_to(struct dtable_db *db)
{
    if (db->core.depth > 1)
        core_rollback(&db->core);
}

/* ---- tables ---- */

char *join_roles(char *const *roles, size_t n)
{
    size_t len = 1;
    char *s;

    for (size_t i = 0; i < n; i++)
        len += strlen(roles[i]) + 1;
    s = calloc(1, len);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, roles[i]);
    }
    return s;
}

int dtable_table_create(struct dtable_db *db, const char *name, const struct dtable_column *cols,
                        size_t n_cols, char *const *roles, size_t n_roles, struct cg_err *err)
{
    char *sql = NULL, *roles_text = NULL, *cols_text = NULL, now[21];
    json_t *cj = NULL;
    struct db_stmt *st;
    bool pg = db->core.kind == DB_PG;
    size_t cap;
    int rc;

    if (!dtable_valid_name(name)) {
        cg_err_set(err,
                   "invalid table name '%s': use a-z, 0-9 and _, starting with a letter, at "
                   "most 63 characters, not starting with sys_",
                   name);
        return CG_EINVAL;
    }
    if (n_cols == 0 || n_cols > MAX_COLUMNS) {
        cg_err_set(err, "a table needs 1 to %d columns", MAX_COLUMNS);
        return CG_EINVAL;
    }
    for (size_t i = 0; i < n_cols; i++) {
        if (!dtable_valid_name(cols[i].name)) {
            cg_err_set(err,
                       "invalid column name '%s': use a-z, 0-9 and _, starting with a "
                       "letter, not starting with sys_ (sys_id, sys_created_on and "
                       "sys_created_by are added for you)",
                       cols[i].name);
            return CG_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cols[i].name, cols[j].name) == 0) {
                cg_err_set(err, "column '%s' is listed twice", cols[i].name);
                return CG_EINVAL;
            }
        }
    }
    for (size_t i = 0; i < n_roles; i++) {
        if (!cg_valid_name(roles[i])) {
            cg_err_set(err, "invalid role name '%s'", roles[i]);
            return CG_EINVAL;
        }
    }
    /* Names are validated above, so quoting them is belt and braces. */
    cap = 256 + n_cols * 160;
    sql = malloc(cap);
    cj = json_array();
    if (!sql || !cj) {
        rc = CG_ENOMEM;
        goto out;
    }
    /* PostgreSQL has no rowid: sys_rowid keeps the insertion order. */
    snprintf(sql, cap,
             "CREATE TABLE \"%s\" (%ssys_id TEXT PRIMARY KEY NOT NULL, "
             "sys_created_on TEXT NOT NULL, sys_created_by TEXT NOT NULL",
             name, pg ? "sys_rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE, " : "");
    for (size_t i = 0; i < n_cols; i++) {
        const char *n = cols[i].name;
        size_t len = strlen(sql);

        switch (cols[i].type) {
        case DT_INTEGER:
            snprintf(sql + len, cap - len, ", \"%s\" %s", n, pg ? "BIGINT" : "INTEGER");
            break;
        case DT_REAL:
            snprintf(sql + len, cap - len, ", \"%s\" %s", n, pg ? "DOUBLE PRECISION" : "REAL");
            break;
        case DT_JSON:
            if (pg) {
                snprintf(sql + len, cap - len, ", \"%s\" JSONB", n);
                break;
            }
            snprintf(sql + len, cap - len,
                     ", \"%s\" TEXT CHECK (\"%s\" IS NULL OR json_valid(\"%s\"))", n, n, n);
            break;
        default: snprintf(sql + len, cap - len, ", \"%s\" TEXT", n); break;
        }
        json_array_append_new(
            cj, json_pack("{s:s, s:s}", "name", n, "type", dtable_type_name(cols[i].type)));
    }
    strncat(sql, pg ? ")" : ") STRICT", cap - strlen(sql) - 1);
    cols_text = json_dumps(cj, JSON_COMPACT);
    roles_text = join_roles(roles, n_roles);
    if (!cols_text || !roles_text) {
        rc = CG_ENOMEM;
        goto out;
    }
    rc = dtable_begin(db, err);
    if (rc)
        goto out;
    st = prep(db,
              pg ? "SELECT 1 FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                   "WHERE s.nspname = current_schema() AND lower(c.relname) = lower(?)"
                 : "SELECT 1 FROM sqlite_master WHERE lower(name) = lower(?)",
              err);
    if (!st) {
        rc = CG_EDB;
        goto fail;
    }
    st_bind_text(st, 1, name, -1);
    rc = st_step(st);
    done(st);
    if (rc == DB_ROW) {
        cg_err_set(err, "a table named '%s' already exists", name);
        rc = CG_EEXIST;
        goto fail;
    }
    rc = core_exec(&db->core, sql, err);
    if (rc)
        goto fail;
    st = prep(db,
              "INSERT INTO sys_db_table (id, name, columns, roles, created_on, updated_on) "
              "VALUES (" NEXT_ID("sys_db_table") ", ?, ?, ?, ?, ?)",
              err);
    if (!st) {
        rc = CG_EDB;
        goto fail;
    }
    cg_time_iso(cg_now(), now);
    st_bind_text(st, 1, name, -1);
    st_bind_text(st, 2, cols_text, -1);
    st_bind_text(st, 3, roles_text, -1);
    st_bind_text(st, 4, now, -1);
    st_bind_text(st, 5, now, -1);
    rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, "register table");
    done(st);
    if (rc)
        goto fail;
    rc = dtable_commit(db, err);
    if (rc == CG_OK)
        goto out;
fail:
    dtable_rollback(db);
out:
    json_decref(cj);
    free(cols_text);
    free(roles_text);
    free(sql);
    return rc;
}

/* One row into the struct dtable_table at @p rec (a core_read_fn). */
static int read_table(struct db_stmt *st, void *rec)
{
    struct dtable_table *t = rec;
    json_error_t jerr;
    json_t *cols, *c;
    const unsigned char *roles;
    size_t i;

    memset(t, 0, sizeof(*t));
    t->id = st_column_int64(st, 0);
    t->name = strdup((const char *)st_column_text(st, 1));
    cols = json_loads((const char *)st_column_text(st, 2), 0, &jerr);
    roles = st_column_text(st, 3);
    snprintf(t->created_on, sizeof(t->created_on), "%s", (const char *)st_column_text(st, 4));
    if (!t->name || !json_is_array(cols)) {
        json_decref(cols);
        dtable_table_free(t);
        return CG_EPARSE;
    }
    t->cols = calloc(json_array_size(cols) + 1, sizeof(*t->cols));
    if (!t->cols) {
        json_decref(cols);
        dtable_table_free(t);
        return CG_ENOMEM;
    }
    json_array_foreach(cols, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        const char *ty = json_string_value(json_object_get(c, "type"));
        int type = ty ? dtable_type_parse(ty) : -1;

        if (!n || type < 0)
            continue;
        snprintf(t->cols[t->n_cols].name, sizeof(t->cols[0].name), "%s", n);
        t->cols[t->n_cols++].type = (enum dtable_type)type;
    }
    json_decref(cols);
    if (cg_split_list(roles ? (const char *)roles : "", &t->roles, &t->n_roles)) {
        dtable_table_free(t);
        return CG_ENOMEM;
    }
    return CG_OK;
}

#define TABLE_COLS "id, name, columns, roles, created_on"

/* Tables whose registry row no longer parses are skipped, not fatal. */
static int read_table_row(struct db_stmt *st, void *rec)
{
    int rc = read_table(st, rec);

    if (rc == CG_EPARSE)
        memset(rec, 0, sizeof(struct dtable_table));
    return rc == CG_EPARSE ? CG_OK : rc;
}

static void free_table_row(void *rec)
{
    dtable_table_free(rec);
}

int dtable_table_list(struct dtable_db *db, struct dtable_table **out_tables, size_t *out_n,
                      struct cg_err *err)
{
    struct db_stmt *st = prep(db, "SELECT " TABLE_COLS " FROM sys_db_table ORDER BY name", err);
    struct dtable_table *ts;
    size_t n, kept = 0;
    int rc;

    *out_tables = NULL;
    *out_n = 0;
    rc = core_list(&db->core, st, sizeof(*ts), read_table_row, free_table_row, (void **)&ts, &n,
                   "list tables", err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (ts[i].name)
            ts[kept++] = ts[i];
    }
    *out_tables = ts;
    *out_n = kept;
    return CG_OK;
}

int dtable_table_get(struct dtable_db *db, const char *name, struct dtable_table *out_table,
                     struct cg_err *err)
{
    struct db_stmt *st = prep(db, "SELECT " TABLE_COLS " FROM sys_db_table WHERE name = ?", err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_text(st, 1, name, -1);
    rc = core_one(&db->core, st, read_table, out_table, "read table", err);
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no table named '%s'", name);
    return rc;
}

int dtable_table_count(struct dtable_db *db, const char *name, int64_t *out_n, struct cg_err *err)
{
    char sql[160];
    struct db_stmt *st;
    int rc = CG_OK;

    if (!dtable_valid_name(name))
        return CG_EINVAL;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", name);
    st = prep(db, sql, err);
    if (!st)
        return CG_EDB;
    if (st_step(st) == DB_ROW)
        *out_n = st_column_int64(st, 0);
    else
        rc = fail_db(db, err, "count");
    done(st);
    return rc;
}

int dtable_table_drop(struct dtable_db *db, const char *name, struct cg_err *err)
{
    struct dtable_table t;
    char sql[160];
    struct db_stmt *st;
    int rc;

    rc = dtable_table_get(db, name, &t, err);
    if (rc)
        return rc;
    dtable_table_free(&t);
    /* Cached statements may name the table: drop them first. */
    core_forget(&db->core, name);
    rc = dtable_begin(db, err);
    if (rc)
        return rc;
    snprintf(sql, sizeof(sql), "DROP TABLE \"%s\"", name);
    rc = core_exec(&db->core, sql, err);
    if (rc)
        goto fail;
    st = prep(db, "DELETE FROM sys_db_table WHERE name = ?", err);
    if (!st) {
        rc = CG_EDB;
        goto fail;
    }
    st_bind_text(st, 1, name, -1);
    rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, "unregister table");
    done(st);
    if (rc)
        goto fail;
    return dtable_commit(db, err);
fail:
    dtable_rollback(db);
    return rc;
}

/* ---- records ---- */

/* A growing SQL text; on allocation failure it stays marked failed. */
struct sql {
    char *s;    /* text */
    size_t len; /* used */
    size_t cap; /* allocated */
    bool bad;   /* an allocation failed */
};

static void sql_add(struct sql *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql_add(struct sql *q, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (q->bad)
        return;
    va_start(ap, fmt);
    n = vsnprintf(q->s ? q->s + q->len : NULL, q->s ? q->cap - q->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        q->bad = true;
        return;
    }
    if (!q->s || q->len + (size_t)n >= q->cap) {
        size_t cap = (q->len + (size_t)n + 1) * 2;
        char *s = realloc(q->s, cap);

        if (!s) {
            q->bad = true;
            return;
        }
        q->s = s;
        q->cap = cap;
        va_start(ap, fmt);
        vsnprintf(q->s + q->len, q->cap - q->len, fmt, ap);
        va_end(ap);
    }
    q->len += (size_t)n;
}

/* Prepares the built SQL (or fails with CG_ENOMEM when building failed). */
static struct db_stmt *sql_prep(struct dtable_db *db, struct sql *q, struct cg_err *err)
{
    struct db_stmt *st;

    if (q->bad || !q->s) {
        cg_err_set(err, "out of memory");
        free(q->s);
        return NULL;
    }
    st = prep(db, q->s, err);
    free(q->s);
    q->s = NULL;
    return st;
}

/* Binds a JSON value to a column, after check_value. */
static int bind_value(struct db_stmt *st, int i, const struct dtable_column *c, json_t *v)
{
    if (json_is_null(v))
        return st_bind_null(st, i) == 0 ? CG_OK : CG_EDB;
    switch (c->type) {
    case DT_TEXT:
        st_bind_text(st, i, json_string_value(v), (int)json_string_length(v));
        return CG_OK;
    case DT_INTEGER: st_bind_int64(st, i, json_integer_value(v)); return CG_OK;
    case DT_REAL: st_bind_double(st, i, json_number_value(v)); return CG_OK;
    case DT_JSON: {
        char *text = json_text(v);

        if (!text)
            return CG_ENOMEM;
        st_bind_text_take(st, i, text);
        return CG_OK;
    }
    }
    return CG_EINVAL;
}

int dtable_insert_row(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                      const char *created_on, const char *created_by, json_t *fields,
                      struct cg_err *err)
{
    struct sql q = {0};
    struct db_stmt *st;
    int rc;

    rc = dtable_check_record(t, fields, err);
    if (rc)
        return rc;
    sql_add(&q, "INSERT INTO \"%s\" (sys_id, sys_created_on, sys_created_by", t->name);
    for (size_t c = 0; c < t->n_cols; c++)
        sql_add(&q, ", \"%s\"", t->cols[c].name);
    sql_add(&q, ") VALUES (?, ?, ?");
    for (size_t c = 0; c < t->n_cols; c++)
        sql_add(&q, ", ?");
    sql_add(&q, ")");
    st = sql_prep(db, &q, err);
    if (!st)
        return CG_EDB;
    st_bind_text(st, 1, sys_id, -1);
    st_bind_text(st, 2, created_on, -1);
    st_bind_text(st, 3, created_by ? created_by : "", -1);
    for (size_t c = 0; c < t->n_cols; c++) {
        json_t *v = json_object_get(fields, t->cols[c].name);

        if (v && bind_value(st, (int)c + 4, &t->cols[c], v)) {
            done(st);
            return CG_ENOMEM;
        }
    }
    rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, "insert");
    done(st);
    return rc;
}

int dtable_insert(struct dtable_db *db, const struct dtable_table *t, json_t *fields,
                  const char *user, char out_sys_id[37], struct cg_err *err)
{
    char now[96];

    dtable_uuid(out_sys_id);
    cg_now_iso_ms(now);
    return dtable_insert_row(db, t, out_sys_id, now, user, fields, err);
}

int dtable_update(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t *fields, struct cg_err *err)
{
    struct sql q = {0};
    const char *key;
    struct db_stmt *st;
    json_t *v;
    int rc, i = 1;

    rc = dtable_check_record(t, fields, err);
    if (rc)
        return rc;
    if (json_object_size(fields) == 0) {
        /* Nothing to change, but the record must exist all the same. */
        sql_add(&q, "SELECT 1 FROM \"%s\" WHERE sys_id = ?", t->name);
    } else {
        sql_add(&q, "UPDATE \"%s\" SET ", t->name);
        json_object_foreach(fields, key, v)
        {
            sql_add(&q, "%s\"%s\" = ?", i > 1 ? ", " : "", key);
            i++;
        }
        sql_add(&q, " WHERE sys_id = ?");
    }
    st = sql_prep(db, &q, err);
    if (!st)
        return CG_EDB;
    i = 1;
    json_object_foreach(fields, key, v)
    {
        if (bind_value(st, i++, dtable_column(t, key), v)) {
            done(st);
            return CG_ENOMEM;
        }
    }
    st_bind_text(st, i, sys_id, -1);
    rc = st_step(st);
    if (json_object_size(fields) == 0)
        rc = rc == DB_ROW ? CG_OK : rc == DB_DONE ? CG_ENOTFOUND : fail_db(db, err, "read");
    else if (rc == DB_DONE)
        rc = core_changes(&db->core) == 0 ? CG_ENOTFOUND : CG_OK;
    else
        rc = fail_db(db, err, "update");
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no record %s in table '%s'", sys_id, t->name);
    done(st);
    return rc;
}

/* The record at the current row (after the rowid in column 0); *io_bytes
 * grows by its size. */
static json_t *row_json(struct db_stmt *st, const struct dtable_table *t, size_t *io_bytes)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    for (int k = 1; k <= 3; k++) {
        json_t *s =
            json_stringn((const char *)st_column_text(st, k), (size_t)st_column_bytes(st, k));

        json_object_set_new(o, sys_text_cols[k - 1].name, s ? s : json_null());
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        int col = (int)c + 4;
        json_t *v;

        *io_bytes += (size_t)st_column_bytes(st, col) + 16;
        if (st_column_null(st, col)) {
            v = json_null();
        } else if (t->cols[c].type == DT_INTEGER) {
            v = json_integer(st_column_int64(st, col));
        } else if (t->cols[c].type == DT_REAL) {
            v = json_real(st_column_double(st, col));
        } else if (t->cols[c].type == DT_JSON) {
            json_error_t jerr;

            v = json_loads((const char *)st_column_text(st, col), JSON_DECODE_ANY, &jerr);
            if (!v)
                v = json_null();
        } else {
            v = json_stringn((const char *)st_column_text(st, col),
                             (size_t)st_column_bytes(st, col));
            /* Text written by something other than certgate may not be UTF-8. */
            if (!v)
                v = json_null();
        }
        json_object_set_new(o, t->cols[c].name, v);
    }
    *io_bytes += 128;
    return o;
}

/* The column that keeps the insertion order. */
static const char *rowid_col(struct dtable_db *db)
{
    return db->core.kind == DB_PG ? "sys_rowid" : "rowid";
}

static void select_list(struct dtable_db *db, struct sql *q, const struct dtable_table *t)
{
    sql_add(q, "SELECT %s, sys_id, sys_created_on, sys_created_by", rowid_col(db));
    for (size_t c = 0; c < t->n_cols; c++)
        sql_add(q, ", \"%s\"", t->cols[c].name);
    sql_add(q, " FROM \"%s\"", t->name);
}

int dtable_get_ex(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t **out_record, int64_t *out_rowid, struct cg_err *err)
{
    struct sql q = {0};
    struct db_stmt *st;
    size_t bytes = 0;
    int rc;

    select_list(db, &q, t);
    sql_add(&q, " WHERE sys_id = ?");
    st = sql_prep(db, &q, err);
    if (!st)
        return CG_EDB;
    st_bind_text(st, 1, sys_id, -1);
    rc = st_step(st);
    if (rc == DB_ROW) {
        if (out_rowid)
            *out_rowid = st_column_int64(st, 0);
        *out_record = row_json(st, t, &bytes);
        rc = *out_record ? CG_OK : CG_ENOMEM;
    } else if (rc == DB_DONE) {
        cg_err_set(err, "no record %s in table '%s'", sys_id, t->name);
        rc = CG_ENOTFOUND;
    } else {
        rc = fail_db(db, err, "read");
    }
    done(st);
    return rc;
}

int dtable_get(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
               json_t **out_record, struct cg_err *err)
{
    return dtable_get_ex(db, t, sys_id, out_record, NULL, err);
}

int dtable_query_ex(struct dtable_db *db, const struct dtable_table *t, json_t *filter,
                    json_t *exclude, long limit, long offset, size_t max_bytes, json_t **out_array,
                    json_t **out_rowids, struct cg_err *err)
{
    struct sql q = {0};
    const char *key;
    struct db_stmt *st;
    json_t *v, *arr, *ids = NULL;
    size_t bytes = 0, i;
    int rc, n = 1;

    rc = dtable_check_filter(t, filter, err);
    if (rc)
        return rc;
    select_list(db, &q, t);
    json_object_foreach(filter, key, v)
    {
        sql_add(&q, "%s\"%s\" %s", n++ == 1 ? " WHERE " : " AND ", key,
                json_is_null(v) ? "IS NULL" : "= ?");
    }
    if (json_array_size(exclude) > 0) {
        sql_add(&q, "%s sys_id NOT IN (SELECT %s)", n == 1 ? " WHERE" : " AND",
                db->core.kind == DB_PG ? "jsonb_array_elements_text(CAST(? AS jsonb))"
                                       : "value FROM json_each(?)");
    }
    sql_add(&q, " ORDER BY %s LIMIT ? OFFSET ?", rowid_col(db));
    st = sql_prep(db, &q, err);
    if (!st)
        return CG_EDB;
    n = 1;
    json_object_foreach(filter, key, v)
    {
        if (json_is_null(v))
            continue;
        if (bind_value(st, n++, column(t, key, true), v)) {
            done(st);
            return CG_ENOMEM;
        }
    }
    if (json_array_size(exclude) > 0) {
        char *text = json_text(exclude);

        if (!text) {
            done(st);
            return CG_ENOMEM;
        }
        st_bind_text_take(st, n++, text);
    }
    st_bind_int64(st, n++, limit);
    st_bind_int64(st, n, offset < 0 ? 0 : offset);
    arr = json_array();
    if (out_rowids)
        ids = json_array();
    if (!arr || (out_rowids && !ids)) {
        rc = DB_NOMEM;
        goto out;
    }
    for (i = 0;; i++) {
        json_t *row;

        rc = st_step(st);
        if (rc != DB_ROW)
            break;
        row = row_json(st, t, &bytes);
        if (!row || json_array_append_new(arr, row)) {
            rc = DB_NOMEM;
            break;
        }
        if (ids)
            json_array_append_new(ids, json_integer(st_column_int64(st, 0)));
        if (max_bytes && bytes > max_bytes) {
            rc = DB_TOOBIG;
            break;
        }
    }
out:
    done(st);
    if (rc != DB_DONE) {
        json_decref(arr);
        json_decref(ids);
        if (rc == DB_TOOBIG) {
            cg_err_set(err,
                       "the %zu records read from '%s' are larger than %zu bytes: ask for fewer "
                       "at a time",
                       i + 1, t->name, max_bytes);
            return CG_EINVAL;
        }
        if (rc == DB_NOMEM) {
            cg_err_set(err, "out of memory");
            return CG_ENOMEM;
        }
        return fail_db(db, err, "query");
    }
    *out_array = arr;
    if (out_rowids)
        *out_rowids = ids;
    return CG_OK;
}

int dtable_query(struct dtable_db *db, const struct dtable_table *t, json_t *filter, long limit,
                 long offset, json_t **out_array, struct cg_err *err)
{
    if (limit <= 0)
        limit = 100;
    if (limit > DTABLE_MAX_LIMIT)
        limit = DTABLE_MAX_LIMIT;
    return dtable_query_ex(db, t, filter, NULL, limit, offset, 0, out_array, NULL, err);
}
