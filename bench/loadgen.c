/* loadgen: an HTTP/1.1-over-TLS load generator with a client certificate,
 * for bench/compare.sh. GnuTLS, non-blocking sockets, one epoll loop per
 * thread (one thread by default: on a 2-core box the generator shares the
 * cores with the server under test).
 *
 * Modes:
 *   keepalive  N connections, each sending requests back to back
 *   new        each request on a new TCP connection with a full handshake
 *   resumed    like new, but each connection resumes the TLS session (ticket)
 *              of the previous one on its slot; reports how many resumed
 *   idle       opens N connections, one request each, then holds them open
 *              until SIGTERM or the duration ends (prints idle_ready=N when
 *              all are up)
 *
 * Prints one line of key=value pairs per run: requests/s over the measured
 * window, status codes, errors (any status other than --expect, and
 * connection or TLS failures), latency percentiles, and, with --pids, the
 * CPU time those processes used during the window (utime + stime from
 * /proc/PID/stat, which covers all their threads) per request.
 *
 * Not part of the default build: bench/compare.sh compiles it with
 *   cc -O2 -o loadgen bench/loadgen.c $(pkg-config --cflags --libs gnutls) -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_KEEPALIVE, M_NEW, M_RESUMED, M_IDLE };

enum state { ST_FREE, ST_CONNECT, ST_HS, ST_SEND, ST_RECV, ST_IDLE, ST_RETRY };

/* Latency histogram in microseconds: exact below 256, then 128 buckets per
 * power of two (under 0.8% error). */
#define HIST_N (64 * 128 + 256)

struct hist {
    uint64_t n[HIST_N]; /* count per bucket */
};

struct conn {
    int fd;                /* socket, -1 when closed */
    gnutls_session_t s;    /* TLS session, NULL when closed */
    enum state st;         /* where the connection is */
    uint32_t events;       /* epoll interest currently registered */
    size_t woff;           /* request bytes sent */
    char *rbuf;            /* response bytes received */
    size_t rlen;           /* bytes in rbuf */
    size_t rcap;           /* size of rbuf */
    size_t need;           /* full response length once the head is parsed, else 0 */
    int status;            /* status code of the response being read */
    bool close_after;      /* the response said Connection: close */
    uint64_t t0;           /* start of the request (new/resumed: of the connection) */
    uint64_t retry_at;     /* ST_RETRY: when to connect again */
    gnutls_datum_t ticket; /* resumed mode: session data of the last connection */
    bool answered;         /* has had a response on this slot */
};

struct worker {
    pthread_t th;         /* the thread */
    int ep;               /* epoll descriptor */
    struct conn *c;       /* its connections */
    int nc;               /* how many */
    int started;          /* idle mode: connections started so far */
    int connecting;       /* idle mode: started, first response not yet read */
    int up;               /* idle mode: established and answered */
    int failed;           /* idle mode: gave up */
    int warm;             /* connection slots that have had an answer */
    int retrying;         /* connections in ST_RETRY */
    struct hist h;        /* latencies in the window */
    uint64_t status[600]; /* status codes in the window */
    uint64_t ok;          /* expected status in the window */
    uint64_t err_status;  /* other status in the window */
    uint64_t all_ok;      /* expected status over the whole run (warm-up too) */
    uint64_t err_conn;    /* connect/TLS/protocol failures (whole run) */
    uint64_t handshakes;  /* full handshakes completed (whole run) */
    uint64_t resumed;     /* resumed handshakes completed (whole run) */
    uint64_t tickets;     /* connections that received a session ticket */
    uint64_t reconnects;  /* keep-alive connections the server closed */
    uint64_t idle_closed; /* idle connections the server closed */
    char tls_desc[128];   /* negotiated protocol/group/cipher of one connection */
};

static struct {
    const char *host;            /* server address */
    int port;                    /* server port */
    const char *sni;             /* server name (SNI and verification) */
    const char *cert, *key, *ca; /* client certificate, key, CA file */
    const char *priority;        /* GnuTLS priority string or NULL */
    bool verify;                 /* verify the server certificate */
    enum mode mode;              /* what to do */
    int conns;                   /* connections */
    int threads;                 /* event loops */
    double secs;                 /* measured window */
    double warmup;               /* before the window */
    const char *method, *path;   /* request line */
    char *req;                   /* the full request */
    size_t req_len;              /* its length */
    size_t body_len;             /* body bytes */
    int expect;                  /* expected status */
    int ramp;                    /* idle mode: handshakes in flight */
    pid_t pids[64];              /* processes whose CPU is measured */
    int npids;                   /* how many */
    const char *label;           /* echoed in the output */
} opt = {.host = "127.0.0.1",
         .port = 8443,
         .sni = "localhost",
         .verify = true,
         .mode = M_KEEPALIVE,
         .conns = 16,
         .threads = 1,
         .secs = 10,
         .warmup = 1,
         .path = "/",
         .expect = 0,
         .ramp = 64};

static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static struct sockaddr_in server_addr;
/* The measured window (CLOCK_MONOTONIC ns), set by the main thread once
 * every connection has had its first answer (keep-alive) or after the
 * warm-up (other modes); until then nothing counts. */
static uint64_t win_start = UINT64_MAX, win_end = UINT64_MAX;
static volatile sig_atomic_t stop; /* set by SIGTERM/SIGINT or the main thread */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned hist_bucket(uint64_t us)
{
    int msb, shift;

    if (us < 256)
        return (unsigned)us;
    msb = 63 - __builtin_clzll(us);
    shift = msb - 7;
    if (shift > 63)
        shift = 63;
    return (unsigned)(shift * 128 + (int)(us >> shift));
}

static double hist_value(unsigned idx)
{
    int shift;

    if (idx < 256)
        return idx;
    shift = (int)idx / 128 - 1;
    return (double)((uint64_t)(idx - (unsigned)shift * 128) << shift) + (double)(1ull << shift) / 2;
}

static double hist_pct(const struct hist *h, double p)
{
    uint64_t total = 0, acc = 0, want;
    unsigned i;

    for (i = 0; i < HIST_N; i++)
        total += h->n[i];
    if (total == 0)
        return 0;
    want = (uint64_t)(p / 100.0 * (double)total);
    if (want >= total)
        want = total - 1;
    for (i = 0; i < HIST_N; i++) {
        acc += h->n[i];
        if (acc > want)
            return hist_value(i);
    }
    return 0;
}

static bool in_window(uint64_t t)
{
    return t >= __atomic_load_n(&win_start, __ATOMIC_ACQUIRE) &&
           t < __atomic_load_n(&win_end, __ATOMIC_ACQUIRE);
}

static void set_events(struct worker *w, struct conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};

    if (c->events == ev)
        return;
    if (epoll_ctl(w->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) == 0)
        c->events = ev;
}

static void conn_close(struct conn *c)
{
    if (c->s) {
        gnutls_deinit(c->s);
        c->s = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also drops it from the epoll set */
        c->fd = -1;
    }
    c->events = 0;
    c->st = ST_FREE;
}

static void conn_start(struct worker *w, struct conn *c);

/* A failure: count it, close, and try again in 10 ms (idle mode: give up). */
static void conn_fail(struct worker *w, struct conn *c)
{
    w->err_conn++;
    conn_close(c);
    if (opt.mode == M_IDLE) {
        w->connecting--;
        w->failed++;
        return;
    }
    c->st = ST_RETRY;
    c->retry_at = now_ns() + 10000000u;
    w->retrying++;
}

static void conn_start(struct worker *w, struct conn *c)
{
    int one = 1, r;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(w, c);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->t0 = now_ns();
    c->woff = 0;
    c->rlen = 0;
    c->need = 0;
    c->events = 0;
    if (gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0) {
        c->s = NULL;
        conn_fail(w, c);
        return;
    }
    gnutls_priority_set(c->s, prio);
    gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, opt.sni, strlen(opt.sni));
    if (opt.verify)
        gnutls_session_set_verify_cert(c->s, opt.sni, 0);
    gnutls_handshake_set_timeout(c->s, 0);
    gnutls_transport_set_int(c->s, c->fd);
    if (opt.mode == M_RESUMED && c->ticket.size)
        gnutls_session_set_data(c->s, c->ticket.data, c->ticket.size);
    r = connect(c->fd, (struct sockaddr *)&server_addr, sizeof(server_addr));
    if (r < 0 && errno != EINPROGRESS) {
        conn_fail(w, c);
        return;
    }
    c->st = r == 0 ? ST_HS : ST_CONNECT;
    set_events(w, c, r == 0 ? EPOLLOUT | EPOLLIN : EPOLLOUT);
}

/* Parses the response head once it is complete: sets status, need and
 * close_after. Returns -1 on a malformed or unsupported response. */
static int parse_head(struct conn *c)
{
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4), *p, *eol;
    size_t head;
    long long clen = -1;

    if (!end)
        return c->rlen > 65536 ? -1 : 0;
    head = (size_t)(end - c->rbuf) + 4;
    if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(c->rbuf + 9);
    if (c->status < 100 || c->status > 599)
        return -1;
    c->close_after = c->rbuf[7] == '0';
    p = (char *)memchr(c->rbuf, '\n', head) + 1;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end + 2 - p));
        if (!eol)
            break;
        if (strncasecmp(p, "content-length:", 15) == 0)
            clen = strtoll(p + 15, NULL, 10);
        else if (strncasecmp(p, "transfer-encoding:", 18) == 0)
            return -1; /* chunked answers are not expected from either server */
        else if (strncasecmp(p, "connection:", 11) == 0) {
            char *v = p + 11;

            while (*v == ' ')
                v++;
            if (strncasecmp(v, "close", 5) == 0)
                c->close_after = true;
        }
        p = eol + 1;
    }
    if (clen < 0) {
        /* 1xx, 204 and 304 have no body; others need a length here */
        if (c->status == 204 || c->status == 304 || c->status < 200)
            clen = 0;
        else
            return -1;
    }
    c->need = head + (size_t)clen;
    return 0;
}

/* A complete response: count it, then send the next request or reconnect. */
static void on_response(struct worker *w, struct conn *c)
{
    uint64_t t = now_ns();
    bool good = opt.expect ? c->status == opt.expect : c->status / 100 == 2;

    w->all_ok += good;
    if (!c->answered) {
        c->answered = true;
        __atomic_add_fetch(&w->warm, 1, __ATOMIC_RELEASE);
    }
    if (in_window(t)) {
        w->status[c->status]++;
        if (good)
            w->ok++;
        else
            w->err_status++;
        w->h.n[hist_bucket((t - c->t0) / 1000)]++;
    }
    if (c->rlen > c->need) {
        w->err_conn++; /* bytes after the response: nothing was asked for */
        c->close_after = true;
    }
    switch (opt.mode) {
    case M_IDLE:
        if (c->close_after) {
            conn_fail(w, c);
            return;
        }
        c->st = ST_IDLE;
        w->connecting--;
        w->up++;
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
        set_events(w, c, EPOLLIN);
        return;
    case M_KEEPALIVE:
        if (c->close_after) {
            w->reconnects++;
            conn_close(c);
            conn_start(w, c);
            return;
        }
        c->st = ST_SEND;
        c->woff = 0;
        c->rlen = 0;
        c->need = 0;
        c->t0 = t;
        set_events(w, c, EPOLLOUT);
        return;
    case M_NEW:
    case M_RESUMED:
        if (opt.mode == M_RESUMED) {
            /* without a ticket, get_data2 would wait a round trip for one */
            bool has = gnutls_session_get_flags(c->s) & GNUTLS_SFLAGS_SESSION_TICKET;

            gnutls_free(c->ticket.data);
            c->ticket.data = NULL;
            c->ticket.size = 0;
            if (has)
                w->tickets++;
            if (has && gnutls_session_get_data2(c->s, &c->ticket) < 0) {
                c->ticket.data = NULL;
                c->ticket.size = 0;
            }
        }
        /* one close_notify attempt, as a polite client would; no waiting */
        gnutls_bye(c->s, GNUTLS_SHUT_WR);
        conn_close(c);
        conn_start(w, c);
        return;
    }
}

static void after_handshake(struct worker *w, struct conn *c)
{
    if (gnutls_session_is_resumed(c->s))
        w->resumed++;
    else
        w->handshakes++;
    if (!w->tls_desc[0]) {
        char *d = gnutls_session_get_desc(c->s);

        if (d) {
            snprintf(w->tls_desc, sizeof(w->tls_desc), "%s", d);
            gnutls_free(d);
        }
    }
}

/* Moves one connection forward until it would block. */
static void drive(struct worker *w, struct conn *c, uint32_t ev)
{
    ssize_t r;
    int err;
    socklen_t len;

    for (;;) {
        switch (c->st) {
        case ST_FREE:
        case ST_RETRY: return;
        case ST_CONNECT:
            err = 0;
            len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                conn_fail(w, c);
                return;
            }
            if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            c->st = ST_HS;
            break;
        case ST_HS:
            r = gnutls_handshake(c->s);
            if (r == 0) {
                after_handshake(w, c);
                c->st = ST_SEND;
                if (opt.mode == M_KEEPALIVE)
                    c->t0 = now_ns();
                break;
            }
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                set_events(w, c, gnutls_record_get_direction(c->s) ? EPOLLOUT : EPOLLIN);
                return;
            }
            if (!gnutls_error_is_fatal((int)r))
                break;
            if (w->err_conn < 3)
                fprintf(stderr, "loadgen: handshake: %s\n", gnutls_strerror((int)r));
            conn_fail(w, c);
            return;
        case ST_SEND:
            r = gnutls_record_send(c->s, opt.req + c->woff, opt.req_len - c->woff);
            if (r > 0) {
                c->woff += (size_t)r;
                if (c->woff == opt.req_len) {
                    c->st = ST_RECV;
                    c->rlen = 0;
                    c->need = 0;
                }
                break;
            }
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                set_events(w, c, EPOLLOUT);
                return;
            }
            conn_fail(w, c);
            return;
        case ST_RECV:
            if (c->rcap - c->rlen < 16384) {
                size_t cap = c->rcap ? c->rcap * 2 : 32768;
                char *b = realloc(c->rbuf, cap);

                if (!b) {
                    conn_fail(w, c);
                    return;
                }
                c->rbuf = b;
                c->rcap = cap;
            }
            r = gnutls_record_recv(c->s, c->rbuf + c->rlen, c->rcap - c->rlen);
            if (r > 0) {
                c->rlen += (size_t)r;
                if (!c->need && parse_head(c) < 0) {
                    if (w->err_conn < 3)
                        fprintf(stderr, "loadgen: unparsable response: %.60s\n", c->rbuf);
                    conn_fail(w, c);
                    return;
                }
                if (c->need && c->rlen >= c->need) {
                    on_response(w, c);
                    if (c->st != ST_SEND && c->st != ST_HS)
                        return;
                }
                break;
            }
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                set_events(w, c, EPOLLIN);
                return;
            }
            if (r < 0 && !gnutls_error_is_fatal((int)r))
                break;
            /* the server closed or the record layer failed mid-answer */
            if (opt.mode == M_KEEPALIVE && c->rlen == 0)
                w->reconnects++;
            conn_fail(w, c);
            return;
        case ST_IDLE: {
            char tmp[512];

            r = gnutls_record_recv(c->s, tmp, sizeof(tmp));
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                return;
            if (r > 0 || (r < 0 && !gnutls_error_is_fatal((int)r)))
                break;
            w->idle_closed++;
            w->up--;
            conn_close(c);
            return;
        }
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[256];
    int i, n;

    for (i = 0; i < w->nc; i++) {
        w->c[i].fd = -1;
        if (opt.mode == M_IDLE)
            continue;
        conn_start(w, &w->c[i]);
    }
    while (!stop) {
        uint64_t t;

        if (opt.mode == M_IDLE)
            while (w->started < w->nc && w->connecting < opt.ramp) {
                w->connecting++;
                conn_start(w, &w->c[w->started++]);
            }
        n = epoll_wait(w->ep, ev, 256, w->retrying ? 5 : 50);
        for (i = 0; i < n; i++)
            drive(w, ev[i].data.ptr, ev[i].events);
        t = now_ns();
        if (opt.mode != M_IDLE && t >= __atomic_load_n(&win_end, __ATOMIC_ACQUIRE))
            break;
        if (w->retrying)
            for (i = 0; i < w->nc; i++)
                if (w->c[i].st == ST_RETRY && w->c[i].retry_at <= t) {
                    w->retrying--;
                    conn_start(w, &w->c[i]);
                }
    }
    return NULL;
}

/* utime + stime of a process (all its threads), in clock ticks. */
static long long proc_ticks(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static long long pids_ticks(void)
{
    long long t = 0, v;
    int i;

    for (i = 0; i < opt.npids; i++) {
        v = proc_ticks(opt.pids[i]);
        if (v < 0)
            return -1;
        t += v;
    }
    return t;
}

static double self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};

    while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --connect HOST:PORT --cert F --key F [--ca F | --no-verify] [options]\n"
            "  --mode keepalive|new|resumed|idle   (default keepalive)\n"
            "  -c N          connections (default 16)\n"
            "  -t N          event-loop threads (default 1)\n"
            "  -d SECS       measured window (default 10; idle: how long to hold)\n"
            "  --warmup SECS before the window (default 1)\n"
            "  -m METHOD     default POST with a body, else GET\n"
            "  -p PATH       default /\n"
            "  -b BYTES      JSON body of exactly BYTES bytes (0: none)\n"
            "  --body-file F body from a file\n"
            "  --expect CODE the status that counts as success (default: any 2xx)\n"
            "  --sni NAME    server name (default localhost)\n"
            "  --priority S  GnuTLS priority string (default: GnuTLS's)\n"
            "  --ramp N      idle mode: handshakes in flight (default 64)\n"
            "  --pids P,...  measure these processes' CPU over the window\n"
            "  --label S     echoed as label=S\n");
    exit(2);
}

static char *read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        b = malloc((size_t)n + 1);
        if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
            free(b);
            b = NULL;
        }
        *out_len = (size_t)n;
    }
    fclose(f);
    return b;
}

/* The request, built once: {"name":"bench","pad":"xxx..."} padded to size. */
static void build_request(char *body, size_t body_len)
{
    char head[1024];
    int hn;

    if (!opt.method)
        opt.method = body_len ? "POST" : "GET";
    hn = snprintf(head, sizeof(head),
                  "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: certgate-loadgen\r\n"
                  "Accept: */*\r\n",
                  opt.method, opt.path, opt.sni);
    if (body_len)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn,
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "\r\n");
    opt.req_len = (size_t)hn + body_len;
    opt.req = malloc(opt.req_len);
    if (!opt.req)
        exit(1);
    memcpy(opt.req, head, (size_t)hn);
    if (body_len)
        memcpy(opt.req + hn, body, body_len);
}

static char *make_body(size_t n)
{
    static const char pre[] = "{\"name\":\"bench\",\"pad\":\"", post[] = "\"}";
    size_t fixed = sizeof(pre) - 1 + sizeof(post) - 1;
    char *b;

    if (n < fixed) {
        fprintf(stderr, "loadgen: -b needs at least %zu bytes\n", fixed);
        exit(2);
    }
    b = malloc(n);
    if (!b)
        exit(1);
    memcpy(b, pre, sizeof(pre) - 1);
    memset(b + sizeof(pre) - 1, 'x', n - fixed);
    memcpy(b + n - (sizeof(post) - 1), post, sizeof(post) - 1);
    return b;
}

static const char *mode_name(enum mode m)
{
    return m == M_KEEPALIVE ? "keepalive"
           : m == M_NEW     ? "new"
           : m == M_RESUMED ? "resumed"
                            : "idle";
}

int main(int argc, char **argv)
{
    struct worker *w;
    struct rlimit rl;
    char *body = NULL, *colon;
    const char *connect_to = NULL, *body_file = NULL;
    size_t body_len = 0;
    long long t0, t1;
    double c0, c1, win;
    struct hist *h;
    uint64_t status[600] = {0}, ok = 0, all_ok = 0, err_status = 0, err_conn = 0, hs = 0, res = 0,
             tk = 0, rec = 0, idle_closed = 0;
    int i, j, per, rest, r;
    const char *tls_desc = "";
    sigset_t sigs;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--connect"))
            connect_to = v;
        else if (ARG("--cert"))
            opt.cert = v;
        else if (ARG("--key"))
            opt.key = v;
        else if (ARG("--ca"))
            opt.ca = v;
        else if (strcmp(a, "--no-verify") == 0)
            opt.verify = false;
        else if (ARG("--mode")) {
            if (strcmp(v, "keepalive") == 0)
                opt.mode = M_KEEPALIVE;
            else if (strcmp(v, "new") == 0)
                opt.mode = M_NEW;
            else if (strcmp(v, "resumed") == 0)
                opt.mode = M_RESUMED;
            else if (strcmp(v, "idle") == 0)
                opt.mode = M_IDLE;
            else
                usage();
        } else if (ARG("-c"))
            opt.conns = atoi(v);
        else if (ARG("-t"))
            opt.threads = atoi(v);
        else if (ARG("-d"))
            opt.secs = atof(v);
        else if (ARG("--warmup"))
            opt.warmup = atof(v);
        else if (ARG("-m"))
            opt.method = v;
        else if (ARG("-p"))
            opt.path = v;
        else if (ARG("-b"))
            body_len = (size_t)atol(v);
        else if (ARG("--body-file"))
            body_file = v;
        else if (ARG("--expect"))
            opt.expect = atoi(v);
        else if (ARG("--sni"))
            opt.sni = v;
        else if (ARG("--priority"))
            opt.priority = v;
        else if (ARG("--ramp"))
            opt.ramp = atoi(v);
        else if (ARG("--label"))
            opt.label = v;
        else if (ARG("--pids")) {
            char *s = strdup(v), *tok, *save = NULL;

            for (tok = strtok_r(s, ",", &save); tok && opt.npids < 64;
                 tok = strtok_r(NULL, ",", &save))
                opt.pids[opt.npids++] = (pid_t)atoi(tok);
        } else
            usage();
#undef ARG
    }
    if (!connect_to || !opt.cert || !opt.key || (opt.verify && !opt.ca) || opt.conns < 1 ||
        opt.threads < 1 || opt.secs <= 0 || opt.ramp < 1)
        usage();
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
    colon = strrchr(connect_to, ':');
    if (!colon)
        usage();
    opt.host = strndup(connect_to, (size_t)(colon - connect_to));
    opt.port = atoi(colon + 1);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --connect takes an IPv4 address\n");
        return 2;
    }
    if (body_file) {
        body = read_file(body_file, &body_len);
        if (!body) {
            fprintf(stderr, "loadgen: cannot read %s\n", body_file);
            return 2;
        }
    } else if (body_len)
        body = make_body(body_len);
    opt.body_len = body_len;
    build_request(body, body_len);

    /* room for 10,000+ connections */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    gnutls_global_init();
    gnutls_certificate_allocate_credentials(&cred);
    r = gnutls_certificate_set_x509_key_file(cred, opt.cert, opt.key, GNUTLS_X509_FMT_PEM);
    if (r < 0) {
        fprintf(stderr, "loadgen: %s / %s: %s\n", opt.cert, opt.key, gnutls_strerror(r));
        return 1;
    }
    if (opt.ca && gnutls_certificate_set_x509_trust_file(cred, opt.ca, GNUTLS_X509_FMT_PEM) <= 0) {
        fprintf(stderr, "loadgen: no CA certificate in %s\n", opt.ca);
        return 1;
    }
    r = opt.priority ? gnutls_priority_init(&prio, opt.priority, NULL)
                     : gnutls_priority_init(&prio, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "loadgen: priority: %s\n", gnutls_strerror(r));
        return 1;
    }

    w = calloc((size_t)opt.threads, sizeof(*w));
    if (!w)
        return 1;
    /* SIGTERM and SIGINT go to the main thread, which sleeps until they come */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    per = opt.conns / opt.threads;
    rest = opt.conns % opt.threads;
    for (i = 0; i < opt.threads; i++) {
        w[i].nc = per + (i < rest);
        w[i].c = calloc((size_t)w[i].nc, sizeof(struct conn));
        w[i].ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w[i].c || w[i].ep < 0)
            return 1;
        pthread_create(&w[i].th, NULL, worker_main, &w[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);

    if (opt.mode == M_IDLE) {
        /* report once every connection is up (or has failed), then hold */
        int up = 0, failed = 0;
        uint64_t deadline = now_ns() + (uint64_t)(opt.secs * 1e9);

        for (;;) {
            up = failed = 0;
            for (i = 0; i < opt.threads; i++) {
                up += __atomic_load_n(&w[i].up, __ATOMIC_RELAXED);
                failed += __atomic_load_n(&w[i].failed, __ATOMIC_RELAXED);
            }
            if (up + failed >= opt.conns || stop || now_ns() >= deadline)
                break;
            usleep(100000);
        }
        printf("idle_ready=%d failed=%d\n", up, failed);
        fflush(stdout);
        sleep_until(deadline);
        stop = 1;
        for (i = 0; i < opt.threads; i++)
            pthread_join(w[i].th, NULL);
        for (i = 0; i < opt.threads; i++) {
            idle_closed += w[i].idle_closed;
            err_conn += w[i].err_conn;
        }
        printf("mode=idle conns=%d idle_closed_by_server=%llu errors=%llu\n", opt.conns,
               (unsigned long long)idle_closed, (unsigned long long)err_conn);
        return 0;
    }

    {
        /* keep-alive: the window opens once every connection has had an
         * answer (a server can finish its side of hundreds of handshakes
         * well after the clients think they are done), then the warm-up */
        uint64_t start = now_ns(), ws, limit = start + 120 * 1000000000ull;
        int warm = 0;

        while (opt.mode == M_KEEPALIVE && !stop && now_ns() < limit) {
            for (warm = 0, i = 0; i < opt.threads; i++)
                warm += __atomic_load_n(&w[i].warm, __ATOMIC_ACQUIRE);
            if (warm >= opt.conns)
                break;
            usleep(10000);
        }
        ws = now_ns() + (uint64_t)(opt.warmup * 1e9);
        __atomic_store_n(&win_end, ws + (uint64_t)(opt.secs * 1e9), __ATOMIC_RELEASE);
        __atomic_store_n(&win_start, ws, __ATOMIC_RELEASE);
    }
    sleep_until(win_start);
    t0 = pids_ticks();
    c0 = self_cpu_s();
    sleep_until(win_end);
    t1 = pids_ticks();
    c1 = self_cpu_s();
    win = (double)(win_end - win_start) / 1e9;
    if (stop) /* interrupted: the window is shorter than asked */
        win = opt.secs;
    stop = 1;
    for (i = 0; i < opt.threads; i++)
        pthread_join(w[i].th, NULL);

    h = calloc(1, sizeof(*h));
    if (!h)
        return 1;
    for (i = 0; i < opt.threads; i++) {
        for (j = 0; j < HIST_N; j++)
            h->n[j] += w[i].h.n[j];
        for (j = 0; j < 600; j++)
            status[j] += w[i].status[j];
        ok += w[i].ok;
        all_ok += w[i].all_ok;
        err_status += w[i].err_status;
        err_conn += w[i].err_conn;
        hs += w[i].handshakes;
        res += w[i].resumed;
        tk += w[i].tickets;
        rec += w[i].reconnects;
        if (!tls_desc[0])
            tls_desc = w[i].tls_desc;
    }
    {
        uint64_t req = ok + err_status;
        double ticks = (double)sysconf(_SC_CLK_TCK);

        printf("mode=%s conns=%d threads=%d secs=%.1f body=%zu method=%s requests=%llu rps=%.0f "
               "ok=%llu errors=%llu err_status=%llu err_conn=%llu",
               mode_name(opt.mode), opt.conns, opt.threads, win, opt.body_len, opt.method,
               (unsigned long long)req, (double)req / win, (unsigned long long)ok,
               (unsigned long long)(err_status + err_conn), (unsigned long long)err_status,
               (unsigned long long)err_conn);
        for (j = 100; j < 600; j++)
            if (status[j])
                printf(" s%d=%llu", j, (unsigned long long)status[j]);
        printf(" p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f", hist_pct(h, 50), hist_pct(h, 90),
               hist_pct(h, 99), hist_pct(h, 100));
        printf(" all_ok=%llu full_handshakes=%llu resumed=%llu", (unsigned long long)all_ok,
               (unsigned long long)hs, (unsigned long long)res);
        if (opt.mode == M_RESUMED)
            printf(" tickets=%llu", (unsigned long long)tk);
        if (opt.mode == M_KEEPALIVE)
            printf(" reconnects=%llu", (unsigned long long)rec);
        if (opt.npids && t0 >= 0 && t1 >= 0) {
            double cpu_us = (double)(t1 - t0) / ticks * 1e6;

            printf(" server_cpu_pct=%.0f server_cpu_us_per_req=%.1f", cpu_us / 1e4 / win,
                   req ? cpu_us / (double)req : 0);
        }
        printf(" client_cpu_pct=%.0f", (c1 - c0) / win * 100);
        printf(" tls=\"%s\"", tls_desc);
        if (opt.label)
            printf(" label=%s", opt.label);
        printf("\n");
    }
    return err_status + err_conn > 0 && ok == 0 ? 1 : 0;
}
