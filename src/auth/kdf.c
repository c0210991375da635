#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/log.h"

/* ---- password checks, off the worker threads ---- */

/* Password checks waiting at most; more get a 503 (try again). */
#define KDF_QUEUE_MAX 64

struct kdf_pool {
    struct http_server *srv; /* the server */
    pthread_mutex_t lock;    /* guards the queue */
    pthread_cond_t wake;     /* work or stop */
    struct kdf_job *head;    /* oldest job */
    struct kdf_job *tail;    /* newest job */
    unsigned queued;         /* jobs waiting */
    bool stopping;           /* end once the queue is empty */
    pthread_t threads[4];    /* the workers */
    unsigned n_threads;      /* started */
};

void kdf_job_free(struct kdf_job *job)
{
    if (job->password) {
        crypto_wipe(job->password, job->password_len);
        free(job->password);
    }
    free(job->user);
    free(job);
}

/* Runs the KDF for one suspended request, records the decision on its
 * connection (which nothing else touches while it sleeps) and wakes it.
 * A job whose address was barred while it waited gets no check. */
static void kdf_run(struct kdf_pool *pool, struct kdf_job *job)
{
    struct request *r = job->r;
    struct conn *c = r->conn;
    struct http_server *srv = pool->srv;
    struct trust_snapshot *snap;
    struct identity id;
    bool failed;
    int rc;

    if (job->barred) {
        r->barred = job->barred;
        goto out;
    }
    snap = trust_holder_acquire(srv->trust);
    rc = identity_from_basic(snap, job->user, job->password, job->password_len, &id);
    trust_release(snap);
    failed = rc == CG_OK && id.reason == AUTH_BAD_PASSWORD;
    if (rc == CG_OK) {
        if (c->has_basic)
            identity_free(&c->basic_id);
        c->basic_id = id;
        memcpy(c->basic_key, job->key, sizeof(job->key));
        c->has_basic = true;
    }
    if (identity_limiter_end(srv->limiter, c->remote, clock_s(), failed))
        log_event("basic_barred",
                  json_pack("{s:s, s:i, s:i, s:s}", "remote", c->remote, "failures",
                            IDENTITY_MAX_FAILURES, "seconds", IDENTITY_BAR_SECONDS, "detail",
                            "too many wrong passwords from this address: no password is "
                            "checked for it for a while"));
    /* Jobs of this address that waited for it may go now, or are barred. */
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
out:
    kdf_job_free(job);
    request_wake(r);
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
        enum identity_limit v =
            identity_limiter_begin(pool->srv->limiter, job->r->conn->remote, now, &seconds);

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
    /* Queued checks still run: their connections must be resumed before
     * libmicrohttpd stops. */
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

int kdf_start(struct http_server *srv, unsigned n, struct kdf_pool **out_pool)
{
    struct kdf_pool *pool = calloc(1, sizeof(*pool));

    if (!pool)
        return CG_ENOMEM;
    pool->srv = srv;
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

/* Queues @p job; false when the queue is full (the job is not taken). */
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
