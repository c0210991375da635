/*
 * Unit tests for tls/wire's one record per answer (and its report of a
 * handshake that waits to read): real GnuTLS sessions,
 * server and client, over a socket pair, with the server side
 * non-blocking as libmicrohttpd's sockets are. The client counts records:
 * gnutls_record_recv returns at most one record's data per call.
 */
#include "config.h"
#include "tls/wire.h"

#include <check.h>
#include <gnutls/gnutls.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A TLS 1.3 session pair over a socket pair (PSK: no certificate is needed
 * to test record framing). */
struct pair {
    int fd[2]; /* server, client */
    gnutls_session_t s, c;
    gnutls_psk_server_credentials_t scred;
    gnutls_psk_client_credentials_t ccred;
};

static const gnutls_datum_t psk_key = {(unsigned char *)"0123456789abcdef0123456789abcdef", 32};

static int psk_lookup(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
    (void)s;
    (void)user;
    key->data = gnutls_malloc(psk_key.size);
    if (!key->data)
        return -1;
    memcpy(key->data, psk_key.data, psk_key.size);
    key->size = psk_key.size;
    return 0;
}

static void *client_handshake(void *arg)
{
    struct pair *p = arg;
    int rc;

    do {
        rc = gnutls_handshake(p->c);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    return (void *)(intptr_t)rc;
}

/* The two sessions over a new socket pair, before their handshake. */
static void pair_init(struct pair *p, int sndbuf)
{
    const char *prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+PSK:+ECDHE-PSK";

    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
    if (sndbuf)
        setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    ck_assert_int_eq(gnutls_psk_allocate_server_credentials(&p->scred), 0);
    gnutls_psk_set_server_credentials_function(p->scred, psk_lookup);
    ck_assert_int_eq(gnutls_psk_allocate_client_credentials(&p->ccred), 0);
    ck_assert_int_eq(gnutls_psk_set_client_credentials(p->ccred, "u", &psk_key, GNUTLS_PSK_KEY_RAW),
                     0);
    ck_assert_int_eq(gnutls_init(&p->s, GNUTLS_SERVER), 0);
    ck_assert_int_eq(gnutls_init(&p->c, GNUTLS_CLIENT), 0);
    ck_assert_int_eq(gnutls_priority_set_direct(p->s, prio, NULL), 0);
    ck_assert_int_eq(gnutls_priority_set_direct(p->c, prio, NULL), 0);
    gnutls_credentials_set(p->s, GNUTLS_CRD_PSK, p->scred);
    gnutls_credentials_set(p->c, GNUTLS_CRD_PSK, p->ccred);
    gnutls_transport_set_int(p->s, p->fd[0]);
    gnutls_transport_set_int(p->c, p->fd[1]);
}

static void pair_open(struct pair *p, int sndbuf)
{
    pthread_t t;
    void *crc;
    int rc;

    pair_init(p, sndbuf);
    ck_assert_int_eq(pthread_create(&t, NULL, client_handshake, p), 0);
    do {
        rc = gnutls_handshake(p->s);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    pthread_join(t, &crc);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq((int)(intptr_t)crc, 0);
    fcntl(p->fd[0], F_SETFL, fcntl(p->fd[0], F_GETFL) | O_NONBLOCK);
    tls_wire_forget(p->fd[0]);
}

static void pair_close(struct pair *p)
{
    tls_wire_forget(p->fd[0]);
    gnutls_deinit(p->s);
    gnutls_deinit(p->c);
    gnutls_psk_free_server_credentials(p->scred);
    gnutls_psk_free_client_credentials(p->ccred);
    close(p->fd[0]);
    close(p->fd[1]);
}

/* What the client has received yet, without waiting. */
static bool client_has_data(struct pair *p)
{
    struct pollfd q = {.fd = p->fd[1], .events = POLLIN};

    return gnutls_record_check_pending(p->c) > 0 || poll(&q, 1, 0) > 0;
}

/* One record's data, read by the client. */
static ssize_t client_record(struct pair *p, char *buf, size_t len)
{
    ssize_t n;

    do {
        n = gnutls_record_recv(p->c, buf, len);
    } while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
    return n;
}

/* An answer's head as libmicrohttpd writes it, for a body of @p body bytes. */
static size_t make_head(char *out, size_t len, size_t body)
{
    return (size_t)snprintf(out, len,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            body);
}

/* tls_wire_on_handshake_wait's callback: counts, and keeps the session. */
static gnutls_session_t waited;

static void on_wait(void *ctx, gnutls_session_t session)
{
    (*(int *)ctx)++;
    waited = session;
}

/* Every handshake step that waits to read is reported, with its session,
 * and none other; none once the callback is cleared. */
START_TEST(handshake_wait_is_reported)
{
    struct pair p, q;
    pthread_t t;
    void *crc;
    int calls = 0, waits = 1, rc;

    pair_init(&p, 0);
    fcntl(p.fd[0], F_SETFL, fcntl(p.fd[0], F_GETFL) | O_NONBLOCK);
    tls_wire_on_handshake_wait(on_wait, &calls);
    /* Nothing from the client yet: the server waits for its ClientHello. */
    ck_assert_int_eq(gnutls_handshake(p.s), GNUTLS_E_AGAIN);
    ck_assert_int_eq(gnutls_record_get_direction(p.s), 0);
    ck_assert_int_eq(calls, 1);
    ck_assert_ptr_eq(waited, p.s);
    ck_assert_int_eq(pthread_create(&t, NULL, client_handshake, &p), 0);
    for (;;) {
        struct pollfd pf = {.fd = p.fd[0], .events = POLLIN};

        ck_assert_int_ge(poll(&pf, 1, 5000), 0);
        rc = gnutls_handshake(p.s);
        if (rc != GNUTLS_E_AGAIN)
            break;
        waits += gnutls_record_get_direction(p.s) == 0;
    }
    pthread_join(t, &crc);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq((int)(intptr_t)crc, 0);
    ck_assert_int_eq(calls, waits);
    tls_wire_on_handshake_wait(NULL, NULL);
    pair_init(&q, 0);
    fcntl(q.fd[0], F_SETFL, fcntl(q.fd[0], F_GETFL) | O_NONBLOCK);
    ck_assert_int_eq(gnutls_handshake(q.s), GNUTLS_E_AGAIN);
    ck_assert_int_eq(calls, waits);
    pair_close(&q);
    pair_close(&p);
}
END_TEST

START_TEST(announced_answer_is_one_record)
{
    struct pair p;
    char head[256], got[20000];
    const char *body = "{\"ok\":true}";
    size_t hl = make_head(head, sizeof(head), strlen(body));

    pair_open(&p, 0);
    tls_wire_expect_answer(p.fd[0], strlen(body));
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_msg(!client_has_data(&p), "the head went out alone");
    ck_assert_int_eq(gnutls_record_send(p.s, body, strlen(body)), (ssize_t)strlen(body));
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)(hl + strlen(body)));
    ck_assert_int_eq(memcmp(got, head, hl), 0);
    ck_assert_int_eq(memcmp(got + hl, body, strlen(body)), 0);
    pair_close(&p);
}
END_TEST

START_TEST(unannounced_answer_is_unchanged)
{
    struct pair p;
    char head[256], got[20000];
    size_t hl = make_head(head, sizeof(head), 4);

    pair_open(&p, 0);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(gnutls_record_send(p.s, "abcd", 4), 4);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 4);
    pair_close(&p);
}
END_TEST

/* A head whose Content-Length is not the announced one (another answer
 * than the one announced) is not held. */
START_TEST(other_length_is_not_held)
{
    struct pair p;
    char head[256], got[20000];
    size_t hl = make_head(head, sizeof(head), 7);

    pair_open(&p, 0);
    tls_wire_expect_answer(p.fd[0], 5);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    pair_close(&p);
}
END_TEST

/* A held head followed by something other than its body goes out first,
 * whole, and the other data after it. */
START_TEST(held_head_is_flushed_before_other_data)
{
    struct pair p;
    char head[256], got[20000];
    size_t hl = make_head(head, sizeof(head), 5);

    pair_open(&p, 0);
    tls_wire_expect_answer(p.fd[0], 5);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(gnutls_record_send(p.s, "xyz", 3), 3);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert_int_eq(memcmp(got, head, hl), 0);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 3);
    pair_close(&p);
}
END_TEST

struct reader {
    struct pair *p;
    char buf[20000];
    ssize_t n;
};

static void *read_one(void *arg)
{
    struct reader *r = arg;

    r->n = client_record(r->p, r->buf, sizeof(r->buf));
    return NULL;
}

/* A full socket: the joined record is sent in parts, libmicrohttpd asks
 * again for the same body, and the client still gets one record. */
START_TEST(full_socket_still_one_record)
{
    struct pair p;
    struct reader r;
    pthread_t t;
    char head[256], *body = malloc(12000);
    size_t hl = make_head(head, sizeof(head), 12000);
    ssize_t n;
    int again = 0;

    ck_assert_ptr_nonnull(body);
    memset(body, 'b', 12000);
    pair_open(&p, 2048);
    tls_wire_expect_answer(p.fd[0], 12000);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    n = gnutls_record_send(p.s, body, 12000);
    ck_assert_msg(n == GNUTLS_E_AGAIN, "the socket took %zd bytes at once: not full", n);
    r.p = &p;
    ck_assert_int_eq(pthread_create(&t, NULL, read_one, &r), 0);
    while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
        struct pollfd q = {.fd = p.fd[0], .events = POLLOUT};

        poll(&q, 1, 100);
        again++;
        n = gnutls_record_send(p.s, body, 12000);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(n, 12000);
    ck_assert_int_gt(again, 0);
    ck_assert_int_eq(r.n, (ssize_t)(hl + 12000));
    ck_assert_int_eq(memcmp(r.buf, head, hl), 0);
    ck_assert_int_eq(memcmp(r.buf + hl, body, 12000), 0);
    free(body);
    pair_close(&p);
}
END_TEST

/* ---- libmicrohttpd's own error answers, replaced ---- */

/* A stand-in for respond_own_answer: a marked answer for 431 and 505. */
static char *replacement(unsigned status, size_t *len)
{
    char buf[64];
    int n;

    if (status != 431 && status != 505)
        return NULL;
    n = snprintf(buf, sizeof(buf), "REPLACED %u", status);
    *len = (size_t)n;
    return strdup(buf);
}

/* libmicrohttpd 0.9.75's own error head: no security headers. */
static size_t own_head(char *out, size_t len, unsigned status, size_t body)
{
    return (size_t)snprintf(out, len,
                            "HTTP/1.1 %u Some Error\r\nConnection: close\r\n"
                            "Content-Length: %zu\r\nDate: Sat, 05 Dec 2026 00:00:00 GMT\r\n\r\n",
                            status, body);
}

static const char html[] = "<html><head><title>Request too big</title></head></html>";

START_TEST(own_error_answer_is_replaced)
{
    struct pair p;
    char head[256], got[20000];
    size_t hl = own_head(head, sizeof(head), 431, strlen(html));

    pair_open(&p, 0);
    tls_wire_replace_own_answers(replacement);
    ck_assert(!tls_wire_replaced(p.fd[0]));
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    /* the body comes in two calls, both dropped */
    ck_assert_int_eq(gnutls_record_send(p.s, html, 10), 10);
    ck_assert_int_eq(gnutls_record_send(p.s, html + 10, strlen(html) - 10),
                     (ssize_t)(strlen(html) - 10));
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 12);
    ck_assert_int_eq(memcmp(got, "REPLACED 431", 12), 0);
    ck_assert_msg(!client_has_data(&p), "libmicrohttpd's body went out too");
    ck_assert_uint_eq(tls_wire_replaced(p.fd[0]), 431);
    /* after its body, sends pass again */
    ck_assert_int_eq(gnutls_record_send(p.s, "next", 4), 4);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 4);
    tls_wire_forget(p.fd[0]);
    ck_assert(!tls_wire_replaced(p.fd[0]));
    tls_wire_replace_own_answers(NULL);
    pair_close(&p);
}
END_TEST

/* A status the builder does not know, or no builder: left as it is. */
START_TEST(unknown_status_is_left)
{
    struct pair p;
    char head[256], got[20000];
    size_t hl = own_head(head, sizeof(head), 400, 4);

    pair_open(&p, 0);
    tls_wire_replace_own_answers(replacement);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(gnutls_record_send(p.s, "abcd", 4), 4);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert_int_eq(memcmp(got, head, hl), 0);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 4);
    tls_wire_replace_own_answers(NULL);
    hl = own_head(head, sizeof(head), 431, 4);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert(!tls_wire_replaced(p.fd[0]));
    pair_close(&p);
}
END_TEST

/* certgate's own answers are never replaced: one with the security
 * headers, and any answer announced, until it is done. */
START_TEST(certgate_answers_are_not_replaced)
{
    static const char ours[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                               "Content-Type: application/json\r\n"
                               "X-Content-Type-Options: nosniff\r\nContent-Length: 2\r\n\r\n";
    struct pair p;
    char head[256], got[20000];
    size_t hl;

    pair_open(&p, 0);
    tls_wire_replace_own_answers(replacement);
    /* unannounced (sent by send_and_close), with the security headers */
    ck_assert_int_eq(gnutls_record_send(p.s, ours, strlen(ours)), (ssize_t)strlen(ours));
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)strlen(ours));
    /* announced with no body to join (a HEAD answer, a large body): a head
     * that looks like libmicrohttpd's, then a body that looks like one */
    tls_wire_expect_answer(p.fd[0], 0);
    hl = own_head(head, sizeof(head), 505, 4);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), (ssize_t)hl);
    ck_assert(!tls_wire_replaced(p.fd[0]));
    /* once the answer is done, libmicrohttpd's next one is replaced */
    tls_wire_answer_done(p.fd[0]);
    ck_assert_int_eq(gnutls_record_send(p.s, head, hl), (ssize_t)hl);
    ck_assert_int_eq(client_record(&p, got, sizeof(got)), 12);
    ck_assert_int_eq(memcmp(got, "REPLACED 505", 12), 0);
    tls_wire_replace_own_answers(NULL);
    pair_close(&p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("one record");
    SRunner *sr;
    int failed;

    gnutls_global_init();
    tcase_add_test(tc, handshake_wait_is_reported);
    tcase_add_test(tc, announced_answer_is_one_record);
    tcase_add_test(tc, unannounced_answer_is_unchanged);
    tcase_add_test(tc, other_length_is_not_held);
    tcase_add_test(tc, held_head_is_flushed_before_other_data);
    tcase_add_test(tc, full_socket_still_one_record);
    tcase_add_test(tc, own_error_answer_is_replaced);
    tcase_add_test(tc, unknown_status_is_left);
    tcase_add_test(tc, certgate_answers_are_not_replaced);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gnutls_global_deinit();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
