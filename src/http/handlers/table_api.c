/*
 * The Table API (/api/now/table/{table}[/{sys_id}]): POST inserts a
 * record, GET reads one or lists them with sysparm_query, _limit and
 * _offset. Builds the engine's job from the request; the engine runs it.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "engine/table_query.h"

/* GET of the list: the query parameters become the engine's filter. */
static enum stage list_job(struct request *r, struct writer_job *job)
{
    json_t *q = jobs_collect(r, MHD_GET_ARGUMENT_KIND);
    struct table_query tq;
    char detail[200];
    int rc;

    job->op = WRITER_TABLE_LIST;
    rc = table_query_parse(r->route.dyn.table, q, &tq, detail, sizeof(detail));
    json_decref(q);
    if (rc == CG_EINVAL)
        return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
    if (rc)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    job->limit = tq.limit;
    job->offset = tq.offset;
    job->filter = tq.filter;
    return STAGE_NEXT;
}

enum stage table_api_handle(struct request *r)
{
    const struct route_result *dyn = &r->route.dyn;
    bool is_post = strcmp(r->method, "POST") == 0;
    struct writer_job *job;

    if (r->job)
        return jobs_finish(r);
    if (jobs_new(r, &job) != STAGE_NEXT)
        return STAGE_ANSWERED;
    if (is_post && !json_is_object(job->req.body))
        return respond_error(r, CG_ERROR_BAD_REQUEST,
                             "the body must be a JSON object of column values");
    job->table = strdup(dyn->table->name);
    if (is_post) {
        job->op = WRITER_TABLE_INSERT;
    } else if (dyn->sys_id[0]) {
        job->op = WRITER_TABLE_GET;
        job->sys_id = strdup(dyn->sys_id);
    } else if (list_job(r, job) != STAGE_NEXT) {
        return STAGE_ANSWERED;
    }
    return jobs_start(r, job);
}
