/*
 * committer: the one thread with the write connection. It takes the jobs
 * the script threads hand on in batches, applies each job's writes in a
 * savepoint of one transaction per batch (after checking that nothing the
 * job read changed since its snapshot; if something did, the job runs
 * again), stores and replays idempotent answers, runs a job that
 * conflicted too often itself, and answers each job only after the commit
 * that holds its writes. Relies on dtable, run, tableapi, wset and
 * catalog. Does not run scripts optimistically (that is the executor).
 */
#ifndef CG_COMMITTER_H
#define CG_COMMITTER_H

#include "engine/writer.h"

/* An Idempotency-Key is remembered this long. */
#define IDEM_SECONDS (24 * 3600)

/** Answers from a stored response, or refuses a key reused for another request. */
void committer_replay(struct writer_job *job, struct dtable_idem *st);
/** Queues a job for the committer; the caller holds the lock. */
void committer_submit_locked(struct writer *w, struct writer_job *job);
/** The committer thread. */
void *committer_main(void *arg);

#endif
