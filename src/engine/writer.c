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
#include "engine/run.h"
#include "engine/tableapi.h"
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

/* ---- answers ---- */

static char *error_text(const char *message, const char *detail)
{
    json_t *o = json_pack("{s:{s:s, s:s}, s:s}", "error", "message", message, "detail",
                          detail ? detail : "", "status", "failure");
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(o);
    return t;
}

void set_error(struct writer_job *job, int status, const char *message, const char *detail)
{
    free(job->body);
    json_decref(job->headers);
    job->headers = NULL;
    job->status = status;
    job->body = error_text(message, detail);
}

void set_internal(struct writer_job *job, const char *why)
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
