/*
 * head: the checks on the request head as a whole, before routing (its
 * size, the body framing against request smuggling, the target), and the
 * body limit stage. Relies on libmicrohttpd's parsed headers and target.c.
 * Does not route or authenticate.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "http/target.h"

/* What the request head holds, for the checks libmicrohttpd leaves to us. */
struct head_scan {
    size_t bytes;         /* header names and values, bytes */
    size_t pool;          /* estimate of what the head takes of the memory pool */
    unsigned n_cl;        /* Content-Length headers */
    bool cl_differ;       /* ... and they disagree */
    const char *cl;       /* the first one */
    unsigned n_te;        /* Transfer-Encoding headers */
    const char *te;       /* the first one */
    bool expect_continue; /* Expect: 100-continue */
};

static enum MHD_Result scan_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    struct head_scan *h = cls;

    /* libmicrohttpd keeps each value in a pool entry of about 64 bytes;
     * cookies are parsed again from a copy of their header. */
    h->pool += 64 + (kind == MHD_COOKIE_KIND ? key_size + value_size + 2 : 0);
    if (kind != MHD_HEADER_KIND)
        return MHD_YES;
    h->bytes += key_size + value_size;
    h->pool += key_size + value_size + 4;
    if (!value)
        return MHD_YES;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (h->n_cl++ == 0)
            h->cl = value;
        else if (strcmp(h->cl, value) != 0)
            h->cl_differ = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (h->n_te++ == 0)
            h->te = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_EXPECT) == 0 &&
               strcasecmp(value, "100-continue") == 0) {
        h->expect_continue = true;
    }
    return MHD_YES;
}

/*
 * The checks on the head as a whole, before anything else looks at it:
 * its size (libmicrohttpd only refuses a head that overflows the memory
 * pool, which is sized well above --max-header-size so that the answer
 * always fits), the body framing (a request with two framings is how
 * requests are smuggled past proxies), and the target (target_check).
 */
enum stage stage_head(struct request *r)
{
    struct http_server *srv = r->conn->srv;
    struct head_scan h;
    const char *bad;
    char detail[200];

    memset(&h, 0, sizeof(h));
    MHD_get_connection_values_n(r->mhd, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND,
                                scan_value, &h);
    h.bytes += strlen(r->method) + strlen(r->target ? r->target : "") +
               strlen(r->version ? r->version : "") + 2;
    h.pool += h.bytes;
    if (h.bytes > srv->max_header_size || h.pool + 4096 > srv->pool_size) {
        if (h.bytes > srv->max_header_size)
            snprintf(detail, sizeof(detail),
                     "the request head is %zu bytes; the limit is %zu (request line, header names "
                     "and values)",
                     h.bytes, srv->max_header_size);
        else
            snprintf(detail, sizeof(detail), "the request head has too many header fields");
        r->early = EARLY_WRITE_CLOSE;
        return respond_error(r, CG_ERROR_HEADER_TOO_LARGE, detail);
    }
    r->framing.expect_continue = h.expect_continue;
    if (h.n_te) {
        r->framing.has_body = r->framing.is_chunked = true;
        if (h.n_cl || h.n_te > 1 || strcasecmp(h.te, "chunked") != 0)
            r->early = EARLY_CLOSE;
        if (h.n_cl)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "the request has both Content-Length and Transfer-Encoding; "
                                 "send only one of them");
        if (r->early == EARLY_CLOSE)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "Transfer-Encoding must be exactly chunked, once");
    } else if (h.n_cl) {
        r->framing.content_length = strtoull(h.cl, NULL, 10);
        r->framing.has_body = r->framing.content_length > 0;
        if (h.cl_differ) {
            r->early = EARLY_CLOSE;
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "the request has Content-Length headers that disagree");
        }
    }
    bad = target_check(r->target);
    if (bad) {
        r->is_bad_target = true;
        return respond_error(r, CG_ERROR_BAD_REQUEST, bad);
    }
    return STAGE_NEXT;
}

/* The body limit, checked once the caller is known (a stranger learns the
 * 401 first) and before the body is read. A chunked body is measured as it
 * arrives (pipeline.c). */
enum stage stage_limits(struct request *r)
{
    size_t limit = cfg_of(r->conn->srv)->max_body_size;
    char detail[64];

    if (r->framing.content_length <= limit)
        return STAGE_NEXT;
    snprintf(detail, sizeof(detail), "the limit is %zu bytes", limit);
    return respond_error(r, CG_ERROR_BODY_TOO_LARGE, detail);
}
