#include "config.h"
#include "db/idempotency.h"
#include "base/crypto.h"

#include <stdlib.h>
#include <string.h>
int dtable_request_sha256(const char *method, const char *target, const char *body, size_t len,
                          char out[DTABLE_REQUEST_HASH_SIZE])
{
    struct crypto_hash h;
    unsigned char d[32];

    /* The target as sent, not a canonical form: a retry resends the same
     * bytes, and two spellings of one query (reordered, re-escaped) are
     * refused as different rather than risk replaying for another request. */
    out[0] = '\0';
    if (crypto_sha256_begin(&h))
        return CG_ERR; /* no hash: the caller refuses the request, never stores "" */
    crypto_hash_update(&h, method, strlen(method) + 1);
    crypto_hash_update(&h, target, strlen(target) + 1);
    crypto_hash_update(&h, body, len);
    crypto_hash_end(&h, d);
    memcpy(out, "v2:", 3);
    cg_hex(d, sizeof(d), out + 3);
    return CG_OK;
}

void dtable_idem_free(struct dtable_idem *r)
{
    free(r->body);
    free(r->path);
    json_decref(r->headers);
    r->body = r->path = NULL;
    r->headers = NULL;
}
