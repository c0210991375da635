#include "config.h"
#include "base/crypto.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

int crypto_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0) {
        memset(out, 0, 32);
        return CG_ERR;
    }
    return CG_OK;
}

void crypto_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char h[32];

    if (crypto_sha256(data, len, h)) {
        out[0] = '\0';
        return;
    }
    cg_hex(h, sizeof(h), out);
}

int crypto_sha256_begin(struct crypto_hash *h)
{
    gnutls_hash_hd_t g = NULL;

    h->is_hmac = false;
    h->impl = NULL;
    if (gnutls_hash_init(&g, GNUTLS_DIG_SHA256) < 0)
        return CG_ERR;
    h->impl = g;
    return CG_OK;
}

int crypto_hmac_sha256_begin(struct crypto_hash *h, const void *key, size_t key_len)
{
    gnutls_hmac_hd_t g = NULL;

    h->is_hmac = true;
    h->impl = NULL;
    if (gnutls_hmac_init(&g, GNUTLS_MAC_SHA256, key, key_len) < 0)
        return CG_ERR;
    h->impl = g;
    return CG_OK;
}

void crypto_hash_update(struct crypto_hash *h, const void *data, size_t len)
{
    if (h->is_hmac)
        gnutls_hmac(h->impl, data, len);
    else
        gnutls_hash(h->impl, data, len);
}

void crypto_hash_end(struct crypto_hash *h, unsigned char out[32])
{
    if (h->is_hmac)
        gnutls_hmac_deinit(h->impl, out);
    else
        gnutls_hash_deinit(h->impl, out);
    h->impl = NULL;
}

int crypto_random(void *buf, size_t len, bool is_key)
{
    return gnutls_rnd(is_key ? GNUTLS_RND_KEY : GNUTLS_RND_NONCE, buf, len) < 0 ? CG_ERR : CG_OK;
}

int crypto_pbkdf2_sha256(const void *password, size_t len, const void *salt, size_t salt_len,
                         unsigned iterations, void *out, size_t out_len)
{
    gnutls_datum_t key = {(unsigned char *)password, (unsigned)len};
    gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};

    return gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &s, iterations, out, out_len) < 0 ? CG_ERR
                                                                                    : CG_OK;
}

char *crypto_base64_encode(const void *data, size_t len)
{
    gnutls_datum_t src = {(unsigned char *)data, (unsigned)len}, dst = {NULL, 0};
    char *out;

    if (gnutls_base64_encode2(&src, &dst) < 0)
        return NULL;
    out = malloc(dst.size + 1);
    if (out) {
        memcpy(out, dst.data, dst.size);
        out[dst.size] = '\0';
    }
    gnutls_free(dst.data);
    return out;
}

int crypto_base64_decode(const char *text, size_t len, unsigned char **out_data, size_t *out_len)
{
    gnutls_datum_t src = {(unsigned char *)text, (unsigned)len}, dst = {NULL, 0};
    unsigned char *out;

    *out_data = NULL;
    *out_len = 0;
    if (gnutls_base64_decode2(&src, &dst) < 0)
        return CG_EPARSE;
    out = malloc(dst.size + 1);
    if (out) {
        memcpy(out, dst.data, dst.size);
        out[dst.size] = '\0';
        *out_data = out;
        *out_len = dst.size;
    }
    gnutls_memset(dst.data, 0, dst.size);
    gnutls_free(dst.data);
    return out ? CG_OK : CG_ENOMEM;
}

void crypto_wipe(void *p, size_t len)
{
    if (p)
        gnutls_memset(p, 0, len);
}
