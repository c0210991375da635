/*
 * cli internals: what the command files (ca, crl, user, cert) share: the
 * global options, output helpers and the command table entry type. Not used
 * outside src/cli/.
 */
#ifndef CG_CLI_INT_H
#define CG_CLI_INT_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pki/pki.h"
#include "db/store.h"
#include "base/util.h"

/** Exit statuses. */
enum cli_exit {
    CLI_OK = 0,    /* success */
    CLI_FAIL = 1,  /* refused or failed; a one-line reason is on stderr */
    CLI_USAGE = 2, /* bad command line */
};

/** Options every command takes. */
struct cli_ctx {
    const char *db_path; /* --db, $CERTGATE_DB or ./certgate.db */
    bool db_flag;        /* db_path came from --db */
    bool json;           /* --json: machine-readable output */
    const char *cmd;     /* "ca add", "user list", ... for messages */
};

/** One sub-command: "ca add" is group "ca", name "add". */
struct cli_command {
    const char *group; /* first word, or NULL for a top-level command */
    const char *name;  /* second word (or the command for top-level ones) */
    int (*run)(struct cli_ctx *ctx, int argc, char **argv); /* argv[0] is the name */
    const char *usage;                                      /* one usage line after "certgate " */
    const char *help;                                       /* what it does, one line */
};

extern const struct cli_command cli_ca_commands[];
extern const struct cli_command cli_user_commands[];
extern const struct cli_command cli_cert_commands[];
extern const struct cli_command cli_table_commands[];
extern const struct cli_command cli_resource_commands[];
extern const struct cli_command cli_db_commands[];

/**
 * Print "certgate: CMD: message" on stderr.
 * @return CLI_FAIL, so callers can `return cli_fail(...)`
 */
int cli_fail(const struct cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Print "certgate: CMD: usage: certgate USAGE" on stderr. @return CLI_USAGE */
int cli_usage(const struct cli_ctx *ctx, const char *usage);

/**
 * getopt_long for a command's long options, with one-line errors: on a
 * missing value, an unknown option or a value given to a flag it prints
 * "certgate CMD: option --name needs a value (see certgate CMD --help)".
 * @param opts the command's options (val is what is returned)
 * @return the option's val, -1 after the last option, '?' after an error
 *         was printed (the caller returns CLI_USAGE)
 */
int cli_getopt(const struct cli_ctx *ctx, int argc, char **argv, const struct option *opts);

/** Print "warning: ..." on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * Open the database for a command (existing, upgraded if older).
 * @return the store or NULL after printing the reason
 */
struct store *cli_open_store(const struct cli_ctx *ctx);

/**
 * Print a JSON value on stdout (pretty, in the order built) and free it.
 * NULL (a builder failed: a text that is not UTF-8, or no memory) prints a
 * one-line reason on stderr instead, and makes the command exit 1 even if
 * its caller ignores the result.
 * @return CLI_OK, or CLI_FAIL for NULL
 */
int cli_print_json(json_t *v);

/**
 * Append @p item to the array @p arr; on any failure (either is NULL, or no
 * memory) both are released and NULL returned, so a failed record can never
 * be left out silently.
 * @return @p arr or NULL
 */
json_t *cli_json_append(json_t *arr, json_t *item);

/**
 * Set @p key of the object @p obj to @p val, with the same failure rule as
 * cli_json_append.
 * @return @p obj or NULL
 */
json_t *cli_json_set(json_t *obj, const char *key, json_t *val);

/**
 * Refuse an admin's label or match value that could not be stored as text:
 * empty, longer than @p max bytes, not valid UTF-8, or holding control
 * characters.
 * @param what the flag for the message ("--name")
 * @return CLI_OK, or CLI_FAIL after printing the reason
 */
int cli_check_text(const struct cli_ctx *ctx, const char *what, const char *value, size_t max);

/** Days from now until @p t, rounded up (negative when past, rounded down). */
long cli_days_until(int64_t t);

/** "2026-11-24T22:23:42Z" for a time; buffer of 21. */
const char *cli_time(int64_t t, char buf[static 21]);

/**
 * Parse a positive decimal id.
 * @return true when @p s is a decimal number > 0
 */
bool cli_parse_id(const char *s, int64_t *out_id);

/**
 * Read and parse a PEM/DER certificate file, refusing with a message naming
 * the file, position, subject and reason.
 * @return CG_OK or an error (already printed)
 */
int cli_read_bundle(const struct cli_ctx *ctx, const char *path, struct pki_cert_list *out_list);

#endif
