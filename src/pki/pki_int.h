/*
 * pki_int: the helpers the files of src/pki/ share with each other. Not part
 * of the pki interface: nothing outside src/pki/ includes this header, and
 * it may carry GnuTLS types, which pki.h never does.
 */
#ifndef CG_PKI_INT_H
#define CG_PKI_INT_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "pki/pki.h"

/* cert.c */

/** A serial number as lower-case hex without leading zero bytes, in @p out. */
void serial_hex(const unsigned char *s, size_t len, char *out, size_t outlen);

/** Parse one DER certificate for GnuTLS. @return CG_OK, CG_ENOMEM or CG_EPARSE */
int import_der(gnutls_x509_crt_t *out, const unsigned char *der, size_t len);

/** Free @p n strings and their array. */
void strv_free(char **v, size_t n);

/** The facts of a parsed certificate, in @p c. @return CG_OK, CG_EPARSE or CG_ENOMEM */
int fill_cert(gnutls_x509_crt_t crt, struct pki_cert *c);

/* dn_text.c */

/** Text from a certificate as certgate writes it: valid UTF-8, other bytes as \\XX. malloc'd. */
char *clean_text(const char *in, size_t len, bool escape_backslash);

/** A GnuTLS DN string as certgate text; frees @p d. malloc'd, NULL when out of memory. */
char *dn_text(gnutls_datum_t *d);

/* bundle.c */

/** The first @p needle in the @p hlen bytes at @p hay, or NULL. */
const char *memfind(const char *hay, size_t hlen, const char *needle);

#endif
