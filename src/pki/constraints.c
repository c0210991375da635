#include "config.h"
#include "pki/constraints.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pki/der.h"
#include "pki/dn.h"

#define OID_NAME_CONSTRAINTS "2.5.29.30"
#define OID_SUBJECT_ALT_NAME "2.5.29.17"

/* GeneralName's forms, by their context tag number (RFC 5280 4.2.1.6). */
enum gn_form {
    GN_OTHER = 0,
    GN_EMAIL = 1,
    GN_DNS = 2,
    GN_X400 = 3,
    GN_DN = 4,
    GN_EDI = 5,
    GN_URI = 6,
    GN_IP = 7,
    GN_RID = 8,
    GN_FORMS = 9,
};

static const char *const form_name[GN_FORMS] = {
    "otherName",    "email", "DNS",        "x400Address",  "directoryName",
    "ediPartyName", "URI",   "IP address", "registeredID",
};

/* One subtree of a nameConstraints extension. */
struct subtree {
    bool is_excluded;    /* from excludedSubtrees */
    enum gn_form form;   /* the name form it constrains */
    struct der_tlv name; /* the base name: contents, or for directoryName the Name */
};

/* Walks the subtrees of a nameConstraints extension. */
struct nc_iter {
    struct der lists[2]; /* permitted, excluded */
    int which;           /* the list being read */
};

/* A GeneralName's form and value; -1 when its tag is not one of them or
 * is primitive where it must be constructed (or the reverse). */
static int general_name(const struct der_tlv *t, enum gn_form *out_form, struct der_tlv *out_value)
{
    unsigned n = t->tag & 0x1f;
    bool constructed = (t->tag & 0x20) != 0;

    if ((t->tag & 0xc0) != 0x80 || n >= GN_FORMS)
        return -1;
    if (constructed != (n == GN_OTHER || n == GN_X400 || n == GN_DN || n == GN_EDI))
        return -1;
    *out_form = (enum gn_form)n;
    if (n == GN_DN) {
        /* directoryName is EXPLICIT: one Name inside. */
        struct der in = der_enter(t);

        if (der_expect(&in, DER_SEQUENCE, out_value) || !der_at_end(&in))
            return -1;
        return 0;
    }
    *out_value = *t;
    return 0;
}

static int nc_open(const unsigned char *ext, size_t len, struct nc_iter *it)
{
    struct der all = der_init(ext, len), in;
    struct der_tlv seq, list;

    memset(it, 0, sizeof(*it));
    if (der_expect(&all, DER_SEQUENCE, &seq) || !der_at_end(&all))
        return -1;
    in = der_enter(&seq);
    if (der_expect(&in, DER_CTX_CONS(0), &list) == 0) {
        it->lists[0] = der_enter(&list);
        if (der_at_end(&it->lists[0]))
            return -1; /* SIZE (1..MAX) */
    }
    if (der_expect(&in, DER_CTX_CONS(1), &list) == 0) {
        it->lists[1] = der_enter(&list);
        if (der_at_end(&it->lists[1]))
            return -1;
    }
    return der_at_end(&in) ? 0 : -1;
}

/* 0 with the next subtree, 1 at the end, -1 when malformed. */
static int nc_next(struct nc_iter *it, struct subtree *out)
{
    struct der_tlv seq, base, extra;
    struct der in;
    int rc;

    while (it->which < 2) {
        rc = der_next(&it->lists[it->which], &seq);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            it->which++;
            continue;
        }
        if (seq.tag != DER_SEQUENCE)
            return -1;
        in = der_enter(&seq);
        if (der_next(&in, &base) != 0 || general_name(&base, &out->form, &out->name))
            return -1;
        /* minimum MUST be zero and maximum absent (RFC 5280 4.2.1.10): a
         * subtree that says otherwise would mean something certgate does
         * not check. */
        if (der_expect(&in, DER_CTX(0), &extra) == 0 && (extra.len != 1 || extra.val[0] != 0))
            return -1;
        if (!der_at_end(&in))
            return -1;
        out->is_excluded = it->which == 1;
        return 0;
    }
    return 1;
}

const char *constraints_defect(const unsigned char *ext, size_t len, size_t *out_n)
{
    struct nc_iter it;
    struct subtree st;
    size_t n = 0;
    int rc;

    if (nc_open(ext, len, &it))
        return "its nameConstraints extension is malformed";
    while ((rc = nc_next(&it, &st)) == 0) {
        if (st.form == GN_DN && dn_rdn_count(st.name.raw, st.name.raw_len) < 0)
            return "a directoryName in its nameConstraints is malformed";
        if (st.form == GN_DNS && st.name.len > 0 && st.name.val[0] == '.')
            return "a dNSName in its nameConstraints is malformed (RFC 5280 4.2.1.10)";
        n++;
    }
    if (rc < 0)
        return "its nameConstraints extension is malformed";
    if (n == 0)
        return "its nameConstraints extension lists no subtrees";
    if (out_n)
        *out_n = n;
    return NULL;
}

/* The host of a URI ("scheme://[user@]host[:port]/..."), or false when it
 * has none (no authority, or an IP literal). */
static bool uri_host(const uint8_t *u, size_t len, const uint8_t **out_host, size_t *out_len)
{
    size_t i = 0, start, end, at;

    while (i < len && u[i] != ':')
        i++;
    if (i == 0 || i + 2 >= len || u[i + 1] != '/' || u[i + 2] != '/')
        return false;
    start = i + 3;
    end = start;
    while (end < len && u[end] != '/' && u[end] != '?' && u[end] != '#')
        end++;
    for (at = end; at > start; at--) {
        if (u[at - 1] == '@') {
            start = at;
            break;
        }
    }
    if (start < end && u[start] == '[')
        return false;
    for (size_t k = end; k > start; k--) {
        if (u[k - 1] == ':') {
            end = k - 1;
            break;
        }
        if (u[k - 1] < '0' || u[k - 1] > '9')
            break;
    }
    if (start >= end)
        return false;
    *out_host = u + start;
    *out_len = end - start;
    return true;
}

/* RFC 5280's URI rule: ".example.com" stands for any host below
 * example.com, "host.example.com" for that host only. */
static bool host_matches(const uint8_t *host, size_t hlen, const struct der_tlv *c)
{
    if (c->len > 0 && c->val[0] == '.')
        return hlen > c->len &&
               strncasecmp((const char *)host + hlen - c->len, (const char *)c->val, c->len) == 0;
    return hlen == c->len && strncasecmp((const char *)host, (const char *)c->val, hlen) == 0;
}

/* Whether the wildcard SAN "*.base" could stand for a name under the
 * excluded dNSName subtree @p ex: "*.example.com" stands for
 * "bar.example.com", which "bar.example.com" excludes, though the wildcard
 * string itself is not under it (RFC 5280 and RFC 9525 leave this open; the
 * defensive reading refuses, as after CVE-2025-61727). */
static bool wildcard_hits(const char *san, const struct der_tlv *ex)
{
    size_t bl;

    if (san[0] != '*' || san[1] != '.')
        return false;
    san += 2;
    bl = strlen(san);
    return ex->len > bl + 1 && ex->val[ex->len - bl - 1] == '.' &&
           strncasecmp((const char *)ex->val + ex->len - bl, san, bl) == 0;
}

/* What the verifier knows of one certificate below the CA. */
struct below {
    const struct pki_cert *cert; /* its facts */
    gnutls_x509_crt_t crt;       /* parsed */
    gnutls_datum_t san;          /* its subjectAltName extension, if any */
    gnutls_datum_t subject;      /* its subject, DER */
};

/* A check of one subjectAltName: 1 it holds (go on), 0 it does not, -1
 * malformed. */
typedef int (*san_check_fn)(const struct der_tlv *name, void *ctx);

/* Runs @p check on each subjectAltName of @p form, until one does not hold.
 * @return 1 when all hold (or there are none), 0 when one does not, -1
 *         malformed */
static int each_san(const struct below *b, enum gn_form form, san_check_fn check, void *ctx)
{
    struct der all = der_init(b->san.data, b->san.size), in;
    struct der_tlv seq, t, v;
    enum gn_form f;
    int rc;

    if (!b->san.data)
        return 1;
    if (der_expect(&all, DER_SEQUENCE, &seq) || !der_at_end(&all))
        return -1;
    in = der_enter(&seq);
    while ((rc = der_next(&in, &t)) == 0) {
        if (general_name(&t, &f, &v))
            return -1;
        if (f != form)
            continue;
        rc = check(&v, ctx);
        if (rc != 1)
            return rc;
    }
    return rc < 0 ? -1 : 1;
}

static int is_absent(const struct der_tlv *name, void *ctx)
{
    (void)name, (void)ctx;
    return 0;
}

/* Whether the certificate has a subjectAltName of @p form; -1 malformed. */
static int has_form(const struct below *b, enum gn_form form)
{
    int rc = each_san(b, form, is_absent, NULL);

    return rc < 0 ? -1 : !rc;
}

/* The URI subtrees of a name constraints extension. */
struct uri_ctx {
    const unsigned char *ext; /* the extension, DER */
    size_t len;               /* its length */
};

/* One URI name against the URI subtrees. */
static int uri_holds(const struct der_tlv *v, void *ctx)
{
    const struct uri_ctx *u = ctx;
    struct nc_iter it;
    struct subtree st;
    const uint8_t *host;
    size_t hlen;
    bool any_permitted = false, permitted = false;
    int rc;

    /* A URI without a host cannot be shown to be inside or outside. */
    if (!uri_host(v->val, v->len, &host, &hlen))
        return 0;
    if (nc_open(u->ext, u->len, &it))
        return -1;
    while ((rc = nc_next(&it, &st)) == 0) {
        if (st.form != GN_URI)
            continue;
        if (st.is_excluded && host_matches(host, hlen, &st.name))
            return 0;
        if (!st.is_excluded) {
            any_permitted = true;
            permitted = permitted || host_matches(host, hlen, &st.name);
        }
    }
    if (rc < 0)
        return -1;
    return !any_permitted || permitted;
}

/* The URI names of the certificate against the URI subtrees. */
static int uris_hold(const struct below *b, const unsigned char *ext, size_t len)
{
    struct uri_ctx u = {ext, len};

    return each_san(b, GN_URI, uri_holds, &u);
}

/* The subject against the directoryName subtrees; an empty subject has no
 * name of this form to check. */
static int subject_holds(const struct below *b, const unsigned char *ext, size_t len)
{
    struct nc_iter it;
    struct subtree st;
    bool any_permitted = false, permitted = false;
    int rc, n = dn_rdn_count(b->subject.data, b->subject.size);

    if (n < 0)
        return -1;
    if (n == 0)
        return 1;
    if (nc_open(ext, len, &it))
        return -1;
    while ((rc = nc_next(&it, &st)) == 0) {
        int in;

        if (st.form != GN_DN)
            continue;
        in = dn_within(b->subject.data, b->subject.size, st.name.raw, st.name.raw_len);
        if (in < 0)
            return -1;
        if (st.is_excluded && in)
            return 0;
        if (!st.is_excluded) {
            any_permitted = true;
            permitted = permitted || in;
        }
    }
    if (rc < 0)
        return -1;
    return any_permitted && !permitted ? 0 : 1;
}

/* The certificate's wildcard DNS names against the excluded dNSName
 * subtrees, which GnuTLS compares as plain strings. */
static int wildcards_hold(const struct below *b, const unsigned char *ext, size_t len,
                          const struct pki_cert *ca, char *why, size_t whylen)
{
    struct nc_iter it;
    struct subtree st;
    int rc;

    if (nc_open(ext, len, &it))
        return -1;
    while ((rc = nc_next(&it, &st)) == 0) {
        if (st.form != GN_DNS || !st.is_excluded)
            continue;
        for (size_t k = 0; k < b->cert->n_san_dns; k++) {
            if (wildcard_hits(b->cert->san_dns[k], &st.name)) {
                snprintf(why, whylen,
                         "the wildcard name '%s' of '%s' covers '%.*s', which the name "
                         "constraints of the CA '%s' exclude",
                         b->cert->san_dns[k], b->cert->subject, (int)st.name.len,
                         (const char *)st.name.val, ca->subject);
                return 0;
            }
        }
    }
    return rc < 0 ? -1 : 1;
}

static int dns_name_holds(const struct der_tlv *v, void *ctx)
{
    gnutls_datum_t name = {(unsigned char *)v->val, (unsigned)v->len};

    return gnutls_x509_name_constraints_check(ctx, GNUTLS_SAN_DNSNAME, &name) ? 1 : 0;
}

/* The certificate's dNSName SANs through GnuTLS's matcher. Not
 * gnutls_x509_name_constraints_check_crt: without a DNS name it would
 * judge the subject's CN as one, a server-certificate habit that refuses a
 * CA or client certificate whose CN is a plain name. */
static int dns_names_hold(const struct below *b, gnutls_x509_name_constraints_t nc)
{
    return each_san(b, GN_DNS, dns_name_holds, nc);
}

/* GnuTLS's own matchers for DNS names, email addresses (with the subject's
 * emailAddress when there is no rfc822Name) and IP addresses, fed with this
 * CA's subtrees of those forms only. */
static int gnutls_forms_hold(const struct below *b, const unsigned char *ext, size_t len,
                             enum gn_form *out_form)
{
    static const struct {
        enum gn_form form;
        gnutls_x509_subject_alt_name_t type;
    } forms[] = {
        {GN_EMAIL, GNUTLS_SAN_RFC822NAME},
        {GN_IP, GNUTLS_SAN_IPADDRESS},
    };
    gnutls_x509_name_constraints_t nc = NULL;
    struct nc_iter it;
    struct subtree st;
    int rc = -1;

    if (gnutls_x509_name_constraints_init(&nc) < 0)
        return -1;
    if (nc_open(ext, len, &it))
        goto out;
    while ((rc = nc_next(&it, &st)) == 0) {
        gnutls_datum_t name = {(unsigned char *)st.name.val, (unsigned)st.name.len};
        gnutls_x509_subject_alt_name_t type;

        if (st.form == GN_DNS)
            type = GNUTLS_SAN_DNSNAME;
        else if (st.form == GN_EMAIL)
            type = GNUTLS_SAN_RFC822NAME;
        else if (st.form == GN_IP)
            type = GNUTLS_SAN_IPADDRESS;
        else
            continue;
        /* GnuTLS refuses an iPAddress that is not address + contiguous mask. */
        if ((st.is_excluded ? gnutls_x509_name_constraints_add_excluded(nc, type, &name)
                            : gnutls_x509_name_constraints_add_permitted(nc, type, &name)) < 0) {
            rc = -1;
            goto out;
        }
    }
    if (rc < 0)
        goto out;
    rc = dns_names_hold(b, nc);
    if (rc <= 0)
        goto out;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        if (!gnutls_x509_name_constraints_check_crt(nc, forms[i].type, b->crt)) {
            *out_form = forms[i].form;
            rc = 0;
            break;
        }
    }
out:
    gnutls_x509_name_constraints_deinit(nc);
    return rc;
}

static int import(const struct pki_cert *c, gnutls_x509_crt_t *out)
{
    gnutls_datum_t d = {c->der, (unsigned)c->der_len};

    if (gnutls_x509_crt_init(out) < 0)
        return -1;
    if (gnutls_x509_crt_import(*out, &d, GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* Every form the CA constrains, against the certificate: 1, 0 with @p why,
 * or -1. */
static int forms_hold(const struct below *b, const gnutls_datum_t *ext, const struct pki_cert *ca,
                      char *why, size_t whylen)
{
    bool constrained[GN_FORMS] = {false};
    enum gn_form form = GN_DNS;
    struct nc_iter it;
    struct subtree st;
    int rc;

    if (nc_open(ext->data, ext->size, &it))
        return -1;
    while ((rc = nc_next(&it, &st)) == 0)
        constrained[st.form] = true;
    if (rc < 0)
        return -1;
    if (constrained[GN_DN]) {
        rc = subject_holds(b, ext->data, ext->size);
        if (rc == 0)
            snprintf(why, whylen,
                     "the subject '%s' is outside the directoryName constraints of the CA '%s'",
                     b->cert->subject, ca->subject);
        if (rc <= 0)
            return rc;
    }
    if (constrained[GN_DNS]) {
        rc = wildcards_hold(b, ext->data, ext->size, ca, why, whylen);
        if (rc <= 0)
            return rc;
    }
    rc = gnutls_forms_hold(b, ext->data, ext->size, &form);
    if (rc > 0 && constrained[GN_URI]) {
        form = GN_URI;
        rc = uris_hold(b, ext->data, ext->size);
    }
    if (rc == 0)
        snprintf(why, whylen, "a%s %s name of '%s' is outside the name constraints of the CA '%s'",
                 form == GN_EMAIL ? "n" : "", form_name[form], b->cert->subject, ca->subject);
    if (rc <= 0)
        return rc;
    /* The forms certgate cannot match refuse only a certificate that has a
     * name of that form (RFC 5280 4.2.1.10: process the constraint or
     * reject the certificate). */
    for (int f = 0; f < GN_FORMS; f++) {
        if (!constrained[f] || f == GN_DN || f == GN_DNS || f == GN_EMAIL || f == GN_IP ||
            f == GN_URI)
            continue;
        rc = has_form(b, (enum gn_form)f);
        if (rc > 0)
            snprintf(why, whylen,
                     "the CA '%s' constrains %s names, which certgate cannot check, and '%s' "
                     "has one",
                     ca->subject, form_name[f], b->cert->subject);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
    }
    return 1;
}

int constraints_hold(const struct pki_cert *ca, const struct pki_cert *below, char *why,
                     size_t whylen)
{
    gnutls_x509_crt_t cacrt = NULL;
    gnutls_datum_t ext = {NULL, 0};
    struct below b;
    int rc = -1, grc;

    memset(&b, 0, sizeof(b));
    b.cert = below;
    if (import(ca, &cacrt))
        goto out;
    grc = gnutls_x509_crt_get_extension_by_oid2(cacrt, OID_NAME_CONSTRAINTS, 0, &ext, NULL);
    if (grc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        rc = 1;
        goto out;
    }
    if (grc < 0 || import(below, &b.crt) || gnutls_x509_crt_get_raw_dn(b.crt, &b.subject) < 0)
        goto out;
    grc = gnutls_x509_crt_get_extension_by_oid2(b.crt, OID_SUBJECT_ALT_NAME, 0, &b.san, NULL);
    if (grc < 0 && grc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        goto out;
    rc = forms_hold(&b, &ext, ca, why, whylen);
out:
    if (rc < 0)
        snprintf(why, whylen,
                 "the name constraints of the CA '%s' or the names of '%s' cannot be read",
                 ca->subject, below->subject);
    gnutls_free(ext.data);
    gnutls_free(b.san.data);
    gnutls_free(b.subject.data);
    if (b.crt)
        gnutls_x509_crt_deinit(b.crt);
    if (cacrt)
        gnutls_x509_crt_deinit(cacrt);
    return rc;
}
