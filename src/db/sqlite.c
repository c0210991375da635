#include "config.h"
#include "db/sqlite.h"
#include "base/clock.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the connection ---- */

int sqlite_fail(struct db *db, struct cg_err *err, const char *what)
{
    cg_err_set(err, "%s: %s: %s", db->label, what, sqlite3_errmsg(db->conn));
    return CG_EDB;
}

int sqlite_exec(struct db *db, const char *sql, struct cg_err *err)
{
    char *msg = NULL;

    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cg_err_set(err, "%s: %s", db->label, msg ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return CG_EDB;
    }
    return CG_OK;
}

sqlite3_stmt *sqlite_prep(struct db *db, const char *sql, struct cg_err *err)
{
    struct cached *slot = &db->cache[0];

    for (int i = 0; i < STMT_CACHE; i++) {
        struct cached *c = &db->cache[i];

        if (c->sql && strcmp(c->sql, sql) == 0) {
            c->used = ++db->tick;
            sqlite3_reset(c->st);
            sqlite3_clear_bindings(c->st);
            return c->st;
        }
        if (!c->sql || c->used < slot->used)
            slot = c;
    }
    if (slot->sql) {
        sqlite3_finalize(slot->st);
        free(slot->sql);
        slot->sql = NULL;
    }
    if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &slot->st, NULL) !=
        SQLITE_OK) {
        sqlite_fail(db, err, "prepare");
        slot->st = NULL;
        return NULL;
    }
    slot->sql = strdup(sql);
    if (!slot->sql) {
        sqlite3_finalize(slot->st);
        slot->st = NULL;
        return NULL;
    }
    slot->used = ++db->tick;
    return slot->st;
}

void sqlite_forget(struct db *db, const char *name)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        if (db->cache[i].sql && strstr(db->cache[i].sql, name)) {
            sqlite3_finalize(db->cache[i].st);
            free(db->cache[i].sql);
            db->cache[i].sql = NULL;
            db->cache[i].st = NULL;
        }
    }
}

int sqlite_step_done(struct db *db, sqlite3_stmt *st, struct cg_err *err, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_DONE)
        return CG_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        cg_err_set(err, "%s: %s", what, sqlite3_errmsg(db->conn));
        return CG_EEXIST;
    }
    return sqlite_fail(db, err, what);
}

int sqlite_step_change(struct db *db, sqlite3_stmt *st, struct cg_err *err, const char *what)
{
    int rc = sqlite_step_done(db, st, err, what);

    if (rc == CG_OK && sqlite3_changes(db->conn) == 0)
        rc = CG_ENOTFOUND;
    done(st);
    return rc;
}

int sqlite_step_insert(struct db *db, sqlite3_stmt *st, int64_t *out_id, struct cg_err *err,
                       const char *what)
{
    int rc = sqlite_step_done(db, st, err, what);

    if (rc == CG_OK)
        *out_id = sqlite3_last_insert_rowid(db->conn);
    done(st);
    return rc;
}

/* SQLite's progress handler: a non-zero return interrupts the statement. */
static int over_deadline(void *arg)
{
    struct db *db = arg;

    return db->deadline_ms && clock_ms() > db->deadline_ms;
}

void sqlite_set_deadline(struct db *db, int64_t deadline_ms)
{
    db->deadline_ms = deadline_ms;
}

int sqlite_connect(struct db *db, const char *path, int flags, bool label_path, struct cg_err *err)
{
    size_t len = strlen("database ") + strlen(path) + 1;

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

void sqlite_disconnect(struct db *db)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(db->cache[i].st);
        free(db->cache[i].sql);
    }
    sqlite3_close(db->conn);
    free(db->label);
    memset(db, 0, sizeof(*db));
}

/* ---- transactions ---- */

int sqlite_begin(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth == 0)
        rc = sqlite_exec(db, "BEGIN IMMEDIATE", err);
    else {
        snprintf(sql, sizeof(sql), "SAVEPOINT cg_%d", db->depth);
        rc = sqlite_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int sqlite_read_begin(struct db *db, struct cg_err *err)
{
    int rc;

    if (db->depth != 0) {
        cg_err_set(err, "a read transaction cannot nest in another transaction");
        return CG_EDB;
    }
    /* DEFERRED: the snapshot is taken at the first read and holds until
     * the end, however another connection writes meanwhile (WAL). */
    rc = sqlite_exec(db, "BEGIN DEFERRED", err);
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int sqlite_commit(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth <= 0) {
        cg_err_set(err, "commit without a transaction");
        return CG_EDB;
    }
    if (db->depth == 1)
        rc = sqlite_exec(db, "COMMIT", err);
    else {
        snprintf(sql, sizeof(sql), "RELEASE cg_%d", db->depth - 1);
        rc = sqlite_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth--;
    return rc;
}

void sqlite_rollback(struct db *db)
{
    char sql[80];

    if (db->depth <= 0)
        return;
    if (db->depth == 1) {
        if (!sqlite3_get_autocommit(db->conn))
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    } else {
        snprintf(sql, sizeof(sql), "ROLLBACK TO cg_%d; RELEASE cg_%d", db->depth - 1,
                 db->depth - 1);
        sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
    }
    db->depth--;
}

void sqlite_rollback_all(struct db *db)
{
    if (!sqlite3_get_autocommit(db->conn))
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    db->depth = 0;
}

int sqlite_end(struct db *db, int rc, struct cg_err *err)
{
    if (rc == CG_OK)
        rc = sqlite_commit(db, err);
    if (rc)
        sqlite_rollback(db);
    return rc;
}

/* ---- helpers ---- */

int sqlite_collect(sqlite3_stmt *st, size_t size, sqlite_read_fn read, sqlite_free_fn free_one,
                   void **out_rows, size_t *out_n)
{
    unsigned char *rows = NULL;
    size_t n = 0;
    int rc;

    *out_rows = NULL;
    *out_n = 0;
    for (;;) {
        unsigned char *grown;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
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
    if (rc != SQLITE_DONE) {
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

int sqlite_one(struct db *db, sqlite3_stmt *st, sqlite_read_fn read, void *record, const char *what,
               struct cg_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        rc = read(st, record);
    else if (rc == SQLITE_DONE)
        rc = CG_ENOTFOUND;
    else
        rc = sqlite_fail(db, err, what);
    done(st);
    return rc;
}

int sqlite_one_int64(sqlite3_stmt *st, int64_t *out)
{
    int rc = CG_EDB;

    if (!st)
        return CG_EDB;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = CG_OK;
    }
    done(st);
    return rc;
}

int sqlite_list(struct db *db, sqlite3_stmt *st, size_t size, sqlite_read_fn read,
                sqlite_free_fn free_one, void **out_rows, size_t *out_n, const char *what,
                struct cg_err *err)
{
    int rc;

    *out_rows = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = sqlite_collect(st, size, read, free_one, out_rows, out_n);
    if (rc == CG_EDB)
        sqlite_fail(db, err, what);
    done(st);
    return rc;
}

char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    return t ? strdup((const char *)t) : NULL;
}

void col_buf(sqlite3_stmt *st, int i, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    snprintf(buf, size, "%s", t ? (const char *)t : "");
}

unsigned char *col_blob(sqlite3_stmt *st, int i, size_t *out_len)
{
    const void *b = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
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

int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}
