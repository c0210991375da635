/*
 * proxy: --proxy-protocol. certgate accepts the connections itself, reads
 * the PROXY protocol v2 header a trusted load balancer sends first (and
 * refuses one from anyone else), then hands the socket to libmicrohttpd
 * with MHD_add_connection and the client's address from the header, so
 * that libmicrohttpd reports that address everywhere (the logs, the
 * per-address connection limit, the Basic-auth limiter). One thread and one
 * epoll set wait for the first bytes of every new connection, each within
 * --head-timeout. Only the header's own bytes are read: the TLS ClientHello
 * stays in the socket for libmicrohttpd. Without --proxy-protocol none of
 * this runs and libmicrohttpd listens itself. Does not know TLS.
 */
#include "config.h"
#include "http/http_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/log.h"

/* ---- the header ---- */

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[6] = "PROXY ";

/* Whether the first @p len bytes of @p buf agree with @p sig so far. */
static bool agrees(const unsigned char *buf, size_t len, const void *sig, size_t sig_len)
{
    return memcmp(buf, sig, len < sig_len ? len : sig_len) == 0;
}

enum proxy_verdict proxy_v2_parse(const unsigned char *buf, size_t len, size_t *out_need,
                                  struct proxy_addr *out)
{
    unsigned ver, cmd, fam, proto;
    size_t body, need_addr = 0;

    memset(out, 0, sizeof(*out));
    *out_need = PROXY_V2_FIXED;
    if (!agrees(buf, len, v2_sig, sizeof(v2_sig))) {
        if (len > 0 && agrees(buf, len, v1_sig, sizeof(v1_sig)))
            snprintf(out->reason, sizeof(out->reason),
                     "a PROXY protocol v1 (text) header: certgate reads v2 only (HAProxy: "
                     "send-proxy-v2, not send-proxy)");
        else
            snprintf(out->reason, sizeof(out->reason),
                     "no PROXY protocol v2 header (first byte 0x%02x%s): the load balancer "
                     "must send one (HAProxy: send-proxy-v2 on the server line)",
                     buf[0], buf[0] == 0x16 ? ", a TLS handshake" : "");
        return PROXY_BAD;
    }
    if (len < PROXY_V2_FIXED)
        return PROXY_MORE;
    ver = buf[12] >> 4;
    cmd = buf[12] & 0x0f;
    fam = buf[13] >> 4;
    proto = buf[13] & 0x0f;
    body = (size_t)buf[14] << 8 | buf[15];
    if (ver != 2) {
        snprintf(out->reason, sizeof(out->reason), "PROXY header version %u, not 2", ver);
        return PROXY_BAD;
    }
    if (cmd != PROXY_CMD_LOCAL && cmd != PROXY_CMD_PROXY) {
        snprintf(out->reason, sizeof(out->reason),
                 "PROXY header command %u is neither LOCAL (0) nor PROXY (1)", cmd);
        return PROXY_BAD;
    }
    if (PROXY_V2_FIXED + body > PROXY_V2_MAX) {
        snprintf(out->reason, sizeof(out->reason),
                 "PROXY header announces %zu bytes, more than the %d certgate reads",
                 PROXY_V2_FIXED + body, PROXY_V2_MAX);
        return PROXY_BAD;
    }
    /* LOCAL (the balancer's own health check) carries no client: its
     * address block, if any, is skipped, whatever it says. */
    out->is_local = cmd == PROXY_CMD_LOCAL || fam == 0;
    if (cmd == PROXY_CMD_PROXY && fam != 0) {
        if (fam != 1 && fam != 2) {
            snprintf(out->reason, sizeof(out->reason),
                     "PROXY header address family %u: certgate needs the client's IPv4 or IPv6 "
                     "address%s",
                     fam, fam == 3 ? " (this is a Unix socket)" : "");
            return PROXY_BAD;
        }
        if (proto != 1) {
            snprintf(out->reason, sizeof(out->reason),
                     "PROXY header transport %u, not 1 (STREAM): certgate serves TCP only", proto);
            return PROXY_BAD;
        }
        need_addr = fam == 1 ? 12 : 36;
        if (body < need_addr) {
            snprintf(out->reason, sizeof(out->reason),
                     "PROXY header length %zu is shorter than the %zu bytes of its %s addresses",
                     body, need_addr, fam == 1 ? "IPv4" : "IPv6");
            return PROXY_BAD;
        }
    }
    *out_need = PROXY_V2_FIXED + body;
    if (len < *out_need)
        return PROXY_MORE;
    /* The addresses come first; TLVs may follow up to the length: skipped. */
    if (fam == 1 && !out->is_local) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;

        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, buf + 16, 4);
        memcpy(&sin->sin_port, buf + 24, 2);
        out->src_len = sizeof(*sin);
    } else if (fam == 2 && !out->is_local) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;

        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, buf + 16, 16);
        memcpy(&sin6->sin6_port, buf + 48, 2);
        out->src_len = sizeof(*sin6);
    }
    return PROXY_DONE;
}

enum proxy_first proxy_first_bytes(const unsigned char *buf, size_t len)
{
    if (len == 0)
        return PROXY_FIRST_MORE;
    if (agrees(buf, len, v2_sig, sizeof(v2_sig)))
        return len >= sizeof(v2_sig) ? PROXY_FIRST_HEADER : PROXY_FIRST_MORE;
    if (agrees(buf, len, v1_sig, sizeof(v1_sig)))
        return len >= sizeof(v1_sig) ? PROXY_FIRST_HEADER : PROXY_FIRST_MORE;
    return PROXY_FIRST_OTHER;
}

/* ---- the acceptor ---- */

/* A connection whose first bytes are awaited. */
struct pending {
    int fd;                          /* its socket (ours until handed over) */
    struct sockaddr_storage peer;    /* the TCP peer */
    socklen_t peer_len;              /* its length */
    char remote[INET6_ADDRSTRLEN];   /* the peer as text, for the log */
    bool is_trusted;                 /* the peer is in --trusted-proxy */
    uint64_t accepted;               /* when (clock_ms) */
    uint64_t deadline;               /* closed at this time (clock_ms) */
    size_t got;                      /* header bytes read (trusted) */
    unsigned char buf[PROXY_V2_MAX]; /* those bytes */
    struct pending *prev, *next;     /* the acceptor's list, oldest first */
};

struct proxy_acceptor {
    struct http_server *srv;     /* the server (cfg_of, the daemon) */
    struct cidr_list trusted;    /* --trusted-proxy */
    int listen_fd;               /* our listening socket, -1 once closed */
    int ep;                      /* epoll set: the listener, the wake fd, the pending */
    int wake;                    /* eventfd: stop */
    pthread_t thread;            /* runs acceptor_main */
    bool started;                /* the thread runs */
    struct pending *head, *tail; /* connections awaiting their first bytes */
    unsigned count;              /* how many */
    uint64_t paused_until;       /* accept is paused (out of descriptors) until then */
    uint64_t *accepted_at;       /* per descriptor: when it was accepted (clock_ms) */
    size_t accepted_cap;         /* entries in accepted_at */
};

/* Tags in epoll's data for the two descriptors that are not pending. */
static char tag_listen, tag_wake;

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;

    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)len))
        snprintf(out, len, "?");
}

/* Closes @p p's socket (unless handed over: -1), takes it off the list and
 * frees it. */
static void drop(struct proxy_acceptor *a, struct pending *p)
{
    if (p->fd >= 0) {
        epoll_ctl(a->ep, EPOLL_CTL_DEL, p->fd, NULL);
        close(p->fd);
    }
    if (p->prev)
        p->prev->next = p->next;
    else
        a->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        a->tail = p->prev;
    a->count--;
    free(p);
}

/* Closes a pending connection with its log line. */
static void refuse(struct proxy_acceptor *a, struct pending *p, const char *reason,
                   const char *detail)
{
    log_event("proxy_header_refused",
              json_pack("{s:s, s:b, s:s, s:s}", "remote", p->remote, "trusted", p->is_trusted,
                        "reason", reason, "detail", detail));
    drop(a, p);
}

/* Gives the socket to libmicrohttpd, which reports @p sa as the client. */
static void hand_over(struct proxy_acceptor *a, struct pending *p, const struct sockaddr *sa,
                      socklen_t sa_len)
{
    int fd = p->fd;

    if (fd >= 0 && (size_t)fd < a->accepted_cap)
        __atomic_store_n(&a->accepted_at[fd], p->accepted, __ATOMIC_RELEASE);
    epoll_ctl(a->ep, EPOLL_CTL_DEL, fd, NULL);
    p->fd = -1;
    /* It closes the socket itself when it cannot take it, and logs why (the
     * connection limits). */
    (void)MHD_add_connection(a->srv->daemon, fd, sa, sa_len);
    drop(a, p);
}

/* A trusted peer: reads exactly the header's bytes, never past them. */
static void read_header(struct proxy_acceptor *a, struct pending *p)
{
    struct proxy_addr pa;
    size_t need = PROXY_V2_FIXED;
    enum proxy_verdict v = PROXY_MORE;

    if (p->got > 0)
        v = proxy_v2_parse(p->buf, p->got, &need, &pa);
    while (v == PROXY_MORE) {
        ssize_t n = recv(p->fd, p->buf + p->got, need - p->got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            char msg[200];

            snprintf(msg, sizeof(msg),
                     "the connection %s after %zu bytes, before a complete PROXY protocol v2 "
                     "header",
                     n == 0 ? "closed" : "failed", p->got);
            refuse(a, p, "incomplete", msg);
            return;
        }
        if (n < 0) {
            /* Nothing more now (epoll is edge-triggered: the next bytes, or
             * the end of the stream, make a new event). */
            return;
        }
        p->got += (size_t)n;
        v = proxy_v2_parse(p->buf, p->got, &need, &pa);
    }
    if (v == PROXY_BAD) {
        refuse(a, p,
               p->buf[0] == v2_sig[0]                  ? "bad_header"
               : p->buf[0] == (unsigned char)v1_sig[0] ? "v1_header"
                                                       : "no_header",
               pa.reason);
        return;
    }
    if (pa.is_local)
        hand_over(a, p, (const struct sockaddr *)&p->peer, p->peer_len);
    else
        hand_over(a, p, (const struct sockaddr *)&pa.src, pa.src_len);
}

/* A peer not in --trusted-proxy: looks at its first bytes without taking
 * them; a PROXY header is refused, anything else goes to libmicrohttpd. */
static void peek_first(struct proxy_acceptor *a, struct pending *p, bool is_hup)
{
    unsigned char b[PROXY_V2_FIXED];
    ssize_t n;
    enum proxy_first f;

    do
        n = recv(p->fd, b, sizeof(b), MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        log_event("connection_closed", json_pack("{s:s, s:i, s:s}", "remote", p->remote, "requests",
                                                 0, "detail", "closed before sending anything"));
        drop(a, p);
        return;
    }
    f = proxy_first_bytes(b, (size_t)n);
    if (f == PROXY_FIRST_HEADER) {
        refuse(a, p, "untrusted_peer",
               "a PROXY protocol header from an address not in --trusted-proxy: only the "
               "listed load balancers may name another client address");
        return;
    }
    if (f == PROXY_FIRST_OTHER || is_hup) {
        /* Whatever it is, libmicrohttpd's TLS handshake judges it. */
        hand_over(a, p, (const struct sockaddr *)&p->peer, p->peer_len);
        return;
    }
    /* The start of a signature: wait for more (edge-triggered). */
}

static void accept_all(struct proxy_acceptor *a)
{
    const struct serve_config *cfg = cfg_of(a->srv);

    for (;;) {
        struct pending *p;
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(a->listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        char remote[INET6_ADDRSTRLEN];

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: without a pause the loop would spin. */
                log_event("accept_failed",
                          json_pack("{s:s, s:s}", "error", strerror(errno), "detail",
                                    "cannot accept a connection (out of descriptors or memory); "
                                    "accepting again in 100 ms"));
                epoll_ctl(a->ep, EPOLL_CTL_DEL, a->listen_fd, NULL);
                a->paused_until = clock_ms() + 100;
            }
            return;
        }
        addr_text((struct sockaddr *)&peer, remote, sizeof(remote));
        if (a->count >= cfg->max_connections) {
            log_event("connection_refused",
                      json_pack("{s:s, s:s}", "remote", remote, "detail",
                                "--max-connections connections already wait for their first "
                                "bytes"));
            close(fd);
            continue;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
            close(fd);
            continue;
        }
        p->fd = fd;
        p->peer = peer;
        p->peer_len = peer_len;
        memcpy(p->remote, remote, sizeof(remote));
        p->is_trusted = cidr_list_match(&a->trusted, (struct sockaddr *)&peer);
        p->accepted = clock_ms();
        p->deadline = p->accepted + 1000ULL * cfg->head_timeout;
        if (epoll_ctl(a->ep, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event){.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                            .data.ptr = p}) != 0) {
            close(fd);
            free(p);
            continue;
        }
        p->prev = a->tail;
        if (a->tail)
            a->tail->next = p;
        else
            a->head = p;
        a->tail = p;
        a->count++;
    }
}

/* Closes the connections whose first bytes did not come in --head-timeout. */
static void expire(struct proxy_acceptor *a, uint64_t now)
{
    for (struct pending *p = a->head, *next; p; p = next) {
        next = p->next;
        if (now < p->deadline)
            continue;
        log_event("head_timeout",
                  json_pack("{s:s, s:s, s:i, s:s}", "remote", p->remote, "stage",
                            p->is_trusted ? "PROXY protocol header"
                                          : "TLS handshake or first request head",
                            "head_timeout", (int)cfg_of(a->srv)->head_timeout, "detail",
                            p->is_trusted ? "the load balancer took too long to send the PROXY "
                                            "protocol header; connection closed (--head-timeout)"
                                          : "the client took too long to send its first bytes; "
                                            "connection closed (--head-timeout)"));
        drop(a, p);
    }
}

static void *acceptor_main(void *arg)
{
    struct proxy_acceptor *a = arg;
    struct epoll_event ev[64];

    for (;;) {
        /* Deadlines are whole seconds: a tick of 100 ms is exact enough. */
        int n = epoll_wait(a->ep, ev, 64, a->head || a->paused_until ? 100 : -1);
        uint64_t now = clock_ms();

        for (int i = 0; i < n; i++) {
            void *d = ev[i].data.ptr;
            bool is_hup = ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);

            if (d == &tag_wake)
                return NULL;
            if (d == &tag_listen) {
                accept_all(a);
                continue;
            }
            if (((struct pending *)d)->is_trusted)
                read_header(a, d);
            else
                peek_first(a, d, is_hup);
        }
        if (a->paused_until && now >= a->paused_until) {
            a->paused_until = 0;
            epoll_ctl(a->ep, EPOLL_CTL_ADD, a->listen_fd,
                      &(struct epoll_event){.events = EPOLLIN, .data.ptr = &tag_listen});
        }
        expire(a, now);
    }
}

static int open_listener(const struct sockaddr_storage *addr, socklen_t addr_len,
                         struct cg_err *err)
{
    int one = 1;
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        cg_err_set(err, "cannot open a socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* As libmicrohttpd does without MHD_USE_DUAL_STACK. */
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)addr, addr_len) != 0 || listen(fd, SOMAXCONN) != 0) {
        cg_err_set(err, "cannot listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int proxy_start(struct http_server *srv, const struct sockaddr_storage *addr, socklen_t addr_len,
                uint16_t *out_port, struct proxy_acceptor **out, struct cg_err *err)
{
    struct proxy_acceptor *a = calloc(1, sizeof(*a));
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    struct rlimit rl;
    int rc = CG_ERR;

    *out = NULL;
    if (!a) {
        cg_err_set(err, "out of memory");
        return CG_ENOMEM;
    }
    a->srv = srv;
    a->listen_fd = a->ep = a->wake = -1;
    /* settings_parse checked it: --proxy-protocol comes with a valid list. */
    rc = cidr_list_parse(srv->cfg->trusted_proxy, &a->trusted, err);
    if (rc)
        goto fail;
    rc = CG_ERR;
    /* Descriptor numbers stay below the open-file limit; 1 << 20 bounds
     * the table (8 MiB, touched only where used). */
    a->accepted_cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                              rl.rlim_cur < (1u << 20)
                          ? (size_t)rl.rlim_cur
                          : (size_t)1 << 20;
    a->accepted_at = calloc(a->accepted_cap, sizeof(*a->accepted_at));
    if (!a->accepted_at) {
        cg_err_set(err, "out of memory");
        rc = CG_ENOMEM;
        goto fail;
    }
    a->listen_fd = open_listener(addr, addr_len, err);
    if (a->listen_fd < 0)
        goto fail;
    if (getsockname(a->listen_fd, (struct sockaddr *)&bound, &bound_len) != 0) {
        cg_err_set(err, "getsockname: %s", strerror(errno));
        goto fail;
    }
    *out_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    a->ep = epoll_create1(EPOLL_CLOEXEC);
    a->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->ep < 0 || a->wake < 0 ||
        epoll_ctl(a->ep, EPOLL_CTL_ADD, a->listen_fd,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = &tag_listen}) != 0 ||
        epoll_ctl(a->ep, EPOLL_CTL_ADD, a->wake,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = &tag_wake}) != 0) {
        cg_err_set(err, "cannot set up the PROXY protocol acceptor: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&a->thread, NULL, acceptor_main, a) != 0) {
        cg_err_set(err, "cannot start the PROXY protocol acceptor thread");
        goto fail;
    }
    /* Named, so that its CPU can be told apart (bench/proxy.sh, top -H). */
    pthread_setname_np(a->thread, "cg-proxy-accept");
    a->started = true;
    *out = a;
    return CG_OK;
fail:
    proxy_stop(a);
    return rc;
}

uint64_t proxy_accepted_at(struct proxy_acceptor *a, int fd)
{
    if (!a || fd < 0 || (size_t)fd >= a->accepted_cap)
        return 0;
    return __atomic_load_n(&a->accepted_at[fd], __ATOMIC_ACQUIRE);
}

void proxy_quiesce(struct proxy_acceptor *a)
{
    if (!a)
        return;
    if (a->started) {
        uint64_t one = 1;

        if (write(a->wake, &one, sizeof(one)) < 0) {
            /* An eventfd write fails only when the counter is full: it is
             * signalled already. */
        }
        pthread_join(a->thread, NULL);
        a->started = false;
    }
    /* Nothing arrived in time for these: they never reached a request. */
    while (a->head)
        drop(a, a->head);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    a->listen_fd = -1;
}

void proxy_stop(struct proxy_acceptor *a)
{
    if (!a)
        return;
    proxy_quiesce(a);
    if (a->ep >= 0)
        close(a->ep);
    if (a->wake >= 0)
        close(a->wake);
    cidr_list_free(&a->trusted);
    free(a->accepted_at);
    free(a);
}
