#include "config.h"
#include "pki/pki.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/crypto.h"
#include "pki/constraints.h"
#include "pki/pki_int.h"

/* Longest chain the verifier builds, leaf included. */
#define MAX_CHAIN 8

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
