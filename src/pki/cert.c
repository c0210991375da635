#include "config.h"
#include "pki/pki.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/crypto.h"
#include "pki/constraints.h"
#include "pki/pki_int.h"

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
