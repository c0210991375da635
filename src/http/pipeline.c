/*
 * pipeline: the request path as one list of stages, and the orchestrator
 * that alone decides what happens after each: go on, answer, or sleep
 * until a password check or a commit wakes the request, then run the
 * same stage again. libmicrohttpd calls on_request for the head, for each
 * piece of the body, after a wake-up and at the end; every one of those
 * calls goes through run_stages and deliver.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/metrics.h"
#include "tls/wire.h"

/* The endpoint's handler (the router chose it). */
static enum stage stage_dispatch(struct request *r)
{
    return r->route.handler(r);
}

/* A stage of the request path. */
struct stage_def {
    enum stage (*run)(struct request *r); /* the stage */
    bool needs_body;                      /* runs once the whole body is in */
};

/* What every request passes, in order (DESIGN: head checks, route,
 * authenticate, authorise, body limit, run, answer). */
static const struct stage_def stages[] = {
    {stage_head, false},         /* head.c: size, framing, target */
    {stage_route, false},        /* router.c: what answers; 404/405 outside /api/ */
    {stage_authenticate, false}, /* authn.c: certificate or Basic (may wait for the KDF) */
    {stage_authorise, false},    /* authz.c: 404/405 under /api/, --auth, roles */
    {stage_limits, false},       /* head.c: the body limit */
    {stage_dispatch, true},      /* handlers/: the answer (may wait for a commit) */
};
#define N_STAGES (sizeof(stages) / sizeof(stages[0]))

/* Runs the stages from where the request stands until one answers, one
 * waits, or the next needs the body that is not in yet. */
static void run_stages(struct request *r)
{
    while (r->next_stage < N_STAGES && r->answer == ANSWER_NONE) {
        const struct stage_def *s = &stages[r->next_stage];

        if (s->needs_body && !r->has_body)
            return;
        switch (s->run(r)) {
        case STAGE_NEXT:
            __atomic_store_n(&r->is_woken, false, __ATOMIC_RELEASE);
            r->next_stage++;
            break;
        case STAGE_ANSWERED: r->next_stage = N_STAGES; return;
        case STAGE_WAIT: r->is_waiting = true; return;
        }
    }
    /* Every stage passed and none answered: a handler that could not. */
    if (r->next_stage == N_STAGES && r->answer == ANSWER_NONE)
        respond_error(r, CG_ERROR_INTERNAL, r->id);
}

/*
 * Hands a decided answer over. Once the request is complete it goes to
 * libmicrohttpd. An answer decided from the head alone waits for the end of
 * the request when there is no body (keep-alive stays), and when the body
 * fits the limit, which is read and dropped first for the same reason.
 * Otherwise it goes now and the connection closes: a body over the limit,
 * a client waiting for 100-continue (it need not send the body at all), a
 * framing that cannot be trusted; and what libmicrohttpd cannot send is
 * written by send_and_close.
 */
static enum MHD_Result deliver(struct request *r)
{
    const struct framing *f = &r->framing;

    if (r->is_waiting || r->answer != ANSWER_DECIDED)
        return MHD_YES;
    if (r->has_body) {
        send_answer(r);
        return MHD_YES;
    }
    if (r->early == EARLY_WRITE_CLOSE)
        return send_and_close(r);
    if (r->early == EARLY_CLOSE || f->expect_continue ||
        (f->has_body && !f->is_chunked &&
         f->content_length > cfg_of(r->conn->srv)->max_body_size)) {
        /* The body may still be on its way: the close lingers (linger.c). */
        r->conn->body_unread = f->has_body;
        send_answer(r);
    }
    return MHD_YES;
}

void request_wake(struct request *r)
{
    __atomic_store_n(&r->is_woken, true, __ATOMIC_RELEASE);
    MHD_resume_connection(r->mhd);
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

static enum MHD_Result on_body(struct request *r, const char *data, size_t n)
{
    size_t limit = cfg_of(r->conn->srv)->max_body_size;
    char *nb;

    if (r->answer != ANSWER_NONE) {
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

/* The head is complete: the request begins. */
static bool request_begin(struct request *r, const char *url, const char *method,
                          const char *version)
{
    r->has_head = true;
    if (r->conn) {
        __atomic_store_n(&r->conn->head_state, HEAD_NONE, __ATOMIC_RELEASE);
        r->conn->requests++;
    }
    r->method = method;
    r->version = version;
    r->path = strdup(url ? url : "/");
    return r->path && r->conn;
}

enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;

    if (!r) {
        r = request_new(cls, mhd, NULL);
        if (!r)
            return MHD_NO;
        *req_cls = r;
    }
    if (!r->has_head) {
        if (!request_begin(r, url, method, version))
            return MHD_NO;
    } else if (r->is_waiting) {
        /* Woken: the stage that waited runs again. */
        if (!__atomic_load_n(&r->is_woken, __ATOMIC_ACQUIRE))
            return MHD_YES;
        r->is_waiting = false;
    } else if (*upload_data_size) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        return on_body(r, upload_data, n);
    } else {
        /* The request is complete. */
        r->has_body = true;
    }
    run_stages(r);
    return deliver(r);
}

void on_completed(void *cls, struct MHD_Connection *mhd, void **req_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    int64_t us;

    (void)mhd;
    if (!r)
        return;
    us = clock_us() - r->start_us;
    access_log(r, toe, us);
    metrics_request(route_metrics_slot(&r->route), r->status, us > 0 ? (uint64_t)us : 0);
    if (r->response)
        MHD_destroy_response(r->response);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        __atomic_add_fetch(&srv->unanswered, 1, __ATOMIC_ACQ_REL);
    /* Between requests now: the next head's deadline starts with its first
     * byte (the sweeper watches for it); until then --idle-timeout rules. */
    if (r->conn) {
        __atomic_store_n(&r->conn->head_state, HEAD_IDLE | (uint64_t)clock_ms(), __ATOMIC_RELEASE);
        tls_wire_answer_done(r->conn->fd);
    }
    writer_job_free(r->job);
    writer_catalog_release(r->cat);
    json_decref(r->route.dyn.params);
    free(r->path);
    free(r->target);
    free(r->body);
    free(r);
    *req_cls = NULL;
    __atomic_sub_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
}
