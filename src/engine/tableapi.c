#include "config.h"
#include "engine/tableapi.h"

#include "engine/catalog.h"
#include "engine/engine_int.h"
#include "engine/wset.h"

/* Largest Table API list answer. */
#define TABLE_API_MAX_BYTES (32u * 1024 * 1024)

/* The Table API's operations, on the script thread (or the committer). */
void run_table(struct op_ctx *ctx)
{
    struct writer_job *job = ctx->job;
    const struct dtable_table *t = catalog_find_table(job->cat, job->table);
    struct cg_err err = {""};
    json_t *out = NULL, *wrap;
    int rc;

    if (!t) {
        job_set_error(job, CG_ERROR_NOT_FOUND, job->table);
        return;
    }
    if (job->op == WRITER_TABLE_INSERT) {
        char id[37], msg[400] = "";

        rc = op_insert(ctx, t->name, job->req.body, id, msg, sizeof(msg));
        if (rc == CG_EINVAL) {
            job_set_error(job, CG_ERROR_BAD_REQUEST, msg);
            return;
        }
        if (rc == CG_OK) {
            struct wop *op = ctx->direct ? NULL : wset_find(job->ws, t, id);

            if (op)
                out = json_deep_copy(op->row);
            else
                rc = dtable_get(ctx->db, t, id, &out, &err);
        }
        if (rc == CG_OK && !out)
            rc = CG_ENOMEM;
        if (rc) {
            json_decref(out);
            job_set_internal(job, msg[0] ? msg : err.msg);
            return;
        }
        job->status = 201;
    } else {
        rc = run_snapshot(ctx, &err);
        if (rc == CG_OK && job->op == WRITER_TABLE_GET)
            rc = dtable_get(ctx->db, t, job->sys_id, &out, &err);
        else if (rc == CG_OK)
            rc = dtable_query_ex(ctx->db, t, job->filter, NULL, job->limit, job->offset,
                                 TABLE_API_MAX_BYTES, &out, NULL, &err);
        if (rc == CG_ENOTFOUND) {
            job_set_error(job, CG_ERROR_NO_RECORD,
                          "the record does not exist or you may not read it");
            return;
        }
        if (rc == CG_EINVAL) {
            job_set_error(job, CG_ERROR_BAD_REQUEST, err.msg);
            return;
        }
        if (rc) {
            job_set_internal(job, err.msg);
            return;
        }
        job->status = 200;
    }
    wrap = json_pack("{s:o}", "result", out);
    job->body = wrap ? json_dumps(wrap, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(wrap);
    if (!job->body)
        job_set_internal(job, "out of memory encoding the answer");
}
