#include "config.h"
#include "engine/writer.h"
#include "base/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"
#include "engine/catalog.h"
#include "engine/engine_int.h"
#include "engine/wset.h"

/* Most requests committed in one transaction. */
#define MAX_BATCH 256
/* An Idempotency-Key is remembered this long. */
#define IDEM_SECONDS (24 * 3600)
/* How often an idle committer looks for changed resources. */
#define POLL_MS 200
/* Optimistic runs of one request before it runs on the committer. */
#define MAX_OPTIMISTIC 2

/* Most script threads. */
#define MAX_THREADS 64

/* Largest Table API list answer. */
#define TABLE_API_MAX_BYTES (32u * 1024 * 1024)

/* ---- answers ---- */

static char *error_text(const char *message, const char *detail)
{
    json_t *o = json_pack("{s:{s:s, s:s}, s:s}", "error", "message", message, "detail",
                          detail ? detail : "", "status", "failure");
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(o);
    return t;
}

static void set_error(struct writer_job *job, int status, const char *message, const char *detail)
{
    free(job->body);
    json_decref(job->headers);
    job->headers = NULL;
    job->status = status;
    job->body = error_text(message, detail);
}

static void set_internal(struct writer_job *job, const char *why)
{
    set_error(job, 500, "Internal server error", job->request_id);
    snprintf(job->log_detail, sizeof(job->log_detail), "%s", why);
}

/* Clears what a run produced, for another run. */
static void reset_run(struct writer_job *job)
{
    wset_free(job->ws);
    job->ws = NULL;
    free(job->body);
    job->body = NULL;
    json_decref(job->headers);
    job->headers = NULL;
    job->status = 0;
    job->replayed = false;
    job->retry = false;
    job->log_detail[0] = '\0';
}

/* Answers the request: its completion callback, once. */
static void finish(struct writer *w, struct writer_job *job)
{
    wset_free(job->ws);
    job->ws = NULL;
    writer_catalog_release(job->cat);
    job->cat = NULL;
    __atomic_add_fetch(&w->jobs, 1, __ATOMIC_RELAXED);
    job->done(job);
}

/* Answers from a stored response, or refuses a key reused for another request. */
static void replay(struct writer_job *job, struct dtable_idem *st)
{
    /* A row stored before the hash covered the query string (no "v2:")
     * cannot tell this request from another: refused, never replayed. */
    if (strcmp(st->request_sha256, job->request_sha256) != 0) {
        char when[21], detail[600];

        cg_time_iso(st->created_at, when);
        if (strncmp(st->request_sha256, "v2:", 3) != 0)
            snprintf(detail, sizeof(detail),
                     "the Idempotency-Key '%.200s' was used at %s by an older certgate that did "
                     "not record the whole request (%s %.200s): send a new key",
                     job->idem_key, when, st->method, st->path);
        else
            snprintf(detail, sizeof(detail),
                     "the Idempotency-Key '%.200s' was used at %s for a different request (%s "
                     "%.200s, or another body): send a new key with a new request",
                     job->idem_key, when, st->method, st->path);
        set_error(job, 422, "Idempotency-Key reused", detail);
        return;
    }
    free(job->body);
    json_decref(job->headers);
    job->status = st->status;
    job->body = st->body;
    job->headers = st->headers;
    st->body = NULL;
    st->headers = NULL;
    job->replayed = true;
}

/* ---- database access for scripts ---- */

/* What the script callbacks work on. */
struct op_ctx {
    struct writer *w;       /* the writer */
    struct writer_job *job; /* the request */
    struct dtable_db *db;   /* script thread: its read connection; serial: the write one */
    bool direct;            /* serial run: read and write the transaction itself */
};

static const struct dtable_table *script_table(struct op_ctx *o, const char *table, char *err,
                                               size_t errlen)
{
    const struct dtable_table *t = find_table(o->job->cat, table);

    if (!t)
        snprintf(err, errlen, "no table named '%s'", table);
    return t;
}

static int op_fail(int rc, const struct cg_err *e, char *err, size_t errlen)
{
    if (rc)
        snprintf(err, errlen, "%s", e->msg[0] ? e->msg : cg_strerror(rc));
    return rc;
}

/* Opens the run's snapshot before its first read. */
static int snapshot(struct op_ctx *o, struct cg_err *e)
{
    struct writer_wset *ws = o->job->ws;

    if (o->direct || ws->snapshot)
        return CG_OK;
    o->job->snap_seq = __atomic_load_n(&o->w->seq, __ATOMIC_ACQUIRE);
    if (dtable_read_begin(o->db, e))
        return CG_EDB;
    ws->snapshot = true;
    return CG_OK;
}

/* A serial run's write, recorded for the commits that follow. */
static int log_write(struct writer *w, const struct dtable_table *t, const char *sys_id,
                     json_t *before, json_t *after)
{
    return lbatch_add(w->pending, t, sys_id, before, after);
}

static int op_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
                     size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};
    char now[96];
    json_t *row;
    struct wop *op;
    int rc;

    if (!t)
        return CG_EINVAL;
    rc = dtable_check_record(t, fields, &e);
    if (rc)
        return op_fail(rc, &e, err, errlen);
    dtable_uuid(out_id);
    cg_now_iso_ms(now);
    row = dtable_new_row(t, out_id, now, o->job->user_name, fields);
    if (!row)
        return op_fail(CG_ENOMEM, &e, err, errlen);
    if (o->direct) {
        rc = dtable_insert_row(o->db, t, out_id, now, o->job->user_name, fields, &e);
        if (rc == CG_OK)
            return op_fail(log_write(o->w, t, out_id, NULL, row), &e, err, errlen);
        json_decref(row);
        return op_fail(rc, &e, err, errlen);
    }
    op = wset_add_op(o->job->ws);
    if (!op) {
        json_decref(row);
        return op_fail(CG_ENOMEM, &e, err, errlen);
    }
    op->insert = true;
    op->t = t;
    snprintf(op->sys_id, sizeof(op->sys_id), "%s", out_id);
    op->fields = json_incref(fields);
    op->row = row;
    return CG_OK;
}

static int op_update(void *ctx, const char *table, const char *sys_id, json_t *fields, char *err,
                     size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};
    json_t *row = NULL;
    struct wop *op;
    int64_t rowid = 0;
    int rc;

    if (!t)
        return CG_EINVAL;
    rc = dtable_check_record(t, fields, &e);
    if (rc)
        return op_fail(rc, &e, err, errlen);
    if (o->direct) {
        json_t *after;

        rc = dtable_get(o->db, t, sys_id, &row, &e);
        if (rc == CG_OK)
            rc = dtable_update(o->db, t, sys_id, fields, &e);
        if (rc) {
            json_decref(row);
            return op_fail(rc, &e, err, errlen);
        }
        after = json_deep_copy(row);
        if (!after || dtable_merge_fields(t, after, fields)) {
            json_decref(row);
            json_decref(after);
            return op_fail(CG_ENOMEM, &e, err, errlen);
        }
        return op_fail(log_write(o->w, t, sys_id, row, after), &e, err, errlen);
    }
    op = wset_find(o->job->ws, t, sys_id);
    if (op) {
        /* A record this request wrote already: fold the change in. */
        if (json_object_update(op->fields, fields) || dtable_merge_fields(t, op->row, fields))
            return op_fail(CG_ENOMEM, &e, err, errlen);
        return CG_OK;
    }
    rc = snapshot(o, &e);
    if (rc == CG_OK)
        rc = wset_add_read(o->job->ws, t, sys_id, NULL);
    if (rc == CG_OK)
        rc = dtable_get_ex(o->db, t, sys_id, &row, &rowid, &e);
    if (rc == CG_OK && dtable_merge_fields(t, row, fields))
        rc = CG_ENOMEM;
    if (rc == CG_OK) {
        op = wset_add_op(o->job->ws);
        if (!op)
            rc = CG_ENOMEM;
    }
    if (rc) {
        json_decref(row);
        return op_fail(rc, &e, err, errlen);
    }
    op->t = t;
    snprintf(op->sys_id, sizeof(op->sys_id), "%s", sys_id);
    op->fields = json_deep_copy(fields);
    op->row = row;
    op->rowid = rowid;
    return op->fields ? CG_OK : op_fail(CG_ENOMEM, &e, err, errlen);
}

static int op_get(void *ctx, const char *table, const char *sys_id, json_t **out, char *err,
                  size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};
    struct wop *op;
    int rc;

    if (!t)
        return CG_EINVAL;
    if (o->direct)
        return op_fail(dtable_get(o->db, t, sys_id, out, &e), &e, err, errlen);
    rc = snapshot(o, &e);
    if (rc == CG_OK)
        rc = wset_add_read(o->job->ws, t, sys_id, NULL);
    if (rc)
        return op_fail(rc, &e, err, errlen);
    op = wset_find(o->job->ws, t, sys_id);
    if (op) {
        *out = json_deep_copy(op->row);
        return *out ? CG_OK : op_fail(CG_ENOMEM, &e, err, errlen);
    }
    return op_fail(dtable_get(o->db, t, sys_id, out, &e), &e, err, errlen);
}

/* One record of a merged query answer. */
struct merged {
    int64_t rowid; /* order; INT64_MAX for this request's inserts */
    size_t order;  /* ties: the order they came in */
    json_t *row;   /* the record (borrowed) */
};

static int merged_cmp(const void *a, const void *b)
{
    const struct merged *x = a, *y = b;

    if (x->rowid != y->rowid)
        return x->rowid < y->rowid ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * A query that sees the snapshot and this request's own writes: the
 * snapshot's records (those this request updated left out), the updated
 * ones if they still match, then the inserted ones that match, in
 * insertion order, then offset and limit.
 */
static int query_merged(struct op_ctx *o, const struct dtable_table *t, json_t *filter, long limit,
                        long offset, json_t **out, struct cg_err *e)
{
    struct writer_wset *ws = o->job->ws;
    json_t *exclude = json_array(), *base = NULL, *ids = NULL, *res = NULL;
    struct merged *m = NULL;
    size_t n = 0, k = 0;
    int rc = CG_ENOMEM;

    if (!exclude)
        goto out;
    for (size_t i = 0; i < ws->n_ops; i++) {
        if (ws->ops[i].t == t && !ws->ops[i].insert)
            json_array_append_new(exclude, json_string(ws->ops[i].sys_id));
    }
    rc = dtable_query_ex(o->db, t, filter, exclude, offset + limit, 0, o->w->limits.memory, &base,
                         &ids, e);
    if (rc)
        goto out;
    rc = CG_ENOMEM;
    m = calloc(json_array_size(base) + ws->n_ops + 1, sizeof(*m));
    if (!m)
        goto out;
    for (size_t i = 0; i < json_array_size(base); i++, n++) {
        m[n].rowid = json_integer_value(json_array_get(ids, i));
        m[n].order = n;
        m[n].row = json_array_get(base, i);
    }
    for (size_t i = 0; i < ws->n_ops; i++) {
        struct wop *op = &ws->ops[i];

        if (op->t != t || !dtable_row_matches(t, op->row, filter))
            continue;
        m[n].rowid = op->insert ? INT64_MAX : op->rowid;
        m[n].order = n;
        m[n].row = op->row;
        n++;
    }
    qsort(m, n, sizeof(*m), merged_cmp);
    res = json_array();
    if (!res)
        goto out;
    for (size_t i = (size_t)offset; i < n && k < (size_t)limit; i++, k++) {
        json_t *copy = json_deep_copy(m[i].row);

        if (!copy || json_array_append_new(res, copy))
            goto out;
    }
    *out = res;
    res = NULL;
    rc = CG_OK;
out:
    if (rc == CG_ENOMEM)
        cg_err_set(e, "out of memory");
    free(m);
    json_decref(res);
    json_decref(base);
    json_decref(ids);
    json_decref(exclude);
    return rc;
}

static int op_query(void *ctx, const char *table, json_t *filter, long limit, long offset,
                    json_t **out, char *err, size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};
    bool own = false;
    int rc;

    if (!t)
        return CG_EINVAL;
    rc = dtable_check_filter(t, filter, &e);
    if (rc)
        return op_fail(rc, &e, err, errlen);
    if (limit <= 0)
        limit = 100;
    if (limit > DTABLE_MAX_LIMIT)
        limit = DTABLE_MAX_LIMIT;
    if (offset < 0)
        offset = 0;
    if (offset > INT32_MAX)
        offset = INT32_MAX;
    if (o->direct)
        return op_fail(dtable_query_ex(o->db, t, filter, NULL, limit, offset, o->w->limits.memory,
                                       out, NULL, &e),
                       &e, err, errlen);
    rc = snapshot(o, &e);
    if (rc == CG_OK)
        rc = wset_add_read(o->job->ws, t, NULL, filter);
    if (rc)
        return op_fail(rc, &e, err, errlen);
    for (size_t i = 0; i < o->job->ws->n_ops && !own; i++)
        own = o->job->ws->ops[i].t == t;
    if (own)
        rc = query_merged(o, t, filter, limit, offset, out, &e);
    else
        rc = dtable_query_ex(o->db, t, filter, NULL, limit, offset, o->w->limits.memory, out, NULL,
                             &e);
    return op_fail(rc, &e, err, errlen);
}

static void op_log(void *ctx, const char *message)
{
    struct op_ctx *o = ctx;
    json_t *line = json_pack("{s:s, s:s}", "request_id", o->job->request_id, "message", message);

    if (line && o->job->attempts > 1)
        json_object_set_new(line, "attempt", json_integer(o->job->attempts));
    log_event("script_log", line);
}

/* ---- running a request ---- */

/* The script's result into the job. */
static void take_result(struct writer_job *job, struct script_result *res)
{
    switch (res->outcome) {
    case SCRIPT_OK:
        job->status = res->status;
        job->body =
            res->body ? json_dumps(res->body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
                      : NULL;
        job->headers = json_incref(res->headers);
        if (res->body && !job->body)
            set_internal(job, "out of memory encoding the response");
        break;
    case SCRIPT_FAILED:
        set_error(job, res->status, res->message, res->detail);
        snprintf(job->log_detail, sizeof(job->log_detail), "certgate.fail: %s", res->message);
        break;
    case SCRIPT_LIMIT_TIME:
        metrics_script_error();
        set_error(job, 503, "Service unavailable", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res->log_detail);
        break;
    default:
        metrics_script_error();
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res->log_detail);
        break;
    }
}

static void run_script(struct writer *w, struct script_vm *vm, struct op_ctx *ctx)
{
    struct writer_job *job = ctx->job;
    const struct dtable_resource *r = job->resource;
    struct script_db_ops ops = {ctx, op_insert, op_get, op_query, op_update, op_log};
    struct script_result res;
    char key[96];
    int rc;

    if (!script_json_fits(job->req.body)) {
        char detail[120];

        snprintf(detail, sizeof(detail), "the body is nested more than %d levels deep",
                 SCRIPT_MAX_DEPTH);
        set_error(job, 400, "Invalid request", detail);
        return;
    }
    /* The compiled chunk is kept per script text, so a changed script
     * always runs as it is now. */
    snprintf(key, sizeof(key), "%lld:%s", (long long)r->id, r->script_sha256);
    dtable_set_deadline(ctx->db, clock_ms() + w->limits.wall_ms);
    rc = script_run(vm, key, r->script, r->script_name, &job->req, &ops, &res);
    dtable_set_deadline(ctx->db, 0);
    if (rc) {
        set_internal(job, "script VM failure");
        return;
    }
    take_result(job, &res);
    script_result_free(&res);
}

/* The Table API's operations, on the script thread (or the committer). */
static void run_table(struct op_ctx *ctx)
{
    struct writer_job *job = ctx->job;
    const struct dtable_table *t = find_table(job->cat, job->table);
    struct cg_err err = {""};
    json_t *out = NULL, *wrap;
    int rc;

    if (!t) {
        set_error(job, 404, "Requested URI does not represent any resource", job->table);
        return;
    }
    if (job->op == WRITER_TABLE_INSERT) {
        char id[37], msg[400] = "";

        rc = op_insert(ctx, t->name, job->req.body, id, msg, sizeof(msg));
        if (rc == CG_EINVAL) {
            set_error(job, 400, "Invalid request", msg);
            return;
        }
        if (rc == CG_OK) {
            struct wop *op = ctx->direct ? NULL : wset_find(job->ws, t, id);

            if (op)
                out = json_deep_copy(op->row);
            else
                rc = dtable_get(ctx->db, t, id, &out, &err);
        }
        if (rc == CG_OK && !out)
            rc = CG_ENOMEM;
        if (rc) {
            json_decref(out);
            set_internal(job, msg[0] ? msg : err.msg);
            return;
        }
        job->status = 201;
    } else {
        rc = snapshot(ctx, &err);
        if (rc == CG_OK && job->op == WRITER_TABLE_GET)
            rc = dtable_get(ctx->db, t, job->sys_id, &out, &err);
        else if (rc == CG_OK)
            rc = dtable_query_ex(ctx->db, t, job->filter, NULL, job->limit, job->offset,
                                 TABLE_API_MAX_BYTES, &out, NULL, &err);
        if (rc == CG_ENOTFOUND) {
            set_error(job, 404, "No Record found",
                      "the record does not exist or you may not read it");
            return;
        }
        if (rc == CG_EINVAL) {
            set_error(job, 400, "Invalid request", err.msg);
            return;
        }
        if (rc) {
            set_internal(job, err.msg);
            return;
        }
        job->status = 200;
    }
    wrap = json_pack("{s:o}", "result", out);
    job->body = wrap ? json_dumps(wrap, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(wrap);
    if (!job->body)
        set_internal(job, "out of memory encoding the answer");
}

/* Whether the job's outcome is kept: a 2xx answer. */
static bool succeeded(const struct writer_job *job)
{
    return job->status >= 200 && job->status < 300;
}

/* ---- the committer ---- */

static void submit_locked(struct writer *w, struct writer_job *job)
{
    job->next = NULL;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->wake);
}

/* Back to the script threads (at the front: it waited already), or, once
 * they have stopped or the request conflicted too often, to the committer. */
static void requeue(struct writer *w, struct writer_job *job)
{
    reset_run(job);
    pthread_mutex_lock(&w->lock);
    if (job->attempts >= MAX_OPTIMISTIC || w->exec_stopping) {
        job->serial = true;
        w->serial++;
        submit_locked(w, job);
    } else {
        job->next = w->xhead;
        w->xhead = job;
        if (!w->xtail)
            w->xtail = job;
        pthread_cond_signal(&w->exec_wake);
    }
    pthread_mutex_unlock(&w->lock);
}

/* Applies a run's collected writes inside the job's savepoint, and records
 * them for the conflict checks of the requests that follow. */
static int apply(struct writer *w, struct writer_job *job, struct cg_err *err)
{
    struct writer_wset *ws = job->ws;

    for (size_t i = 0; ws && i < ws->n_ops; i++) {
        struct wop *op = &ws->ops[i];
        json_t *before = NULL, *after = NULL;
        int rc;

        if (op->insert) {
            rc = dtable_insert_row(w->db, op->t, op->sys_id,
                                   json_string_value(json_object_get(op->row, "sys_created_on")),
                                   json_string_value(json_object_get(op->row, "sys_created_by")),
                                   op->fields, err);
            if (rc == CG_OK)
                after = json_incref(op->row);
        } else {
            /* The record as stored now (a request before this one may have
             * changed other columns of it), then this request's change. */
            rc = dtable_get(w->db, op->t, op->sys_id, &before, err);
            if (rc == CG_OK)
                rc = dtable_update(w->db, op->t, op->sys_id, op->fields, err);
            if (rc == CG_OK) {
                after = json_deep_copy(before);
                if (after && dtable_merge_fields(op->t, after, op->fields)) {
                    json_decref(after);
                    after = NULL;
                }
            }
        }
        if (rc == CG_OK)
            rc = after ? lbatch_add(w->pending, op->t, op->sys_id, before, after) : CG_ENOMEM;
        else
            json_decref(before);
        if (rc)
            return rc;
    }
    return CG_OK;
}

/* Stores the job's answer under its Idempotency-Key; CG_EEXIST when
 * another request with that key committed first. */
static int store_idem(struct writer *w, struct writer_job *job, int64_t now, struct cg_err *err)
{
    struct dtable_idem st = {0};

    st.status = job->status;
    st.body = job->body;
    st.headers = job->headers;
    snprintf(st.request_sha256, sizeof(st.request_sha256), "%s", job->request_sha256);
    snprintf(st.method, sizeof(st.method), "%s", job->method);
    st.path = job->target;
    st.created_at = now - IDEM_SECONDS;
    return dtable_idem_put(w->db, job->user_name, job->idem_key, &st, now, err);
}

/* Answers a job whose key another request stored meanwhile. */
static void replay_committed(struct writer *w, struct writer_job *job, int64_t now)
{
    struct dtable_idem st;
    struct cg_err err = {""};

    reset_run(job);
    if (dtable_idem_get(w->db, job->user_name, job->idem_key, now - IDEM_SECONDS, &st, &err)) {
        set_internal(job, "idempotent response vanished");
        return;
    }
    replay(job, &st);
    dtable_idem_free(&st);
}

/* A serial run on the committer: the script reads and writes the
 * transaction directly, after every request before it in the batch. */
static void run_serial(struct writer *w, struct writer_job *job, int64_t now)
{
    struct op_ctx ctx = {w, job, w->db, true};

    if (job->idem_key) {
        struct dtable_idem st;
        struct cg_err err = {""};

        if (dtable_idem_get(w->db, job->user_name, job->idem_key, now - IDEM_SECONDS, &st, &err) ==
            CG_OK) {
            replay(job, &st);
            dtable_idem_free(&st);
            return;
        }
    }
    if (job->op == WRITER_SCRIPT)
        run_script(w, w->vm, &ctx);
    else
        run_table(&ctx);
}

/* One job of a batch, in its own savepoint: its writes stay only if it
 * succeeded. */
static void commit_job(struct writer *w, struct writer_job *job, int64_t now)
{
    struct cg_err err = {""};
    size_t mark = w->pending->n;
    int rc;

    if (dtable_savepoint(w->db, &err)) {
        set_internal(job, err.msg);
        return;
    }
    if (job->serial) {
        run_serial(w, job, now);
        if (!succeeded(job) || job->replayed) {
            dtable_rollback_to(w->db);
            lbatch_truncate(w->pending, mark);
            return;
        }
    } else if (conflicts(w, job)) {
        dtable_rollback_to(w->db);
        job->retry = true;
        w->conflicts++;
        return;
    } else {
        rc = apply(w, job, &err);
        if (rc) {
            dtable_rollback_to(w->db);
            lbatch_truncate(w->pending, mark);
            set_internal(job, err.msg);
            return;
        }
    }
    if (job->idem_key) {
        rc = store_idem(w, job, now, &err);
        if (rc) {
            dtable_rollback_to(w->db);
            lbatch_truncate(w->pending, mark);
            if (rc == CG_EEXIST)
                replay_committed(w, job, now);
            else
                set_internal(job, err.msg);
            return;
        }
    }
    if (dtable_release(w->db, &err)) {
        lbatch_truncate(w->pending, mark);
        set_internal(job, err.msg);
    }
}

static void run_batch(struct writer *w, struct writer_job *batch)
{
    struct cg_err err = {""};
    int64_t now = cg_now();
    bool ok;

    w->pending = calloc(1, sizeof(*w->pending));
    ok = w->pending && dtable_begin(w->db, &err) == CG_OK;
    for (struct writer_job *j = batch; j; j = j->next) {
        if (ok)
            commit_job(w, j, now);
        else
            set_error(j, 503, "Service unavailable", "the database is busy: retry");
    }
    if (ok) {
        int64_t t0 = clock_us();
        int rc = dtable_commit(w->db, &err);

        metrics_commit((uint64_t)(clock_us() - t0));
        if (rc) {
            /* Nothing of this batch is on disk: no request may report success. */
            dtable_rollback(w->db);
            lbatch_truncate(w->pending, 0);
            for (struct writer_job *j = batch; j; j = j->next) {
                if (!j->retry && j->status < 400) {
                    char why[512];

                    snprintf(why, sizeof(why), "commit failed: %.400s", err.msg);
                    set_internal(j, why);
                }
            }
        } else {
            /* The number is published after the commit: a snapshot taken
             * after reading it sees at least this batch. */
            w->pending->seq = __atomic_add_fetch(&w->seq, 1, __ATOMIC_ACQ_REL);
            w->pending->when_ms = clock_ms();
            log_push(w, w->pending);
            w->pending = NULL;
        }
    }
    lbatch_free(w->pending);
    w->pending = NULL;
    w->commits++;
    while (batch) {
        struct writer_job *next = batch->next;

        batch->next = NULL;
        if (batch->retry)
            requeue(w, batch);
        else
            finish(w, batch);
        batch = next;
    }
}

/* Work an idle committer does now and then. */
static void housekeeping(struct writer *w)
{
    struct cg_err err = {""};
    int64_t now = cg_now();

    refresh(w, &err);
    catalog_reclaim(w);
    log_prune(w);
    if (now - w->last_purge >= 600) {
        w->last_purge = now;
        if (dtable_idem_purge(w->db, now - IDEM_SECONDS, &err))
            log_event("writer_error", json_pack("{s:s}", "detail", err.msg));
    }
}

static void *committer(void *arg)
{
    struct writer *w = arg;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        struct writer_job *batch = NULL, **tail = &batch;
        struct cg_err err = {""};
        int n = 0;

        while (!w->head && !w->stopping) {
            struct timespec until;

            clock_deadline(&until, POLL_MS);
            if (pthread_cond_timedwait(&w->wake, &w->lock, &until) != 0 && !w->head) {
                pthread_mutex_unlock(&w->lock);
                housekeeping(w);
                pthread_mutex_lock(&w->lock);
            }
        }
        if (!w->head && w->stopping)
            break;
        while (w->head && n < MAX_BATCH) {
            struct writer_job *j = w->head;

            w->head = j->next;
            j->next = NULL;
            *tail = j;
            tail = &j->next;
            n++;
        }
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        refresh(w, &err);
        run_batch(w, batch);
        if (clock_ms() - w->last_house_ms > POLL_MS) {
            w->last_house_ms = clock_ms();
            housekeeping(w);
        }
        pthread_mutex_lock(&w->lock);
    }
    w->stopped = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- the script threads ---- */

/* Runs one job on a script thread, and hands its writes to the committer
 * or answers it at once. */
static void execute(struct executor *x, struct writer_job *job)
{
    struct writer *w = x->w;
    struct op_ctx ctx = {w, job, x->rdb, false};
    int64_t now = cg_now();
    bool to_commit;

    job->attempts++;
    /* Each run sees the tables as they are now. */
    writer_catalog_release(job->cat);
    job->cat = writer_catalog_acquire(w);
    job->ws = calloc(1, sizeof(*job->ws));
    if (!job->ws) {
        set_internal(job, "out of memory");
        finish(w, job);
        return;
    }
    if (job->idem_key && job->attempts == 1) {
        struct dtable_idem st;
        struct cg_err err = {""};

        if (snapshot(&ctx, &err) == CG_OK &&
            dtable_idem_get(x->rdb, job->user_name, job->idem_key, now - IDEM_SECONDS, &st, &err) ==
                CG_OK) {
            dtable_read_end(x->rdb);
            replay(job, &st);
            dtable_idem_free(&st);
            finish(w, job);
            return;
        }
    }
    if (job->op == WRITER_SCRIPT)
        run_script(w, x->vm, &ctx);
    else
        run_table(&ctx);
    dtable_read_end(x->rdb);
    to_commit = succeeded(job) && (job->ws->n_ops > 0 || job->idem_key);
    if (!to_commit) {
        finish(w, job);
        return;
    }
    pthread_mutex_lock(&w->lock);
    submit_locked(w, job);
    pthread_mutex_unlock(&w->lock);
}

/* What a job runs, for fairness: a resource's id, or 0 for the Table API. */
static int64_t job_kind(const struct writer_job *job)
{
    return job->op == WRITER_SCRIPT ? job->resource->id : 0;
}

/*
 * Takes the first queued job that may run now, under the lock: one
 * resource (or the Table API) may hold all script threads but one, so a
 * resource whose script is slow, however many requests it gets, leaves a
 * thread to everything else. NULL when nothing may run.
 */
static struct writer_job *take_job(struct writer *w)
{
    unsigned limit = w->n_execs > 1 ? w->n_execs - 1 : 1;

    for (struct writer_job **p = &w->xhead, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        struct writer_job *job = *p;
        int64_t kind = job_kind(job);
        unsigned busy = 0;

        for (unsigned i = 0; i < w->n_execs; i++)
            busy += w->execs[i].running == kind;
        if (busy >= limit)
            continue;
        *p = job->next;
        if (w->xtail == job)
            w->xtail = prev;
        job->next = NULL;
        return job;
    }
    return NULL;
}

static void *executor_main(void *arg)
{
    struct executor *x = arg;
    struct writer *w = x->w;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        struct writer_job *job = NULL;

        while (!(w->xhead && (job = take_job(w))) && !w->exec_stopping)
            pthread_cond_wait(&w->exec_wake, &w->lock);
        if (!job && w->xhead)
            job = take_job(w);
        if (!job) {
            if (!w->xhead)
                break;
            /* Stopping, and what is left waits for busy kinds: take it anyway. */
            job = w->xhead;
            w->xhead = job->next;
            if (!w->xhead)
                w->xtail = NULL;
            job->next = NULL;
        }
        x->running = job_kind(job);
        pthread_mutex_unlock(&w->lock);
        execute(x, job);
        pthread_mutex_lock(&w->lock);
        x->running = -1;
        /* A job that waited for this kind to free a thread may run now. */
        if (w->xhead)
            pthread_cond_broadcast(&w->exec_wake);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- start and stop ---- */

/* One per core, and at least two, so that one slow resource always leaves
 * a thread to the others (take_job). */
static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 2 ? 2 : n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
}

static void free_executors(struct writer *w)
{
    for (unsigned i = 0; w->execs && i < w->n_execs; i++) {
        script_vm_free(w->execs[i].vm);
        dtable_close(w->execs[i].rdb);
    }
    free(w->execs);
    w->execs = NULL;
}

int writer_start(const char *db_path, const struct script_limits *limits, bool durable,
                 unsigned threads, struct writer **out_writer, struct cg_err *err)
{
    struct writer *w = calloc(1, sizeof(*w));
    unsigned started = 0;
    int rc;

    if (!w)
        return CG_ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->exec_wake, NULL);
    if (limits)
        w->limits = *limits;
    else
        script_limits_default(&w->limits);
    w->last_purge = cg_now() - 600;
    w->db_path = strdup(db_path);
    w->n_execs = threads ? (threads > MAX_THREADS ? MAX_THREADS : threads) : default_threads();
    w->execs = calloc(w->n_execs, sizeof(*w->execs));
    if (!w->db_path || !w->execs) {
        rc = CG_ENOMEM;
        goto fail;
    }
    rc = dtable_open(db_path, &w->db, err);
    if (rc)
        goto fail;
    if (!durable) {
        rc = dtable_set_durable(w->db, false, err);
        if (rc)
            goto fail;
    }
    rc = script_vm_new(&w->limits, &w->vm);
    for (unsigned i = 0; rc == CG_OK && i < w->n_execs; i++) {
        w->execs[i].w = w;
        w->execs[i].running = -1;
        rc = script_vm_new(&w->limits, &w->execs[i].vm);
        if (rc == CG_OK)
            rc = dtable_open_reader(db_path, &w->execs[i].rdb, err);
    }
    if (rc) {
        if (!err->msg[0])
            cg_err_set(err, "cannot create the script threads' Lua states");
        goto fail;
    }
    rc = refresh(w, err);
    if (rc)
        goto fail;
    for (; started < w->n_execs; started++) {
        if (pthread_create(&w->execs[started].thread, NULL, executor_main, &w->execs[started]) != 0)
            break;
    }
    if (started < w->n_execs || pthread_create(&w->thread, NULL, committer, w) != 0) {
        cg_err_set(err, "cannot start the writer's threads");
        pthread_mutex_lock(&w->lock);
        w->exec_stopping = true;
        pthread_cond_broadcast(&w->exec_wake);
        pthread_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < started; i++)
            pthread_join(w->execs[i].thread, NULL);
        rc = CG_ERR;
        goto fail;
    }
    *out_writer = w;
    return CG_OK;
fail:
    free_executors(w);
    script_vm_free(w->vm);
    dtable_close(w->db);
    catalog_free_all(w->cur);
    free(w->db_path);
    free(w);
    return rc;
}

void writer_submit(struct writer *w, struct writer_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->exec_stopping || w->stopped) {
        /* Shutting down: answer at once instead of queueing. */
        pthread_mutex_unlock(&w->lock);
        set_error(job, 503, "Service unavailable", "certgate is shutting down: retry");
        job->done(job);
        return;
    }
    if (w->xtail)
        w->xtail->next = job;
    else
        w->xhead = job;
    w->xtail = job;
    pthread_cond_signal(&w->exec_wake);
    pthread_mutex_unlock(&w->lock);
}

void writer_stop(struct writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    if (w->exec_stopping) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    /* The script threads finish what is queued for them first, then the
     * committer what they handed on (a conflict now runs serially). */
    w->exec_stopping = true;
    pthread_cond_broadcast(&w->exec_wake);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < w->n_execs; i++)
        pthread_join(w->execs[i].thread, NULL);
    pthread_mutex_lock(&w->lock);
    w->exec_stopped = true;
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
}

void writer_free(struct writer *w)
{
    if (!w)
        return;
    writer_stop(w);
    free_executors(w);
    script_vm_free(w->vm);
    dtable_close(w->db);
    catalog_free_all(w->cur);
    while (w->log_old) {
        struct lbatch *b = w->log_old;

        w->log_old = b->next;
        lbatch_free(b);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->exec_wake);
    free(w->db_path);
    free(w);
}

void writer_stats(struct writer *w, struct writer_stats *out)
{
    out->commits = w->commits;
    out->jobs = __atomic_load_n(&w->jobs, __ATOMIC_RELAXED);
    out->conflicts = w->conflicts;
    out->serial = w->serial;
}

void writer_job_free(struct writer_job *job)
{
    if (!job)
        return;
    wset_free(job->ws);
    writer_catalog_release(job->cat);
    free(job->table);
    free(job->sys_id);
    json_decref(job->filter);
    json_decref(job->req.params);
    json_decref(job->req.query);
    json_decref(job->req.headers);
    json_decref(job->req.body);
    json_decref(job->req.user);
    free(job->method);
    free(job->path);
    free(job->target);
    free(job->raw_body);
    free(job->user_name);
    free(job->idem_key);
    free(job->body);
    json_decref(job->headers);
    free(job);
}
