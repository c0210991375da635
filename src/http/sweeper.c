/*
 * sweeper: enforces --head-timeout from its own thread: a connection whose
 * handshake and request head are not done in time has its socket shut
 * down (libmicrohttpd's own timeout measures only silence, which
 * --idle-timeout sets). Does not free connections: libmicrohttpd does, and
 * tells server.c.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"

/* ---- the head deadline ---- */

/* When the peer last sent data, in our monotonic ms, or 0 if unknown. */
static uint64_t last_data_received(MHD_socket fd, uint64_t now)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < sizeof(ti))
        return 0;
    return now > ti.tcpi_last_data_recv ? now - ti.tcpi_last_data_recv : 0;
}

/*
 * Closes the connections whose TLS handshake and request head are not done
 * within --head-timeout (a client sending one byte a second would hold one
 * for ever: --idle-timeout only measures silence). libmicrohttpd 0.9.75
 * cannot close a connection from outside, so the sweeper shuts its socket
 * down; libmicrohttpd then sees the end of the stream on its own thread and
 * closes it as usual. The descriptor is valid while the connection is on
 * the list under conns_lock (see on_connection).
 */
static void sweep(struct http_server *srv)
{
    uint64_t now = (uint64_t)clock_ms(), timeout = 1000ULL * cfg_of(srv)->head_timeout;
    bool first;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next) {
        uint64_t st = __atomic_load_n(&c->head_state, __ATOMIC_ACQUIRE);

        if (c->fd == MHD_INVALID_SOCKET || HEAD_KIND(st) == HEAD_NONE)
            continue;
        if (HEAD_KIND(st) == HEAD_IDLE) {
            uint64_t got = last_data_received(c->fd, now);

            /* Data after the end of the last request: a head has begun.
             * The kernel's figure is in coarse ticks, hence the margin. */
            if (got > HEAD_TIME(st) + 50)
                __atomic_compare_exchange_n(&c->head_state, &st, HEAD_DEADLINE | (got + timeout),
                                            false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            continue;
        }
        if (now < HEAD_TIME(st) || c->swept)
            continue;
        c->swept = true;
        shutdown(c->fd, SHUT_RDWR);
        first = c->requests == 0 && first_head_timeout(cfg_of(srv)) < cfg_of(srv)->head_timeout;
        log_event("head_timeout",
                  json_pack("{s:s, s:s, s:i, s:s}", "remote", c->remote, "stage",
                            c->requests ? "request head" : "TLS handshake or first request head",
                            "head_timeout", (int)cfg_of(srv)->head_timeout, "detail",
                            first ? "the TLS handshake and first request head were not done "
                                    "within --idle-timeout (sooner than --head-timeout); "
                                    "connection closed"
                                  : "the client took too long to send its request head; "
                                    "connection closed (--head-timeout)"));
    }
    pthread_mutex_unlock(&srv->conns_lock);
}

void *sweeper_main(void *arg)
{
    struct http_server *srv = arg;

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-sweeper");

    pthread_mutex_lock(&srv->conns_lock);
    while (!srv->stopping) {
        struct timespec until;

        clock_deadline(&until, 250);
        pthread_cond_timedwait(&srv->sweeper_wake, &srv->conns_lock, &until);
        if (srv->stopping)
            break;
        pthread_mutex_unlock(&srv->conns_lock);
        sweep(srv);
        pthread_mutex_lock(&srv->conns_lock);
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return NULL;
}
