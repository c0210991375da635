#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/utf8.h"

/* The built-in routes; scripted resources come after them (issue #5). */
static const struct route routes[] = {
    /* Liveness, no authentication. */
    {.path = "/healthz", .method = "GET", .auth = ROUTE_AUTH_NONE, .handler = h_healthz},
    /* The caller's identity: user, roles, how it authenticated, certificate facts. */
    {.path = "/api/certgate/v1/whoami",
     .method = "GET",
     .auth = ROUTE_AUTH_ANY,
     .handler = h_whoami},
    /* Trust data summary for operators (role certgate_admin). */
    {.path = "/api/certgate/v1/admin/trust",
     .method = "GET",
     .auth = ROUTE_AUTH_ANY,
     .role = "certgate_admin",
     .handler = h_admin_trust},
};

/* Routing: exact built-in paths; a known path with another method is a 405
 * with Allow. Unknown /api paths are answered after authentication, so the
 * route map is not revealed to strangers. */
static enum stage stage_route(struct request *r, bool *out_method_mismatch, char *allow,
                              size_t allow_len)
{
    *out_method_mismatch = false;
    allow[0] = '\0';
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        bool is_get = strcmp(routes[i].method, "GET") == 0;

        if (strcmp(routes[i].path, r->path) != 0)
            continue;
        if (strcmp(routes[i].method, r->method) == 0 ||
            (is_get && strcmp(r->method, "HEAD") == 0)) {
            r->route = &routes[i];
            return STAGE_CONTINUE;
        }
        *out_method_mismatch = true;
        snprintf(allow + strlen(allow), allow_len - strlen(allow), "%s%s%s", allow[0] ? ", " : "",
                 routes[i].method, is_get ? ", HEAD" : "");
    }
    return STAGE_CONTINUE;
}

static enum stage stage_authorise(struct request *r)
{
    char detail[160];
    char *role;

    if (!r->route || !r->route->role)
        return STAGE_CONTINUE;
    role = (char *)r->route->role;
    if (identity_has_any_role(r->who, &role, 1))
        return STAGE_CONTINUE;
    metrics_refusal(AUTH_ROLE_MISSING);
    r->reason = auth_reason_code(AUTH_ROLE_MISSING);
    snprintf(detail, sizeof(detail), "the role '%s' is required", r->route->role);
    {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "request_id", r->id, "remote",
                              r->conn->remote, "reason", r->reason, "detail", detail);

        if (o)
            json_object_set_new(o, "user", utf8_json(r->who->user));
        log_event("auth_refused", o);
    }
    return respond_error(r, CG_ERROR_NOT_AUTHORIZED, detail);
}

/* Runs the stages that need no body, on the first callback of a request. */
/* Runs the stages after routing: authentication (which may suspend the
 * request for a password check, and is run again once it is done),
 * authorisation and the body limit. */
static enum stage pipeline_auth(struct request *r)
{
    struct http_server *srv = r->conn->srv;
    enum stage st;

    /* A public resource skips authentication; everything else under /api
     * authenticates before a 404, so strangers learn nothing of the routes. */
    if (!(r->dyn.match == ROUTE_RESOURCE && r->dyn.resource->auth == DT_AUTH_NONE)) {
        st = stage_authenticate(r);
        if (st != STAGE_CONTINUE)
            return st;
    }
    if (!r->route) {
        if (r->method_mismatch || r->dyn.match == ROUTE_WRONG_METHOD)
            return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                                r->method_mismatch ? r->route_allow : r->dyn.allow);
        if (r->dyn.match == ROUTE_NONE)
            return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
        if (r->dyn.match == ROUTE_RESOURCE && r->who) {
            if (check_resource_auth(r) == STAGE_DONE)
                return STAGE_DONE;
            if (!identity_has_any_role(r->who, r->dyn.resource->roles, r->dyn.resource->n_roles))
                return refuse_role(r, r->dyn.resource->roles, r->dyn.resource->n_roles);
        }
        if (r->dyn.match == ROUTE_TABLE &&
            !identity_has_any_role(r->who, r->dyn.table->roles, r->dyn.table->n_roles))
            return refuse_role(r, r->dyn.table->roles, r->dyn.table->n_roles);
    } else if (stage_authorise(r) == STAGE_DONE) {
        return STAGE_DONE;
    }
    if (r->content_length > cfg_of(srv)->max_body_size) {
        char detail[64];

        snprintf(detail, sizeof(detail), "the limit is %zu bytes", cfg_of(srv)->max_body_size);
        return respond_error(r, CG_ERROR_BODY_TOO_LARGE, detail);
    }
    return STAGE_CONTINUE;
}

/* Runs the stages that need no body, on the first callback of a request. */
static enum stage pipeline_head(struct request *r)
{
    struct http_server *srv = r->conn->srv;

    stage_route(r, &r->method_mismatch, r->route_allow, sizeof(r->route_allow));
    if (!r->route && strncmp(r->path, "/api/", 5) != 0) {
        if (r->method_mismatch)
            return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                                r->route_allow);
        return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
    }
    /* HEAD is answered where GET is, without the body (libmicrohttpd
     * drops it); a script sees the method as sent. */
    if (!r->route && srv->writer) {
        r->cat = writer_catalog_acquire(srv->writer);
        routes_match(r->cat, strcmp(r->method, "HEAD") == 0 ? "GET" : r->method, r->path, &r->dyn);
    }
    return pipeline_auth(r);
}

/* ---- libmicrohttpd callbacks ---- */

static void request_id(char out[33])
{
    unsigned char raw[16];

    if (crypto_random(raw, sizeof(raw), false))
        memset(raw, 0, sizeof(raw));
    cg_hex(raw, sizeof(raw), out);
}

/* A new request: called by libmicrohttpd as soon as the request line is in
 * (the URI log callback), so that even a request libmicrohttpd answers
 * itself later (a broken header or chunk) gets its access-log line. */
static struct request *request_new(struct http_server *srv, struct MHD_Connection *mhd,
                                   const char *target)
{
    struct request *r = calloc(1, sizeof(*r));
    const union MHD_ConnectionInfo *ci;

    if (!r)
        return NULL;
    __atomic_add_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
    r->start_us = clock_us();
    request_id(r->id);
    r->mhd = mhd;
    r->target = target ? strdup(target) : NULL;
    ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->conn = ci ? ci->socket_context : NULL;
    return r;
}

void *on_uri(void *cls, const char *uri, struct MHD_Connection *mhd)
{
    struct request *r = request_new(cls, mhd, uri);

    if (r && r->conn)
        r->conn->request_lines++;
    return r;
}

/*
 * An answer decided from the head alone. Without a body it waits for the
 * end of the request (keep-alive stays). With a body that fits the limit,
 * the body is read and dropped first, for the same reason. Otherwise the
 * answer goes now and the connection closes: a body over the limit, a
 * client waiting for 100-continue (it need not send the body at all), a
 * framing that cannot be trusted.
 */
static enum MHD_Result answer_early(struct request *r)
{
    if (r->direct_answer)
        return send_and_close(r);
    if (r->close_now || r->expect_continue ||
        (r->has_body && !r->chunked && r->content_length > cfg_of(r->conn->srv)->max_body_size))
        send_answer(r);
    return MHD_YES;
}

static enum MHD_Result on_body(struct request *r, const char *data, size_t n)
{
    size_t limit = cfg_of(r->conn->srv)->max_body_size;
    char *nb;

    if (r->queued) {
        /* Answered already: the body is read and dropped, up to the limit. */
        r->discarded += n;
        return r->discarded > limit ? send_and_close(r) : MHD_YES;
    }
    if (r->body_len + n > limit) {
        char detail[64];

        /* Only a chunked body gets here: a Content-Length over the limit
         * was answered from the head. */
        snprintf(detail, sizeof(detail), "the limit is %zu bytes", limit);
        respond_error(r, CG_ERROR_BODY_TOO_LARGE, detail);
        return send_and_close(r);
    }
    nb = realloc(r->body, r->body_len + n + 1);
    if (!nb)
        return MHD_NO;
    r->body = nb;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;

    if (!r) {
        r = request_new(srv, mhd, NULL);
        if (!r)
            return MHD_NO;
        *req_cls = r;
    }
    if (!r->started) {
        r->started = true;
        if (r->conn) {
            __atomic_store_n(&r->conn->head_state, HEAD_NONE, __ATOMIC_RELEASE);
            r->conn->requests++;
        }
        r->method = method;
        r->path = strdup(url ? url : "/");
        if (!r->path || !r->conn)
            return MHD_NO;
        if (stage_head(r, version) == STAGE_CONTINUE)
            pipeline_head(r);
        return r->queued ? answer_early(r) : MHD_YES;
    }
    if (r->kdf_pending) {
        /* Resumed after the password check: go on from authentication. */
        if (!__atomic_load_n(&r->kdf_done, __ATOMIC_ACQUIRE))
            return MHD_YES;
        r->kdf_pending = false;
        pipeline_auth(r);
        return r->queued ? answer_early(r) : MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        return on_body(r, upload_data, n);
    }
    /* The request is complete. */
    if (r->job && __atomic_load_n(&r->job_done, __ATOMIC_ACQUIRE)) {
        if (!r->queued)
            finish_job(r);
        return MHD_YES;
    }
    if (!r->queued && !r->job) {
        if (r->route)
            r->route->handler(r);
        else if (r->dyn.match == ROUTE_RESOURCE || r->dyn.match == ROUTE_TABLE)
            start_job(r);
        if (!r->queued && !(r->job && r->job->done))
            respond_error(r, CG_ERROR_INTERNAL, r->id);
    }
    send_answer(r);
    return MHD_YES;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "completed";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "unknown";
}

void on_completed(void *cls, struct MHD_Connection *mhd, void **req_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    long long us;
    json_t *o;
    bool handed;

    (void)mhd;
    if (!r)
        return;
    /* Whether our answer reached libmicrohttpd (or the socket): a request
     * it refused itself later (a broken chunk) got its answer, not ours. */
    handed = (r->queued && !r->answer) || r->sent_directly;
    us = (long long)(clock_us() - r->start_us);
    o = json_pack("{s:s, s:s, s:o, s:o, s:i, s:I, s:I}", "request_id", r->id, "remote",
                  r->conn ? r->conn->remote : "", "method", utf8_json(r->method ? r->method : ""),
                  "path",
                  utf8_json(r->path && !r->bad_target ? r->path
                            : r->target               ? r->target
                                                      : ""),
                  "status", handed ? (int)r->status : 0, "bytes", handed ? (json_int_t)r->bytes : 0,
                  "us", (json_int_t)us);
    if (o) {
        json_object_set_new(o, "user", r->who ? utf8_json(r->who->user) : json_null());
        json_object_set_new(o, "auth",
                            json_string(r->who ? auth_method_name(r->who->method) : "none"));
        json_object_set_new(o, "cert_fingerprint",
                            r->conn && r->conn->peer.n
                                ? json_string(r->conn->peer.items[0].fingerprint)
                                : json_null());
        if (r->reason)
            json_object_set_new(o, "reason", json_string(r->reason));
        /* The certificate decision of this connection used a CRL past its
         * next update: it still applied, and the log says so. */
        if (r->conn && r->conn->has_cert_id && r->conn->cert_id.crl_stale) {
            json_object_set_new(o, "crl_stale", json_true());
            json_object_set_new(o, "crl_issuer", utf8_json(r->conn->cert_id.crl_issuer));
        }
        if (!handed && toe == MHD_REQUEST_TERMINATED_WITH_ERROR) {
            json_object_set_new(o, "answered_by", json_string("libmicrohttpd"));
            if (r->queued)
                json_object_set_new(o, "decided_status", json_integer((json_int_t)r->status));
        }
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->sent_directly)
            json_object_set_new(o, "terminated", json_string(termination_name(toe)));
    }
    log_event("request", o);
    metrics_request(r->route                         ? METRICS_SLOT_BUILTIN
                    : r->dyn.match == ROUTE_RESOURCE ? metrics_resource_slot(r->dyn.resource)
                    : r->dyn.match == ROUTE_TABLE    ? METRICS_SLOT_TABLE_API
                                                     : METRICS_SLOT_NONE,
                    r->status, us > 0 ? (uint64_t)us : 0);
    if (r->answer)
        MHD_destroy_response(r->answer);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        __atomic_add_fetch(&srv->unanswered, 1, __ATOMIC_ACQ_REL);
    /* Between requests now: the next head's deadline starts with its first
     * byte (the sweeper watches for it); until then --idle-timeout rules. */
    if (r->conn)
        __atomic_store_n(&r->conn->head_state, HEAD_IDLE | (uint64_t)clock_ms(), __ATOMIC_RELEASE);
    writer_job_free(r->job);
    writer_catalog_release(r->cat);
    json_decref(r->dyn.params);
    free(r->path);
    free(r->target);
    free(r->body);
    free(r);
    *req_cls = NULL;
    __atomic_sub_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
}
