/*
 * crypto: the one wrapper over GnuTLS's hashes, HMAC, random bytes, PBKDF2
 * and base64, for every module that needs them but handles no certificate
 * or TLS session (pki and tls call GnuTLS themselves). Relies on GnuTLS.
 * Does not keep keys: callers own their buffers and wipe them with
 * crypto_wipe.
 */
#ifndef CG_CRYPTO_H
#define CG_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/** An incremental SHA-256 or HMAC-SHA256 (crypto_*_begin to crypto_hash_end). */
struct crypto_hash {
    void *impl;   /* GnuTLS's handle */
    bool is_hmac; /* which kind */
};

/**
 * SHA-256 of @p len bytes.
 * @return CG_OK, or CG_ERR when GnuTLS fails (out is then all zeros)
 */
int crypto_sha256(const void *data, size_t len, unsigned char out[32]);

/** SHA-256 of @p len bytes as 64 lower-case hex digits ("" on failure). */
void crypto_sha256_hex(const void *data, size_t len, char out[65]);

/** Begin an incremental SHA-256. @return CG_OK or CG_ERR */
int crypto_sha256_begin(struct crypto_hash *h);

/** Begin an incremental HMAC-SHA256 with @p key. @return CG_OK or CG_ERR */
int crypto_hmac_sha256_begin(struct crypto_hash *h, const void *key, size_t key_len);

/** Feed @p len bytes. */
void crypto_hash_update(struct crypto_hash *h, const void *data, size_t len);

/** Finish: the 32-byte digest or MAC, and free the handle. */
void crypto_hash_end(struct crypto_hash *h, unsigned char out[32]);

/**
 * Random bytes from GnuTLS's generator.
 * @param is_key true for secrets (keys, salts), false for nonces and ids
 * @return CG_OK or CG_ERR
 */
int crypto_random(void *buf, size_t len, bool is_key);

/**
 * PBKDF2-HMAC-SHA256.
 * @return CG_OK or CG_ERR
 */
int crypto_pbkdf2_sha256(const void *password, size_t len, const void *salt, size_t salt_len,
                         unsigned iterations, void *out, size_t out_len);

/**
 * Base64 (RFC 4648, with padding) of @p len bytes.
 * @return malloc'd NUL-terminated text, NULL when out of memory
 */
char *crypto_base64_encode(const void *data, size_t len);

/**
 * Decode base64.
 * @param out_data malloc'd bytes with a NUL after them (wipe secrets, then free)
 * @param out_len their number
 * @return CG_OK, CG_EPARSE (not base64) or CG_ENOMEM
 */
int crypto_base64_decode(const char *text, size_t len, unsigned char **out_data, size_t *out_len);

/** Overwrite @p len bytes with zeros in a way the compiler keeps. */
void crypto_wipe(void *p, size_t len);

#endif
