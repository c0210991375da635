#include "config.h"
#include "db/store.h"
#include "db/sqlrows.h"
#include "db/sqlite.h"
#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern const char *const cg_schema_sql[];

#define CA_COLS                                                                                    \
    "id, name, subject, issuer, serial, fingerprint, spki_sha256, ski, aki, not_before, "          \
    "not_after, is_root, path_len, der, pem, active, created_on, updated_on"
#define MAP_COLS                                                                                   \
    "m.id, m.user_id, u.name, m.kind, m.name, m.fingerprint, m.subject, m.issuer, m.serial, "      \
    "m.not_before, m.not_after, m.der, m.ca_id, m.match_field, m.match_value, m.active, "          \
    "m.created_on"

/* The CAs below CA ?1, at any depth: non-roots whose issuer is the subject
 * of one already found (and whose AKI, when both are known, is its SKI).
 * UNION, not UNION ALL, so that a loop of names ends. */
#define CA_BELOW                                                                                   \
    "WITH RECURSIVE below(id) AS (SELECT ?1 UNION "                                                \
    "SELECT c.id FROM below b JOIN sys_ca_certificate p ON p.id = b.id "                           \
    "JOIN sys_ca_certificate c ON c.issuer = p.subject AND c.id <> p.id AND c.is_root = 0 "        \
    "AND (c.aki = '' OR p.ski = '' OR c.aki = p.ski)), "                                           \
    "kids(id) AS (SELECT id FROM below WHERE id <> ?1) "

static const char *const stmt_sql[ST_COUNT] = {
    [ST_TRUST_VERSION] = "SELECT value FROM sys_meta WHERE key = 'trust_version'",
    [ST_CA_INSERT] = "INSERT INTO sys_ca_certificate (name, subject, issuer, serial, fingerprint, "
                     "spki_sha256, ski, aki, not_before, not_after, is_root, path_len, der, pem, "
                     "active, created_on, updated_on) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_CA_BY_ID] = "SELECT " CA_COLS " FROM sys_ca_certificate WHERE id = ?",
    [ST_CA_BY_FP] = "SELECT " CA_COLS " FROM sys_ca_certificate WHERE fingerprint = ?",
    [ST_CA_BY_FP_PREFIX] = "SELECT " CA_COLS " FROM sys_ca_certificate "
                           "WHERE substr(fingerprint, 1, length(?1)) = ?1 ORDER BY id LIMIT 2",
    [ST_CA_LIST] = "SELECT " CA_COLS " FROM sys_ca_certificate ORDER BY id",
    /* Every copy of the CA (same key) takes the new state. */
    [ST_CA_SET_ACTIVE] = "UPDATE sys_ca_certificate SET active = ?1, updated_on = ?2 "
                         "WHERE spki_sha256 = (SELECT spki_sha256 FROM sys_ca_certificate "
                         "WHERE id = ?3) AND (active <> ?1 OR id = ?3)",
    [ST_CA_DEPS] =
        CA_BELOW "SELECT "
                 "(SELECT count(*) FROM kids), "
                 "(SELECT count(*) FROM sys_user_certificate WHERE kind = 'rule' AND ca_id = ?1), "
                 "(SELECT count(*) FROM sys_user_certificate m, sys_ca_certificate c "
                 " WHERE c.id = ?1 AND m.kind <> 'rule' AND m.issuer = c.subject), "
                 "(SELECT count(*) FROM sys_user_certificate WHERE kind = 'rule' "
                 " AND ca_id IN kids), "
                 "(SELECT count(*) FROM sys_user_certificate m WHERE m.kind <> 'rule' "
                 " AND m.issuer IN (SELECT subject FROM sys_ca_certificate WHERE id IN kids) "
                 " AND m.issuer NOT IN (SELECT subject FROM sys_ca_certificate WHERE id = ?1)), "
                 "(SELECT count(*) FROM sys_crl r, sys_ca_certificate c WHERE c.id = ?1 "
                 " AND r.signer_spki = c.spki_sha256 AND r.issuer = c.subject)",
    [ST_CA_CHILDREN] = CA_BELOW "SELECT id, subject FROM sys_ca_certificate "
                                "WHERE id IN kids ORDER BY id LIMIT 4",
    [ST_CA_DELETE] = "DELETE FROM sys_ca_certificate WHERE id = ?",
    [ST_CA_DELETE_RULES] = "DELETE FROM sys_user_certificate WHERE kind = 'rule' AND ca_id = ?",
    /* Another record of the same CA (name and key) as record ?1. */
    [ST_CA_COPY] = "SELECT o.id FROM sys_ca_certificate o, sys_ca_certificate c WHERE c.id = ?1 "
                   "AND o.id <> c.id AND o.spki_sha256 = c.spki_sha256 AND o.subject = c.subject "
                   "ORDER BY o.active DESC, o.id LIMIT 1",
    [ST_CA_COPY_DISABLED] = "SELECT id FROM sys_ca_certificate WHERE spki_sha256 = ? "
                            "AND active = 0 ORDER BY id LIMIT 1",
    [ST_CA_MOVE_RULES] = "UPDATE sys_user_certificate SET ca_id = ?2 WHERE kind = 'rule' "
                         "AND ca_id = ?1",
    [ST_CA_BURY] = "INSERT INTO sys_ca_deleted (spki_sha256, subject, fingerprint, deleted_at, "
                   "deleted_on) SELECT spki_sha256, subject, fingerprint, ?2, ?3 "
                   "FROM sys_ca_certificate WHERE id = ?1 ON CONFLICT (spki_sha256) DO UPDATE "
                   "SET subject = excluded.subject, fingerprint = excluded.fingerprint, "
                   "deleted_at = excluded.deleted_at, deleted_on = excluded.deleted_on",
    [ST_CA_UNBURY] = "DELETE FROM sys_ca_deleted WHERE spki_sha256 = ?",
    [ST_CA_DELETED_LIST] = "SELECT spki_sha256, subject, fingerprint, deleted_at, deleted_on "
                           "FROM sys_ca_deleted ORDER BY deleted_at, spki_sha256",
    [ST_CRL_SCOPE] = "SELECT count(*), coalesce(max(id), 0) FROM sys_crl WHERE issuer = ? "
                     "AND signer_spki = ?",
    [ST_CRL_DELETE_SCOPE] = "DELETE FROM sys_crl WHERE issuer = ? AND signer_spki = ?",
    [ST_CRL_INSERT] = "INSERT INTO sys_crl (issuer, signer_spki, fingerprint, this_update, "
                      "next_update, revoked_count, der, created_on) VALUES (?,?,?,?,?,?,?,?)",
    [ST_CRL_LIST] = "SELECT id, signer_spki, issuer, fingerprint, this_update, next_update, "
                    "revoked_count, der, created_on FROM sys_crl ORDER BY id",
    [ST_USER_INSERT] = "INSERT INTO sys_user (name, password_hash, created_on, updated_on) "
                       "VALUES (?,?,?,?)",
    [ST_USER_SAME_CASE] = "SELECT name FROM sys_user WHERE name = ?1 COLLATE NOCASE "
                          "AND name <> ?1 ORDER BY id LIMIT 1",
    [ST_USER_BY_NAME] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                        "FROM sys_user WHERE name = ?",
    [ST_USER_BY_ID] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                      "FROM sys_user WHERE id = ?",
    [ST_USER_LIST] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                     "FROM sys_user ORDER BY name",
    [ST_USER_ROLES] = "SELECT role FROM sys_user_role WHERE user_id = ? ORDER BY role",
    [ST_ROLE_INSERT] = "INSERT OR IGNORE INTO sys_user_role (user_id, role) VALUES (?,?)",
    [ST_ROLE_CLEAR] = "DELETE FROM sys_user_role WHERE user_id = ?",
    [ST_USER_SET_LOCKED] = "UPDATE sys_user SET locked = ?, updated_on = ? WHERE name = ?",
    [ST_USER_SET_PASSWORD] = "UPDATE sys_user SET password_hash = ?, updated_on = ? "
                             "WHERE name = ?",
    [ST_USER_TOUCH] = "UPDATE sys_user SET updated_on = ? WHERE id = ?",
    [ST_USER_DELETE] = "DELETE FROM sys_user WHERE name = ?",
    [ST_MAP_INSERT] = "INSERT INTO sys_user_certificate (user_id, kind, name, fingerprint, "
                      "subject, issuer, serial, not_before, not_after, der, ca_id, match_field, "
                      "match_value, active, created_on) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_MAP_BY_ID] = "SELECT " MAP_COLS " FROM sys_user_certificate m JOIN sys_user u "
                     "ON u.id = m.user_id WHERE m.id = ?",
    [ST_MAP_BY_FP] = "SELECT " MAP_COLS " FROM sys_user_certificate m JOIN sys_user u "
                     "ON u.id = m.user_id WHERE m.fingerprint = ?",
    [ST_MAP_LIST] = "SELECT " MAP_COLS " FROM sys_user_certificate m JOIN sys_user u "
                    "ON u.id = m.user_id ORDER BY m.id",
    [ST_MAP_LIST_USER] = "SELECT " MAP_COLS " FROM sys_user_certificate m JOIN sys_user u "
                         "ON u.id = m.user_id WHERE u.name = ? ORDER BY m.id",
    [ST_MAP_DELETE] = "DELETE FROM sys_user_certificate WHERE id = ?",
    [ST_MAP_RULE_EXISTS] = "SELECT m.id, u.name FROM sys_user_certificate m JOIN sys_user u ON "
                           "u.id = m.user_id WHERE m.kind = 'rule' AND m.ca_id = ? AND "
                           "m.match_field = ? AND m.match_value = ?",
};

int store_schema_latest(void)
{
    int n = 0;

    while (cg_schema_sql[n])
        n++;
    return n;
}

/* ---- the connection ---- */

int sqlite_fail(struct db *db, struct cg_err *err, const char *what)
{
    cg_err_set(err, "%s: %s: %s", db->label, what, sqlite3_errmsg(db->conn));
    return CG_EDB;
}

int sqlite_exec(struct db *db, const char *sql, struct cg_err *err)
{
    char *msg = NULL;

    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cg_err_set(err, "%s: %s", db->label, msg ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return CG_EDB;
    }
    return CG_OK;
}

sqlite3_stmt *sqlite_prep(struct db *db, const char *sql, struct cg_err *err)
{
    struct cached *slot = &db->cache[0];

    for (int i = 0; i < STMT_CACHE; i++) {
        struct cached *c = &db->cache[i];

        if (c->sql && strcmp(c->sql, sql) == 0) {
            c->used = ++db->tick;
            sqlite3_reset(c->st);
            sqlite3_clear_bindings(c->st);
            return c->st;
        }
        if (!c->sql || c->used < slot->used)
            slot = c;
    }
    if (slot->sql) {
        sqlite3_finalize(slot->st);
        free(slot->sql);
        slot->sql = NULL;
    }
    if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &slot->st, NULL) !=
        SQLITE_OK) {
        sqlite_fail(db, err, "prepare");
        slot->st = NULL;
        return NULL;
    }
    slot->sql = strdup(sql);
    if (!slot->sql) {
        sqlite3_finalize(slot->st);
        slot->st = NULL;
        return NULL;
    }
    slot->used = ++db->tick;
    return slot->st;
}

void sqlite_forget(struct db *db, const char *name)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        if (db->cache[i].sql && strstr(db->cache[i].sql, name)) {
            sqlite3_finalize(db->cache[i].st);
            free(db->cache[i].sql);
            db->cache[i].sql = NULL;
            db->cache[i].st = NULL;
        }
    }
}

int sqlite_step_done(struct db *db, sqlite3_stmt *st, struct cg_err *err, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_DONE)
        return CG_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        cg_err_set(err, "%s: %s", what, sqlite3_errmsg(db->conn));
        return CG_EEXIST;
    }
    return sqlite_fail(db, err, what);
}

/* SQLite's progress handler: a non-zero return interrupts the statement. */
static int over_deadline(void *arg)
{
    struct db *db = arg;

    return db->deadline_ms && clock_ms() > db->deadline_ms;
}

void sqlite_set_deadline(struct db *db, int64_t deadline_ms)
{
    db->deadline_ms = deadline_ms;
}

int sqlite_connect(struct db *db, const char *path, int flags, bool label_path, struct cg_err *err)
{
    size_t len = strlen("database ") + strlen(path) + 1;

    db->label = malloc(len);
    if (!db->label)
        return CG_ENOMEM;
    if (label_path)
        snprintf(db->label, len, "database %s", path);
    else
        snprintf(db->label, len, "database");
    if (sqlite3_open_v2(path, &db->conn, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        cg_err_set(err, "cannot open database %s: %s", path,
                   db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        return CG_EDB;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, 5000);
    sqlite3_progress_handler(db->conn, 10000, over_deadline, db);
    return CG_OK;
}

void sqlite_disconnect(struct db *db)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(db->cache[i].st);
        free(db->cache[i].sql);
    }
    sqlite3_close(db->conn);
    free(db->label);
    memset(db, 0, sizeof(*db));
}

/* ---- transactions ---- */

int sqlite_begin(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth == 0)
        rc = sqlite_exec(db, "BEGIN IMMEDIATE", err);
    else {
        snprintf(sql, sizeof(sql), "SAVEPOINT cg_%d", db->depth);
        rc = sqlite_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int sqlite_read_begin(struct db *db, struct cg_err *err)
{
    int rc;

    if (db->depth != 0) {
        cg_err_set(err, "a read transaction cannot nest in another transaction");
        return CG_EDB;
    }
    /* DEFERRED: the snapshot is taken at the first read and holds until
     * the end, however another connection writes meanwhile (WAL). */
    rc = sqlite_exec(db, "BEGIN DEFERRED", err);
    if (rc == CG_OK)
        db->depth++;
    return rc;
}

int sqlite_commit(struct db *db, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (db->depth <= 0) {
        cg_err_set(err, "commit without a transaction");
        return CG_EDB;
    }
    if (db->depth == 1)
        rc = sqlite_exec(db, "COMMIT", err);
    else {
        snprintf(sql, sizeof(sql), "RELEASE cg_%d", db->depth - 1);
        rc = sqlite_exec(db, sql, err);
    }
    if (rc == CG_OK)
        db->depth--;
    return rc;
}

void sqlite_rollback(struct db *db)
{
    char sql[80];

    if (db->depth <= 0)
        return;
    if (db->depth == 1) {
        if (!sqlite3_get_autocommit(db->conn))
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    } else {
        snprintf(sql, sizeof(sql), "ROLLBACK TO cg_%d; RELEASE cg_%d", db->depth - 1,
                 db->depth - 1);
        sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
    }
    db->depth--;
}

void sqlite_rollback_all(struct db *db)
{
    if (!sqlite3_get_autocommit(db->conn))
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    db->depth = 0;
}

/* ---- the trust-data connection (store.h) ---- */

sqlite3_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err)
{
    return sqlite_prep(&s->core, stmt_sql[id], err);
}

static int pragma_int(struct store *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = CG_EDB;

    if (sqlite3_prepare_v2(s->core.conn, sql, -1, &st, NULL) != SQLITE_OK)
        return CG_EDB;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = CG_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int count_tables(struct store *s, int *out)
{
    return pragma_int(s, "SELECT count(*) FROM sqlite_master", out);
}

/* Applies the migrations after @p from in one transaction. */
static int migrate(struct store *s, int from, struct cg_err *err)
{
    int latest = store_schema_latest(), rc;
    char sql[64];

    rc = sqlite_begin(&s->core, err);
    if (rc)
        return rc;
    /* Another process may have upgraded it meanwhile. */
    rc = pragma_int(s, "PRAGMA user_version", &from);
    if (rc) {
        db_fail(s, err, "read the schema version");
        goto out;
    }
    for (int v = from + 1; v <= latest; v++) {
        rc = sqlite_exec(&s->core, cg_schema_sql[v - 1], err);
        if (rc)
            goto out;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", latest);
    rc = sqlite_exec(&s->core, sql, err);
    if (rc)
        goto out;
    rc = sqlite_commit(&s->core, err);
out:
    if (rc)
        sqlite_rollback(&s->core);
    return rc;
}

int store_open(const char *path, enum store_mode mode, struct store **out_store, struct cg_err *err)
{
    struct store *s = NULL;
    struct stat st;
    int flags, version = 0, tables = 0, latest = store_schema_latest(), rc = CG_EDB;
    bool is_new = false;

    if (!path || !*path) {
        cg_err_set(err, "no database file given");
        return CG_EINVAL;
    }
    if (stat(path, &st) != 0) {
        if (mode != STORE_OPEN_INIT) {
            cg_err_set(err, "database %s does not exist: run certgate init", path);
            return CG_ENOTFOUND;
        }
        is_new = true;
    } else if (!S_ISREG(st.st_mode)) {
        cg_err_set(err, "%s is not a certgate database (not a regular file)", path);
        return CG_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return CG_ENOMEM;
    if (is_new) {
        /* Create it 0600 ourselves: it holds password hashes. */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

        if (fd < 0 && errno != EEXIST) {
            cg_err_set(err, "cannot create database %s: %s", path, strerror(errno));
            rc = CG_EIO;
            goto out;
        }
        if (fd >= 0)
            close(fd);
    }
    flags = mode == STORE_OPEN_READONLY ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    rc = sqlite_connect(&s->core, path, flags, true, err);
    if (rc)
        goto out;
    rc = CG_EDB;
    if (count_tables(s, &tables)) {
        cg_err_set(err, "%s is not a certgate database (%s)", path, sqlite3_errmsg(s->core.conn));
        rc = CG_EINVAL;
        goto out;
    }
    if (pragma_int(s, "PRAGMA user_version", &version)) {
        db_fail(s, err, "read the schema version");
        goto out;
    }
    if (version == 0 && tables > 0) {
        cg_err_set(err, "%s is not a certgate database (it has tables but no certgate schema)",
                   path);
        rc = CG_EINVAL;
        goto out;
    }
    if (version > latest) {
        cg_err_set(err,
                   "database %s has schema version %d, newer than this certgate (%d): "
                   "upgrade certgate",
                   path, version, latest);
        rc = CG_EVERSION;
        goto out;
    }
    /* Every refusal is decided before the first write: switching to WAL
     * writes the file header, so an empty file would turn into a database. */
    if (mode == STORE_OPEN_READONLY && version < latest) {
        cg_err_set(err,
                   "database %s has schema version %d, older than this certgate (%d): "
                   "run certgate init to upgrade it",
                   path, version, latest);
        rc = CG_EVERSION;
        goto out;
    }
    if (version == 0 && mode != STORE_OPEN_INIT) {
        cg_err_set(err, "%s is not a certgate database: run certgate init", path);
        rc = CG_EINVAL;
        goto out;
    }
    if (mode != STORE_OPEN_READONLY) {
        rc = sqlite_exec(&s->core, "PRAGMA journal_mode = WAL", err);
        if (rc)
            goto out;
        if (version < latest) {
            rc = migrate(s, version, err);
            if (rc)
                goto out;
        }
    }
    rc = sqlite_exec(&s->core, "PRAGMA foreign_keys = ON", err);
    if (rc)
        goto out;
    rc = sqlite_exec(&s->core, "PRAGMA synchronous = FULL", err);
    if (rc)
        goto out;
    *out_store = s;
    return CG_OK;
out:
    store_close(s);
    if (is_new && rc != CG_OK)
        unlink(path);
    return rc == CG_OK ? CG_EDB : rc;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    sqlite_disconnect(&s->core);
    free(s);
}

int store_schema_version(struct store *s)
{
    int v = -1;

    if (pragma_int(s, "PRAGMA user_version", &v))
        return -1;
    return v;
}

int store_trust_version(struct store *s, int64_t *out_version)
{
    sqlite3_stmt *st = stmt(s, ST_TRUST_VERSION, NULL);
    int rc = CG_EDB;

    if (!st)
        return CG_EDB;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out_version = sqlite3_column_int64(st, 0);
        rc = CG_OK;
    }
    done(st);
    return rc;
}

int store_begin(struct store *s, struct cg_err *err)
{
    return sqlite_begin(&s->core, err);
}

int store_commit(struct store *s, struct cg_err *err)
{
    return sqlite_commit(&s->core, err);
}

int store_read_begin(struct store *s, struct cg_err *err)
{
    return sqlite_read_begin(&s->core, err);
}

void store_rollback(struct store *s)
{
    if (s)
        sqlite_rollback(&s->core);
}

/* ---- helpers ---- */

char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    return t ? strdup((const char *)t) : NULL;
}

void col_buf(sqlite3_stmt *st, int i, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    snprintf(buf, size, "%s", t ? (const char *)t : "");
}

unsigned char *col_blob(sqlite3_stmt *st, int i, size_t *out_len)
{
    const void *b = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    unsigned char *copy;

    *out_len = 0;
    if (!b || n <= 0)
        return NULL;
    copy = malloc((size_t)n);
    if (!copy)
        return NULL;
    memcpy(copy, b, (size_t)n);
    *out_len = (size_t)n;
    return copy;
}

void now_iso(char out[static 21])
{
    cg_time_iso(cg_now(), out);
}

int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}
