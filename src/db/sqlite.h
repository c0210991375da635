/*
 * sqlite: the SQLite core of the storage layer, and what the files holding
 * its SQL share. There is one connection type, struct db, for both sides:
 * the trust data (struct store, store.h) and the data tables (struct
 * dtable_db, dtable.h) are each a struct db and nothing more. The core opens
 * a connection (busy timeout, statement deadline), caches prepared
 * statements by their text, runs SQL, nests transactions in one scheme
 * (savepoints) and maps SQLite's result codes to certgate's. Relies on
 * SQLite. Does not know any table (the trust statements' index below is only
 * the list the files using them share). The files holding the SQL:
 * sqlite_store.c, sqlite_ca.c, sqlite_user.c, sqlite_table.c,
 * sqlite_resource.c, sqlite_idempotency.c. Nothing outside src/db/ includes
 * it: callers see db.h.
 */
#ifndef CG_SQLITE_H
#define CG_SQLITE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

/* The trust statements by index into sqlite_store.c's table (prepared through the cache). */
enum stmt_id {
    ST_TRUST_VERSION,
    ST_CA_INSERT,
    ST_CA_BY_ID,
    ST_CA_BY_FP,
    ST_CA_BY_FP_PREFIX,
    ST_CA_LIST,
    ST_CA_SET_ACTIVE,
    ST_CA_DEPS,
    ST_CA_CHILDREN,
    ST_CA_DELETE,
    ST_CA_DELETE_RULES,
    ST_CA_COPY,
    ST_CA_COPY_DISABLED,
    ST_CA_MOVE_RULES,
    ST_CA_BURY,
    ST_CA_UNBURY,
    ST_CA_DELETED_LIST,
    ST_CRL_SCOPE,
    ST_CRL_DELETE_SCOPE,
    ST_CRL_INSERT,
    ST_CRL_LIST,
    ST_USER_INSERT,
    ST_USER_SAME_CASE,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_LIST,
    ST_USER_ROLES,
    ST_ROLE_INSERT,
    ST_ROLE_CLEAR,
    ST_USER_SET_LOCKED,
    ST_USER_SET_PASSWORD,
    ST_USER_TOUCH,
    ST_USER_DELETE,
    ST_MAP_INSERT,
    ST_MAP_BY_ID,
    ST_MAP_BY_FP,
    ST_MAP_LIST,
    ST_MAP_LIST_USER,
    ST_MAP_DELETE,
    ST_MAP_RULE_EXISTS,
    ST_COUNT,
};

/* Statements cached per connection, keyed by their SQL text. */
#define STMT_CACHE 64
struct cached {
    char *sql;          /* key */
    sqlite3_stmt *st;   /* prepared once */
    unsigned long used; /* for eviction */
};

/* One connection. */
struct db {
    sqlite3 *conn;                   /* the connection */
    char *label;                     /* how messages name it: "database PATH" or "database" */
    struct cached cache[STMT_CACHE]; /* prepared statements */
    unsigned long tick;              /* use counter */
    int depth;                       /* open levels: 1 the transaction, each further a savepoint */
    int64_t deadline_ms;             /* interrupt statements after this, 0: never */
};

/* The trust-data connection (store.h) and the data-table one (dtable.h). */
struct store {
    struct db core; /* the connection */
};
struct dtable_db {
    struct db core; /* the connection */
};

/**
 * Open @p path with @p flags (SQLITE_OPEN_*), with extended result codes, a
 * 5 s busy timeout (SQLite retries a locked database for that long) and the
 * statement deadline of sqlite_set_deadline.
 * @param label_path whether messages name the file ("database x.db: ...")
 *        or not ("database: ...")
 * @return CG_OK, CG_ENOMEM or CG_EDB ("cannot open database PATH: why")
 */
int sqlite_connect(struct db *db, const char *path, int flags, bool label_path, struct cg_err *err);
/** Finalise the cached statements and close; the struct itself stays. */
void sqlite_disconnect(struct db *db);
/** Interrupt statements still running after @p deadline_ms (clock_ms); 0: never. */
void sqlite_set_deadline(struct db *db, int64_t deadline_ms);

/** Set @p err to "LABEL: @p what: SQLite's message". @return CG_EDB */
int sqlite_fail(struct db *db, struct cg_err *err, const char *what);
/** Run @p sql (no rows, no parameters). @return CG_OK or CG_EDB ("LABEL: why") */
int sqlite_exec(struct db *db, const char *sql, struct cg_err *err);
/**
 * The statement for @p sql, prepared on its first use on this connection
 * and kept (the least recently used of STMT_CACHE goes first), reset and
 * unbound, ready to bind.
 * @return the statement, or NULL with @p err set
 */
sqlite3_stmt *sqlite_prep(struct db *db, const char *sql, struct cg_err *err);
/** Finalise the cached statements whose text contains @p name (before a DROP TABLE). */
void sqlite_forget(struct db *db, const char *name);
/**
 * Step a statement that returns no row.
 * @return CG_OK; CG_EEXIST when a constraint refused it ("@p what: message");
 *         CG_EDB otherwise
 */
int sqlite_step_done(struct db *db, sqlite3_stmt *st, struct cg_err *err, const char *what);
/**
 * Step a statement that should change a row (no row returned), and reset it.
 * @return as sqlite_step_done; CG_ENOTFOUND when it changed none (@p err
 *         untouched, the caller names what is missing)
 */
int sqlite_step_change(struct db *db, sqlite3_stmt *st, struct cg_err *err, const char *what);
/**
 * Step an INSERT, and reset it.
 * @param out_id the new row's id, set only on CG_OK
 * @return as sqlite_step_done
 */
int sqlite_step_insert(struct db *db, sqlite3_stmt *st, int64_t *out_id, struct cg_err *err,
                       const char *what);

/*
 * Transactions nest in one scheme: the outermost level is a transaction,
 * each inner one a savepoint (cg_1, cg_2, ...). Commit and rollback end the
 * innermost level. The write transaction begins IMMEDIATE: the write lock at
 * once, so a busy database waits in the busy handler instead of failing at
 * commit.
 */
/** Begin a write transaction, or a savepoint inside the open one. */
int sqlite_begin(struct db *db, struct cg_err *err);
/** Begin a read transaction (DEFERRED: one snapshot until it ends); it cannot nest. */
int sqlite_read_begin(struct db *db, struct cg_err *err);
/** Commit the innermost level (COMMIT, or RELEASE of its savepoint). */
int sqlite_commit(struct db *db, struct cg_err *err);
/** Roll back the innermost level; harmless when none is open. */
void sqlite_rollback(struct db *db);
/** Roll back every level: the whole transaction. */
void sqlite_rollback_all(struct db *db);
/**
 * End the innermost level as @p rc says: commit it when CG_OK, roll it back
 * otherwise (also when the commit fails).
 * @return @p rc, or the commit's failure
 */
int sqlite_end(struct db *db, int rc, struct cg_err *err);

/* A failed step or prepare on the trust-data connection: the message, and CG_EDB. */
static inline int db_fail(struct store *s, struct cg_err *err, const char *what)
{
    return sqlite_fail(&s->core, err, what);
}
/* End the trust-data transaction level as @p rc says (sqlite_end). */
static inline int store_end(struct store *s, int rc, struct cg_err *err)
{
    return sqlite_end(&s->core, rc, err);
}
/* A trust statement, reset and unbound, ready to bind. */
sqlite3_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err);
static inline void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/** Reads the current row into @p record; returns 0 or a negative status. */
typedef int (*sqlite_read_fn)(sqlite3_stmt *st, void *record);
/** Frees the members of one record. */
typedef void (*sqlite_free_fn)(void *record);

/**
 * Step @p st to the end, reading each row with @p read into an array of
 * records of @p size bytes.
 * @param out_rows malloc'd array (NULL when empty); on failure nothing is returned
 * @param out_n number of records
 * @return 0, CG_ENOMEM, CG_EDB (the step failed) or what @p read returned
 */
int sqlite_collect(sqlite3_stmt *st, size_t size, sqlite_read_fn read, sqlite_free_fn free_one,
                   void **out_rows, size_t *out_n);
/**
 * Step @p st for one row, read it with @p read into @p record, and reset
 * @p st.
 * @return CG_OK; CG_ENOTFOUND when there is no row (@p err untouched, the
 *         caller names what is missing); CG_EDB ("LABEL: @p what: why") when
 *         the step failed; or what @p read returned
 */
int sqlite_one(struct db *db, sqlite3_stmt *st, sqlite_read_fn read, void *record, const char *what,
               struct cg_err *err);
/**
 * Step @p st (NULL: its prepare failed) for one row and read its first
 * column into @p out, then reset it.
 * @return CG_OK, or CG_EDB when there is no row or the step failed (no message)
 */
int sqlite_one_int64(sqlite3_stmt *st, int64_t *out);
/**
 * sqlite_collect over @p st (NULL: its prepare failed, @p err is set), then
 * reset it: a list.
 * @return as sqlite_collect; CG_EDB with @p err "LABEL: @p what: why"
 *         when the step failed
 */
int sqlite_list(struct db *db, sqlite3_stmt *st, size_t size, sqlite_read_fn read,
                sqlite_free_fn free_one, void **out_rows, size_t *out_n, const char *what,
                struct cg_err *err);

/* Column @p i as a malloc'd string, NULL when SQL NULL (or out of memory). */
char *col_str(sqlite3_stmt *st, int i);
/* Column @p i copied into @p buf ("" when NULL). */
void col_buf(sqlite3_stmt *st, int i, char *buf, size_t size);
/* Column @p i as malloc'd bytes, NULL when empty. */
unsigned char *col_blob(sqlite3_stmt *st, int i, size_t *out_len);
/* Now, ISO 8601. */
void now_iso(char out[static 21]);
/* Binds text, or NULL for a NULL pointer. */
int bind_text(sqlite3_stmt *st, int i, const char *v);
/* Steps a statement that returns no row: CG_OK, CG_EEXIST (a constraint), CG_EDB. */
static inline int step_done(struct store *s, sqlite3_stmt *st, struct cg_err *err, const char *what)
{
    return sqlite_step_done(&s->core, st, err, what);
}
/* Steps an INSERT, and resets it (sqlite_step_insert). */
static inline int step_insert(struct store *s, sqlite3_stmt *st, int64_t *out_id,
                              struct cg_err *err, const char *what)
{
    return sqlite_step_insert(&s->core, st, out_id, err, what);
}
/* Steps a statement that should change a row, and resets it (sqlite_step_change). */
static inline int step_change(struct store *s, sqlite3_stmt *st, struct cg_err *err,
                              const char *what)
{
    return sqlite_step_change(&s->core, st, err, what);
}

#endif
