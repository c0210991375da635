/* `certgate user ...`: users, roles and Basic passwords. */
#include "config.h"
#include "base/utf8.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"
#include "auth/password.h"

static int user_add(struct cli_ctx *ctx, int argc, char **argv);
static int user_list(struct cli_ctx *ctx, int argc, char **argv);
static int user_show(struct cli_ctx *ctx, int argc, char **argv);
static int user_lock(struct cli_ctx *ctx, int argc, char **argv);
static int user_unlock(struct cli_ctx *ctx, int argc, char **argv);
static int user_delete(struct cli_ctx *ctx, int argc, char **argv);
static int user_roles(struct cli_ctx *ctx, int argc, char **argv);
static int user_password(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_user_commands[] = {
    {.group = "user",
     .name = "add",
     .run = user_add,
     .usage = "user add NAME [--roles r1,r2] [--password-stdin]",
     .help = "create a user (a password only for the HTTP Basic fallback)"},
    {.group = "user", .name = "list", .run = user_list, .usage = "user list", .help = "list users"},
    {.group = "user",
     .name = "show",
     .run = user_show,
     .usage = "user show NAME",
     .help = "show a user, its roles and its certificate mappings"},
    {.group = "user",
     .name = "lock",
     .run = user_lock,
     .usage = "user lock NAME",
     .help = "refuse the user everywhere (open connections within a second)"},
    {.group = "user",
     .name = "unlock",
     .run = user_unlock,
     .usage = "user unlock NAME",
     .help = "let a locked user in again"},
    {.group = "user",
     .name = "delete",
     .run = user_delete,
     .usage = "user delete NAME",
     .help = "delete a user with its roles and mappings"},
    {.group = "user",
     .name = "roles",
     .run = user_roles,
     .usage = "user roles NAME r1,r2",
     .help = "replace the user's roles (an empty list removes them all)"},
    {.group = "user",
     .name = "password",
     .run = user_password,
     .usage = "user password NAME --password-stdin | --clear",
     .help = "set or remove the user's HTTP Basic password"},
    {0},
};

/* Reads one line from stdin as the password; never echoes or logs it. */
static int read_password(const struct cli_ctx *ctx, char **out_pw, size_t *out_len)
{
    char *buf = malloc(PASSWORD_MAX_LEN + 2);
    size_t len;

    if (!buf)
        return cli_fail(ctx, "out of memory");
    if (!fgets(buf, PASSWORD_MAX_LEN + 2, stdin)) {
        free(buf);
        return cli_fail(ctx, "--password-stdin: no password on standard input");
    }
    len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    else if (len > PASSWORD_MAX_LEN) {
        free(buf);
        return cli_fail(ctx, "--password-stdin: the password is longer than %d bytes",
                        PASSWORD_MAX_LEN);
    }
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if (len == 0) {
        free(buf);
        return cli_fail(ctx, "--password-stdin: the password is empty");
    }
    if (len < 12) {
        free(buf);
        return cli_fail(ctx, "--password-stdin: the password must have at least 12 characters");
    }
    *out_pw = buf;
    *out_len = len;
    return CLI_OK;
}

static int hash_from_stdin(const struct cli_ctx *ctx, char **out_hash)
{
    char *pw = NULL;
    size_t len = 0;
    int rc;

    if (read_password(ctx, &pw, &len))
        return CLI_FAIL;
    rc = password_hash(pw, len, out_hash);
    memset(pw, 0, len);
    free(pw);
    if (rc)
        return cli_fail(ctx, "cannot hash the password: %s", cg_strerror(rc));
    return CLI_OK;
}

/*
 * Roles from "r1,r2": each one trimmed and a valid name; an empty role
 * (",a", "a,,b", "a,") is refused rather than skipped, and a role given
 * twice is kept once. An empty or blank list is no roles.
 */
static int parse_roles(const struct cli_ctx *ctx, const char *list, char ***out_roles,
                       size_t *out_n)
{
    char **roles = NULL;
    size_t n = 0;
    const char *p = list ? list : "";

    *out_roles = NULL;
    *out_n = 0;
    if (strspn(p, " \t") == strlen(p))
        return CLI_OK;
    for (;;) {
        const char *start = p, *end = p + strcspn(p, ",");
        bool seen = false;
        char **nr;
        char *role;

        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == start) {
            cli_fail(ctx, "an empty role in '%s': separate role names with single commas", list);
            goto fail;
        }
        role = strndup(start, (size_t)(end - start));
        if (!role) {
            cli_fail(ctx, "out of memory");
            goto fail;
        }
        if (!cg_valid_name(role)) {
            cli_fail(ctx,
                     "invalid role name '%s': use 1 to 64 letters, digits, '_', '.', '@' or '-'",
                     role);
            free(role);
            goto fail;
        }
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(roles[i], role) == 0;
        if (seen) {
            free(role);
        } else {
            nr = realloc(roles, (n + 1) * sizeof(*roles));
            if (!nr) {
                free(role);
                cli_fail(ctx, "out of memory");
                goto fail;
            }
            roles = nr;
            roles[n++] = role;
        }
        p += strcspn(p, ",");
        if (!*p)
            break;
        p++;
    }
    *out_roles = roles;
    *out_n = n;
    return CLI_OK;
fail:
    cg_strv_free(roles, n);
    return CLI_FAIL;
}

static json_t *roles_json(char *const *roles, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < n; i++)
        arr = cli_json_append(arr, json_string(roles[i]));
    return arr;
}

static void print_roles(char *const *roles, size_t n)
{
    if (n == 0)
        fputs("-", stdout);
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? "," : "", roles[i]);
}

static int user_add(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"roles", required_argument, NULL, 'r'},
        {"password-stdin", no_argument, NULL, 'p'},
        {0, 0, 0, 0},
    };
    const char *usage = cli_user_commands[0].usage;
    const char *roles_arg = NULL, *name;
    char **roles = NULL, *hash = NULL;
    size_t n_roles = 0;
    bool want_pw = false;
    struct store_user u;
    struct store *s = NULL;
    struct cg_err err = {""};
    int64_t id = 0;
    int opt, rc = CLI_FAIL;

    memset(&u, 0, sizeof(u));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'r')
            roles_arg = optarg;
        else if (opt == 'p')
            want_pw = true;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1)
        return cli_usage(ctx, usage);
    name = argv[optind];
    if (!cg_valid_name(name) || name[0] == '-')
        return cli_fail(ctx,
                        "invalid user name '%s': use 1 to 64 letters, digits, '_', '.', "
                        "'@' or '-', not starting with '-'",
                        utf8_text_valid(name) ? name : "(not UTF-8 text)");
    if (parse_roles(ctx, roles_arg, &roles, &n_roles))
        return CLI_FAIL;
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    if (want_pw && hash_from_stdin(ctx, &hash))
        goto out;
    rc = store_user_add(s, name, roles, n_roles, hash, &id, &err);
    if (rc) {
        rc = cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    /* Print what was stored, not what was asked for. */
    if (store_user_get(s, name, &u, &err)) {
        rc = cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        rc = cli_print_json(json_pack("{s:I, s:s, s:o, s:b}", "id", (json_int_t)id, "name", u.name,
                                      "roles", roles_json(u.roles, u.n_roles), "has_password",
                                      u.password_hash != NULL));
        goto out;
    }
    printf("added user %s (id %lld, roles: ", u.name, (long long)id);
    print_roles(u.roles, u.n_roles);
    printf("%s)\n", u.password_hash ? ", with a password for HTTP Basic" : "");
    rc = CLI_OK;
out:
    free(hash);
    cg_strv_free(roles, n_roles);
    store_user_free(&u);
    store_close(s);
    return rc;
}

static json_t *user_json(const struct store_user *u)
{
    return json_pack("{s:I, s:s, s:b, s:b, s:b, s:o, s:s, s:s}", "id", (json_int_t)u->id, "name",
                     u->name, "active", u->is_active, "locked", u->is_locked, "has_password",
                     u->password_hash != NULL, "roles", roles_json(u->roles, u->n_roles),
                     "created_on", u->created_on, "updated_on", u->updated_on);
}

static int user_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_user *users = NULL;
    struct store *s = NULL;
    struct cg_err err = {""};
    size_t n = 0;
    int rc = CLI_FAIL;

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "user list");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (store_user_list(s, &users, &n, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++)
            arr = cli_json_append(arr, user_json(&users[i]));
        rc = cli_print_json(arr);
        goto out;
    } else {
        printf("%-4s %-24s %-8s %-8s %s\n", "ID", "NAME", "STATUS", "PASSWORD", "ROLES");
        for (size_t i = 0; i < n; i++) {
            printf("%-4lld %-24s %-8s %-8s ", (long long)users[i].id, users[i].name,
                   users[i].is_locked   ? "locked"
                   : users[i].is_active ? "active"
                                        : "inactive",
                   users[i].password_hash ? "yes" : "no");
            print_roles(users[i].roles, users[i].n_roles);
            putchar('\n');
        }
    }
    rc = CLI_OK;
out:
    store_user_list_free(users, n);
    store_close(s);
    return rc;
}

static int get_user(const struct cli_ctx *ctx, struct store *s, const char *name,
                    struct store_user *out)
{
    struct cg_err err = {""};
    int rc;

    memset(out, 0, sizeof(*out));
    rc = store_user_get(s, name, out, &err);
    if (rc == CG_ENOTFOUND)
        return cli_fail(ctx, "no user named '%s' (certgate user list shows them)", name);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    return CLI_OK;
}

static int user_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_user u;
    struct store_map *maps = NULL;
    struct store *s = NULL;
    struct cg_err err = {""};
    size_t n = 0;
    int rc = CLI_FAIL;

    memset(&u, 0, sizeof(u));
    if (argc != 2)
        return cli_usage(ctx, "user show NAME");
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (get_user(ctx, s, argv[1], &u))
        goto out;
    if (store_map_list(s, u.name, &maps, &n, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *o = user_json(&u), *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            if (maps[i].kind == STORE_MAP_RULE)
                arr = cli_json_append(arr, json_pack("{s:I, s:s, s:I, s:s, s:s}", "id",
                                                     (json_int_t)maps[i].id, "kind", "rule",
                                                     "ca_id", (json_int_t)maps[i].ca_id,
                                                     "match_field", maps[i].match_field,
                                                     "match_value", maps[i].match_value));
            else
                arr = cli_json_append(
                    arr, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)maps[i].id, "kind",
                                   store_map_kind_name(maps[i].kind), "subject", maps[i].subject,
                                   "fingerprint", maps[i].fingerprint));
        }
        rc = cli_print_json(cli_json_set(o, "mappings", arr));
        goto out;
    } else {
        printf("user %s (id %lld)\n", u.name, (long long)u.id);
        printf("  status:    %s\n", u.is_locked ? "locked" : u.is_active ? "active" : "inactive");
        printf("  roles:     ");
        print_roles(u.roles, u.n_roles);
        printf("\n  password:  %s\n", u.password_hash ? "set (HTTP Basic allowed)" : "none");
        printf("  created:   %s, updated %s\n", u.created_on, u.updated_on);
        if (n == 0)
            printf("  mappings:  none: map a certificate with certgate cert map %s FILE.pem\n",
                   u.name);
        for (size_t i = 0; i < n; i++) {
            if (maps[i].kind == STORE_MAP_RULE)
                printf("  mapping %lld: rule %s=%s, issued by CA %lld\n", (long long)maps[i].id,
                       maps[i].match_field, maps[i].match_value, (long long)maps[i].ca_id);
            else
                printf("  mapping %lld: %s %s (SHA-256 %s)\n", (long long)maps[i].id,
                       store_map_kind_name(maps[i].kind), maps[i].subject, maps[i].fingerprint);
        }
    }
    rc = CLI_OK;
out:
    store_user_free(&u);
    store_map_list_free(maps, n);
    store_close(s);
    return rc;
}

/* What user lock, unlock and delete do to one named user. */
enum user_change {
    USER_LOCK,
    USER_UNLOCK,
    USER_DELETE,
};

static int change_user(struct cli_ctx *ctx, int argc, char **argv, enum user_change change)
{
    static const char *const usage[] = {"user lock NAME", "user unlock NAME", "user delete NAME"};
    struct store *s = NULL;
    struct cg_err err = {""};
    bool locked = change == USER_LOCK;
    int rc;

    if (argc != 2)
        return cli_usage(ctx, usage[change]);
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    rc = change == USER_DELETE ? store_user_delete(s, argv[1], &err)
                               : store_user_set_locked(s, argv[1], locked, &err);
    store_close(s);
    if (rc == CG_ENOTFOUND)
        return cli_fail(ctx, "no user named '%s'", argv[1]);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    if (change == USER_DELETE) {
        if (ctx->json)
            return cli_print_json(json_pack("{s:s}", "deleted", argv[1]));
        printf("deleted user %s with its roles and certificate mappings\n", argv[1]);
        return CLI_OK;
    }
    if (ctx->json)
        return cli_print_json(json_pack("{s:s, s:b}", "name", argv[1], "locked", locked));
    printf("user %s is now %s\n", argv[1], locked ? "locked" : "unlocked");
    return CLI_OK;
}

static int user_lock(struct cli_ctx *ctx, int argc, char **argv)
{
    return change_user(ctx, argc, argv, USER_LOCK);
}

static int user_unlock(struct cli_ctx *ctx, int argc, char **argv)
{
    return change_user(ctx, argc, argv, USER_UNLOCK);
}

static int user_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    return change_user(ctx, argc, argv, USER_DELETE);
}

static int user_roles(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store_user u;
    struct store *s = NULL;
    struct cg_err err = {""};
    char **roles = NULL;
    size_t n = 0;
    int rc = CLI_FAIL;

    memset(&u, 0, sizeof(u));
    if (argc != 3)
        return cli_usage(ctx, "user roles NAME r1,r2");
    if (parse_roles(ctx, argv[2], &roles, &n))
        return CLI_FAIL;
    s = cli_open_store(ctx);
    if (!s)
        goto out;
    rc = store_user_set_roles(s, argv[1], roles, n, &err);
    if (rc == CG_OK)
        rc = store_user_get(s, argv[1], &u, &err);
    if (rc == CG_ENOTFOUND) {
        rc = cli_fail(ctx, "no user named '%s'", argv[1]);
        goto out;
    }
    if (rc) {
        rc = cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        rc = cli_print_json(
            json_pack("{s:s, s:o}", "name", u.name, "roles", roles_json(u.roles, u.n_roles)));
        goto out;
    }
    printf("user %s now has roles: ", u.name);
    print_roles(u.roles, u.n_roles);
    putchar('\n');
    rc = CLI_OK;
out:
    cg_strv_free(roles, n);
    store_user_free(&u);
    store_close(s);
    return rc;
}

static int user_password(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"password-stdin", no_argument, NULL, 'p'},
        {"clear", no_argument, NULL, 'c'},
        {0, 0, 0, 0},
    };
    const char *usage = "user password NAME --password-stdin | --clear";
    struct store *s = NULL;
    struct cg_err err = {""};
    char *hash = NULL;
    int opt, mode = 0, rc;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'p' || opt == 'c')
            mode = mode ? -1 : opt;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1 || mode <= 0)
        return cli_usage(ctx, usage);
    s = cli_open_store(ctx);
    if (!s)
        return CLI_FAIL;
    if (mode == 'p' && hash_from_stdin(ctx, &hash)) {
        store_close(s);
        return CLI_FAIL;
    }
    rc = store_user_set_password(s, argv[optind], hash, &err);
    store_close(s);
    free(hash);
    if (rc == CG_ENOTFOUND)
        return cli_fail(ctx, "no user named '%s'", argv[optind]);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    if (ctx->json)
        return cli_print_json(
            json_pack("{s:s, s:b}", "name", argv[optind], "has_password", mode == 'p'));
    printf("user %s: password %s\n", argv[optind], mode == 'p' ? "set" : "removed");
    return CLI_OK;
}
