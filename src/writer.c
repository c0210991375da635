#include "config.h"
#include "writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

/* Most requests committed in one transaction. */
#define MAX_BATCH 256
/* An Idempotency-Key is remembered this long. */
#define IDEM_SECONDS (24 * 3600)
/* How often an idle committer looks for changed resources. */
#define POLL_MS 200

struct writer {
    struct dtable_db *db;           /* the committer's connection */
    struct script_vm *vm;           /* the committer's Lua state */
    struct catalog *cur;            /* current catalog (atomic pointer) */
    pthread_t thread;               /* the committer */
    pthread_mutex_t lock;           /* guards the queue and stopping */
    pthread_cond_t wake;            /* a job arrived, or stop */
    struct writer_job *head, *tail; /* queue */
    bool stopping;                  /* finish the queue and exit */
    bool stopped;                   /* the committer has exited */
    uint64_t commits, jobs;         /* counters */
    unsigned wall_ms;               /* scripts' wall-time cap, also for their queries */
};

static void catalog_free(struct catalog *c)
{
    while (c) {
        struct catalog *older = c->older;

        dtable_resource_list_free(c->resources, c->n_resources);
        dtable_table_list_free(c->tables, c->n_tables);
        free(c);
        c = older;
    }
}

/* Loads a new catalog when the resource version moved. Old catalogs stay
 * allocated until shutdown: routing reads them without locks or counts. */
static int refresh(struct writer *w, struct cg_err *err)
{
    struct catalog *c, *old = __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE);
    struct dtable_resource *all = NULL;
    size_t n_all = 0, n = 0;
    int64_t v = 0;
    int rc;

    rc = dtable_resource_version(w->db, &v);
    if (rc) {
        cg_err_set(err, "cannot read the resource version");
        return rc;
    }
    if (old && old->version == v)
        return CG_OK;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->version = v;
    rc = dtable_resource_list(w->db, &all, &n_all, err);
    if (rc == CG_OK)
        rc = dtable_table_list(w->db, &c->tables, &c->n_tables, err);
    if (rc) {
        dtable_resource_list_free(all, n_all);
        catalog_free(c);
        return rc;
    }
    c->resources = calloc(n_all ? n_all : 1, sizeof(*c->resources));
    if (!c->resources) {
        dtable_resource_list_free(all, n_all);
        catalog_free(c);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n_all; i++) {
        if (all[i].is_active)
            c->resources[n++] = all[i];
        else
            dtable_resource_free(&all[i]);
    }
    free(all);
    c->n_resources = n;
    c->older = old;
    __atomic_store_n(&w->cur, c, __ATOMIC_RELEASE);
    return CG_OK;
}

const struct catalog *writer_catalog(struct writer *w)
{
    return __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE);
}

/* ---- database access for scripts ---- */

struct op_ctx {
    struct writer *w;       /* the writer */
    struct writer_job *job; /* the request */
};

static const struct dtable_table *find_table(struct writer *w, const char *name)
{
    const struct catalog *c = writer_catalog(w);

    for (size_t i = 0; i < c->n_tables; i++) {
        if (strcmp(c->tables[i].name, name) == 0)
            return &c->tables[i];
    }
    return NULL;
}

/* The table a script names, or NULL with the message in @p err. */
static const struct dtable_table *script_table(struct op_ctx *o, const char *table, char *err,
                                               size_t errlen)
{
    const struct dtable_table *t = find_table(o->w, table);

    if (!t)
        snprintf(err, errlen, "no table named '%s'", table);
    return t;
}

static int op_done(int rc, const struct cg_err *e, char *err, size_t errlen)
{
    if (rc)
        snprintf(err, errlen, "%s", e->msg);
    return rc;
}

static int op_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
                     size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};

    if (!t)
        return CG_EINVAL;
    return op_done(dtable_insert(o->w->db, t, fields, o->job->user_name, out_id, &e), &e, err,
                   errlen);
}

static int op_update(void *ctx, const char *table, const char *sys_id, json_t *fields, char *err,
                     size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};

    if (!t)
        return CG_EINVAL;
    return op_done(dtable_update(o->w->db, t, sys_id, fields, &e), &e, err, errlen);
}

static int op_get(void *ctx, const char *table, const char *sys_id, json_t **out, char *err,
                  size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};

    if (!t)
        return CG_EINVAL;
    return op_done(dtable_get(o->w->db, t, sys_id, out, &e), &e, err, errlen);
}

static int op_query(void *ctx, const char *table, json_t *filter, long limit, long offset,
                    json_t **out, char *err, size_t errlen)
{
    struct op_ctx *o = ctx;
    const struct dtable_table *t = script_table(o, table, err, errlen);
    struct cg_err e = {""};

    if (!t)
        return CG_EINVAL;
    return op_done(dtable_query(o->w->db, t, filter, limit, offset, out, &e), &e, err, errlen);
}

static void op_log(void *ctx, const char *message)
{
    struct op_ctx *o = ctx;

    log_event("script_log",
              json_pack("{s:s, s:s}", "request_id", o->job->request_id, "message", message));
}

/* ---- running one job inside its savepoint ---- */

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
    job->status = status;
    job->body = error_text(message, detail);
}

static void run_script(struct writer *w, struct writer_job *job)
{
    const struct dtable_resource *r = job->resource;
    struct op_ctx ctx = {w, job};
    struct script_db_ops ops = {&ctx, op_insert, op_get, op_query, op_update, op_log};
    struct script_result res;
    char key[96];
    int rc;

    snprintf(key, sizeof(key), "%lld@%s", (long long)r->id, r->updated_on);
    dtable_set_deadline(w->db, dtable_now_ms() + w->wall_ms);
    rc = script_run(w->vm, key, r->script, r->script_name, &job->req, &ops, &res);
    dtable_set_deadline(w->db, 0);
    if (rc) {
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "script VM failure");
        return;
    }
    switch (res.outcome) {
    case SCRIPT_OK:
        job->status = res.status;
        job->body = res.body
                        ? json_dumps(res.body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
                        : NULL;
        job->headers = json_incref(res.headers);
        break;
    case SCRIPT_FAILED:
        set_error(job, res.status, res.message, res.detail);
        snprintf(job->log_detail, sizeof(job->log_detail), "certgate.fail: %s", res.message);
        break;
    case SCRIPT_LIMIT_TIME:
        metrics_script_error();
        set_error(job, 503, "Service unavailable", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res.log_detail);
        break;
    default:
        metrics_script_error();
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", res.log_detail);
        break;
    }
    script_result_free(&res);
}

static void run_table(struct writer *w, struct writer_job *job)
{
    const struct dtable_table *t = find_table(w, job->table);
    struct cg_err err = {""};
    json_t *out = NULL;
    char id[37];
    int rc;

    if (!t) {
        set_error(job, 404, "Requested URI does not represent any resource", job->table);
        return;
    }
    if (job->op == WRITER_TABLE_INSERT) {
        rc = dtable_insert(w->db, t, job->req.body, job->user_name, id, &err);
        if (rc == CG_OK)
            rc = dtable_get(w->db, t, id, &out, &err);
        if (rc == CG_OK)
            job->status = 201;
    } else if (job->op == WRITER_TABLE_GET) {
        rc = dtable_get(w->db, t, job->sys_id, &out, &err);
        if (rc == CG_ENOTFOUND) {
            set_error(job, 404, "No Record found",
                      "the record does not exist or you may not "
                      "read it");
            return;
        }
        job->status = 200;
    } else {
        rc = dtable_query(w->db, t, job->filter, job->limit, job->offset, &out, &err);
        job->status = 200;
    }
    if (rc == CG_EINVAL) {
        set_error(job, 400, "Invalid request", err.msg);
        return;
    }
    if (rc) {
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", err.msg);
        return;
    }
    {
        json_t *wrap = json_pack("{s:o}", "result", out);

        job->body = wrap ? json_dumps(wrap, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(wrap);
    }
}

/* Runs one job in its own savepoint: its writes stay only if it succeeded. */
static void run_job(struct writer *w, struct writer_job *job, int64_t now)
{
    struct cg_err err = {""};
    bool idem = job->idem_key && job->user_name;

    if (dtable_savepoint(w->db, &err)) {
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", err.msg);
        return;
    }
    if (idem) {
        int status = 0;
        char *body = NULL;

        if (dtable_idem_get(w->db, job->user_name, job->idem_key, now - IDEM_SECONDS, &status,
                            &body, &err) == CG_OK) {
            job->status = status;
            job->body = body;
            job->replayed = true;
            dtable_release(w->db, &err);
            return;
        }
    }
    if (job->op == WRITER_SCRIPT)
        run_script(w, job);
    else
        run_table(w, job);
    if (job->status >= 400 || job->status == 0) {
        dtable_rollback_to(w->db);
        return;
    }
    if (idem && dtable_idem_put(w->db, job->user_name, job->idem_key, job->method, job->path,
                                job->status, job->body ? job->body : "", now, &err)) {
        dtable_rollback_to(w->db);
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", err.msg);
        return;
    }
    if (dtable_release(w->db, &err)) {
        set_error(job, 500, "Internal server error", job->request_id);
        snprintf(job->log_detail, sizeof(job->log_detail), "%s", err.msg);
    }
}

static void run_batch(struct writer *w, struct writer_job *batch)
{
    struct cg_err err = {""};
    int64_t now = cg_now();
    bool ok;

    ok = dtable_begin(w->db, &err) == CG_OK;
    for (struct writer_job *j = batch; j; j = j->next) {
        if (ok)
            run_job(w, j, now);
        else
            set_error(j, 503, "Service unavailable", "the database is busy: retry");
    }
    if (ok) {
        struct timespec t0, t1;
        int rc;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = dtable_commit(w->db, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        metrics_commit(
            (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000));
        if (rc) {
            /* Nothing of this batch is on disk: no request may report success. */
            dtable_rollback(w->db);
            for (struct writer_job *j = batch; j; j = j->next) {
                if (j->status < 400) {
                    set_error(j, 500, "Internal server error", j->request_id);
                    snprintf(j->log_detail, sizeof(j->log_detail), "commit failed: %.400s",
                             err.msg);
                }
            }
        }
    }
    w->commits++;
    while (batch) {
        struct writer_job *next = batch->next;

        w->jobs++;
        batch->next = NULL;
        batch->done(batch);
        batch = next;
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

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += POLL_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&w->wake, &w->lock, &until) != 0 && !w->head) {
                pthread_mutex_unlock(&w->lock);
                refresh(w, &err);
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
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int writer_start(const char *db_path, const struct script_limits *limits, bool durable,
                 struct writer **out_writer, struct cg_err *err)
{
    struct writer *w = calloc(1, sizeof(*w));
    int rc;

    if (!w)
        return CG_ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    rc = dtable_open(db_path, &w->db, err);
    if (rc)
        goto fail;
    if (!durable) {
        rc = dtable_set_durable(w->db, false, err);
        if (rc)
            goto fail;
    }
    w->wall_ms = limits ? limits->wall_ms : 5000;
    rc = script_vm_new(limits, &w->vm);
    if (rc) {
        cg_err_set(err, "cannot create the Lua state");
        goto fail;
    }
    rc = refresh(w, err);
    if (rc)
        goto fail;
    if (pthread_create(&w->thread, NULL, committer, w) != 0) {
        cg_err_set(err, "cannot start the committer thread");
        rc = CG_ERR;
        goto fail;
    }
    *out_writer = w;
    return CG_OK;
fail:
    script_vm_free(w->vm);
    dtable_close(w->db);
    catalog_free(w->cur);
    free(w);
    return rc;
}

void writer_submit(struct writer *w, struct writer_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopped) {
        /* Shutting down: answer at once instead of queueing. */
        pthread_mutex_unlock(&w->lock);
        set_error(job, 503, "Service unavailable", "certgate is shutting down: retry");
        job->done(job);
        return;
    }
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void writer_stop(struct writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    if (w->stopped) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_lock(&w->lock);
    w->stopped = true;
    pthread_mutex_unlock(&w->lock);
}

void writer_free(struct writer *w)
{
    if (!w)
        return;
    writer_stop(w);
    script_vm_free(w->vm);
    dtable_close(w->db);
    catalog_free(w->cur);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}

void writer_stats(struct writer *w, uint64_t *out_commits, uint64_t *out_jobs)
{
    *out_commits = w->commits;
    *out_jobs = w->jobs;
}

void writer_job_free(struct writer_job *job)
{
    if (!job)
        return;
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
    free(job->raw_body);
    free(job->user_name);
    free(job->idem_key);
    free(job->body);
    json_decref(job->headers);
    free(job);
}
