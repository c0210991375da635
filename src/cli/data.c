/* `certgate table ...` and `certgate resource ...`: data tables and
 * scripted resources. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"
#include "db/dtable.h"
#include "http/routes.h"
#include "script/script.h"

/* Largest Lua script accepted. */
#define MAX_SCRIPT (256 * 1024)

static int table_create(struct cli_ctx *ctx, int argc, char **argv);
static int table_list(struct cli_ctx *ctx, int argc, char **argv);
static int table_show(struct cli_ctx *ctx, int argc, char **argv);
static int table_drop(struct cli_ctx *ctx, int argc, char **argv);
static int resource_add(struct cli_ctx *ctx, int argc, char **argv);
static int resource_update(struct cli_ctx *ctx, int argc, char **argv);
static int resource_list(struct cli_ctx *ctx, int argc, char **argv);
static int resource_show(struct cli_ctx *ctx, int argc, char **argv);
static int resource_delete(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_table_commands[] = {
    {.group = "table",
     .name = "create",
     .run = table_create,
     .usage = "table create NAME COLUMN[:text|integer|real|json]... [--roles r1,r2]",
     .help = "create a data table (--roles exposes it through the Table API)"},
    {.group = "table",
     .name = "list",
     .run = table_list,
     .usage = "table list",
     .help = "list data tables"},
    {.group = "table",
     .name = "show",
     .run = table_show,
     .usage = "table show NAME",
     .help = "show a data table's columns, roles and row count"},
    {.group = "table",
     .name = "drop",
     .run = table_drop,
     .usage = "table drop NAME --force",
     .help = "delete a data table and all its rows"},
    {0},
};

const struct cli_command cli_resource_commands[] = {
    {.group = "resource",
     .name = "add",
     .run = resource_add,
     .usage = "resource add --api NAMESPACE/API --method METHOD --path /PATH --script FILE.lua "
              "[--roles r1,r2] [--auth any|cert|basic|none] [--version v1]",
     .help = "add a scripted REST resource"},
    {.group = "resource",
     .name = "update",
     .run = resource_update,
     .usage = "resource update ID [--script FILE.lua] [--roles r1,r2] [--auth MODE]",
     .help = "change a resource's script, roles or authentication"},
    {.group = "resource",
     .name = "list",
     .run = resource_list,
     .usage = "resource list",
     .help = "list scripted resources"},
    {.group = "resource",
     .name = "show",
     .run = resource_show,
     .usage = "resource show ID",
     .help = "show a resource, the URLs it answers at, and its script"},
    {.group = "resource",
     .name = "delete",
     .run = resource_delete,
     .usage = "resource delete ID",
     .help = "delete a resource"},
    {0},
};

/* The store checks and upgrades the schema; dtable then does the work. */
static struct dtable_db *open_data(const struct cli_ctx *ctx)
{
    struct store *s = cli_open_store(ctx);
    struct dtable_db *db = NULL;
    struct cg_err err = {""};

    if (!s)
        return NULL;
    store_close(s);
    if (dtable_open(ctx->db_path, &db, &err)) {
        cli_fail(ctx, "%s", err.msg);
        return NULL;
    }
    return db;
}

static int parse_roles(const struct cli_ctx *ctx, const char *list, char ***out, size_t *n)
{
    if (cg_split_list(list, out, n))
        return cli_fail(ctx, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        if (!cg_valid_name((*out)[i])) {
            cli_fail(ctx, "invalid role name '%s'", (*out)[i]);
            cg_strv_free(*out, *n);
            *out = NULL;
            *n = 0;
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++)
        a = cli_json_append(a, json_string(v[i]));
    return a;
}

/* ---- tables ---- */

static int table_create(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"roles", required_argument, NULL, 'r'},
        {0, 0, 0, 0},
    };
    const char *usage = cli_table_commands[0].usage, *roles_arg = NULL;
    struct dtable_column *cols = NULL;
    struct dtable_db *db = NULL;
    struct cg_err err = {""};
    char **roles = NULL;
    size_t n_roles = 0, n = 0;
    int opt, rc = CLI_FAIL;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'r')
            roles_arg = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (argc - optind < 2)
        return cli_usage(ctx, usage);
    cols = calloc((size_t)(argc - optind), sizeof(*cols));
    if (!cols)
        return cli_fail(ctx, "out of memory");
    for (int i = optind + 1; i < argc; i++, n++) {
        const char *colon = strchr(argv[i], ':');
        size_t len = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
        int type = colon ? dtable_type_parse(colon + 1) : DT_TEXT;

        if (len >= sizeof(cols[n].name)) {
            cli_fail(ctx, "column name '%.*s...' is too long", 20, argv[i]);
            goto out;
        }
        memcpy(cols[n].name, argv[i], len);
        cols[n].name[len] = '\0';
        if (type < 0) {
            cli_fail(ctx, "column '%s': unknown type '%s' (use text, integer, real or json)",
                     cols[n].name, colon + 1);
            goto out;
        }
        cols[n].type = (enum dtable_type)type;
    }
    if (parse_roles(ctx, roles_arg, &roles, &n_roles))
        goto out;
    db = open_data(ctx);
    if (!db)
        goto out;
    if (dtable_table_create(db, argv[optind], cols, n, roles, n_roles, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *c = json_array();

        for (size_t i = 0; i < n; i++)
            c = cli_json_append(c, json_pack("{s:s, s:s}", "name", cols[i].name, "type",
                                             dtable_type_name(cols[i].type)));
        cli_print_json(json_pack("{s:s, s:o, s:o}", "name", argv[optind], "columns", c, "roles",
                                 strv_json(roles, n_roles)));
    } else {
        printf("created table %s with sys_id, sys_created_on, sys_created_by", argv[optind]);
        for (size_t i = 0; i < n; i++)
            printf(", %s (%s)", cols[i].name, dtable_type_name(cols[i].type));
        if (n_roles)
            printf("; Table API /api/now/table/%s open to roles %s", argv[optind], roles_arg);
        else
            printf("; not exposed through the Table API (no --roles)");
        putchar('\n');
    }
    rc = CLI_OK;
out:
    free(cols);
    cg_strv_free(roles, n_roles);
    dtable_close(db);
    return rc;
}

static json_t *table_json(const struct dtable_table *t)
{
    json_t *c = json_array();

    for (size_t i = 0; i < t->n_cols; i++)
        c = cli_json_append(c, json_pack("{s:s, s:s}", "name", t->cols[i].name, "type",
                                         dtable_type_name(t->cols[i].type)));
    return json_pack("{s:s, s:o, s:o, s:s}", "name", t->name, "columns", c, "roles",
                     strv_json(t->roles, t->n_roles), "created_on", t->created_on);
}

static int table_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct dtable_table *ts = NULL;
    struct dtable_db *db;
    struct cg_err err = {""};
    size_t n = 0;
    int rc = CLI_FAIL;

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "table list");
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    if (dtable_table_list(db, &ts, &n, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *a = json_array();

        for (size_t i = 0; i < n; i++)
            a = cli_json_append(a, table_json(&ts[i]));
        cli_print_json(a);
    } else {
        printf("%-24s %-8s %s\n", "TABLE", "COLUMNS", "TABLE API ROLES");
        for (size_t i = 0; i < n; i++) {
            printf("%-24s %-8zu ", ts[i].name, ts[i].n_cols);
            for (size_t k = 0; k < ts[i].n_roles; k++)
                printf("%s%s", k ? "," : "", ts[i].roles[k]);
            printf("%s\n", ts[i].n_roles ? "" : "- (not exposed)");
        }
    }
    rc = CLI_OK;
out:
    dtable_table_list_free(ts, n);
    dtable_close(db);
    return rc;
}

static int table_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct dtable_table t;
    struct dtable_db *db;
    struct cg_err err = {""};
    int64_t rows = 0;
    int rc = CLI_FAIL;

    memset(&t, 0, sizeof(t));
    if (argc != 2)
        return cli_usage(ctx, "table show NAME");
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    if (dtable_table_get(db, argv[1], &t, &err) || dtable_table_count(db, t.name, &rows, &err)) {
        cli_fail(ctx, "%s", err.msg[0] ? err.msg : "no such table");
        goto out;
    }
    if (ctx->json) {
        json_t *o = table_json(&t);

        json_object_set_new(o, "rows", json_integer(rows));
        cli_print_json(o);
    } else {
        printf("table %s (%lld rows, created %s)\n", t.name, (long long)rows, t.created_on);
        printf("  sys_id          text (UUID, primary key)\n");
        printf("  sys_created_on  text (UTC ISO 8601)\n");
        printf("  sys_created_by  text (user name)\n");
        for (size_t i = 0; i < t.n_cols; i++)
            printf("  %-15s %s\n", t.cols[i].name, dtable_type_name(t.cols[i].type));
        printf("  Table API:      ");
        if (t.n_roles) {
            printf("/api/now/table/%s for roles ", t.name);
            for (size_t k = 0; k < t.n_roles; k++)
                printf("%s%s", k ? "," : "", t.roles[k]);
            putchar('\n');
        } else {
            printf("not exposed (created without --roles)\n");
        }
    }
    rc = CLI_OK;
out:
    dtable_table_free(&t);
    dtable_close(db);
    return rc;
}

static int table_drop(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    struct dtable_db *db;
    struct cg_err err = {""};
    bool force = false;
    int opt, rc;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 'f')
            force = true;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1)
        return cli_usage(ctx, "table drop NAME --force");
    if (!force)
        return cli_fail(ctx, "dropping table '%s' deletes all its rows: add --force to confirm",
                        argv[optind]);
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    rc = dtable_table_drop(db, argv[optind], &err);
    dtable_close(db);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    if (ctx->json)
        cli_print_json(json_pack("{s:s}", "dropped", argv[optind]));
    else
        printf("dropped table %s\n", argv[optind]);
    return CLI_OK;
}

/* ---- resources ---- */

static bool valid_ident(const char *s)
{
    if (!s || !(*s >= 'a' && *s <= 'z') || strlen(s) > 63)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

static bool valid_version(const char *v)
{
    return v[0] == 'v' && v[1] && strlen(v) < 8 && strspn(v + 1, "0123456789") == strlen(v + 1);
}

/* Reads and compiles a script; refuses a syntax error with FILE:LINE. */
static int read_script(const struct cli_ctx *ctx, const char *path, char **out_src, char **out_name)
{
    struct cg_err err = {""};
    char *data = NULL, msg[512];
    const char *base = strrchr(path, '/');
    size_t len = 0;

    if (cg_read_file(path, MAX_SCRIPT, &data, &len, &err))
        return cli_fail(ctx, "%s", err.msg);
    if (memchr(data, '\0', len)) {
        free(data);
        return cli_fail(ctx, "%s: not a text file (Lua bytecode is refused)", path);
    }
    if (script_check_syntax(data, len, base ? base + 1 : path, msg, sizeof(msg))) {
        free(data);
        return cli_fail(ctx, "%s: syntax error: %s", path, msg);
    }
    *out_src = data;
    *out_name = strdup(base ? base + 1 : path);
    return CLI_OK;
}

static void print_urls(const struct dtable_resource *r)
{
    if (r->version[0])
        printf("  answers at:   %s /api/%s/%s/%s%s (and /api/%s/%s%s when %s is the default "
               "version)\n",
               r->method, r->ns, r->api, r->version, r->path, r->ns, r->api, r->path, r->version);
    else
        printf("  answers at:   %s /api/%s/%s%s\n", r->method, r->ns, r->api, r->path);
}

/* Refuses a resource that would answer the same URLs as one that exists:
 * the same API, version and method, and a path of the same shape. */
static int find_conflict(const struct cli_ctx *ctx, struct dtable_db *db,
                         const struct dtable_resource *r)
{
    struct dtable_resource *all = NULL;
    struct cg_err err = {""};
    size_t n = 0;
    int rc = CLI_OK;

    if (dtable_resource_list(db, &all, &n, &err))
        return cli_fail(ctx, "%s", err.msg);
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        const struct dtable_resource *o = &all[i];

        if (strcmp(o->ns, r->ns) == 0 && strcmp(o->api, r->api) == 0 &&
            strcmp(o->version, r->version) == 0 && strcmp(o->method, r->method) == 0 &&
            routes_same_shape(o->path, r->path))
            rc = cli_fail(ctx,
                          "resource %lld (%s %s) answers the same URLs as --path %s: change or "
                          "delete it first (certgate resource update %lld / resource delete "
                          "%lld)",
                          (long long)o->id, o->method, o->path, r->path, (long long)o->id,
                          (long long)o->id);
    }
    dtable_resource_list_free(all, n);
    return rc;
}

static int resource_add(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"api", required_argument, NULL, 'a'},     {"method", required_argument, NULL, 'm'},
        {"path", required_argument, NULL, 'p'},    {"script", required_argument, NULL, 's'},
        {"roles", required_argument, NULL, 'r'},   {"auth", required_argument, NULL, 'u'},
        {"version", required_argument, NULL, 'v'}, {0, 0, 0, 0},
    };
    const char *usage = cli_resource_commands[0].usage;
    const char *api = NULL, *method = NULL, *path = NULL, *script = NULL, *roles_arg = NULL;
    const char *auth = "any", *version = "";
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    struct dtable_resource r;
    struct dtable_db *db = NULL;
    struct cg_err err = {""};
    char ns[64] = "", apiname[64] = "";
    bool method_ok = false;
    int opt, mode, rc = CLI_FAIL;

    memset(&r, 0, sizeof(r));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        switch (opt) {
        case 'a': api = optarg; break;
        case 'm': method = optarg; break;
        case 'p': path = optarg; break;
        case 's': script = optarg; break;
        case 'r': roles_arg = optarg; break;
        case 'u': auth = optarg; break;
        case 'v': version = optarg; break;
        default: return CLI_USAGE; /* cli_getopt said why */
        }
    }
    if (optind != argc || !api || !method || !path || !script)
        return cli_usage(ctx, usage);
    {
        const char *slash = strchr(api, '/');

        if (!slash || (size_t)(slash - api) >= sizeof(ns) || strlen(slash + 1) >= sizeof(apiname))
            return cli_fail(ctx, "--api must be NAMESPACE/API, e.g. acme/orders");
        memcpy(ns, api, (size_t)(slash - api));
        snprintf(apiname, sizeof(apiname), "%s", slash + 1);
    }
    if (!valid_ident(ns) || !valid_ident(apiname))
        return cli_fail(ctx,
                        "--api '%s': namespace and API take a-z, 0-9 and _, starting with a "
                        "letter",
                        api);
    if (strcmp(ns, "now") == 0 || strcmp(ns, "certgate") == 0)
        return cli_fail(ctx, "--api: the namespace '%s' is reserved", ns);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        method_ok = method_ok || strcmp(methods[i], method) == 0;
    if (!method_ok)
        return cli_fail(ctx, "--method '%s': use GET, POST, PUT, PATCH or DELETE", method);
    if (!routes_valid_template(path))
        return cli_fail(ctx,
                        "--path '%s': start with /, use segments of letters, digits and "
                        "._~- or one {param} per segment",
                        path);
    if (version[0] && !valid_version(version))
        return cli_fail(ctx, "--version '%s': use v1, v2, ...", version);
    if (!version[0] && routes_looks_versioned(path))
        return cli_fail(ctx,
                        "--path '%s' starts with a version: use --version and a path without it "
                        "(e.g. --version v1 --path /orders), so the API's default version also "
                        "answers",
                        path);
    mode = dtable_auth_parse(auth);
    if (mode < 0)
        return cli_fail(ctx, "--auth '%s': use any, cert, basic or none", auth);
    if (mode == DT_AUTH_NONE && roles_arg && *roles_arg)
        return cli_fail(ctx, "--auth none makes the resource public, so --roles could never be "
                             "checked: leave one of them out");
    if (parse_roles(ctx, roles_arg, &r.roles, &r.n_roles))
        return CLI_FAIL;
    if (read_script(ctx, script, &r.script, &r.script_name))
        goto out;
    r.ns = strdup(ns);
    r.api = strdup(apiname);
    r.version = strdup(version);
    r.method = strdup(method);
    r.path = strdup(path);
    r.auth = (enum dtable_auth)mode;
    db = open_data(ctx);
    if (!db)
        goto out;
    if (find_conflict(ctx, db, &r))
        goto out;
    if (dtable_resource_add(db, &r, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        cli_print_json(json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id", (json_int_t)r.id,
                                 "namespace", r.ns, "api", r.api, "version", r.version, "method",
                                 r.method, "path", r.path, "auth", auth, "roles",
                                 strv_json(r.roles, r.n_roles)));
    } else {
        printf("added resource %lld from %s\n", (long long)r.id, r.script_name);
        print_urls(&r);
        if (mode == DT_AUTH_NONE)
            printf("  warning:      --auth none: anyone who reaches the server may call it\n");
    }
    rc = CLI_OK;
out:
    dtable_resource_free(&r);
    dtable_close(db);
    return rc;
}

static int resource_update(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"script", required_argument, NULL, 's'},
        {"roles", required_argument, NULL, 'r'},
        {"auth", required_argument, NULL, 'u'},
        {0, 0, 0, 0},
    };
    const char *usage = cli_resource_commands[1].usage;
    const char *script = NULL, *roles_arg = NULL, *auth = NULL;
    struct dtable_resource r;
    struct dtable_db *db = NULL;
    struct cg_err err = {""};
    int64_t id;
    int opt, rc = CLI_FAIL;

    memset(&r, 0, sizeof(r));
    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 's')
            script = optarg;
        else if (opt == 'r')
            roles_arg = optarg;
        else if (opt == 'u')
            auth = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (optind != argc - 1 || (!script && !roles_arg && !auth))
        return cli_usage(ctx, usage);
    if (!cli_parse_id(argv[optind], &id))
        return cli_fail(ctx, "'%s' is not a resource id (certgate resource list)", argv[optind]);
    if (auth && dtable_auth_parse(auth) < 0)
        return cli_fail(ctx, "--auth '%s': use any, cert, basic or none", auth);
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    if (dtable_resource_get(db, id, &r, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (script) {
        free(r.script);
        free(r.script_name);
        r.script = r.script_name = NULL;
        if (read_script(ctx, script, &r.script, &r.script_name))
            goto out;
    }
    if (roles_arg) {
        cg_strv_free(r.roles, r.n_roles);
        r.roles = NULL;
        r.n_roles = 0;
        if (parse_roles(ctx, roles_arg, &r.roles, &r.n_roles))
            goto out;
    }
    if (auth)
        r.auth = (enum dtable_auth)dtable_auth_parse(auth);
    if (r.auth == DT_AUTH_NONE && r.n_roles > 0) {
        cli_fail(ctx, "--auth none makes the resource public, so its roles could never be "
                      "checked: give it --roles '' or another --auth");
        goto out;
    }
    if (dtable_resource_update(db, &r, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json)
        cli_print_json(json_pack("{s:I, s:s}", "updated", (json_int_t)id, "script", r.script_name));
    else
        printf("updated resource %lld (served within a second, no restart)\n", (long long)id);
    rc = CLI_OK;
out:
    dtable_resource_free(&r);
    dtable_close(db);
    return rc;
}

static json_t *resource_json(const struct dtable_resource *r, bool with_script)
{
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:b, s:s}", "id", (json_int_t)r->id,
        "namespace", r->ns, "api", r->api, "version", r->version, "method", r->method, "path",
        r->path, "script_name", r->script_name, "auth", dtable_auth_name(r->auth), "roles",
        strv_json(r->roles, r->n_roles), "active", r->is_active, "updated_on", r->updated_on);

    if (o && with_script)
        json_object_set_new(o, "script", json_string(r->script));
    return o;
}

static int resource_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct dtable_resource *rs = NULL;
    struct dtable_db *db;
    struct cg_err err = {""};
    size_t n = 0;
    int rc = CLI_FAIL;

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "resource list");
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    if (dtable_resource_list(db, &rs, &n, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        json_t *a = json_array();

        for (size_t i = 0; i < n; i++)
            a = cli_json_append(a, resource_json(&rs[i], false));
        cli_print_json(a);
    } else {
        printf("%-4s %-7s %-6s %-40s %-6s %s\n", "ID", "METHOD", "AUTH", "URL", "ROLES", "SCRIPT");
        for (size_t i = 0; i < n; i++) {
            char url[300];

            snprintf(url, sizeof(url), "/api/%s/%s%s%s%s", rs[i].ns, rs[i].api,
                     rs[i].version[0] ? "/" : "", rs[i].version, rs[i].path);
            printf("%-4lld %-7s %-6s %-40s ", (long long)rs[i].id, rs[i].method,
                   dtable_auth_name(rs[i].auth), url);
            for (size_t k = 0; k < rs[i].n_roles; k++)
                printf("%s%s", k ? "," : "", rs[i].roles[k]);
            printf("%s %s\n", rs[i].n_roles ? "" : "-", rs[i].script_name);
        }
    }
    rc = CLI_OK;
out:
    dtable_resource_list_free(rs, n);
    dtable_close(db);
    return rc;
}

static int resource_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct dtable_resource r;
    struct dtable_db *db;
    struct cg_err err = {""};
    int64_t id;
    int rc = CLI_FAIL;

    memset(&r, 0, sizeof(r));
    if (argc != 2)
        return cli_usage(ctx, "resource show ID");
    if (!cli_parse_id(argv[1], &id))
        return cli_fail(ctx, "'%s' is not a resource id (certgate resource list)", argv[1]);
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    if (dtable_resource_get(db, id, &r, &err)) {
        cli_fail(ctx, "%s", err.msg);
        goto out;
    }
    if (ctx->json) {
        cli_print_json(resource_json(&r, true));
    } else {
        printf("resource %lld: %s %s/%s%s%s %s\n", (long long)r.id, r.method, r.ns, r.api,
               r.version[0] ? " " : "", r.version, r.path);
        print_urls(&r);
        printf("  auth:         %s\n  roles:        ", dtable_auth_name(r.auth));
        for (size_t k = 0; k < r.n_roles; k++)
            printf("%s%s", k ? "," : "", r.roles[k]);
        printf("%s\n  script:       %s (updated %s)\n\n%s\n", r.n_roles ? "" : "any user",
               r.script_name, r.updated_on, r.script);
    }
    rc = CLI_OK;
out:
    dtable_resource_free(&r);
    dtable_close(db);
    return rc;
}

static int resource_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    struct dtable_db *db;
    struct cg_err err = {""};
    int64_t id;
    int rc;

    if (argc != 2)
        return cli_usage(ctx, "resource delete ID");
    if (!cli_parse_id(argv[1], &id))
        return cli_fail(ctx, "'%s' is not a resource id (certgate resource list)", argv[1]);
    db = open_data(ctx);
    if (!db)
        return CLI_FAIL;
    rc = dtable_resource_delete(db, id, &err);
    dtable_close(db);
    if (rc)
        return cli_fail(ctx, "%s", err.msg);
    if (ctx->json)
        cli_print_json(json_pack("{s:I}", "deleted", (json_int_t)id));
    else
        printf("deleted resource %lld\n", (long long)id);
    return CLI_OK;
}
