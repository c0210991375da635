/*
 * executor: the script threads. Each has its own Lua state and its own
 * read-only connection, takes jobs from the queue (one resource may hold
 * all threads but one), runs each on a snapshot, and hands a job with
 * writes (or an Idempotency-Key) to the committer or answers it at once.
 * Relies on run, tableapi, committer and catalog. Does not write the
 * database.
 */
#ifndef CG_EXECUTOR_H
#define CG_EXECUTOR_H

#include "engine/writer.h"

/* Most script threads. */
#define MAX_THREADS 64

/** A script thread (its argument is its struct executor). */
void *executor_main(void *arg);
/** How many script threads to start when none was configured. */
unsigned executor_default_threads(void);
/** Frees the script threads' Lua states and connections (after they have exited). */
void executor_free_all(struct writer *w);

#endif
