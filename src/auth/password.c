#include "config.h"
#include "auth/password.h"

#include "base/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_LEN 16
#define HASH_LEN 32

static int b64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    char *text = crypto_base64_encode(in, len);
    int rc = CG_ERR;

    if (text && strlen(text) < outlen) {
        memcpy(out, text, strlen(text) + 1);
        rc = CG_OK;
    }
    free(text);
    return rc;
}

static int unb64(const char *in, unsigned char *out, size_t expect_len)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = crypto_base64_decode(in, strlen(in), &data, &len);

    if (rc == CG_OK && len != expect_len)
        rc = CG_EPARSE;
    if (rc == CG_OK)
        memcpy(out, data, expect_len);
    crypto_wipe(data, len);
    free(data);
    return rc;
}

static int derive(const char *password, size_t len, const unsigned char *salt, unsigned iter,
                  unsigned char out[HASH_LEN])
{
    return crypto_pbkdf2_sha256(password, len, salt, SALT_LEN, iter, out, HASH_LEN);
}

int password_hash(const char *password, size_t len, char **out_encoded)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    char salt64[64], hash64[64], *enc;
    int rc;

    if (len == 0 || len > PASSWORD_MAX_LEN)
        return CG_EINVAL;
    if (crypto_random(salt, sizeof(salt), true))
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
    crypto_wipe(hash, sizeof(hash));
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
    crypto_wipe(got, sizeof(got));
    return ok;
}
