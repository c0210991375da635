#include "config.h"
#include "pki/pki.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/crypto.h"
#include "pki/der.h"
#include "pki/pki_int.h"

/* The dotted form of an OID's contents, for messages. */
static void oid_text(const uint8_t *p, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    uint64_t v = 0;
    bool first = true;

    out[0] = '\0';
    for (size_t i = 0; i < len && o + 24 < outlen; i++) {
        if (v > (UINT64_MAX >> 7))
            break;
        v = (v << 7) | (p[i] & 0x7f);
        if (p[i] & 0x80)
            continue;
        if (first)
            o += (size_t)snprintf(out + o, outlen - o, "%u.%llu", v < 80 ? (unsigned)(v / 40) : 2,
                                  (unsigned long long)(v < 80 ? v % 40 : v - 80));
        else
            o += (size_t)snprintf(out + o, outlen - o, ".%llu", (unsigned long long)v);
        first = false;
        v = 0;
    }
}

/* OIDs of the CRL entry extensions RFC 5280 5.3 defines, as DER contents. */
static const struct {
    const char *der; /* OID contents */
    bool is_known;   /* false: certificateIssuer, which makes the CRL indirect */
} entry_exts[] = {
    {"\x55\x1d\x15", true},  /* reasonCode */
    {"\x55\x1d\x17", true},  /* holdInstructionCode */
    {"\x55\x1d\x18", true},  /* invalidityDate */
    {"\x55\x1d\x1d", false}, /* certificateIssuer */
};

/* Why an entry's extensions make the CRL unusable, in @p why; false when
 * they do not. */
static bool entry_exts_refused(const struct der_tlv *exts, char *why, size_t whylen)
{
    struct der in = der_enter(exts);
    struct der_tlv ext, oid, crit;
    int rc;

    while ((rc = der_next(&in, &ext)) == 0) {
        struct der e = der_enter(&ext);
        bool critical = false, known = false;
        char text[64];

        if (ext.tag != DER_SEQUENCE || der_expect(&e, DER_OID, &oid))
            break;
        if (der_expect(&e, DER_BOOLEAN, &crit) == 0)
            critical = crit.len == 1 && crit.val[0] != 0;
        for (size_t k = 0; k < sizeof(entry_exts) / sizeof(entry_exts[0]); k++) {
            if (oid.len == 3 && memcmp(oid.val, entry_exts[k].der, 3) == 0) {
                if (!entry_exts[k].is_known) {
                    snprintf(why, whylen,
                             "it is an indirect CRL (an entry names another certificate "
                             "issuer): load the complete CRL that the issuing CA signed itself");
                    return true;
                }
                known = true;
            }
        }
        if (critical && !known) {
            oid_text(oid.val, oid.len, text, sizeof(text));
            snprintf(why, whylen,
                     "an entry has the critical extension %s, which certgate does not know, so "
                     "the CRL cannot be applied as its issuer meant: load a CRL without it",
                     text);
            return true;
        }
    }
    if (rc != 1) {
        snprintf(why, whylen, "an entry's extensions are malformed");
        return true;
    }
    return false;
}

/* Walks the revoked entries of a CRL's DER for their extensions: false with
 * @p why when an entry makes it unusable or the list cannot be read. */
static bool entries_ok(const struct pki_crl *c, char *why, size_t whylen)
{
    struct der all = der_init(c->der, c->der_len), list, in;
    struct der_tlv outer, tbs, t;

    if (der_expect(&all, DER_SEQUENCE, &outer))
        goto malformed;
    in = der_enter(&outer);
    if (der_expect(&in, DER_SEQUENCE, &tbs))
        goto malformed;
    in = der_enter(&tbs);
    der_expect(&in, DER_INTEGER, &t); /* version, optional */
    if (der_expect(&in, DER_SEQUENCE, &t) || der_expect(&in, DER_SEQUENCE, &t) ||
        der_next(&in, &t) != 0) /* signature, issuer, thisUpdate */
        goto malformed;
    if (der_peek(&in, DER_UTC_TIME) || der_peek(&in, DER_GENERALIZED_TIME))
        der_next(&in, &t); /* nextUpdate */
    if (der_expect(&in, DER_SEQUENCE, &t))
        return true; /* no revoked entries */
    list = der_enter(&t);
    for (;;) {
        struct der_tlv entry, serial, date, exts;
        struct der e;
        int rc = der_next(&list, &entry);

        if (rc == 1)
            return true;
        if (rc < 0 || entry.tag != DER_SEQUENCE)
            goto malformed;
        e = der_enter(&entry);
        if (der_expect(&e, DER_INTEGER, &serial) || der_next(&e, &date) != 0)
            goto malformed;
        if (der_expect(&e, DER_SEQUENCE, &exts) == 0 && entry_exts_refused(&exts, why, whylen))
            return false;
    }
malformed:
    snprintf(why, whylen, "its list of revoked certificates is not valid DER");
    return false;
}

/*
 * Whether @p crl is a complete CRL of its issuer, the only kind that can
 * replace another: a delta CRL lists only the changes since a complete one,
 * a CRL with an issuingDistributionPoint covers only part of the issuer's
 * certificates, and an unknown critical extension may change what the
 * entries mean; each, taken as complete, would un-revoke certificates.
 * Fills out->partial ("" when complete).
 */
static void crl_scope(gnutls_x509_crl_t crl, struct pki_crl *out)
{
    static const char *const known[] = {
        "2.5.29.35",         /* authorityKeyIdentifier */
        "2.5.29.18",         /* issuerAltName */
        "2.5.29.20",         /* cRLNumber */
        "2.5.29.46",         /* freshestCRL: where deltas are; this one is complete */
        "1.3.6.1.5.5.7.1.1", /* authorityInfoAccess */
    };

    out->partial[0] = '\0';
    for (unsigned i = 0; i < 64; i++) {
        char oid[128];
        size_t size = sizeof(oid);
        unsigned critical = 0;
        bool is_known = false;
        int rc = gnutls_x509_crl_get_extension_info(crl, i, oid, &size, &critical);

        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0) {
            snprintf(out->partial, sizeof(out->partial), "an extension cannot be read");
            return;
        }
        if (strcmp(oid, "2.5.29.27") == 0) {
            snprintf(out->partial, sizeof(out->partial),
                     "it is a delta CRL (deltaCRLIndicator): it lists only the changes since a "
                     "complete CRL, and in place of one it would un-revoke the rest; load the "
                     "issuer's complete CRL instead, and a newer complete CRL after each change");
            return;
        }
        if (strcmp(oid, "2.5.29.28") == 0) {
            snprintf(out->partial, sizeof(out->partial),
                     "it covers only part of its issuer's certificates (issuingDistributionPoint): "
                     "load a complete CRL of the CA, one without a distribution point scope");
            return;
        }
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            is_known = is_known || strcmp(oid, known[k]) == 0;
        if (critical && !is_known) {
            snprintf(out->partial, sizeof(out->partial),
                     "it has the critical extension %s, which certgate does not know, so it "
                     "cannot be applied as its issuer meant: load a CRL without it",
                     oid);
            return;
        }
    }
    entries_ok(out, out->partial, sizeof(out->partial));
}

int pki_crl_number_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

int pki_parse_crl(const char *data, size_t len, struct pki_crl *out_crl, struct cg_err *err)
{
    gnutls_x509_crl_t crl = NULL;
    gnutls_datum_t d = {(unsigned char *)data, (unsigned)len}, der = {NULL, 0};
    unsigned char buf[128];
    size_t size;
    time_t t;
    int n, rc = CG_EPARSE;

    memset(out_crl, 0, sizeof(*out_crl));
    if (!data || len == 0) {
        cg_err_set(err, "the file is empty: no CRL found");
        return CG_EPARSE;
    }
    if (len > 64 * 1024 * 1024) {
        cg_err_set(err, "the CRL is too large");
        return CG_EPARSE;
    }
    if (memfind(data, len, "PRIVATE KEY-----")) {
        cg_err_set(err, "the file holds a private key: never hand private keys to certgate");
        return CG_EDENIED;
    }
    if (gnutls_x509_crl_init(&crl) < 0)
        return CG_ENOMEM;
    if (memfind(data, len, "-----BEGIN X509 CRL-----")) {
        if (gnutls_x509_crl_import(crl, &d, GNUTLS_X509_FMT_PEM) < 0) {
            cg_err_set(err, "the CRL is not valid PEM/DER (unparsable)");
            goto out;
        }
    } else if (memfind(data, len, "-----BEGIN ")) {
        cg_err_set(err, "no CRL found (expected a -----BEGIN X509 CRL----- block)");
        goto out;
    } else if (gnutls_x509_crl_import(crl, &d, GNUTLS_X509_FMT_DER) < 0) {
        cg_err_set(err, "no CRL found (neither PEM nor DER)");
        goto out;
    }
    if (gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &der) < 0) {
        cg_err_set(err, "the CRL could not be encoded");
        goto out;
    }
    out_crl->der = malloc(der.size);
    if (!out_crl->der) {
        rc = CG_ENOMEM;
        goto out;
    }
    memcpy(out_crl->der, der.data, der.size);
    out_crl->der_len = der.size;
    crypto_sha256_hex(out_crl->der, out_crl->der_len, out_crl->fingerprint);
    {
        gnutls_datum_t dn = {NULL, 0};

        if (gnutls_x509_crl_get_issuer_dn3(crl, &dn, 0) < 0) {
            cg_err_set(err, "the CRL has no readable issuer");
            goto out;
        }
        out_crl->issuer = dn_text(&dn);
        if (!out_crl->issuer) {
            rc = CG_ENOMEM;
            goto out;
        }
    }
    size = sizeof(buf);
    if (gnutls_x509_crl_get_authority_key_id(crl, buf, &size, NULL) >= 0 && size <= 64)
        cg_hex(buf, size, out_crl->aki);
    {
        unsigned char num[64];
        size_t nsize = sizeof(num);
        unsigned critical = 0;

        /* RFC 5280 5.2.3: conforming CRL issuers MUST include a non-critical
         * CRL number; without it "newer" cannot be told from "older". */
        if (gnutls_x509_crl_get_number(crl, num, &nsize, &critical) < 0) {
            cg_err_set(err, "the CRL has no CRL number (RFC 5280 5.2.3 requires one)");
            goto out;
        }
        if (critical) {
            cg_err_set(err, "the CRL number extension of the CRL is marked critical");
            goto out;
        }
        if (nsize == 0 || nsize > 20) {
            cg_err_set(err, "the CRL number of the CRL is not 1 to 20 octets (RFC 5280 5.2.3)");
            goto out;
        }
        serial_hex(num, nsize, out_crl->number, sizeof(out_crl->number));
        /* Without a leading zero digit either: "3", not "03". */
        if (out_crl->number[0] == '0' && out_crl->number[1])
            memmove(out_crl->number, out_crl->number + 1, strlen(out_crl->number));
    }
    crl_scope(crl, out_crl);
    t = gnutls_x509_crl_get_this_update(crl);
    if (t == (time_t)-1) {
        cg_err_set(err, "the CRL has no this-update time");
        goto out;
    }
    out_crl->this_update = (int64_t)t;
    t = gnutls_x509_crl_get_next_update(crl);
    out_crl->next_update = t == (time_t)-1 ? 0 : (int64_t)t;
    n = gnutls_x509_crl_get_crt_count(crl);
    if (n < 0) {
        cg_err_set(err, "the CRL's revoked list is unreadable");
        goto out;
    }
    if (n > 0) {
        out_crl->revoked_serials = calloc((size_t)n, sizeof(char *));
        if (!out_crl->revoked_serials) {
            rc = CG_ENOMEM;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        char hex[80];

        size = sizeof(buf);
        if (gnutls_x509_crl_get_crt_serial(crl, (unsigned)i, buf, &size, NULL) < 0) {
            cg_err_set(err, "revoked entry %d of the CRL is unreadable", i + 1);
            goto out;
        }
        serial_hex(buf, size, hex, sizeof(hex));
        out_crl->revoked_serials[i] = strdup(hex);
        if (!out_crl->revoked_serials[i]) {
            rc = CG_ENOMEM;
            goto out;
        }
        out_crl->n_revoked++;
    }
    rc = CG_OK;
out:
    gnutls_free(der.data);
    gnutls_x509_crl_deinit(crl);
    if (rc)
        pki_crl_free(out_crl);
    return rc;
}

bool pki_crl_signed_by(const struct pki_crl *crl, const struct pki_cert *ca)
{
    gnutls_x509_crl_t c = NULL;
    gnutls_x509_crt_t i = NULL;
    gnutls_datum_t d = {crl->der, (unsigned)crl->der_len};
    unsigned status = 0;
    bool ok = false;

    if (!crl->der || !ca->der)
        return false;
    if (crl->aki[0] && ca->ski[0] && strcmp(crl->aki, ca->ski) != 0)
        return false;
    if (gnutls_x509_crl_init(&c) < 0)
        return false;
    if (gnutls_x509_crl_import(c, &d, GNUTLS_X509_FMT_DER) < 0)
        goto out;
    if (import_der(&i, ca->der, ca->der_len))
        goto out;
    if (!gnutls_x509_crl_check_issuer(c, i))
        goto out;
    /* A CA whose key usage excludes cRLSign may not sign CRLs. */
    if (ca->has_key_usage && !(ca->key_usage & PKI_KU_CRL_SIGN))
        goto out;
    /* Only the signature matters here; time and freshness are judged by
     * the verifier, which applies a CRL past its next update and flags it. */
    if (gnutls_x509_crl_verify(c, &i, 1, GNUTLS_VERIFY_DISABLE_TIME_CHECKS, &status) < 0)
        goto out;
    status &= ~(unsigned)(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED |
                          GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE | GNUTLS_CERT_EXPIRED |
                          GNUTLS_CERT_NOT_ACTIVATED);
    /* GNUTLS_CERT_INVALID accompanies any other bit: alone it meant only the
     * time conditions masked above. */
    ok = (status & ~(unsigned)GNUTLS_CERT_INVALID) == 0;
out:
    if (i)
        gnutls_x509_crt_deinit(i);
    gnutls_x509_crl_deinit(c);
    return ok;
}

void pki_crl_free(struct pki_crl *crl)
{
    if (!crl)
        return;
    free(crl->der);
    free(crl->issuer);
    strv_free(crl->revoked_serials, crl->n_revoked);
    memset(crl, 0, sizeof(*crl));
}
