/*
 * engine internals: the writer object that the engine's files share (its
 * queues, threads, catalog and conflict log) and the helpers that set a
 * job's answer. Not used outside src/engine/.
 */
#ifndef CG_ENGINE_INT_H
#define CG_ENGINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/writer.h"

struct lbatch;

/* A script thread. */
struct executor {
    struct writer *w;      /* the writer */
    pthread_t thread;      /* the thread */
    struct script_vm *vm;  /* its Lua state */
    struct dtable_db *rdb; /* the pool's read-only connection it holds for a run, or NULL */
    int64_t running;       /* what it runs now (job_kind), -1: nothing; under the lock */
    int64_t floor;         /* commits when it took its job: the run's snapshot sees at least
                            * these (under the lock; wset_log_prune) */
};

struct writer {
    char *db_path;                  /* the database */
    struct script_limits limits;    /* script caps */
    struct dtable_db *db;           /* the committer's connection (the only writer) */
    struct script_vm *vm;           /* the committer's Lua state, for serial runs */
    struct catalog *cur;            /* current catalog (atomic pointer) */
    pthread_t thread;               /* the committer */
    pthread_mutex_t lock;           /* guards both queues and the stop flags */
    pthread_cond_t wake;            /* a job for the committer, or stop */
    pthread_cond_t exec_wake;       /* a job for the script threads, or stop */
    struct writer_job *head, *tail; /* the committer's queue */
    struct writer_job *xhead;       /* the script threads' queue ... */
    struct writer_job *xtail;       /* ... and its end */
    struct executor *execs;         /* script threads */
    struct dtable_db **pool;        /* read-only connections of the script threads */
    unsigned n_pool;                /* opened */
    unsigned n_idle;                /* pool[0 .. n_idle) are free; under pool_lock */
    pthread_mutex_t pool_lock;      /* guards the pool's free list */
    pthread_cond_t pool_wake;       /* a connection came back */
    unsigned n_execs;               /* count */
    bool exec_stopping;             /* script threads: finish the queue and exit */
    bool exec_stopped;              /* script threads have exited */
    bool stopping;                  /* committer: finish the queue and exit */
    bool stopped;                   /* the committer has exited */
    int64_t seq;                    /* commits so far (atomic) */
    struct lbatch *log_old;         /* committed writes, oldest batch first */
    struct lbatch *log_new;         /* the newest batch */
    int64_t log_floor;              /* batches up to this seq are no longer kept */
    size_t log_entries;             /* writes kept */
    struct lbatch *pending;         /* writes of the batch being committed */
    int64_t last_purge;             /* when expired idempotency keys were last purged */
    int64_t last_house_ms;          /* when housekeeping last ran (monotonic ms) */
    int64_t catalog_read_ms;        /* when catalog_refresh last read the version */
    uint64_t commits, jobs;         /* counters */
    uint64_t conflicts, serial;     /* optimistic runs redone, requests run serially */
};

/**
 * Sets the job's answer to a registered error (errors.def): its status and message.
 * @param detail the detail (NULL: empty)
 */
void job_set_error(struct writer_job *job, enum cg_error e, const char *detail);
/**
 * Sets the job's answer to the error a script raised with certgate.fail,
 * in the same body as every other error.
 * @param status the script's status (400..599)
 * @param message the script's message
 * @param detail the script's detail
 */
void job_set_script_error(struct writer_job *job, int status, const char *message,
                          const char *detail);
/** Sets the job's answer to a 500 and says why in the log. */
void job_set_internal(struct writer_job *job, const char *why);
/**
 * A failed answer (5xx) given while the connection @p db to the database
 * server was lost becomes a 503 database_unavailable: nothing was written,
 * and the connection comes back by itself.
 */
void job_check_db(struct writer_job *job, struct dtable_db *db);

/** Clears what a run produced, for another run. */
void job_reset(struct writer_job *job);
/** Answers the request: its completion callback, once. */
void job_finish(struct writer *w, struct writer_job *job);
/** Whether the job's outcome is kept: a 2xx answer. */
bool job_succeeded(const struct writer_job *job);

#endif
