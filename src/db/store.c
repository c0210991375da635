#include "config.h"
#include "db/store.h"
#include "db/sqlrows.h"
#include "db/store_int.h"

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

int db_fail(struct store *s, struct cg_err *err, const char *what)
{
    cg_err_set(err, "database %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
    return CG_EDB;
}

/* A prepared statement, reset and unbound, ready to bind. */
sqlite3_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err)
{
    if (!s->stmt[id]) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id],
                               NULL) != SQLITE_OK) {
            db_fail(s, err, "prepare");
            return NULL;
        }
    }
    sqlite3_reset(s->stmt[id]);
    sqlite3_clear_bindings(s->stmt[id]);
    return s->stmt[id];
}

static int exec(struct store *s, const char *sql, struct cg_err *err)
{
    char *msg = NULL;

    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cg_err_set(err, "database %s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return CG_EDB;
    }
    return CG_OK;
}

static int pragma_int(struct store *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = CG_EDB;

    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
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

    rc = exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    /* Another process may have upgraded it meanwhile. */
    rc = pragma_int(s, "PRAGMA user_version", &from);
    if (rc) {
        db_fail(s, err, "read the schema version");
        goto out;
    }
    for (int v = from + 1; v <= latest; v++) {
        rc = exec(s, cg_schema_sql[v - 1], err);
        if (rc)
            goto out;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", latest);
    rc = exec(s, sql, err);
    if (rc)
        goto out;
    rc = exec(s, "COMMIT", err);
out:
    if (rc)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
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
    s->path = strdup(path);
    if (!s->path) {
        rc = CG_ENOMEM;
        goto out;
    }
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
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        cg_err_set(err, "cannot open database %s: %s", path,
                   s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if (count_tables(s, &tables)) {
        cg_err_set(err, "%s is not a certgate database (%s)", path, sqlite3_errmsg(s->db));
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
        rc = exec(s, "PRAGMA journal_mode = WAL", err);
        if (rc)
            goto out;
        if (version < latest) {
            rc = migrate(s, version, err);
            if (rc)
                goto out;
        }
    }
    rc = exec(s, "PRAGMA foreign_keys = ON", err);
    if (rc)
        goto out;
    rc = exec(s, "PRAGMA synchronous = FULL", err);
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
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s->path);
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

/* Transactions nest: the outermost level is BEGIN IMMEDIATE (the write lock
 * at once, so a busy database waits in the busy handler instead of failing
 * at commit), inner levels are savepoints. */
int store_begin(struct store *s, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (s->depth == 0)
        rc = exec(s, "BEGIN IMMEDIATE", err);
    else {
        snprintf(sql, sizeof(sql), "SAVEPOINT cg_%d", s->depth);
        rc = exec(s, sql, err);
    }
    if (rc == CG_OK)
        s->depth++;
    return rc;
}

int store_commit(struct store *s, struct cg_err *err)
{
    char sql[48];
    int rc;

    if (s->depth <= 0) {
        cg_err_set(err, "commit without a transaction");
        return CG_EDB;
    }
    if (s->depth == 1)
        rc = exec(s, "COMMIT", err);
    else {
        snprintf(sql, sizeof(sql), "RELEASE cg_%d", s->depth - 1);
        rc = exec(s, sql, err);
    }
    if (rc == CG_OK)
        s->depth--;
    return rc;
}

int store_read_begin(struct store *s, struct cg_err *err)
{
    int rc;

    if (s->depth != 0) {
        cg_err_set(err, "a read transaction cannot nest in another transaction");
        return CG_EDB;
    }
    /* DEFERRED: the snapshot is taken at the first read and holds until
     * the end, however the CLI writes meanwhile (WAL). */
    rc = exec(s, "BEGIN DEFERRED", err);
    if (rc == CG_OK)
        s->depth++;
    return rc;
}

void store_rollback(struct store *s)
{
    char sql[80];

    if (!s || s->depth <= 0)
        return;
    if (s->depth == 1) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    } else {
        snprintf(sql, sizeof(sql), "ROLLBACK TO cg_%d; RELEASE cg_%d", s->depth - 1, s->depth - 1);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    }
    s->depth--;
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

int step_done(struct store *s, sqlite3_stmt *st, struct cg_err *err, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_DONE)
        return CG_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        cg_err_set(err, "%s: %s", what, sqlite3_errmsg(s->db));
        return CG_EEXIST;
    }
    return db_fail(s, err, what);
}

/* ---- CA certificate chain table ---- */

static int read_ca(sqlite3_stmt *st, struct store_ca *ca)
{
    memset(ca, 0, sizeof(*ca));
    ca->id = sqlite3_column_int64(st, 0);
    ca->name = col_str(st, 1);
    ca->subject = col_str(st, 2);
    ca->issuer = col_str(st, 3);
    ca->serial = col_str(st, 4);
    col_buf(st, 5, ca->fingerprint, sizeof(ca->fingerprint));
    col_buf(st, 6, ca->spki_sha256, sizeof(ca->spki_sha256));
    col_buf(st, 7, ca->ski, sizeof(ca->ski));
    col_buf(st, 8, ca->aki, sizeof(ca->aki));
    ca->not_before = sqlite3_column_int64(st, 9);
    ca->not_after = sqlite3_column_int64(st, 10);
    ca->is_root = sqlite3_column_int(st, 11) != 0;
    ca->path_len = sqlite3_column_int(st, 12);
    ca->der = col_blob(st, 13, &ca->der_len);
    ca->pem = col_str(st, 14);
    ca->is_active = sqlite3_column_int(st, 15) != 0;
    col_buf(st, 16, ca->created_on, sizeof(ca->created_on));
    col_buf(st, 17, ca->updated_on, sizeof(ca->updated_on));
    if (!ca->subject || !ca->issuer || !ca->serial || !ca->der || !ca->pem) {
        store_ca_free(ca);
        return CG_ENOMEM;
    }
    return CG_OK;
}

/* Whether the key @p spki is a disabled CA's: 1 yes, 0 no, negative on failure. */
static int key_is_disabled(struct store *s, const char *spki, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_COPY_DISABLED, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, spki);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_fail(s, err, "read CA state");
    done(st);
    return rc;
}

/* Forgets that the CA with key @p spki was deleted; *out_was tells whether it was. */
static int unbury(struct store *s, const char *spki, bool *out_was, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_UNBURY, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, spki);
    rc = step_done(s, st, err, "forget a deleted CA");
    *out_was = rc == CG_OK && sqlite3_changes(s->db) > 0;
    done(st);
    return rc;
}

int store_ca_insert(struct store *s, struct store_ca *ca, struct cg_err *err)
{
    sqlite3_stmt *st;
    char now[21];
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    /* A copy of a disabled CA is the same CA: it comes in disabled. */
    rc = key_is_disabled(s, ca->spki_sha256, err);
    if (rc < 0)
        goto out;
    if (rc == 1)
        ca->is_active = false;
    rc = unbury(s, ca->spki_sha256, &ca->was_deleted, err);
    if (rc)
        goto out;
    st = stmt(s, ST_CA_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, ca->name);
    bind_text(st, 2, ca->subject);
    bind_text(st, 3, ca->issuer);
    bind_text(st, 4, ca->serial);
    bind_text(st, 5, ca->fingerprint);
    bind_text(st, 6, ca->spki_sha256);
    bind_text(st, 7, ca->ski);
    bind_text(st, 8, ca->aki);
    sqlite3_bind_int64(st, 9, ca->not_before);
    sqlite3_bind_int64(st, 10, ca->not_after);
    sqlite3_bind_int(st, 11, ca->is_root ? 1 : 0);
    sqlite3_bind_int(st, 12, ca->path_len);
    sqlite3_bind_blob(st, 13, ca->der, (int)ca->der_len, SQLITE_TRANSIENT);
    bind_text(st, 14, ca->pem);
    sqlite3_bind_int(st, 15, ca->is_active ? 1 : 0);
    bind_text(st, 16, now);
    bind_text(st, 17, now);
    rc = step_done(s, st, err, "add CA");
    if (rc == CG_EEXIST)
        cg_err_set(err, "a CA with fingerprint %s is already in the table", ca->fingerprint);
    if (rc == CG_OK) {
        ca->id = sqlite3_last_insert_rowid(s->db);
        snprintf(ca->created_on, sizeof(ca->created_on), "%s", now);
        snprintf(ca->updated_on, sizeof(ca->updated_on), "%s", now);
    }
    done(st);
    if (rc == CG_OK)
        rc = store_commit(s, err);
out:
    if (rc)
        store_rollback(s);
    return rc;
}

static int ca_one(struct store *s, sqlite3_stmt *st, struct store_ca *out, struct cg_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        rc = read_ca(st, out);
    else if (rc == SQLITE_DONE)
        rc = CG_ENOTFOUND;
    else
        rc = db_fail(s, err, "read CA");
    done(st);
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no such CA");
    return rc;
}

int store_ca_get_by_fingerprint(struct store *s, const char *fingerprint, struct store_ca *out_ca,
                                struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_BY_FP, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, fingerprint);
    return ca_one(s, st, out_ca, err);
}

int store_ca_find(struct store *s, const char *id_or_fp, struct store_ca *out_ca,
                  struct cg_err *err)
{
    sqlite3_stmt *st;
    char hex[65];
    size_t n = 0;
    int rc;

    if (!id_or_fp || !*id_or_fp) {
        cg_err_set(err, "no CA id or fingerprint given");
        return CG_EINVAL;
    }
    if (strspn(id_or_fp, "0123456789") == strlen(id_or_fp) && strlen(id_or_fp) < 16) {
        st = stmt(s, ST_CA_BY_ID, err);
        if (!st)
            return CG_EDB;
        sqlite3_bind_int64(st, 1, strtoll(id_or_fp, NULL, 10));
        return ca_one(s, st, out_ca, err);
    }
    for (const char *p = id_or_fp; *p; p++) {
        char c = *p;

        if (c == ':')
            continue;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n >= 64) {
            cg_err_set(err, "'%s' is neither a CA id nor a SHA-256 fingerprint", id_or_fp);
            return CG_ENOTFOUND;
        }
        hex[n++] = c;
    }
    hex[n] = '\0';
    if (n < 8) {
        cg_err_set(err, "a fingerprint prefix needs at least 8 hex digits");
        return CG_ENOTFOUND;
    }
    st = stmt(s, ST_CA_BY_FP_PREFIX, err);
    if (!st)
        return CG_EDB;
    bind_text(st, 1, hex);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        done(st);
        cg_err_set(err, "no CA with fingerprint %s", hex);
        return CG_ENOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        done(st);
        return db_fail(s, err, "find CA");
    }
    rc = read_ca(st, out_ca);
    if (rc == CG_OK && sqlite3_step(st) == SQLITE_ROW) {
        store_ca_free(out_ca);
        cg_err_set(err, "fingerprint prefix %s matches more than one CA: give more digits", hex);
        rc = CG_EINVAL;
    }
    done(st);
    return rc;
}

static int read_ca_row(sqlite3_stmt *st, void *rec)
{
    return read_ca(st, rec);
}

static void free_ca_row(void *rec)
{
    store_ca_free(rec);
}

int store_ca_list(struct store *s, struct store_ca **out_cas, size_t *out_n, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_LIST, err);
    int rc;

    *out_cas = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = sqlrows_collect(st, sizeof(**out_cas), read_ca_row, free_ca_row, (void **)out_cas, out_n);
    if (rc == CG_EDB)
        db_fail(s, err, "list CAs");
    done(st);
    return rc;
}

int store_ca_set_active(struct store *s, int64_t id, bool is_active, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_SET_ACTIVE, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    sqlite3_bind_int(st, 1, is_active ? 1 : 0);
    bind_text(st, 2, now);
    sqlite3_bind_int64(st, 3, id);
    rc = step_done(s, st, err, "update CA");
    if (rc == CG_OK && sqlite3_changes(s->db) == 0) {
        cg_err_set(err, "no CA with id %lld", (long long)id);
        rc = CG_ENOTFOUND;
    }
    done(st);
    return rc;
}

int store_ca_dependents(struct store *s, int64_t id, struct store_ca_deps *out_deps,
                        struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_DEPS, err);
    int rc = CG_OK;

    memset(out_deps, 0, sizeof(*out_deps));
    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out_deps->child_cas = sqlite3_column_int64(st, 0);
        out_deps->rules = sqlite3_column_int64(st, 1);
        out_deps->mappings = sqlite3_column_int64(st, 2);
        out_deps->child_rules = sqlite3_column_int64(st, 3);
        out_deps->child_mappings = sqlite3_column_int64(st, 4);
        out_deps->crls = sqlite3_column_int64(st, 5);
    } else {
        rc = db_fail(s, err, "count what depends on a CA");
    }
    done(st);
    return rc;
}

static const char *plural(int64_t n)
{
    return n == 1 ? "" : "s";
}

/* The refusal naming what depends on CA @p id: "CA 2 has 1 mapped
 * certificate it issued, 1 child CA (CA 1 CN=...) ... depending on it". */
static int refuse_delete(struct store *s, int64_t id, const struct store_ca_deps *d,
                         struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_CHILDREN, err);
    char what[400] = "", kids[256] = "";
    size_t wl = 0, kl = 0;
    int64_t shown = 0;

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    while (shown < 3 && sqlite3_step(st) == SQLITE_ROW) {
        cg_strappend(kids, sizeof(kids), &kl, "%sCA %lld %s", shown ? ", " : "",
                     (long long)sqlite3_column_int64(st, 0),
                     (const char *)sqlite3_column_text(st, 1));
        shown++;
    }
    done(st);
    if (d->child_cas > shown)
        cg_strappend(kids, sizeof(kids), &kl, ", ...");
    if (d->rules)
        cg_strappend(what, sizeof(what), &wl, "%lld rule%s bound to it", (long long)d->rules,
                     plural(d->rules));
    if (d->mappings)
        cg_strappend(what, sizeof(what), &wl, "%s%lld mapped certificate%s it issued",
                     wl ? ", " : "", (long long)d->mappings, plural(d->mappings));
    if (d->child_cas)
        cg_strappend(what, sizeof(what), &wl, "%s%lld child CA%s (%s)", wl ? ", " : "",
                     (long long)d->child_cas, plural(d->child_cas), kids);
    if (d->child_rules || d->child_mappings)
        cg_strappend(what, sizeof(what), &wl,
                     "%s%lld rule%s and %lld mapped certificate%s below it", wl ? " with " : "",
                     (long long)d->child_rules, plural(d->child_rules),
                     (long long)d->child_mappings, plural(d->child_mappings));
    cg_err_set(err,
               "CA %lld has %s depending on it, and clients chaining through it would be "
               "refused: use --force to delete it anyway (its own rules go with it)",
               (long long)id, what);
    return CG_EDEPEND;
}

/* Another record of the same CA as @p id, 0 when none: 0 or positive,
 * negative on failure. */
static int64_t copy_of(struct store *s, int64_t id, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_COPY, err);
    int64_t other;
    int rc;

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    other = rc == SQLITE_ROW    ? sqlite3_column_int64(st, 0)
            : rc == SQLITE_DONE ? 0
                                : db_fail(s, err, "find copies of a CA");
    done(st);
    return other;
}

static int run_ids(struct store *s, enum stmt_id id, int64_t a, int64_t b, const char *what,
                   struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, id, err);
    int rc;

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, a);
    if (b)
        sqlite3_bind_int64(st, 2, b);
    rc = step_done(s, st, err, what);
    done(st);
    return rc;
}

/* Deletes the last record of a CA, keeping its key refused (sys_ca_deleted):
 * a renewed or cross-signed copy of it that a client sends is the same CA. */
static int delete_last_copy(struct store *s, int64_t id, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_BURY, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, cg_now());
    bind_text(st, 3, now);
    rc = step_done(s, st, err, "remember the deleted CA");
    done(st);
    if (rc)
        return rc;
    return run_ids(s, ST_CA_DELETE_RULES, id, 0, "delete rules", err);
}

int store_ca_delete(struct store *s, int64_t id, bool force, struct store_ca_deps *out_deps,
                    struct cg_err *err)
{
    struct store_ca_deps d;
    int64_t other;
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    rc = store_ca_dependents(s, id, &d, err);
    if (rc)
        goto out;
    other = copy_of(s, id, err);
    if (other < 0) {
        rc = (int)other;
        goto out;
    }
    d.copy_id = other;
    if (out_deps)
        *out_deps = d;
    if (other) {
        /* The CA stays in the table through its other copy: what was bound
         * to this record is bound to that one. */
        rc = run_ids(s, ST_CA_MOVE_RULES, id, other, "move rules", err);
    } else if ((d.child_cas || d.rules || d.mappings || d.child_rules || d.child_mappings) &&
               !force) {
        rc = refuse_delete(s, id, &d, err);
    } else {
        rc = delete_last_copy(s, id, err);
    }
    if (rc)
        goto out;
    rc = run_ids(s, ST_CA_DELETE, id, 0, "delete CA", err);
    if (rc == CG_OK && sqlite3_changes(s->db) == 0) {
        cg_err_set(err, "no CA with id %lld", (long long)id);
        rc = CG_ENOTFOUND;
    }
    if (rc)
        goto out;
    rc = store_commit(s, err);
out:
    if (rc)
        store_rollback(s);
    return rc;
}

void store_ca_free(struct store_ca *ca)
{
    if (!ca)
        return;
    free(ca->name);
    free(ca->subject);
    free(ca->issuer);
    free(ca->serial);
    free(ca->der);
    free(ca->pem);
    memset(ca, 0, sizeof(*ca));
}

void store_ca_list_free(struct store_ca *cas, size_t n)
{
    for (size_t i = 0; cas && i < n; i++)
        store_ca_free(&cas[i]);
    free(cas);
}

/* ---- CRLs ---- */

int store_crl_scope(struct store *s, const char *issuer, const char *signer_spki,
                    struct store_crl_scope *out_scope, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CRL_SCOPE, err);
    int rc = CG_OK;

    memset(out_scope, 0, sizeof(*out_scope));
    if (!st)
        return CG_EDB;
    bind_text(st, 1, issuer);
    bind_text(st, 2, signer_spki);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out_scope->count = sqlite3_column_int64(st, 0);
        out_scope->max_id = sqlite3_column_int64(st, 1);
    } else {
        rc = db_fail(s, err, "read the CRLs of a CA");
    }
    done(st);
    return rc;
}

int store_crl_replace(struct store *s, struct store_crl *crl, const struct store_crl_scope *seen,
                      struct cg_err *err)
{
    struct store_crl_scope now_scope;
    sqlite3_stmt *st;
    char now[21];
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    /* The caller decided "newer" from what it saw: another crl add in
     * between would make that decision stale. */
    rc = store_crl_scope(s, crl->issuer, crl->signer_spki, &now_scope, err);
    if (rc)
        goto out;
    if (now_scope.count != seen->count || now_scope.max_id != seen->max_id) {
        cg_err_set(err, "another CRL of this CA was loaded meanwhile: run certgate crl add again");
        rc = CG_EEXIST;
        goto out;
    }
    st = stmt(s, ST_CRL_DELETE_SCOPE, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    bind_text(st, 1, crl->issuer);
    bind_text(st, 2, crl->signer_spki);
    rc = step_done(s, st, err, "replace CRL");
    done(st);
    if (rc)
        goto out;
    st = stmt(s, ST_CRL_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, crl->issuer);
    bind_text(st, 2, crl->signer_spki);
    bind_text(st, 3, crl->fingerprint);
    sqlite3_bind_int64(st, 4, crl->this_update);
    sqlite3_bind_int64(st, 5, crl->next_update);
    sqlite3_bind_int64(st, 6, crl->revoked_count);
    sqlite3_bind_blob(st, 7, crl->der, (int)crl->der_len, SQLITE_TRANSIENT);
    bind_text(st, 8, now);
    rc = step_done(s, st, err, "add CRL");
    if (rc == CG_EEXIST)
        cg_err_set(err, "this CRL is already loaded");
    if (rc == CG_OK) {
        crl->id = sqlite3_last_insert_rowid(s->db);
        snprintf(crl->created_on, sizeof(crl->created_on), "%s", now);
    }
    done(st);
    if (rc)
        goto out;
    rc = store_commit(s, err);
out:
    if (rc)
        store_rollback(s);
    return rc;
}

static int read_crl_row(sqlite3_stmt *st, void *rec)
{
    struct store_crl *c = rec;

    memset(c, 0, sizeof(*c));
    c->id = sqlite3_column_int64(st, 0);
    col_buf(st, 1, c->signer_spki, sizeof(c->signer_spki));
    c->issuer = col_str(st, 2);
    col_buf(st, 3, c->fingerprint, sizeof(c->fingerprint));
    c->this_update = sqlite3_column_int64(st, 4);
    c->next_update = sqlite3_column_int64(st, 5);
    c->revoked_count = sqlite3_column_int64(st, 6);
    c->der = col_blob(st, 7, &c->der_len);
    col_buf(st, 8, c->created_on, sizeof(c->created_on));
    if (!c->issuer || !c->der) {
        store_crl_free(c);
        return CG_ENOMEM;
    }
    return CG_OK;
}

static void free_crl_row(void *rec)
{
    store_crl_free(rec);
}

int store_crl_list(struct store *s, struct store_crl **out_crls, size_t *out_n, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CRL_LIST, err);
    int rc;

    *out_crls = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = sqlrows_collect(st, sizeof(**out_crls), read_crl_row, free_crl_row, (void **)out_crls,
                         out_n);
    if (rc == CG_EDB)
        db_fail(s, err, "list CRLs");
    done(st);
    return rc;
}

void store_crl_free(struct store_crl *crl)
{
    if (!crl)
        return;
    free(crl->issuer);
    free(crl->der);
    memset(crl, 0, sizeof(*crl));
}

void store_crl_list_free(struct store_crl *crls, size_t n)
{
    for (size_t i = 0; crls && i < n; i++)
        store_crl_free(&crls[i]);
    free(crls);
}

/* ---- deleted CAs ---- */

static int read_deleted_row(sqlite3_stmt *st, void *rec)
{
    struct store_ca_deleted *d = rec;

    memset(d, 0, sizeof(*d));
    col_buf(st, 0, d->spki_sha256, sizeof(d->spki_sha256));
    d->subject = col_str(st, 1);
    col_buf(st, 2, d->fingerprint, sizeof(d->fingerprint));
    d->deleted_at = sqlite3_column_int64(st, 3);
    col_buf(st, 4, d->deleted_on, sizeof(d->deleted_on));
    return d->subject ? CG_OK : CG_ENOMEM;
}

static void free_deleted_row(void *rec)
{
    struct store_ca_deleted *d = rec;

    free(d->subject);
    d->subject = NULL;
}

int store_ca_deleted_list(struct store *s, struct store_ca_deleted **out_list, size_t *out_n,
                          struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_CA_DELETED_LIST, err);
    int rc;

    *out_list = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = sqlrows_collect(st, sizeof(**out_list), read_deleted_row, free_deleted_row,
                         (void **)out_list, out_n);
    if (rc == CG_EDB)
        db_fail(s, err, "list deleted CAs");
    done(st);
    return rc;
}

void store_ca_deleted_list_free(struct store_ca_deleted *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i].subject);
    free(list);
}

/* ---- users and roles ---- */

static int check_roles(char *const *roles, size_t n, struct cg_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!cg_valid_name(roles[i])) {
            cg_err_set(err, "invalid role name '%s'", roles[i] ? roles[i] : "");
            return CG_EINVAL;
        }
    }
    return CG_OK;
}

static int insert_roles(struct store *s, int64_t user_id, char *const *roles, size_t n,
                        struct cg_err *err)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = stmt(s, ST_ROLE_INSERT, err);
        int rc;

        if (!st)
            return CG_EDB;
        sqlite3_bind_int64(st, 1, user_id);
        bind_text(st, 2, roles[i]);
        rc = step_done(s, st, err, "add role");
        done(st);
        if (rc)
            return rc;
    }
    return CG_OK;
}

int store_user_add(struct store *s, const char *name, char *const *roles, size_t n_roles,
                   const char *password_hash, int64_t *out_id, struct cg_err *err)
{
    sqlite3_stmt *st;
    char now[21];
    int64_t id;
    int rc;

    /* A name starting with '-' would read as an option on every later
     * command line. */
    if (!cg_valid_name(name) || name[0] == '-') {
        cg_err_set(err, "invalid user name '%s'", name ? name : "");
        return CG_EINVAL;
    }
    rc = check_roles(roles, n_roles, err);
    if (rc)
        return rc;
    rc = store_begin(s, err);
    if (rc)
        return rc;
    /* integrator1 and Integrator1 side by side invite mapping a certificate
     * to the wrong one. */
    st = stmt(s, ST_USER_SAME_CASE, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    bind_text(st, 1, name);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cg_err_set(err,
                   "a user '%s' already exists, and names that differ only in case are "
                   "refused ('%s' vs '%s'): pick another name",
                   (const char *)sqlite3_column_text(st, 0), name,
                   (const char *)sqlite3_column_text(st, 0));
        rc = CG_EEXIST;
    } else if (rc == SQLITE_DONE) {
        rc = CG_OK;
    } else {
        rc = db_fail(s, err, "look up users");
    }
    done(st);
    if (rc)
        goto out;
    st = stmt(s, ST_USER_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, name);
    bind_text(st, 2, password_hash);
    bind_text(st, 3, now);
    bind_text(st, 4, now);
    rc = step_done(s, st, err, "add user");
    done(st);
    if (rc == CG_EEXIST)
        cg_err_set(err, "user '%s' already exists", name);
    if (rc)
        goto out;
    id = sqlite3_last_insert_rowid(s->db);
    rc = insert_roles(s, id, roles, n_roles, err);
    if (rc)
        goto out;
    rc = store_commit(s, err);
    if (rc == CG_OK && out_id)
        *out_id = id;
out:
    if (rc)
        store_rollback(s);
    return rc;
}

static int read_roles(struct store *s, struct store_user *u, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_USER_ROLES, err);
    int rc;

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, u->id);
    for (;;) {
        char **nr;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        nr = realloc(u->roles, (u->n_roles + 1) * sizeof(*nr));
        if (!nr) {
            done(st);
            return CG_ENOMEM;
        }
        u->roles = nr;
        u->roles[u->n_roles] = col_str(st, 0);
        if (!u->roles[u->n_roles]) {
            done(st);
            return CG_ENOMEM;
        }
        u->n_roles++;
    }
    done(st);
    return rc == SQLITE_DONE ? CG_OK : db_fail(s, err, "read roles");
}

static int read_user_row(sqlite3_stmt *st, struct store_user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(st, 0);
    u->name = col_str(st, 1);
    u->is_active = sqlite3_column_int(st, 2) != 0;
    u->is_locked = sqlite3_column_int(st, 3) != 0;
    u->password_hash = col_str(st, 4);
    col_buf(st, 5, u->created_on, sizeof(u->created_on));
    col_buf(st, 6, u->updated_on, sizeof(u->updated_on));
    return u->name ? CG_OK : CG_ENOMEM;
}

static int user_one(struct store *s, sqlite3_stmt *st, struct store_user *out, struct cg_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        rc = read_user_row(st, out);
    } else if (rc == SQLITE_DONE) {
        cg_err_set(err, "no such user");
        rc = CG_ENOTFOUND;
    } else {
        rc = db_fail(s, err, "read user");
    }
    done(st);
    if (rc == CG_OK)
        rc = read_roles(s, out, err);
    if (rc && rc != CG_ENOTFOUND)
        store_user_free(out);
    return rc;
}

int store_user_get(struct store *s, const char *name, struct store_user *out_user,
                   struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_USER_BY_NAME, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, name);
    return user_one(s, st, out_user, err);
}

int store_user_get_by_id(struct store *s, int64_t id, struct store_user *out_user,
                         struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_USER_BY_ID, err);

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    return user_one(s, st, out_user, err);
}

static int read_user_rec(sqlite3_stmt *st, void *rec)
{
    return read_user_row(st, rec);
}

static void free_user_row(void *rec)
{
    store_user_free(rec);
}

int store_user_list(struct store *s, struct store_user **out_users, size_t *out_n,
                    struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_USER_LIST, err);
    struct store_user *users = NULL;
    size_t n = 0;
    int rc;

    *out_users = NULL;
    *out_n = 0;
    if (!st)
        return CG_EDB;
    rc = sqlrows_collect(st, sizeof(*users), read_user_rec, free_user_row, (void **)&users, &n);
    done(st);
    if (rc == CG_EDB)
        return db_fail(s, err, "list users");
    if (rc)
        return rc;
    /* Roles after the list statement is reset: one statement at a time. */
    for (size_t i = 0; i < n; i++) {
        rc = read_roles(s, &users[i], err);
        if (rc) {
            store_user_list_free(users, n);
            return rc;
        }
    }
    *out_users = users;
    *out_n = n;
    return CG_OK;
}

static int update_user(struct store *s, enum stmt_id id, const char *name, int flag,
                       const char *text, bool use_text, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, id, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    if (use_text)
        bind_text(st, 1, text);
    else
        sqlite3_bind_int(st, 1, flag);
    bind_text(st, 2, now);
    bind_text(st, 3, name);
    rc = step_done(s, st, err, "update user");
    if (rc == CG_OK && sqlite3_changes(s->db) == 0) {
        cg_err_set(err, "no user named '%s'", name);
        rc = CG_ENOTFOUND;
    }
    done(st);
    return rc;
}

int store_user_set_locked(struct store *s, const char *name, bool is_locked, struct cg_err *err)
{
    return update_user(s, ST_USER_SET_LOCKED, name, is_locked ? 1 : 0, NULL, false, err);
}

int store_user_set_password(struct store *s, const char *name, const char *password_hash,
                            struct cg_err *err)
{
    return update_user(s, ST_USER_SET_PASSWORD, name, 0, password_hash, true, err);
}

int store_user_set_roles(struct store *s, const char *name, char *const *roles, size_t n_roles,
                         struct cg_err *err)
{
    struct store_user u;
    sqlite3_stmt *st;
    char now[21];
    int rc;

    rc = check_roles(roles, n_roles, err);
    if (rc)
        return rc;
    rc = store_begin(s, err);
    if (rc)
        return rc;
    rc = store_user_get(s, name, &u, err);
    if (rc) {
        if (rc == CG_ENOTFOUND)
            cg_err_set(err, "no user named '%s'", name);
        goto out;
    }
    st = stmt(s, ST_ROLE_CLEAR, err);
    if (!st) {
        rc = CG_EDB;
        goto out_user;
    }
    sqlite3_bind_int64(st, 1, u.id);
    rc = step_done(s, st, err, "clear roles");
    done(st);
    if (rc)
        goto out_user;
    rc = insert_roles(s, u.id, roles, n_roles, err);
    if (rc)
        goto out_user;
    st = stmt(s, ST_USER_TOUCH, err);
    if (!st) {
        rc = CG_EDB;
        goto out_user;
    }
    now_iso(now);
    bind_text(st, 1, now);
    sqlite3_bind_int64(st, 2, u.id);
    rc = step_done(s, st, err, "update user");
    done(st);
    if (rc)
        goto out_user;
    rc = store_commit(s, err);
out_user:
    store_user_free(&u);
out:
    if (rc)
        store_rollback(s);
    return rc;
}

int store_user_delete(struct store *s, const char *name, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_USER_DELETE, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, name);
    rc = step_done(s, st, err, "delete user");
    if (rc == CG_OK && sqlite3_changes(s->db) == 0) {
        cg_err_set(err, "no user named '%s'", name);
        rc = CG_ENOTFOUND;
    }
    done(st);
    return rc;
}

void store_user_free(struct store_user *user)
{
    if (!user)
        return;
    free(user->name);
    free(user->password_hash);
    cg_strv_free(user->roles, user->n_roles);
    memset(user, 0, sizeof(*user));
}

void store_user_list_free(struct store_user *users, size_t n)
{
    for (size_t i = 0; users && i < n; i++)
        store_user_free(&users[i]);
    free(users);
}

/* ---- user-to-certificate mappings ---- */

static const char *const kind_names[] = {
    [STORE_MAP_CERT] = "cert",
    [STORE_MAP_PINNED] = "pinned",
    [STORE_MAP_RULE] = "rule",
};

const char *store_map_kind_name(enum store_map_kind kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind]
                                                                       : "unknown";
}

static enum store_map_kind kind_of(const char *name)
{
    if (name && strcmp(name, "pinned") == 0)
        return STORE_MAP_PINNED;
    if (name && strcmp(name, "rule") == 0)
        return STORE_MAP_RULE;
    return STORE_MAP_CERT;
}

static int read_map(sqlite3_stmt *st, struct store_map *m)
{
    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(st, 0);
    m->user_id = sqlite3_column_int64(st, 1);
    m->user_name = col_str(st, 2);
    m->kind = kind_of((const char *)sqlite3_column_text(st, 3));
    m->name = col_str(st, 4);
    col_buf(st, 5, m->fingerprint, sizeof(m->fingerprint));
    m->subject = col_str(st, 6);
    m->issuer = col_str(st, 7);
    m->serial = col_str(st, 8);
    m->not_before = sqlite3_column_int64(st, 9);
    m->not_after = sqlite3_column_int64(st, 10);
    m->der = col_blob(st, 11, &m->der_len);
    m->ca_id = sqlite3_column_int64(st, 12);
    m->match_field = col_str(st, 13);
    m->match_value = col_str(st, 14);
    m->is_active = sqlite3_column_int(st, 15) != 0;
    col_buf(st, 16, m->created_on, sizeof(m->created_on));
    if (!m->user_name || (m->kind == STORE_MAP_RULE && (!m->match_field || !m->match_value)) ||
        (m->kind != STORE_MAP_RULE && (!m->subject || !m->der))) {
        store_map_free(m);
        return CG_ENOMEM;
    }
    return CG_OK;
}

int store_map_insert(struct store *s, struct store_map *map, struct cg_err *err)
{
    bool rule = map->kind == STORE_MAP_RULE;
    struct store_user u;
    sqlite3_stmt *st;
    char now[21], key[24];
    int rc;

    if (rule && (!map->ca_id || !map->match_field || !map->match_value)) {
        cg_err_set(err, "a rule needs a CA, a field and a value");
        return CG_EINVAL;
    }
    if (!rule && (!map->fingerprint[0] || !map->der || !map->subject)) {
        cg_err_set(err, "a certificate mapping needs the certificate");
        return CG_EINVAL;
    }
    rc = store_begin(s, err);
    if (rc)
        return rc;
    if (rule) {
        struct store_ca ca;

        snprintf(key, sizeof(key), "%lld", (long long)map->ca_id);
        rc = store_ca_find(s, key, &ca, err);
        if (rc) {
            if (rc == CG_ENOTFOUND)
                cg_err_set(err, "no CA with id %lld", (long long)map->ca_id);
            goto out;
        }
        store_ca_free(&ca);
        st = stmt(s, ST_MAP_RULE_EXISTS, err);
        if (!st) {
            rc = CG_EDB;
            goto out;
        }
        sqlite3_bind_int64(st, 1, map->ca_id);
        bind_text(st, 2, map->match_field);
        bind_text(st, 3, map->match_value);
        if (sqlite3_step(st) == SQLITE_ROW) {
            cg_err_set(err, "the same rule already exists for user %s (mapping %lld)",
                       sqlite3_column_text(st, 1), (long long)sqlite3_column_int64(st, 0));
            rc = CG_EEXIST;
        }
        done(st);
        if (rc)
            goto out;
    } else {
        struct store_map old;

        rc = store_map_get_by_fingerprint(s, map->fingerprint, &old, err);
        if (rc == CG_OK) {
            cg_err_set(err, "certificate %s is already mapped to user %s (mapping %lld)",
                       map->fingerprint, old.user_name, (long long)old.id);
            store_map_free(&old);
            rc = CG_EEXIST;
            goto out;
        }
        if (rc != CG_ENOTFOUND)
            goto out;
    }
    rc = store_user_get_by_id(s, map->user_id, &u, err);
    if (rc) {
        if (rc == CG_ENOTFOUND)
            cg_err_set(err, "no user with id %lld", (long long)map->user_id);
        goto out;
    }
    store_user_free(&u);
    st = stmt(s, ST_MAP_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    sqlite3_bind_int64(st, 1, map->user_id);
    bind_text(st, 2, store_map_kind_name(map->kind));
    bind_text(st, 3, map->name);
    if (rule) {
        for (int i = 4; i <= 10; i++)
            sqlite3_bind_null(st, i);
        sqlite3_bind_int64(st, 11, map->ca_id);
        bind_text(st, 12, map->match_field);
        bind_text(st, 13, map->match_value);
    } else {
        bind_text(st, 4, map->fingerprint);
        bind_text(st, 5, map->subject);
        bind_text(st, 6, map->issuer);
        bind_text(st, 7, map->serial);
        sqlite3_bind_int64(st, 8, map->not_before);
        sqlite3_bind_int64(st, 9, map->not_after);
        sqlite3_bind_blob(st, 10, map->der, (int)map->der_len, SQLITE_TRANSIENT);
        for (int i = 11; i <= 13; i++)
            sqlite3_bind_null(st, i);
    }
    sqlite3_bind_int(st, 14, map->is_active ? 1 : 0);
    bind_text(st, 15, now);
    rc = step_done(s, st, err, "add mapping");
    if (rc == CG_OK) {
        map->id = sqlite3_last_insert_rowid(s->db);
        snprintf(map->created_on, sizeof(map->created_on), "%s", now);
    }
    done(st);
    if (rc)
        goto out;
    rc = store_commit(s, err);
out:
    if (rc)
        store_rollback(s);
    return rc;
}

static int map_one(struct store *s, sqlite3_stmt *st, struct store_map *out, struct cg_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        rc = read_map(st, out);
    } else if (rc == SQLITE_DONE) {
        cg_err_set(err, "no such mapping");
        rc = CG_ENOTFOUND;
    } else {
        rc = db_fail(s, err, "read mapping");
    }
    done(st);
    return rc;
}

int store_map_get(struct store *s, int64_t id, struct store_map *out_map, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_MAP_BY_ID, err);

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    return map_one(s, st, out_map, err);
}

int store_map_get_by_fingerprint(struct store *s, const char *fingerprint,
                                 struct store_map *out_map, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_MAP_BY_FP, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, fingerprint);
    return map_one(s, st, out_map, err);
}

static int read_map_row(sqlite3_stmt *st, void *rec)
{
    return read_map(st, rec);
}

static void free_map_row(void *rec)
{
    store_map_free(rec);
}

int store_map_list(struct store *s, const char *user_name, struct store_map **out_maps,
                   size_t *out_n, struct cg_err *err)
{
    struct store_user u;
    sqlite3_stmt *st;
    int rc;

    *out_maps = NULL;
    *out_n = 0;
    if (user_name) {
        rc = store_user_get(s, user_name, &u, err);
        if (rc) {
            if (rc == CG_ENOTFOUND)
                cg_err_set(err, "no user named '%s'", user_name);
            return rc;
        }
        store_user_free(&u);
    }
    st = stmt(s, user_name ? ST_MAP_LIST_USER : ST_MAP_LIST, err);
    if (!st)
        return CG_EDB;
    if (user_name)
        bind_text(st, 1, user_name);
    rc = sqlrows_collect(st, sizeof(**out_maps), read_map_row, free_map_row, (void **)out_maps,
                         out_n);
    if (rc == CG_EDB)
        db_fail(s, err, "list mappings");
    done(st);
    return rc;
}

int store_map_delete(struct store *s, int64_t id, struct cg_err *err)
{
    sqlite3_stmt *st = stmt(s, ST_MAP_DELETE, err);
    int rc;

    if (!st)
        return CG_EDB;
    sqlite3_bind_int64(st, 1, id);
    rc = step_done(s, st, err, "delete mapping");
    if (rc == CG_OK && sqlite3_changes(s->db) == 0) {
        cg_err_set(err, "no mapping with id %lld", (long long)id);
        rc = CG_ENOTFOUND;
    }
    done(st);
    return rc;
}

void store_map_free(struct store_map *map)
{
    if (!map)
        return;
    free(map->user_name);
    free(map->name);
    free(map->subject);
    free(map->issuer);
    free(map->serial);
    free(map->der);
    free(map->match_field);
    free(map->match_value);
    memset(map, 0, sizeof(*map));
}

void store_map_list_free(struct store_map *maps, size_t n)
{
    for (size_t i = 0; maps && i < n; i++)
        store_map_free(&maps[i]);
    free(maps);
}
