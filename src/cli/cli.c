#include "config.h"
#include "cli/cli.h"
#include "base/settings.h"
#include "base/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/check.h"
#include "cli/cli_int.h"
#include "serve/daemon.h"

/* Largest certificate or CRL file the CLI reads: far above any real bundle. */
#define MAX_PEM_FILE (4 * 1024 * 1024)

static int run_init(struct cli_ctx *ctx, int argc, char **argv);
static int run_serve(struct cli_ctx *ctx, int argc, char **argv);
static int run_check(struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_command top_commands[] = {
    {.name = "init",
     .run = run_init,
     .usage = "init",
     .help = "create the database, or upgrade its schema"},
    {.name = "serve",
     .run = run_serve,
     .usage = "serve --cert F --key F [--listen ADDR:PORT] [--threads N] "
              "[--client-cert request|require] [--config FILE] (see serve --help)",
     .help = "run the HTTPS gateway"},
    {.name = "check",
     .run = run_check,
     .usage = "check CLIENT.pem [--chain F] [--at TIME]",
     .help = "explain what the server would decide for this certificate"},
    {0},
};

static const struct {
    const char *group;              /* first word */
    const struct cli_command *cmds; /* its sub-commands */
    const char *help;               /* one line */
} groups[] = {
    {"ca", cli_ca_commands, "the CA certificate chain table and its CRLs"},
    {"crl", cli_ca_commands, "certificate revocation lists"},
    {"user", cli_user_commands, "users, roles and passwords"},
    {"cert", cli_cert_commands, "user-to-certificate mappings and rules"},
    {"table", cli_table_commands, "data tables that scripts and the Table API write to"},
    {"resource", cli_resource_commands, "scripted REST resources (Lua)"},
    {"db", cli_db_commands, "the database itself: copy it to PostgreSQL"},
};

int cli_fail(const struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "certgate: %s: ", ctx->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_usage(const struct cli_ctx *ctx, const char *usage)
{
    fprintf(stderr, "certgate: %s: usage: certgate %s\n", ctx->cmd, usage);
    return CLI_USAGE;
}

int cli_getopt(const struct cli_ctx *ctx, int argc, char **argv, const struct option *opts)
{
    const struct option *o = NULL;
    const char *arg;
    int opt;

    /* getopt's own messages name argv[0] ("add: ...") and take a second
     * line with the usage: print one line naming the command instead. */
    opterr = 0;
    opt = getopt_long(argc, argv, ":", opts, NULL);
    if (opt != '?' && opt != ':')
        return opt;
    arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    for (const struct option *p = opts; p->name && optopt; p++) {
        if (p->val == optopt)
            o = p;
    }
    if (opt == ':' && o)
        fprintf(stderr, "certgate %s: option --%s needs a value (see certgate %s --help)\n",
                ctx->cmd, o->name, ctx->cmd);
    else if (o && strncmp(arg, "--", 2) == 0)
        fprintf(stderr, "certgate %s: option --%s takes no value (see certgate %s --help)\n",
                ctx->cmd, o->name, ctx->cmd);
    else if (strncmp(arg, "--", 2) == 0)
        fprintf(stderr, "certgate %s: unknown option %s (see certgate %s --help)\n", ctx->cmd, arg,
                ctx->cmd);
    else
        fprintf(stderr, "certgate %s: unknown option -%c (see certgate %s --help)\n", ctx->cmd,
                optopt ? optopt : '?', ctx->cmd);
    return '?';
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;

    fputs("warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

struct store *cli_open_store(const struct cli_ctx *ctx)
{
    struct store *s = NULL;
    struct cg_err err = {""};

    if (store_open(ctx->db_path, STORE_OPEN_EXISTING, &s, &err)) {
        cli_fail(ctx, "%s", err.msg[0] ? err.msg : "cannot open the database");
        return NULL;
    }
    return s;
}

/* The running command, for cli_print_json's message, and whether JSON
 * output failed (cli_main then exits 1 whatever the command returned). */
static const char *json_cmd = "certgate";
static bool json_failed;

int cli_print_json(json_t *v)
{
    if (!v) {
        fprintf(stderr,
                "certgate: %s: cannot write the JSON output: a stored text is not valid UTF-8 "
                "(written by an older certgate?) or memory ran out\n",
                json_cmd);
        json_failed = true;
        return CLI_FAIL;
    }
    if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        fprintf(stderr, "certgate: %s: cannot write the JSON output\n", json_cmd);
        json_failed = true;
        json_decref(v);
        return CLI_FAIL;
    }
    fputc('\n', stdout);
    json_decref(v);
    return CLI_OK;
}

json_t *cli_json_append(json_t *arr, json_t *item)
{
    if (!arr || !item) {
        json_decref(arr);
        json_decref(item);
        return NULL;
    }
    /* json_array_append_new takes item even when it fails. */
    if (json_array_append_new(arr, item) != 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

json_t *cli_json_set(json_t *obj, const char *key, json_t *val)
{
    if (!obj || !val) {
        json_decref(obj);
        json_decref(val);
        return NULL;
    }
    if (json_object_set_new(obj, key, val) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int cli_check_text(const struct cli_ctx *ctx, const char *what, const char *value, size_t max)
{
    if (!*value || strlen(value) > max)
        return cli_fail(ctx, "%s must be 1 to %zu bytes", what, max);
    if (!utf8_text_valid(value))
        return cli_fail(ctx,
                        "%s is not valid UTF-8 text (or holds control characters): certgate "
                        "stores names and match values as UTF-8; check your terminal's or "
                        "script's encoding",
                        what);
    return CLI_OK;
}

long cli_days_until(int64_t t)
{
    int64_t d = t - cg_now();

    /* Whole days, rounded away from now: a CA made to last 30 days has "30
     * days left" (not 29) until the last day starts, and "expired 3 hours
     * ago" is -1, not 0. */
    return (long)(d >= 0 ? (d + 86399) / 86400 : -((-d + 86399) / 86400));
}

const char *cli_time(int64_t t, char buf[static 21])
{
    cg_time_iso(t, buf);
    return buf;
}

bool cli_parse_id(const char *s, int64_t *out_id)
{
    char *end = NULL;
    long long v;

    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return false;
    v = strtoll(s, &end, 10);
    if (*end || v <= 0)
        return false;
    *out_id = (int64_t)v;
    return true;
}

int cli_read_bundle(const struct cli_ctx *ctx, const char *path, struct pki_cert_list *out_list)
{
    struct cg_err err = {""};
    struct pki_parse_error perr;
    char *data = NULL;
    size_t len = 0;
    int rc;

    rc = cg_read_file(path, MAX_PEM_FILE, &data, &len, &err);
    if (rc) {
        cli_fail(ctx, "%s", err.msg);
        return rc;
    }
    memset(&perr, 0, sizeof(perr));
    rc = pki_parse_bundle(data, len, out_list, &perr);
    free(data);
    if (rc) {
        if (perr.position && perr.subject[0])
            cli_fail(ctx, "%s: block %zu (%s): %s", path, perr.position, perr.subject, perr.reason);
        else if (perr.position)
            cli_fail(ctx, "%s: block %zu: %s", path, perr.position, perr.reason);
        else
            cli_fail(ctx, "%s: %s", path, perr.reason[0] ? perr.reason : cg_strerror(rc));
    }
    return rc;
}

static int run_init(struct cli_ctx *ctx, int argc, char **argv)
{
    struct store *s = NULL;
    struct cg_err err = {""};
    char *shown;
    int version, rc;

    (void)argv;
    if (argc != 1)
        return cli_usage(ctx, "init");
    if (store_open(ctx->db_path, STORE_OPEN_INIT, &s, &err))
        return cli_fail(ctx, "%s", err.msg[0] ? err.msg : "cannot create the database");
    version = store_schema_version(s);
    store_close(s);
    shown = store_display_name(ctx->db_path); /* a URI without its password */
    if (!shown)
        return cli_fail(ctx, "out of memory");
    if (ctx->json) {
        rc = cli_print_json(json_pack("{s:s, s:i}", "database", shown, "schema_version", version));
    } else {
        printf("database %s is ready (schema version %d)\n", shown, version);
        rc = CLI_OK;
    }
    free(shown);
    return rc;
}

static int run_serve(struct cli_ctx *ctx, int argc, char **argv)
{
    /* serve may read the database from its config file: only --db outranks it. */
    return daemon_main(ctx->db_flag ? ctx->db_path : NULL, argc, argv);
}

static int run_check(struct cli_ctx *ctx, int argc, char **argv)
{
    return check_main(ctx->db_path, ctx->json, argc, argv);
}

static void print_help(FILE *f)
{
    fprintf(f, "usage: certgate [--db PATH] [--json] COMMAND [ARGS]\n\n"
               "certgate: an HTTPS gateway that authenticates clients by certificate.\n"
               "The database is --db PATH, else $CERTGATE_DB, else ./certgate.db; a\n"
               "PostgreSQL URI (postgresql://user@host/db) names a PostgreSQL one.\n\n"
               "commands:\n");
    for (const struct cli_command *c = top_commands; c->name; c++)
        fprintf(f, "  certgate %s\n      %s\n", c->usage, c->help);
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        for (const struct cli_command *c = groups[g].cmds; c->name; c++) {
            if (strcmp(c->group, groups[g].group) == 0)
                fprintf(f, "  certgate %s\n      %s\n", c->usage, c->help);
        }
    }
    fprintf(f, "\nEvery command takes --help, --db PATH and --json.\n");
}

static void print_command_help(const struct cli_command *c)
{
    printf("usage: certgate %s\n%s\n\ncommon options: --db PATH (default $CERTGATE_DB or "
           "./certgate.db), --json, --help\n",
           c->usage, c->help);
}

/* Takes --db, --json and --help out of argv wherever they stand (before a
 * "--"), so every command accepts them in any position. */
static int strip_globals(struct cli_ctx *ctx, int *argc, char **argv, bool *out_help)
{
    int i, o = 0;
    bool rest = false;

    for (i = 0; i < *argc; i++) {
        const char *a = argv[i];

        if (!rest && strcmp(a, "--") == 0) {
            rest = true;
            argv[o++] = argv[i];
        } else if (!rest && strcmp(a, "--db") == 0) {
            if (i + 1 >= *argc || !argv[i + 1][0]) {
                fprintf(stderr, "certgate: --db needs a file name\n");
                return CLI_USAGE;
            }
            ctx->db_path = argv[++i];
        } else if (!rest && strncmp(a, "--db=", 5) == 0) {
            if (!a[5]) {
                fprintf(stderr, "certgate: --db needs a file name\n");
                return CLI_USAGE;
            }
            ctx->db_path = a + 5;
        } else if (!rest && strcmp(a, "--json") == 0) {
            ctx->json = true;
        } else if (!rest && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            *out_help = true;
        } else {
            argv[o++] = argv[i];
        }
    }
    argv[o] = NULL;
    *argc = o;
    return CLI_OK;
}

static const struct cli_command *find_in(const struct cli_command *cmds, const char *group,
                                         const char *name)
{
    for (const struct cli_command *c = cmds; c->name; c++) {
        if (strcmp(c->name, name) == 0 &&
            ((!c->group && !group) || (c->group && group && strcmp(c->group, group) == 0)))
            return c;
    }
    return NULL;
}

int cli_main(int argc, char **argv)
{
    struct cli_ctx ctx = {.db_path = NULL, .json = false, .cmd = "certgate"};
    const struct cli_command *cmd = NULL;
    char cmdname[64];
    bool help = false;
    int rc, first;

    /* serve has its own --help listing every flag; leave its arguments alone
     * but for the database path. */
    rc = strip_globals(&ctx, &argc, argv, &help);
    if (rc)
        return rc;
    ctx.db_flag = ctx.db_path != NULL;
    ctx.db_path = settings_database(ctx.db_path, NULL);
    if (argc < 2) {
        print_help(help ? stdout : stderr);
        return help ? CLI_OK : CLI_USAGE;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("certgate %s\n", PACKAGE_VERSION);
        return CLI_OK;
    }
    if (strcmp(argv[1], "help") == 0) {
        print_help(stdout);
        return CLI_OK;
    }
    cmd = find_in(top_commands, NULL, argv[1]);
    first = 1;
    if (!cmd) {
        for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
            if (strcmp(argv[1], groups[g].group) != 0)
                continue;
            if (argc < 3) {
                FILE *f = help ? stdout : stderr;

                fprintf(f, "usage: certgate %s COMMAND: %s\n", groups[g].group, groups[g].help);
                for (const struct cli_command *c = groups[g].cmds; c->name; c++) {
                    if (strcmp(c->group, groups[g].group) == 0)
                        fprintf(f, "  certgate %s\n      %s\n", c->usage, c->help);
                }
                return help ? CLI_OK : CLI_USAGE;
            }
            cmd = find_in(groups[g].cmds, groups[g].group, argv[2]);
            first = 2;
            if (!cmd) {
                fprintf(stderr,
                        "certgate: unknown command '%s %s' (certgate %s --help lists "
                        "them)\n",
                        argv[1], argv[2], argv[1]);
                return CLI_USAGE;
            }
            break;
        }
    }
    if (!cmd) {
        fprintf(stderr, "certgate: unknown command '%s' (certgate --help lists them)\n", argv[1]);
        return CLI_USAGE;
    }
    snprintf(cmdname, sizeof(cmdname), "%s%s%s", cmd->group ? cmd->group : "",
             cmd->group ? " " : "", cmd->name);
    ctx.cmd = cmdname;
    /* No command lets getopt print its two-line messages naming argv[0]. */
    opterr = 0;
    if (help) {
        if (cmd->run == run_serve || cmd->run == run_check) {
            /* They print their own full flag list. strip_globals removed
             * --help, so argv has room for it again before the NULL. */
            static char help_flag[] = "--help";
            argv[argc] = help_flag;
            argc++;
            argv[argc] = NULL;
        } else {
            print_command_help(cmd);
            return CLI_OK;
        }
    }
    json_cmd = cmdname;
    rc = cmd->run(&ctx, argc - first, argv + first);
    if (rc == CLI_OK && json_failed)
        rc = CLI_FAIL;
    return rc;
}
