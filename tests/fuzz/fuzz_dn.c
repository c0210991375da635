/*
 * fuzz_dn: DN canonicalisation (pki_canonical_dn, what `certgate cert rule
 * --match dn=` stores) and rule matching (identity_rule_matches). Input:
 * a DN as an admin types it, then optionally FUZZ_SEP and a certificate
 * (PEM or DER), then optionally FUZZ_SEP and a rule "field=value".
 * Values go in only as the CLI takes them (UTF-8 text without control
 * characters). Properties: the canonical form is UTF-8 and canonical
 * again; a rule made
 * from what certgate prints of a certificate (its subject, CN, SANs, key)
 * matches that certificate, also after the CLI canonicalised a dn= value.
 */
#include "config.h"
#include "base/utf8.h"

#include "fuzz.h"
#include "auth/identity.h"
#include "pki/pki.h"

static bool rule(const char *field, const char *value, const struct pki_cert *c)
{
    struct store_map m;

    memset(&m, 0, sizeof(m));
    m.kind = STORE_MAP_RULE;
    m.is_active = true;
    m.match_field = (char *)field;
    m.match_value = (char *)value;
    return identity_rule_matches(&m, c);
}

/* What the CLI hands on as a match value: 1 to 1024 bytes of UTF-8 text
 * without control characters (cli_check_text). */
static bool cli_takes(const char *value)
{
    return *value && strlen(value) <= 1024 && utf8_text_valid(value);
}

static void check_canonical(const char *typed)
{
    struct cg_err err = {""};
    char *canon = NULL, *again = NULL;
    int rc;

    if (!cli_takes(typed))
        return;
    rc = pki_canonical_dn(typed, &canon, &err);
    if (rc) {
        FUZZ_ASSERT(!canon && err.msg[0], "refused without a reason");
        return;
    }
    FUZZ_ASSERT(canon && canon[0] && fuzz_is_utf8(canon), "canonical form '%s' is not text", canon);
    rc = pki_canonical_dn(canon, &again, &err);
    FUZZ_ASSERT(rc == CG_OK, "canonical form '%s' of '%s' is refused: %s", canon, typed, err.msg);
    FUZZ_ASSERT(strcmp(again, canon) == 0, "canonical form '%s' becomes '%s'", canon, again);
    free(again);
    free(canon);
}

static void check_cert(const struct pki_cert *c)
{
    struct cg_err err = {""};
    char *canon = NULL;

    FUZZ_ASSERT(rule("dn", c->subject, c), "dn=subject does not match");
    if (c->cn)
        FUZZ_ASSERT(rule("cn", c->cn, c), "cn=CN does not match");
    for (size_t i = 0; i < c->n_san_email; i++)
        FUZZ_ASSERT(rule("email", c->san_email[i], c), "email=SAN does not match");
    for (size_t i = 0; i < c->n_san_dns; i++)
        FUZZ_ASSERT(rule("dns", c->san_dns[i], c), "dns=SAN does not match");
    for (size_t i = 0; i < c->n_san_uri; i++)
        FUZZ_ASSERT(rule("uri", c->san_uri[i], c), "uri=SAN does not match");
    FUZZ_ASSERT(rule("spki", c->spki_sha256, c), "spki= does not match");
    /* The CLI stores the canonical form of a dn= value: for the subject as
     * certgate prints it, that must be the subject itself, or the rule an
     * admin copied from `certgate check` never matches. A refusal is fine:
     * it tells the admin to match otherwise. */
    if (pki_canonical_dn(c->subject, &canon, &err) == CG_OK) {
        FUZZ_ASSERT(strcmp(canon, c->subject) == 0, "subject '%s' is canonicalised to '%s'",
                    c->subject, canon);
        FUZZ_ASSERT(rule("dn", canon, c), "dn=canonical subject does not match");
    }
    free(canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_piece p[3];
    size_t n = fuzz_split(data, size, p, 3);
    struct pki_cert_list list = {0};
    struct pki_parse_error perr;
    char *typed = fuzz_strndup(p[0].data, p[0].len);

    check_canonical(typed);
    if (n >= 2 && pki_parse_bundle((const char *)p[1].data, p[1].len, &list, &perr) == CG_OK) {
        const struct pki_cert *c = &list.items[0];

        check_cert(c);
        if (n == 3) {
            char *r = fuzz_strndup(p[2].data, p[2].len), *eq = strchr(r, '=');

            if (eq && cli_takes(eq + 1)) {
                struct cg_err err = {""};
                char *canon = NULL;

                *eq = '\0';
                if (strcmp(r, "dn") != 0)
                    (void)rule(r, eq + 1, c);
                else if (pki_canonical_dn(eq + 1, &canon, &err) == CG_OK)
                    (void)rule(r, canon, c);
                free(canon);
            }
            free(r);
        }
        pki_cert_list_free(&list);
    }
    free(typed);
    return 0;
}
