#include "config.h"
#include "db/store.h"
#include "db/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern const char *const cg_schema_sql[];
extern const char *const cg_schema_pg[];

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
    [ST_CA_INSERT] =
        "INSERT INTO sys_ca_certificate (id, name, subject, issuer, serial, fingerprint, "
        "spki_sha256, ski, aki, not_before, not_after, is_root, path_len, der, pem, "
        "active, created_on, updated_on) VALUES (" NEXT_ID(
            "sys_ca_certificate") ", "
                                  "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
    [ST_CA_BY_ID] = "SELECT " CA_COLS " FROM sys_ca_certificate WHERE id = ?",
    [ST_CA_BY_FP] = "SELECT " CA_COLS " FROM sys_ca_certificate WHERE fingerprint = ?",
    [ST_CA_BY_FP_PREFIX] = "SELECT " CA_COLS " FROM sys_ca_certificate "
                           "WHERE substr(fingerprint, 1, length(?1)) = ?1 ORDER BY id LIMIT 2",
    [ST_CA_LIST] = "SELECT " CA_COLS " FROM sys_ca_certificate ORDER BY id",
    /* Every copy of the CA (same key) takes the new state. */
    [ST_CA_SET_ACTIVE] = "UPDATE sys_ca_certificate SET active = ?1, updated_on = ?2 "
                         "WHERE spki_sha256 = (SELECT spki_sha256 FROM sys_ca_certificate "
                         "WHERE id = ?3) AND (active <> ?1 OR id = ?3)",
    [ST_CA_DEPS] = CA_BELOW
    "SELECT "
    "(SELECT count(*) FROM kids), "
    "(SELECT count(*) FROM sys_user_certificate WHERE kind = 'rule' AND ca_id = ?1), "
    "(SELECT count(*) FROM sys_user_certificate m, sys_ca_certificate c "
    " WHERE c.id = ?1 AND m.kind <> 'rule' AND m.issuer = c.subject), "
    "(SELECT count(*) FROM sys_user_certificate WHERE kind = 'rule' "
    " AND ca_id IN (SELECT id FROM kids)), "
    "(SELECT count(*) FROM sys_user_certificate m WHERE m.kind <> 'rule' "
    " AND m.issuer IN (SELECT subject FROM sys_ca_certificate WHERE id IN (SELECT id FROM kids)) "
    " AND m.issuer NOT IN (SELECT subject FROM sys_ca_certificate WHERE id = ?1)), "
    "(SELECT count(*) FROM sys_crl r, sys_ca_certificate c WHERE c.id = ?1 "
    " AND r.signer_spki = c.spki_sha256 AND r.issuer = c.subject)",
    [ST_CA_CHILDREN] = CA_BELOW "SELECT id, subject FROM sys_ca_certificate "
                                "WHERE id IN (SELECT id FROM kids) ORDER BY id LIMIT 4",
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
    [ST_CRL_INSERT] = "INSERT INTO sys_crl (id, issuer, signer_spki, fingerprint, this_update, "
                      "next_update, revoked_count, der, created_on) VALUES (" NEXT_ID(
                          "sys_crl") ", "
                                     "?,?,?,?,?,?,?,?) RETURNING id",
    [ST_CRL_LIST] = "SELECT id, signer_spki, issuer, fingerprint, this_update, next_update, "
                    "revoked_count, der, created_on FROM sys_crl ORDER BY id",
    [ST_USER_INSERT] = "INSERT INTO sys_user (id, name, password_hash, created_on, updated_on) "
                       "VALUES (" NEXT_ID("sys_user") ", ?,?,?,?) RETURNING id",
    [ST_USER_SAME_CASE] = "SELECT name FROM sys_user WHERE lower(name) = lower(?1) "
                          "AND name <> ?1 ORDER BY id LIMIT 1",
    [ST_USER_BY_NAME] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                        "FROM sys_user WHERE name = ?",
    [ST_USER_BY_ID] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                      "FROM sys_user WHERE id = ?",
    [ST_USER_LIST] = "SELECT id, name, active, locked, password_hash, created_on, updated_on "
                     "FROM sys_user ORDER BY name",
    [ST_USER_ROLES] = "SELECT role FROM sys_user_role WHERE user_id = ? ORDER BY role",
    [ST_ROLE_INSERT] = "INSERT INTO sys_user_role (user_id, role) VALUES (?,?) "
                       "ON CONFLICT DO NOTHING",
    [ST_ROLE_CLEAR] = "DELETE FROM sys_user_role WHERE user_id = ?",
    [ST_USER_SET_LOCKED] = "UPDATE sys_user SET locked = ?, updated_on = ? WHERE name = ?",
    [ST_USER_SET_PASSWORD] = "UPDATE sys_user SET password_hash = ?, updated_on = ? "
                             "WHERE name = ?",
    [ST_USER_TOUCH] = "UPDATE sys_user SET updated_on = ? WHERE id = ?",
    [ST_USER_DELETE] = "DELETE FROM sys_user WHERE name = ?",
    [ST_MAP_INSERT] = "INSERT INTO sys_user_certificate (id, user_id, kind, name, fingerprint, "
                      "subject, issuer, serial, not_before, not_after, der, ca_id, match_field, "
                      "match_value, active, created_on) VALUES (" NEXT_ID(
                          "sys_user_certificate") ", "
                                                  "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
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

/* ---- the trust-data connection (store.h) ---- */

struct db_stmt *stmt(struct store *s, enum stmt_id id, struct cg_err *err)
{
    return core_prep(&s->core, stmt_sql[id], err);
}

/* The first column of the one row @p sql answers, as an int. */
static int pragma_int(struct store *s, const char *sql, int *out)
{
    int64_t v = 0;
    int rc = core_one_int64(core_prep(&s->core, sql, NULL), &v);

    if (rc == CG_OK)
        *out = (int)v;
    return rc;
}

/* The schema version: SQLite's user_version; PostgreSQL's sys_meta row
 * (0 when there is no certgate schema yet). */
static int read_version(struct store *s, int *out)
{
    int has_meta = 0, rc;

    if (s->core.kind != DB_PG)
        return pragma_int(s, "PRAGMA user_version", out);
    rc = pragma_int(s, "SELECT to_regclass('sys_meta') IS NOT NULL", &has_meta);
    if (rc || !has_meta) {
        *out = 0;
        return rc;
    }
    rc = pragma_int(s, "SELECT coalesce(max(value), 0) FROM sys_meta WHERE key = 'schema_version'",
                    out);
    return rc;
}

static int count_tables(struct store *s, int *out)
{
    if (s->core.kind == DB_PG)
        return pragma_int(s,
                          "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                          "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                          "AND c.relkind IN ('r', 'p', 'v')",
                          out);
    return pragma_int(s, "SELECT count(*) FROM sqlite_master", out);
}

/* Records @p version as the schema's, inside the migration's transaction. */
static int write_version(struct store *s, int version, struct cg_err *err)
{
    struct db_stmt *st;
    char sql[64];
    int rc;

    if (s->core.kind != DB_PG) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
        return core_exec(&s->core, sql, err);
    }
    st = core_prep(&s->core,
                   "INSERT INTO sys_meta (key, value) VALUES ('schema_version', ?1) "
                   "ON CONFLICT (key) DO UPDATE SET value = ?1",
                   err);
    if (!st)
        return CG_EDB;
    st_bind_int(st, 1, version);
    rc = core_step_done(&s->core, st, err, "record the schema version");
    done(st);
    return rc;
}

/* Applies the migrations after @p from in one transaction. */
static int migrate(struct store *s, int from, struct cg_err *err)
{
    const char *const *files = s->core.kind == DB_PG ? cg_schema_pg : cg_schema_sql;
    int latest = store_schema_latest(), rc;

    rc = core_begin(&s->core, err);
    if (rc)
        return rc;
    /* Another process may have upgraded it meanwhile. */
    rc = read_version(s, &from);
    if (rc) {
        db_fail(s, err, "read the schema version");
        goto out;
    }
    for (int v = from + 1; v <= latest; v++) {
        if (!files[v - 1]) {
            cg_err_set(err, "%s: no migration %d for this database", s->core.label, v);
            rc = CG_EDB;
            goto out;
        }
        rc = core_exec(&s->core, files[v - 1], err);
        if (rc)
            goto out;
    }
    if (from < latest)
        rc = write_version(s, latest, err);
out:
    return core_end(&s->core, rc, err);
}

/* store_open on PostgreSQL: the server must be reachable; an empty database
 * (no tables) is initialised by STORE_OPEN_INIT. */
static int store_open_pg(const char *uri, enum store_mode mode, struct store **out_store,
                         struct cg_err *err)
{
    struct store *s = calloc(1, sizeof(*s));
    int version = 0, tables = 0, latest = store_schema_latest(), rc;

    if (!s)
        return CG_ENOMEM;
    rc = core_connect(&s->core, uri,
                      mode == STORE_OPEN_READONLY ? CORE_OPEN_READONLY : CORE_OPEN_READWRITE, true,
                      err);
    if (rc)
        goto out;
    if (count_tables(s, &tables) || read_version(s, &version)) {
        rc = db_fail(s, err, "read the schema version");
        goto out;
    }
    rc = CG_EINVAL;
    if (version == 0 && tables > 0) {
        cg_err_set(err, "%s is not a certgate database (it has tables but no certgate schema)",
                   s->core.label);
        goto out;
    }
    if (version > latest) {
        cg_err_set(err, "%s has schema version %d, newer than this certgate (%d): upgrade certgate",
                   s->core.label, version, latest);
        rc = CG_EVERSION;
        goto out;
    }
    if (mode == STORE_OPEN_READONLY && version < latest) {
        cg_err_set(err,
                   "%s has schema version %d, older than this certgate (%d): run certgate init "
                   "to upgrade it",
                   s->core.label, version, latest);
        rc = CG_EVERSION;
        goto out;
    }
    if (version == 0 && mode != STORE_OPEN_INIT) {
        cg_err_set(err, "%s has no certgate schema: run certgate init", s->core.label);
        goto out;
    }
    rc = version < latest ? migrate(s, version, err) : CG_OK;
out:
    if (rc) {
        store_close(s);
        return rc;
    }
    *out_store = s;
    return CG_OK;
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
    if (core_is_pg(path))
        return store_open_pg(path, mode, out_store, err);
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
    flags = mode == STORE_OPEN_READONLY ? CORE_OPEN_READONLY : CORE_OPEN_READWRITE;
    rc = core_connect(&s->core, path, flags, true, err);
    if (rc)
        goto out;
    rc = CG_EDB;
    if (count_tables(s, &tables)) {
        cg_err_set(err, "%s is not a certgate database (%s)", path, core_errmsg(&s->core));
        rc = CG_EINVAL;
        goto out;
    }
    if (read_version(s, &version)) {
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
        rc = core_exec(&s->core, "PRAGMA journal_mode = WAL", err);
        if (rc)
            goto out;
        if (version < latest) {
            rc = migrate(s, version, err);
            if (rc)
                goto out;
        }
    }
    rc = core_exec(&s->core, "PRAGMA foreign_keys = ON", err);
    if (rc)
        goto out;
    rc = core_exec(&s->core, "PRAGMA synchronous = FULL", err);
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

char *store_display_name(const char *path)
{
    if (!path)
        return strdup("");
    return core_is_pg(path) ? pg_redact(path) : strdup(path);
}

void store_close(struct store *s)
{
    if (!s)
        return;
    core_disconnect(&s->core);
    free(s);
}

int store_schema_version(struct store *s)
{
    int v = -1;

    if (read_version(s, &v))
        return -1;
    return v;
}

int store_trust_version(struct store *s, int64_t *out_version)
{
    return core_one_int64(stmt(s, ST_TRUST_VERSION, NULL), out_version);
}

int store_wait_change(struct store *s, int timeout_ms, int wake_fd)
{
    return core_wait_notify(&s->core, "certgate_trust", timeout_ms, wake_fd);
}

int store_begin(struct store *s, struct cg_err *err)
{
    return core_begin(&s->core, err);
}

int store_commit(struct store *s, struct cg_err *err)
{
    return core_commit(&s->core, err);
}

int store_read_begin(struct store *s, struct cg_err *err)
{
    return core_read_begin(&s->core, err);
}

void store_rollback(struct store *s)
{
    if (s)
        core_rollback(&s->core);
}
