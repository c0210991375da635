#include "config.h"
#include "db/core.h"
#include "base/clock.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the connection ---- */

bool core_is_pg(const char *target)
{
    return target &&
           (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0);
}

const char *core_errmsg(struct db *db)
{
    if (db->kind == DB_PG)
        return db->errmsg[0] ? db->errmsg : "unknown error";
    return sqlite3_errmsg(db->conn);
}

int64_t core_changes(struct db *db)
{
    return db->kind == DB_PG ? db->changes : sqlite3_changes(db->conn);
}

bool core_lost(struct db *db)
{
    return db && db->kind == DB_PG && pg_lost(db);
}

int core_wait_notify(struct db *db, const char *channel, int timeout_ms, int wake_fd)
{
    if (db->kind != DB_PG)
        return CG_ENOTSUP;
    return pg_wait_notify(db, channel, timeout_ms, wake_fd);
}

int core_fail(struct db *db, struct cg_err *err, const char *what)
{
    cg_err_set(err, "%s: %s: %s", db->label, what, core_errmsg(db));
    return CG_EDB;
}

int core_exec(struct db *db, const char *sql, struct cg_err *err)
{
    char *msg = NULL;

    if (db->kind == DB_PG)
        return pg_exec(db, sql, err);
    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cg_err_set(err, "%s: %s", db->label, msg ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return CG_EDB;
    }
    return CG_OK;
}

static void stmt_free(struct db_stmt *st)
{
    if (!st)
        return;
    if (st->lite)
        sqlite3_finalize(st->lite);
    else
        pg_finalize(st);
    free(st);
}

/* A new statement for @p sql, or NULL with the driver's message in db. */
static struct db_stmt *stmt_new(struct db *db, const char *sql)
{
    struct db_stmt *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    st->db = db;
    st->row = -1;
    if (db->kind == DB_PG) {
        if (pg_prepare(st, sql) == CG_OK)
            return st;
    } else if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->lite, NULL) ==
               SQLITE_OK) {
        return st;
    }
    stmt_free(st);
    return NULL;
}

struct db_stmt *core_prep(struct db *db, const char *sql, struct cg_err *err)
{
    struct cached *slot = &db->cache[0];

    for (int i = 0; i < STMT_CACHE; i++) {
        struct cached *c = &db->cache[i];

        if (c->sql && strcmp(c->sql, sql) == 0) {
            c->used = ++db->tick;
            st_reset(c->st);
            st_clear_bindings(c->st);
            return c->st;
        }
        if (!c->sql || c->used < slot->used)
            slot = c;
    }
    if (slot->sql) {
        stmt_free(slot->st);
        free(slot->sql);
        slot->sql = NULL;
    }
    slot->st = stmt_new(db, sql);
    if (!slot->st) {
        core_fail(db, err, "prepare");
        return NULL;
    }
    slot->sql = strdup(sql);
    if (!slot->sql) {
        stmt_free(slot->st);
        slot->st = NULL;
        return NULL;
    }
    slot->used = ++db->tick;
    return slot->st;
}

void core_forget(struct db *db, const char *name)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        if (db->cache[i].sql && strstr(db->cache[i].sql, name)) {
            stmt_free(db->cache[i].st);
            free(db->cache[i].sql);
            db->cache[i].sql = NULL;
            db->cache[i].st = NULL;
        }
    }
}

int core_step_done(struct db *db, struct db_stmt *st, struct cg_err *err, const char *what)
{
    int rc = st_step(st);

    if (rc == DB_DONE)
        return CG_OK;
    if ((rc & 0xff) == DB_CONSTRAINT) {
        cg_err_set(err, "%s: %s", what, core_errmsg(db));
        return CG_EEXIST;
    }
    return core_fail(db, err, what);
}

int core_step_change(struct db *db, struct db_stmt *st, struct cg_err *err, const char *what)
{
    int rc = core_step_done(db, st, err, what);

    if (rc == CG_OK && core_changes(db) == 0)
        rc = CG_ENOTFOUND;
    done(st);
    return rc;
}

int64_t core_last_id(struct db *db)
{
    struct db_stmt *st;
    int64_t id = 0;

    if (db->kind != DB_PG)
        return sqlite3_last_insert_rowid(db->conn);
    st = core_prep(db, "SELECT lastval()", NULL);
    if (st && st_step(st) == DB_ROW)
        id = st_column_int64(st, 0);
    done(st);
    return id;
}

int core_step_insert(struct db *db, struct db_stmt *st, int64_t *out_id, struct cg_err *err,
                     const char *what)
{
    int64_t id = 0;
    int rc = st_step(st);

    /* INSERT ... RETURNING id answers the id as a row; without it the
     * driver's last id is the row's. */
    if (rc == DB_ROW) {
        id = st_column_int64(st, 0);
        rc = st_step(st);
    } else if (rc == DB_DONE) {
        id = -1;
    }
    if (rc == DB_DONE)
        rc = CG_OK;
    else if ((rc & 0xff) == DB_CONSTRAINT) {
        cg_err_set(err, "%s: %s", what, core_errmsg(db));
        rc = CG_EEXIST;
    } else
        rc = core_fail(db, err, what);
    done(st);
    if (rc == CG_OK)
        *out_id = id >= 0 ? id : core_last_id(db);
    return rc;
}

/* SQLite's progress handler: a non-zero return interrupts the statement. */
static int over_deadline(void *arg)
{
    struct db *db = arg;

    return db->deadline_ms && clock_ms() > db->deadline_ms;
}

void core_set_deadline(struct db *db, int64_t deadline_ms)
{
    if (db->deadline_ms != deadline_ms)
        db->timeout_dirty = true; /* PostgreSQL: statement_timeout at the next statement */
    db->deadline_ms = deadline_ms;
}

int core_connect(struct db *db, const char *path, int flags, bool label_path, struct cg_err *err)
{
    size_t len;

    if (core_is_pg(path)) {
        db->kind = DB_PG;
        return pg_connect(db, path, (flags & SQLITE_OPEN_READONLY) != 0, err);
    }
    len = strlen("database ") + strlen(path) + 1;
    db->kind = DB_SQLITE;
    db->label = malloc(len);
    if (!db->label)
        return CG_ENOMEM;
    if (label_path)
        snprintf(db->label, len, "database %s", path);
    else
        snprintf(db->label, len, "database");
    if (sqlite3_open_v2(path, &db->conn, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        cg_err_set(err, "cannot open database %s: %s", path,
                   db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        return CG_EDB;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, 5000);
    sqlite3_progress_handler(db->conn, 10000, over_deadline, db);
    return CG_OK;
}

void core_disconnect(struct db *db)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        stmt_free(db->cache[i].st);
        free(db->cache[i].sql);
    }
    if (db->kind == DB_PG)
        pg_disconnect(db);
    else
        sqlite3_close(db->conn);
    free(db->label);
    memset(db, 0, sizeof(*db));
}

/* ---- statements ---- */

int st_bind_text(struct db_stmt *st, int i, const char *v, int len)
{
    if (!v)
        return st_bind_null(st, i);
    if (st->lite)
        return sqlite3_bind_text(st->lite, i, v, len, SQLITE_TRANSIENT);
    return pg_bind(st, i, v, len < 0 ? (int)strlen(v) : len, 0, false);
}

int st_bind_text_take(struct db_stmt *st, int i, char *v)
{
    int rc;

    if (st->lite)
        return sqlite3_bind_text(st->lite, i, v, -1, free);
    rc = st_bind_text(st, i, v, -1);
    free(v);
    return rc;
}

int st_bind_int64(struct db_stmt *st, int i, int64_t v)
{
    char text[24];

    if (st->lite)
        return sqlite3_bind_int64(st->lite, i, v);
    snprintf(text, sizeof(text), "%lld", (long long)v);
    return pg_bind(st, i, text, (int)strlen(text), 20 /* int8 */, false);
}

int st_bind_int(struct db_stmt *st, int i, int v)
{
    return st_bind_int64(st, i, v);
}

int st_bind_double(struct db_stmt *st, int i, double v)
{
    char text[40];

    if (st->lite)
        return sqlite3_bind_double(st->lite, i, v);
    snprintf(text, sizeof(text), "%.17g", v);
    return pg_bind(st, i, text, (int)strlen(text), 701 /* float8 */, false);
}

int st_bind_null(struct db_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_bind_null(st->lite, i);
    return pg_bind(st, i, NULL, 0, 0, false);
}

int st_bind_blob(struct db_stmt *st, int i, const void *v, int len)
{
    if (st->lite)
        return sqlite3_bind_blob(st->lite, i, v, len, SQLITE_TRANSIENT);
    return pg_bind(st, i, v, len, 17 /* bytea */, true);
}

int st_step(struct db_stmt *st)
{
    if (!st)
        return DB_ERROR;
    return st->lite ? sqlite3_step(st->lite) : pg_step(st);
}

const unsigned char *st_column_text(struct db_stmt *st, int i)
{
    return st->lite ? sqlite3_column_text(st->lite, i) : (const unsigned char *)pg_value(st, i);
}

int64_t st_column_int64(struct db_stmt *st, int i)
{
    const char *v;

    if (st->lite)
        return sqlite3_column_int64(st->lite, i);
    v = pg_value(st, i);
    if (!v)
        return 0;
    if (v[0] == 't' && !v[1])
        return 1; /* a boolean expression */
    return strtoll(v, NULL, 10);
}

int st_column_int(struct db_stmt *st, int i)
{
    return (int)st_column_int64(st, i);
}

double st_column_double(struct db_stmt *st, int i)
{
    const char *v;

    if (st->lite)
        return sqlite3_column_double(st->lite, i);
    v = pg_value(st, i);
    return v ? strtod(v, NULL) : 0.0;
}

const void *st_column_blob(struct db_stmt *st, int i)
{
    return st->lite ? sqlite3_column_blob(st->lite, i) : pg_blob(st, i);
}

int st_column_bytes(struct db_stmt *st, int i)
{
    return st->lite ? sqlite3_column_bytes(st->lite, i) : pg_length(st, i);
}

bool st_column_null(struct db_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_column_type(st->lite, i) == SQLITE_NULL;
    return pg_value(st, i) == NULL;
}

int st_column_count(struct db_stmt *st)
{
    return st->lite ? sqlite3_column_count(st->lite) : pg_column_count(st);
}

const char *st_column_name(struct db_stmt *st, int i)
{
    return st->lite ? sqlite3_column_name(st->lite, i) : pg_column_name(st, i);
}

int st_column_type(struct db_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_column_type(st->lite, i);
    return pg_value(st, i) ? SQLITE_TEXT : SQLITE_NULL;
}

void st_reset(struct db_stmt *st)
{
    if (st->lite)
        sqlite3_reset(st->lite);
    else
        pg_reset(st);
}

void st_clear_bindings(struct db_stmt *st)
{
    if (st->lite)
        sqlite3_clear_bindings(st->lite);
    else
        pg_clear(st);
}

/* ---- transactions ---- */

/* Whether a transaction is open on the connection. */
static bool in_transaction(struct db *db)
{
    return db->kind == DB_PG ? pg_in_transaction(db) : !sqlite3_get_autocommit(db->conn);
}

int core_begin(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth == 0 && db->kind == DB_PG) {
        /* Every writer of the database takes the same lock first: writes
         * are serialised across nodes as SQLite serialises them on one. */
        rc = core_exec(db, "BEGIN ISOLATION LEVEL READ COMMITTED", err);
        if (rc == CG_OK) {
            rc = core_exec(db, "SELECT pg_advisory_xact_lock(7156812903)", err);
            if (rc)
                core_exec(db, "ROLLBACK", NULL);
        }
    } else if (db->depth == 0) {
        rc = core_exec(db, "BEGIN IMMEDIATE", err);
    } else {
        snprintf(sql, sizeof(sql), "SAVEPOINT cg_%d", db->depth);
        rc = core_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int core_read_begin(struct db *db, struct cg_err *err)
{
    int rc;

    if (db->depth != 0) {
        cg_err_set(err, "a read transaction cannot nest in another transaction");
        return CG_EDB;
    }
    /* SQLite DEFERRED: the snapshot is taken at the first read and holds
     * until the end, however another connection writes meanwhile (WAL).
     * PostgreSQL: REPEATABLE READ gives the same. */
    rc = core_exec(db,
                   db->kind == DB_PG ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                     : "BEGIN DEFERRED",
                   err);
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int core_commit(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth <= 0) {
        cg_err_set(err, "commit without a transaction");
        return CG_EDB;
    }
    if (db->depth == 1)
        rc = core_exec(db, "COMMIT", err);
    else {
        snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT cg_%d", db->depth - 1);
        rc = core_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth--;
    if (db->depth == 0)
        db->timeout_in_tx = false;
    return rc;
}

void core_rollback(struct db *db)
{
    char sql[80];

    if (db->depth <= 0)
        return;
    if (db->depth == 1) {
        if (in_transaction(db))
            core_exec(db, "ROLLBACK", NULL);
    } else {
        snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT cg_%d; RELEASE SAVEPOINT cg_%d",
                 db->depth - 1, db->depth - 1);
        core_exec(db, sql, NULL);
    }
    db->depth--;
    /* A rollback also undoes a SET of statement_timeout. */
    if (db->timeout_in_tx)
        db->timeout_dirty = true;
    if (db->depth == 0)
        db->timeout_in_tx = false;
}

void core_rollback_all(struct db *db)
{
    if (in_transaction(db))
        core_exec(db, "ROLLBACK", NULL);
    db->depth = 0;
    if (db->timeout_in_tx)
        db->timeout_dirty = true;
    db->timeout_in_tx = false;
}

int core_end(struct db *db, int rc, struct cg_err *err)
{
    if (rc == CG_OK)
        rc = core_commit(db, err);
    if (rc)
        core_rollback(db);
    return rc;
}

/* ---- helpers ---- */

int core_collect(struct db_stmt *st, size_t size, core_read_fn read, core_free_fn free_one,
                 void **out_rows, size_t *out_n)
{
    unsigned char *rows = NULL;
    size_t n = 0;
    int rc;

    *out_rows = NULL;
    *out_n = 0;
    for (;;) {
        unsigned char *grown;

        rc = st_step(st);
        if (rc != DB_ROW)
            break;
        grown = realloc(rows, (n + 1) * size);
        if (!grown) {
            rc = CG_ENOMEM;
            goto fail;
        }
        rows = grown;
        rc = read(st, rows + n * size);
        if (rc)
            goto fail;
        n++;
    }
    if (rc != DB_DONE) {
        rc = CG_EDB;
        goto fail;
    }
    *out_rows = rows;
    *out_n = n;
    return CG_OK;
fail:
    for (size_t i = 0; i < n; i++)
        free_one(rows + i * size);
    free(rows);
    return rc;
}

int core_one(struct db *db, struct db_stmt *st, core_read_fn read, void *record, const char *what,
             struct cg_err *err)
{
    int rc = st_step(st);

    if (rc == DB_ROW)
        rc = read(st, record);
    else if (rc == DB_DONE)
        rc = CG_ENOTFOUND;
    else
        rc = core_fail(db, err, what);
    done(st);
    return rc;
}

int core_one_int64(struct db_stmt *st, int64_t *out)
{
    int rc = CG_EDB;

    if (!st)
        return CG_EDB;
    if (st_step(st) == DB_ROW) {
        *out = st_column_int64(st, 0);
        rc = CG_OK;
    }
    done(st);
    return rc;
}

int core_list(struct db *db, struct db_stmt *st, size_t size, core_read_fn read,
              core_free_fn free_one, void **out_rows, size_t *out_n, const char *what,
              struct cg_err *err)
{
    int rc;

    *out_rows = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = core_collect(st, size, read, free_one, out_rows, out_n);
    if (rc == CG_EDB)
        core_fail(db, err, what);
    done(st);
    return rc;
}

char *col_str(struct db_stmt *st, int i)
{
    const unsigned char *t = st_column_text(st, i);

    return t ? strdup((const char *)t) : NULL;
}

void col_buf(struct db_stmt *st, int i, char *buf, size_t size)
{
    const unsigned char *t = st_column_text(st, i);

    snprintf(buf, size, "%s", t ? (const char *)t : "");
}

unsigned char *col_blob(struct db_stmt *st, int i, size_t *out_len)
{
    const void *b = st_column_blob(st, i);
    int n = st_column_bytes(st, i);
    unsigned char *copy;

    *out_len = 0;
    if (!b || n <= 0)
        return NULL;
    copy = malloc((size_t)n);
    if (!copy)
        return NULL;
    memcpy(copy, b, (size_t)n);
    *out_len = (size_t)n;
    return copy;
}

void now_iso(char out[static 21])
{
    cg_time_iso(cg_now(), out);
}

int bind_text(struct db_stmt *st, int i, const char *v)
{
    return st_bind_text(st, i, v, -1);
}
