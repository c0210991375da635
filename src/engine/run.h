/*
 * run: one run of a job, and the database operations its script calls
 * (db.insert, db.get, db.query, db.update). On a script thread the run
 * reads a snapshot and collects its writes in its write set, and its reads
 * see the snapshot plus those writes; on the committer (a serial run) it
 * reads and writes the open transaction directly. Relies on dtable, script
 * and wset. Does not commit anything and does not decide which thread a
 * job runs on.
 */
#ifndef CG_RUN_H
#define CG_RUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/writer.h"

/* What the script callbacks work on. */
struct op_ctx {
    struct writer *w;       /* the writer */
    struct writer_job *job; /* the request */
    struct dtable_db *db;   /* script thread: its read connection; serial: the write one */
    bool direct;            /* serial run: read and write the transaction itself */
};

/** Opens the run's snapshot before its first read. */
int run_snapshot(struct op_ctx *o, struct cg_err *e);
/** db.insert: a new record of @p table; its sys_id into @p out_id. */
int op_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
              size_t errlen);
/** Runs the job's script on @p vm and puts its answer into the job. */
void run_script(struct writer *w, struct script_vm *vm, struct op_ctx *ctx);

#endif
