#include "config.h"
#include "serve/daemon.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include "http/http.h"
#include "base/log.h"
#include "base/settings.h"
#include "db/store.h"
#include "tls/tls.h"
#include "trust/trust.h"
#include "engine/writer.h"

/* How long SIGTERM waits for requests in flight before it stops anyway. */
#define DRAIN_SECONDS 30

static void say(const char *what, const char *detail)
{
    log_event(what, json_pack("{s:s}", "detail", detail));
}

/* Waits for requests in flight, up to DRAIN_SECONDS.
 * @return how many got no answer: still in flight then, or ended meanwhile
 *         without one (an idle timeout, a client that went away) */
static int drain(struct http_server *srv)
{
    int before = http_unanswered_requests(srv);

    for (int i = 0; i < DRAIN_SECONDS * 20 && http_active_requests(srv) > 0; i++) {
        struct timespec ts = {0, 50 * 1000000L};

        nanosleep(&ts, NULL);
    }
    return http_active_requests(srv) + http_unanswered_requests(srv) - before;
}

/* Raises the soft open-file limit to the hard one: every connection is a
 * descriptor, and the soft default (1024 on Debian) is below what
 * --max-connections may ask for. Logs when even the hard limit is short. */
static void raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_connections + 64; /* database, log, listeners, poll */

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;

        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        log_event("nofile_limit_low",
                  json_pack("{s:I, s:I, s:s}", "limit", (json_int_t)rl.rlim_cur, "needed",
                            (json_int_t)want, "detail",
                            "the open-file limit is below --max-connections + 64: connections "
                            "beyond it are refused; raise it (LimitNOFILE= in the unit)"));
}

/* Settings kept alive after a reload: requests may still read them. */
struct old_config {
    struct serve_config *cfg; /* a superseded config */
    struct old_config *next;  /* older ones */
};

static const char *priority_of(const struct serve_config *c)
{
    return c->tls_priority ? c->tls_priority : settings_default_priority;
}

static bool str_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* The settings that only a restart changes, as a JSON array of the names
 * whose value moved (an empty array when none did). */
static json_t *restart_needed(const struct serve_config *a, const struct serve_config *b)
{
    json_t *names = json_array();
    const struct {
        const char *name; /* the flag */
        bool moved;       /* its value changed */
    } checks[] = {
        {"listen", str_differ(a->listen, b->listen)},
        {"threads", a->threads != b->threads},
        {"event-loop", a->epoll != b->epoll},
        {"max-connections", a->max_connections != b->max_connections},
        {"max-connections-per-ip", a->max_per_ip != b->max_per_ip},
        {"idle-timeout", a->idle_timeout != b->idle_timeout},
        {"max-header-size", a->max_header_size != b->max_header_size},
        {"durability", a->durable != b->durable},
        {"script-instructions", a->script_instructions != b->script_instructions},
        {"script-memory", a->script_memory != b->script_memory},
        {"script-timeout", a->script_timeout_ms != b->script_timeout_ms},
        {"script-threads", a->script_threads != b->script_threads},
        {"db-pool", a->db_pool != b->db_pool},
        {"db", str_differ(a->db, b->db)},
        {"metrics-listen", str_differ(a->metrics_listen, b->metrics_listen)},
        {"proxy-protocol", a->proxy_protocol != b->proxy_protocol},
        {"trusted-proxy", str_differ(a->trusted_proxy, b->trusted_proxy)},
    };

    for (size_t i = 0; names && i < sizeof(checks) / sizeof(checks[0]); i++) {
        if (checks[i].moved)
            json_array_append_new(names, json_string(checks[i].name));
    }
    return names;
}

/*
 * SIGHUP: read the flags and the config file again; apply what can change
 * without a restart (certificate and key, TLS priority, client-cert and
 * send-ca-names for new connections, log file, Basic, error details, body
 * limit, head timeout) and name the changes that need one. A bad file, key
 * or priority string keeps everything as it was.
 */
static void reload(const struct serve_config *started, struct serve_config **cur,
                   struct old_config **older, int argc, char **argv, struct http_server *srv,
                   struct tls_server *tls)
{
    struct serve_config *next = calloc(1, sizeof(*next));
    struct old_config *keep = calloc(1, sizeof(*keep));
    struct cg_err err = {""};
    bool help = false;
    json_t *restart;

    if (!next || !keep) {
        free(next);
        free(keep);
        say("reload_failed", "out of memory");
        return;
    }
    settings_defaults(next);
    if (settings_parse(next, argc, argv, &help, &err))
        goto fail;
    if (tls_priority_check(priority_of(next), &err))
        goto fail;
    if (tls_server_reload(tls, next->cert_file, next->key_file, &err))
        goto fail;
    tls_server_set_policy(tls, priority_of(next), next->client_cert == CLIENT_CERT_REQUIRE,
                          next->send_ca_names, &err);
    if (next->log_file && log_open(next->log_file)) {
        char msg[600];

        /* Said once, here: the lines go on to the file opened before. */
        snprintf(msg, sizeof(msg),
                 "cannot open the log file %.400s (%s): logging goes on to the file opened "
                 "before",
                 next->log_file, strerror(errno));
        say("log_reopen_failed", msg);
    }
    /* Against the settings the server started with: those are in force. */
    restart = restart_needed(started, next);
    if (restart && json_array_size(restart) > 0)
        log_event("reload_partial",
                  json_pack("{s:o, s:s}", "settings", restart, "detail",
                            "these settings change only with a restart; the others apply now"));
    else
        json_decref(restart);
    http_set_config(srv, next);
    keep->cfg = *cur;
    keep->next = *older;
    *older = keep;
    *cur = next;
    say("reloaded", "server certificate, key and settings reloaded; new connections use them");
    return;
fail:
    say("reload_failed", err.msg);
    settings_free(next);
    free(next);
    free(keep);
}

/* The --metrics-listen daemon, and its log line with the port it got. */
static int start_metrics(struct http_server *srv, const char *listen, struct cg_err *err)
{
    uint16_t port = 0;
    char addr[96];
    const char *colon = strrchr(listen, ':');

    if (http_start_metrics(srv, listen, &port, err))
        return CG_ERR;
    snprintf(addr, sizeof(addr), "%.*s:%u", (int)(colon - listen), listen, (unsigned)port);
    log_event("metrics_listening", json_pack("{s:s}", "address", addr));
    return CG_OK;
}

/* How the group commit did, for the log at stop. */
static void log_writer_stats(struct writer *writer)
{
    struct writer_stats st;

    if (!writer)
        return;
    writer_stats(writer, &st);
    log_event("writer_stats", json_pack("{s:I, s:I, s:I, s:I}", "commits", (json_int_t)st.commits,
                                        "requests", (json_int_t)st.jobs, "reruns",
                                        (json_int_t)st.conflicts, "serial", (json_int_t)st.serial));
}

/* The last line of a server that served: whether every request got its answer. */
static void log_stopped(int dropped)
{
    char msg[160];

    if (dropped == 0) {
        say("stopped", "all requests answered");
        return;
    }
    snprintf(msg, sizeof(msg),
             "%d request%s in flight at SIGTERM got no answer (the drain waits %d s; an "
             "idle or gone client ends sooner)",
             dropped, dropped == 1 ? "" : "s", DRAIN_SECONDS);
    log_event("stopped", json_pack("{s:s, s:i}", "detail", msg, "dropped", dropped));
}

/* The settings in force and those SIGHUP replaced (kept while requests
 * might still read them). */
static void free_settings(struct serve_config *first, struct serve_config *cfg,
                          struct old_config *older)
{
    settings_free(cfg);
    if (cfg != first)
        free(cfg);
    while (older) {
        struct old_config *o = older;

        older = o->next;
        settings_free(o->cfg);
        if (o->cfg != first)
            free(o->cfg);
        free(o);
    }
}

int daemon_main(const char *db_flag, int argc, char **argv)
{
    const char *db_path = NULL; /* in first: valid until the end */
    struct serve_config first, *cfg = &first;
    struct old_config *older = NULL;
    struct trust_holder *trust = NULL;
    struct tls_server *tls = NULL;
    struct http_server *srv = NULL;
    bool served = false;
    struct writer *writer = NULL;
    struct script_limits limits;
    struct store *s = NULL;
    struct cg_err err = {""};
    char *db_shown = NULL; /* the database as logs name it: no password */
    sigset_t sigs;
    bool help = false;
    char addr[96];
    int rc = 1, sig = 0, dropped = 0;

    /* Signals are taken by sigwait in this thread; blocked before any thread
     * starts (the trust poller, libmicrohttpd's workers), which inherit the
     * mask, so no signal ever lands in one of them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    settings_defaults(cfg);
    if (settings_parse(cfg, argc, argv, &help, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        settings_free(cfg);
        return 2;
    }
    if (help) {
        settings_usage(stdout);
        settings_free(cfg);
        return 0;
    }
    if (cfg->log_file && log_open(cfg->log_file)) {
        fprintf(stderr, "certgate: serve: --log-file %s: cannot open it\n", cfg->log_file);
        settings_free(cfg);
        return 2;
    }
    db_path = settings_database(db_flag, &first);
    db_shown = store_display_name(db_path);
    /* The schema is checked (and an older one upgraded) before serving. */
    if (store_open(db_path, STORE_OPEN_EXISTING, &s, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        goto out;
    }
    store_close(s);
    s = NULL;
    if (tls_server_new(cfg->cert_file, cfg->key_file,
                       cfg->tls_priority ? cfg->tls_priority : settings_default_priority,
                       cfg->client_cert == CLIENT_CERT_REQUIRE, cfg->send_ca_names, &tls, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    if (cfg->check_only) {
        printf("configuration OK: certificate %s, key %s, database %s, listen %s\n", cfg->cert_file,
               cfg->key_file, db_shown ? db_shown : "?", cfg->listen);
        rc = 0;
        goto out;
    }
    raise_nofile(cfg->max_connections);
    if (trust_holder_new(db_path, &trust, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        goto out;
    }
    limits.instructions = cfg->script_instructions;
    limits.memory = cfg->script_memory;
    limits.wall_ms = cfg->script_timeout_ms;
    if (writer_start(db_path, &limits, cfg->durable, cfg->script_threads, cfg->db_pool, &writer,
                     &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        goto out;
    }
    if (http_start(cfg, trust, tls, writer, &srv, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        goto out;
    }
    if (cfg->metrics_listen && start_metrics(srv, cfg->metrics_listen, &err)) {
        fprintf(stderr, "certgate: serve: %s\n", err.msg);
        goto out;
    }
    snprintf(addr, sizeof(addr), "%s", http_address(srv));
    log_event("listening",
              json_pack("{s:s, s:s, s:s, s:s, s:b}", "address", addr, "version", PACKAGE_VERSION,
                        "database", db_shown ? db_shown : "?", "client_cert",
                        cfg->client_cert == CLIENT_CERT_REQUIRE ? "require" : "request",
                        "basic_auth", cfg->basic_auth));
    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGPIPE)
            continue;
        if (sig == SIGHUP) {
            reload(&first, &cfg, &older, argc, argv, srv, tls);
            continue;
        }
        break;
    }
    served = true;
    say("stopping", sig == SIGINT ? "SIGINT: finishing requests in flight"
                                  : "SIGTERM: finishing requests in flight");
    http_quiesce(srv);
    dropped = drain(srv);
    rc = 0;
out:
    /* Queued jobs are answered while the daemon still runs; then it stops. */
    writer_stop(writer);
    log_writer_stats(writer);
    http_stop(srv);
    writer_free(writer);
    trust_holder_free(trust);
    tls_server_free(tls);
    store_close(s);
    if (served)
        log_stopped(dropped);
    log_close();
    free(db_shown);
    free_settings(&first, cfg, older);
    return rc;
}
