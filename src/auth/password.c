#include "config.h"
#include "auth/password.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_LEN 16
#define HASH_LEN 32

static int b64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    gnutls_datum_t src = {(unsigned char *)in, (unsigned)len}, dst = {NULL, 0};
    int rc;

    rc = gnutls_base64_encode2(&src, &dst);
    if (rc < 0)
        return CG_ERR;
    if (dst.size + 1 > outlen) {
        gnutls_free(dst.data);
        return CG_ERR;
    }
    memcpy(out, dst.data, dst.size);
    out[dst.size] = '\0';
    gnutls_free(dst.data);
    return CG_OK;
}

static int unb64(const char *in, unsigned char *out, size_t expect_len)
{
    gnutls_datum_t src = {(unsigned char *)in, (unsigned)strlen(in)}, dst = {NULL, 0};
    int ok;

    if (gnutls_base64_decode2(&src, &dst) < 0)
        return CG_EPARSE;
    ok = dst.size == expect_len;
    if (ok)
        memcpy(out, dst.data, expect_len);
    gnutls_free(dst.data);
    return ok ? CG_OK : CG_EPARSE;
}

static int derive(const char *password, size_t len, const unsigned char *salt, unsigned iter,
                  unsigned char out[HASH_LEN])
{
    gnutls_datum_t key = {(unsigned char *)password, (unsigned)len};
    gnutls_datum_t s = {(unsigned char *)salt, SALT_LEN};

    return gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &s, iter, out, HASH_LEN) < 0 ? CG_ERR : CG_OK;
}

int password_hash(const char *password, size_t len, char **out_encoded)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    char salt64[64], hash64[64], *enc;
    int rc;

    if (len == 0 || len > PASSWORD_MAX_LEN)
        return CG_EINVAL;
    if (gnutls_rnd(GNUTLS_RND_KEY, salt, sizeof(salt)) < 0)
        return CG_ERR;
    rc = derive(password, len, salt, PASSWORD_ITERATIONS, hash);
    if (rc)
        goto out;
    rc = b64(salt, sizeof(salt), salt64, sizeof(salt64));
    if (rc)
        goto out;
    rc = b64(hash, sizeof(hash), hash64, sizeof(hash64));
    if (rc)
        goto out;
    enc = malloc(32 + strlen(salt64) + strlen(hash64));
    if (!enc) {
        rc = CG_ENOMEM;
        goto out;
    }
    sprintf(enc, "pbkdf2-sha256$%u$%s$%s", (unsigned)PASSWORD_ITERATIONS, salt64, hash64);
    *out_encoded = enc;
out:
    gnutls_memset(hash, 0, sizeof(hash));
    return rc;
}

bool password_verify(const char *password, size_t len, const char *encoded)
{
    unsigned char salt[SALT_LEN], want[HASH_LEN], got[HASH_LEN];
    char salt64[64], hash64[64];
    unsigned iter;
    bool ok = false;

    if (!encoded || len == 0 || len > PASSWORD_MAX_LEN)
        return false;
    if (sscanf(encoded, "pbkdf2-sha256$%u$%63[^$]$%63s", &iter, salt64, hash64) != 3)
        return false;
    if (iter < 1000 || iter > 10000000)
        return false;
    if (unb64(salt64, salt, SALT_LEN) || unb64(hash64, want, HASH_LEN))
        return false;
    if (derive(password, len, salt, iter, got))
        return false;
    ok = cg_consttime_eq(got, want, HASH_LEN);
    gnutls_memset(got, 0, sizeof(got));
    return ok;
}
