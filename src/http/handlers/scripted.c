/*
 * Scripted resources (POST /api/{namespace}/{api}/{path} and the other
 * methods a resource declares): the request as the script sees it (body,
 * path parameters, query, headers without credentials) goes to the engine,
 * which runs the script and commits what it wrote.
 */
#include "config.h"
#include "http/http_int.h"

enum stage scripted_handle(struct request *r)
{
    struct writer_job *job;

    if (r->job)
        return jobs_finish(r);
    if (jobs_new(r, &job) != STAGE_NEXT)
        return STAGE_ANSWERED;
    job->op = WRITER_SCRIPT;
    job->resource = r->route.dyn.resource;
    job->req.params = json_incref(r->route.dyn.params);
    job->req.query = jobs_collect(r, MHD_GET_ARGUMENT_KIND);
    job->req.headers = jobs_collect(r, MHD_HEADER_KIND);
    return jobs_start(r, job);
}
