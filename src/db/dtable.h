/*
 * dtable: the connection the engine and `certgate table` / `resource` use
 * for the data tables (table.h), the scripted resource definitions
 * (resource.h) and stored responses for Idempotency-Key (idempotency.h).
 * Part of the storage interface (db.h); implemented on the core (core.h)
 * (sqlite_table.c: identifiers are validated and quoted, values always
 * bound). Relies on jansson (records are JSON objects). Does not run scripts
 * and does not decide who may call what.
 * One struct dtable_db is one connection: one thread at a time.
 */
#ifndef CG_DTABLE_H
#define CG_DTABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "base/uuid.h"
#include "db/idempotency.h"
#include "db/resource.h"
#include "db/table.h"

struct dtable_db;

/**
 * Open the database for records (it must exist and be current: the caller
 * opened it with store_open before, which applies migrations).
 * @return CG_OK or CG_EDB
 */
int dtable_open(const char *path, struct dtable_db **out_db, struct cg_err *err);
/**
 * Open a read-only connection (PRAGMA query_only): for the script threads,
 * which read at a snapshot and never write.
 */
int dtable_open_reader(const char *path, struct dtable_db **out_db, struct cg_err *err);
/** Start a read transaction (a snapshot) unless one is open. */
int dtable_read_begin(struct dtable_db *db, struct cg_err *err);
/** End the read transaction, if one is open. */
void dtable_read_end(struct dtable_db *db);
/**
 * Whether the connection to the database server is lost (PostgreSQL; it
 * reconnects by itself at a later statement). SQLite: never.
 */
bool dtable_lost(struct dtable_db *db);
/** Close; NULL is allowed. */
void dtable_close(struct dtable_db *db);

/**
 * synchronous=FULL (durable: a commit survives power loss) or NORMAL (a
 * commit survives a crash of certgate, not of the machine).
 */
int dtable_set_durable(struct dtable_db *db, bool durable, struct cg_err *err);

/**
 * Interrupt any statement still running after @p deadline_ms (clock_ms,
 * milliseconds); 0 clears it. Keeps one slow query in a script from holding
 * the committer past the script's wall-time cap.
 */
void dtable_set_deadline(struct dtable_db *db, int64_t deadline_ms);

/*
 * Transactions, in the one scheme of db.h: begin takes the write lock and
 * opens the transaction (the committer's batch), savepoint opens a level
 * inside it (one request), release/rollback_to end that level, commit ends
 * the transaction and rollback abandons every level.
 */
int dtable_begin(struct dtable_db *db, struct cg_err *err);
int dtable_commit(struct dtable_db *db, struct cg_err *err);
void dtable_rollback(struct dtable_db *db);
int dtable_savepoint(struct dtable_db *db, struct cg_err *err);
int dtable_release(struct dtable_db *db, struct cg_err *err);
void dtable_rollback_to(struct dtable_db *db);

#endif
