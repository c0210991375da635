#include "config.h"
#include "engine/writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/catalog.h"
#include "engine/committer.h"
#include "engine/engine_int.h"
#include "engine/executor.h"
#include "engine/wset.h"

/* ---- answers ---- */

/* Every error answer of the engine, so that base/error.c alone spells the body. */
static void set_error_body(struct writer_job *job, int status, char *body)
{
    free(job->body);
    json_decref(job->headers);
    job->headers = NULL;
    job->status = status;
    job->body = body;
}

void job_set_error(struct writer_job *job, enum cg_error e, const char *detail)
{
    set_error_body(job, (int)error_status(e), error_body(e, NULL, detail));
}

void job_set_script_error(struct writer_job *job, int status, const char *message,
                          const char *detail)
{
    /* The registry entry only stands in for a missing message; a script's
     * certgate.fail always has one ("Invalid request" when it gave none). */
    set_error_body(job, status, error_body(CG_ERROR_BAD_REQUEST, message, detail));
}

void job_set_internal(struct writer_job *job, const char *why)
{
    job_set_error(job, CG_ERROR_INTERNAL, job->request_id);
    snprintf(job->log_detail, sizeof(job->log_detail), "%s", why);
}

void job_check_db(struct writer_job *job, struct dtable_db *db)
{
    if (job->status >= 500 && dtable_lost(db)) {
        job_set_error(job, CG_ERROR_DATABASE_UNAVAILABLE,
                      "database_unavailable: the database cannot be reached; certgate reconnects "
                      "by itself: retry");
        snprintf(job->log_detail, sizeof(job->log_detail), "database_unavailable");
    }
}

/* Clears what a run produced, for another run. */
void job_reset(struct writer_job *job)
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
void job_finish(struct writer *w, struct writer_job *job)
{
    wset_free(job->ws);
    job->ws = NULL;
    writer_catalog_release(job->cat);
    job->cat = NULL;
    __atomic_add_fetch(&w->jobs, 1, __ATOMIC_RELAXED);
    job->done(job);
}

/* Whether the job's outcome is kept: a 2xx answer. */
bool job_succeeded(const struct writer_job *job)
{
    return job->status >= 200 && job->status < 300;
}

/* ---- start and stop ---- */

int writer_start(const char *db_path, const struct script_limits *limits, bool durable,
                 unsigned threads, unsigned pool, struct writer **out_writer, struct cg_err *err)
{
    struct writer *w = calloc(1, sizeof(*w));
    unsigned started = 0;
    int rc;

    if (!w)
        return CG_ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->exec_wake, NULL);
    pthread_mutex_init(&w->pool_lock, NULL);
    pthread_cond_init(&w->pool_wake, NULL);
    if (limits)
        w->limits = *limits;
    else
        script_limits_default(&w->limits);
    w->last_purge = cg_now() - 600;
    w->db_path = strdup(db_path);
    w->n_execs =
        threads ? (threads > MAX_THREADS ? MAX_THREADS : threads) : executor_default_threads();
    w->execs = calloc(w->n_execs, sizeof(*w->execs));
    pool = pool ? (pool > MAX_THREADS ? MAX_THREADS : pool) : w->n_execs;
    w->pool = calloc(pool, sizeof(*w->pool));
    if (!w->db_path || !w->execs || !w->pool) {
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
    }
    for (; rc == CG_OK && w->n_pool < pool; w->n_pool++)
        rc = dtable_open_reader(db_path, &w->pool[w->n_pool], err);
    w->n_idle = w->n_pool;
    if (rc) {
        if (!err->msg[0])
            cg_err_set(err, "cannot create the script threads' Lua states");
        goto fail;
    }
    rc = catalog_refresh(w, err);
    if (rc)
        goto fail;
    for (; started < w->n_execs; started++) {
        if (pthread_create(&w->execs[started].thread, NULL, executor_main, &w->execs[started]) != 0)
            break;
    }
    if (started < w->n_execs || pthread_create(&w->thread, NULL, committer_main, w) != 0) {
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
    executor_free_all(w);
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
        job_set_error(job, CG_ERROR_UNAVAILABLE, "certgate is shutting down: retry");
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
    executor_free_all(w);
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
    pthread_mutex_destroy(&w->pool_lock);
    pthread_cond_destroy(&w->pool_wake);
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
