/*
 * Unit tests for --proxy-protocol's pure parts: the PROXY protocol v2
 * header parser (fed whole and byte by byte, as the acceptor reads it) and
 * the first-bytes check for untrusted peers. The --trusted-proxy blocks
 * are check_cidr.c's.
 */
#include "config.h"
#include "http/http_int.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* A header built from its parts: SIG + ver/cmd + fam + length + body. */
struct hdr {
    unsigned char b[PROXY_V2_MAX + 64]; /* the bytes */
    size_t len;                         /* how many */
};

static struct hdr make(unsigned ver_cmd, unsigned fam, unsigned length, const void *body,
                       size_t body_len)
{
    struct hdr h;

    memset(&h, 0, sizeof(h));
    memcpy(h.b, SIG, 12);
    h.b[12] = (unsigned char)ver_cmd;
    h.b[13] = (unsigned char)fam;
    h.b[14] = (unsigned char)(length >> 8);
    h.b[15] = (unsigned char)length;
    memcpy(h.b + 16, body, body_len);
    h.len = 16 + body_len;
    return h;
}

/* src 192.0.2.7:40000, dst 10.0.0.1:443 */
static const unsigned char v4_body[12] = {192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb};
/* src 2001:db8::42 port 5000, dst ::1 port 443 */
static const unsigned char v6_body[36] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0,    0,    0, 0,
                                          0,    0,    0,    0x42, 0, 0, 0, 0, 0,    0,    0, 0,
                                          0,    0,    0,    0,    0, 0, 0, 1, 0x13, 0x88, 1, 0xbb};

static void src_text(const struct proxy_addr *pa, char *out, size_t len, unsigned *port)
{
    const struct sockaddr *sa = (const struct sockaddr *)&pa->src;

    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)len);
        *port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)len);
        *port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    }
}

/* Feeds @p h one byte more at a time, as a trickling peer would: every
 * prefix must say MORE and ask for more than it has. */
static enum proxy_verdict feed(const struct hdr *h, size_t *out_need, struct proxy_addr *pa)
{
    enum proxy_verdict v = PROXY_MORE;

    for (size_t n = 1; n <= h->len; n++) {
        v = proxy_v2_parse(h->b, n, out_need, pa);
        if (v != PROXY_MORE)
            return v;
        ck_assert_uint_le(*out_need, PROXY_V2_MAX);
        ck_assert_uint_gt(*out_need, n);
    }
    return v;
}

START_TEST(v4_proxy_header)
{
    struct hdr h = make(0x21, 0x11, 12, v4_body, 12);
    struct proxy_addr pa;
    size_t need;
    char text[64];
    unsigned port;

    ck_assert_int_eq(feed(&h, &need, &pa), PROXY_DONE);
    ck_assert_uint_eq(need, 28);
    ck_assert(!pa.is_local);
    ck_assert_uint_eq(pa.src_len, sizeof(struct sockaddr_in));
    src_text(&pa, text, sizeof(text), &port);
    ck_assert_str_eq(text, "192.0.2.7");
    ck_assert_uint_eq(port, 40000);
}
END_TEST

START_TEST(v6_proxy_header)
{
    struct hdr h = make(0x21, 0x21, 36, v6_body, 36);
    struct proxy_addr pa;
    size_t need;
    char text[64];
    unsigned port;

    ck_assert_int_eq(feed(&h, &need, &pa), PROXY_DONE);
    ck_assert_uint_eq(need, 52);
    src_text(&pa, text, sizeof(text), &port);
    ck_assert_str_eq(text, "2001:db8::42");
    ck_assert_uint_eq(port, 5000);
}
END_TEST

START_TEST(tlvs_are_skipped_and_counted)
{
    unsigned char body[12 + 7 + 40];
    struct hdr h;
    struct proxy_addr pa;
    size_t need;
    char text[64];
    unsigned port;

    memcpy(body, v4_body, 12);
    /* PP2_TYPE_UNIQUE_ID (0x05) of 4 bytes, then a NOOP (0x04) of 37. */
    memcpy(body + 12,
           "\x05\x00\x04"
           "abcd",
           7);
    body[19] = 0x04;
    body[20] = 0;
    body[21] = 37;
    memset(body + 22, 0xee, 37);
    h = make(0x21, 0x11, sizeof(body), body, sizeof(body));
    /* What follows the header (a ClientHello) is not part of it. */
    h.b[h.len] = 0x16;
    h.len++;
    ck_assert_int_eq(proxy_v2_parse(h.b, h.len, &need, &pa), PROXY_DONE);
    ck_assert_uint_eq(need, 16 + sizeof(body));
    src_text(&pa, text, sizeof(text), &port);
    ck_assert_str_eq(text, "192.0.2.7");
}
END_TEST

START_TEST(local_uses_the_peer)
{
    struct hdr h = make(0x20, 0x00, 0, "", 0);
    struct hdr h4 = make(0x20, 0x11, 12, v4_body, 12);
    struct proxy_addr pa;
    size_t need;

    ck_assert_int_eq(feed(&h, &need, &pa), PROXY_DONE);
    ck_assert_uint_eq(need, 16);
    ck_assert(pa.is_local);
    ck_assert_uint_eq(pa.src_len, 0);
    /* LOCAL with addresses: they are skipped, not used. */
    ck_assert_int_eq(feed(&h4, &need, &pa), PROXY_DONE);
    ck_assert(pa.is_local);
    ck_assert_uint_eq(need, 28);
}
END_TEST

START_TEST(proxy_unspec_uses_the_peer)
{
    struct hdr h = make(0x21, 0x00, 0, "", 0);
    struct proxy_addr pa;
    size_t need;

    ck_assert_int_eq(feed(&h, &need, &pa), PROXY_DONE);
    ck_assert(pa.is_local);
}
END_TEST

/* Refused headers: the reason names what is wrong. */
static const struct {
    const char *name;   /* the case */
    unsigned ver_cmd;   /* byte 13 */
    unsigned fam;       /* byte 14 */
    unsigned length;    /* bytes 15-16 */
    const char *reason; /* a part of the reason */
} bad_cases[] = {
    {"version 1", 0x11, 0x11, 12, "version 1"},
    {"version 3", 0x31, 0x11, 12, "version 3"},
    {"command 2", 0x22, 0x11, 12, "command 2"},
    {"command 15", 0x2f, 0x11, 12, "command 15"},
    {"unix socket", 0x21, 0x31, 216, "Unix socket"},
    {"family 4", 0x21, 0x41, 12, "family 4"},
    {"datagram", 0x21, 0x12, 12, "STREAM"},
    {"v4 length short", 0x21, 0x11, 11, "shorter than the 12 bytes"},
    {"v6 length short", 0x21, 0x21, 12, "shorter than the 36 bytes"},
    {"length over the limit", 0x21, 0x11, PROXY_V2_MAX - 15, "more than the 4096"},
    {"length 65535", 0x21, 0x11, 65535, "more than the 4096"},
};

START_TEST(bad_headers_are_refused_with_a_reason)
{
    struct hdr h = make(bad_cases[_i].ver_cmd, bad_cases[_i].fam, bad_cases[_i].length, v6_body,
                        sizeof(v6_body));
    struct proxy_addr pa;
    size_t need;

    /* Decided from the fixed 16 bytes: nothing past them is waited for. */
    ck_assert_int_eq(proxy_v2_parse(h.b, 16, &need, &pa), PROXY_BAD);
    ck_assert_msg(strstr(pa.reason, bad_cases[_i].reason), "%s: %s", bad_cases[_i].name, pa.reason);
}
END_TEST

START_TEST(longest_allowed_header)
{
    static unsigned char body[PROXY_V2_MAX - 16];
    struct hdr h;
    struct proxy_addr pa;
    size_t need;

    memcpy(body, v4_body, 12);
    h = make(0x21, 0x11, sizeof(body), body, sizeof(body));
    ck_assert_int_eq(proxy_v2_parse(h.b, 16, &need, &pa), PROXY_MORE);
    ck_assert_uint_eq(need, PROXY_V2_MAX);
    ck_assert_int_eq(proxy_v2_parse(h.b, h.len, &need, &pa), PROXY_DONE);
}
END_TEST

START_TEST(truncated_header_wants_more)
{
    struct hdr h = make(0x21, 0x21, 36, v6_body, 36);
    struct proxy_addr pa;
    size_t need;

    for (size_t n = 1; n < h.len; n++) {
        ck_assert_int_eq(proxy_v2_parse(h.b, n, &need, &pa), PROXY_MORE);
        ck_assert_uint_eq(need, n < 16 ? 16 : 52);
    }
}
END_TEST

START_TEST(garbage_is_refused_at_its_first_wrong_byte)
{
    static const struct {
        const char *bytes; /* what the peer sent */
        size_t len;        /* how many */
    } starts[] = {
        {"\x16\x03\x01\x02\x00", 5}, /* a TLS ClientHello */
        {"GET / HTTP/1.1\r\n", 16},
        {"\r\n\r\n\1", 5},            /* a wrong fifth byte */
        {"\r\n\r\n\0\r\nQUIT\r", 12}, /* a wrong twelfth byte */
        {"\0", 1},
    };
    struct proxy_addr pa;
    size_t need;

    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        ck_assert_int_eq(
            proxy_v2_parse((const unsigned char *)starts[i].bytes, starts[i].len, &need, &pa),
            PROXY_BAD);
        ck_assert_msg(strstr(pa.reason, "no PROXY protocol v2 header"), "%zu: %s", i, pa.reason);
    }
    ck_assert_int_eq(proxy_v2_parse((const unsigned char *)"\x16", 1, &need, &pa), PROXY_BAD);
    ck_assert_ptr_nonnull(strstr(pa.reason, "TLS handshake"));
    ck_assert_int_eq(proxy_v2_parse((const unsigned char *)"PROXY TCP4 1.2.3.4", 18, &need, &pa),
                     PROXY_BAD);
    ck_assert_ptr_nonnull(strstr(pa.reason, "v1 (text)"));
}
END_TEST

START_TEST(first_bytes_of_untrusted_peers)
{
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"", 0), PROXY_FIRST_MORE);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"\x16\x03\x01", 3),
                     PROXY_FIRST_OTHER);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)SIG, 5), PROXY_FIRST_MORE);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)SIG, 12), PROXY_FIRST_HEADER);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)SIG "\x21\x11", 14),
                     PROXY_FIRST_HEADER);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"PROX", 4), PROXY_FIRST_MORE);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"PROXY TCP4", 10),
                     PROXY_FIRST_HEADER);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"PROXX", 5), PROXY_FIRST_OTHER);
    ck_assert_int_eq(proxy_first_bytes((const unsigned char *)"\r\n\r\n\0\r\nQUIX", 11),
                     PROXY_FIRST_OTHER);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc_v2 = tcase_create("v2 header");
    TCase *tc_first = tcase_create("first bytes");
    SRunner *sr;
    int failed;

    tcase_add_test(tc_v2, v4_proxy_header);
    tcase_add_test(tc_v2, v6_proxy_header);
    tcase_add_test(tc_v2, tlvs_are_skipped_and_counted);
    tcase_add_test(tc_v2, local_uses_the_peer);
    tcase_add_test(tc_v2, proxy_unspec_uses_the_peer);
    tcase_add_loop_test(tc_v2, bad_headers_are_refused_with_a_reason, 0,
                        sizeof(bad_cases) / sizeof(bad_cases[0]));
    tcase_add_test(tc_v2, longest_allowed_header);
    tcase_add_test(tc_v2, truncated_header_wants_more);
    tcase_add_test(tc_v2, garbage_is_refused_at_its_first_wrong_byte);
    tcase_add_test(tc_first, first_bytes_of_untrusted_peers);
    suite_add_tcase(s, tc_v2);
    suite_add_tcase(s, tc_first);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
