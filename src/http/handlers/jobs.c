#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <math.h>

#include "base/error.h"
#include "base/log.h"
#include "base/utf8.h"
#include "engine/table_query.h"

/* ---- scripted resources and the Table API ---- */

/* Headers get lower-case names (design section 6); query keys keep theirs.
 * Values were checked to be UTF-8 for the query (target_check); header
 * values are repaired rather than dropped. */
static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    json_t *o = cls;
    char name[128];
    size_t i;

    if (!key)
        return MHD_YES;
    if (kind == MHD_HEADER_KIND) {
        for (i = 0; key[i] && i + 1 < sizeof(name); i++)
            name[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] - 'A' + 'a' : key[i]);
        name[i] = '\0';
        /* Credentials never reach scripts. */
        if (strcmp(name, "authorization") == 0 || strcmp(name, "cookie") == 0)
            return MHD_YES;
        key = name;
    }
    json_object_set_new(o, key, utf8_json(value ? value : ""));
    return MHD_YES;
}

static json_t *collect_args(struct request *r, enum MHD_ValueKind kind)
{
    json_t *o = json_object();

    if (o)
        MHD_get_connection_values(r->mhd, kind, collect, o);
    return o;
}

static json_t *user_json(const struct identity *id)
{
    json_t *roles = json_array(), *u;

    if (!id)
        return json_pack("{s:n, s:o, s:s, s:n}", "name", "roles", roles, "auth", "none",
                         "certificate");
    for (size_t i = 0; i < id->n_roles; i++)
        json_array_append_new(roles, json_string(id->roles[i]));
    u = json_pack("{s:s, s:o, s:s}", "name", id->user, "roles", roles, "auth",
                  auth_method_name(id->method));
    if (u && id->has_cert) {
        char na[21];

        cg_time_iso(id->cert.not_after, na);
        json_object_set_new(u, "certificate",
                            json_pack("{s:o, s:o, s:s, s:s, s:s}", "subject",
                                      utf8_json(id->cert.subject), "issuer",
                                      utf8_json(id->cert.issuer), "serial", id->cert.serial,
                                      "fingerprint", id->cert.fingerprint, "not_after", na));
    } else if (u) {
        json_object_set_new(u, "certificate", json_null());
    }
    return u;
}

/* Called on the committer thread once the job's writes are committed. */
static void job_finished(struct writer_job *job)
{
    struct request *r = job->ctx;

    __atomic_store_n(&r->job_done, true, __ATOMIC_RELEASE);
    MHD_resume_connection(r->mhd);
}

static bool json_content_type(struct request *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen("application/json");

    return ct && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Builds the job for the writer, or answers the request itself (400/415). */
enum stage start_job(struct request *r)
{
    struct http_server *srv = r->conn->srv;
    struct writer_job *job = calloc(1, sizeof(*job));
    const char *idem;
    json_error_t jerr;

    if (!job)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    r->job = job;
    if (r->body_len > 0) {
        if (!json_content_type(r))
            return respond_error(r, CG_ERROR_UNSUPPORTED_MEDIA_TYPE,
                                 "send the body as Content-Type: application/json");
        job->req.body =
            json_loadb(r->body, r->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (!job->req.body) {
            char detail[300];

            snprintf(detail, sizeof(detail), "the body is not valid JSON: line %d column %d: %s",
                     jerr.line, jerr.column, jerr.text);
            return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
        }
    } else if (r->dyn.match == ROUTE_TABLE && strcmp(r->method, "POST") == 0) {
        return respond_error(r, CG_ERROR_BAD_REQUEST,
                             "the body must be a JSON object of "
                             "column values");
    }
    if (r->dyn.match == ROUTE_TABLE) {
        job->table = strdup(r->dyn.table->name);
        if (strcmp(r->method, "POST") == 0) {
            job->op = WRITER_TABLE_INSERT;
            if (!json_is_object(job->req.body))
                return respond_error(r, CG_ERROR_BAD_REQUEST,
                                     "the body must be a JSON object of column values");
        } else if (r->dyn.sys_id[0]) {
            job->op = WRITER_TABLE_GET;
            job->sys_id = strdup(r->dyn.sys_id);
        } else {
            json_t *q = collect_args(r, MHD_GET_ARGUMENT_KIND);
            struct table_query tq;
            char detail[200];
            int rc;

            job->op = WRITER_TABLE_LIST;
            rc = table_query_parse(r->dyn.table, q, &tq, detail, sizeof(detail));
            json_decref(q);
            if (rc == CG_EINVAL)
                return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
            if (rc)
                return respond_error(r, CG_ERROR_INTERNAL, r->id);
            job->limit = tq.limit;
            job->offset = tq.offset;
            job->filter = tq.filter;
        }
    } else {
        job->op = WRITER_SCRIPT;
        job->resource = r->dyn.resource;
        job->req.params = json_incref(r->dyn.params);
        job->req.query = collect_args(r, MHD_GET_ARGUMENT_KIND);
        job->req.headers = collect_args(r, MHD_HEADER_KIND);
    }
    job->method = strdup(r->method);
    job->path = strdup(r->path);
    /* Always set by on_uri; the path stands in if libmicrohttpd skipped it. */
    job->target = strdup(r->target ? r->target : r->path);
    job->raw_body = r->body ? strdup(r->body) : strdup("");
    job->req.method = job->method;
    job->req.path = job->path;
    job->req.raw_body = job->raw_body;
    job->req.raw_len = r->body_len;
    job->req.user = user_json(r->who);
    job->user_name = strdup(r->who && r->who->user ? r->who->user : "anonymous");
    idem = MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, "Idempotency-Key");
    /* Keys belong to a user: an anonymous caller of a public resource
     * must not replay what another anonymous caller stored. */
    if (idem && r->who && strcmp(r->method, "POST") == 0) {
        if (!*idem || strlen(idem) > MAX_IDEM_KEY)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "Idempotency-Key must be 1 to 200 "
                                 "characters");
        job->idem_key = strdup(idem);
        if (!job->idem_key)
            return respond_error(r, CG_ERROR_INTERNAL, r->id);
    }
    memcpy(job->request_id, r->id, sizeof(job->request_id));
    if (!job->method || !job->path || !job->target || !job->raw_body || !job->user_name ||
        !job->req.user)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    /* The key binds the whole request: method, target with its query
     * string, body. */
    if (job->idem_key && dtable_request_sha256(job->method, job->target, r->body ? r->body : "",
                                               r->body_len, job->request_sha256))
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    job->done = job_finished;
    job->ctx = r;
    /* The worker does not wait for the disk: the connection sleeps until
     * the committer has made the writes durable. */
    MHD_suspend_connection(r->mhd);
    writer_submit(srv->writer, job);
    return STAGE_DONE;
}

/* Whether a script may set response header @p name: not the ones certgate
 * sets itself or that frame the answer. */
static bool script_header_allowed(const char *name)
{
    static const char *const reserved[] = {
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "X-Request-Id",
        "Idempotent-Replayed",
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "Cache-Control",
        "Set-Cookie",
        "Upgrade",
        "Trailer",
        NULL,
    };

    if (strncasecmp(name, "X-Certgate-", 11) == 0)
        return false;
    for (const char *const *p = reserved; *p; p++) {
        if (strcasecmp(name, *p) == 0)
            return false;
    }
    return true;
}

void finish_job(struct request *r)
{
    struct writer_job *job = r->job;
    struct MHD_Response *resp;
    char *body = job->body;
    size_t len = body ? strlen(body) : 0;
    const char *key;
    json_t *v;

    job->body = NULL;
    if (job->log_detail[0])
        log_event("script_error",
                  json_pack("{s:s, s:s, s:i, s:s}", "request_id", r->id, "path", r->path, "status",
                            job->status, "detail", job->log_detail));
    resp = MHD_create_response_from_buffer(len, body ? body : (void *)"",
                                           body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return;
    }
    if (body)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    add_common_headers(r, resp);
    if (job->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    json_object_foreach(job->headers, key, v)
    {
        if (script_header_allowed(key))
            MHD_add_response_header(resp, key, json_string_value(v));
    }
    MHD_queue_response(r->mhd, (unsigned)job->status, resp);
    MHD_destroy_response(resp);
    r->queued = true;
    r->status = (unsigned)job->status;
    r->bytes = len;
}
