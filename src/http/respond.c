/*
 * respond: how an answer is decided (respond_text, respond_json,
 * respond_error, respond_decided), handed to libmicrohttpd (send_answer)
 * or, where libmicrohttpd cannot, written on the TLS session
 * (send_and_close); the one list of security headers. Relies on
 * base/error for bodies. Does not decide statuses: the stages do.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/error.h"
#include "tls/tls.h"
#include "tls/wire.h"

/* ---- responses ---- */

/* The security headers on every answer, certgate's own and a script's:
 * the one list of them. */
static const char *const security_headers[][2] = {
    {"Strict-Transport-Security", "max-age=31536000"},
    {"X-Content-Type-Options", "nosniff"},
    {"Cache-Control", "no-store"},
};
#define N_SECURITY_HEADERS (sizeof(security_headers) / sizeof(security_headers[0]))

/* The headers every answer carries (and its reason, Allow, Basic realm),
 * as name/value pairs: one list for libmicrohttpd's responses and for the
 * answers send_and_close writes itself. @return the number of pairs. */
static size_t answer_headers(const struct request *r, unsigned status, const char *out[10][2])
{
    size_t n = 0;

    out[n][0] = MHD_HTTP_HEADER_CONTENT_TYPE, out[n++][1] = "application/json";
    out[n][0] = "X-Request-Id", out[n++][1] = r->id;
    for (size_t i = 0; i < N_SECURITY_HEADERS; i++)
        out[n][0] = security_headers[i][0], out[n++][1] = security_headers[i][1];
    if (r->reason)
        out[n][0] = "X-Certgate-Reason", out[n++][1] = r->reason;
    if (r->allow[0])
        out[n][0] = "Allow", out[n++][1] = r->allow;
    if (status == 401 && cfg_of(r->conn->srv)->basic_auth)
        out[n][0] = "WWW-Authenticate", out[n++][1] = "Basic realm=\"certgate\"";
    if (r->retry_after[0])
        out[n][0] = "Retry-After", out[n++][1] = r->retry_after;
    return n;
}

void add_common_headers(struct request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    for (size_t i = 0; i < N_SECURITY_HEADERS; i++)
        MHD_add_response_header(resp, security_headers[i][0], security_headers[i][1]);
}

/*
 * Decides the answer: @p text (taken over, malloc'd) with @p status as
 * application/json. It is handed to libmicrohttpd later (send_answer), once
 * the request is complete: libmicrohttpd 0.9.75 closes the connection after
 * any response queued before the end of the request, even a GET without a
 * body, so a 404 queued at once would cost the client its keep-alive.
 */
enum stage respond_text(struct request *r, unsigned status, char *text, const char *allow)
{
    const char *hdr[10][2];
    struct MHD_Response *resp;
    size_t len = text ? strlen(text) : 0, n;

    if (r->answer != ANSWER_NONE) {
        free(text);
        return STAGE_ANSWERED;
    }
    if (allow)
        snprintf(r->allow, sizeof(r->allow), "%s", allow);
    if (!text) {
        /* Out of memory while building the body: still answer. */
        status = 500;
        len = strlen(error_body_no_memory);
        resp = MHD_create_response_from_buffer(len, (void *)error_body_no_memory,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    }
    if (!resp) {
        free(text);
        return STAGE_ANSWERED;
    }
    n = answer_headers(r, status, hdr);
    for (size_t i = 0; i < n; i++)
        MHD_add_response_header(resp, hdr[i][0], hdr[i][1]);
    r->answer_text = text ? text : error_body_no_memory;
    return respond_decided(r, status, resp,
                           strcmp(r->method ? r->method : "", "HEAD") == 0 ? 0 : len);
}

/* Holds @p resp (taken over) as the request's answer until send_answer. */
enum stage respond_decided(struct request *r, unsigned status, struct MHD_Response *resp,
                           size_t bytes)
{
    r->response = resp;
    r->answer = ANSWER_DECIDED;
    r->status = status;
    r->bytes = bytes;
    return STAGE_ANSWERED;
}

/* Hands the decided answer to libmicrohttpd. */
void send_answer(struct request *r)
{
    if (r->answer != ANSWER_DECIDED)
        return;
    /* r->bytes is 0 for HEAD; 204 and 304 carry no body whatever it says. */
    if (r->conn)
        tls_wire_expect_answer(r->conn->fd, r->status != 204 && r->status != 304 ? r->bytes : 0);
    MHD_queue_response(r->mhd, r->status, r->response);
    MHD_destroy_response(r->response);
    r->response = NULL;
    r->answer = ANSWER_QUEUED;
}

/*
 * An answer written on the session itself, head and body in one buffer:
 * status, Date, Connection: close, Content-Length @p content_length, the
 * @p n header pairs, then @p body_len bytes of @p body (0 for HEAD).
 * For send_and_close and for the answers that replace libmicrohttpd's own.
 * @return malloc'd bytes (@p len of them), NULL when out of memory.
 */
static char *closing_answer(unsigned status, const char *const hdr[][2], size_t n,
                            size_t content_length, const char *body, size_t body_len, size_t *len)
{
    const char *phrase = MHD_get_reason_phrase_for(status);
    char head[2048], date[64], *all;
    size_t used;
    struct tm tm;
    time_t now = time(NULL);

    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    used = (size_t)snprintf(head, sizeof(head),
                            "HTTP/1.1 %u %s\r\nDate: %s\r\nConnection: close\r\n"
                            "Content-Length: %zu\r\n",
                            status, phrase && *phrase ? phrase : "Error", date, content_length);
    for (size_t i = 0; i < n && used < sizeof(head); i++)
        used +=
            (size_t)snprintf(head + used, sizeof(head) - used, "%s: %s\r\n", hdr[i][0], hdr[i][1]);
    if (used + 2 >= sizeof(head))
        return NULL;
    all = malloc(used + 2 + body_len);
    if (!all)
        return NULL;
    memcpy(all, head, used);
    memcpy(all + used, "\r\n", 2);
    if (body_len)
        memcpy(all + used + 2, body, body_len);
    *len = used + 2 + body_len;
    return all;
}

/* Set when send_and_close returns MHD_NO on purpose, so that the
 * "Application reported internal error" line that libmicrohttpd then
 * writes on this thread is not logged as one. */
__thread bool closing_on_purpose;

/*
 * Writes the decided answer on the TLS session itself and closes the
 * connection. For what libmicrohttpd 0.9.75 cannot answer: it queues no
 * response while a body is arriving (a chunked body over the limit is cut
 * here rather than read to its end), and a head that nearly fills the
 * connection's memory pool leaves it no room to build the answer's
 * headers. This runs on the connection's own thread inside a callback,
 * when libmicrohttpd is not writing to the session, so records cannot
 * interleave; returning MHD_NO then makes libmicrohttpd close it (with a
 * TLS close_notify).
 */
enum MHD_Result send_and_close(struct request *r)
{
    const union MHD_ConnectionInfo *si =
        MHD_get_connection_info(r->mhd, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(r->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    const char *hdr[10][2];
    size_t body_len = r->answer_text ? strlen(r->answer_text) : 0, n, len;
    char *all;

    n = answer_headers(r, r->status, hdr);
    /* Head and body in one buffer: one record (up to 16 KiB), one send. */
    all = si && si->tls_session && fi
              ? closing_answer(r->status, hdr, n, body_len, r->answer_text,
                               strcmp(r->method ? r->method : "", "HEAD") == 0 ? 0 : body_len, &len)
              : NULL;
    if (all) {
        tls_session_send_all(si->tls_session, fi->connect_fd, all, len);
        free(all);
    }
    if (r->conn)
        r->conn->body_unread = true;
    if (r->response)
        MHD_destroy_response(r->response);
    r->response = NULL;
    r->answer_text = NULL;
    r->answer = ANSWER_WRITTEN;
    closing_on_purpose = true;
    return MHD_NO;
}

/* What each status libmicrohttpd answers itself means, in certgate's words
 * (connection.c of 0.9.75: the only statuses it writes on its own). */
static const struct {
    unsigned status;
    enum cg_error error;
    const char *detail;
} own_answers[] = {
    {400, CG_ERROR_BAD_REQUEST,
     "the request is malformed: its request line, a header line, its Content-Length or its "
     "chunked framing cannot be read"},
    {413, CG_ERROR_BODY_TOO_LARGE, "the request's Content-Length or a chunk's size is too large"},
    {414, CG_ERROR_HEADER_TOO_LARGE,
     "the request line does not fit the connection's memory: send a shorter target"},
    {431, CG_ERROR_HEADER_TOO_LARGE,
     "the request head does not fit the connection's memory: send fewer or shorter header "
     "fields (see --max-header-size)"},
    {500, CG_ERROR_INTERNAL, "the connection ran out of memory"},
    {505, CG_ERROR_BAD_REQUEST, "the HTTP version is not supported: send HTTP/1.1 or HTTP/1.0"},
};

/*
 * The answer that replaces one libmicrohttpd writes itself (tls/wire):
 * the JSON error for its status, with the headers of every answer, and
 * Connection: close (libmicrohttpd closes after it). NULL for a status it
 * is not known to write. Runs on the connection's thread; no request
 * object exists for most of these.
 */
char *respond_own_answer(unsigned status, size_t *len)
{
    const char *hdr[1 + N_SECURITY_HEADERS][2];
    char *body, *all;
    size_t i, n = 0;

    for (i = 0; i < sizeof(own_answers) / sizeof(own_answers[0]); i++) {
        if (own_answers[i].status == status)
            break;
    }
    if (i == sizeof(own_answers) / sizeof(own_answers[0]))
        return NULL;
    body = error_body(own_answers[i].error, status == 505 ? "HTTP version not supported" : NULL,
                      own_answers[i].detail);
    if (!body)
        return NULL;
    hdr[n][0] = MHD_HTTP_HEADER_CONTENT_TYPE, hdr[n++][1] = "application/json";
    for (size_t k = 0; k < N_SECURITY_HEADERS; k++)
        hdr[n][0] = security_headers[k][0], hdr[n++][1] = security_headers[k][1];
    all = closing_answer(status, hdr, n, strlen(body), body, strlen(body), len);
    free(body);
    return all;
}

enum stage respond_json(struct request *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(body);
    return respond_text(r, status, text, NULL);
}

enum stage respond_error(struct request *r, enum cg_error e, const char *detail)
{
    return respond_text(r, error_status(e), error_body(e, NULL, detail), NULL);
}
