/*
 * fuzz_crl: CRL parsing (pki_parse_crl, the path of `certgate crl add`) and
 * the signature check against a CA (pki_crl_signed_by). Input: the CRL
 * (PEM or DER), optionally FUZZ_SEP and a CA certificate bundle.
 * Properties: the issuer is UTF-8 text, serials are lower-case hex, the
 * DER kept parses again to the same CRL.
 */
#include "config.h"

#include "fuzz.h"
#include "pki/pki.h"

static bool is_hex(const char *s)
{
    for (; *s; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_piece p[2];
    size_t n = fuzz_split(data, size, p, 2);
    struct pki_crl crl, again;
    struct pki_cert_list cas = {0};
    struct pki_parse_error perr;
    struct cg_err err = {""};
    int rc;

    rc = pki_parse_crl((const char *)p[0].data, p[0].len, &crl, &err);
    if (rc) {
        FUZZ_ASSERT(err.msg[0], "refused without a reason");
        FUZZ_ASSERT(!crl.der && !crl.issuer && !crl.revoked_serials, "a refused CRL left facts");
        return 0;
    }
    FUZZ_ASSERT(crl.issuer && fuzz_is_utf8(crl.issuer), "issuer is not UTF-8");
    FUZZ_ASSERT(strlen(crl.fingerprint) == 64, "fingerprint '%s'", crl.fingerprint);
    for (size_t i = 0; i < crl.n_revoked; i++)
        FUZZ_ASSERT(is_hex(crl.revoked_serials[i]), "serial '%s'", crl.revoked_serials[i]);
    rc = pki_parse_crl((const char *)crl.der, crl.der_len, &again, &err);
    FUZZ_ASSERT(rc == CG_OK, "its own DER does not parse: %s", err.msg);
    FUZZ_ASSERT(strcmp(again.fingerprint, crl.fingerprint) == 0, "its DER changed");
    FUZZ_ASSERT(strcmp(again.issuer, crl.issuer) == 0 && again.n_revoked == crl.n_revoked &&
                    again.this_update == crl.this_update,
                "its DER gives other facts");
    pki_crl_free(&again);
    if (n == 2 && pki_parse_bundle((const char *)p[1].data, p[1].len, &cas, &perr) == CG_OK) {
        for (size_t i = 0; i < cas.n; i++)
            (void)pki_crl_signed_by(&crl, &cas.items[i]);
        pki_cert_list_free(&cas);
    }
    pki_crl_free(&crl);
    return 0;
}
