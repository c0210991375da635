#include "config.h"
#include "pki/pki.h"

#include <gnutls/gnutls.h>
#include <gnutls/pkcs12.h>
#include <gnutls/pkcs7.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki_int.h"

/* A bundle larger than this is not a client's or a CA's chain. */
#define MAX_BUNDLE_CERTS 64

static void perr(struct pki_parse_error *e, size_t pos, const char *subject, const char *reason)
{
    if (!e)
        return;
    e->position = pos;
    snprintf(e->subject, sizeof(e->subject), "%s", subject ? subject : "");
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

const char *memfind(const char *hay, size_t hlen, const char *needle)
{
    size_t nlen = strlen(needle);

    if (nlen > hlen)
        return NULL;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
            return hay + i;
    }
    return NULL;
}

static int list_push(struct pki_cert_list *list, gnutls_x509_crt_t crt)
{
    struct pki_cert *n = realloc(list->items, (list->n + 1) * sizeof(*n));
    int rc;

    if (!n)
        return CG_ENOMEM;
    list->items = n;
    rc = fill_cert(crt, &list->items[list->n]);
    if (rc)
        return rc;
    list->n++;
    return CG_OK;
}

/*
 * The extent of the DER element at @p d: 0 with its total length (header
 * and contents) in @p out_total, 1 for a BER indefinite length, -1 when the
 * header itself is malformed.
 */
static int der_extent(const unsigned char *d, size_t len, size_t *out_total)
{
    size_t l, n;

    if (len < 2)
        return -1;
    l = d[1];
    if (l == 0x80)
        return 1;
    if (l & 0x80) {
        n = l & 0x7f;
        if (n > 4 || 2 + n > len)
            return -1;
        l = 0;
        for (size_t i = 0; i < n; i++)
            l = (l << 8) | d[2 + i];
        *out_total = 2 + n + l;
        return 0;
    }
    *out_total = 2 + l;
    return 0;
}

/* Why a DER file that holds a private key is refused, or NULL. */
static const char *der_secret(const gnutls_datum_t *d)
{
    gnutls_pkcs12_t p12 = NULL;
    gnutls_x509_privkey_t key = NULL;
    const char *why = NULL;
    unsigned schema = 0, cipher = 0, iter = 0, salt_size;
    unsigned char salt[128];
    char *oid = NULL;
    int rc;

    if (gnutls_pkcs12_init(&p12) >= 0) {
        if (gnutls_pkcs12_import(p12, d, GNUTLS_X509_FMT_DER, 0) >= 0)
            why = "this is a PKCS#12 bundle (.p12/.pfx), which holds a private key: attach only "
                  "the certificate, never the key (openssl pkcs12 -in FILE -clcerts -nokeys "
                  "writes it as PEM)";
        gnutls_pkcs12_deinit(p12);
    }
    if (!why) {
        /* Reads the encryption parameters only; nothing is decrypted. */
        salt_size = sizeof(salt);
        rc = gnutls_pkcs8_info(d, GNUTLS_X509_FMT_DER, &schema, &cipher, salt, &salt_size, &iter,
                               &oid);
        gnutls_free(oid);
        if (rc >= 0 || rc == GNUTLS_E_SHORT_MEMORY_BUFFER)
            why = "this is an encrypted private key (DER PKCS#8): attach only the certificate, "
                  "never the key";
    }
    if (!why && gnutls_x509_privkey_init(&key) >= 0) {
        if (gnutls_x509_privkey_import(key, d, GNUTLS_X509_FMT_DER) >= 0)
            why = "this is a private key (DER PKCS#8, PKCS#1 or SEC1): attach only the "
                  "certificate, never the key";
        gnutls_x509_privkey_deinit(key);
    }
    return why;
}

/* What a DER file holds that is not a certificate, or NULL. */
static const char *der_other(const gnutls_datum_t *d)
{
    gnutls_x509_crl_t crl = NULL;
    gnutls_pkcs7_t p7 = NULL;
    gnutls_x509_crq_t crq = NULL;
    const char *what = NULL;

    if (gnutls_x509_crl_init(&crl) >= 0) {
        if (gnutls_x509_crl_import(crl, d, GNUTLS_X509_FMT_DER) >= 0)
            what = "this is a CRL, not a certificate: load it with certgate crl add";
        gnutls_x509_crl_deinit(crl);
    }
    if (!what && gnutls_pkcs7_init(&p7) >= 0) {
        if (gnutls_pkcs7_import(p7, d, GNUTLS_X509_FMT_DER) >= 0)
            what = "this is a PKCS#7 bundle (.p7b), not a certificate: convert it to PEM with "
                   "openssl pkcs7 -inform DER -print_certs -in FILE";
        gnutls_pkcs7_deinit(p7);
    }
    if (!what && gnutls_x509_crq_init(&crq) >= 0) {
        if (gnutls_x509_crq_import(crq, d, GNUTLS_X509_FMT_DER) >= 0)
            what = "this is a certificate request (CSR), not a certificate: have your CA sign it";
        gnutls_x509_crq_deinit(crq);
    }
    return what;
}

/*
 * A file without PEM blocks: one DER certificate. Anything else gets its
 * own reason: a private key in any DER form (PKCS#12, PKCS#8, PKCS#1,
 * SEC1) is refused as such, and a truncated certificate, trailing bytes or
 * two certificates back to back are "unparsable DER", not "no certificate".
 */
static int parse_der(const char *data, size_t len, struct pki_cert_list *out_list,
                     struct pki_parse_error *out_err)
{
    const unsigned char *d = (const unsigned char *)data;
    gnutls_datum_t dd = {(unsigned char *)data, (unsigned)len};
    gnutls_x509_crt_t crt = NULL;
    const char *why;
    size_t total = 0, next = 0;
    char msg[256];
    int ext, rc = CG_EPARSE, grc = GNUTLS_E_ASN1_DER_ERROR;

    ext = d[0] == 0x30 ? der_extent(d, len, &total) : -1;
    if (ext == 0 && total == len) {
        if (gnutls_x509_crt_init(&crt) < 0)
            return CG_ENOMEM;
        grc = gnutls_x509_crt_import(crt, &dd, GNUTLS_X509_FMT_DER);
        if (grc >= 0) {
            rc = list_push(out_list, crt);
            gnutls_x509_crt_deinit(crt);
            if (rc) {
                pki_cert_list_free(out_list);
                perr(out_err, 1, NULL, "the DER certificate could not be read");
            }
            return rc;
        }
        gnutls_x509_crt_deinit(crt);
    }
    why = der_secret(&dd);
    if (why) {
        perr(out_err, 0, NULL, why);
        return CG_EDENIED;
    }
    if (d[0] != 0x30) {
        perr(out_err, 0, NULL,
             "no certificate found (expected PEM blocks "
             "-----BEGIN CERTIFICATE----- or one DER certificate)");
        return CG_EPARSE;
    }
    why = der_other(&dd);
    if (why) {
        perr(out_err, 0, NULL, why);
        return CG_EPARSE;
    }
    if (ext < 0) {
        snprintf(msg, sizeof(msg), "unparsable DER: the length of its outer SEQUENCE is malformed");
    } else if (ext == 0 && total > len) {
        snprintf(msg, sizeof(msg),
                 "unparsable DER: the file is truncated (its DER structure needs %zu bytes, the "
                 "file has %zu)",
                 total, len);
    } else if (ext == 0 && total < len && d[total] == 0x30 &&
               der_extent(d + total, len - total, &next) == 0 && next <= len - total) {
        snprintf(msg, sizeof(msg),
                 "unparsable DER: the file holds more than one DER structure (%zu bytes, then "
                 "%zu more): one DER file holds one certificate; put several in a PEM file",
                 total, len - total);
    } else if (ext == 0 && total < len) {
        snprintf(msg, sizeof(msg),
                 "unparsable DER: %zu bytes of trailing data after the %zu-byte DER structure",
                 len - total, total);
    } else {
        snprintf(msg, sizeof(msg), "unparsable DER: not an X.509 certificate (%s)",
                 gnutls_strerror(grc));
    }
    perr(out_err, 0, NULL, msg);
    return CG_EPARSE;
}

int pki_parse_bundle(const char *data, size_t len, struct pki_cert_list *out_list,
                     struct pki_parse_error *out_err)
{
    static const char begin[] = "-----BEGIN ";
    const char *p = data, *end = data + len;
    size_t block = 0;
    int rc = CG_OK;

    out_list->items = NULL;
    out_list->n = 0;
    if (!data || len == 0) {
        perr(out_err, 0, NULL, "the file is empty: no certificate found");
        return CG_EPARSE;
    }
    if (!memfind(data, len, begin))
        return parse_der(data, len, out_list, out_err);
    while (p < end) {
        const char *b = memfind(p, (size_t)(end - p), begin), *label, *label_end, *e;
        char lbl[64], endmark[96];
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t d;
        size_t llen;

        if (!b)
            break;
        block++;
        label = b + sizeof(begin) - 1;
        label_end = memfind(label, (size_t)(end - label), "-----");
        if (!label_end || label_end - label >= (long)sizeof(lbl)) {
            perr(out_err, block, NULL, "malformed PEM header");
            rc = CG_EPARSE;
            goto fail;
        }
        llen = (size_t)(label_end - label);
        memcpy(lbl, label, llen);
        lbl[llen] = '\0';
        snprintf(endmark, sizeof(endmark), "-----END %s-----", lbl);
        e = memfind(label_end, (size_t)(end - label_end), endmark);
        if (strstr(lbl, "PRIVATE KEY")) {
            perr(out_err, block, NULL,
                 "the file holds a private key: attach only the certificate, never the key");
            rc = CG_EDENIED;
            goto fail;
        }
        if (!e) {
            perr(out_err, block, NULL, "PEM block has no END line");
            rc = CG_EPARSE;
            goto fail;
        }
        p = e + strlen(endmark);
        if (strcmp(lbl, "CERTIFICATE") != 0 && strcmp(lbl, "X509 CERTIFICATE") != 0) {
            char msg[160];

            snprintf(msg, sizeof(msg), "PEM block '%s' is not a certificate", lbl);
            perr(out_err, block, NULL, msg);
            rc = CG_EPARSE;
            goto fail;
        }
        if (out_list->n >= MAX_BUNDLE_CERTS) {
            perr(out_err, block, NULL, "more than 64 certificates in one file");
            rc = CG_EPARSE;
            goto fail;
        }
        d.data = (unsigned char *)b;
        d.size = (unsigned)(p - b);
        if (gnutls_x509_crt_init(&crt) < 0) {
            rc = CG_ENOMEM;
            goto fail;
        }
        if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) < 0) {
            gnutls_x509_crt_deinit(crt);
            perr(out_err, block, NULL, "the certificate is not valid PEM/DER (unparsable)");
            rc = CG_EPARSE;
            goto fail;
        }
        rc = list_push(out_list, crt);
        gnutls_x509_crt_deinit(crt);
        if (rc) {
            perr(out_err, block, NULL, "the certificate could not be read");
            goto fail;
        }
    }
    if (out_list->n == 0) {
        perr(out_err, 0, NULL, "no certificate found");
        rc = CG_EPARSE;
        goto fail;
    }
    return CG_OK;
fail:
    pki_cert_list_free(out_list);
    return rc;
}
