/*
 * settings: the settings of `certgate serve`, from a config file (INI, read
 * with libinih; keys are the long flag names) and from flags, which win.
 * Relies on libinih. Validates every value; does not open files or sockets.
 */
#ifndef CG_SETTINGS_H
#define CG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include "base/util.h"

/** How the TLS handshake asks for a client certificate. */
enum client_cert_mode {
    CLIENT_CERT_REQUEST, /* ask; a client without one still connects and gets the 401 JSON */
    CLIENT_CERT_REQUIRE, /* ask; a client without one fails the handshake */
};

/** Settings of the server. */
struct serve_config {
    char *cert_file;                   /* --cert: server certificate (chain) PEM */
    char *key_file;                    /* --key: server private key PEM */
    char *listen;                      /* --listen ADDR:PORT */
    unsigned threads;                  /* --threads: worker threads, 0 = one per core */
    enum client_cert_mode client_cert; /* --client-cert */
    bool send_ca_names;                /* --send-ca-names all|none */
    bool epoll;                        /* --event-loop epoll (the default; else poll) */
    char *tls_priority;                /* --tls-priority (NULL: the built-in policy) */
    bool basic_auth;                   /* --basic-auth on|off */
    bool generic_detail;               /* --error-detail generic */
    char *log_file;                    /* --log-file (NULL: stderr) */
    unsigned max_connections;          /* --max-connections */
    unsigned max_per_ip;               /* --max-connections-per-ip */
    unsigned idle_timeout;             /* --idle-timeout, seconds */
    unsigned head_timeout;             /* --head-timeout, seconds to send a request head */
    size_t max_header_size;            /* --max-header-size, bytes */
    size_t max_body_size;              /* --max-body-size, bytes */
    char *config_file;                 /* --config */
    bool durable;                      /* --durability full (default) or normal */
    bool check_only;                   /* --check-config: validate everything, then exit */
    char *metrics_listen;              /* --metrics-listen ADDR:PORT, NULL: no metrics */
    unsigned long script_instructions; /* --script-instructions per request */
    unsigned long script_memory;       /* --script-memory bytes per request */
    unsigned script_timeout_ms;        /* --script-timeout milliseconds per request */
    unsigned script_threads;           /* --script-threads, 0: one per core */
    bool proxy_protocol;               /* --proxy-protocol: trusted peers send a PROXY v2 header */
    char *trusted_proxy;               /* --trusted-proxy CIDR[,CIDR...] (checked), NULL: none */
    unsigned db_pool;                  /* --db-pool, 0: one per script thread */
    char *db;                          /* the config file's db key (NULL: none) */
};

/** The TLS priority string used unless --tls-priority says otherwise. */
extern const char settings_default_priority[];

/** Defaults for everything. */
void settings_defaults(struct serve_config *c);

/**
 * Read flags (and the file named by --config, whose values flags override).
 * @param argc/argv arguments, argv[0] is "serve"
 * @param out_help set when --help was given
 * @param err one line naming the flag, or the file, line and key
 * @return CG_OK or CG_EINVAL
 */
int settings_parse(struct serve_config *c, int argc, char **argv, bool *out_help,
                   struct cg_err *err);

/**
 * The database to open: @p flag (--db) when given, else the config file's
 * db key (@p c may be NULL), else $CERTGATE_DB, else ./certgate.db.
 */
const char *settings_database(const char *flag, const struct serve_config *c);

/** Usage text of `certgate serve`, with every flag and its default. */
void settings_usage(FILE *f);

/**
 * Parse a listening address: "IPv4:PORT", "[IPv6]:PORT" or "localhost:PORT"
 * (127.0.0.1); no other host name is looked up.
 * @param s the text
 * @param out the socket address
 * @param out_len its length
 * @param err why it is not one, naming @p s
 * @return CG_OK or CG_EINVAL
 */
int settings_address(const char *s, struct sockaddr_storage *out, socklen_t *out_len,
                     struct cg_err *err);

/** Free the strings of a config. */
void settings_free(struct serve_config *c);

#endif
