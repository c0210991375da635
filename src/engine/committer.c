#include "config.h"
#include "engine/committer.h"
#include "base/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/metrics.h"
#include "engine/catalog.h"
#include "engine/engine_int.h"
#include "engine/run.h"
#include "engine/tableapi.h"
#include "engine/wset.h"

/* Most requests committed in one transaction. */
#define MAX_BATCH 256
/* How often an idle committer looks for changed resources. */
#define POLL_MS 200
/* Optimistic runs of one request before it runs on the committer. */
#define MAX_OPTIMISTIC 2

/* Answers from a stored response, or refuses a key reused for another request. */
void committer_replay(struct writer_job *job, struct dtable_idem *st)
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
        job_set_error(job, CG_ERROR_IDEMPOTENCY_KEY_REUSED, detail);
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

void committer_submit_locked(struct writer *w, struct writer_job *job)
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
    job_reset(job);
    pthread_mutex_lock(&w->lock);
    if (job->attempts >= MAX_OPTIMISTIC || w->exec_stopping) {
        job->serial = true;
        w->serial++;
        committer_submit_locked(w, job);
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

    job_reset(job);
    if (dtable_idem_get(w->db, job->user_name, job->idem_key, now - IDEM_SECONDS, &st, &err)) {
        job_set_internal(job, "idempotent response vanished");
        return;
    }
    committer_replay(job, &st);
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
            committer_replay(job, &st);
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
        job_set_internal(job, err.msg);
        return;
    }
    if (job->serial) {
        run_serial(w, job, now);
        if (!job_succeeded(job) || job->replayed) {
            dtable_rollback_to(w->db);
            lbatch_truncate(w->pending, mark);
            return;
        }
    } else if (wset_conflicts(w, job)) {
        dtable_rollback_to(w->db);
        job->retry = true;
        w->conflicts++;
        return;
    } else {
        rc = apply(w, job, &err);
        if (rc) {
            dtable_rollback_to(w->db);
            lbatch_truncate(w->pending, mark);
            job_set_internal(job, err.msg);
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
                job_set_internal(job, err.msg);
            return;
        }
    }
    if (dtable_release(w->db, &err)) {
        lbatch_truncate(w->pending, mark);
        job_set_internal(job, err.msg);
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
        else if (dtable_lost(w->db))
            job_set_internal(j, err.msg); /* job_check_db below makes it a 503 */
        else
            job_set_error(j, CG_ERROR_UNAVAILABLE, "the database is busy: retry");
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
                    job_set_internal(j, why);
                }
            }
        } else {
            /* The number is published after the commit: a snapshot taken
             * after reading it sees at least this batch. */
            w->pending->seq = __atomic_add_fetch(&w->seq, 1, __ATOMIC_ACQ_REL);
            w->pending->when_ms = clock_ms();
            wset_log_push(w, w->pending);
            w->pending = NULL;
        }
    }
    lbatch_free(w->pending);
    w->pending = NULL;
    w->commits++;
    for (struct writer_job *j = batch; j; j = j->next) {
        if (!j->retry)
            job_check_db(j, w->db);
    }
    while (batch) {
        struct writer_job *next = batch->next;

        batch->next = NULL;
        if (batch->retry)
            requeue(w, batch);
        else
            job_finish(w, batch);
        batch = next;
    }
}

/* Work an idle committer does now and then. */
static void housekeeping(struct writer *w)
{
    struct cg_err err = {""};
    int64_t now = cg_now();

    catalog_refresh(w, &err);
    catalog_reclaim(w);
    wset_log_prune(w);
    if (now - w->last_purge >= 600) {
        w->last_purge = now;
        if (dtable_idem_purge(w->db, now - IDEM_SECONDS, &err))
            log_event("writer_error", json_pack("{s:s}", "detail", err.msg));
    }
}

void *committer_main(void *arg)
{
    struct writer *w = arg;

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-commit");

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
        catalog_refresh(w, &err);
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
