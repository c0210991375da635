/*
 * store: a connection for the trust data: opening the database, schema
 * migrations, the trust version, transactions, and (trust_data.h) the
 * records of the CA certificate chain table, CRLs, users, roles and
 * user-to-certificate mappings. Part of the storage interface (db.h);
 * implemented on the core (core.h, sql_store.c: SQLite in WAL mode, or
 * PostgreSQL; parameterised statements prepared once per connection); no
 * driver type appears in this header.
 * Does not parse certificates (callers hand in the facts pki extracted) and
 * does not decide trust. One struct store is one connection: use it from one
 * thread at a time.
 */
#ifndef CG_STORE_H
#define CG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "db/trust_data.h"

struct store;

/** How to open the database. */
enum store_mode {
    STORE_OPEN_INIT,     /* create the file if missing and apply all migrations */
    STORE_OPEN_EXISTING, /* the file must exist; an older schema is upgraded */
    STORE_OPEN_READONLY, /* the file must exist and be current; no writes */
};

/**
 * Open (and, by @p mode, create or upgrade) the database at @p path.
 * SQLite: turns on WAL, foreign keys and a busy timeout. PostgreSQL (@p path
 * a URI): connects; STORE_OPEN_INIT creates the schema in an empty
 * database.
 * @param path file name, or a libpq URI (postgresql://...)
 * @param mode see enum store_mode
 * @param out_store the connection (free with store_close)
 * @param err message on failure, e.g. "database ./x.db does not exist: run certgate init"
 * @return CG_OK, CG_ENOTFOUND (no file), CG_EVERSION (newer schema), CG_EDB
 */
int store_open(const char *path, enum store_mode mode, struct store **out_store,
               struct cg_err *err);

/**
 * How messages and logs may name the database @p path: a path as it is, a
 * PostgreSQL URI without its password.
 * @return a malloc'd string, or NULL when out of memory
 */
char *store_display_name(const char *path);

/** Close the connection and finalise its statements; NULL is allowed. */
void store_close(struct store *s);

/** Latest schema version this program knows. */
int store_schema_latest(void);

/**
 * Schema version of the open database (PRAGMA user_version).
 * @return the version, or negative on failure
 */
int store_schema_version(struct store *s);

/**
 * Counter that grows on every change to trust data (CAs, CRLs, users, roles,
 * mappings), also when another process made it.
 * @param out_version the counter
 * @return CG_OK or CG_EDB
 */
int store_trust_version(struct store *s, int64_t *out_version);

/**
 * Wait up to @p timeout_ms for a change of trust data to be announced
 * (PostgreSQL: the trigger's NOTIFY on certgate_trust, schema 005), or for
 * @p wake_fd to be readable. Read the version after it either way.
 * @return 1 announced, 0 not, CG_ENOTSUP on SQLite (poll instead), CG_EDB
 *         while the connection is lost
 */
int store_wait_change(struct store *s, int timeout_ms, int wake_fd);

/** Begin an immediate (write) transaction. @return CG_OK or CG_EDB */
int store_begin(struct store *s, struct cg_err *err);
/**
 * Begin a read transaction: every read until store_commit (or
 * store_rollback) sees the same snapshot of the database.
 * @return CG_OK or CG_EDB
 */
int store_read_begin(struct store *s, struct cg_err *err);
/** Commit. @return CG_OK or CG_EDB */
int store_commit(struct store *s, struct cg_err *err);
/** Roll back; harmless when no transaction is open. */
void store_rollback(struct store *s);

#endif
