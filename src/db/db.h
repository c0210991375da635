/*
 * db: the storage interface. trust/, engine/, script/ and cli/ reach the
 * database only through the operations listed here, never through SQL
 * strings or SQLite types, so that a second backend (PostgreSQL) can arrive
 * without touching the request path. Relies on nothing but base/. Does not
 * choose a backend at run time: today SQLite (sqlite*.c) is the only one.
 *
 * The interface, by header:
 *   store.h       a trust-data connection: store_open (creates, migrates),
 *                 store_close, store_schema_latest/_version,
 *                 store_trust_version, store_begin/_read_begin/_commit/
 *                 _rollback
 *   trust_data.h  the trust records on it: store_ca_*, store_crl_*,
 *                 store_user_*, store_map_*
 *   dtable.h      a data connection: dtable_open (writer), dtable_open_reader
 *                 (script threads), dtable_close, dtable_set_durable,
 *                 dtable_set_deadline, dtable_read_begin/_read_end,
 *                 dtable_begin/_commit/_rollback, dtable_savepoint/_release/
 *                 _rollback_to
 *   table.h       data tables: dtable_table_create/_list/_get/_count/_drop,
 *                 dtable_insert(_row), dtable_update, dtable_get(_ex),
 *                 dtable_query(_ex)
 *   resource.h    scripted resources: dtable_resource_add/_update/_delete/
 *                 _get/_list, dtable_resource_version
 *   idempotency.h stored answers: dtable_idem_get/_put/_purge
 * The rest of those headers (record rules, name checks, *_free, table.c,
 * resource.c, idempotency.c, trust_data.c) is backend-neutral C that a second
 * backend reuses as it is. The SQLite implementation: sqlite.c (the core:
 * connection, statement cache, exec, transactions, busy timeout, deadline),
 * sqlite_store.c (open, migrate, the trust statements), sqlite_ca.c,
 * sqlite_user.c, sqlite_table.c, sqlite_resource.c, sqlite_idempotency.c.
 *
 * What a second backend implements: every function named above except the
 * neutral ones, in its own files (e.g. pg.c, pg_ca.c, ...), with the same
 * return codes (CG_OK, CG_ENOTFOUND, CG_EEXIST for a refused constraint,
 * CG_EDB for anything the database refused) and the same migrations in its
 * own SQL. Selecting it would be a configure switch that compiles one set of
 * files or the other; a table of function pointers would only pay off once
 * two backends must coexist in one binary.
 *
 * Transactions and isolation, which the callers rely on:
 *   - One nesting scheme per connection: the outermost begin is the
 *     transaction, each further begin (or dtable_savepoint) a savepoint
 *     inside it; commit/release and rollback/rollback_to end the innermost
 *     level; dtable_rollback ends them all.
 *   - Write transactions take the write lock at begin, not at the first
 *     write (SQLite: BEGIN IMMEDIATE; PostgreSQL: SERIALIZABLE or a lock
 *     taken up front), so a busy database waits at begin (SQLite: the 5 s
 *     busy timeout) instead of failing at commit.
 *   - Group commit (engine): the committer runs one transaction per batch
 *     and one savepoint per request in it; a request that fails rolls back
 *     to its savepoint and the others still commit together. A failed commit
 *     means nothing of the batch is on disk.
 *   - Reads (trust snapshots, script threads) run in a read transaction that
 *     sees one consistent snapshot from its first read until it ends,
 *     whatever other processes commit meanwhile (SQLite WAL; PostgreSQL
 *     REPEATABLE READ, READ ONLY). Readers never block the writer.
 *   - dtable_set_deadline interrupts a statement still running past the
 *     deadline (SQLite: progress handler; PostgreSQL: statement_timeout).
 *
 * The trust version: store_trust_version returns a counter that grows with
 * every committed change to CAs, CRLs, users, roles or mappings, whichever
 * process made it (SQLite: triggers on those tables bump sys_meta's
 * trust_version in the same transaction). trust/ polls it and rebuilds its
 * snapshot, in one read transaction together with the counter, when it
 * moved; engine/ polls dtable_resource_version the same way for the
 * scripted resources (its catalog). A second backend must bump both in the
 * writing transaction itself (triggers again), so that a reader never sees
 * new data with an old counter.
 */
#ifndef CG_DB_H
#define CG_DB_H

#include "db/dtable.h"
#include "db/store.h"

#endif
