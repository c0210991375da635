/*
 * cache: certificates parsed before, by their DER bytes. Parsing a client
 * certificate (pki_cert_from_der: import, DN text, extensions, key) costs
 * about 80 us of CPU on this project's 2-core machines (measured on the
 * test PKI's ECDSA leaf), a twentieth of a whole mutual-TLS handshake, and a
 * client that reconnects sends the same bytes every time. A parse depends
 * on the bytes alone, so an entry never goes stale: trust changes are
 * decided later, from the snapshot. A hit is checked against the whole DER,
 * not only its hash, and hands out a copy.
 */
#include "config.h"
#include "pki/pki.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/crypto.h"

/* Entries (direct-mapped by the hash) and lock shards. */
#define CACHE_SLOTS 1024
#define CACHE_SHARDS 16

struct slot {
    bool used;              /* cert holds a parse */
    unsigned char hash[32]; /* SHA-256 of cert.der */
    struct pki_cert cert;   /* the parse */
};

struct pki_parse_cache {
    pthread_mutex_t locks[CACHE_SHARDS]; /* slot i is guarded by locks[i % CACHE_SHARDS] */
    struct slot slots[CACHE_SLOTS];
};

int pki_parse_cache_new(struct pki_parse_cache **out_cache)
{
    struct pki_parse_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return CG_ENOMEM;
    for (int i = 0; i < CACHE_SHARDS; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    *out_cache = c;
    return CG_OK;
}

void pki_parse_cache_free(struct pki_parse_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (c->slots[i].used)
            pki_cert_free(&c->slots[i].cert);
    }
    for (int i = 0; i < CACHE_SHARDS; i++)
        pthread_mutex_destroy(&c->locks[i]);
    free(c);
}

/* Whether @p s holds the parse of exactly these bytes. */
static bool holds(const struct slot *s, const unsigned char hash[32], const unsigned char *der,
                  size_t len)
{
    return s->used && memcmp(s->hash, hash, 32) == 0 && s->cert.der_len == len &&
           memcmp(s->cert.der, der, len) == 0;
}

int pki_cert_from_der_cached(struct pki_parse_cache *c, const unsigned char *der, size_t len,
                             struct pki_cert *out_cert)
{
    unsigned char hash[32];
    struct pki_cert kept;
    struct slot *s;
    pthread_mutex_t *lock;
    size_t i;
    int rc;

    if (!c || !der || len == 0 || crypto_sha256(der, len, hash))
        return pki_cert_from_der(der, len, out_cert);
    i = ((size_t)hash[0] << 8 | hash[1]) % CACHE_SLOTS;
    s = &c->slots[i];
    lock = &c->locks[i % CACHE_SHARDS];
    pthread_mutex_lock(lock);
    if (holds(s, hash, der, len)) {
        rc = pki_cert_copy(&s->cert, out_cert);
        pthread_mutex_unlock(lock);
        return rc;
    }
    pthread_mutex_unlock(lock);
    /* Parsed outside the lock; only a successful parse is kept. */
    rc = pki_cert_from_der(der, len, out_cert);
    if (rc || pki_cert_copy(out_cert, &kept))
        return rc;
    pthread_mutex_lock(lock);
    if (s->used)
        pki_cert_free(&s->cert);
    s->cert = kept;
    memcpy(s->hash, hash, sizeof(hash));
    s->used = true;
    pthread_mutex_unlock(lock);
    return CG_OK;
}
