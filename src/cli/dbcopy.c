/*
 * dbcopy: `certgate db copy --to URI`: the database named by --db (SQLite)
 * copied into an empty PostgreSQL database (db/copy.h does the work), and
 * what was copied said. Does not change the source.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_int.h"
#include "db/db.h"

static int db_copy_cmd(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_db_commands[] = {
    {.group = "db",
     .name = "copy",
     .run = db_copy_cmd,
     .usage = "db copy --to postgresql://USER@HOST/DB",
     .help = "copy this SQLite database (trust data, resources, data tables with their rows, "
             "idempotency keys) into an empty PostgreSQL one, in one transaction"},
    {0},
};

static int db_copy_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},
        {0, 0, 0, 0},
    };
    struct db_copy_counts n;
    struct cg_err err = {""};
    const char *to = NULL;
    char *shown;
    int opt, rc;

    while ((opt = cli_getopt(ctx, argc, argv, opts)) != -1) {
        if (opt == 't')
            to = optarg;
        else
            return CLI_USAGE; /* cli_getopt said why */
    }
    if (!to || optind != argc)
        return cli_usage(ctx, cli_db_commands[0].usage);
    if (db_copy(ctx->db_path, to, &n, &err))
        return cli_fail(ctx, "%s", err.msg);
    shown = store_display_name(to); /* no password on the screen */
    if (!shown)
        return cli_fail(ctx, "out of memory");
    if (ctx->json) {
        rc = cli_print_json(json_pack(
            "{s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "from",
            ctx->db_path, "to", shown, "copied", "cas", (json_int_t)n.cas, "deleted_ca_keys",
            (json_int_t)n.ca_deleted, "crls", (json_int_t)n.crls, "users", (json_int_t)n.users,
            "user_roles", (json_int_t)n.roles, "mappings", (json_int_t)n.mappings, "resources",
            (json_int_t)n.resources, "idempotency_keys", (json_int_t)n.idempotency, "tables",
            (json_int_t)n.tables, "rows", (json_int_t)n.rows));
    } else {
        printf("copied %s into %s, in one transaction:\n"
               "  %lld CA records, %lld deleted CA keys, %lld CRLs\n"
               "  %lld users (%lld roles), %lld certificate mappings and rules\n"
               "  %lld resources, %lld data tables with %lld rows, %lld idempotency keys\n",
               ctx->db_path, shown, (long long)n.cas, (long long)n.ca_deleted, (long long)n.crls,
               (long long)n.users, (long long)n.roles, (long long)n.mappings,
               (long long)n.resources, (long long)n.tables, (long long)n.rows,
               (long long)n.idempotency);
        rc = CLI_OK;
    }
    free(shown);
    return rc;
}
