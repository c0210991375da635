/*
 * server: starts and stops libmicrohttpd with certgate's TLS credentials
 * and callbacks, keeps the list of open connections for the sweeper, and
 * routes libmicrohttpd's own log lines to certgate's log. Does not handle
 * requests: pipeline.c does.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/utf8.h"
#include "tls/wire.h"

void http_set_config(struct http_server *srv, const struct serve_config *cfg)
{
    __atomic_store_n(&srv->cfg, cfg, __ATOMIC_RELEASE);
}

/* Seconds from the accept to the end of the first request head. */
unsigned first_head_timeout(const struct serve_config *cfg)
{
    return cfg->idle_timeout < cfg->head_timeout ? cfg->idle_timeout : cfg->head_timeout;
}

static void on_connection(void *cls, struct MHD_Connection *mhd, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    struct conn *c = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci;
        struct trust_snapshot *snap;
        uint64_t accepted;

        c = calloc(1, sizeof(*c));
        if (!c)
            return;
        c->srv = srv;
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        /* The handshake and the first head must be done in --head-timeout,
         * counted from the accept (the PROXY header's wait included), or in
         * --idle-timeout if that is sooner: libmicrohttpd does not time out
         * a connection parked while its handshake waits (park.c). */
        accepted = srv->proxy ? proxy_accepted_at(srv->proxy, c->fd) : 0;
        if (accepted == 0)
            accepted = (uint64_t)clock_ms();
        c->head_state = HEAD_DEADLINE | (accepted + 1000ULL * first_head_timeout(cfg_of(srv)));
        tls_wire_forget(c->fd);
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;

            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                          c->remote, sizeof(c->remote));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                          c->remote, sizeof(c->remote));
        }
        /* Before the handshake: our credentials (fresh CA names), and the
         * certificate request mode. */
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ci && ci->tls_session) {
            snap = trust_holder_acquire(srv->trust);
            tls_session_setup(srv->tls, ci->tls_session, &snap->pki, snap->version, &c->creds);
            trust_release(snap);
        }
        pthread_mutex_lock(&srv->conns_lock);
        c->next = srv->conns;
        if (c->next)
            c->next->prev = c;
        srv->conns = c;
        pthread_mutex_unlock(&srv->conns_lock);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* libmicrohttpd closes the socket only after this returns: once c is
     * off the list, the sweeper cannot touch a descriptor number that may
     * be reused. */
    pthread_mutex_lock(&srv->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&srv->conns_lock);
    /* Nothing else logs a connection that never got as far as a request
     * line: a failed or abandoned TLS handshake, a client that sent
     * nothing, or a request line libmicrohttpd refused itself (its "httpd"
     * line says which, without the address). */
    if (c->request_lines == 0 && !c->swept)
        log_event("connection_closed",
                  json_pack("{s:s, s:i, s:s}", "remote", c->remote, "requests", 0, "detail",
                            "closed before a request line was read: a TLS handshake that failed "
                            "(see the tls_handshake_failed line) or was abandoned, no data, or a "
                            "request line libmicrohttpd refused (see the httpd line)"));
    /* libmicrohttpd has called gnutls_deinit by now (MHD_cleanup_connections;
     * its other CLOSED call, for a connection that failed to start, cannot
     * happen with poll and a thread pool), so the credentials may go. */
    tls_session_release(srv->tls, c->creds);
    /* The socket is still open (libmicrohttpd closes it after this): if
     * closing it would reset the connection, it lingers. After an answer
     * of libmicrohttpd's own (a head over the memory pool) the rest of the
     * request is often still on its way, even when none is queued yet. */
    if (!c->swept && linger_wanted(c->fd, c->body_unread || tls_wire_replaced(c->fd) != 0))
        linger_add(srv->linger, c->fd);
    tls_wire_forget(c->fd);
    conn_forget(c);
    pki_cert_list_free(&c->peer);
    free(c);
    *socket_context = NULL;
}

void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (closing_on_purpose && strncmp(msg, "Application reported internal error", 35) == 0) {
        closing_on_purpose = false;
        return;
    }
    /* Its line for every failed handshake says nothing; tls_handshake_failed
     * said what failed. */
    if (strstr(msg, "handshake message out of context") && tls_handshake_failure_logged())
        return;
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    log_event("httpd", json_pack("{s:o}", "detail", utf8_json(msg)));
}

int http_start(const struct serve_config *cfg, struct trust_holder *trust, struct tls_server *tls,
               struct writer *writer, struct http_server **out_srv, struct cg_err *err)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    unsigned threads = cfg->threads;
    const union MHD_DaemonInfo *di;
    unsigned flags;
    struct MHD_OptionItem listen_opts[2] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};

    if (!srv)
        return CG_ENOMEM;
    srv->quiesced = MHD_INVALID_SOCKET;
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_cond_init(&srv->sweeper_wake, NULL);
    srv->cfg = cfg;
    srv->trust = trust;
    srv->tls = tls;
    srv->writer = writer;
    if (linger_start(&srv->linger)) {
        cg_err_set(err, "cannot start the lingering-close thread");
        http_stop(srv);
        return CG_EIO;
    }
    if (cfg->epoll && park_start(srv, &srv->park)) {
        cg_err_set(err, "cannot start the handshake-parking thread");
        http_stop(srv);
        return CG_EIO;
    }
    /* Before the daemon starts: its threads use them from the first connection. */
    if (identity_limiter_new(0, &srv->limiter) || identity_basic_cache_new(&srv->basic_cache) ||
        pki_parse_cache_new(&srv->cert_cache)) {
        cg_err_set(err, "out of memory");
        http_stop(srv);
        return CG_ENOMEM;
    }
    if (settings_address(cfg->listen, &addr, &addr_len, err)) {
        http_stop(srv);
        return CG_EINVAL;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        threads = n > 0 ? (unsigned)n : 1;
    }
    /* The connection's memory pool holds the request head, its parsed
     * fields and the answer's headers, and libmicrohttpd 0.9.75 zeroes all
     * of it after every request (MHD_pool_reset), so each connection that
     * carried a request keeps the whole pool resident: with 10,000 idle
     * connections a 64 KiB pool made 880 MiB of RSS, a 40 KiB one 645 MiB
     * (bench/compare.sh -f d). It is sized to hold a head of
     * --max-header-size, which stage_head enforces with a JSON 431; a head
     * that overflows the whole pool gets libmicrohttpd's own 431, which
     * tls/wire replaces with the same JSON (respond_own_answer). */
    srv->max_header_size = cfg->max_header_size;
    srv->pool_size = cfg->max_header_size + 8 * 1024;
    if (srv->pool_size < 16 * 1024)
        srv->pool_size = 16 * 1024;
    tls_wire_replace_own_answers(respond_own_answer);
    /*
     * epoll by default, poll on request (--event-loop). poll scans every
     * connection on each pass, so an answer's latency grows with the idle
     * connections open (p50 of a keep-alive push 0.65 -> 11.30 ms with
     * 10,000 idle, bench/compare.sh -f c); epoll stays flat (0.38 -> 0.44
     * ms). libmicrohttpd 0.9.75's epoll loop alone would spin while a TLS
     * handshake waits for the client's next flight (GnuTLS reads the socket
     * itself, so libmicrohttpd never sees the EAGAIN that takes a
     * connection off its ready list): park.c suspends such a connection
     * until its socket is readable.
     */
    flags = MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD |
            (cfg->epoll ? MHD_USE_EPOLL : MHD_USE_POLL) | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* --proxy-protocol: proxy.c accepts, reads the header and hands the
     * socket over (MHD_add_connection, which the ITC makes the workers see
     * at once); otherwise libmicrohttpd listens itself, as ever. */
    if (cfg->proxy_protocol)
        flags |= MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    else
        listen_opts[0] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr};
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_ARRAY, listen_opts, MHD_OPTION_HTTPS_MEM_CERT, tls_server_cert_pem(tls),
        MHD_OPTION_HTTPS_MEM_KEY, tls_server_key_pem(tls), MHD_OPTION_HTTPS_PRIORITIES,
        cfg->tls_priority ? cfg->tls_priority : settings_default_priority,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, srv->pool_size,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        cg_err_set(err,
                   "cannot listen on %s (address in use, not permitted, or the TLS priority "
                   "string or certificate was refused; see the log)",
                   cfg->listen);
        http_stop(srv);
        return CG_ERR;
    }
    /* Half the cores for password checks (at least one, at most four). */
    if (kdf_start(srv->trust, srv->limiter, srv->basic_cache,
                  threads / 2 ? (threads / 2 < 4 ? threads / 2 : 4) : 1, &srv->kdf)) {
        cg_err_set(err, "cannot start the password-check threads");
        http_stop(srv);
        return CG_ERR;
    }
    if (pthread_create(&srv->sweeper, NULL, sweeper_main, srv) != 0) {
        cg_err_set(err, "cannot start the connection sweeper thread");
        http_stop(srv);
        return CG_ERR;
    }
    srv->sweeper_started = true;
    if (cfg->proxy_protocol) {
        if (proxy_start(srv, &addr, addr_len, &srv->port, &srv->proxy, err)) {
            char msg[sizeof(err->msg)];

            snprintf(msg, sizeof(msg), "%s", err->msg);
            cg_err_set(err, "--listen %s: %s", cfg->listen, msg);
            http_stop(srv);
            return CG_ERR;
        }
    } else {
        di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
        srv->port = di ? di->port : 0;
    }
    {
        char host[INET6_ADDRSTRLEN];
        const void *a = addr.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&addr)->sin_addr;

        if (!inet_ntop(addr.ss_family, a, host, sizeof(host)))
            snprintf(host, sizeof(host), "?");
        snprintf(srv->address, sizeof(srv->address),
                 addr.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, (unsigned)srv->port);
    }
    *out_srv = srv;
    return CG_OK;
}

const char *http_address(struct http_server *srv)
{
    return srv->address;
}

void http_quiesce(struct http_server *srv)
{
    if (srv->proxy) {
        proxy_quiesce(srv->proxy);
        return;
    }
    /* libmicrohttpd's threads may still look at it: close after stopping. */
    srv->quiesced = MHD_quiesce_daemon(srv->daemon);
}

int http_active_requests(struct http_server *srv)
{
    return __atomic_load_n(&srv->active, __ATOMIC_ACQUIRE);
}

int http_unanswered_requests(struct http_server *srv)
{
    return __atomic_load_n(&srv->unanswered, __ATOMIC_ACQUIRE);
}

void http_stop(struct http_server *srv)
{
    if (!srv)
        return;
    if (srv->sweeper_started) {
        pthread_mutex_lock(&srv->conns_lock);
        srv->stopping = true;
        pthread_cond_signal(&srv->sweeper_wake);
        pthread_mutex_unlock(&srv->conns_lock);
        pthread_join(srv->sweeper, NULL);
    }
    /* Before the daemon stops: the acceptor hands connections to it, and
     * it refuses to stop with parked (suspended) connections. */
    proxy_stop(srv->proxy);
    park_stop(srv->park);
    kdf_stop(srv->kdf);
    if (srv->metrics)
        MHD_stop_daemon(srv->metrics);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    linger_stop(srv->linger);
    park_free(srv->park);
    identity_limiter_free(srv->limiter);
    identity_basic_cache_free(srv->basic_cache);
    pki_parse_cache_free(srv->cert_cache);
    if (srv->quiesced != MHD_INVALID_SOCKET)
        close(srv->quiesced);
    pthread_mutex_destroy(&srv->conns_lock);
    pthread_cond_destroy(&srv->sweeper_wake);
    free(srv);
}
