/*
 * wset: what one run of a request wrote and read (its write set), and the
 * log of committed writes that later commits are checked against. A run
 * reads a snapshot; before its writes are applied, the committer asks
 * whether any write committed after that snapshot touched what it read.
 * Relies on dtable (tables, row matching) and jansson. Does not touch the
 * database and takes no lock: the script thread owns a write set while it
 * runs, the committer owns the log.
 */
#ifndef CG_WSET_H
#define CG_WSET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/dtable.h"

struct writer;
struct writer_job;

/* One write of a request. */
struct wop {
    bool insert;                  /* insert, else update */
    const struct dtable_table *t; /* the table (catalog-owned) */
    char sys_id[37];              /* the record */
    json_t *fields;               /* what to write (checked) */
    json_t *row;                  /* the record as this request's writes leave it */
    int64_t rowid;                /* update: the record's rowid in the snapshot */
};

/* One read of a request: a record, or a query. */
struct rpred {
    const struct dtable_table *t; /* table read */
    char sys_id[37];              /* the record read, "" for a query */
    json_t *filter;               /* a query's filter (NULL: every record) */
};

struct writer_wset {
    struct wop *ops;     /* writes, in order */
    size_t n_ops;        /* count */
    size_t cap_ops;      /* allocated */
    struct rpred *reads; /* reads */
    size_t n_reads;      /* count */
    size_t cap_reads;    /* allocated */
    bool snapshot;       /* a read transaction is open on the script thread */
    unsigned log_lines;  /* log lines of this run */
};

/* One committed write. */
struct lentry {
    char table[64];  /* table name */
    char sys_id[37]; /* record */
    json_t *before;  /* the record before, as a log_image (NULL: inserted) */
    json_t *after;   /* the record after, as a log_image */
};

/* The writes of one committed batch. */
struct lbatch {
    int64_t seq;         /* its commit number */
    int64_t when_ms;     /* when it committed (monotonic) */
    struct lentry *e;    /* writes */
    size_t n;            /* count */
    size_t cap;          /* allocated */
    struct lbatch *next; /* the next newer batch */
};

/** Frees a write set; NULL is allowed. */
void wset_free(struct writer_wset *ws);
/** A new zeroed write at the end of @p ws; NULL when out of memory. */
struct wop *wset_add_op(struct writer_wset *ws);
/** Records a read of a record (@p sys_id) or a query (@p filter, copied). */
int wset_add_read(struct writer_wset *ws, const struct dtable_table *t, const char *sys_id,
                  json_t *filter);
/** This run's write of a record, or NULL. */
struct wop *wset_find(struct writer_wset *ws, const struct dtable_table *t, const char *sys_id);

/** Forgets the batch's writes after the first @p n. */
void lbatch_truncate(struct lbatch *b, size_t n);
/** Frees a batch; NULL is allowed. */
void lbatch_free(struct lbatch *b);
/** Records a write; the batch takes the references of @p before and @p after. */
int lbatch_add(struct lbatch *b, const struct dtable_table *t, const char *sys_id, json_t *before,
               json_t *after);

/** Whether a write committed after the job's snapshot touched what it read. */
bool wset_conflicts(struct writer *w, const struct writer_job *job);
/**
 * Forgets the committed writes no run in flight can conflict with: those
 * up to its oldest snapshot, and in any case those older than LOG_KEEP_MS
 * or beyond LOG_MAX_ENTRIES (a run whose snapshot is older is redone).
 * Committer thread, without the lock (it takes it).
 */
void wset_log_prune(struct writer *w);
/** Keeps a committed batch's writes (the log takes it). */
void wset_log_push(struct writer *w, struct lbatch *b);

#endif
