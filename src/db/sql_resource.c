#include "config.h"
#include "db/dtable_int.h"
#include "base/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define RES_COLS                                                                                   \
    "id, namespace, api, version, method, path, script_name, script, roles, auth, active, "        \
    "updated_on"

/* One row into the struct dtable_resource at @p rec (a core_read_fn). */
static int read_resource(struct db_stmt *st, void *rec)
{
    struct dtable_resource *r = rec;
    const char *roles = (const char *)st_column_text(st, 8);
    int auth = dtable_auth_parse((const char *)st_column_text(st, 9));

    memset(r, 0, sizeof(*r));
    r->id = st_column_int64(st, 0);
    r->ns = strdup((const char *)st_column_text(st, 1));
    r->api = strdup((const char *)st_column_text(st, 2));
    r->version = strdup((const char *)st_column_text(st, 3));
    r->method = strdup((const char *)st_column_text(st, 4));
    r->path = strdup((const char *)st_column_text(st, 5));
    r->script_name = strdup((const char *)st_column_text(st, 6));
    r->script = strdup((const char *)st_column_text(st, 7));
    r->auth = auth < 0 ? DT_AUTH_ANY : (enum dtable_auth)auth;
    r->is_active = st_column_int(st, 10) != 0;
    snprintf(r->updated_on, sizeof(r->updated_on), "%s", (const char *)st_column_text(st, 11));
    if (!r->ns || !r->api || !r->version || !r->method || !r->path || !r->script_name ||
        !r->script || cg_split_list(roles ? roles : "", &r->roles, &r->n_roles)) {
        dtable_resource_free(r);
        return CG_ENOMEM;
    }
    crypto_sha256_hex(r->script, strlen(r->script), r->script_sha256);
    return CG_OK;
}

/* Binds what an update may change, script name, script, roles and auth, as
 * parameters @p i to @p i + 3. @return CG_OK or CG_ENOMEM (nothing bound) */
static int bind_script(struct db_stmt *st, int i, const struct dtable_resource *r)
{
    char *roles = join_roles(r->roles, r->n_roles);

    if (!roles)
        return CG_ENOMEM;
    st_bind_text(st, i, r->script_name, -1);
    st_bind_text(st, i + 1, r->script, -1);
    st_bind_text_take(st, i + 2, roles);
    st_bind_text(st, i + 3, dtable_auth_name(r->auth), -1);
    return CG_OK;
}

/* Steps @p st, which changes the resource @p id, and resets it.
 * @return CG_OK; CG_ENOTFOUND ("no resource with id N") when it changed
 *         nothing; CG_EDB */
static int change_resource(struct dtable_db *db, struct db_stmt *st, int64_t id, const char *what,
                           struct cg_err *err)
{
    int rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, what);

    if (rc == CG_OK && core_changes(&db->core) == 0) {
        cg_err_set(err, "no resource with id %lld", (long long)id);
        rc = CG_ENOTFOUND;
    }
    done(st);
    return rc;
}

int dtable_resource_add(struct dtable_db *db, struct dtable_resource *r, struct cg_err *err)
{
    struct db_stmt *st = prep(db,
                              "INSERT INTO sys_ws_operation (id, namespace, api, version, "
                              "method, path, script_name, script, roles, auth, active, "
                              "created_on, updated_on) VALUES (" NEXT_ID(
                                  "sys_ws_operation") ", "
                                                      "?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
                              err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    if (bind_script(st, 6, r))
        return CG_ENOMEM;
    cg_time_iso(cg_now(), now);
    st_bind_text(st, 1, r->ns, -1);
    st_bind_text(st, 2, r->api, -1);
    st_bind_text(st, 3, r->version, -1);
    st_bind_text(st, 4, r->method, -1);
    st_bind_text(st, 5, r->path, -1);
    st_bind_int(st, 10, 1);
    st_bind_text(st, 11, now, -1);
    st_bind_text(st, 12, now, -1);
    rc = st_step(st);
    if (rc == DB_ROW) {
        r->id = st_column_int64(st, 0);
        rc = st_step(st);
    }
    if (rc == DB_DONE) {
        rc = CG_OK;
    } else if ((rc & 0xff) == DB_CONSTRAINT) {
        cg_err_set(err, "a resource %s %s already exists in %s/%s%s%s", r->method, r->path, r->ns,
                   r->api, r->version[0] ? " version " : "", r->version);
        rc = CG_EEXIST;
    } else {
        rc = fail_db(db, err, "add resource");
    }
    done(st);
    return rc;
}

int dtable_resource_update(struct dtable_db *db, const struct dtable_resource *r,
                           struct cg_err *err)
{
    struct db_stmt *st = prep(db,
                              "UPDATE sys_ws_operation SET script_name = ?, script = ?, "
                              "roles = ?, auth = ?, updated_on = ? WHERE id = ?",
                              err);
    char now[21];

    if (!st)
        return CG_EDB;
    if (bind_script(st, 1, r))
        return CG_ENOMEM;
    cg_time_iso(cg_now(), now);
    st_bind_text(st, 5, now, -1);
    st_bind_int64(st, 6, r->id);
    return change_resource(db, st, r->id, "update resource", err);
}

int dtable_resource_delete(struct dtable_db *db, int64_t id, struct cg_err *err)
{
    struct db_stmt *st = prep(db, "DELETE FROM sys_ws_operation WHERE id = ?", err);

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    return change_resource(db, st, id, "delete resource", err);
}

int dtable_resource_get(struct dtable_db *db, int64_t id, struct dtable_resource *out,
                        struct cg_err *err)
{
    struct db_stmt *st = prep(db, "SELECT " RES_COLS " FROM sys_ws_operation WHERE id = ?", err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    rc = core_one(&db->core, st, read_resource, out, "read resource", err);
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no resource with id %lld", (long long)id);
    return rc;
}

static void free_resource_row(void *rec)
{
    dtable_resource_free(rec);
}

int dtable_resource_list(struct dtable_db *db, struct dtable_resource **out, size_t *out_n,
                         struct cg_err *err)
{
    struct db_stmt *st = prep(db, "SELECT " RES_COLS " FROM sys_ws_operation ORDER BY id", err);

    return core_list(&db->core, st, sizeof(**out), read_resource, free_resource_row, (void **)out,
                     out_n, "list resources", err);
}

int dtable_resource_announced(struct dtable_db *db)
{
    return core_wait_notify(&db->core, "certgate_resource", 0, -1);
}

int dtable_resource_version(struct dtable_db *db, int64_t *out_version)
{
    struct db_stmt *st =
        prep(db, "SELECT value FROM sys_meta WHERE key = 'resource_version'", NULL);

    return core_one_int64(st, out_version);
}
