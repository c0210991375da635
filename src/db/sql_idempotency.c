#include "config.h"
#include "db/dtable_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int dtable_idem_get(struct dtable_db *db, const char *user, const char *key, int64_t since,
                    struct dtable_idem *out, struct cg_err *err)
{
    struct db_stmt *st = prep(db,
                              "SELECT status, body, headers, request_sha256, method, path, "
                              "created_at FROM sys_idempotency WHERE user_name = ? AND "
                              "idem_key = ? AND created_at >= ?",
                              err);
    int rc;

    if (!st)
        return CG_EDB;
    memset(out, 0, sizeof(*out));
    st_bind_text(st, 1, user, -1);
    st_bind_text(st, 2, key, -1);
    st_bind_int64(st, 3, since);
    rc = st_step(st);
    if (rc == DB_ROW) {
        json_error_t jerr;

        out->status = st_column_int(st, 0);
        out->body = strdup((const char *)st_column_text(st, 1));
        out->headers = json_loads((const char *)st_column_text(st, 2), 0, &jerr);
        snprintf(out->request_sha256, sizeof(out->request_sha256), "%s",
                 (const char *)st_column_text(st, 3));
        snprintf(out->method, sizeof(out->method), "%s", (const char *)st_column_text(st, 4));
        out->path = strdup((const char *)st_column_text(st, 5));
        out->created_at = st_column_int64(st, 6);
        rc = out->body && out->path ? CG_OK : CG_ENOMEM;
        if (rc)
            dtable_idem_free(out);
    } else {
        rc = rc == DB_DONE ? CG_ENOTFOUND : fail_db(db, err, "idempotency lookup");
    }
    done(st);
    return rc;
}

int dtable_idem_put(struct dtable_db *db, const char *user, const char *key,
                    const struct dtable_idem *resp, int64_t now, struct cg_err *err)
{
    struct db_stmt *st = prep(db,
                              "INSERT INTO sys_idempotency (user_name, idem_key, method, path, "
                              "status, body, headers, request_sha256, created_at) VALUES "
                              "(?,?,?,?,?,?,?,?,?) ON CONFLICT (user_name, idem_key) DO UPDATE "
                              "SET method = excluded.method, path = excluded.path, status = "
                              "excluded.status, body = excluded.body, headers = excluded.headers, "
                              "request_sha256 = excluded.request_sha256, created_at = "
                              "excluded.created_at WHERE sys_idempotency.created_at < ?",
                              err);
    char *headers = json_dumps(resp->headers ? resp->headers : json_object(), JSON_COMPACT);
    int rc;

    if (!st || !headers) {
        free(headers);
        return st ? CG_ENOMEM : CG_EDB;
    }
    st_bind_text(st, 1, user, -1);
    st_bind_text(st, 2, key, -1);
    st_bind_text(st, 3, resp->method, -1);
    st_bind_text(st, 4, resp->path ? resp->path : "", -1);
    st_bind_int(st, 5, resp->status);
    st_bind_text(st, 6, resp->body ? resp->body : "", -1);
    st_bind_text_take(st, 7, headers);
    st_bind_text(st, 8, resp->request_sha256, -1);
    st_bind_int64(st, 9, now);
    st_bind_int64(st, 10, resp->created_at);
    rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, "store idempotent response");
    /* No row changed: a live response for this key is there already. */
    if (rc == CG_OK && core_changes(&db->core) == 0)
        rc = CG_EEXIST;
    done(st);
    return rc;
}

int dtable_idem_purge(struct dtable_db *db, int64_t before, struct cg_err *err)
{
    struct db_stmt *st = prep(db, "DELETE FROM sys_idempotency WHERE created_at < ?", err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, before);
    rc = st_step(st) == DB_DONE ? CG_OK : fail_db(db, err, "purge idempotency keys");
    done(st);
    return rc;
}
