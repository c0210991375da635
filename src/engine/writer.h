/*
 * writer: runs scripted resources and Table API operations off the HTTP
 * threads, and makes their writes durable with group commit.
 * - Script threads (one per core by default), each with its own Lua state
 *   (chunks compiled once) and its own read-only connection, run a
 *   request's script against a snapshot of the database. The script's
 *   writes are collected (db.insert returns the new sys_id at once); its
 *   reads see the snapshot plus its own writes. Slow scripts never hold the
 *   write lock, and one slow script holds only its own thread.
 * - One committer thread with the only write connection applies the
 *   collected writes of many requests in one transaction (one savepoint
 *   each) and answers each request only after the commit that holds its
 *   rows. Before applying a request's writes it checks that nothing it read
 *   was written since its snapshot; if something was, the script runs again
 *   on a fresh snapshot (and after a few such conflicts, on the committer
 *   itself, inside the transaction), so every request behaves as if
 *   requests ran one at a time (serializable).
 * - Keeps the catalog (resources and data tables) that routing reads
 *   without locks.
 * Relies on dtable, script and log. Does not know libmicrohttpd: a job
 * carries a completion callback that the HTTP layer uses to resume the
 * suspended connection.
 * This file is the engine's front (start, submit, stop); the parts live
 * in catalog, executor (script threads), committer (group commit), wset
 * (write sets and the conflict log), run (one run and the scripts' db
 * operations) and tableapi (the Table API runner).
 */
#ifndef CG_WRITER_H
#define CG_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "db/dtable.h"
#include "script/script.h"

/** Resources and data tables, immutable once published. */
struct catalog {
    int64_t version;                   /* resource_version it was loaded at */
    int refs;                          /* requests using it (atomic) */
    int64_t retired_ms;                /* when a newer one replaced it (monotonic ms), 0: current */
    struct dtable_resource *resources; /* active resources */
    size_t n_resources;                /* count */
    struct dtable_table *tables;       /* data tables */
    size_t n_tables;                   /* count */
    struct catalog *older;             /* previous catalogs, freed once unused */
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
    char *target;                           /* the request target as sent (path and query) */
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
    void (*done)(struct writer_job *job); /* called once, on a writer thread, when answered */
    void *ctx;                            /* the caller's */
    /* the writer's own */
    struct writer_wset *ws; /* collected writes and reads of the current run */
    struct catalog *cat;    /* catalog the run uses (a reference is held) */
    int attempts;           /* runs so far */
    int64_t snap_seq;       /* commits visible to the run's snapshot (at least) */
    bool serial;            /* run on the committer, inside the transaction */
    bool retry;             /* the committer found a conflict: run again */
    char request_sha256[DTABLE_REQUEST_HASH_SIZE]; /* dtable_request_sha256, for Idempotency-Key */
    struct writer_job *next;                       /* queue link */
};

struct writer;

/**
 * Open the database, load the catalog, start the script threads and the
 * committer.
 * @param threads script threads, 0: one per core
 * @param pool read connections the script threads share (a thread takes one
 *        for each run), 0: one per thread
 * @return CG_OK or an error with a message
 */
int writer_start(const char *db_path, const struct script_limits *limits, bool durable,
                 unsigned threads, unsigned pool, struct writer **out_writer, struct cg_err *err);

/** The current catalog (lock-free; valid until writer_stop). */
const struct catalog *writer_catalog(struct writer *w);

/**
 * The current catalog, held until writer_catalog_release: a catalog that
 * CLI changes replaced is freed once no request holds it.
 */
struct catalog *writer_catalog_acquire(struct writer *w);
/** Release a catalog from writer_catalog_acquire; NULL is allowed. */
void writer_catalog_release(struct catalog *c);

/** Queue a job; its done callback runs once its writes are committed (or rolled back). */
void writer_submit(struct writer *w, struct writer_job *job);

/** Finish queued jobs and stop the thread; later jobs get a 503 at once. */
void writer_stop(struct writer *w);

/** Stop (if needed) and free everything, after the HTTP daemon has stopped. */
void writer_free(struct writer *w);

/** Free a job's inputs and results. */
void writer_job_free(struct writer_job *job);

/** What the writer did so far (for the log and benchmarks). */
struct writer_stats {
    uint64_t commits;   /* transactions committed (group commits) */
    uint64_t jobs;      /* requests answered */
    uint64_t conflicts; /* optimistic runs redone because what they read had changed */
    uint64_t serial;    /* requests run on the committer after repeated conflicts */
};

/** Fill @p out (read after writer_stop for exact figures). */
void writer_stats(struct writer *w, struct writer_stats *out);

#endif
