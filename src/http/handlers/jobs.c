/*
 * jobs: what the scripted-resource and Table API handlers share. A job is
 * built from the request (jobs_new parses the body, jobs_start adds the
 * caller, the target and the Idempotency-Key and hands it to the engine),
 * the connection sleeps until the committer has made its writes durable,
 * and jobs_finish turns the engine's answer into the HTTP one. Does not
 * decide what a script or a table does: the engine does.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "base/utf8.h"

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

json_t *jobs_collect(struct request *r, enum MHD_ValueKind kind)
{
    json_t *o = json_object();

    if (o)
        MHD_get_connection_values(r->mhd, kind, collect, o);
    return o;
}

/* Called on the committer thread once the job's writes are committed. */
static void job_finished(struct writer_job *job)
{
    request_wake(job->ctx);
}

/* Whether the body is declared JSON; if not, @p detail says what was sent
 * (up to 100 bytes of it) and what to send. */
static bool json_content_type(struct request *r, char *detail, size_t len)
{
    const char *ct =
        MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen("application/json");

    if (ct && strncasecmp(ct, "application/json", n) == 0 &&
        (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '))
        return true;
    if (ct && *ct)
        snprintf(detail, len,
                 "the body was sent as Content-Type: %.100s; send it as Content-Type: "
                 "application/json",
                 ct);
    else
        snprintf(detail, len,
                 "the body was sent without a Content-Type; send it as Content-Type: "
                 "application/json");
    return false;
}

/* A new job for the request, with its JSON body parsed; or the answer
 * (400, 415) when the body cannot be one. */
enum stage jobs_new(struct request *r, struct writer_job **out_job)
{
    struct writer_job *job = calloc(1, sizeof(*job));
    json_error_t jerr;
    char detail[300];

    *out_job = job;
    if (!job)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    r->job = job;
    if (r->body_len == 0)
        return STAGE_NEXT;
    if (!json_content_type(r, detail, sizeof(detail)))
        return respond_error(r, CG_ERROR_UNSUPPORTED_MEDIA_TYPE, detail);
    job->req.body =
        json_loadb(r->body, r->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!job->req.body) {
        snprintf(detail, sizeof(detail), "the body is not valid JSON: line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
        return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
    }
    return STAGE_NEXT;
}

/* Adds what every job carries and hands it to the engine: the connection
 * sleeps until the job is committed (STAGE_WAIT), or the answer is a 400. */
enum stage jobs_start(struct request *r, struct writer_job *job)
{
    const char *idem;

    job->method = strdup(r->method);
    job->path = strdup(r->path);
    /* Always set by on_uri; the path stands in if libmicrohttpd skipped it. */
    job->target = strdup(r->target ? r->target : r->path);
    job->raw_body = r->body ? strdup(r->body) : strdup("");
    job->req.method = job->method;
    job->req.path = job->path;
    job->req.raw_body = job->raw_body;
    job->req.raw_len = r->body_len;
    job->req.user = identity_json(r->who, IDENTITY_JSON_SCRIPT);
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
    writer_submit(r->conn->srv->writer, job);
    return STAGE_WAIT;
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

/* The engine's answer as the HTTP one. */
enum stage jobs_finish(struct request *r)
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
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
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
    return respond_decided(r, (unsigned)job->status, resp, len);
}
