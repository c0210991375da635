#include "config.h"
#include "cli/check.h"
#include "base/utf8.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "auth/identity.h"
#include "db/store.h"
#include "trust/trust.h"

static const char usage[] = "usage: certgate check CLIENT.pem [--chain CHAIN.pem] [--at TIME] "
                            "[--json]\n"
                            "Explains what certgate serve would decide for this client "
                            "certificate: the chain it builds\n"
                            "against the CA certificate chain table, the mapping to a user, and "
                            "the reason for a refusal.\n"
                            "  CLIENT.pem   the client's certificate; more certificates after it "
                            "count as the chain it sends\n"
                            "  --chain F    intermediates the client sends (as curl --cert with a "
                            "full chain would)\n"
                            "  --at TIME    decide at this UTC time (2027-01-01T00:00:00Z) "
                            "instead of now\n";

static int read_certs(const char *path, struct pki_cert_list *out)
{
    struct pki_parse_error perr;
    struct cg_err err = {""};
    char *data = NULL;
    size_t len = 0;
    int rc;

    rc = cg_read_file(path, 4 * 1024 * 1024, &data, &len, &err);
    if (rc) {
        fprintf(stderr, "certgate: check: %s\n", err.msg);
        return rc;
    }
    memset(&perr, 0, sizeof(perr));
    rc = pki_parse_bundle(data, len, out, &perr);
    free(data);
    if (rc && perr.position)
        fprintf(stderr, "certgate: check: %s: block %zu: %s\n", path, perr.position, perr.reason);
    else if (rc)
        fprintf(stderr, "certgate: check: %s: %s\n", path, perr.reason);
    return rc;
}

static const char *fix_for(enum auth_reason r)
{
    switch (r) {
    case AUTH_UNTRUSTED_ISSUER: return "add the issuing CA and its root: certgate ca add CHAIN.pem";
    case AUTH_MISSING_INTERMEDIATE:
        return "add the missing CA of the chain: certgate ca add CA.pem";
    case AUTH_EXPIRED:
    case AUTH_NOT_YET_VALID: return "issue the client a certificate that is valid now";
    case AUTH_REVOKED: return "the certificate is revoked: issue the client a new one";
    case AUTH_SELF_SIGNED:
        return "pin it: certgate cert map USER CLIENT.pem --pinned (or use a CA-issued one)";
    case AUTH_BAD_KEY_USAGE:
        return "issue a certificate whose key usage allows TLS client authentication";
    case AUTH_CA_DISABLED:
        return "enable the CA (certgate ca enable ID) or use a certificate from an active CA";
    case AUTH_NOT_MAPPED:
        return "map it: certgate cert map USER CLIENT.pem, or add a rule with certgate cert rule";
    case AUTH_USER_LOCKED: return "certgate user unlock USER";
    default: return "";
    }
}

static json_t *cert_json(const struct pki_cert *c)
{
    char nb[21], na[21];

    cg_time_iso(c->not_before, nb);
    cg_time_iso(c->not_after, na);
    return json_pack("{s:o, s:o, s:s, s:s, s:s, s:s, s:s}", "subject", utf8_json(c->subject),
                     "issuer", utf8_json(c->issuer), "serial", c->serial, "fingerprint",
                     c->fingerprint, "spki_sha256", c->spki_sha256, "not_before", nb, "not_after",
                     na);
}

int check_main(const char *db_path, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        {"chain", required_argument, NULL, 'c'},
        {"at", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    struct pki_cert_list certs = {NULL, 0}, chain = {NULL, 0};
    struct trust_snapshot *snap = NULL;
    struct pki_cert *sent = NULL;
    struct store *s = NULL;
    struct identity id;
    struct pki_verdict v;
    struct cg_err err = {""};
    const char *chain_path = NULL;
    int64_t now = cg_now();
    size_t n_sent = 0;
    int opt, rc = 2;

    memset(&id, 0, sizeof(id));
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'c') {
            chain_path = optarg;
        } else if (opt == 'a') {
            if (cg_time_parse(optarg, &now)) {
                fprintf(stderr, "certgate: check: --at takes a UTC time like "
                                "2027-01-01T00:00:00Z\n");
                return 2;
            }
        } else if (opt == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            /* One line, as every command says a usage error. */
            fprintf(stderr, "certgate check: %s %s (see certgate check --help)\n",
                    opt == ':' ? "option needs a value:" : "unknown option",
                    optind > 0 && optind <= argc ? argv[optind - 1] : "");
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "certgate check: %s (see certgate check --help)\n",
                optind >= argc ? "name the client certificate file: certgate check CLIENT.pem"
                               : "one certificate file at a time");
        return 2;
    }
    if (read_certs(argv[optind], &certs))
        goto out;
    if (chain_path && read_certs(chain_path, &chain))
        goto out;
    sent = calloc(certs.n + chain.n, sizeof(*sent));
    if (!sent)
        goto out;
    for (size_t i = 1; i < certs.n; i++)
        sent[n_sent++] = certs.items[i];
    for (size_t i = 0; i < chain.n; i++)
        sent[n_sent++] = chain.items[i];
    if (store_open(db_path, STORE_OPEN_READONLY, &s, &err) || trust_load(s, &snap, &err)) {
        fprintf(stderr, "certgate: check: %s\n", err.msg);
        goto out;
    }
    if (identity_from_cert(snap, &certs.items[0], sent, n_sent, now, &id) ||
        pki_verify(&snap->pki, &certs.items[0], sent, n_sent, now, &v)) {
        fprintf(stderr, "certgate: check: internal error while verifying\n");
        goto out;
    }
    rc = id.reason == AUTH_OK ? 0 : 1;
    if (json) {
        json_t *o, *ch = json_array(), *roles = json_array();

        /* The verifier keeps the first 255 bytes of each subject: do not
         * let a cut character cost the whole answer. */
        for (size_t i = 0; i < v.chain_len && i < 8; i++) {
            utf8_trim(v.chain[i]);
            json_array_append_new(ch, utf8_json(v.chain[i]));
        }
        for (size_t i = 0; i < id.n_roles; i++)
            json_array_append_new(roles, json_string(id.roles[i]));
        utf8_trim(v.stale_crl_issuer);
        o = json_pack("{s:s, s:s, s:o, s:s?, s:o, s:I, s:s?, s:o, s:o, s:b, s:o, s:I}", "decision",
                      rc == 0 ? "accepted" : "refused", "reason", auth_reason_code(id.reason),
                      "detail", utf8_json(id.detail), "user", id.user, "roles", roles, "mapping_id",
                      (json_int_t)id.mapping_id, "mapping_kind", id.mapping_kind, "chain", ch,
                      "certificate", cert_json(&certs.items[0]), "crl_stale", v.crl_stale,
                      "crl_issuer", v.crl_stale ? utf8_json(v.stale_crl_issuer) : json_null(),
                      "trust_version", (json_int_t)snap->version);
        if (!o) {
            fprintf(stderr, "certgate: check: out of memory\n");
            rc = 2;
            goto out;
        }
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
        goto out;
    }
    {
        const struct pki_cert *c = &certs.items[0];
        char nb[21], na[21];
        long days = (long)((c->not_after - now) / 86400);

        cg_time_iso(c->not_before, nb);
        cg_time_iso(c->not_after, na);
        printf("certificate:   %s\n", c->subject);
        printf("  issuer:      %s\n", c->issuer);
        printf("  serial:      %s\n", c->serial);
        printf("  SHA-256:     %s\n", c->fingerprint);
        printf("  valid:       %s to %s (%s%ld days)\n", nb, na,
               c->not_after < now ? "expired " : "", c->not_after < now ? -days : days);
        printf("chain:         ");
        for (size_t i = 0; i < v.chain_len && i < 8; i++)
            printf("%s%s", i ? " -> " : "", v.chain[i]);
        if (v.root_ca_id)
            printf(" (root, CA id %lld)", (long long)v.root_ca_id);
        putchar('\n');
        if (v.crl_stale)
            printf("warning:       the CRL of '%s' is past its next update; it still applies: "
                   "load a fresh one with certgate crl add\n",
                   v.stale_crl_issuer);
        if (rc == 0) {
            printf("decision:      ACCEPTED as user %s (roles: ", id.user);
            for (size_t i = 0; i < id.n_roles; i++)
                printf("%s%s", i ? "," : "", id.roles[i]);
            printf("%s) via mapping %lld (%s)\n", id.n_roles ? "" : "none",
                   (long long)id.mapping_id, id.mapping_kind ? id.mapping_kind : "?");
        } else {
            printf("decision:      REFUSED (%s)\n", auth_reason_code(id.reason));
            printf("reason:        %s\n", id.detail);
            printf("fix:           %s\n", fix_for(id.reason));
        }
    }
out:
    identity_free(&id);
    free(sent);
    pki_cert_list_free(&certs);
    pki_cert_list_free(&chain);
    trust_release(snap);
    store_close(s);
    return rc;
}
