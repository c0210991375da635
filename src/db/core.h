/*
 * core: the core of the storage layer, and what the files holding its SQL
 * share. There is one connection type, struct db, for both sides: the trust
 * data (struct store, store.h) and the data tables (struct dtable_db,
 * dtable.h) are each a struct db and nothing more. The core opens a
 * connection on one of two drivers, chosen by the name of the database at
 * run time: a path is SQLite (core.c), a libpq URI PostgreSQL (pg.c). It
 * caches prepared statements by their text, binds, steps and reads them
 * through one statement API (st_*), runs SQL, nests transactions in one
 * scheme (savepoints) and maps the drivers' result codes to certgate's.
 * Relies on SQLite and libpq. Does not know any table (the trust
 * statements' index below is only the list the files using them share). The
 * files holding the SQL, shared by both drivers (the few statements that
 * differ choose by db->kind): sql_store.c, sql_ca.c, sql_user.c,
 * sql_table.c, sql_resource.c, sql_idempotency.c. Nothing outside src/db/
 * includes it: callers see db.h.
 */
#ifndef CG_CORE_H
#define CG_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

struct sqlite3;
struct sqlite3_stmt;
struct pg_conn;
struct pg_result;

/* The trust statements by index into sql_store.c's table (prepared through the cache). */
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

/* The id of a new row: one more than the highest, as SQLite's rowid gives
 * it (writers are serialised on either database), so that ids are the same
 * on both and a refused insert leaves no gap. */
#define NEXT_ID(table) "(SELECT coalesce(max(id), 0) + 1 FROM " table ")"

/* Statements cached per connection, keyed by their SQL text. */
#define STMT_CACHE 64
struct cached {
    char *sql;          /* key */
    struct db_stmt *st; /* prepared once */
    unsigned long used; /* for eviction */
};

/* Which driver a connection runs on. */
enum db_kind {
    DB_SQLITE, /* a file */
    DB_PG,     /* a PostgreSQL server, named by a libpq URI */
};

/* What st_step answers (SQLite's values, so either driver speaks them). */
enum {
    DB_ERROR = 1,       /* failed: core_errmsg says why */
    DB_CONSTRAINT = 19, /* a constraint (unique, check, foreign key) refused it */
    DB_ROW = 100,       /* a row is ready */
    DB_DONE = 101,      /* no (more) rows */
};

/* One connection. */
struct db {
    enum db_kind kind;               /* the driver */
    struct sqlite3 *conn;            /* SQLite: the connection */
    struct pg_conn *pg;              /* PostgreSQL: the connection */
    bool pg_reader;                  /* PostgreSQL: a read-only session */
    char *label;                     /* how messages name it: "database PATH" or "database" */
    struct cached cache[STMT_CACHE]; /* prepared statements */
    unsigned long tick;              /* use counter */
    int depth;                       /* open levels: 1 the transaction, each further a savepoint */
    int64_t deadline_ms;             /* interrupt statements after this, 0: never */
    int64_t changes;                 /* PostgreSQL: rows the last statement changed */
    char errmsg[400];                /* PostgreSQL: the last failure */
    bool timeout_dirty;              /* PostgreSQL: statement_timeout must be set again */
    bool timeout_in_tx;              /* PostgreSQL: it was set inside the open transaction */
    int64_t next_reset_ms;           /* PostgreSQL: earliest next reconnect attempt */
    const char *listen;              /* PostgreSQL: the channel it listens on (static), or NULL */
};

/* A prepared statement of either driver. */
struct db_stmt {
    struct db *db;             /* its connection */
    struct sqlite3_stmt *lite; /* SQLite: the statement */
    char *pg_sql;              /* PostgreSQL: the text, with $N placeholders */
    int n_params;              /* PostgreSQL: placeholders */
    char **vals;               /* PostgreSQL: bound values (text, or bytes for blobs) */
    int *lens;                 /* their lengths */
    int *fmts;                 /* 1 for binary (blobs) */
    unsigned *types;           /* type OIDs, 0: the server infers it */
    struct pg_result *res;     /* PostgreSQL: the result of the run */
    int row;                   /* current row, -1 before the first */
    unsigned char **blobs;     /* decoded bytea of the current row, by column */
    size_t *blob_lens;         /* their lengths */
};

/* The trust-data connection (store.h) and the data-table one (dtable.h). */
struct store {
    struct db core; /* the connection */
};
struct dtable_db {
    struct db core; /* the connection */
};

/* How core_connect opens (SQLite's SQLITE_OPEN_READONLY and _READWRITE). */
#define CORE_OPEN_READONLY 0x1
#define CORE_OPEN_READWRITE 0x2

/** Whether @p target names a PostgreSQL database (postgresql:// or postgres://). */
bool core_is_pg(const char *target);

/**
 * Open @p path with @p flags (CORE_OPEN_*), with extended result codes, a
 * 5 s busy timeout (SQLite retries a locked database for that long) and the
 * statement deadline of core_set_deadline; or, when @p path is a libpq
 * URI, connect to PostgreSQL (pg.c; read-only when @p flags says so).
 * @param label_path whether messages name the file ("database x.db: ...")
 *        or not ("database: ..."); a URI is named without its password
 * @return CG_OK, CG_ENOMEM or CG_EDB ("cannot open database PATH: why")
 */
int core_connect(struct db *db, const char *path, int flags, bool label_path, struct cg_err *err);
/** Finalise the cached statements and close; the struct itself stays. */
void core_disconnect(struct db *db);
/** Interrupt statements still running after @p deadline_ms (clock_ms); 0: never. */
void core_set_deadline(struct db *db, int64_t deadline_ms);
/** Whether the connection to the server is lost (PostgreSQL; SQLite: never). */
bool core_lost(struct db *db);
/**
 * Wait up to @p timeout_ms for another connection's announcement on
 * @p channel (PostgreSQL's LISTEN/NOTIFY: the first call listens, and so
 * does every reconnection), or until @p wake_fd (-1: none) is readable.
 * Announcements that arrived while other statements ran count too.
 * @param channel a static identifier (it is not quoted)
 * @return 1 announced, 0 not (timeout, woken, interrupted), CG_ENOTSUP on
 *         SQLite (nothing announces: poll), CG_EDB when the connection is
 *         lost (the next statement reconnects; announcements missed
 *         meanwhile are gone: read the state again)
 */
int core_wait_notify(struct db *db, const char *channel, int timeout_ms, int wake_fd);

/** The driver's message for the last failure. */
const char *core_errmsg(struct db *db);
/** Rows changed by the last INSERT, UPDATE or DELETE. */
int64_t core_changes(struct db *db);
/** Set @p err to "LABEL: @p what: the driver's message". @return CG_EDB */
int core_fail(struct db *db, struct cg_err *err, const char *what);
/** Run @p sql (no rows, no parameters). @return CG_OK or CG_EDB ("LABEL: why") */
int core_exec(struct db *db, const char *sql, struct cg_err *err);
/**
 * The statement for @p sql, prepared on its first use on this connection
 * and kept (the least recently used of STMT_CACHE goes first), reset and
 * unbound, ready to bind. Placeholders are SQLite's (? and ?N) on both
 * drivers.
 * @return the statement, or NULL with @p err set
 */
struct db_stmt *core_prep(struct db *db, const char *sql, struct cg_err *err);
/** Finalise the cached statements whose text contains @p name (before a DROP TABLE). */
void core_forget(struct db *db, const char *name);
/**
 * Step a statement that returns no row.
 * @return CG_OK; CG_EEXIST when a constraint refused it ("@p what: message");
 *         CG_EDB otherwise
 */
int core_step_done(struct db *db, struct db_stmt *st, struct cg_err *err, const char *what);
/**
 * Step a statement that should change a row (no row returned), and reset it.
 * @return as core_step_done; CG_ENOTFOUND when it changed none (@p err
 *         untouched, the caller names what is missing)
 */
int core_step_change(struct db *db, struct db_stmt *st, struct cg_err *err, const char *what);
/**
 * Step an INSERT, and reset it.
 * @param out_id the new row's id, set only on CG_OK
 * @return as core_step_done
 */
int core_step_insert(struct db *db, struct db_stmt *st, int64_t *out_id, struct cg_err *err,
                     const char *what);
/** The id the last INSERT on this connection made (SQLite's rowid; PostgreSQL's lastval()). */
int64_t core_last_id(struct db *db);

/* ---- statements: bind, step, read columns (either driver) ---- */

/* Text (@p len -1: up to the NUL), copied. */
int st_bind_text(struct db_stmt *st, int i, const char *v, int len);
/* Text the statement takes and frees (malloc'd). */
int st_bind_text_take(struct db_stmt *st, int i, char *v);
int st_bind_int64(struct db_stmt *st, int i, int64_t v);
int st_bind_int(struct db_stmt *st, int i, int v);
int st_bind_double(struct db_stmt *st, int i, double v);
int st_bind_null(struct db_stmt *st, int i);
int st_bind_blob(struct db_stmt *st, int i, const void *v, int len);
/* Run (the first call) or advance: DB_ROW, DB_DONE, DB_CONSTRAINT, DB_ERROR. */
int st_step(struct db_stmt *st);
/* Columns of the current row, from 0; text is NULL for SQL NULL. */
const unsigned char *st_column_text(struct db_stmt *st, int i);
int64_t st_column_int64(struct db_stmt *st, int i);
int st_column_int(struct db_stmt *st, int i);
double st_column_double(struct db_stmt *st, int i);
const void *st_column_blob(struct db_stmt *st, int i);
/* Bytes of the column's text, or of its blob once st_column_blob read it. */
int st_column_bytes(struct db_stmt *st, int i);
bool st_column_null(struct db_stmt *st, int i);
/* Columns of the result, their names, and a column's type in this row:
 * SQLite's storage classes (1 integer, 2 real, 3 text, 4 blob, 5 null);
 * PostgreSQL gives 3 (text) or 5 (null). */
int st_column_count(struct db_stmt *st);
const char *st_column_name(struct db_stmt *st, int i);
int st_column_type(struct db_stmt *st, int i);
/* Back to before the first step, bindings kept; st_clear_bindings drops them. */
void st_reset(struct db_stmt *st);
void st_clear_bindings(struct db_stmt *st);

/*
 * Transactions nest in one scheme: the outermost level is a transaction,
 * each inner one a savepoint (cg_1, cg_2, ...). Commit and rollback end the
 * innermost level. The write transaction takes the write lock at once
 * (SQLite: BEGIN IMMEDIATE, waiting in the busy handler; PostgreSQL: a
 * transaction-scoped advisory lock every writer of the database takes, with
 * a 5 s lock_timeout), so a busy database waits at begin instead of failing
 * at commit.
 */
/** Begin a write transaction, or a savepoint inside the open one. */
int core_begin(struct db *db, struct cg_err *err);
/** Begin a read transaction (one snapshot until it ends); it cannot nest. */
int core_read_begin(struct db *db, struct cg_err *err);
/** Commit the innermost level (COMMIT, or RELEASE of its savepoint). */
int core_commit(struct db *db, struct cg_err *err);
/** Roll back the innermost level; harmless when none is open. */
void core_rollback(struct db *db);
/** Roll back every level: the whole transaction. */
void core_rollback_all(struct db *db);
/**
 * End the innermost level as @p rc says: commit it when CG_OK, roll it back
 * otherwise (also when the commit fails).
 * @return @p rc, or the commit's failure
 */
int core_end(struct db *db, int rc, struct cg_err *err);

/* ---- the PostgreSQL driver (pg.c), which the functions above call ---- */
int pg_connect(struct db *db, const char *uri, bool read_only, struct cg_err *err);
void pg_disconnect(struct db *db);
int pg_exec(struct db *db, const char *sql, struct cg_err *err);
int pg_prepare(struct db_stmt *st, const char *sql);
int pg_bind(struct db_stmt *st, int i, const char *v, int len, unsigned type, bool binary);
int pg_step(struct db_stmt *st);
const char *pg_value(struct db_stmt *st, int i);
int pg_length(struct db_stmt *st, int i);
const void *pg_blob(struct db_stmt *st, int i);
int pg_column_count(struct db_stmt *st);
const char *pg_column_name(struct db_stmt *st, int i);
void pg_reset(struct db_stmt *st);
void pg_clear(struct db_stmt *st);
void pg_finalize(struct db_stmt *st);
bool pg_in_transaction(struct db *db);
bool pg_lost(struct db *db);
int pg_wait_notify(struct db *db, const char *channel, int timeout_ms, int wake_fd);
/** The URI without its password (malloc'd): for messages and logs. */
char *pg_redact(const char *uri);

/* A failed step or prepare on the trust-data connection: the message, and CG_EDB. */
static inline int db_fail(struct store *s, struct cg_err *err, const char *what)
{
    return core_fail(&s->core, err, what);
}
/* End the trust-data transaction level as @p rc says (core_end). */
static inline int store_end(struct store *s, int rc, struct cg_err *err)
{
    return core_end(&s->core, rc, err);
}
/* A trust statement, reset and unbound, ready to bind. */
struct db_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err);
static inline void done(struct db_stmt *st)
{
    if (st) {
        st_reset(st);
        st_clear_bindings(st);
    }
}

/** Reads the current row into @p record; returns 0 or a negative status. */
typedef int (*core_read_fn)(struct db_stmt *st, void *record);
/** Frees the members of one record. */
typedef void (*core_free_fn)(void *record);

/**
 * Step @p st to the end, reading each row with @p read into an array of
 * records of @p size bytes.
 * @param out_rows malloc'd array (NULL when empty); on failure nothing is returned
 * @param out_n number of records
 * @return 0, CG_ENOMEM, CG_EDB (the step failed) or what @p read returned
 */
int core_collect(struct db_stmt *st, size_t size, core_read_fn read, core_free_fn free_one,
                 void **out_rows, size_t *out_n);
/**
 * Step @p st for one row, read it with @p read into @p record, and reset
 * @p st.
 * @return CG_OK; CG_ENOTFOUND when there is no row (@p err untouched, the
 *         caller names what is missing); CG_EDB ("LABEL: @p what: why") when
 *         the step failed; or what @p read returned
 */
int core_one(struct db *db, struct db_stmt *st, core_read_fn read, void *record, const char *what,
             struct cg_err *err);
/**
 * Step @p st (NULL: its prepare failed) for one row and read its first
 * column into @p out, then reset it.
 * @return CG_OK, or CG_EDB when there is no row or the step failed (no message)
 */
int core_one_int64(struct db_stmt *st, int64_t *out);
/**
 * core_collect over @p st (NULL: its prepare failed, @p err is set), then
 * reset it: a list.
 * @return as core_collect; CG_EDB with @p err "LABEL: @p what: why"
 *         when the step failed
 */
int core_list(struct db *db, struct db_stmt *st, size_t size, core_read_fn read,
              core_free_fn free_one, void **out_rows, size_t *out_n, const char *what,
              struct cg_err *err);

/* Column @p i as a malloc'd string, NULL when SQL NULL (or out of memory). */
char *col_str(struct db_stmt *st, int i);
/* Column @p i copied into @p buf ("" when NULL). */
void col_buf(struct db_stmt *st, int i, char *buf, size_t size);
/* Column @p i as malloc'd bytes, NULL when empty. */
unsigned char *col_blob(struct db_stmt *st, int i, size_t *out_len);
/* Now, ISO 8601. */
void now_iso(char out[static 21]);
/* Binds text, or NULL for a NULL pointer. */
int bind_text(struct db_stmt *st, int i, const char *v);
/* Steps a statement that returns no row: CG_OK, CG_EEXIST (a constraint), CG_EDB. */
static inline int step_done(struct store *s, struct db_stmt *st, struct cg_err *err,
                            const char *what)
{
    return core_step_done(&s->core, st, err, what);
}
/* Steps an INSERT, and resets it (core_step_insert). */
static inline int step_insert(struct store *s, struct db_stmt *st, int64_t *out_id,
                              struct cg_err *err, const char *what)
{
    return core_step_insert(&s->core, st, out_id, err, what);
}
/* Steps a statement that should change a row, and resets it (core_step_change). */
static inline int step_change(struct store *s, struct db_stmt *st, struct cg_err *err,
                              const char *what)
{
    return core_step_change(&s->core, st, err, what);
}

#endif
