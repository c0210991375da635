/*
 * pg: the PostgreSQL driver of the storage core (core.h). A connection is a
 * libpq connection opened from a URI (postgresql://...); a statement keeps
 * its text with $N placeholders and its bound values, and runs with
 * PQexecParams when first stepped (values as text, blobs as binary bytea,
 * every result in text). A lost connection is reset at the next statement
 * outside a transaction, at most once a second, so that a node recovers by
 * itself when the server comes back. The statement deadline is the
 * session's statement_timeout. Relies on libpq.
 */
#include "config.h"
#include "db/core.h"
#include "base/clock.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Waits between reconnection attempts, milliseconds. */
#define RESET_EVERY_MS 1000

/* ---- messages ---- */

char *pg_redact(const char *uri)
{
    const char *auth = strstr(uri, "://"), *end, *at, *colon, *pw;
    char *out = strdup(uri);

    if (!out || !auth)
        return out;
    auth += 3;
    end = auth + strcspn(auth, "/?");
    at = memchr(auth, '@', (size_t)(end - auth));
    colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
        /* user:secret@host -> user@host */
        size_t keep = (size_t)(colon - uri);

        memmove(out + keep, out + (at - uri), strlen(at) + 1);
    }
    /* ...?password=secret&... -> password=*** */
    pw = strstr(out, "password=");
    if (pw) {
        char *p = out + (pw - out) + 9;
        size_t n = strcspn(p, "&");

        memmove(p + 3, p + n, strlen(p + n) + 1);
        memcpy(p, "***", 3);
    }
    return out;
}

/* Copies libpq's message into db->errmsg on one line. */
static void keep_msg(struct db *db, const char *msg)
{
    size_t n;

    snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg && *msg ? msg : "unknown error");
    for (char *p = db->errmsg; *p; p++) {
        if ((*p == '\n' && p[1]) || *p == '\t')
            *p = ' ';
    }
    n = strlen(db->errmsg);
    while (n > 0 && (db->errmsg[n - 1] == '\n' || db->errmsg[n - 1] == ' '))
        db->errmsg[--n] = '\0';
}

/* The message of a failed result: its primary message, else the connection's. */
static void keep_result_msg(struct db *db, PGresult *res)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (PQstatus(db->pg) != CONNECTION_OK)
        keep_msg(db, "the connection to the server was lost (it reconnects by itself)");
    else
        keep_msg(db, m ? m : PQerrorMessage(db->pg));
}

/* Replaces each copy of @p secret (@p n bytes) in @p msg with "***". */
static void scrub(char *msg, const char *secret, size_t n)
{
    char *from = msg, *p;

    if (n == 0)
        return;
    while ((p = memmem(from, strlen(from), secret, n)) != NULL) {
        memmove(p + 3, p + n, strlen(p + n) + 1);
        memcpy(p, "***", 3);
        from = p + 3;
    }
}

/* Hides, in @p msg (of db->errmsg's size), the password of @p uri: libpq's
 * message about a URI it cannot parse quotes the URI. */
static void hide_password(char *msg, const char *uri)
{
    const char *auth = strstr(uri, "://"), *end, *at, *colon, *pw;

    if (auth) {
        auth += 3;
        end = auth + strcspn(auth, "/?");
        at = memchr(auth, '@', (size_t)(end - auth));
        colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon)
            scrub(msg, colon + 1, (size_t)(at - colon - 1));
    }
    pw = strstr(uri, "password=");
    if (pw)
        scrub(msg, pw + 9, strcspn(pw + 9, "&"));
}

/* ---- the connection ---- */

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* LISTEN on @p channel (an identifier of ours: not quoted). */
static bool listen_on(struct db *db, const char *channel)
{
    char sql[96];
    PGresult *res;
    bool ok;

    snprintf(sql, sizeof(sql), "LISTEN %s", channel);
    res = PQexec(db->pg, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        keep_result_msg(db, res);
    PQclear(res);
    return ok;
}

/* The session's settings, after every (re)connection. */
static int setup(struct db *db)
{
    PGresult *res;
    bool ok;

    PQsetNoticeProcessor(db->pg, quiet, NULL);
    res = PQexec(db->pg, db->pg_reader ? "SET synchronous_commit = on; SET lock_timeout = 5000; "
                                         "SET default_transaction_read_only = on"
                                       : "SET synchronous_commit = on; SET lock_timeout = 5000");
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        keep_result_msg(db, res);
    PQclear(res);
    if (ok && db->listen)
        ok = listen_on(db, db->listen);
    db->timeout_dirty = db->deadline_ms != 0;
    return ok ? CG_OK : CG_EDB;
}

int pg_connect(struct db *db, const char *uri, bool read_only, struct cg_err *err)
{
    /* connect_timeout before dbname: a value in the URI wins. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"5", "certgate", uri, NULL};
    char *shown = pg_redact(uri);
    size_t len;

    if (!shown)
        return CG_ENOMEM;
    len = strlen(shown) + 16;
    db->label = malloc(len);
    if (!db->label) {
        free(shown);
        return CG_ENOMEM;
    }
    snprintf(db->label, len, "database %s", shown);
    db->pg_reader = read_only;
    db->pg = PQconnectdbParams(keys, vals, 1);
    if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
        keep_msg(db, db->pg ? PQerrorMessage(db->pg) : "out of memory");
        hide_password(db->errmsg, uri);
        cg_err_set(err, "cannot open database %s: %s", shown, db->errmsg);
        free(shown);
        return CG_EDB;
    }
    free(shown);
    if (setup(db)) {
        cg_err_set(err, "%s: %s", db->label, db->errmsg);
        return CG_EDB;
    }
    return CG_OK;
}

void pg_disconnect(struct db *db)
{
    if (db->pg)
        PQfinish(db->pg);
    db->pg = NULL;
}

bool pg_lost(struct db *db)
{
    return !db->pg || PQstatus(db->pg) != CONNECTION_OK;
}

bool pg_in_transaction(struct db *db)
{
    PGTransactionStatusType t = db->pg ? PQtransactionStatus(db->pg) : PQTRANS_UNKNOWN;

    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* Whether the connection can take a statement now, reconnecting a lost one
 * outside a transaction (inside one, the transaction is gone: it fails). */
static bool ready(struct db *db)
{
    int64_t now;

    if (!db->pg)
        return false;
    if (PQstatus(db->pg) == CONNECTION_OK)
        return true;
    now = clock_ms();
    if (db->depth > 0 || now < db->next_reset_ms) {
        keep_msg(db, "the connection to the server is lost (it reconnects by itself)");
        return false;
    }
    db->next_reset_ms = now + RESET_EVERY_MS;
    PQreset(db->pg);
    if (PQstatus(db->pg) != CONNECTION_OK) {
        keep_msg(db, PQerrorMessage(db->pg));
        return false;
    }
    return setup(db) == CG_OK;
}

/* Takes the announcements libpq has read; whether there was one. */
static bool drain_notifies(struct db *db)
{
    PGnotify *n;
    bool any = false;

    while ((n = PQnotifies(db->pg)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

int pg_wait_notify(struct db *db, const char *channel, int timeout_ms, int wake_fd)
{
    struct pollfd fds[2];
    int n;

    if (!ready(db))
        return CG_EDB;
    if (!db->listen) {
        if (!listen_on(db, channel))
            return CG_EDB;
        db->listen = channel;
    }
    if (drain_notifies(db))
        return 1;
    fds[0] = (struct pollfd){.fd = PQsocket(db->pg), .events = POLLIN};
    fds[1] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
    n = poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (n <= 0 || !fds[0].revents)
        return 0; /* timeout, EINTR, or woken */
    if (!PQconsumeInput(db->pg)) {
        keep_msg(db, "the connection to the server was lost (it reconnects by itself)");
        return CG_EDB;
    }
    return drain_notifies(db) ? 1 : 0;
}

/* Sets statement_timeout to what the deadline leaves (0: none). */
static bool apply_timeout(struct db *db)
{
    char ms[24];
    const char *vals[1] = {ms};
    int64_t left = db->deadline_ms ? db->deadline_ms - clock_ms() : 0;
    PGresult *res;
    bool ok;

    if (db->deadline_ms && left < 1)
        left = 1;
    snprintf(ms, sizeof(ms), "%lld", (long long)left);
    res = PQexecParams(db->pg, "SELECT set_config('statement_timeout', $1, false)", 1, NULL, vals,
                       NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        keep_result_msg(db, res);
    PQclear(res);
    db->timeout_dirty = false;
    if (db->depth > 0)
        db->timeout_in_tx = true;
    return ok;
}

int pg_exec(struct db *db, const char *sql, struct cg_err *err)
{
    PGresult *res;
    ExecStatusType status;
    int rc = CG_OK;

    if (!ready(db)) {
        cg_err_set(err, "%s: %s", db->label, db->errmsg);
        return CG_EDB;
    }
    /* A deadline bounds a script's statements, never the end of a transaction. */
    if (db->deadline_ms == 0 && db->timeout_dirty && strncmp(sql, "ROLLBACK", 8) != 0 &&
        !apply_timeout(db)) {
        cg_err_set(err, "%s: %s", db->label, db->errmsg);
        return CG_EDB;
    }
    res = PQexec(db->pg, sql);
    status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        keep_result_msg(db, res);
        rc = CG_EDB;
    } else if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        /* A transaction in which a statement failed ends in a rollback. */
        keep_msg(db, "the transaction was rolled back: a statement in it had failed");
        rc = CG_EDB;
    }
    PQclear(res);
    if (rc)
        cg_err_set(err, "%s: %s", db->label, db->errmsg);
    return rc;
}

/* ---- statements ---- */

int pg_prepare(struct db_stmt *st, const char *sql)
{
    size_t len = strlen(sql);
    char *out = malloc(len * 3 + 1), *o = out;
    int max = 0;

    if (!out)
        return CG_ENOMEM;
    /* SQLite's placeholders, ? and ?N, become $N; quoted text stays. */
    for (const char *p = sql; *p;) {
        if (*p == '\'' || *p == '"') {
            char q = *p;

            *o++ = *p++;
            while (*p && *p != q)
                *o++ = *p++;
            if (*p)
                *o++ = *p++;
        } else if (*p == '?') {
            int n;

            p++;
            if (*p >= '0' && *p <= '9') {
                n = (int)strtol(p, (char **)&p, 10);
            } else {
                n = max + 1;
            }
            if (n > max)
                max = n;
            o += sprintf(o, "$%d", n);
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    st->pg_sql = out;
    st->n_params = max;
    if (max > 0) {
        st->vals = calloc((size_t)max, sizeof(*st->vals));
        st->lens = calloc((size_t)max, sizeof(*st->lens));
        st->fmts = calloc((size_t)max, sizeof(*st->fmts));
        st->types = calloc((size_t)max, sizeof(*st->types));
        if (!st->vals || !st->lens || !st->fmts || !st->types)
            return CG_ENOMEM;
    }
    return CG_OK;
}

int pg_bind(struct db_stmt *st, int i, const char *v, int len, unsigned type, bool binary)
{
    char *copy = NULL;

    if (i < 1 || i > st->n_params)
        return 25; /* SQLite's SQLITE_RANGE */
    if (v) {
        copy = malloc((size_t)len + 1);
        if (!copy)
            return 7; /* SQLITE_NOMEM */
        memcpy(copy, v, (size_t)len);
        copy[len] = '\0';
    }
    free(st->vals[i - 1]);
    st->vals[i - 1] = copy;
    st->lens[i - 1] = len;
    st->fmts[i - 1] = binary ? 1 : 0;
    st->types[i - 1] = type;
    return 0;
}

/* Frees the current row's decoded blobs. */
static void drop_blobs(struct db_stmt *st)
{
    if (!st->blobs || !st->res)
        return;
    for (int c = 0; c < PQnfields(st->res); c++) {
        if (st->blobs[c])
            PQfreemem(st->blobs[c]);
        st->blobs[c] = NULL;
    }
}

int pg_step(struct db_stmt *st)
{
    struct db *db = st->db;
    ExecStatusType status;

    if (st->row == -2)
        return DB_DONE; /* ran already, changed rows, or failed */
    if (!st->res) {
        const char *sqlstate;

        if (!ready(db) || (db->timeout_dirty && !apply_timeout(db))) {
            st->row = -2;
            return DB_ERROR;
        }
        st->res = PQexecParams(db->pg, st->pg_sql, st->n_params, st->types,
                               (const char *const *)st->vals, st->lens, st->fmts, 0);
        status = PQresultStatus(st->res);
        if (status == PGRES_COMMAND_OK) {
            db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
            st->row = -2;
            return DB_DONE;
        }
        if (status != PGRES_TUPLES_OK) {
            keep_result_msg(db, st->res);
            sqlstate = PQresultErrorField(st->res, PG_DIAG_SQLSTATE);
            PQclear(st->res);
            st->res = NULL;
            st->row = -2;
            return sqlstate && strncmp(sqlstate, "23", 2) == 0 ? DB_CONSTRAINT : DB_ERROR;
        }
        db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
        st->row = -1;
        free(st->blobs);
        free(st->blob_lens);
        st->blobs = calloc((size_t)PQnfields(st->res) + 1, sizeof(*st->blobs));
        st->blob_lens = calloc((size_t)PQnfields(st->res) + 1, sizeof(*st->blob_lens));
        if (!st->blobs || !st->blob_lens) {
            keep_msg(db, "out of memory");
            return DB_ERROR;
        }
    }
    drop_blobs(st);
    if (st->row + 1 < PQntuples(st->res)) {
        st->row++;
        return DB_ROW;
    }
    return DB_DONE;
}

const char *pg_value(struct db_stmt *st, int i)
{
    if (!st->res || st->row < 0 || i < 0 || i >= PQnfields(st->res) ||
        PQgetisnull(st->res, st->row, i))
        return NULL;
    return PQgetvalue(st->res, st->row, i);
}

int pg_length(struct db_stmt *st, int i)
{
    if (!pg_value(st, i))
        return 0;
    if (st->blobs && st->blobs[i])
        return (int)st->blob_lens[i];
    return PQgetlength(st->res, st->row, i);
}

const void *pg_blob(struct db_stmt *st, int i)
{
    const char *v = pg_value(st, i);

    if (!v || !st->blobs)
        return NULL;
    if (!st->blobs[i])
        st->blobs[i] = PQunescapeBytea((const unsigned char *)v, &st->blob_lens[i]);
    return st->blobs[i];
}

int pg_column_count(struct db_stmt *st)
{
    return st->res ? PQnfields(st->res) : 0;
}

const char *pg_column_name(struct db_stmt *st, int i)
{
    return st->res ? PQfname(st->res, i) : NULL;
}

void pg_reset(struct db_stmt *st)
{
    drop_blobs(st);
    PQclear(st->res);
    st->res = NULL;
    st->row = -1;
}

void pg_clear(struct db_stmt *st)
{
    for (int i = 0; i < st->n_params; i++) {
        free(st->vals[i]);
        st->vals[i] = NULL;
        st->types[i] = 0;
        st->fmts[i] = 0;
        st->lens[i] = 0;
    }
}

void pg_finalize(struct db_stmt *st)
{
    pg_reset(st);
    if (st->vals)
        pg_clear(st);
    free(st->vals);
    free(st->lens);
    free(st->fmts);
    free(st->types);
    free(st->blobs);
    free(st->blob_lens);
    free(st->pg_sql);
}
