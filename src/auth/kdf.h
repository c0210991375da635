/*
 * kdf: password checks off the worker threads. PBKDF2 costs about 0.25 s on
 * purpose, so a pool of low-priority threads runs the checks, in arrival
 * order but never more at once for one address than the limiter allows;
 * an address barred meanwhile gets no check at all. Relies on identity (the
 * check and the limiter) and trust (the snapshot). Does not know who waits
 * for the answer: each job carries a callback that the pool calls once,
 * from its thread, when the job is done.
 */
#ifndef CG_KDF_H
#define CG_KDF_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/identity.h"
#include "trust/trust.h"

struct kdf_pool;
struct kdf_job;

/* Called once per job, on a pool thread; it owns the job from then on
 * (free it with kdf_job_free). */
typedef void (*kdf_done_fn)(struct kdf_job *job);

/* A password check. */
struct kdf_job {
    char remote[64];       /* the client's address, for the limiter */
    unsigned char key[32]; /* SHA-256 of the Authorization value it decides */
    char *user;            /* decoded user name (owned) */
    char *password;        /* decoded password (owned, wiped when freed) */
    size_t password_len;   /* its length */
    kdf_done_fn done;      /* see above */
    void *ctx;             /* the caller's */
    /* The outcome, set before done is called. */
    unsigned barred;      /* the address was barred: seconds left; no check ran */
    bool has_id;          /* id holds the decision (a check ran and could decide) */
    struct identity id;   /* the decision, when has_id (done takes it over) */
    struct kdf_job *next; /* the pool's queue */
};

/** Free a job: its password is wiped; an id not taken over is freed. */
void kdf_job_free(struct kdf_job *job);

/**
 * Start @p n threads (at most 4). The pool uses @p trust, @p limiter and
 * @p cache (where a verified password is remembered) and does not own them.
 * @return CG_OK, CG_ENOMEM, or CG_ERR when no thread starts
 */
int kdf_start(struct trust_holder *trust, struct identity_limiter *limiter,
              struct identity_basic_cache *cache, unsigned n, struct kdf_pool **out_pool);

/** Run what is queued, then stop the threads and free the pool (NULL: nothing). */
void kdf_stop(struct kdf_pool *pool);

/** Queue @p job; false when the queue is full (the job is not taken). */
bool kdf_submit(struct kdf_pool *pool, struct kdf_job *job);

#endif
