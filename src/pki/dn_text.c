#include "config.h"
#include "pki/pki.h"
#include "base/utf8.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki_int.h"

/*
 * Text certgate builds from a certificate (DNs, CN, SANs, a CRL's issuer):
 * valid UTF-8 always, so it can be stored, printed and sent as JSON. A byte
 * that does not start a valid UTF-8 character, and every byte of a control
 * character, is written RFC 4514-style as \XX (upper-case hex): the same
 * certificate always yields the same string, and valid text comes out
 * byte-identical, so the DNs and rules stored before still compare equal.
 * GnuTLS already escapes DN values ("\\" for a backslash); SANs it hands
 * over raw, so there @p escape_backslash writes a backslash as "\\" too and
 * "\E9" can only come from the byte 0xE9.
 */
char *clean_text(const char *in, size_t len, bool escape_backslash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t size = len + 1, o = 0, i;
    char *out;

    for (i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_char(in + i, len - i, &cp);

        if (n == 0) {
            n = 1;
            size += 2;
        } else if (utf8_is_control(cp)) {
            size += 2 * n;
        } else if (escape_backslash && cp == '\\') {
            size += 1;
        }
        i += n;
    }
    out = malloc(size);
    if (!out)
        return NULL;
    for (i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_char(in + i, len - i, &cp);
        bool esc = n == 0 || utf8_is_control(cp);

        if (n == 0)
            n = 1;
        for (size_t k = 0; k < n; k++) {
            unsigned char b = (unsigned char)in[i + k];

            if (esc) {
                out[o++] = '\\';
                out[o++] = hex[b >> 4];
                out[o++] = hex[b & 15];
            } else {
                if (escape_backslash && b == '\\')
                    out[o++] = '\\';
                out[o++] = (char)b;
            }
        }
        i += n;
    }
    out[o] = '\0';
    return out;
}

/* A GnuTLS DN string as certgate text (see clean_text); frees @p d. */
char *dn_text(gnutls_datum_t *d)
{
    char *s = clean_text((const char *)d->data, d->size, false);

    gnutls_free(d->data);
    d->data = NULL;
    return s;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * GnuTLS's DN parser knows "\," but not RFC 4514's hex pairs ("\2C",
 * "\E9"), which is how certgate writes bytes that are not UTF-8: turn each
 * pair into the byte, kept escaped when it is one of RFC 4514's specials.
 */
static int unhex_dn(const char *in, char **out, struct cg_err *err)
{
    size_t len = strlen(in), o = 0;
    char *buf = malloc(2 * len + 1);

    if (!buf)
        return CG_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        unsigned char b;

        if (in[i] != '\\') {
            buf[o++] = in[i];
            continue;
        }
        if (i + 1 >= len) {
            free(buf);
            cg_err_set(err, "it ends with a lone backslash");
            return CG_EPARSE;
        }
        hi = hexval(in[i + 1]);
        lo = i + 2 < len ? hexval(in[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            buf[o++] = in[i++];
            buf[o++] = in[i];
            continue;
        }
        b = (unsigned char)(hi * 16 + lo);
        i += 2;
        if (b == 0) {
            free(buf);
            cg_err_set(err, "\\00 (a NUL byte) cannot be part of a DN");
            return CG_EPARSE;
        }
        /* GnuTLS's parser stops at them; such subjects are better matched
         * by key (spki=) or by the exact certificate. */
        if (b < 0x20 || b == 0x7f) {
            free(buf);
            cg_err_set(err,
                       "\\%02X is a control character, which a dn= rule cannot hold: map the "
                       "exact certificate, or match its key with spki=",
                       b);
            return CG_EPARSE;
        }
        if (strchr(",+\"\\<>;=# ", (char)b))
            buf[o++] = '\\';
        buf[o++] = (char)b;
    }
    buf[o] = '\0';
    *out = buf;
    return CG_OK;
}

int pki_canonical_dn(const char *in, char **out_dn, struct cg_err *err)
{
    gnutls_x509_dn_t dn = NULL;
    gnutls_datum_t d = {NULL, 0};
    char *raw = NULL;
    int rc;

    *out_dn = NULL;
    rc = unhex_dn(in, &raw, err);
    if (rc)
        return rc;
    for (const char *p = raw; *p; p++) {
        /* GnuTLS's parser takes "\\," for an escaped ',' (found by fuzz_dn). */
        if (*p == '\\' && p[1] == '\\' && p[2] == ',') {
            cg_err_set(err, "a value ends with a backslash, which certgate cannot match on: "
                            "map the exact certificate, or match its key with spki=");
            rc = CG_EPARSE;
            goto out;
        } else if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == '+') {
            cg_err_set(err, "it has a multi-valued RDN ('+' joins two attributes), which "
                            "certgate cannot match on: match one attribute with cn= or email= "
                            "instead, or escape a literal '+' as \\+");
            rc = CG_EPARSE;
            goto out;
        }
    }
    if (gnutls_x509_dn_init(&dn) < 0) {
        rc = CG_ENOMEM;
        goto out;
    }
    if (gnutls_x509_dn_set_str(dn, raw, NULL) < 0) {
        cg_err_set(err, "it is not an RFC 4514 DN (TYPE=VALUE pairs joined by ',', types such "
                        "as CN, O, OU, C, ST, L, DC, UID, EMAIL; ',' in a value written \\,)");
        rc = CG_EPARSE;
        goto out;
    }
    if (gnutls_x509_dn_get_str2(dn, &d, 0) < 0 || d.size == 0) {
        cg_err_set(err, "it cannot be written back as a DN");
        rc = CG_EPARSE;
        goto out;
    }
    *out_dn = dn_text(&d);
    rc = *out_dn ? CG_OK : CG_ENOMEM;
out:
    gnutls_free(d.data);
    if (dn)
        gnutls_x509_dn_deinit(dn);
    free(raw);
    return rc;
}
