/* `certgate cert ...`: the user-to-certificate mapping table. */
#include "config.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"
#include "trust/trust.h"

static int cert_map(struct cli_ctx *ctx, int argc, char **argv);
static int cert_rule(struct cli_ctx *ctx, int argc, char **argv);
static int cert_list(struct cli_ctx *ctx, int argc, char **argv);
static int cert_show(struct cli_ctx *ctx, int argc, char **argv);
static int cert_unmap(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_cert_commands[] = {
    {.group = "cert",
     .name = "map",
     .run = cert_map,
     .usage = "cert map USER FILE.pem [--pinned] [--name NAME]",
     .help = "map an exact client certificate to a user (--pinned: a self-signed one)"},
    {.group = "cert",
     .name = "rule",
     .run = cert_rule,
     .usage = "cert rule USER --ca ID --match cn|dn|email|dns|uri|spki=VALUE [--name NAME]",
     .help = "map every certificate of one issuing CA whose field matches to a user"},
    {.group = "cert",
     .name = "list",
     .run = cert_list,
     .usage = "cert list [--user NAME]",
     .help = "list mappings and rules"},
    {.group = "cert",
     .name = "show",
     .run = cert_show,
     .usage = "cert show ID",
     .help = "show one mapping or rule"},
    {.group = "cert",
     .name = "unmap",
     .run = cert_unmap,
     .usage = "cert unmap ID",
     .help = "delete a mapping or rule"},
    {0},
};

/* The leaf of a bundle: its only non-CA certificate, or a lone self-signed
 * certificate. The others must be the leaf's own chain. */
static int pick_leaf(const struct cli_ctx *ctx, const char *path, const struct pki_cert_list *b,
                     size_t *out_leaf)
{
    size_t leaf = b->n, n_leaves = 0;

    for (size_t i = 0; i < b->n; i++) {
        if (!b->items[i].is_ca) {
            leaf = i;
            n_leaves++;
        }
    }
    if (n_leaves == 0) {
        if (b->n == 1)
            return cli_fail(ctx,
                            "%s: %s is a CA certificate: add CAs with certgate ca add; "
                            "map only the client's own (leaf) certificate",
                            path, b->items[0].subject);
        return cli_fail(ctx,
                        "%s: the file holds only CA certificates; map the client's own "
                        "(leaf) certificate",
                        path);
    }
    if (n_leaves > 1)
        return cli_fail(ctx,
                        "%s: the file holds %zu client certificates; map them one at a "
                        "time (one leaf per file, optionally followed by its chain)",
                        path, n_leaves);
    /* Every other certificate must sit on the leaf's issuing chain. */
    for (size_t i = 0; i < b->n; i++) {
        const struct pki_cert *cur = &b->items[leaf];
        bool on_chain = i == leaf;

        for (size_t depth = 0; !on_chain && depth < b->n; depth++) {
            size_t next = b->n;

            for (size_t j = 0; j < b->n; j++) {
                if (j != (size_t)(cur - b->items) && pki_cert_issued_by(cur, &b->items[j])) {
                    next = j;
                    break;
                }
            }
            if (next == b->n)
                break;
            if (next == i)
                on_chain = true;
            cur = &b->items[next];
        }
        if (!on_chain)
            return cli_fail(ctx,
                            "%s: certificate %zu (%s) is not part of the chain of the "
                            "client certificate %s; a file may hold one leaf and its own "
                            "chain only",
                            path, i + 1, b->items[i].subject, b->items[leaf].subject);
    }
    *out_leaf = leaf;
    return CLI_OK;
}

/* Tells the admin now what the server would refuse later. */
static void warn_if_untrusted(struct store *s, const struct pki_cert_list *b, size_t leaf,
                              bool pinned)
{
    struct trust_snapshot *snap = NULL;
    struct pki_cert *sent = NULL;
    struct pki_verdict v;
    struct cg_err err = {""};
    size_t n_sent = 0, len = 0;
    char missing[400] = "";

    if (trust_load(s, &snap, &err)) {
        cli_warn("could not check the chain: %s", err.msg);
        return;
    }
    sent = calloc(b->n, sizeof(*sent));
    if (!sent)
        goto out;
    for (size_t i = 0; i < b->n; i++) {
        if (i != leaf)
            sent[n_sent++] = b->items[i];
    }
    if (pki_verify(&snap->pki, &b->items[leaf], sent, n_sent, cg_now(), &v))
        goto out;
    if (v.reason == PKI_SELF_SIGNED && pinned)
        goto out;
    if (v.reason != PKI_OK) {
        cli_warn("mapped, but the server would refuse this certificate now (%s): %s",
                 pki_reason_code(v.reason), v.detail);
        goto out;
    }
    /* Trusted with the chain in the file; many clients (Postman, curl
     * without the chain) send only their leaf, and then the table must
     * hold the intermediates. */
    if (n_sent == 0 || pki_verify(&snap->pki, &b->items[leaf], NULL, 0, cg_now(), &v) ||
        v.reason == PKI_OK)
        goto out;
    for (size_t i = 0; i < b->n; i++) {
        struct store_ca rec;

        if (i == leaf || b->items[i].is_self_signed)
            continue;
        memset(&rec, 0, sizeof(rec));
        if (store_ca_get_by_fingerprint(s, b->items[i].fingerprint, &rec, &err) == CG_OK) {
            store_ca_free(&rec);
            continue;
        }
        cg_strappend(missing, sizeof(missing), &len, "%s'%s'", len ? ", " : "",
                     b->items[i].subject);
    }
    cli_warn("clients that send only this leaf certificate (as Postman does) will be refused "
             "(%s: %s) until %s %s added with certgate ca add FILE",
             pki_reason_code(v.reason), v.detail,
             len ? missing : "the intermediate CAs of the file", len ? "is" : "are");
out:
    free(sent);
    trust_release(snap);
}

static int cert_map(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"pinned", no_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    const char *usage = cli_cert_commands[0].usage;
    struct pki_cert_list b = {NULL, 0};
    struct store_user u;
    struct store_map m;
    struct store *s = NULL;
    struct cg_err err = {""};
    const char *name = NULL, *user, *path;
    const struct pki_cert *c;
    bool pinned = false;
    size_t leaf = 0;
    int opt, rc = CLI_FAIL;
    char t[21];

    memset(&u, 0, sizeof(u));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'p')
            pinned = true;
        else if (opt == 'n')
            name = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 2)
        return cli_usage(ctx, usage);
    user = argv[optind];
    path = argv[optind + 1];
    if (name && cli_check_text(ctx, "--name", name, 200))
        return CLI_FAIL;
    if (cli_read_bundle(ctx, path, &b))
        return CLI_FAIL;
    if (pick_leaf(ctx, path, &b, &leaf))
        goto out;
    c = &b.items[leaf];
    if (c->is_self_signed && !pinned) {
        cli_fail(ctx,
                 "%s: %s is self-signed: certgate refuses self-signed client certificates "
                 "unless you pin this exact certificate with --pinned",
                 path, c->subject);
        goto out;
    }
    if (pinned && !c->is_self_signed) {
        cli_fail(ctx,
                 "%s: --pinned is only for self-signed certificates; %s is issued by %s, so "
                 "map it without --pinned",
                 path, c->subject, c->issuer);
        goto out;
    }
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    if (store_user_get(s, user, &u, &err)) {
        cli_fail(ctx, "no user named '%s': create it first with certgate user add %s", user,
                 cg_valid_name(user) ? user : "NAME");
        goto out;
    }
    memset(&m, 0, sizeof(m));
    m.user_id = u.id;
    m.kind = pinned ? STORE_MAP_PINNED : STORE_MAP_CERT;
    m.name = (char *)name;
    snprintf(m.fingerprint, sizeof(m.fingerprint), "%s", c->fingerprint);
    m.subject = c->subject;
    m.issuer = c->issuer;
    m.serial = (char *)c->serial;
    m.not_before = c->not_before;
    m.not_after = c->not_after;
    m.der = c->der;
    m.der_len = c->der_len;
    m.is_active = true;
    if (store_map_insert(s, &m, &err)) {
        cli_fail(ctx, "%s: %s", path, err.msg);
        goto out;
    }
    if (ctx->json) {
        rc = cli_print_json(json_pack(
            "{s:I, s:s, s:s, s:s?, s:s, s:s, s:s}", "id", (json_int_t)m.id, "user", u.name, "kind",
            store_map_kind_name(m.kind), "name", name, "subject", c->subject, "fingerprint",
            c->fingerprint, "not_after", cli_time(c->not_after, t)));
    } else {
        printf("mapped certificate %s (SHA-256 %s, expires %s) to user %s as mapping %lld%s\n",
               c->subject, c->fingerprint, cli_time(c->not_after, t), u.name, (long long)m.id,
               pinned ? " (pinned)" : "");
        rc = CLI_OK;
    }
    warn_if_untrusted(s, &b, leaf, pinned);
out:
    store_user_free(&u);
    pki_cert_list_free(&b);
    store_close(s);
    return rc;
}

static bool is_hex64(const char *v)
{
    if (strlen(v) != 64)
        return false;
    for (const char *p = v; *p; p++) {
        if (!isxdigit((unsigned char)*p))
            return false;
    }
    return true;
}

static int cert_rule(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"match", required_argument, NULL, 'm'},
        {"name", required_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    static const char *const fields[] = {"cn", "dn", "email", "dns", "uri", "spki"};
    const char *usage = cli_cert_commands[1].usage;
    const char *ca_arg = NULL, *match = NULL, *name = NULL, *eq;
    char field[8] = "", *value = NULL;
    struct store_user u;
    struct store_ca ca;
    struct store_map m;
    struct store *s = NULL;
    struct cg_err err = {""};
    bool known = false, dn_rewritten = false;
    int opt, rc = CLI_FAIL;

    memset(&u, 0, sizeof(u));
    memset(&ca, 0, sizeof(ca));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'c')
            ca_arg = optarg;
        else if (opt == 'm')
            match = optarg;
        else if (opt == 'n')
            name = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1 || !ca_arg || !match)
        return cli_usage(ctx, usage);
    eq = strchr(match, '=');
    if (!eq || eq == match || (size_t)(eq - match) >= sizeof(field) || !eq[1])
        return cli_fail(ctx, "--match must be FIELD=VALUE with FIELD one of cn, dn, email, dns, "
                             "uri, spki (for example --match cn=integrator1)");
    memcpy(field, match, (size_t)(eq - match));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        known = known || strcmp(field, fields[i]) == 0;
    if (!known)
        return cli_fail(ctx, "unknown match field '%s': use cn, dn, email, dns, uri or spki",
                        field);
    if (name && cli_check_text(ctx, "--name", name, 200))
        return CLI_FAIL;
    if (cli_check_text(ctx, "the --match value", eq + 1, 1024))
        return CLI_FAIL;
    value = strdup(eq + 1);
    if (!value)
        return cli_fail(ctx, "out of memory");
    if (strcmp(field, "spki") == 0) {
        /* Accept what openssl/certtool print: colons, any case. */
        size_t o = 0;

        for (size_t i = 0; value[i]; i++) {
            if (value[i] != ':')
                value[o++] = (char)tolower((unsigned char)value[i]);
        }
        value[o] = '\0';
        if (!is_hex64(value)) {
            cli_fail(ctx, "spki= takes the SHA-256 of the public key as 64 hex digits (certgate "
                          "check CLIENT.pem --json prints it as spki_sha256)");
            goto out;
        }
    }
    if (strcmp(field, "dn") == 0) {
        /* identity compares byte for byte with certgate's own rendering of
         * the subject: store the DN in that form, or the rule never matches. */
        struct cg_err derr = {""};
        char *canon = NULL;
        int prc = pki_canonical_dn(value, &canon, &derr);

        if (prc == CG_ENOMEM) {
            cli_fail(ctx, "out of memory");
            goto out;
        }
        if (prc) {
            cli_fail(ctx,
                     "dn=%s: %s (write the DN as certgate prints subjects, e.g. "
                     "dn=CN=integrator1,O=Acme; certgate check CLIENT.pem shows a certificate's "
                     "subject)",
                     value, derr.msg);
            goto out;
        }
        dn_rewritten = strcmp(canon, value) != 0;
        free(value);
        value = canon;
    }
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    if (store_user_get(s, argv[optind], &u, &err)) {
        cli_fail(ctx, "no user named '%s': create it first with certgate user add", argv[optind]);
        goto out;
    }
    rc = store_ca_find(s, ca_arg, &ca, &err);
    if (rc) {
        cli_fail(ctx, "no CA with id or fingerprint '%s' (certgate ca list shows them)", ca_arg);
        rc = CLI_FAIL;
        goto out;
    }
    rc = CLI_FAIL;
    memset(&m, 0, sizeof(m));
    m.user_id = u.id;
    m.kind = STORE_MAP_RULE;
    m.name = (char *)name;
    m.ca_id = ca.id;
    m.match_field = field;
    m.match_value = value;
    m.is_active = true;
    if (store_map_insert(s, &m, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        rc = cli_print_json(json_pack("{s:I, s:s, s:s, s:s?, s:I, s:s, s:s}", "id",
                                      (json_int_t)m.id, "user", u.name, "kind", "rule", "name",
                                      name, "ca_id", (json_int_t)ca.id, "match_field", field,
                                      "match_value", value));
    } else {
        rc = CLI_OK;
        printf("rule %lld: certificates issued by CA %lld (%s) with %s=%s map to user %s\n",
               (long long)m.id, (long long)ca.id, ca.subject, field, value, u.name);
        if (dn_rewritten)
            printf("  the DN is stored as certgate writes subjects (you gave '%s')\n", eq + 1);
    }
    if (ca.is_root)
        cli_warn("CA %lld is a root: the rule matches only certificates the root issues "
                 "directly, not those of its intermediates",
                 (long long)ca.id);
out:
    free(value);
    store_user_free(&u);
    store_ca_free(&ca);
    store_close(s);
    return rc;
}

static json_t *map_json(const struct store_map *m)
{
    char nb[21], na[21];
    json_t *o = json_pack("{s:I, s:s, s:s, s:s?, s:b, s:s}", "id", (json_int_t)m->id, "user",
                          m->user_name ? m->user_name : "", "kind", store_map_kind_name(m->kind),
                          "name", m->name, "active", m->is_active, "created_on", m->created_on);

    if (m->kind == STORE_MAP_RULE) {
        o = cli_json_set(o, "ca_id", json_integer(m->ca_id));
        o = cli_json_set(o, "match_field", json_string(m->match_field));
        o = cli_json_set(o, "match_value", json_string(m->match_value));
    } else {
        o = cli_json_set(o, "subject", json_string(m->subject));
        o = cli_json_set(o, "issuer", m->issuer ? json_string(m->issuer) : json_null());
        o = cli_json_set(o, "serial", m->serial ? json_string(m->serial) : json_null());
        o = cli_json_set(o, "fingerprint", json_string(m->fingerprint));
        o = cli_json_set(o, "not_before", json_string(cli_time(m->not_before, nb)));
        o = cli_json_set(o, "not_after", json_string(cli_time(m->not_after, na)));
        o = cli_json_set(o, "days_until_expiry", json_integer(cli_days_until(m->not_after)));
    }
    return o;
}

static int cert_list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {0, 0, 0, 0},
    };
    struct store_map *maps = NULL;
    struct store *s = NULL;
    struct cg_err err = {""};
    const char *user = NULL;
    size_t n = 0;
    int opt, rc = CLI_FAIL;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'u')
            user = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc)
        return cli_usage(ctx, "cert list [--user NAME]");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    rc = store_map_list(s, user, &maps, &n, &err);
    if (rc == CG_ENOTFOUND) {
        rc = cli_fail(ctx, "no user named '%s'", user);
        goto out;
    }
    if (rc) {
        rc = cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++)
            arr = cli_json_append(arr, map_json(&maps[i]));
        rc = cli_print_json(arr);
        goto out;
    } else {
        printf("%-4s %-16s %-7s %-20s %s\n", "ID", "USER", "KIND", "EXPIRES", "MATCHES");
        for (size_t i = 0; i < n; i++) {
            char t[21];

            if (maps[i].kind == STORE_MAP_RULE)
                printf("%-4lld %-16s %-7s %-20s %s=%s issued by CA %lld\n", (long long)maps[i].id,
                       maps[i].user_name, "rule", "-", maps[i].match_field, maps[i].match_value,
                       (long long)maps[i].ca_id);
            else
                printf("%-4lld %-16s %-7s %-20s %s (SHA-256 %.16s...)%s\n", (long long)maps[i].id,
                       maps[i].user_name, store_map_kind_name(maps[i].kind),
                       cli_time(maps[i].not_after, t), maps[i].subject, maps[i].fingerprint,
                       maps[i].not_after < cg_now() ? "  [EXPIRED]" : "");
        }
    }
    rc = CLI_OK;
out:
    store_map_list_free(maps, n);
    store_close(s);
    return rc;
}

static int cert_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_map m;
    struct store_ca ca;
    struct store *s = NULL;
    struct cg_err err = {""};
    int64_t id;
    int rc = CLI_FAIL;
    char t1[21], t2[21], key[24];

    memset(&m, 0, sizeof(m));
    memset(&ca, 0, sizeof(ca));
    if (argc != 2)
        return cli_usage(ctx, "cert show ID");
    if (!cli_parse_id(argv[1], &id))
        return cli_fail(ctx, "'%s' is not a mapping id (certgate cert list shows them)", argv[1]);
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    rc = store_map_get(s, id, &m, &err);
    if (rc) {
        rc = cli_fail(ctx, rc == CG_ENOTFOUND ? "no mapping with id %s" : "%s",
                      rc == CG_ENOTFOUND ? argv[1] : err.msg);
        goto out;
    }
    if (ctx->json) {
        rc = cli_print_json(map_json(&m));
        goto out;
    }
    printf("mapping %lld (%s) for user %s%s%s%s\n", (long long)m.id, store_map_kind_name(m.kind),
           m.user_name, m.name ? ", named '" : "", m.name ? m.name : "", m.name ? "'" : "");
    if (m.kind == STORE_MAP_RULE) {
        snprintf(key, sizeof(key), "%lld", (long long)m.ca_id);
        printf("  matches:      %s=%s\n", m.match_field, m.match_value);
        if (store_ca_find(s, key, &ca, &err) == CG_OK)
            printf("  issuing CA:   %lld %s (%s)\n", (long long)ca.id, ca.subject,
                   ca.is_active ? "active" : "disabled");
    } else {
        printf("  subject:      %s\n", m.subject);
        printf("  issuer:       %s\n", m.issuer);
        printf("  serial:       %s\n", m.serial);
        printf("  valid:        %s to %s\n", cli_time(m.not_before, t1), cli_time(m.not_after, t2));
        if (m.not_after < cg_now())
            printf("  expiry:       EXPIRED %ld days ago\n", -cli_days_until(m.not_after));
        else
            printf("  expiry:       %ld days left\n", cli_days_until(m.not_after));
        printf("  SHA-256:      %s\n", m.fingerprint);
    }
    printf("  status:       %s\n", m.is_active ? "active" : "disabled");
    printf("  created:      %s\n", m.created_on);
    rc = CLI_OK;
out:
    store_map_free(&m);
    store_ca_free(&ca);
    store_close(s);
    return rc;
}

static int cert_unmap(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store *s = NULL;
    struct cg_err err = {""};
    int64_t id;
    int rc;

    if (argc != 2)
        return cli_usage(ctx, "cert unmap ID");
    if (!cli_parse_id(argv[1], &id))
        return cli_fail(ctx, "'%s' is not a mapping id (certgate cert list shows them)", argv[1]);
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    rc = store_map_delete(s, id, &err);
    store_close(s);
    if (rc == CG_ENOTFOUND)
        return cli_fail(ctx, "no mapping with id %s", argv[1]);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    if (ctx->json)
        return cli_print_json(json_pack("{s:I}", "deleted", (json_int_t)id));
    printf("deleted mapping %s\n", argv[1]);
    return CLI_OK;
}
