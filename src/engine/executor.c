#include "config.h"
#include "engine/executor.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/catalog.h"
#include "engine/committer.h"
#include "engine/engine_int.h"
#include "engine/run.h"
#include "engine/tableapi.h"
#include "engine/wset.h"

/* A read connection of the pool for one run, waiting for one when all are taken. */
static struct dtable_db *pool_take(struct writer *w)
{
    struct dtable_db *db;

    pthread_mutex_lock(&w->pool_lock);
    while (w->n_idle == 0)
        pthread_cond_wait(&w->pool_wake, &w->pool_lock);
    db = w->pool[--w->n_idle];
    pthread_mutex_unlock(&w->pool_lock);
    return db;
}

static void pool_give(struct writer *w, struct dtable_db *db)
{
    pthread_mutex_lock(&w->pool_lock);
    w->pool[w->n_idle++] = db;
    pthread_cond_signal(&w->pool_wake);
    pthread_mutex_unlock(&w->pool_lock);
}

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
        job_set_internal(job, "out of memory");
        job_finish(w, job);
        return;
    }
    if (job->idem_key && job->attempts == 1) {
        struct dtable_idem st;
        struct cg_err err = {""};

        if (run_snapshot(&ctx, &err) == CG_OK &&
            dtable_idem_get(x->rdb, job->user_name, job->idem_key, now - IDEM_SECONDS, &st, &err) ==
                CG_OK) {
            dtable_read_end(x->rdb);
            committer_replay(job, &st);
            dtable_idem_free(&st);
            job_finish(w, job);
            return;
        }
    }
    if (job->op == WRITER_SCRIPT)
        run_script(w, x->vm, &ctx);
    else
        run_table(&ctx);
    dtable_read_end(x->rdb);
    job_check_db(job, x->rdb);
    to_commit = job_succeeded(job) && (job->ws->n_ops > 0 || job->idem_key);
    if (!to_commit) {
        job_finish(w, job);
        return;
    }
    pthread_mutex_lock(&w->lock);
    committer_submit_locked(w, job);
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

void *executor_main(void *arg)
{
    struct executor *x = arg;
    struct writer *w = x->w;

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-script");

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
        x->floor = __atomic_load_n(&w->seq, __ATOMIC_ACQUIRE);
        pthread_mutex_unlock(&w->lock);
        x->rdb = pool_take(w);
        execute(x, job);
        pool_give(w, x->rdb);
        x->rdb = NULL;
        pthread_mutex_lock(&w->lock);
        x->running = -1;
        /* A job that waited for this kind to free a thread may run now. */
        if (w->xhead)
            pthread_cond_broadcast(&w->exec_wake);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* One per core, and at least two, so that one slow resource always leaves
 * a thread to the others (take_job). */
unsigned executor_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 2 ? 2 : n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
}

void executor_free_all(struct writer *w)
{
    for (unsigned i = 0; w->execs && i < w->n_execs; i++)
        script_vm_free(w->execs[i].vm);
    free(w->execs);
    w->execs = NULL;
    for (unsigned i = 0; w->pool && i < w->n_pool; i++)
        dtable_close(w->pool[i]);
    free(w->pool);
    w->pool = NULL;
    w->n_pool = 0;
}
