/*
 * password: salted slow hashing of HTTP Basic passwords (PBKDF2-HMAC-SHA256,
 * 600,000 iterations, 16-byte random salt, via GnuTLS). Relies on GnuTLS's
 * gnutls_pbkdf2 and gnutls_rnd. Does not store anything and never logs.
 * Encoded form: "pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64".
 */
#ifndef CG_PASSWORD_H
#define CG_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "base/util.h"

#define PASSWORD_ITERATIONS 600000
#define PASSWORD_MAX_LEN 1024

/**
 * Hash a password with a fresh random salt.
 * @param password the secret (not logged, not kept)
 * @param len its length in bytes (1..PASSWORD_MAX_LEN)
 * @param out_encoded malloc'd encoded hash
 * @return CG_OK, CG_EINVAL (empty or too long), CG_ERR
 */
int password_hash(const char *password, size_t len, char **out_encoded);

/**
 * Check a password against an encoded hash in constant time.
 * @param encoded the stored hash
 * @return true when the password matches
 */
bool password_verify(const char *password, size_t len, const char *encoded);

#endif
