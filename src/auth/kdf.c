#include "config.h"
#include "auth/kdf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"

/* Password checks waiting at most; more get a 503 (try again). */
#define KDF_QUEUE_MAX 64

struct kdf_pool {
    struct trust_holder *trust;         /* the trust snapshots */
    struct identity_limiter *limiter;   /* wrong passwords per client address */
    struct identity_basic_cache *cache; /* where verified credentials are remembered */
    pthread_mutex_t lock;               /* guards the queue */
    pthread_cond_t wake;                /* work or stop */
    struct kdf_job *head;               /* oldest job */
    struct kdf_job *tail;               /* newest job */
    unsigned queued;                    /* jobs waiting */
    bool stopping;                      /* end once the queue is empty */
    pthread_t threads[4];               /* the workers */
    unsigned n_threads;                 /* started */
};

void kdf_job_free(struct kdf_job *job)
{
    if (job->password) {
        crypto_wipe(job->password, job->password_len);
        free(job->password);
    }
    free(job->user);
    if (job->has_id)
        identity_free(&job->id);
    free(job);
}

/* Runs the check of one job and hands it to its callback. A job whose
 * address was barred while it waited gets no check. */
static void kdf_run(struct kdf_pool *pool, struct kdf_job *job)
{
    struct trust_snapshot *snap;
    bool failed;
    int rc;

    if (job->barred)
        goto out;
    snap = trust_holder_acquire(pool->trust);
    rc = identity_from_basic(snap, pool->cache, job->user, job->password, job->password_len,
                             &job->id);
    trust_release(snap);
    job->has_id = rc == CG_OK;
    failed = rc == CG_OK && job->id.reason == AUTH_BAD_PASSWORD;
    if (identity_limiter_end(pool->limiter, job->remote, clock_s(), failed))
        log_event("basic_barred",
                  json_pack("{s:s, s:i, s:i, s:s}", "remote", job->remote, "failures",
                            IDENTITY_MAX_FAILURES, "seconds", IDENTITY_BAR_SECONDS, "detail",
                            "too many wrong passwords from this address: no password is "
                            "checked for it for a while"));
    /* Jobs of this address that waited for it may go now, or are barred. */
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
out:
    job->done(job);
}

/* The oldest job that may go now, taken off the queue: one whose address
 * has room for another check under the limit, or is barred (then it gets
 * no check). Jobs of an address whose checks under way could still bar it
 * stay queued. NULL when none may go. Called with the pool's lock. */
static struct kdf_job *kdf_take(struct kdf_pool *pool)
{
    int64_t now = clock_s();
    struct kdf_job *job, *prev = NULL;

    for (job = pool->head; job; prev = job, job = job->next) {
        unsigned seconds = 0;
        enum identity_limit v = identity_limiter_begin(pool->limiter, job->remote, now, &seconds);

        if (v == IDENTITY_LIMIT_WAIT)
            continue;
        if (v == IDENTITY_LIMIT_BARRED)
            job->barred = seconds ? seconds : 1;
        if (prev)
            prev->next = job->next;
        else
            pool->head = job->next;
        if (pool->tail == job)
            pool->tail = prev;
        pool->queued--;
        return job;
    }
    return NULL;
}

static void *kdf_main(void *arg)
{
    struct kdf_pool *pool = arg;

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-password");

    /* Below the worker threads: a burst of password checks must not slow
     * the requests that are already authenticated. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct kdf_job *job = kdf_take(pool);

        if (!job) {
            /* Queued jobs wait for a running check, which wakes us. */
            if (pool->stopping && !pool->head)
                break;
            pthread_cond_wait(&pool->wake, &pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        kdf_run(pool, job);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

void kdf_stop(struct kdf_pool *pool)
{
    if (!pool)
        return;
    /* Queued checks still run: their callers wait for the callback (the
     * HTTP layer resumes connections with it before libmicrohttpd stops). */
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}

int kdf_start(struct trust_holder *trust, struct identity_limiter *limiter,
              struct identity_basic_cache *cache, unsigned n, struct kdf_pool **out_pool)
{
    struct kdf_pool *pool = calloc(1, sizeof(*pool));

    if (!pool)
        return CG_ENOMEM;
    pool->trust = trust;
    pool->limiter = limiter;
    pool->cache = cache;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (unsigned i = 0; i < n && i < 4; i++) {
        if (pthread_create(&pool->threads[i], NULL, kdf_main, pool) != 0)
            break;
        pool->n_threads++;
    }
    if (pool->n_threads == 0) {
        kdf_stop(pool);
        return CG_ERR;
    }
    *out_pool = pool;
    return CG_OK;
}

bool kdf_submit(struct kdf_pool *pool, struct kdf_job *job)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->queued >= KDF_QUEUE_MAX) {
        pthread_mutex_unlock(&pool->lock);
        return false;
    }
    job->next = NULL;
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    pthread_cond_signal(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    return true;
}
