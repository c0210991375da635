/*
 * access_log: the one "request" line per request, written when
 * libmicrohttpd completes it: who asked what, the answer's status and size,
 * how long it took, and when the answer was not certgate's own (a broken
 * chunk answered by libmicrohttpd) or never went out, why.
 */
#include "config.h"
#include "http/http_int.h"

#include "base/log.h"
#include "base/utf8.h"
#include "tls/wire.h"

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

void access_log(const struct request *r, enum MHD_RequestTerminationCode toe, int64_t us)
{
    /* Whether our answer reached libmicrohttpd (or the socket): a request
     * it refused itself later (a broken chunk) got its answer, not ours. */
    bool handed = r->answer == ANSWER_QUEUED || r->answer == ANSWER_WRITTEN;
    json_t *o;

    o = json_pack("{s:s, s:s, s:o, s:o, s:i, s:I, s:I}", "request_id", r->id, "remote",
                  r->conn ? r->conn->remote : "", "method", utf8_json(r->method ? r->method : ""),
                  "path",
                  utf8_json(r->path && !r->is_bad_target ? r->path
                            : r->target                  ? r->target
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
            /* Its answer went out as certgate's JSON error (tls/wire):
             * that status is the one the client got. */
            unsigned sent = r->conn ? tls_wire_replaced(r->conn->fd) : 0;

            if (sent)
                json_object_set_new(o, "status", json_integer((json_int_t)sent));
            json_object_set_new(o, "answered_by", json_string("libmicrohttpd"));
            if (r->answer != ANSWER_NONE)
                json_object_set_new(o, "decided_status", json_integer((json_int_t)r->status));
        }
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->answer != ANSWER_WRITTEN)
            json_object_set_new(o, "terminated", json_string(termination_name(toe)));
    }
    log_event("request", o);
}
