/*
 * park: with --event-loop epoll, a connection whose TLS handshake waits for
 * the client is suspended and watched here until the client's bytes come.
 *
 * libmicrohttpd 0.9.75 keeps an epoll connection on its ready list until a
 * read through its own adapter returns EAGAIN. During the handshake GnuTLS
 * reads the socket itself, so that never happens: while the client works
 * on its next flight (signing, verifying our chain) libmicrohttpd repeats
 * gnutls_handshake and epoll_wait(0), burning a core. tls/wire tells us
 * each time a handshake step waits to read; the connection is then
 * suspended (out of libmicrohttpd's epoll set) and its socket armed, one
 * shot, in this thread's epoll set; when it is readable, or shut down by
 * the sweeper at --head-timeout, the connection is resumed and the
 * handshake goes on. poll() does not spin, and nothing here runs with it.
 * Does not read the socket and does not know TLS.
 */
#include "config.h"
#include "http/http_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "tls/wire.h"

struct parker {
    struct http_server *srv; /* its connection list, for the stop */
    int ep;                  /* the parked sockets, one shot each, and `wake` (data NULL) */
    int wake;                /* eventfd: the thread should end */
    pthread_t thread;        /* park_main */
    pthread_mutex_t lock;    /* orders parking against the stop */
    bool stopping;           /* no more parking (lock) */
};

/* Resumes @p c if it is still parked; whoever clears the flag resumes. */
static void unpark(struct conn *c)
{
    if (__atomic_exchange_n(&c->parked, false, __ATOMIC_ACQ_REL))
        MHD_resume_connection(c->mhd);
}

static void *park_main(void *arg)
{
    struct parker *p = arg;
    struct epoll_event ev[64];

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-park");

    for (;;) {
        int n = epoll_wait(p->ep, ev, 64, -1);

        for (int i = 0; i < n; i++) {
            if (!ev[i].data.ptr)
                return NULL;
            /* Parked, so libmicrohttpd cannot have freed it; once resumed
             * it may be, and its socket is disarmed until parked again. */
            unpark(ev[i].data.ptr);
        }
    }
}

/* tls/wire: a handshake step on @p session waits to read. */
static void park_connection(void *ctx, gnutls_session_t session)
{
    struct parker *p = ctx;
    struct MHD_Connection *mhd = gnutls_session_get_ptr(session);
    const union MHD_ConnectionInfo *ci =
        mhd ? MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    struct conn *c = ci ? ci->socket_context : NULL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT};

    if (!c || c->fd == MHD_INVALID_SOCKET)
        return;
    ev.data.ptr = c;
    pthread_mutex_lock(&p->lock);
    if (!p->stopping) {
        c->mhd = mhd;
        __atomic_store_n(&c->parked, true, __ATOMIC_RELEASE);
        MHD_suspend_connection(mhd);
        /* Level-triggered: bytes that came since GnuTLS's read fire at
         * once. A descriptor closed since it was last armed has left the
         * set, so a new connection on its number is added. */
        if (epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0 &&
            (errno != ENOENT || epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0))
            unpark(c); /* cannot watch it: libmicrohttpd's loop does, as before */
    }
    pthread_mutex_unlock(&p->lock);
}

int park_start(struct http_server *srv, struct parker **out)
{
    struct parker *p = calloc(1, sizeof(*p));

    *out = NULL;
    if (!p)
        return CG_ENOMEM;
    p->srv = srv;
    if (wake_set_open(&p->ep, &p->wake)) {
        free(p);
        return CG_EIO;
    }
    pthread_mutex_init(&p->lock, NULL);
    if (pthread_create(&p->thread, NULL, park_main, p) != 0) {
        pthread_mutex_destroy(&p->lock);
        wake_set_close(p->ep, p->wake);
        free(p);
        return CG_EIO;
    }
    tls_wire_on_handshake_wait(park_connection, p);
    *out = p;
    return CG_OK;
}

void park_stop(struct parker *p)
{
    if (!p)
        return;
    /* No connection is parked after this, and the thread ends; then every
     * parked one is resumed (libmicrohttpd refuses to stop with suspended
     * connections), before the daemon stops. */
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_mutex_unlock(&p->lock);
    wake_set_signal(p->wake);
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->srv->conns_lock);
    for (struct conn *c = p->srv->conns; c; c = c->next)
        unpark(c);
    pthread_mutex_unlock(&p->srv->conns_lock);
}

void park_free(struct parker *p)
{
    if (!p)
        return;
    tls_wire_on_handshake_wait(NULL, NULL);
    pthread_mutex_destroy(&p->lock);
    wake_set_close(p->ep, p->wake);
    free(p);
}
