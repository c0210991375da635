#include "config.h"
#include "pki/pki.h"
#include "base/utf8.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>

#include "base/crypto.h"
#include "pki/constraints.h"
#include "pki/pki_int.h"

/* Longest chain the verifier builds, leaf included. */
#define MAX_CHAIN 8

/* ---- small helpers ---- */

static char *datum_str(gnutls_datum_t *d)
{
    char *s = malloc(d->size + 1);

    if (s) {
        memcpy(s, d->data, d->size);
        s[d->size] = '\0';
    }
    gnutls_free(d->data);
    d->data = NULL;
    return s;
}

/* Serial numbers as lower-case hex without leading zero bytes, so a serial
 * from a CRL entry and from a certificate compare equal. */
void serial_hex(const unsigned char *s, size_t len, char *out, size_t outlen)
{
    while (len > 1 && s[0] == 0) {
        s++;
        len--;
    }
    if (len * 2 + 1 > outlen)
        len = (outlen - 1) / 2;
    cg_hex(s, len, out);
}

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
static char *clean_text(const char *in, size_t len, bool escape_backslash)
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

/* Appends clean_text(s, len) to a string array. */
static int strv_push(char ***v, size_t *n, const char *s, size_t len, bool escape_backslash)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));

    if (!nv)
        return CG_ENOMEM;
    *v = nv;
    nv[*n] = clean_text(s, len, escape_backslash);
    if (!nv[*n])
        return CG_ENOMEM;
    (*n)++;
    return CG_OK;
}

int import_der(gnutls_x509_crt_t *out, const unsigned char *der, size_t len)
{
    gnutls_datum_t d = {(unsigned char *)der, (unsigned)len};

    if (gnutls_x509_crt_init(out) < 0)
        return CG_ENOMEM;
    if (gnutls_x509_crt_import(*out, &d, GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(*out);
        *out = NULL;
        return CG_EPARSE;
    }
    return CG_OK;
}

/* The TBSCertificate (or TBSCertList) bytes of a DER SEQUENCE { tbs, alg, sig }. */
static int der_tbs(const unsigned char *der, size_t len, gnutls_datum_t *out)
{
    size_t pos = 0, hdr, body;

    for (int level = 0; level < 2; level++) {
        size_t l, n;

        if (pos + 2 > len || der[pos] != 0x30)
            return CG_EPARSE;
        hdr = 2;
        l = der[pos + 1];
        if (l & 0x80) {
            n = l & 0x7f;
            if (n == 0 || n > 4 || pos + 2 + n > len)
                return CG_EPARSE;
            l = 0;
            for (size_t i = 0; i < n; i++)
                l = (l << 8) | der[pos + 2 + i];
            hdr += n;
        }
        body = l;
        if (pos + hdr + body > len)
            return CG_EPARSE;
        if (level == 0) {
            pos += hdr;
        } else {
            out->data = (unsigned char *)der + pos;
            out->size = (unsigned)(hdr + body);
        }
    }
    return CG_OK;
}

/* ---- certificate facts ---- */

static int fill_sans(gnutls_x509_crt_t crt, struct pki_cert *c)
{
    for (unsigned i = 0; i < 256; i++) {
        unsigned type = 0;
        char buf[1024];
        size_t size = sizeof(buf) - 1;
        int rc = gnutls_x509_crt_get_subject_alt_name2(crt, i, buf, &size, &type, NULL);

        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0)
            continue; /* too long or unparsable: not usable for matching */
        if (rc == GNUTLS_SAN_RFC822NAME)
            rc = strv_push(&c->san_email, &c->n_san_email, buf, size, true);
        else if (rc == GNUTLS_SAN_DNSNAME)
            rc = strv_push(&c->san_dns, &c->n_san_dns, buf, size, true);
        else if (rc == GNUTLS_SAN_URI)
            rc = strv_push(&c->san_uri, &c->n_san_uri, buf, size, true);
        else
            rc = CG_OK;
        if (rc)
            return rc;
    }
    return CG_OK;
}

static int fill_key(gnutls_x509_crt_t crt, struct pki_cert *c)
{
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t spki = {NULL, 0};
    unsigned bits = 0;
    int algo, rc = CG_EPARSE;
    char buf[64];

    if (gnutls_pubkey_init(&pub) < 0)
        return CG_ENOMEM;
    if (gnutls_pubkey_import_x509(pub, crt, 0) < 0)
        goto out;
    if (gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0)
        goto out;
    crypto_sha256_hex(spki.data, spki.size, c->spki_sha256);
    algo = gnutls_x509_crt_get_pk_algorithm(crt, &bits);
    if (algo == GNUTLS_PK_EC) {
        gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;

        gnutls_pubkey_export_ecc_raw(pub, &curve, NULL, NULL);
        snprintf(buf, sizeof(buf), "EC %s",
                 gnutls_ecc_curve_get_name(curve) ? gnutls_ecc_curve_get_name(curve)
                                                  : "unknown curve");
    } else {
        const char *name = gnutls_pk_algorithm_get_name((gnutls_pk_algorithm_t)algo);

        snprintf(buf, sizeof(buf), "%s %u", name ? name : "unknown", bits);
    }
    c->key_type = strdup(buf);
    rc = c->key_type ? CG_OK : CG_ENOMEM;
out:
    gnutls_free(spki.data);
    gnutls_pubkey_deinit(pub);
    return rc;
}

static bool valid_dns_name(const char *n)
{
    size_t label = 0;

    if (!*n || strlen(n) > 253)
        return false;
    for (const char *p = n; *p; p++) {
        char ch = *p;

        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        /* A wildcard only as a whole left-most label. */
        if (ch == '*' && p == n && (p[1] == '.' || !p[1])) {
            label++;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

/*
 * RFC 5280 rules GnuTLS's path validation does not enforce, checked once at
 * parse time; the verifier refuses a chain holding a certificate with a defect.
 */
static const char *find_defect(gnutls_x509_crt_t crt, struct pki_cert *c)
{
    unsigned bc_critical = 0, ca = 0;
    int pathlen = -1;

    for (unsigned i = 0; i < 64; i++) {
        char oid[128];
        size_t size = sizeof(oid);
        unsigned critical = 0;
        int rc = gnutls_x509_crt_get_extension_info(crt, i, oid, &size, &critical);

        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0)
            return "an extension cannot be read";
        if (strcmp(oid, "1.3.6.1.5.5.7.1.1") == 0) {
            gnutls_datum_t d = {NULL, 0};

            if (critical)
                return "its authorityInfoAccess extension is marked critical";
            rc = gnutls_x509_crt_get_authority_info_access(crt, 0, GNUTLS_IA_ACCESSMETHOD_OID, &d,
                                                           NULL);
            gnutls_free(d.data);
            if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                return "its authorityInfoAccess extension is malformed";
        } else if (strcmp(oid, "2.5.29.35") == 0 && critical) {
            return "its authorityKeyIdentifier extension is marked critical";
        } else if (strcmp(oid, "2.5.29.30") == 0) {
            gnutls_datum_t raw = {NULL, 0};
            const char *why;

            if (!c->is_ca)
                return "it carries name constraints but is not a CA";
            if (!critical)
                return "its nameConstraints extension is not marked critical";
            if (gnutls_x509_crt_get_extension_data2(crt, i, &raw) < 0)
                return "its nameConstraints extension cannot be read";
            why = constraints_defect(raw.data, raw.size, &c->n_name_constraints);
            gnutls_free(raw.data);
            if (why)
                return why;
        }
    }
    if (!c->subject[0]) {
        unsigned char san[8];
        size_t size = sizeof(san);
        unsigned san_critical = 0;
        int rc =
            gnutls_x509_crt_get_extension_by_oid(crt, "2.5.29.17", 0, san, &size, &san_critical);

        if ((rc < 0 && rc != GNUTLS_E_SHORT_MEMORY_BUFFER) || !san_critical)
            return "its subject is empty, so its names must be in a subjectAltName marked "
                   "critical (RFC 5280 4.1.2.6), and it has none";
    }
    if (gnutls_x509_crt_get_basic_constraints(crt, &bc_critical, &ca, &pathlen) >= 0 && ca &&
        !bc_critical)
        return "it is a CA whose basicConstraints extension is not marked critical";
    if (c->is_ca && !c->ski[0])
        return "it is a CA without a subjectKeyIdentifier";
    /* Without it a renewed or re-keyed CA cannot be told apart on the path. */
    if (!c->is_self_signed && !c->aki[0])
        return "it has no authorityKeyIdentifier, which RFC 5280 4.2.1.1 requires in every "
               "certificate but a self-signed one: reissue it with one (certtool adds it; "
               "openssl needs authorityKeyIdentifier = keyid in the extensions)";
    if (!c->is_ca && c->has_key_usage && (c->key_usage & PKI_KU_KEY_CERT_SIGN))
        return "its key usage allows signing certificates (keyCertSign) but it is not a CA";
    if (gnutls_x509_crt_get_pk_algorithm(crt, NULL) == GNUTLS_PK_DSA)
        return "it has a DSA key, which certgate does not accept";
    for (size_t i = 0; i < c->n_san_dns; i++) {
        if (!valid_dns_name(c->san_dns[i]))
            return "a DNS name in its subjectAltName is not a valid host name";
    }
    for (size_t i = 0; i < c->n_san_email; i++) {
        const char *at = strchr(c->san_email[i], '@');

        if (!at || at == c->san_email[i] || !at[1] || strchr(at + 1, '@'))
            return "an email address in its subjectAltName is malformed";
    }
    for (unsigned i = 0; i < 256; i++) {
        unsigned char buf[64];
        size_t size = sizeof(buf);
        unsigned type = 0;
        int rc = gnutls_x509_crt_get_subject_alt_name2(crt, i, buf, &size, &type, NULL);

        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc == GNUTLS_SAN_IPADDRESS && size != 4 && size != 16)
            return "an IP address in its subjectAltName is malformed";
    }
    return NULL;
}

int fill_cert(gnutls_x509_crt_t crt, struct pki_cert *c)
{
    gnutls_datum_t d = {NULL, 0};
    unsigned char buf[256];
    char text[256];
    size_t size;
    unsigned ca = 0, ku = 0;
    int pathlen = -1, rc, sig;

    memset(c, 0, sizeof(*c));
    c->path_len = -1;
    if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &d) < 0)
        return CG_EPARSE;
    c->der = malloc(d.size);
    if (!c->der) {
        gnutls_free(d.data);
        return CG_ENOMEM;
    }
    memcpy(c->der, d.data, d.size);
    c->der_len = d.size;
    gnutls_free(d.data);
    crypto_sha256_hex(c->der, c->der_len, c->fingerprint);

    /* An empty subject is valid when the names are in a critical
     * subjectAltName (RFC 5280 4.1.2.6): it is written as "". */
    rc = gnutls_x509_crt_get_dn3(crt, &d, 0);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        c->subject = strdup("");
    else if (rc < 0)
        goto parse;
    else
        c->subject = dn_text(&d);
    if (gnutls_x509_crt_get_issuer_dn3(crt, &d, 0) < 0)
        goto parse;
    c->issuer = dn_text(&d);
    if (!c->subject || !c->issuer)
        goto nomem;
    size = sizeof(text) - 1;
    /* GnuTLS escapes the value as in a DN ("Doe\, John"): clean it alike. */
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, text, &size) >= 0) {
        c->cn = clean_text(text, size, false);
        if (!c->cn)
            goto nomem;
    }
    size = sizeof(buf);
    if (gnutls_x509_crt_get_serial(crt, buf, &size) < 0 || size == 0)
        goto parse;
    serial_hex(buf, size, c->serial, sizeof(c->serial));
    size = sizeof(buf);
    if (gnutls_x509_crt_get_subject_key_id(crt, buf, &size, NULL) >= 0 && size <= 64)
        cg_hex(buf, size, c->ski);
    size = sizeof(buf);
    if (gnutls_x509_crt_get_authority_key_id(crt, buf, &size, NULL) >= 0 && size <= 64)
        cg_hex(buf, size, c->aki);
    c->not_before = (int64_t)gnutls_x509_crt_get_activation_time(crt);
    c->not_after = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
    if (c->not_before == -1 || c->not_after == -1)
        goto parse;

    rc = gnutls_x509_crt_get_basic_constraints(crt, NULL, &ca, &pathlen);
    if (rc >= 0) {
        c->is_ca = ca != 0;
        c->path_len = c->is_ca && pathlen >= 0 ? pathlen : -1;
    }
    if (gnutls_x509_crt_get_key_usage(crt, &ku, NULL) >= 0) {
        c->has_key_usage = true;
        c->key_usage = ku & 0xff;
    }
    for (unsigned i = 0;; i++) {
        size = sizeof(text) - 1;
        rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, text, &size, NULL);
        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0)
            goto parse;
        c->has_eku = true;
        if (strcmp(text, GNUTLS_KP_TLS_WWW_CLIENT) == 0)
            c->eku_client_auth = true;
        else if (strcmp(text, GNUTLS_KP_ANY) == 0)
            c->eku_any = true;
    }
    {
        /* An extendedKeyUsage extension that lists nothing allows nothing. */
        char ext[8];
        size_t esize = sizeof(ext);

        if (gnutls_x509_crt_get_extension_by_oid(crt, "2.5.29.37", 0, ext, &esize, NULL) !=
            GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            c->has_eku = true;
    }
    rc = fill_sans(crt, c);
    if (rc)
        goto fail;
    rc = fill_key(crt, c);
    if (rc)
        goto fail;
    sig = gnutls_x509_crt_get_signature_algorithm(crt);
    c->sig_algo = strdup(gnutls_sign_get_name((gnutls_sign_algorithm_t)sig)
                             ? gnutls_sign_get_name((gnutls_sign_algorithm_t)sig)
                             : "unknown");
    if (!c->sig_algo)
        goto nomem;
    {
        gnutls_datum_t sdn = {NULL, 0}, idn = {NULL, 0};

        c->is_self_issued = gnutls_x509_crt_get_raw_dn(crt, &sdn) >= 0 &&
                            gnutls_x509_crt_get_raw_issuer_dn(crt, &idn) >= 0 &&
                            sdn.size == idn.size && memcmp(sdn.data, idn.data, sdn.size) == 0;
        gnutls_free(sdn.data);
        gnutls_free(idn.data);
    }
    c->is_self_signed = c->is_self_issued && pki_cert_issued_by(c, c);
    c->defect = find_defect(crt, c);
    return CG_OK;
parse:
    rc = CG_EPARSE;
    goto fail;
nomem:
    rc = CG_ENOMEM;
fail:
    pki_cert_free(c);
    return rc;
}

int pki_cert_from_der(const unsigned char *der, size_t len, struct pki_cert *out_cert)
{
    gnutls_x509_crt_t crt = NULL;
    int rc;

    memset(out_cert, 0, sizeof(*out_cert));
    if (!der || len == 0 || len > 1024 * 1024)
        return CG_EPARSE;
    rc = import_der(&crt, der, len);
    if (rc)
        return rc;
    rc = fill_cert(crt, out_cert);
    gnutls_x509_crt_deinit(crt);
    return rc;
}

static int strv_copy(char **src, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0)
        return CG_OK;
    *out = calloc(n, sizeof(char *));
    if (!*out)
        return CG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        (*out)[i] = strdup(src[i]);
        if (!(*out)[i])
            return CG_ENOMEM;
    }
    return CG_OK;
}

int pki_cert_copy(const struct pki_cert *src, struct pki_cert *out_cert)
{
    struct pki_cert *c = out_cert;

    *c = *src;
    c->der = NULL;
    c->subject = c->issuer = c->cn = c->key_type = c->sig_algo = NULL;
    c->san_email = c->san_dns = c->san_uri = NULL;
    c->n_san_email = c->n_san_dns = c->n_san_uri = 0;
    c->der = malloc(src->der_len ? src->der_len : 1);
    if (!c->der)
        goto nomem;
    memcpy(c->der, src->der, src->der_len);
    c->subject = cg_strdup(src->subject);
    c->issuer = cg_strdup(src->issuer);
    c->cn = cg_strdup(src->cn);
    c->key_type = cg_strdup(src->key_type);
    c->sig_algo = cg_strdup(src->sig_algo);
    if ((src->subject && !c->subject) || (src->issuer && !c->issuer) || (src->cn && !c->cn) ||
        (src->key_type && !c->key_type) || (src->sig_algo && !c->sig_algo))
        goto nomem;
    c->n_san_email = src->n_san_email;
    c->n_san_dns = src->n_san_dns;
    c->n_san_uri = src->n_san_uri;
    if (strv_copy(src->san_email, src->n_san_email, &c->san_email) ||
        strv_copy(src->san_dns, src->n_san_dns, &c->san_dns) ||
        strv_copy(src->san_uri, src->n_san_uri, &c->san_uri))
        goto nomem;
    return CG_OK;
nomem:
    pki_cert_free(c);
    return CG_ENOMEM;
}

char *pki_cert_pem(const struct pki_cert *cert)
{
    gnutls_datum_t in = {cert->der, (unsigned)cert->der_len}, out = {NULL, 0};

    if (gnutls_pem_base64_encode2("CERTIFICATE", &in, &out) < 0)
        return NULL;
    return datum_str(&out);
}

void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void pki_cert_free(struct pki_cert *cert)
{
    if (!cert)
        return;
    free(cert->der);
    free(cert->subject);
    free(cert->issuer);
    free(cert->cn);
    free(cert->key_type);
    free(cert->sig_algo);
    strv_free(cert->san_email, cert->n_san_email);
    strv_free(cert->san_dns, cert->n_san_dns);
    strv_free(cert->san_uri, cert->n_san_uri);
    memset(cert, 0, sizeof(*cert));
    cert->path_len = -1;
}

void pki_cert_list_free(struct pki_cert_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        pki_cert_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

/* ---- DNs typed by an admin ---- */

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

/* ---- signatures ---- */

static bool signed_by_key(const unsigned char *der, size_t len, int sig_algo,
                          const gnutls_datum_t *sig, gnutls_x509_crt_t issuer)
{
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t tbs;
    bool ok = false;

    if (der_tbs(der, len, &tbs))
        return false;
    if (gnutls_pubkey_init(&pub) < 0)
        return false;
    if (gnutls_pubkey_import_x509(pub, issuer, 0) >= 0)
        ok = gnutls_pubkey_verify_data2(pub, (gnutls_sign_algorithm_t)sig_algo,
                                        GNUTLS_VERIFY_ALLOW_SIGN_WITH_SHA1, &tbs, sig) >= 0;
    gnutls_pubkey_deinit(pub);
    return ok;
}

static bool crt_signed_by(gnutls_x509_crt_t crt, const struct pki_cert *c, gnutls_x509_crt_t iss)
{
    unsigned char sigbuf[1024];
    size_t size = sizeof(sigbuf);
    gnutls_datum_t sig;
    int algo = gnutls_x509_crt_get_signature_algorithm(crt);

    if (algo < 0 || gnutls_x509_crt_get_signature(crt, (char *)sigbuf, &size) < 0)
        return false;
    sig.data = sigbuf;
    sig.size = (unsigned)size;
    return signed_by_key(c->der, c->der_len, algo, &sig, iss);
}

bool pki_cert_issued_by(const struct pki_cert *cert, const struct pki_cert *issuer)
{
    gnutls_x509_crt_t c = NULL, i = NULL;
    bool ok = false;

    if (!cert->der || !issuer->der)
        return false;
    if (cert->aki[0] && issuer->ski[0] && strcmp(cert->aki, issuer->ski) != 0)
        return false;
    if (import_der(&c, cert->der, cert->der_len))
        return false;
    if (import_der(&i, issuer->der, issuer->der_len))
        goto out;
    if (!gnutls_x509_crt_check_issuer(c, i))
        goto out;
    ok = crt_signed_by(c, cert, i);
out:
    if (i)
        gnutls_x509_crt_deinit(i);
    gnutls_x509_crt_deinit(c);
    return ok;
}

/* ---- verification ---- */

static const char *const reason_codes[] = {
    [PKI_OK] = "ok",
    [PKI_UNTRUSTED_ISSUER] = "untrusted_issuer",
    [PKI_MISSING_INTERMEDIATE] = "missing_intermediate",
    [PKI_EXPIRED] = "expired",
    [PKI_NOT_YET_VALID] = "not_yet_valid",
    [PKI_REVOKED] = "revoked",
    [PKI_SELF_SIGNED] = "self_signed",
    [PKI_BAD_KEY_USAGE] = "bad_key_usage",
    [PKI_CA_DISABLED] = "ca_disabled",
};

void pki_chain_key(const struct pki_cert *leaf, const struct pki_cert *sent, size_t n_sent,
                   char out_key[65])
{
    struct crypto_hash h;
    unsigned char d[32];

    if (crypto_sha256_begin(&h)) {
        snprintf(out_key, 65, "%s", leaf->fingerprint);
        return;
    }
    crypto_hash_update(&h, leaf->fingerprint, 64);
    for (size_t i = 0; i < n_sent; i++)
        crypto_hash_update(&h, sent[i].fingerprint, 64);
    crypto_hash_end(&h, d);
    cg_hex(d, sizeof(d), out_key);
}

const char *pki_reason_code(enum pki_reason reason)
{
    return (unsigned)reason < sizeof(reason_codes) / sizeof(reason_codes[0]) ? reason_codes[reason]
                                                                             : "unknown";
}

/* One certificate on the path being built. */
struct link {
    const struct pki_cert *cert;   /* the certificate */
    const struct pki_trust_ca *ca; /* its table record, NULL if only sent */
};

static int refuse(struct pki_verdict *v, enum pki_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct pki_verdict *v, enum pki_reason reason, const char *fmt, ...)
{
    va_list ap;

    v->reason = reason;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
    va_end(ap);
    return CG_OK;
}

static const char *when(int64_t t, char buf[static 21])
{
    cg_time_iso(t, buf);
    return buf;
}

static bool weak_sig(const struct pki_cert *c)
{
    gnutls_sign_algorithm_t s = gnutls_sign_get_id(c->sig_algo ? c->sig_algo : "");

    return s == GNUTLS_SIGN_UNKNOWN ||
           !gnutls_sign_is_secure2(s, GNUTLS_SIGN_FLAG_SECURE_FOR_CERTS);
}

static bool in_chain(const struct link *chain, size_t n, const struct pki_cert *c)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(chain[i].cert->fingerprint, c->fingerprint) == 0)
            return true;
    }
    return false;
}

bool pki_same_ca(const struct pki_cert *a, const struct pki_cert *b)
{
    return a->subject && b->subject && strcmp(a->spki_sha256, b->spki_sha256) == 0 &&
           strcmp(a->subject, b->subject) == 0;
}

/* The table's record of the CA @p c is a copy of (same name and key), the
 * exact certificate first; NULL when the table has no copy of it. */
static const struct pki_trust_ca *table_record(const struct pki_trust *t, const struct pki_cert *c)
{
    const struct pki_trust_ca *twin = NULL;

    for (size_t i = 0; i < t->n_cas; i++) {
        if (strcmp(t->cas[i].cert.fingerprint, c->fingerprint) == 0)
            return &t->cas[i];
        if (!twin && pki_same_ca(&t->cas[i].cert, c))
            twin = &t->cas[i];
    }
    return twin;
}

/* A disabled record of the table with @p c's key: disabling a CA refuses
 * every chain through its key, whatever copy of it is on the path. */
static const struct pki_trust_ca *key_disabled(const struct pki_trust *t, const struct pki_cert *c)
{
    for (size_t i = 0; i < t->n_cas; i++) {
        if (!t->cas[i].is_active && strcmp(t->cas[i].cert.spki_sha256, c->spki_sha256) == 0)
            return &t->cas[i];
    }
    return NULL;
}

/* The deleted CA whose key @p c carries, or NULL. */
static const struct pki_trust_deleted *key_deleted(const struct pki_trust *t,
                                                   const struct pki_cert *c)
{
    for (size_t i = 0; i < t->n_deleted; i++) {
        if (strcmp(t->deleted[i].spki_sha256, c->spki_sha256) == 0)
            return &t->deleted[i];
    }
    return NULL;
}

/*
 * The next candidate issuer of chain[n - 1], resuming at (*pass, *idx): table
 * CAs first (active before disabled), then what the client sent. A
 * candidate must carry the issuer name, match the AKI when both have one,
 * and verify the signature.
 */
static bool next_issuer(const struct pki_trust *t, const struct pki_cert *sent, size_t n_sent,
                        const struct link *chain, size_t n_chain, int *pass, size_t *idx,
                        struct link *out)
{
    const struct pki_cert *cur = chain[n_chain - 1].cert;

    for (; *pass < 3; (*pass)++, *idx = 0) {
        size_t n = *pass < 2 ? t->n_cas : n_sent;

        while (*idx < n) {
            size_t i = (*idx)++;
            const struct pki_cert *cand = *pass < 2 ? &t->cas[i].cert : &sent[i];

            if (*pass < 2 && t->cas[i].is_active != (*pass == 0))
                continue;
            if (!cand->subject || strcmp(cand->subject, cur->issuer) != 0)
                continue;
            if (in_chain(chain, n_chain, cand))
                continue;
            if (!pki_cert_issued_by(cur, cand))
                continue;
            out->cert = cand;
            out->ca = *pass < 2 ? &t->cas[i] : table_record(t, cand);
            return true;
        }
    }
    return false;
}

/* Whether a CRL of the table lists @p cert: one with @p cert's issuer name,
 * signed by the key that signed @p cert (the key of @p issuer), whichever
 * copy of that CA the path runs through. */
static bool revoked(const struct pki_trust *t, const struct link *issuer,
                    const struct pki_cert *cert, int64_t now, struct pki_verdict *v)
{
    for (size_t i = 0; i < t->n_crls; i++) {
        const struct pki_trust_crl *tc = &t->crls[i];

        if (!tc->crl.issuer || strcmp(tc->crl.issuer, cert->issuer) != 0 ||
            strcmp(tc->signer_spki, issuer->cert->spki_sha256) != 0)
            continue;
        if (tc->crl.next_update && tc->crl.next_update < now && !v->crl_stale) {
            v->crl_stale = true;
            snprintf(v->stale_crl_issuer, sizeof(v->stale_crl_issuer), "%s", tc->crl.issuer);
        }
        for (size_t j = 0; j < tc->crl.n_revoked; j++) {
            if (strcmp(tc->crl.revoked_serials[j], cert->serial) == 0)
                return true;
        }
    }
    return false;
}

static bool ca_allows_client_auth(const struct pki_cert *c)
{
    return !c->has_eku || c->eku_client_auth || c->eku_any;
}

static int check_validity(const struct pki_cert *c, bool is_leaf, int64_t now,
                          struct pki_verdict *v)
{
    char t[21];

    if (now > c->not_after)
        return refuse(v, PKI_EXPIRED,
                      is_leaf ? "the client certificate '%s' expired on %s: the client needs a "
                                "renewed certificate"
                              : "the CA certificate '%s' in the client's chain expired on %s: "
                                "renew that CA and add the new one with certgate ca add",
                      c->subject, when(c->not_after, t)),
               1;
    if (now < c->not_before)
        return refuse(v, PKI_NOT_YET_VALID,
                      is_leaf ? "the client certificate '%s' is not valid before %s: check the "
                                "clocks, or wait"
                              : "the CA certificate '%s' in the client's chain is not valid "
                                "before %s",
                      c->subject, when(c->not_before, t)),
               1;
    return 0;
}

/* Names a certificate presents to name constraints: its subject's
 * attributes and its SANs. */
static size_t constrained_names(const struct pki_cert *c)
{
    size_t n = 1 + c->n_san_dns + c->n_san_email + c->n_san_uri;

    for (const char *p = c->subject; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == ',' || *p == '+')
            n++;
    }
    return n;
}

/*
 * Name constraints (RFC 5280 4.2.1.10 and 6.1.3), which certgate applies
 * itself: GnuTLS 3.7 checks the leaf only, refuses a whole CA over a name
 * form it does not know, and does not apply directoryName subtrees. Every
 * certificate below a constrained CA is checked against that CA's subtrees
 * (self-issued intermediates exempt), after a cap on constraints x names:
 * each pair costs a comparison, so thousands of each are a CPU bomb (the cap
 * is OpenSSL's). True when they hold, false with @p why when not.
 */
static bool constraints_ok(const struct link *chain, size_t n, char *why, size_t whylen)
{
    enum { MAX_NC_CHECKS = 1 << 20 };

    for (size_t ca = 1; ca < n; ca++) {
        const struct pki_cert *cac = chain[ca].cert;
        size_t n_names = 0;

        if (cac->n_name_constraints == 0)
            continue;
        for (size_t below = 0; below < ca; below++)
            n_names += constrained_names(chain[below].cert);
        if (n_names > MAX_NC_CHECKS / cac->n_name_constraints) {
            snprintf(why, whylen,
                     "the CA '%s' has %zu name constraints to check against %zu names below it, "
                     "more than certgate checks (%d pairs)",
                     cac->subject, cac->n_name_constraints, n_names, MAX_NC_CHECKS);
            return false;
        }
        for (size_t below = 0; below < ca; below++) {
            if (below > 0 && chain[below].cert->is_self_issued)
                continue;
            if (constraints_hold(cac, chain[below].cert, why, whylen) != 1)
                return false;
        }
    }
    return true;
}

/* GnuTLS's RFC 5280 validation of @p n certificates, the last as the only
 * anchor: 0 with its status, -1 when it could not run. Times are checked
 * by the caller (at the caller's `now`), not here. */
static int gnutls_status(const struct link *chain, size_t n, unsigned *out_status)
{
    gnutls_x509_crt_t crts[MAX_CHAIN], anchor = NULL;
    gnutls_x509_trust_list_t tl = NULL;
    gnutls_typed_vdata_st vdata = {GNUTLS_DT_KEY_PURPOSE_OID,
                                   (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    unsigned flags = GNUTLS_VERIFY_DISABLE_TIME_CHECKS | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS |
                     GNUTLS_PROFILE_TO_VFLAGS(GNUTLS_PROFILE_MEDIUM);
    size_t imported = 0;
    int rc = -1;

    *out_status = 0;
    for (; imported < n; imported++) {
        if (import_der(&crts[imported], chain[imported].cert->der, chain[imported].cert->der_len))
            goto out;
    }
    if (import_der(&anchor, chain[n - 1].cert->der, chain[n - 1].cert->der_len))
        goto out;
    if (gnutls_x509_trust_list_init(&tl, 0) < 0)
        goto out;
    /* The list owns the anchor from here on. */
    if (gnutls_x509_trust_list_add_cas(tl, &anchor, 1, 0) != 1)
        goto out;
    anchor = NULL;
    if (gnutls_x509_trust_list_verify_crt2(tl, crts, (unsigned)n, &vdata, 1, flags, out_status,
                                           NULL) < 0)
        *out_status = GNUTLS_CERT_INVALID;
    rc = 0;
out:
    if (anchor)
        gnutls_x509_crt_deinit(anchor);
    if (tl)
        gnutls_x509_trust_list_deinit(tl, 1);
    for (size_t i = 0; i < imported; i++)
        gnutls_x509_crt_deinit(crts[i]);
    return rc;
}

/*
 * Runs GnuTLS's own RFC 5280 path validation over the chain built above:
 * unknown critical extensions, signatures, key strength (the "medium"
 * profile) and the clientAuth purpose.
 * GnuTLS 3.7 reports "signer constraints" for name constraints it handles
 * worse than constraints_ok (a name form it does not know, directoryName)
 * and for a pathLenConstraint it counts self-issued certificates against,
 * which check_link counts as RFC 5280 does; and it stops at the first
 * certificate that fails. So when that is all it says of the whole chain,
 * each link is validated on its own (a certificate with its issuer as the
 * anchor, where neither rule can bite): every other check still runs on
 * every certificate, and certgate's own verdict on constraints stands.
 */
static int gnutls_path_check(const struct link *chain, size_t n, struct pki_verdict *v)
{
    unsigned status = 0;

    if (gnutls_status(chain, n, &status))
        return CG_ENOMEM;
    if (status & GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) {
        status = 0;
        for (size_t i = 0; i + 1 < n && status == 0; i++) {
            unsigned one = 0;

            if (gnutls_status(chain + i, 2, &one))
                return CG_ENOMEM;
            status = one & ~(unsigned)GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE;
            if (status == GNUTLS_CERT_INVALID)
                status = 0; /* it accompanied the masked bit only */
        }
    }
    if (status == 0)
        return CG_OK;
    if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
        refuse(v, PKI_BAD_KEY_USAGE,
               "a certificate of the chain does not allow TLS client "
               "authentication (extended key usage)");
    else if (status & GNUTLS_CERT_INSECURE_ALGORITHM)
        refuse(v, PKI_UNTRUSTED_ISSUER,
               "a certificate of the chain uses an insecure algorithm "
               "or a key that is too weak");
    else {
        gnutls_datum_t txt = {NULL, 0};

        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0);
        refuse(v, PKI_UNTRUSTED_ISSUER, "the chain is not valid: %s",
               txt.data ? (const char *)txt.data : "rejected by RFC 5280 path validation");
        gnutls_free(txt.data);
    }
    return CG_OK;
}

/* A depth-first search for a valid path: when the first issuer found leads
 * nowhere (cross-signed CAs, an intermediate forbidden by one root's name
 * constraints), the next candidate is tried. The first failure met is what
 * the caller reports: it is the failure of the preferred path. */
struct search {
    const struct pki_trust *trust; /* table CAs and CRLs */
    const struct pki_cert *sent;   /* what the client sent */
    size_t n_sent;                 /* count */
    int64_t now;                   /* validation time */
    struct link chain[MAX_CHAIN];  /* the path being tried, leaf first */
    struct pki_verdict *out;       /* the result */
    struct pki_verdict tmp;        /* a failing branch's verdict */
    bool have_failure;             /* out holds the first failure */
    bool done;                     /* out holds a success */
    int nodes;                     /* candidates tried, bounded */
};

/* Keeps the first failure (with the path that led to it) in out. */
static void fail_branch(struct search *sr, size_t n)
{
    bool stale = sr->out->crl_stale;
    char stale_issuer[256];

    if (sr->have_failure)
        return;
    /* A stale CRL met on the way is reported whatever the verdict. */
    snprintf(stale_issuer, sizeof(stale_issuer), "%s", sr->out->stale_crl_issuer);
    *sr->out = sr->tmp;
    sr->out->crl_stale = stale;
    snprintf(sr->out->stale_crl_issuer, sizeof(sr->out->stale_crl_issuer), "%s", stale_issuer);
    sr->out->chain_len = n;
    for (size_t k = 0; k < n && k < sizeof(sr->out->chain) / sizeof(sr->out->chain[0]); k++)
        snprintf(sr->out->chain[k], sizeof(sr->out->chain[0]), "%s", sr->chain[k].cert->subject);
    sr->have_failure = true;
}

/* Checks the link from chain[n - 1] to its issuer @p next; 0 when it holds,
 * 1 when it fails (sr->tmp says why). */
static int check_link(struct search *sr, size_t n, const struct link *next, size_t non_self_issued)
{
    struct pki_verdict *v = &sr->tmp;
    const struct link *cur = &sr->chain[n - 1];
    const struct pki_trust_ca *off;
    const struct pki_trust_deleted *gone;
    char t[21];

    memset(v, 0, sizeof(*v));
    if (check_validity(next->cert, false, sr->now, v))
        return 1;
    if (next->cert->defect)
        return refuse(v, PKI_UNTRUSTED_ISSUER, "the CA certificate '%s' breaks RFC 5280: %s",
                      next->cert->subject, next->cert->defect),
               1;
    if (!next->cert->is_ca)
        return refuse(v, PKI_UNTRUSTED_ISSUER,
                      "the certificate '%s' that signed '%s' is not a CA (basicConstraints), so "
                      "it may not issue certificates",
                      next->cert->subject, cur->cert->subject),
               1;
    if (next->cert->has_key_usage && !(next->cert->key_usage & PKI_KU_KEY_CERT_SIGN))
        return refuse(v, PKI_UNTRUSTED_ISSUER,
                      "the key usage of the CA '%s' does not allow signing certificates "
                      "(keyCertSign)",
                      next->cert->subject),
               1;
    if (!ca_allows_client_auth(next->cert))
        return refuse(v, PKI_BAD_KEY_USAGE,
                      "the extended key usage of the CA '%s' does not allow TLS client "
                      "authentication, so certificates it issues cannot be client certificates",
                      next->cert->subject),
               1;
    if (weak_sig(cur->cert))
        return refuse(v, PKI_UNTRUSTED_ISSUER,
                      "the certificate '%s' is signed with %s, which is not secure enough "
                      "(SHA-1 and weaker are refused): reissue it with SHA-256 or better",
                      cur->cert->subject, cur->cert->sig_algo ? cur->cert->sig_algo : "?"),
               1;
    if (next->cert->path_len >= 0 && non_self_issued > (size_t)next->cert->path_len)
        return refuse(v, PKI_UNTRUSTED_ISSUER,
                      "the CA '%s' allows %d intermediate CA%s below it (pathLenConstraint) but "
                      "the chain has %zu",
                      next->cert->subject, next->cert->path_len,
                      next->cert->path_len == 1 ? "" : "s", non_self_issued),
               1;
    if (revoked(sr->trust, next, cur->cert, sr->now, sr->out))
        return refuse(v, PKI_REVOKED,
                      "the certificate '%s' (serial %s) is revoked by the CRL of '%s'%s",
                      cur->cert->subject, cur->cert->serial, next->cert->subject,
                      n == 1 ? ": the client needs a new certificate" : ""),
               1;
    off = key_disabled(sr->trust, next->cert);
    if (off)
        return refuse(v, PKI_CA_DISABLED,
                      "the CA '%s' is disabled in the CA certificate chain table: run certgate "
                      "ca enable %lld, or have the client use a certificate from an active CA",
                      next->cert->subject, (long long)off->id),
               1;
    gone = key_deleted(sr->trust, next->cert);
    if (gone)
        return refuse(v, PKI_UNTRUSTED_ISSUER,
                      "the CA '%s' was deleted from the CA certificate chain table on %s, and "
                      "every copy of it is refused: add it again with certgate ca add if you "
                      "trust it again",
                      gone->subject, when(gone->deleted_at, t)),
               1;
    return 0;
}

/* The whole path chain[0..n) ends at a table root: the checks over the
 * complete path. 1 on success (out filled), 0 on failure, -1 on error. */
static int finish_path(struct search *sr, size_t n)
{
    struct pki_verdict *v = &sr->tmp;
    const struct link *root = &sr->chain[n - 1];
    char why[400];
    bool crl_stale = sr->out->crl_stale;
    char stale[256];

    snprintf(stale, sizeof(stale), "%s", sr->out->stale_crl_issuer);
    memset(v, 0, sizeof(*v));
    if (!root->ca) {
        refuse(v, PKI_UNTRUSTED_ISSUER,
               "the chain ends at the root '%s', which is not in the CA certificate chain table: "
               "add it with certgate ca add if you trust it",
               root->cert->subject);
        return 0;
    }
    if (!constraints_ok(sr->chain, n, why, sizeof(why))) {
        refuse(v, PKI_UNTRUSTED_ISSUER, "%s", why);
        return 0;
    }
    if (gnutls_path_check(sr->chain, n, v))
        return -1;
    if (v->reason != PKI_OK)
        return 0;
    *sr->out = *v;
    sr->out->reason = PKI_OK;
    sr->out->crl_stale = crl_stale;
    snprintf(sr->out->stale_crl_issuer, sizeof(sr->out->stale_crl_issuer), "%s", stale);
    sr->out->issuer_ca_id = sr->chain[1].ca ? sr->chain[1].ca->id : 0;
    snprintf(sr->out->issuer_spki, sizeof(sr->out->issuer_spki), "%s",
             sr->chain[1].cert->spki_sha256);
    sr->out->root_ca_id = root->ca->id;
    sr->out->valid_from = INT64_MIN;
    sr->out->valid_until = INT64_MAX;
    for (size_t k = 0; k < n; k++) {
        if (sr->chain[k].cert->not_before > sr->out->valid_from)
            sr->out->valid_from = sr->chain[k].cert->not_before;
        if (sr->chain[k].cert->not_after < sr->out->valid_until)
            sr->out->valid_until = sr->chain[k].cert->not_after;
    }
    sr->out->chain_len = n;
    for (size_t k = 0; k < n && k < sizeof(sr->out->chain) / sizeof(sr->out->chain[0]); k++)
        snprintf(sr->out->chain[k], sizeof(sr->out->chain[0]), "%s", sr->chain[k].cert->subject);
    snprintf(sr->out->detail, sizeof(sr->out->detail),
             "the certificate chains to the root '%s' of the CA certificate chain table",
             root->cert->subject);
    return 1;
}

/* Tries every issuer of chain[n - 1]. 1: a valid path was found; 0: none
 * (the first failure is in out); -1: error. */
static int extend(struct search *sr, size_t n, size_t non_self_issued)
{
    const struct link *cur = &sr->chain[n - 1];
    struct link next;
    int pass = 0, rc;
    size_t idx = 0;
    bool any = false;

    if (n >= MAX_CHAIN) {
        memset(&sr->tmp, 0, sizeof(sr->tmp));
        refuse(&sr->tmp, PKI_UNTRUSTED_ISSUER, "the chain from '%s' is longer than %d certificates",
               sr->chain[0].cert->subject, MAX_CHAIN);
        fail_branch(sr, n);
        return 0;
    }
    /* Path length counts the non-self-issued intermediates below a CA. */
    if (n >= 2 && !cur->cert->is_self_issued)
        non_self_issued++;
    while (sr->nodes < 64 &&
           next_issuer(sr->trust, sr->sent, sr->n_sent, sr->chain, n, &pass, &idx, &next)) {
        any = true;
        sr->nodes++;
        if (check_link(sr, n, &next, non_self_issued)) {
            fail_branch(sr, n);
            continue;
        }
        sr->chain[n] = next;
        if (next.cert->is_self_signed)
            rc = finish_path(sr, n + 1);
        else
            rc = extend(sr, n + 1, non_self_issued);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            sr->done = true;
            return 1;
        }
        if (next.cert->is_self_signed)
            fail_branch(sr, n + 1);
    }
    if (any)
        return 0;
    memset(&sr->tmp, 0, sizeof(sr->tmp));
    if (n == 1)
        refuse(&sr->tmp, PKI_UNTRUSTED_ISSUER,
               "the issuer '%s' of the certificate is not in the CA certificate chain table and "
               "was not sent by the client: add that CA (and its root) with certgate ca add",
               cur->cert->issuer);
    else if (cur->cert->is_self_signed)
        refuse(&sr->tmp, PKI_UNTRUSTED_ISSUER,
               "the chain ends at the root '%s', which is not in the CA certificate chain table: "
               "add it with certgate ca add if you trust it",
               cur->cert->subject);
    else if (cur->ca)
        refuse(&sr->tmp, PKI_UNTRUSTED_ISSUER,
               "the CA '%s' is in the CA certificate chain table but its issuer '%s' is not: add "
               "the root CA with certgate ca add",
               cur->cert->subject, cur->cert->issuer);
    else
        refuse(&sr->tmp, PKI_MISSING_INTERMEDIATE,
               "the intermediate CA '%s' sent by the client was issued by '%s', which is neither "
               "in the CA certificate chain table nor sent by the client: add that CA (and the "
               "CAs above it) with certgate ca add",
               cur->cert->subject, cur->cert->issuer);
    fail_branch(sr, n);
    return 0;
}

int pki_verify(const struct pki_trust *trust, const struct pki_cert *leaf,
               const struct pki_cert *sent, size_t n_sent, int64_t now,
               struct pki_verdict *out_verdict)
{
    struct pki_verdict *v = out_verdict;
    struct search *sr;
    int rc;

    memset(v, 0, sizeof(*v));
    if (!leaf || !leaf->der)
        return CG_EINVAL;
    v->chain_len = 1;
    snprintf(v->chain[0], sizeof(v->chain[0]), "%s", leaf->subject);

    if (check_validity(leaf, true, now, v))
        return CG_OK;
    if (leaf->defect)
        return refuse(v, PKI_UNTRUSTED_ISSUER, "the client certificate '%s' breaks RFC 5280: %s",
                      leaf->subject, leaf->defect);
    /* As rustls-webpki does: a CA's key signs certificates, and a client
     * that holds one should present a certificate issued for it. */
    if (leaf->is_ca)
        return refuse(v, PKI_BAD_KEY_USAGE,
                      "the certificate '%s' is a CA certificate (basicConstraints CA:TRUE), "
                      "which certgate does not accept as a client's own certificate: use a client "
                      "certificate that this CA issued",
                      leaf->subject);
    if (leaf->has_key_usage && !(leaf->key_usage & PKI_KU_DIGITAL_SIGNATURE))
        return refuse(v, PKI_BAD_KEY_USAGE,
                      "the key usage of the client certificate '%s' does not allow digital "
                      "signatures, so it cannot authenticate a TLS client: issue a certificate "
                      "with digitalSignature",
                      leaf->subject);
    if (leaf->has_eku && !leaf->eku_client_auth && !leaf->eku_any)
        return refuse(v, PKI_BAD_KEY_USAGE,
                      "the extended key usage of the client certificate '%s' does not include "
                      "TLS client authentication (clientAuth): issue a client certificate",
                      leaf->subject);
    if (leaf->is_self_signed)
        return refuse(v, PKI_SELF_SIGNED,
                      "the certificate '%s' is self-signed; certgate accepts a self-signed "
                      "certificate only when an admin pins it: certgate cert map USER FILE "
                      "--pinned",
                      leaf->subject);

    /* The search state holds two verdicts: keep it off the stack. */
    sr = calloc(1, sizeof(*sr));
    if (!sr)
        return CG_ENOMEM;
    sr->trust = trust;
    sr->sent = sent;
    sr->n_sent = n_sent;
    sr->now = now;
    sr->chain[0].cert = leaf;
    sr->chain[0].ca = NULL;
    sr->out = v;
    rc = extend(sr, 1, 0) < 0 ? CG_ENOMEM : CG_OK;
    if (rc == CG_OK && !sr->done && !sr->have_failure)
        refuse(v, PKI_UNTRUSTED_ISSUER, "no chain to a root of the CA table");
    free(sr);
    return rc;
}
