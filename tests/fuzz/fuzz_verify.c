/*
 * fuzz_verify: the chain verifier (pki_verify) over a CA table built from
 * the input. Input: 4 control bytes, then pieces joined by FUZZ_SEP, each a
 * PEM bundle or a DER certificate (or a CRL). The first certificate is the
 * leaf; each further one (up to 16) is, by two control bits, an active table
 * CA, a certificate the client sent, a disabled table CA, or both a table CA
 * and sent. The third control byte picks the validation time within the
 * leaf's validity, the fourth the table CA each CRL is bound to.
 * Properties: a verdict is always reached, its codes and texts are sound,
 * and an accepted chain starts at the leaf and ends at a table CA.
 */
#include "config.h"

#include "fuzz.h"
#include "pki/pki.h"

#define MAX_PIECES 8
#define MAX_CERTS 17

struct input {
    struct pki_cert_list lists[MAX_PIECES]; /* certificates of each piece */
    struct pki_crl crls[MAX_PIECES];        /* CRLs among the pieces */
    size_t n_crls;                          /* count */
};

/*
 * The CRLs of the table: each bound to the key of a table CA chosen by
 * @p pick (crl add binds it to the key that signed it; here the binding may
 * be wrong on purpose, which must never make the verifier accept more).
 */
static void add_crls(struct pki_trust *trust, struct input *in, unsigned pick)
{
    trust->crls = calloc(in->n_crls ? in->n_crls : 1, sizeof(*trust->crls));
    if (!trust->crls)
        abort();
    for (size_t i = 0; i < in->n_crls; i++) {
        if (trust->n_cas)
            memcpy(trust->crls[i].signer_spki,
                   trust->cas[(pick + i) % trust->n_cas].cert.spki_sha256,
                   sizeof(trust->crls[i].signer_spki));
        trust->crls[i].crl = in->crls[i];
    }
    trust->n_crls = in->n_crls;
}

static void check_verdict(const struct pki_verdict *v, const struct pki_trust *trust,
                          const struct pki_cert *leaf)
{
    const char *code = pki_reason_code(v->reason);

    FUZZ_ASSERT(code && strcmp(code, "unknown") != 0, "reason %d has no code", (int)v->reason);
    FUZZ_ASSERT(fuzz_is_utf8(v->detail), "detail is not UTF-8: %s", v->detail);
    FUZZ_ASSERT(v->reason == PKI_OK || v->detail[0], "refusal %s without a detail", code);
    FUZZ_ASSERT(v->chain_len >= 1, "empty chain");
    if (v->reason != PKI_OK)
        return;
    FUZZ_ASSERT(!leaf->is_self_signed, "a self-signed leaf was accepted");
    FUZZ_ASSERT(v->chain_len >= 2, "accepted a chain of %zu", v->chain_len);
    FUZZ_ASSERT(v->root_ca_id != 0, "accepted without a root of the table");
    /* A CA is its key: no copy of a disabled CA's key may be the root. */
    for (size_t i = 0; i < trust->n_cas; i++) {
        if (trust->cas[i].id != v->root_ca_id)
            continue;
        for (size_t k = 0; k < trust->n_cas; k++)
            FUZZ_ASSERT(trust->cas[k].is_active || strcmp(trust->cas[k].cert.spki_sha256,
                                                          trust->cas[i].cert.spki_sha256) != 0,
                        "accepted through a disabled root's key");
    }
    FUZZ_ASSERT(v->valid_from <= v->valid_until, "empty validity window");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_piece p[MAX_PIECES];
    struct input in;
    struct pki_trust trust = {0};
    struct pki_cert *certs[MAX_CERTS], sent[MAX_CERTS];
    struct pki_verdict v;
    const struct pki_cert *leaf;
    size_t n, n_certs = 0, n_sent = 0;
    unsigned roles, when, pick;
    int64_t now;

    if (size < 4)
        return 0;
    roles = data[0] | (unsigned)data[1] << 8;
    when = data[2];
    pick = data[3];
    memset(&in, 0, sizeof(in));
    n = fuzz_split(data + 4, size - 4, p, MAX_PIECES);
    for (size_t i = 0; i < n; i++) {
        struct pki_parse_error perr;
        struct cg_err err = {""};

        if (pki_parse_bundle((const char *)p[i].data, p[i].len, &in.lists[i], &perr) == CG_OK) {
            for (size_t k = 0; k < in.lists[i].n && n_certs < MAX_CERTS; k++)
                certs[n_certs++] = &in.lists[i].items[k];
        } else if (pki_parse_crl((const char *)p[i].data, p[i].len, &in.crls[in.n_crls], &err) ==
                   CG_OK) {
            in.n_crls++;
        }
    }
    if (n_certs == 0)
        goto out;
    leaf = certs[0];
    trust.cas = calloc(n_certs, sizeof(*trust.cas));
    if (!trust.cas)
        abort();
    for (size_t i = 1; i < n_certs; i++) {
        unsigned role = (roles >> (2 * (i - 1))) & 3;

        if (role != 1) {
            struct pki_trust_ca *ca = &trust.cas[trust.n_cas];

            ca->id = (int64_t)trust.n_cas + 1;
            ca->is_active = role != 2;
            ca->cert = *certs[i]; /* shallow: the lists own the members */
            trust.n_cas++;
        }
        if (role == 1 || role == 3)
            sent[n_sent++] = *certs[i];
    }
    add_crls(&trust, &in, pick);
    /* A time inside the leaf's validity (where the chain matters), or the
     * edges and outside it. */
    if (when == 255)
        now = leaf->not_after + 1;
    else if (when == 254)
        now = leaf->not_before - 1;
    else
        now = leaf->not_before +
              (int64_t)(((double)leaf->not_after - (double)leaf->not_before) * when / 253.0);
    FUZZ_ASSERT(pki_verify(&trust, leaf, n_sent ? sent : NULL, n_sent, now, &v) == CG_OK,
                "no verdict");
    check_verdict(&v, &trust, leaf);
    free(trust.cas);
    free(trust.crls);
out:
    for (size_t i = 0; i < n; i++)
        pki_cert_list_free(&in.lists[i]);
    for (size_t i = 0; i < in.n_crls; i++)
        pki_crl_free(&in.crls[i]);
    return 0;
}
