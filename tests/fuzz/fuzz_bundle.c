/*
 * fuzz_bundle: PEM/DER bundle import (pki_parse_bundle, the path of
 * `certgate ca add` and `cert map`) and what certgate derives from each
 * certificate it accepts. Properties: every text field is UTF-8 (it goes
 * into JSON and logs), the PEM written back parses to the same certificate,
 * a DER import and a deep copy give the same facts.
 */
#include "config.h"

#include "fuzz.h"
#include "pki/pki.h"

static void check_strv(char **v, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(v[i] && fuzz_is_utf8(v[i]), "%s SAN %zu is not UTF-8", what, i);
}

static void check_facts(const struct pki_cert *c)
{
    FUZZ_ASSERT(c->der && c->der_len > 0, "no DER");
    FUZZ_ASSERT(c->subject && fuzz_is_utf8(c->subject), "subject is not UTF-8");
    FUZZ_ASSERT(c->issuer && fuzz_is_utf8(c->issuer), "issuer is not UTF-8");
    FUZZ_ASSERT(fuzz_is_utf8(c->cn), "CN is not UTF-8");
    FUZZ_ASSERT(strlen(c->fingerprint) == 64, "fingerprint '%s'", c->fingerprint);
    FUZZ_ASSERT(strlen(c->spki_sha256) == 64, "spki '%s'", c->spki_sha256);
    FUZZ_ASSERT(fuzz_is_utf8(c->serial), "serial is not text");
    check_strv(c->san_email, c->n_san_email, "email");
    check_strv(c->san_dns, c->n_san_dns, "dns");
    check_strv(c->san_uri, c->n_san_uri, "uri");
    FUZZ_ASSERT(!c->is_self_signed || c->is_self_issued, "self-signed but not self-issued");
}

static void check_same(const struct pki_cert *a, const struct pki_cert *b, const char *how)
{
    FUZZ_ASSERT(strcmp(a->fingerprint, b->fingerprint) == 0, "%s: another fingerprint", how);
    FUZZ_ASSERT(strcmp(a->subject, b->subject) == 0, "%s: subject '%s' became '%s'", how,
                a->subject, b->subject);
    FUZZ_ASSERT(strcmp(a->issuer, b->issuer) == 0, "%s: another issuer", how);
    FUZZ_ASSERT(strcmp(a->serial, b->serial) == 0, "%s: another serial", how);
    FUZZ_ASSERT(a->n_san_dns == b->n_san_dns && a->n_san_email == b->n_san_email &&
                    a->n_san_uri == b->n_san_uri,
                "%s: other SANs", how);
    FUZZ_ASSERT(a->is_ca == b->is_ca && a->path_len == b->path_len &&
                    a->key_usage == b->key_usage && a->not_after == b->not_after,
                "%s: other extensions", how);
    FUZZ_ASSERT((a->defect == NULL) == (b->defect == NULL), "%s: defect differs", how);
}

static void round_trip(const struct pki_cert *c)
{
    struct pki_cert_list again = {0};
    struct pki_parse_error perr;
    struct pki_cert copy, der;
    char *pem = pki_cert_pem(c);

    if (pem) {
        FUZZ_ASSERT(pki_parse_bundle(pem, strlen(pem), &again, &perr) == CG_OK,
                    "its own PEM does not parse: %s", perr.reason);
        FUZZ_ASSERT(again.n == 1, "its own PEM holds %zu certificates", again.n);
        check_same(c, &again.items[0], "PEM");
        pki_cert_list_free(&again);
        free(pem);
    }
    if (pki_cert_copy(c, &copy) == CG_OK) {
        check_same(c, &copy, "copy");
        pki_cert_free(&copy);
    }
    FUZZ_ASSERT(pki_cert_from_der(c->der, c->der_len, &der) == CG_OK, "its DER does not parse");
    check_same(c, &der, "DER");
    pki_cert_free(&der);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pki_cert_list list = {0};
    struct pki_parse_error perr;
    int rc;

    memset(&perr, 0, sizeof(perr));
    rc = pki_parse_bundle((const char *)data, size, &list, &perr);
    if (rc) {
        FUZZ_ASSERT(list.n == 0 && !list.items, "a refused bundle left certificates");
        FUZZ_ASSERT(perr.reason[0], "refused without a reason");
        return 0;
    }
    FUZZ_ASSERT(list.n > 0, "accepted without a certificate");
    for (size_t i = 0; i < list.n; i++) {
        check_facts(&list.items[i]);
        round_trip(&list.items[i]);
    }
    /* Who issued whom, as the chain builder asks it (a few pairs). */
    for (size_t i = 0; i < list.n && i < 4; i++) {
        for (size_t j = 0; j < list.n && j < 4; j++)
            (void)pki_cert_issued_by(&list.items[i], &list.items[j]);
    }
    pki_cert_list_free(&list);
    return 0;
}
