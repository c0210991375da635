#include "config.h"
#include "engine/run.h"
#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "engine/catalog.h"
#include "engine/engine_int.h"
#include "engine/wset.h"

static const struct dtable_table *script_table(struct op_ctx *o, const char *table, char *err,
                                               size_t errlen)
{
    const struct dtable_table *t = catalog_find_table(o->job->cat, table);

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

/* The table a write names, with @p fields checked against its columns.
 * @return CG_OK, or the error with its message in @p err */
static int writable_table(struct op_ctx *o, const char *table, json_t *fields,
                          const struct dtable_table **out_t, char *err, size_t errlen)
{
    struct cg_err e = {""};

    *out_t = script_table(o, table, err, errlen);
    if (!*out_t)
        return CG_EINVAL;
    return op_fail(dtable_check_record(*out_t, fields, &e), &e, err, errlen);
}

/* Opens the run's snapshot before its first read. */
int run_snapshot(struct op_ctx *o, struct cg_err *e)
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

int op_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
              size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t;
    struct cg_err e = {""};
    char now[96];
    json_t *row;
    struct wop *op;
    int rc = writable_table(o, table, fields, &t, err, errlen);

    if (rc)
        return rc;
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
    const struct dtable_table *t;
    struct cg_err e = {""};
    json_t *row = NULL;
    struct wop *op;
    int64_t rowid = 0;
    int rc = writable_table(o, table, fields, &t, err, errlen);

    if (rc)
        return rc;
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
    rc = run_snapshot(o, &e);
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
    rc = run_snapshot(o, &e);
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
    rc = run_snapshot(o, &e);
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
            job_set_internal(job, "out of memory encoding the response");
        break;
    case SCRIPT_FAILED:
        job_set_script_error(job, res->status, res->message, res->detail);
        snprintf(job->log_detail, sizeof(job->log_detail), "certgate.fail: %s", res->message);
        break;
    case SCRIPT_LIMIT_TIME:
        metrics_script_error();
        job_set_error(job, CG_ERROR_UNAVAILABLE, job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res->log_detail);
        break;
    default:
        metrics_script_error();
        job_set_error(job, CG_ERROR_INTERNAL, job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res->log_detail);
        break;
    }
}

void run_script(struct writer *w, struct script_vm *vm, struct op_ctx *ctx)
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
        job_set_error(job, CG_ERROR_BAD_REQUEST, detail);
        return;
    }
    /* The compiled chunk is kept per script text, so a changed script
     * always runs as it is now. */
    snprintf(key, sizeof(key), "%lld:%s", (long long)r->id, r->script_sha256);
    dtable_set_deadline(ctx->db, clock_ms() + w->limits.wall_ms);
    rc = script_run(vm, key, r->script, r->script_name, &job->req, &ops, &res);
    dtable_set_deadline(ctx->db, 0);
    if (rc) {
        job_set_internal(job, "script VM failure");
        return;
    }
    take_result(job, &res);
    script_result_free(&res);
}
