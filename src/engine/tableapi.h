/*
 * tableapi: runs a Table API request (insert one record, get one, list
 * some) as a job, on a script thread or on the committer. Relies on run
 * (the snapshot and the write set) and dtable. Does not parse the request
 * (that is http and table_query).
 */
#ifndef CG_TABLEAPI_H
#define CG_TABLEAPI_H

#include "engine/run.h"

/** The Table API's operations, on the script thread (or the committer). */
void run_table(struct op_ctx *ctx);

#endif
