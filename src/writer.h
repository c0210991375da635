/*
 * writer: runs scripted resources and Table API operations on one committer
 * thread with its own database connection and Lua state, and commits the
 * writes of many concurrent requests together (group commit): one
 * transaction per batch, one savepoint per request, so a failing request
 * rolls back only its own rows, and every request is answered only after
 * the commit that holds its rows. Also keeps the catalog (resources and
 * data tables) that routing reads without locks.
 * Relies on dtable, script and log. Does not know libmicrohttpd: a job
 * carries a completion callback that the HTTP layer uses to resume the
 * suspended connection.
 */
#ifndef CG_WRITER_H
#define CG_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtable.h"
#include "script.h"
#include "util.h"

/** Resources and data tables, immutable once published. */
struct catalog {
    int64_t version;                   /* resource_version it was loaded at */
    struct dtable_resource *resources; /* active resources */
    size_t n_resources;                /* count */
    struct dtable_table *tables;       /* data tables */
    size_t n_tables;                   /* count */
    struct catalog *older;             /* previous catalog, freed at shutdown */
};

/** What a job does. */
enum writer_op {
    WRITER_SCRIPT,       /* run a resource's script */
    WRITER_TABLE_INSERT, /* Table API POST */
    WRITER_TABLE_GET,    /* Table API GET one record */
    WRITER_TABLE_LIST,   /* Table API GET a list */
};

/** One request handed to the committer. Inputs are owned by the job. */
struct writer_job {
    enum writer_op op;                      /* what to do */
    const struct dtable_resource *resource; /* WRITER_SCRIPT: the resource (catalog-owned) */
    char *table;                            /* Table API: table name */
    char *sys_id;                           /* WRITER_TABLE_GET */
    long limit, offset;                     /* WRITER_TABLE_LIST */
    json_t *filter;                         /* WRITER_TABLE_LIST: column = value */
    struct script_request req;              /* request facts (json owned by the job) */
    char *method;                           /* owned copy for req.method */
    char *path;                             /* owned copy for req.path */
    char *raw_body;                         /* owned copy for req.raw_body */
    char *user_name;                        /* who (for sys_created_by, idempotency) */
    char *idem_key;                         /* Idempotency-Key, NULL when none */
    char request_id[33];                    /* for log lines */
    /* results */
    int status;           /* HTTP status */
    char *body;           /* response body text (malloc'd) */
    json_t *headers;      /* extra response headers, or NULL */
    bool replayed;        /* answered from a stored idempotent response */
    char log_detail[512]; /* why it failed, for the log */
    /* completion */
    void (*done)(struct writer_job *job); /* called on the committer thread after commit */
    void *ctx;                            /* the caller's */
    struct writer_job *next;              /* queue link */
};

struct writer;

/**
 * Open the database, load the catalog, start the committer thread.
 * @return CG_OK or an error with a message
 */
int writer_start(const char *db_path, const struct script_limits *limits, bool durable,
                 struct writer **out_writer, struct cg_err *err);

/** The current catalog (lock-free; valid until writer_stop). */
const struct catalog *writer_catalog(struct writer *w);

/** Queue a job; its done callback runs once its writes are committed (or rolled back). */
void writer_submit(struct writer *w, struct writer_job *job);

/** Finish queued jobs and stop the thread; later jobs get a 503 at once. */
void writer_stop(struct writer *w);

/** Stop (if needed) and free everything, after the HTTP daemon has stopped. */
void writer_free(struct writer *w);

/** Free a job's inputs and results. */
void writer_job_free(struct writer_job *job);

/** Commits and batches done so far (for the log and benchmarks). */
void writer_stats(struct writer *w, uint64_t *out_commits, uint64_t *out_jobs);

#endif
