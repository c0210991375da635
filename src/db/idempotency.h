/*
 * idempotency: the stored responses of requests sent with an
 * Idempotency-Key, and the hash that tells two requests apart. Relies on
 * jansson (the response headers) and base/crypto (SHA-256). Does not decide
 * when a response is replayed: the engine does.
 */
#ifndef CG_IDEMPOTENCY_H
#define CG_IDEMPOTENCY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct dtable_db;

/* ---- idempotency ---- */

/** Size of a request hash from dtable_request_sha256, with its NUL. */
#define DTABLE_REQUEST_HASH_SIZE 68

/** A stored response of a request sent with an Idempotency-Key. */
struct dtable_idem {
    int status;                                    /* HTTP status */
    char *body;                                    /* response body */
    json_t *headers;                               /* the script's response headers, or NULL */
    char request_sha256[DTABLE_REQUEST_HASH_SIZE]; /* dtable_request_sha256 of the first request */
    char method[16];                               /* its method */
    char *path;                                    /* its request target (path and query) */
    int64_t created_at; /* seconds since the epoch; for put: replace rows older than this */
};

/**
 * The stored response for (@p user, @p key) newer than @p since.
 * @param out filled on CG_OK (free with dtable_idem_free)
 * @return CG_OK, CG_ENOTFOUND, CG_EDB
 */
int dtable_idem_get(struct dtable_db *db, const char *user, const char *key, int64_t since,
                    struct dtable_idem *out, struct cg_err *err);
/**
 * Store a response, replacing one created before @p resp->created_at.
 * @return CG_OK, CG_EEXIST (a newer response for the key is stored), CG_EDB
 */
int dtable_idem_put(struct dtable_db *db, const char *user, const char *key,
                    const struct dtable_idem *resp, int64_t now, struct cg_err *err);
/** Delete stored responses created before @p before. */
int dtable_idem_purge(struct dtable_db *db, int64_t before, struct cg_err *err);
/** Free the members of a stored response. */
void dtable_idem_free(struct dtable_idem *r);

/**
 * What identifies a request for Idempotency-Key: "v2:" and the SHA-256 (hex)
 * of its method, its request target exactly as sent (path and query string,
 * before percent-decoding) and its body. Rows stored before the hash
 * covered the query string hold the bare hash of method, decoded path and
 * body (or nothing, before schema 3): they never equal a "v2:" value, so
 * such a key is refused, never replayed for a request it cannot tell apart.
 * @param method the request method
 * @param target the request target as sent ("/api/a/b?x=1")
 * @param body the body, @p len bytes
 * @param out "v2:" and 64 hex digits
 * @return CG_OK, or CG_ERR when no hash could be made (@p out is then "")
 */
int dtable_request_sha256(const char *method, const char *target, const char *body, size_t len,
                          char out[DTABLE_REQUEST_HASH_SIZE]);

#endif
