/*
 * tls/wire: the GnuTLS calls libmicrohttpd makes, wrapped (see wire.h).
 */
#include "config.h"
#include "tls/wire.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"

/* ---- the alert after a failed handshake ---- */

typedef int (*handshake_fn)(gnutls_session_t session);

/* This thread's last handshake failed and was logged with its reason. */
static __thread bool handshake_failure_logged;

bool tls_handshake_failure_logged(void)
{
    bool was = handshake_failure_logged;

    handshake_failure_logged = false;
    return was;
}

/* The client's address, for the log line: libmicrohttpd hands GnuTLS the
 * socket itself (gnutls_transport_set_int). */
static void peer_address(gnutls_session_t session, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = gnutls_transport_get_int(session);

    out[0] = '\0';
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
}

/*
 * Reads and drops what the client already sent. A TLS 1.3 client sends its
 * certificate, Finished and first request in one flight, so when its
 * certificate is refused that request is still unread; closing a socket
 * with unread data sends a reset, which can overtake the alert and leave
 * the client with "connection reset" instead of the reason. Bounded: the
 * socket is non-blocking and at most 64 KiB are read.
 */
static void drain_unread(int fd)
{
    char buf[4096];

    for (int i = 0; fd >= 0 && i < 16; i++) {
        if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
            break;
    }
}

/* Told when a handshake waits for the client (tls_wire_on_handshake_wait). */
static tls_wire_wait_fn handshake_wait;
static void *handshake_wait_ctx;

void tls_wire_on_handshake_wait(tls_wire_wait_fn fn, void *ctx)
{
    if (fn)
        handshake_wait_ctx = ctx;
    __atomic_store_n(&handshake_wait, fn, __ATOMIC_RELEASE);
}

/*
 * libmicrohttpd 0.9.75 (connection_https.c, MHD_run_tls_handshake_) closes
 * a connection whose handshake failed without telling the client why: no
 * alert, a bare TCP close ("unexpected eof", "Empty reply from server"),
 * and one log line, "received handshake message out of context", for every
 * kind of failure. It calls gnutls_handshake through the dynamic linker, so
 * this definition in the executable is the one it reaches; it runs GnuTLS's
 * own and, when that fails for good, sends the alert RFC 8446/5246 names for
 * the failure (protocol_version, handshake_failure, certificate_required
 * ...: gnutls_alert_send_appropriate) before libmicrohttpd closes, and logs
 * the reason with the client's address. What was weighed: a newer
 * libmicrohttpd is not in Debian 12; the connection-closed notification
 * comes after gnutls_deinit; accepting connections ourselves
 * (MHD_add_connection) still leaves the handshake to libmicrohttpd. The
 * cost is one indirect call per handshake step.
 */
int gnutls_handshake(gnutls_session_t session)
{
    static handshake_fn real;
    handshake_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    const char *alert;
    char remote[64];
    int rc, alert_rc, level, desc;

    if (!fn) {
        fn = (handshake_fn)dlsym(RTLD_NEXT, "gnutls_handshake");
        if (!fn)
            return GNUTLS_E_INTERNAL_ERROR;
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    rc = fn(session);
    if (rc == GNUTLS_E_AGAIN && gnutls_record_get_direction(session) == 0) {
        tls_wire_wait_fn wait = __atomic_load_n(&handshake_wait, __ATOMIC_ACQUIRE);

        if (wait)
            wait(handshake_wait_ctx, session);
        return rc;
    }
    if (rc >= 0 || !gnutls_error_is_fatal(rc))
        return rc;
    desc = gnutls_error_to_alert(rc, &level);
    /* TLS 1.2 has no certificate_required: RFC 5246 7.4.6 names
     * handshake_failure for a client that sent no certificate (GnuTLS would
     * say decode_error). */
    if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND && gnutls_protocol_get_version(session) < GNUTLS_TLS1_3)
        desc = GNUTLS_A_HANDSHAKE_FAILURE, level = GNUTLS_AL_FATAL;
    alert_rc =
        gnutls_alert_send(session, (gnutls_alert_level_t)level, (gnutls_alert_description_t)desc);
    alert = alert_rc == 0 ? gnutls_alert_get_name((gnutls_alert_description_t)desc) : NULL;
    drain_unread(gnutls_transport_get_int(session));
    peer_address(session, remote, sizeof(remote));
    log_event("tls_handshake_failed",
              json_pack("{s:s, s:s, s:s}", "remote", remote, "detail", gnutls_strerror(rc), "alert",
                        alert ? alert : "none (it could not be sent)"));
    handshake_failure_logged = true;
    return rc;
}

typedef ssize_t (*record_recv_fn)(gnutls_session_t session, void *data, size_t len);

/*
 * A client that starts a renegotiation (a ClientHello on an established
 * TLS 1.2 session) makes GnuTLS return GNUTLS_E_REHANDSHAKE, and
 * libmicrohttpd 0.9.75 then closes the connection without a word, which
 * scanners (testssl.sh) take for a renegotiation that went through. The
 * server answers it as RFC 5246 7.2.2 says, with a no_renegotiation alert
 * (always a warning), before libmicrohttpd closes: the client reports the
 * refusal, and a renegotiation flood costs the server no handshake.
 */
ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t len)
{
    static record_recv_fn real;
    record_recv_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    ssize_t n;

    if (!fn) {
        fn = (record_recv_fn)dlsym(RTLD_NEXT, "gnutls_record_recv");
        if (!fn)
            return GNUTLS_E_INTERNAL_ERROR;
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    n = fn(session, data, len);
    if (n == GNUTLS_E_REHANDSHAKE) {
        gnutls_alert_send(session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
        drain_unread(gnutls_transport_get_int(session));
    }
    return n;
}

/* ---- one record per answer ---- */

/*
 * libmicrohttpd 0.9.75 sends an answer's head and body with two calls of
 * gnutls_record_send (mhd_send.c, MHD_send_hdr_and_body_: no vectored send
 * over TLS), so every answer costs two records, two AEAD seals and two
 * sends, where nginx, openssl s_server and gnutls-serv send one; some
 * clients (tlsfuzzer's scripts among them) read one record and stop. An
 * answer announced with tls_wire_expect_answer has its head held back here
 * and sent together with its body as one record. What is held, per socket
 * (libmicrohttpd hands GnuTLS the socket itself, so the socket names the
 * session): a connection is served by one thread at a time, and a socket
 * number by one connection at a time, so a slot needs no lock.
 */
enum hold_state {
    HOLD_NONE,      /* no answer of ours under way: sends pass through, and a
                     * head of libmicrohttpd's own error answer is replaced */
    HOLD_ARMED,     /* an answer with a body of `body` bytes is coming */
    HOLD_HEAD,      /* its head is in `buf`, not yet sent */
    HOLD_FLUSHING,  /* head + body handed to GnuTLS, which said EAGAIN */
    HOLD_OURS,      /* an answer of ours that goes as it is, until it is done */
    HOLD_REPLACING, /* a replacement answer handed to GnuTLS, which said EAGAIN;
                     * `head` is the length of libmicrohttpd's head */
    HOLD_DROPPING,  /* the replaced answer's body: `body` bytes still to drop */
};

struct hold {
    char *buf;             /* the held head (HOLD_HEAD), the replacement (HOLD_REPLACING) */
    unsigned head;         /* bytes in buf; HOLD_REPLACING: libmicrohttpd's head length */
    unsigned body;         /* the announced body length; HOLD_DROPPING: bytes left */
    unsigned replaced;     /* the status of libmicrohttpd's own answer replaced on this
                            * socket, 0 when none */
    enum hold_state state; /* where the answer is */
};

/* Slots by socket number, in chunks allocated on first use: 1,024 chunks
 * of 1,024 slots cover descriptors below 2^20; above, answers go as before. */
#define HOLD_CHUNK 1024
#define HOLD_CHUNKS 1024
static struct hold *hold_chunks[HOLD_CHUNKS];
static pthread_mutex_t hold_grow = PTHREAD_MUTEX_INITIALIZER;

/* The slot of @p fd; @p create: allocate its chunk if missing. NULL: none. */
static struct hold *hold_of(int fd, bool create)
{
    struct hold *chunk;

    if (fd < 0 || fd >= HOLD_CHUNK * HOLD_CHUNKS)
        return NULL;
    chunk = __atomic_load_n(&hold_chunks[fd / HOLD_CHUNK], __ATOMIC_ACQUIRE);
    if (!chunk && create) {
        pthread_mutex_lock(&hold_grow);
        chunk = hold_chunks[fd / HOLD_CHUNK];
        if (!chunk) {
            chunk = calloc(HOLD_CHUNK, sizeof(*chunk));
            __atomic_store_n(&hold_chunks[fd / HOLD_CHUNK], chunk, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&hold_grow);
    }
    return chunk ? &chunk[fd % HOLD_CHUNK] : NULL;
}

static void hold_clear(struct hold *h)
{
    free(h->buf);
    h->buf = NULL;
    h->head = 0;
    h->body = 0;
    h->state = HOLD_NONE;
}

void tls_wire_expect_answer(int fd, size_t body_len)
{
    struct hold *h = hold_of(fd, true);

    if (!h)
        return;
    hold_clear(h);
    if (body_len > 0 && body_len < 16384) {
        h->body = (unsigned)body_len;
        h->state = HOLD_ARMED;
    } else {
        h->state = HOLD_OURS;
    }
}

void tls_wire_answer_done(int fd)
{
    struct hold *h = hold_of(fd, false);

    if (h && h->state == HOLD_OURS)
        h->state = HOLD_NONE;
}

void tls_wire_forget(int fd)
{
    struct hold *h = hold_of(fd, false);

    if (h) {
        hold_clear(h);
        h->replaced = 0;
    }
}

unsigned tls_wire_replaced(int fd)
{
    struct hold *h = hold_of(fd, false);

    return h ? h->replaced : 0;
}

/* Whether @p data is the head of the announced answer: a complete HTTP/1.x
 * status head whose Content-Length is the announced length. */
static bool is_announced_head(const struct hold *h, const char *data, size_t len)
{
    static const char cl[] = "\r\nContent-Length: ";
    const char *p, *end = data + len;
    unsigned long n = 0;

    if (len < 16 || memcmp(data, "HTTP/1.", 7) != 0 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
        return false;
    p = memmem(data, len, cl, sizeof(cl) - 1);
    if (!p)
        return false;
    for (p += sizeof(cl) - 1; p < end && *p >= '0' && *p <= '9' && n <= 16384; p++)
        n = n * 10 + (unsigned long)(*p - '0');
    return p < end && *p == '\r' && n == h->body;
}

typedef ssize_t (*record_send_fn)(gnutls_session_t session, const void *data, size_t len);

/* Sends the held head alone, for a send that is not the announced body
 * (libmicrohttpd always sends the body next; this is the safe way out if a
 * version ever does not). Waits at most 1 s for a full socket. */
static bool flush_head(record_send_fn fn, gnutls_session_t session, struct hold *h)
{
    struct pollfd p = {.fd = gnutls_transport_get_int(session), .events = POLLOUT};
    ssize_t n = fn(session, h->buf, h->head);
    bool sent;

    for (int waits = 0; (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && waits < 20; waits++) {
        poll(&p, 1, 50);
        n = fn(session, NULL, 0);
    }
    sent = n == (ssize_t)h->head;
    hold_clear(h);
    h->state = HOLD_OURS; /* the rest of the answer goes as it is */
    return sent;
}

/* Sends the held head and the body as one record. @return the body's
 * length once all is sent, or GnuTLS's error (EAGAIN: call again). */
static ssize_t send_joined(record_send_fn fn, gnutls_session_t session, struct hold *h,
                           const void *body, size_t len)
{
    size_t total = (size_t)h->head + len;
    char *joined;
    ssize_t n;

    if (h->state == HOLD_FLUSHING) {
        /* GnuTLS keeps the sealed record: a retry passes no data. */
        n = fn(session, NULL, 0);
    } else {
        joined = realloc(h->buf, total);
        if (!joined) {
            hold_clear(h);
            return GNUTLS_E_MEMORY_ERROR;
        }
        memcpy(joined + h->head, body, len);
        h->buf = joined;
        n = fn(session, joined, total);
        free(h->buf);
        h->buf = NULL;
    }
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
        h->state = HOLD_FLUSHING;
        return n;
    }
    hold_clear(h);
    if (n < 0)
        return n;
    /* The record fits the size limit, so GnuTLS sends it whole. */
    return (size_t)n == total ? (ssize_t)len : GNUTLS_E_INTERNAL_ERROR;
}

/* ---- libmicrohttpd's own answers, in certgate's words ---- */

/*
 * libmicrohttpd 0.9.75 answers some requests itself, before or instead of
 * certgate's handler: a head that overflows the connection's memory pool
 * (431), a malformed request line or chunk (400), an HTTP version it does
 * not serve (505), a Content-Length it cannot read (400, 413). Those
 * answers are HTML without certgate's headers, where every other failure
 * gets a JSON error. The head of one is recognised here and replaced by the
 * answer the registered builder makes for its status; its HTML body is
 * dropped. What tells it from an answer of certgate's: certgate announces
 * each of its answers (tls_wire_expect_answer), and every one carries the
 * security headers; a 4xx or 5xx head sent while none is announced, and
 * without them, is libmicrohttpd's. libmicrohttpd closes the connection
 * after such an answer, so what it counts as sent need not be what went out.
 */
static tls_wire_answer_fn replace_answer;

void tls_wire_replace_own_answers(tls_wire_answer_fn fn)
{
    __atomic_store_n(&replace_answer, fn, __ATOMIC_RELEASE);
}

/* The status of @p data when it is the head of libmicrohttpd's own error
 * answer, with the head's length in @p head and the body's in @p body;
 * 0 when it is anything else. */
static unsigned own_error_head(const char *data, size_t len, size_t *head, size_t *body)
{
    static const char cl[] = "\r\nContent-Length: ";
    const char *end, *p;
    unsigned long n = 0;

    if (len < 16 || memcmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ' ||
        (data[9] != '4' && data[9] != '5') || data[10] < '0' || data[10] > '9' || data[11] < '0' ||
        data[11] > '9' || data[12] != ' ')
        return 0;
    end = memmem(data, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    *head = (size_t)(end - data) + 4;
    if (memmem(data, *head, "\r\nX-Content-Type-Options:", 25))
        return 0;
    p = memmem(data, *head, cl, sizeof(cl) - 1);
    if (!p)
        return 0;
    for (p += sizeof(cl) - 1; *p >= '0' && *p <= '9' && n <= 65536; p++)
        n = n * 10 + (unsigned long)(*p - '0');
    if (*p != '\r' || n > 65536)
        return 0;
    *body = (size_t)n;
    return (unsigned)(data[9] - '0') * 100 + (unsigned)(data[10] - '0') * 10 +
           (unsigned)(data[11] - '0');
}

/* Sends the replacement, or what GnuTLS still holds of it after EAGAIN
 * (@p answer NULL). @return the length of libmicrohttpd's head once all is
 * sent, or GnuTLS's error (EAGAIN: libmicrohttpd calls again). */
static ssize_t send_replacement(record_send_fn fn, gnutls_session_t session, struct hold *h,
                                char *answer, size_t answer_len)
{
    ssize_t n = answer ? fn(session, answer, answer_len) : fn(session, NULL, 0);

    free(answer);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
        h->state = HOLD_REPLACING;
        return n;
    }
    if (n < 0) {
        hold_clear(h);
        return n;
    }
    /* The record fits the size limit (send_or_replace), so GnuTLS sent it
     * whole. What follows is libmicrohttpd's HTML body, dropped. */
    h->state = h->body ? HOLD_DROPPING : HOLD_NONE;
    return (ssize_t)h->head;
}

/* Replaces libmicrohttpd's own error answer whose head is in @p data, or
 * sends @p data as it is when it is none or cannot be replaced. */
static ssize_t send_or_replace(record_send_fn fn, gnutls_session_t session, const void *data,
                               size_t len)
{
    tls_wire_answer_fn build = __atomic_load_n(&replace_answer, __ATOMIC_ACQUIRE);
    size_t head, body, answer_len;
    unsigned status;
    struct hold *h;
    char *answer;

    status = build ? own_error_head(data, len, &head, &body) : 0;
    h = status ? hold_of(gnutls_transport_get_int(session), true) : NULL;
    answer = h ? build(status, &answer_len) : NULL;
    /* One record, so that GnuTLS sends it whole or keeps it whole (a
     * client may have asked for small records: then it goes as it was). */
    if (answer && answer_len > gnutls_record_get_max_size(session)) {
        free(answer);
        answer = NULL;
    }
    if (!answer)
        return fn(session, data, len);
    hold_clear(h);
    h->head = (unsigned)head;
    h->body = (unsigned)body;
    h->replaced = status;
    return send_replacement(fn, session, h, answer, answer_len);
}

/* Drops what is left of the replaced answer's body, from @p len bytes. */
static ssize_t drop_body(struct hold *h, size_t len)
{
    size_t take = len < h->body ? len : h->body;

    h->body -= (unsigned)take;
    if (h->body == 0)
        h->state = HOLD_NONE;
    return (ssize_t)take;
}

ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t len)
{
    static record_send_fn real;
    record_send_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    struct hold *h;

    if (!fn) {
        fn = (record_send_fn)dlsym(RTLD_NEXT, "gnutls_record_send");
        if (!fn)
            return GNUTLS_E_INTERNAL_ERROR;
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    h = hold_of(gnutls_transport_get_int(session), false);
    if (!h || h->state == HOLD_NONE)
        return data && len ? send_or_replace(fn, session, data, len) : fn(session, data, len);
    switch (h->state) {
    case HOLD_OURS: return fn(session, data, len);
    case HOLD_REPLACING: return send_replacement(fn, session, h, NULL, 0);
    case HOLD_DROPPING: return drop_body(h, len);
    case HOLD_ARMED:
        /* A 100 Continue may precede the answer. */
        if (len >= 10 && memcmp(data, "HTTP/1.1 1", 10) == 0)
            return fn(session, data, len);
        if (!is_announced_head(h, data, len) ||
            len + h->body > gnutls_record_get_max_size(session)) {
            hold_clear(h);
            h->state = HOLD_OURS;
            return fn(session, data, len);
        }
        h->buf = malloc(len);
        if (!h->buf) {
            hold_clear(h);
            h->state = HOLD_OURS;
            return fn(session, data, len);
        }
        memcpy(h->buf, data, len);
        h->head = (unsigned)len;
        h->state = HOLD_HEAD;
        return (ssize_t)len; /* held: sent with the body */
    default: break;
    }
    /* The body follows its head at once (same call of libmicrohttpd), and
     * a retry after EAGAIN asks for the same body again. */
    if (h->state == HOLD_HEAD && len != h->body)
        return flush_head(fn, session, h) ? fn(session, data, len) : GNUTLS_E_PUSH_ERROR;
    if (len != h->body) {
        hold_clear(h);
        return GNUTLS_E_INTERNAL_ERROR;
    }
    return send_joined(fn, session, h, data, len);
}
