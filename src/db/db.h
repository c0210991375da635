/*
 * db: the storage interface. trust/, engine/, script/ and cli/ reach the
 * database only through the operations listed here, never through SQL
 * strings or driver types. Relies on nothing but base/. Two backends live in
 * one binary, chosen at run time by how the database is named: a path is
 * SQLite, a libpq URI (postgresql://..., postgres://...) PostgreSQL.
 *
 * The interface, by header:
 *   store.h       a trust-data connection: store_open (creates, migrates),
 *                 store_close, store_schema_latest/_version,
 *                 store_trust_version, store_begin/_read_begin/_commit/
 *                 _rollback
 *   trust_data.h  the trust records on it: store_ca_*, store_crl_*,
 *                 store_user_*, store_map_*
 *   dtable.h      a data connection: dtable_open (writer), dtable_open_reader
 *                 (script threads), dtable_lost, dtable_close,
 *                 dtable_set_durable, dtable_set_deadline,
 *                 dtable_read_begin/_read_end, dtable_begin/_commit/
 *                 _rollback, dtable_savepoint/_release/_rollback_to
 *   table.h       data tables: dtable_table_create/_list/_get/_count/_drop,
 *                 dtable_insert(_row), dtable_update, dtable_get(_ex),
 *                 dtable_query(_ex)
 *   resource.h    scripted resources: dtable_resource_add/_update/_delete/
 *                 _get/_list, dtable_resource_version
 *   idempotency.h stored answers: dtable_idem_get/_put/_purge
 *   copy.h        db_copy: an SQLite database into an empty PostgreSQL one
 * The rest of those headers (record rules, name checks, *_free, table.c,
 * resource.c, idempotency.c, trust_data.c) is backend-neutral C.
 *
 * How the two backends share the work: the dispatch is at the statement
 * level, not per operation. core.h is the one connection type (struct db)
 * and one statement API (prepare by SQL text with SQLite's ? and ?N
 * placeholders, bind, step, read columns, transactions); core.c implements
 * it on SQLite and hands every call of a PostgreSQL connection to pg.c
 * (libpq: placeholders become $N, values are sent as parameters, never
 * spliced). The SQL of every operation is written once, in the subset both
 * understand (sql_store.c, sql_ca.c, sql_user.c, sql_table.c,
 * sql_resource.c, sql_idempotency.c); the few statements that differ (the
 * catalogue, PRAGMAs, a data table's column types, its insertion order)
 * choose by db->kind. Return codes are the same on both (CG_OK,
 * CG_ENOTFOUND, CG_EEXIST for a refused constraint, CG_EDB for anything
 * the database refused). The migrations: schema/NNN_*.sql for SQLite and
 * their twins schema/pg/NNN_*.sql (same numbers, the build refuses a
 * missing twin), so one number is one schema version on either; PostgreSQL
 * keeps it in sys_meta's schema_version row (SQLite: user_version). New ids
 * are max(id) + 1 on both (writers are serialised), so they match.
 *
 * Transactions and isolation, which the callers rely on:
 *   - One nesting scheme per connection: the outermost begin is the
 *     transaction, each further begin (or dtable_savepoint) a savepoint
 *     inside it; commit/release and rollback/rollback_to end the innermost
 *     level; dtable_rollback ends them all.
 *   - Write transactions take the write lock at begin, not at the first
 *     write (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED and a
 *     transaction-scoped advisory lock every writer takes first, so writes
 *     are serialised across nodes as they are on one SQLite file), so a busy
 *     database waits at begin (the 5 s busy timeout, or lock_timeout)
 *     instead of failing at commit.
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
 *   - PostgreSQL commits with synchronous_commit on (dtable_set_durable
 *     false turns it off). A lost connection fails what runs on it; the
 *     next statement outside a transaction reconnects (at most once a
 *     second), and dtable_lost tells the engine to answer 503.
 *
 * The trust version: store_trust_version returns a counter that grows with
 * every committed change to CAs, CRLs, users, roles or mappings, whichever
 * process made it, on whichever node (triggers on those tables bump
 * sys_meta's trust_version in the same transaction, on both backends). trust/ polls it and rebuilds
 * its snapshot, in one read transaction together with the counter, when it moved (every 200 ms: a
 * change on any node applies on every node well within a second); engine/ polls
 * dtable_resource_version the same way for the scripted resources (its catalog). Both are bumped in
 * the writing transaction itself, so that a reader never sees new data with an old counter.
 */
#ifndef CG_DB_H
#define CG_DB_H

#include "db/copy.h"
#include "db/dtable.h"
#include "db/store.h"

#endif
