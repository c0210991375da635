#include "config.h"
#include "base/settings.h"

#include "base/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * TLS 1.3 and 1.2 only; AEAD ciphers with ECDHE only; no SHA-1 or SHA-224
 * signatures (RFC 9155); the server's order. No client renegotiation: tls/wire.c
 * answers any with a no_renegotiation alert, and the server never starts one.
 *
 * %PARTIAL_RENEGOTIATION, not %SAFE_RENEGOTIATION: GnuTLS 3.7 applies
 * %SAFE_RENEGOTIATION to the initial handshake of every version, TLS 1.3
 * included, refusing ("Denying unsafe initial negotiation", an alert) any
 * ClientHello without the RFC 5746 renegotiation_info extension or the
 * TLS_EMPTY_RENEGOTIATION_INFO_SCSV suite. Browsers, curl and OpenSSL send one;
 * the hand-made ClientHellos of sslscan (all its protocol, group and cipher
 * probes) and testssl.sh (its TLS 1.3 probe) do not, so sslscan reported TLS
 * 1.2 and 1.3 disabled and testssl.sh "unexpected results" for TLS 1.3. The
 * extension only guards a renegotiation, which certgate never performs, and
 * TLS 1.3 has none; %PARTIAL_RENEGOTIATION still sends it to clients that
 * offer it (testssl.sh: "Secure Renegotiation supported") and still refuses
 * a renegotiation with a client that did not.
 *
 * Each SIGN-ECDSA-SECPxxx-SHAxxx (TLS 1.3, curve-bound) sits next to its
 * SIGN-ECDSA-SHAxxx (TLS 1.2): both are one code point on the wire, and
 * GnuTLS drops a repeated code point from the signature_algorithms it sends
 * (in the CertificateRequest) only when it follows its twin.
 */
const char settings_default_priority[] =
    "NONE:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-ECDSA:+ECDHE-RSA:+AES-256-GCM:+AES-128-GCM:"
    "+CHACHA20-POLY1305:+AEAD:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "+SIGN-ECDSA-SECP256R1-SHA256:+SIGN-ECDSA-SHA256:+SIGN-ECDSA-SECP384R1-SHA384:"
    "+SIGN-ECDSA-SHA384:+SIGN-ECDSA-SECP521R1-SHA512:+SIGN-ECDSA-SHA512:"
    "+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-PSS-RSAE-SHA384:+SIGN-RSA-PSS-RSAE-SHA512:"
    "+SIGN-RSA-SHA256:+SIGN-RSA-SHA384:+SIGN-RSA-SHA512:+SIGN-EDDSA-ED25519:+COMP-NULL:"
    "+CTYPE-X509:%SERVER_PRECEDENCE:%PARTIAL_RENEGOTIATION";

void settings_defaults(struct serve_config *c)
{
    memset(c, 0, sizeof(*c));
    c->client_cert = CLIENT_CERT_REQUEST;
    c->send_ca_names = true;
    c->basic_auth = true;
    c->max_connections = 1024;
    c->max_per_ip = 64;
    c->idle_timeout = 60;
    c->head_timeout = 10;
    c->epoll = true;
    c->max_header_size = 16 * 1024;
    c->max_body_size = 1024 * 1024;
    c->durable = true;
    c->script_instructions = 10000000;
    c->script_memory = 16 * 1024 * 1024;
    c->script_timeout_ms = 5000;
}

void settings_free(struct serve_config *c)
{
    free(c->cert_file);
    free(c->key_file);
    free(c->listen);
    free(c->tls_priority);
    free(c->log_file);
    free(c->config_file);
    free(c->metrics_listen);
    free(c->trusted_proxy);
    free(c->db);
    memset(c, 0, sizeof(*c));
}

const char *settings_database(const char *flag, const struct serve_config *c)
{
    const char *env = getenv("CERTGATE_DB");

    if (flag)
        return flag;
    if (c && c->db)
        return c->db;
    return env && *env ? env : "./certgate.db";
}

void settings_usage(FILE *f)
{
    fprintf(f,
            "usage: certgate serve --cert F --key F [options]\n"
            "Runs the HTTPS gateway. Options (a --config file takes the same names as keys, "
            "e.g. listen = 127.0.0.1:8443):\n"
            "  --cert F                     server certificate, PEM (may hold its chain)\n"
            "  --key F                      server private key, PEM (PKCS#8 or PKCS#1; RSA or "
            "ECDSA)\n"
            "  --listen ADDR:PORT           default 127.0.0.1:8443 (port 0: any free port)\n"
            "  --threads N                  worker threads, default one per core\n"
            "  --event-loop epoll|poll      epoll (default): flat latency with thousands of\n"
            "                               idle connections; poll: latency grows with them\n"
            "  --client-cert request|require  request (default): a client without a certificate\n"
            "                               gets the 401 JSON; require: its handshake fails\n"
            "  --send-ca-names all|none     name the CA table in the certificate request "
            "(default all)\n"
            "  --tls-priority S             GnuTLS priority string (default: TLS 1.2/1.3, "
            "ECDHE+AEAD)\n"
            "  --basic-auth on|off          HTTP Basic for users with a password (default on)\n"
            "  --error-detail full|generic  generic hides refusal reasons from clients "
            "(not from the log)\n"
            "  --log-file F                 JSON log lines to F instead of stderr (reopened on "
            "SIGHUP)\n"
            "  --max-connections N          default 1024\n"
            "  --max-connections-per-ip N   default 64\n"
            "  --idle-timeout S             close idle connections after S seconds (default 60)\n"
            "  --head-timeout S             close a connection whose TLS handshake and request\n"
            "                               head take longer than S seconds (default 10)\n"
            "  --max-header-size B          request line plus header names and values, bytes\n"
            "                               (default 16384; over it: a JSON 431)\n"
            "  --max-body-size B            request body bytes (default 1048576)\n"
            "  --durability full|normal     full (default): a 2xx answer means the rows are on\n"
            "                               disk (fsync); normal: they survive a crash of\n"
            "                               certgate but not of the machine\n"
            "  --script-instructions N      Lua instructions per request (default 10000000)\n"
            "  --script-memory B            Lua memory per request (default 16777216)\n"
            "  --script-timeout MS          Lua wall time per request (default 5000; 503)\n"
            "  --script-threads N           threads running scripts (default: one per core)\n"
            "  --db-pool N                  database connections the script threads share\n"
            "                               (default: one per script thread), besides the\n"
            "                               committer's and the trust poller's\n"
            "  --metrics-listen ADDR:PORT   serve GET /metrics (Prometheus, plain HTTP) there;\n"
            "                               keep it on a private address\n"
            "  --proxy-protocol             behind a load balancer: the peers named by\n"
            "                               --trusted-proxy must open each connection with a\n"
            "                               PROXY protocol v2 header (HAProxy send-proxy-v2);\n"
            "                               its client address is used in logs and limits\n"
            "  --trusted-proxy CIDR[,CIDR...]  the load balancers' addresses (10.0.0.5/32,\n"
            "                               fd00::/64); required by --proxy-protocol; others\n"
            "                               connect directly and may not send the header\n"
            "  --config FILE                read settings from FILE first; its key db names the\n"
            "                               database (a path or a postgresql:// URI) unless\n"
            "                               --db does\n"
            "  --check-config               check the settings, certificate, key and database,\n"
            "                               print the result and exit\n"
            "Signals: SIGTERM/SIGINT finish requests in flight and exit 0; SIGHUP reloads the\n"
            "certificate, key, log file and settings (the log names those that need a restart).\n");
}

/* The settings, by name, for flags and config keys alike. */
enum key_id {
    K_CERT = 1,
    K_KEY,
    K_LISTEN,
    K_THREADS,
    K_CLIENT_CERT,
    K_SEND_CA_NAMES,
    K_EVENT_LOOP,
    K_TLS_PRIORITY,
    K_BASIC_AUTH,
    K_ERROR_DETAIL,
    K_LOG_FILE,
    K_MAX_CONN,
    K_MAX_PER_IP,
    K_IDLE,
    K_MAX_HEADER,
    K_MAX_BODY,
    K_CONFIG,
    K_HELP,
    K_DURABILITY,
    K_SCRIPT_INSTR,
    K_SCRIPT_MEM,
    K_SCRIPT_TIME,
    K_SCRIPT_THREADS,
    K_DB_POOL,
    K_CHECK,
    K_METRICS,
    K_HEAD_TIMEOUT,
    K_PROXY_PROTOCOL,
    K_TRUSTED_PROXY,
    K_DB,
};

static const struct option long_opts[] = {
    {"cert", required_argument, NULL, K_CERT},
    {"key", required_argument, NULL, K_KEY},
    {"listen", required_argument, NULL, K_LISTEN},
    {"threads", required_argument, NULL, K_THREADS},
    {"client-cert", required_argument, NULL, K_CLIENT_CERT},
    {"send-ca-names", required_argument, NULL, K_SEND_CA_NAMES},
    {"event-loop", required_argument, NULL, K_EVENT_LOOP},
    {"tls-priority", required_argument, NULL, K_TLS_PRIORITY},
    {"basic-auth", required_argument, NULL, K_BASIC_AUTH},
    {"error-detail", required_argument, NULL, K_ERROR_DETAIL},
    {"log-file", required_argument, NULL, K_LOG_FILE},
    {"max-connections", required_argument, NULL, K_MAX_CONN},
    {"max-connections-per-ip", required_argument, NULL, K_MAX_PER_IP},
    {"idle-timeout", required_argument, NULL, K_IDLE},
    {"max-header-size", required_argument, NULL, K_MAX_HEADER},
    {"max-body-size", required_argument, NULL, K_MAX_BODY},
    {"config", required_argument, NULL, K_CONFIG},
    {"durability", required_argument, NULL, K_DURABILITY},
    {"script-instructions", required_argument, NULL, K_SCRIPT_INSTR},
    {"script-memory", required_argument, NULL, K_SCRIPT_MEM},
    {"script-timeout", required_argument, NULL, K_SCRIPT_TIME},
    {"script-threads", required_argument, NULL, K_SCRIPT_THREADS},
    {"db-pool", required_argument, NULL, K_DB_POOL},
    {"help", no_argument, NULL, K_HELP},
    {"check-config", no_argument, NULL, K_CHECK},
    {"metrics-listen", required_argument, NULL, K_METRICS},
    {"head-timeout", required_argument, NULL, K_HEAD_TIMEOUT},
    {"proxy-protocol", no_argument, NULL, K_PROXY_PROTOCOL},
    {"trusted-proxy", required_argument, NULL, K_TRUSTED_PROXY},
    /* --db itself is taken by the command line (cli.c) before serve parses
     * its flags: here it is the config file's key. */
    {"db", required_argument, NULL, K_DB},
    {0, 0, 0, 0},
};

static int number(const char *v, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long n;

    if (!v || !*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 12)
        return -1;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int set_str(char **slot, const char *v)
{
    char *copy = strdup(v);

    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Applies one setting; on a bad value writes why (without the source). */
static int apply(struct serve_config *c, int id, const char *name, const char *v,
                 struct cg_err *err)
{
    unsigned long n = 0;

    switch (id) {
    case K_CERT: return set_str(&c->cert_file, v);
    case K_KEY: return set_str(&c->key_file, v);
    case K_LISTEN: return set_str(&c->listen, v);
    case K_TLS_PRIORITY: return set_str(&c->tls_priority, v);
    case K_LOG_FILE: return set_str(&c->log_file, v);
    case K_CONFIG: return set_str(&c->config_file, v);
    case K_METRICS: return set_str(&c->metrics_listen, v);
    case K_TRUSTED_PROXY: return set_str(&c->trusted_proxy, v);
    case K_DB:
        if (!*v) {
            cg_err_set(err, "db: give a file path or a postgresql:// URI");
            return -1;
        }
        return set_str(&c->db, v);
    case K_PROXY_PROTOCOL:
        /* The flag takes no value; the config key takes on or off. */
        if (!v || strcmp(v, "on") == 0 || strcmp(v, "off") == 0)
            c->proxy_protocol = !v || strcmp(v, "on") == 0;
        else
            goto bad_enum;
        return 0;
    case K_THREADS:
        if (number(v, 0, 256, &n))
            goto bad_number;
        c->threads = (unsigned)n;
        return 0;
    case K_MAX_CONN:
        if (number(v, 1, 1000000, &n))
            goto bad_number;
        c->max_connections = (unsigned)n;
        return 0;
    case K_MAX_PER_IP:
        if (number(v, 1, 1000000, &n))
            goto bad_number;
        c->max_per_ip = (unsigned)n;
        return 0;
    case K_IDLE:
        if (number(v, 1, 86400, &n))
            goto bad_number;
        c->idle_timeout = (unsigned)n;
        return 0;
    case K_HEAD_TIMEOUT:
        if (number(v, 1, 3600, &n))
            goto bad_number;
        c->head_timeout = (unsigned)n;
        return 0;
    case K_MAX_HEADER:
        if (number(v, 1024, 1024 * 1024, &n))
            goto bad_number;
        c->max_header_size = n;
        return 0;
    case K_MAX_BODY:
        if (number(v, 1, 1024UL * 1024 * 1024, &n))
            goto bad_number;
        c->max_body_size = n;
        return 0;
    case K_DURABILITY:
        if (strcmp(v, "full") == 0 || strcmp(v, "normal") == 0)
            c->durable = strcmp(v, "full") == 0;
        else
            goto bad_enum;
        return 0;
    case K_SCRIPT_INSTR:
        if (number(v, 1000, 100000000000UL, &n))
            goto bad_number;
        c->script_instructions = n;
        return 0;
    case K_SCRIPT_MEM:
        if (number(v, 65536, 1024UL * 1024 * 1024, &n))
            goto bad_number;
        c->script_memory = n;
        return 0;
    case K_SCRIPT_TIME:
        if (number(v, 1, 600000, &n))
            goto bad_number;
        c->script_timeout_ms = (unsigned)n;
        return 0;
    case K_SCRIPT_THREADS:
        if (number(v, 1, 64, &n))
            goto bad_number;
        c->script_threads = (unsigned)n;
        return 0;
    case K_DB_POOL:
        if (number(v, 1, 64, &n))
            goto bad_number;
        c->db_pool = (unsigned)n;
        return 0;
    case K_CLIENT_CERT:
        if (strcmp(v, "request") == 0)
            c->client_cert = CLIENT_CERT_REQUEST;
        else if (strcmp(v, "require") == 0)
            c->client_cert = CLIENT_CERT_REQUIRE;
        else
            goto bad_enum;
        return 0;
    case K_EVENT_LOOP:
        if (strcmp(v, "poll") == 0 || strcmp(v, "epoll") == 0)
            c->epoll = strcmp(v, "epoll") == 0;
        else
            goto bad_enum;
        return 0;
    case K_SEND_CA_NAMES:
        if (strcmp(v, "all") == 0 || strcmp(v, "none") == 0)
            c->send_ca_names = strcmp(v, "all") == 0;
        else
            goto bad_enum;
        return 0;
    case K_BASIC_AUTH:
        if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)
            c->basic_auth = strcmp(v, "on") == 0;
        else
            goto bad_enum;
        return 0;
    case K_ERROR_DETAIL:
        if (strcmp(v, "full") == 0 || strcmp(v, "generic") == 0)
            c->generic_detail = strcmp(v, "generic") == 0;
        else
            goto bad_enum;
        return 0;
    default: cg_err_set(err, "unknown setting '%s'", name); return -1;
    }
bad_number:
    cg_err_set(err, "%s: '%s' is not a number in the allowed range", name, v);
    return -1;
bad_enum:
    cg_err_set(err, "%s: '%s' is not one of the allowed values (certgate serve --help)", name, v);
    return -1;
}

int settings_address(const char *s, struct sockaddr_storage *out, socklen_t *out_len,
                     struct cg_err *err)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    unsigned long port;
    char *end = NULL;
    size_t hlen;

    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        cg_err_set(err, "'%s' is not ADDRESS:PORT (127.0.0.1:8443, [::1]:8443 or localhost:8443)",
                   s);
        return CG_EINVAL;
    }
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno || port > 65535) {
        cg_err_set(err, "'%s': the port must be 0 to 65535 (0: any free port)", s);
        return CG_EINVAL;
    }
    hlen = (size_t)(colon - s);
    if (hlen == 0) {
        cg_err_set(err,
                   "'%s' has no address: use 0.0.0.0:%lu for every IPv4 address, or "
                   "127.0.0.1:%lu for this machine only",
                   s, port, port);
        return CG_EINVAL;
    }
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']' || hlen - 2 >= sizeof(host))
            goto bad_host;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
    } else {
        if (hlen >= sizeof(host))
            goto bad_host;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (strchr(host, ':')) {
            cg_err_set(err, "'%s': write an IPv6 address in brackets, as [::1]:8443", s);
            return CG_EINVAL;
        }
        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof(host), "127.0.0.1");
    }
    memset(out, 0, sizeof(*out));
    if (s[0] != '[' && inet_pton(AF_INET, host, &((struct sockaddr_in *)out)->sin_addr) == 1) {
        ((struct sockaddr_in *)out)->sin_family = AF_INET;
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
        *out_len = sizeof(struct sockaddr_in);
        return CG_OK;
    }
    if (s[0] == '[' && inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)out)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)out)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
        *out_len = sizeof(struct sockaddr_in6);
        return CG_OK;
    }
bad_host:
    cg_err_set(err,
               "'%s': '%.*s' is not an IP address (host names other than localhost are not "
               "looked up)",
               s, (int)hlen, s);
    return CG_EINVAL;
}

/* libinih reads lines of at most INI_MAX_LINE - 1 characters and takes the
 * rest of a longer one for a line of its own, which gives a misleading
 * error: say what is wrong instead. */
static int check_line_lengths(const char *path, struct cg_err *err)
{
    FILE *f = fopen(path, "r");
    size_t len = 0;
    int line = 1, c;

    if (!f) {
        cg_err_set(err, "%s: cannot open the config file: %s", path, strerror(errno));
        return CG_EINVAL;
    }
    while ((c = fgetc(f)) != EOF) {
        if (c != '\n') {
            len++;
            continue;
        }
        if (len > INI_MAX_LINE - 1)
            break;
        len = 0;
        line++;
    }
    fclose(f);
    if (len > INI_MAX_LINE - 1) {
        cg_err_set(err,
                   "%s: line %d is longer than %d characters, which the config parser cannot "
                   "read (give a long value such as tls-priority on the command line)",
                   path, line, INI_MAX_LINE - 1);
        return CG_EINVAL;
    }
    return CG_OK;
}

struct ini_ctx {
    struct serve_config *c; /* where values go */
    const char *path;       /* the file, for messages */
    struct cg_err *err;     /* first error */
    int line;               /* line of the first error */
    bool failed;            /* an error was recorded */
};

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    struct cg_err e = {""};
    int id = 0;

    if (ctx->failed)
        return 0;
    if (section && *section && strcmp(section, "serve") != 0) {
        cg_err_set(&e, "unknown section [%s] (use no section, or [serve])", section);
        goto fail;
    }
    for (const struct option *o = long_opts; o->name; o++) {
        if (strcmp(o->name, name) == 0)
            id = o->val;
    }
    if (id == 0 || id == K_HELP || id == K_CONFIG || id == K_CHECK) {
        cg_err_set(&e, "unknown key '%s'", name);
        goto fail;
    }
    if (apply(ctx->c, id, name, value, &e) == 0)
        return 1;
fail:
    ctx->failed = true;
    cg_err_set(ctx->err, "%s: %s", ctx->path, e.msg[0] ? e.msg : "out of memory");
    return 0;
}

static const char *option_name(int id)
{
    for (const struct option *o = long_opts; o->name; o++) {
        if (o->val == id)
            return o->name;
    }
    return "?";
}

/* --proxy-protocol and --trusted-proxy go together; the list must parse. */
static int check_proxy(const struct serve_config *c, struct cg_err *err)
{
    struct cidr_list l;
    struct cg_err e = {""};
    int rc;

    if (c->proxy_protocol && !c->trusted_proxy) {
        cg_err_set(err, "--proxy-protocol needs --trusted-proxy CIDR[,CIDR...]: the addresses of "
                        "the load balancers allowed to send the PROXY header (as 10.0.0.5/32)");
        return CG_EINVAL;
    }
    if (c->trusted_proxy && !c->proxy_protocol) {
        cg_err_set(err, "--trusted-proxy is only used with --proxy-protocol: add it, or drop "
                        "--trusted-proxy");
        return CG_EINVAL;
    }
    if (!c->trusted_proxy)
        return CG_OK;
    rc = cidr_list_parse(c->trusted_proxy, &l, &e);
    if (rc) {
        cg_err_set(err, "--trusted-proxy %s", e.msg);
        return rc;
    }
    cidr_list_free(&l);
    return CG_OK;
}

int settings_parse(struct serve_config *c, int argc, char **argv, bool *out_help,
                   struct cg_err *err)
{
    int opt, pass;

    *out_help = false;
    /* Pass 1 finds --config (and --help); pass 2 applies the flags over it. */
    for (pass = 1; pass <= 2; pass++) {
        optind = 1;
        opterr = 0;
        for (;;) {
            struct cg_err e = {""};

            opt = getopt_long(argc, argv, ":", long_opts, NULL);
            if (opt == -1)
                break;
            if (opt == '?') {
                cg_err_set(err, "unknown option '%s' (certgate serve --help lists them)",
                           argv[optind - 1]);
                return CG_EINVAL;
            }
            if (opt == ':') {
                cg_err_set(err, "option '%s' needs a value", argv[optind - 1]);
                return CG_EINVAL;
            }
            if (opt == K_HELP) {
                *out_help = true;
                return CG_OK;
            }
            if (opt == K_CHECK) {
                c->check_only = true;
                continue;
            }
            if ((pass == 1) != (opt == K_CONFIG))
                continue;
            if (apply(c, opt, option_name(opt), optarg, &e)) {
                cg_err_set(err, "%s", e.msg[0] ? e.msg : "out of memory");
                return CG_EINVAL;
            }
        }
        if (optind != argc) {
            cg_err_set(err, "unexpected argument '%s'", argv[optind]);
            return CG_EINVAL;
        }
        if (pass == 1 && c->config_file) {
            struct ini_ctx ctx = {c, c->config_file, err, 0, false};
            int rc;

            if (check_line_lengths(c->config_file, err))
                return CG_EINVAL;
            rc = ini_parse(c->config_file, on_ini, &ctx);

            if (rc == -1) {
                cg_err_set(err, "%s: cannot open the config file: %s", c->config_file,
                           strerror(errno));
                return CG_EINVAL;
            }
            if (ctx.failed || rc != 0) {
                if (!ctx.failed)
                    cg_err_set(err, "%s: line %d: syntax error", c->config_file, rc);
                else if (rc > 0) {
                    char msg[sizeof(err->msg)];

                    snprintf(msg, sizeof(msg), "%s", err->msg);
                    cg_err_set(err, "%s (line %d)", msg, rc);
                }
                return CG_EINVAL;
            }
        }
    }
    if (!c->cert_file || !c->key_file) {
        cg_err_set(err, "--cert and --key are required (the server's certificate and key)");
        return CG_EINVAL;
    }
    if (!c->listen && set_str(&c->listen, "127.0.0.1:8443"))
        return CG_ENOMEM;
    /* Addresses are checked here, so that --check-config sees them and a
     * bad one is a usage error, before anything is opened. */
    {
        struct sockaddr_storage sa;
        socklen_t sa_len;
        struct cg_err e = {""};

        if (settings_address(c->listen, &sa, &sa_len, &e)) {
            cg_err_set(err, "--listen %s", e.msg);
            return CG_EINVAL;
        }
        if (c->metrics_listen && settings_address(c->metrics_listen, &sa, &sa_len, &e)) {
            cg_err_set(err, "--metrics-listen %s", e.msg);
            return CG_EINVAL;
        }
    }
    return check_proxy(c, err);
}
