/* `certgate ca ...` and `certgate crl ...`: the CA certificate chain table. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

/* A CA with at most this many days left is flagged by `ca list` and `ca show`. */
#define EXPIRY_WARN_DAYS 30

static int ca_add(struct cli_ctx *ctx, int argc, char **argv);
static int ca_list(struct cli_ctx *ctx, int argc, char **argv);
static int ca_show(struct cli_ctx *ctx, int argc, char **argv);
static int ca_disable(struct cli_ctx *ctx, int argc, char **argv);
static int ca_enable(struct cli_ctx *ctx, int argc, char **argv);
static int ca_delete(struct cli_ctx *ctx, int argc, char **argv);
static int crl_add(struct cli_ctx *ctx, int argc, char **argv);
static int crl_list(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_ca_commands[] = {
    {.group = "ca",
     .name = "add",
     .run = ca_add,
     .usage = "ca add FILE.pem [--name NAME] [--allow-expired]",
     .help = "add the root and intermediate CAs of a PEM bundle (one transaction)"},
    {.group = "ca",
     .name = "list",
     .run = ca_list,
     .usage = "ca list",
     .help = "list the CA certificate chain table"},
    {.group = "ca",
     .name = "show",
     .run = ca_show,
     .usage = "ca show ID|FINGERPRINT",
     .help = "show one CA, its place in the chain and its CRL"},
    {.group = "ca",
     .name = "disable",
     .run = ca_disable,
     .usage = "ca disable ID|FINGERPRINT",
     .help = "stop trusting a CA (applies to open connections within a second)"},
    {.group = "ca",
     .name = "enable",
     .run = ca_enable,
     .usage = "ca enable ID|FINGERPRINT",
     .help = "trust a disabled CA again"},
    {.group = "ca",
     .name = "delete",
     .run = ca_delete,
     .usage = "ca delete ID|FINGERPRINT [--force]",
     .help = "delete a CA; refused while CAs below it, rules or mappings depend on it, unless "
             "--force (its own rules go with it); every copy of it stays refused"},
    {.group = "crl",
     .name = "add",
     .run = crl_add,
     .usage = "crl add FILE.pem",
     .help = "load a CRL issued by a CA in the table"},
    {.group = "crl",
     .name = "list",
     .run = crl_list,
     .usage = "crl list",
     .help = "list loaded CRLs"},
    {0},
};

/* All CAs of the table with their parsed certificates, for chain display. */
struct ca_set {
    struct store_ca *cas;   /* records */
    struct pki_cert *certs; /* parsed DER, same index; der == NULL if it failed */
    size_t n;               /* count */
};

static void ca_set_free(struct ca_set *set)
{
    for (size_t i = 0; set->certs && i < set->n; i++)
        pki_cert_free(&set->certs[i]);
    free(set->certs);
    store_ca_list_free(set->cas, set->n);
    memset(set, 0, sizeof(*set));
}

static int ca_set_load(const struct cli_ctx *ctx, struct store *s, struct ca_set *set)
{
    struct cg_err err = {""};

    memset(set, 0, sizeof(*set));
    if (store_ca_list(s, &set->cas, &set->n, &err))
        return cli_fail(ctx, "%s", err.msg);
    set->certs = calloc(set->n ? set->n : 1, sizeof(*set->certs));
    if (!set->certs) {
        ca_set_free(set);
        return cli_fail(ctx, "out of memory");
    }
    for (size_t i = 0; i < set->n; i++) {
        if (pki_cert_from_der(set->cas[i].der, set->cas[i].der_len, &set->certs[i]))
            memset(&set->certs[i], 0, sizeof(set->certs[i]));
    }
    return CLI_OK;
}

/* Index in @p set of the CA that issued @p cert (not itself), or -1. */
static long find_issuer(const struct ca_set *set, const struct pki_cert *cert)
{
    for (size_t i = 0; i < set->n; i++) {
        if (!set->certs[i].der || strcmp(set->certs[i].fingerprint, cert->fingerprint) == 0)
            continue;
        if (pki_cert_issued_by(cert, &set->certs[i]))
            return (long)i;
    }
    return -1;
}

static const char *ca_kind(const struct store_ca *ca)
{
    return ca->is_root ? "root" : "intermediate";
}

static json_t *ca_json(const struct store_ca *ca)
{
    char nb[21], na[21];

    return json_pack("{s:I, s:s?, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:s, s:s}", "id",
                     (json_int_t)ca->id, "name", ca->name, "subject", ca->subject, "issuer",
                     ca->issuer, "serial", ca->serial, "fingerprint", ca->fingerprint, "not_before",
                     cli_time(ca->not_before, nb), "not_after", cli_time(ca->not_after, na),
                     "days_until_expiry", (json_int_t)cli_days_until(ca->not_after), "kind",
                     ca_kind(ca), "active", ca->is_active, "created_on", ca->created_on,
                     "updated_on", ca->updated_on);
}

static void ca_from_cert(const struct pki_cert *c, char *pem, const char *name,
                         struct store_ca *out)
{
    memset(out, 0, sizeof(*out));
    out->name = (char *)name;
    out->subject = c->subject;
    out->issuer = c->issuer;
    out->serial = (char *)c->serial;
    snprintf(out->fingerprint, sizeof(out->fingerprint), "%s", c->fingerprint);
    snprintf(out->spki_sha256, sizeof(out->spki_sha256), "%s", c->spki_sha256);
    snprintf(out->ski, sizeof(out->ski), "%s", c->ski);
    snprintf(out->aki, sizeof(out->aki), "%s", c->aki);
    out->not_before = c->not_before;
    out->not_after = c->not_after;
    out->is_root = c->is_self_signed;
    out->path_len = c->path_len;
    out->der = c->der;
    out->der_len = c->der_len;
    out->pem = pem;
    out->is_active = true;
}

/* Where the issuer of bundle[i] is. */
enum issuer_place {
    ISSUER_KNOWN,    /* itself, in the bundle, or an active CA of the table */
    ISSUER_DISABLED, /* only a disabled CA of the table */
    ISSUER_MISSING,  /* nowhere */
};

static enum issuer_place issuer_place(const struct pki_cert_list *bundle, size_t i,
                                      const struct ca_set *table, long *out_idx)
{
    const struct pki_cert *c = &bundle->items[i];
    enum issuer_place place = ISSUER_MISSING;

    if (c->is_self_signed)
        return ISSUER_KNOWN;
    for (size_t j = 0; j < bundle->n; j++) {
        if (j != i && pki_cert_issued_by(c, &bundle->items[j]))
            return ISSUER_KNOWN;
    }
    for (size_t j = 0; j < table->n; j++) {
        if (!table->certs[j].der || strcmp(table->certs[j].fingerprint, c->fingerprint) == 0 ||
            !pki_cert_issued_by(c, &table->certs[j]))
            continue;
        if (table->cas[j].is_active)
            return ISSUER_KNOWN;
        place = ISSUER_DISABLED;
        *out_idx = (long)j;
    }
    return place;
}

/*
 * Checks every certificate of @p bundle before anything is written, so that
 * one bad certificate adds nothing: CA:TRUE, keyCertSign, not expired (unless
 * @p allow_expired), a valid self-signature, no duplicate, not in the table.
 * @return CLI_OK, or CLI_FAIL after saying why
 */
static int check_bundle(const struct cli_ctx *ctx, struct store *s, const char *path,
                        const struct pki_cert_list *bundle, bool allow_expired, int64_t now)
{
    struct cg_err err = {""};
    int rc;

    for (size_t i = 0; i < bundle->n; i++) {
        const struct pki_cert *c = &bundle->items[i];
        struct store_ca existing;

        if (!c->is_ca)
            return cli_fail(ctx,
                            "%s: certificate %zu (%s) is not a CA certificate (basicConstraints "
                            "CA:TRUE is missing): add only root and intermediate CAs here; map "
                            "client certificates with certgate cert map",
                            path, i + 1, c->subject);
        /* keyUsage, when present, must allow signing certificates, or no
         * chain can run through this CA (RFC 5280 4.2.1.3). */
        if (c->has_key_usage && !(c->key_usage & PKI_KU_KEY_CERT_SIGN))
            return cli_fail(
                ctx,
                "%s: certificate %zu (%s) is marked CA:TRUE but its keyUsage lacks "
                "keyCertSign: it cannot sign certificates, so no client could chain to it",
                path, i + 1, c->subject);
        if (c->not_after < now && !allow_expired) {
            char t[21];

            return cli_fail(ctx,
                            "%s: certificate %zu (%s) expired on %s: it cannot validate any "
                            "client (use --allow-expired to store it anyway)",
                            path, i + 1, c->subject, cli_time(c->not_after, t));
        }
        if (c->is_self_issued && !c->is_self_signed)
            return cli_fail(ctx,
                            "%s: certificate %zu (%s) names itself as issuer but its signature "
                            "does not verify with its own key",
                            path, i + 1, c->subject);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(bundle->items[j].fingerprint, c->fingerprint) == 0)
                return cli_fail(ctx,
                                "%s: certificate %zu (%s) appears twice in the file (also "
                                "certificate %zu)",
                                path, i + 1, c->subject, j + 1);
        }
        memset(&existing, 0, sizeof(existing));
        rc = store_ca_get_by_fingerprint(s, c->fingerprint, &existing, &err);
        if (rc == CG_OK) {
            cli_fail(ctx, "%s: certificate %zu (%s) is already in the CA table as id %lld", path,
                     i + 1, c->subject, (long long)existing.id);
            store_ca_free(&existing);
            return CLI_FAIL;
        }
        if (rc != CG_ENOTFOUND)
            return cli_fail(ctx, "%s", err.msg);
    }
    return CLI_OK;
}

/*
 * Inserts every certificate of @p bundle as a CA named @p name, in one
 * transaction, and warns about those that come back disabled or deleted.
 * @param out_ids the id of each certificate, in bundle order
 * @return CLI_OK, or CLI_FAIL after saying why (nothing added)
 */
static int insert_bundle(const struct cli_ctx *ctx, struct store *s, const char *path,
                         const struct pki_cert_list *bundle, const char *name, int64_t *out_ids)
{
    struct cg_err err = {""};
    int rc = CLI_FAIL;

    if (store_begin(s, &err))
        return cli_fail(ctx, "%s", err.msg);
    for (size_t i = 0; i < bundle->n; i++) {
        struct store_ca rec;
        char *pem = pki_cert_pem(&bundle->items[i]);

        if (!pem) {
            rc = cli_fail(ctx, "out of memory");
            goto out;
        }
        ca_from_cert(&bundle->items[i], pem, name, &rec);
        rc = store_ca_insert(s, &rec, &err);
        free(pem);
        if (rc) {
            rc = cli_fail(ctx, "%s: certificate %zu (%s): %s", path, i + 1,
                          bundle->items[i].subject, err.msg);
            goto out;
        }
        out_ids[i] = rec.id;
        if (!rec.is_active)
            cli_warn("%s (id %lld) is a copy of a disabled CA (same name and key): it is added "
                     "disabled too; certgate ca enable %lld enables every copy",
                     bundle->items[i].subject, (long long)rec.id, (long long)rec.id);
        if (rec.was_deleted)
            cli_warn("%s (id %lld) had been deleted from the table: chains through its key are "
                     "trusted again, and the CRLs it signed apply again",
                     bundle->items[i].subject, (long long)rec.id);
    }
    if (store_commit(s, &err)) {
        rc = cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    return CLI_OK;
out:
    store_rollback(s);
    return rc;
}

/*
 * Prints what ca add added (@p ids, in bundle order), with a warning for
 * each intermediate whose issuer is missing or disabled and each CA not
 * valid yet.
 * @return CLI_OK, or what printing the JSON answer returned
 */
static int report_added(const struct cli_ctx *ctx, const struct pki_cert_list *bundle,
                        const struct ca_set *table, const int64_t *ids, int64_t now)
{
    json_t *out = ctx->json ? json_array() : NULL;

    for (size_t i = 0; i < bundle->n; i++) {
        const struct pki_cert *c = &bundle->items[i];
        char t[21];

        long idx = -1;
        enum issuer_place place = issuer_place(bundle, i, table, &idx);

        if (place == ISSUER_MISSING)
            cli_warn("%s (id %lld) is an intermediate whose issuer '%s' is not in the CA table "
                     "yet: add its root first (certgate ca add ROOT.pem), or clients chaining "
                     "to it are refused",
                     c->subject, (long long)ids[i], c->issuer);
        else if (place == ISSUER_DISABLED)
            cli_warn("%s (id %lld) is an intermediate whose issuer, CA %lld (%s), is disabled in "
                     "the table: clients chaining to it are refused until certgate ca enable %lld",
                     c->subject, (long long)ids[i], (long long)table->cas[idx].id,
                     table->cas[idx].subject, (long long)table->cas[idx].id);
        if (c->not_before > now)
            cli_warn("%s (id %lld) is not valid before %s", c->subject, (long long)ids[i],
                     cli_time(c->not_before, t));
        if (ctx->json) {
            out = cli_json_append(out, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
                                                 (json_int_t)ids[i], "subject", c->subject, "kind",
                                                 c->is_self_signed ? "root" : "intermediate",
                                                 "fingerprint", c->fingerprint, "not_after",
                                                 cli_time(c->not_after, t)));
        } else {
            printf("added CA %lld: %s (%s, expires %s, SHA-256 %s)\n", (long long)ids[i],
                   c->subject, c->is_self_signed ? "root" : "intermediate",
                   cli_time(c->not_after, t), c->fingerprint);
        }
    }
    return ctx->json ? cli_print_json(json_pack("{s:o}", "added", out)) : CLI_OK;
}

static int ca_add(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        {"allow-expired", no_argument, NULL, 'e'},
        {0, 0, 0, 0},
    };
    const char *usage = cli_ca_commands[0].usage;
    struct pki_cert_list bundle = {NULL, 0};
    struct ca_set table = {NULL, NULL, 0};
    struct store *s = NULL;
    const char *name = NULL, *path;
    bool allow_expired = false;
    int64_t now = cg_now(), *ids = NULL;
    int opt, rc = CLI_FAIL;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'n')
            name = optarg;
        else if (opt == 'e')
            allow_expired = true;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1)
        return cli_usage(ctx, usage);
    path = argv[optind];
    if (name && cli_check_text(ctx, "--name", name, 200))
        return CLI_FAIL;
    if (cli_read_bundle(ctx, path, &bundle))
        return CLI_FAIL;
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    if (ca_set_load(ctx, s, &table))
        goto out;
    if (check_bundle(ctx, s, path, &bundle, allow_expired, now))
        goto out;
    ids = calloc(bundle.n, sizeof(*ids));
    if (!ids) {
        cli_fail(ctx, "out of memory");
        goto out;
    }
    if (insert_bundle(ctx, s, path, &bundle, name, ids))
        goto out;
    rc = report_added(ctx, &bundle, &table, ids, now);
out:
    free(ids);
    ca_set_free(&table);
    pki_cert_list_free(&bundle);
    store_close(s);
    return rc;
}

/* Whether @p crl was signed by the key of CA record @p ca (and names it). */
static bool crl_signed_by_record(const struct store_crl *crl, const struct store_ca *ca)
{
    return strcmp(crl->signer_spki, ca->spki_sha256) == 0 && crl->issuer && ca->subject &&
           strcmp(crl->issuer, ca->subject) == 0;
}

/* The newest CRL of a CA (of its key, whichever record), or NULL. */
static const struct store_crl *crl_of(const struct store_crl *crls, size_t n,
                                      const struct store_ca *ca)
{
    const struct store_crl *best = NULL;

    for (size_t i = 0; i < n; i++) {
        if (crl_signed_by_record(&crls[i], ca) &&
            (!best || crls[i].this_update > best->this_update))
            best = &crls[i];
    }
    return best;
}

/* The first record of the CA whose key signed @p crl, 0 when none is left. */
static int64_t crl_ca_id(const struct store_crl *crl, const struct store_ca *cas, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (crl_signed_by_record(crl, &cas[i]))
            return cas[i].id;
    }
    return 0;
}

static bool crl_is_stale(const struct store_crl *crl)
{
    return crl && crl->next_update && crl->next_update < cg_now();
}

static int ca_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_ca *cas = NULL;
    struct store_crl *crls = NULL;
    size_t n = 0, n_crls = 0;
    struct store *s = NULL;
    struct cg_err err = {""};
    int rc = CLI_FAIL;

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "ca list");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (store_ca_list(s, &cas, &n, &err) || store_crl_list(s, &crls, &n_crls, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            const struct store_crl *crl = crl_of(crls, n_crls, &cas[i]);
            json_t *o = ca_json(&cas[i]);
            long days = cli_days_until(cas[i].not_after);

            o = cli_json_set(o, "expires_soon",
                             json_boolean(days >= 0 && days <= EXPIRY_WARN_DAYS));
            o = cli_json_set(o, "expired", json_boolean(cas[i].not_after < cg_now()));
            o = cli_json_set(o, "crl",
                             crl ? json_pack("{s:I, s:I, s:b}", "id", (json_int_t)crl->id,
                                             "revoked", (json_int_t)crl->revoked_count, "stale",
                                             crl_is_stale(crl))
                                 : json_null());
            arr = cli_json_append(arr, o);
        }
        rc = cli_print_json(arr);
        goto out;
    }
    if (n == 0) {
        printf("the CA certificate chain table is empty: add your root and intermediate CAs "
               "with certgate ca add FILE.pem\n");
        rc = CLI_OK;
        goto out;
    }
    printf("%-4s %-8s %-12s %-20s %-6s %-14s %s\n", "ID", "STATUS", "KIND", "EXPIRES", "DAYS",
           "CRL", "SUBJECT");
    for (size_t i = 0; i < n; i++) {
        const struct store_crl *crl = crl_of(crls, n_crls, &cas[i]);
        long days = cli_days_until(cas[i].not_after);
        char t[21], crlbuf[48], flag[64] = "";

        if (cas[i].not_after < cg_now())
            snprintf(flag, sizeof(flag), "  [EXPIRED]");
        else if (days <= EXPIRY_WARN_DAYS)
            snprintf(flag, sizeof(flag), "  [EXPIRES IN %ld DAYS]", days);
        if (!crl)
            snprintf(crlbuf, sizeof(crlbuf), "-");
        else
            snprintf(crlbuf, sizeof(crlbuf), "%lld revoked%s", (long long)crl->revoked_count,
                     crl_is_stale(crl) ? " STALE" : "");
        printf("%-4lld %-8s %-12s %-20s %-6ld %-14s %s%s\n", (long long)cas[i].id,
               cas[i].is_active ? "active" : "disabled", ca_kind(&cas[i]),
               cli_time(cas[i].not_after, t), days, crlbuf, cas[i].subject, flag);
        if (crl_is_stale(crl))
            cli_warn("the CRL of CA %lld is past its next update (%s); it still applies: load "
                     "a fresh one with certgate crl add",
                     (long long)cas[i].id, cli_time(crl->next_update, t));
    }
    rc = CLI_OK;
out:
    store_ca_list_free(cas, n);
    store_crl_list_free(crls, n_crls);
    store_close(s);
    return rc;
}

static int find_ca(const struct cli_ctx *ctx, struct store *s, const char *key,
                   struct store_ca *out)
{
    struct cg_err err = {""};
    int rc;

    memset(out, 0, sizeof(*out));
    rc = store_ca_find(s, key, out, &err);
    if (rc == CG_ENOTFOUND)
        return cli_fail(ctx, "no CA with id or fingerprint '%s' (certgate ca list shows them)",
                        key);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    return CLI_OK;
}

static int ca_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_crl *crls = NULL;
    struct ca_set set = {NULL, NULL, 0};
    struct store_ca ca;
    struct store *s = NULL;
    struct cg_err err = {""};
    size_t n_crls = 0, self = 0;
    struct store_ca_deps deps;
    const struct store_crl *crl;
    long issuer = -1;
    int rc = CLI_FAIL;
    char t1[21], t2[21];

    memset(&ca, 0, sizeof(ca));
    if (argc != 2)
        return cli_usage(ctx, "ca show ID|FINGERPRINT");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (find_ca(ctx, s, argv[1], &ca) || ca_set_load(ctx, s, &set))
        goto out;
    if (store_crl_list(s, &crls, &n_crls, &err) || store_ca_dependents(s, ca.id, &deps, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < set.n; i++) {
        if (set.cas[i].id == ca.id)
            self = i;
    }
    if (set.certs[self].der && !ca.is_root)
        issuer = find_issuer(&set, &set.certs[self]);
    crl = crl_of(crls, n_crls, &ca);

    if (ctx->json) {
        json_t *o = ca_json(&ca), *children = json_array();

        for (size_t i = 0; i < set.n; i++) {
            if (i != self && set.certs[i].der && set.certs[self].der &&
                pki_cert_issued_by(&set.certs[i], &set.certs[self]))
                children = cli_json_append(children,
                                           json_pack("{s:I, s:s}", "id", (json_int_t)set.cas[i].id,
                                                     "subject", set.cas[i].subject));
        }
        o = cli_json_set(o, "issuer_record",
                         ca.is_root ? json_string("self")
                         : issuer >= 0
                             ? json_pack("{s:I, s:s}", "id", (json_int_t)set.cas[issuer].id,
                                         "subject", set.cas[issuer].subject)
                             : json_null());
        o = cli_json_set(o, "children", children);
        o = cli_json_set(o, "rules", json_integer(deps.rules));
        o = cli_json_set(o, "mapped_certificates", json_integer(deps.mappings));
        o = cli_json_set(o, "child_cas", json_integer(deps.child_cas));
        o = cli_json_set(o, "rules_below", json_integer(deps.child_rules));
        o = cli_json_set(o, "mapped_certificates_below", json_integer(deps.child_mappings));
        o = cli_json_set(
            o, "crl",
            crl ? json_pack("{s:I, s:s, s:s, s:I, s:b}", "id", (json_int_t)crl->id, "this_update",
                            cli_time(crl->this_update, t1), "next_update",
                            crl->next_update ? cli_time(crl->next_update, t2) : "", "revoked",
                            (json_int_t)crl->revoked_count, "stale", crl_is_stale(crl))
                : json_null());
        rc = cli_print_json(o);
        goto out;
    }
    printf("CA %lld%s%s%s\n", (long long)ca.id, ca.name ? " (" : "", ca.name ? ca.name : "",
           ca.name ? ")" : "");
    printf("  subject:      %s\n", ca.subject);
    printf("  issuer:       %s\n", ca.issuer);
    printf("  serial:       %s\n", ca.serial);
    printf("  valid:        %s to %s\n", cli_time(ca.not_before, t1), cli_time(ca.not_after, t2));
    if (ca.not_after < cg_now())
        printf("  expiry:       EXPIRED %ld days ago\n", -cli_days_until(ca.not_after));
    else
        printf("  expiry:       %ld days left%s\n", cli_days_until(ca.not_after),
               cli_days_until(ca.not_after) <= EXPIRY_WARN_DAYS ? " [EXPIRES SOON]" : "");
    printf("  SHA-256:      %s\n", ca.fingerprint);
    printf("  status:       %s\n", ca.is_active ? "active" : "disabled");
    printf("  kind:         %s%s\n", ca_kind(&ca), ca.path_len >= 0 ? "" : "");
    if (ca.path_len >= 0)
        printf("  path length:  %d\n", ca.path_len);
    if (ca.is_root)
        printf("  issued by:    itself (self-signed root)\n");
    else if (issuer >= 0)
        printf("  issued by:    CA %lld %s (%s)\n", (long long)set.cas[issuer].id,
               set.cas[issuer].subject, set.cas[issuer].is_active ? "active" : "disabled");
    else
        printf("  issued by:    %s, NOT IN THE TABLE: add it with certgate ca add\n", ca.issuer);
    for (size_t i = 0; i < set.n; i++) {
        if (i != self && set.certs[i].der && set.certs[self].der &&
            pki_cert_issued_by(&set.certs[i], &set.certs[self]))
            printf("  issues:       CA %lld %s\n", (long long)set.cas[i].id, set.cas[i].subject);
    }
    if (crl)
        printf("  CRL:          %lld revoked, this update %s, next update %s%s\n",
               (long long)crl->revoked_count, cli_time(crl->this_update, t1),
               crl->next_update ? cli_time(crl->next_update, t2) : "none",
               crl_is_stale(crl) ? " [STALE: still applied; load a fresh CRL]" : "");
    else
        printf("  CRL:          none loaded\n");
    printf("  depends on it: %lld rules, %lld mapped certificates", (long long)deps.rules,
           (long long)deps.mappings);
    if (deps.child_cas)
        printf("; %lld CAs below it, with %lld rules and %lld mapped certificates",
               (long long)deps.child_cas, (long long)deps.child_rules,
               (long long)deps.child_mappings);
    putchar('\n');
    printf("  added:        %s, updated %s\n", ca.created_on, ca.updated_on);
    rc = CLI_OK;
out:
    store_ca_free(&ca);
    ca_set_free(&set);
    store_crl_list_free(crls, n_crls);
    store_close(s);
    return rc;
}

static int set_active(struct cli_ctx *ctx, int argc, char **argv, bool active)
{
    struct store *s = NULL;
    struct store_ca ca, *all = NULL;
    struct cg_err err = {""};
    json_t *copies_json = json_array();
    char copies[256] = "";
    size_t n = 0, cl = 0;
    int rc = CLI_FAIL;

    memset(&ca, 0, sizeof(ca));
    if (argc != 2)
        return cli_usage(ctx, active ? "ca enable ID|FINGERPRINT" : "ca disable ID|FINGERPRINT");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (find_ca(ctx, s, argv[1], &ca))
        goto out;
    if (store_ca_set_active(s, ca.id, active, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    /* Every record with its key changed with it: name them. */
    if (store_ca_list(s, &all, &n, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (all[i].id != ca.id && strcmp(all[i].spki_sha256, ca.spki_sha256) == 0) {
            cg_strappend(copies, sizeof(copies), &cl, "%s%lld", cl ? ", " : "",
                         (long long)all[i].id);
            copies_json = cli_json_append(copies_json, json_integer(all[i].id));
        }
    }
    if (ctx->json) {
        rc = cli_print_json(json_pack("{s:I, s:s, s:b, s:o}", "id", (json_int_t)ca.id, "subject",
                                      ca.subject, "active", active, "copies", copies_json));
        copies_json = NULL;
        goto out;
    }
    printf("CA %lld (%s) is now %s\n", (long long)ca.id, ca.subject,
           active ? "active" : "disabled");
    if (cl)
        printf("so are the other records of its key (renewed or cross-signed copies): %s\n",
               copies);
    rc = CLI_OK;
out:
    json_decref(copies_json);
    store_ca_list_free(all, n);
    store_ca_free(&ca);
    store_close(s);
    return rc;
}

static int ca_disable(struct cli_ctx *ctx, int argc, char **argv)
{
    return set_active(ctx, argc, argv, false);
}

static int ca_enable(struct cli_ctx *ctx, int argc, char **argv)
{
    return set_active(ctx, argc, argv, true);
}

static int ca_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    struct store *s = NULL;
    struct store_ca ca;
    struct store_ca_deps d;
    struct cg_err err = {""};
    bool force = false;
    int64_t maps;
    int opt, rc = CLI_FAIL;

    memset(&ca, 0, sizeof(ca));
    memset(&d, 0, sizeof(d));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'f')
            force = true;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1)
        return cli_usage(ctx, "ca delete ID|FINGERPRINT [--force]");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (find_ca(ctx, s, argv[optind], &ca))
        goto out;
    if (store_ca_delete(s, ca.id, force, &d, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    maps = d.mappings + d.child_mappings;
    if (ctx->json) {
        rc = cli_print_json(json_pack(
            "{s:I, s:s, s:b, s:I, s:{s:I}, s:{s:I, s:I, s:I, s:I}}", "deleted", (json_int_t)ca.id,
            "subject", ca.subject, "forced", force, "copy_kept", (json_int_t)d.copy_id, "removed",
            "rules", (json_int_t)(d.copy_id ? 0 : d.rules), "left", "child_cas",
            (json_int_t)d.child_cas, "rules", (json_int_t)d.child_rules, "mapped_certificates",
            (json_int_t)maps, "crls", (json_int_t)d.crls));
        goto out;
    }
    if (d.copy_id) {
        printf("deleted record %lld of CA %s; the CA stays in the table through record %lld "
               "(same name and key), which its %lld rule%s now point%s at\n",
               (long long)ca.id, ca.subject, (long long)d.copy_id, (long long)d.rules,
               d.rules == 1 ? "" : "s", d.rules == 1 ? "s" : "");
        rc = CLI_OK;
        goto out;
    }
    printf("deleted CA %lld (%s) with its %lld rule%s\n", (long long)ca.id, ca.subject,
           (long long)d.rules, d.rules == 1 ? "" : "s");
    printf("every copy of this CA (same name and key) is refused from now on, also when a "
           "client sends it, until it is added again with certgate ca add");
    if (d.crls)
        printf("; its %lld CRL%s %s kept and appl%s again then", (long long)d.crls,
               d.crls == 1 ? "" : "s", d.crls == 1 ? "is" : "are", d.crls == 1 ? "ies" : "y");
    putchar('\n');
    if (d.child_cas || maps || d.child_rules)
        printf("left in the table: %lld CA%s below it, %lld rule%s bound to those and %lld "
               "mapped certificate%s; clients chaining through the deleted CA are refused until "
               "it is added again with certgate ca add\n",
               (long long)d.child_cas, d.child_cas == 1 ? "" : "s", (long long)d.child_rules,
               d.child_rules == 1 ? "" : "s", (long long)maps, maps == 1 ? "" : "s");
    rc = CLI_OK;
out:
    store_ca_free(&ca);
    store_close(s);
    return rc;
}

/*
 * Whether @p crl may replace the CRLs of its scope in @p crls (those with
 * its issuer, signed by @p spki): only a newer complete CRL does, one with a
 * higher CRL number, issued no earlier. 1 yes, 0 no (said why), -1 error.
 */
static int crl_is_newer(const struct cli_ctx *ctx, const char *path, const struct pki_crl *crl,
                        const char *spki, const struct store_crl *crls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct pki_crl old;
        struct cg_err err = {""};
        char t1[21], t2[21];
        int newer;

        if (strcmp(crls[i].signer_spki, spki) != 0 || strcmp(crls[i].issuer, crl->issuer) != 0)
            continue;
        if (pki_parse_crl((const char *)crls[i].der, crls[i].der_len, &old, &err))
            continue; /* unreadable now: it cannot be compared, and applies nothing */
        newer =
            pki_crl_number_cmp(crl->number, old.number) > 0 && crl->this_update >= old.this_update;
        if (!newer)
            cli_fail(ctx,
                     "%s: a CRL from this CA issued at the same time or later is already loaded "
                     "(CRL %lld: number %s, issued %s; this one: number %s, issued %s): only a "
                     "newer complete CRL replaces it",
                     path, (long long)crls[i].id, old.number, cli_time(old.this_update, t1),
                     crl->number, cli_time(crl->this_update, t2));
        pki_crl_free(&old);
        if (!newer)
            return 0;
    }
    return 1;
}

static int crl_add(struct cli_ctx *ctx, int argc, char **argv)
{
    struct ca_set set = {NULL, NULL, 0};
    struct store *s = NULL;
    struct pki_crl crl;
    struct store_crl rec, *crls = NULL;
    struct store_crl_scope seen;
    struct cg_err err = {""};
    char *data = NULL;
    size_t len = 0, n_crls = 0;
    long signer = -1, named = -1;
    int rc = CLI_FAIL;
    char t[21];

    memset(&crl, 0, sizeof(crl));
    if (argc != 2)
        return cli_usage(ctx, "crl add FILE.pem");
    if (cg_read_file(argv[1], 16 * 1024 * 1024, &data, &len, &err))
        return cli_fail(ctx, "%s", err.msg);
    if (pki_parse_crl(data, len, &crl, &err)) {
        cli_fail(ctx, "%s: %s", argv[1], err.msg[0] ? err.msg : "not a CRL");
        goto out;
    }
    if (crl.partial[0]) {
        cli_fail(ctx, "%s: refused: %s", argv[1], crl.partial);
        goto out;
    }
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    if (ca_set_load(ctx, s, &set))
        goto out;
    for (size_t i = 0; i < set.n; i++) {
        if (!set.certs[i].der || strcmp(set.certs[i].subject, crl.issuer) != 0)
            continue;
        if (named < 0)
            named = (long)i;
        if (pki_crl_signed_by(&crl, &set.certs[i])) {
            signer = (long)i;
            break;
        }
    }
    if (signer < 0 && named < 0) {
        cli_fail(ctx,
                 "%s: the CRL's issuer '%s' is not a CA in the table: add the issuing CA "
                 "first (certgate ca add)",
                 argv[1], crl.issuer);
        goto out;
    }
    if (signer < 0 && set.certs[named].has_key_usage &&
        !(set.certs[named].key_usage & PKI_KU_CRL_SIGN)) {
        cli_fail(ctx,
                 "%s: the CRL names CA %lld (%s) as its issuer, but that CA's key usage does "
                 "not allow signing CRLs (cRLSign is missing)",
                 argv[1], (long long)set.cas[named].id, crl.issuer);
        goto out;
    }
    if (signer < 0) {
        cli_fail(ctx,
                 "%s: the CRL names CA %lld (%s) as its issuer, but its signature does not "
                 "verify with the key of that CA: it was signed by another key (a forged CRL, "
                 "or one from a re-keyed CA that is not in the table)",
                 argv[1], (long long)set.cas[named].id, crl.issuer);
        goto out;
    }
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.signer_spki, sizeof(rec.signer_spki), "%s", set.certs[signer].spki_sha256);
    rec.issuer = crl.issuer;
    /* What is loaded for this CA's key now, read before deciding "newer";
     * store_crl_replace refuses if it changes before the write. */
    if (store_crl_scope(s, rec.issuer, rec.signer_spki, &seen, &err) ||
        store_crl_list(s, &crls, &n_crls, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (crl_is_newer(ctx, argv[1], &crl, rec.signer_spki, crls, n_crls) != 1)
        goto out;
    snprintf(rec.fingerprint, sizeof(rec.fingerprint), "%s", crl.fingerprint);
    rec.this_update = crl.this_update;
    rec.next_update = crl.next_update;
    rec.revoked_count = (int64_t)crl.n_revoked;
    rec.der = crl.der;
    rec.der_len = crl.der_len;
    if (store_crl_replace(s, &rec, &seen, &err)) {
        cli_fail(ctx, "%s: %s", argv[1], err.msg);
        goto out;
    }
    if (crl.next_update && crl.next_update < cg_now())
        cli_warn("this CRL is past its next update (%s): certgate still applies it, but load a "
                 "fresh one from the CA",
                 cli_time(crl.next_update, t));
    if (ctx->json) {
        rc = cli_print_json(json_pack("{s:I, s:I, s:s, s:s, s:I, s:I}", "id", (json_int_t)rec.id,
                                      "ca_id", (json_int_t)set.cas[signer].id, "issuer", crl.issuer,
                                      "number", crl.number, "revoked", (json_int_t)crl.n_revoked,
                                      "replaced", (json_int_t)seen.count));
        goto out;
    }
    printf("added CRL %lld from CA %lld (%s): %zu revoked certificates", (long long)rec.id,
           (long long)set.cas[signer].id, crl.issuer, crl.n_revoked);
    if (seen.count)
        printf("; it replaces the older CRL of that CA");
    putchar('\n');
    rc = CLI_OK;
out:
    free(data);
    pki_crl_free(&crl);
    store_crl_list_free(crls, n_crls);
    ca_set_free(&set);
    store_close(s);
    return rc;
}

static int crl_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_crl *crls = NULL;
    struct store_ca *cas = NULL;
    struct store *s = NULL;
    struct cg_err err = {""};
    size_t n = 0, n_cas = 0;
    int rc = CLI_FAIL;
    char t1[21], t2[21];

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "crl list");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (store_crl_list(s, &crls, &n, &err) || store_ca_list(s, &cas, &n_cas, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            int64_t ca_id = crl_ca_id(&crls[i], cas, n_cas);

            arr = cli_json_append(
                arr,
                json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:I, s:b}", "id", (json_int_t)crls[i].id,
                          "ca_id", ca_id ? json_integer(ca_id) : json_null(), "issuer",
                          crls[i].issuer, "signer_spki", crls[i].signer_spki, "this_update",
                          cli_time(crls[i].this_update, t1), "next_update",
                          crls[i].next_update ? cli_time(crls[i].next_update, t2) : "", "revoked",
                          (json_int_t)crls[i].revoked_count, "stale", crl_is_stale(&crls[i])));
        }
        rc = cli_print_json(arr);
        goto out;
    } else {
        printf("%-4s %-5s %-20s %-20s %-8s %s\n", "ID", "CA", "THIS UPDATE", "NEXT UPDATE",
               "REVOKED", "ISSUER");
        for (size_t i = 0; i < n; i++) {
            int64_t ca_id = crl_ca_id(&crls[i], cas, n_cas);
            char ca[24];

            /* A deleted CA's CRLs stay, for the day it comes back. */
            if (ca_id)
                snprintf(ca, sizeof(ca), "%lld", (long long)ca_id);
            else
                snprintf(ca, sizeof(ca), "-");
            printf("%-4lld %-5s %-20s %-20s %-8lld %s%s%s\n", (long long)crls[i].id, ca,
                   cli_time(crls[i].this_update, t1),
                   crls[i].next_update ? cli_time(crls[i].next_update, t2) : "none",
                   (long long)crls[i].revoked_count, crls[i].issuer,
                   crl_is_stale(&crls[i]) ? "  [STALE]" : "",
                   ca_id ? "" : "  [its CA was deleted]");
        }
    }
    rc = CLI_OK;
out:
    store_ca_list_free(cas, n_cas);
    store_crl_list_free(crls, n);
    store_close(s);
    return rc;
}
