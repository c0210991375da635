/* Unit tests for cidr: the --trusted-proxy address blocks. */
#include "config.h"
#include "base/cidr.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static bool match(const char *list, int family, const char *addr)
{
    struct cidr_list l;
    struct sockaddr_storage ss;
    struct cg_err err = {""};
    bool hit;

    memset(&ss, 0, sizeof(ss));
    ck_assert_msg(cidr_list_parse(list, &l, &err) == CG_OK, "%s: %s", list, err.msg);
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ck_assert_int_eq(inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    else
        ck_assert_int_eq(inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    hit = cidr_list_match(&l, (struct sockaddr *)&ss);
    cidr_list_free(&l);
    return hit;
}

START_TEST(cidr_matches)
{
    ck_assert(match("127.0.0.1/32", AF_INET, "127.0.0.1"));
    ck_assert(!match("127.0.0.1/32", AF_INET, "127.0.0.2"));
    ck_assert(match("127.0.0.1", AF_INET, "127.0.0.1"));
    ck_assert(match("10.0.0.0/8, 192.168.1.0/24", AF_INET, "192.168.1.200"));
    ck_assert(!match("10.0.0.0/8,192.168.1.0/24", AF_INET, "192.168.2.1"));
    ck_assert(match("172.16.0.0/12", AF_INET, "172.31.255.255"));
    ck_assert(!match("172.16.0.0/12", AF_INET, "172.32.0.0"));
    ck_assert(match("0.0.0.0/0", AF_INET, "203.0.113.9"));
    ck_assert(!match("0.0.0.0/0", AF_INET6, "2001:db8::1"));
    ck_assert(match("fd00::/8", AF_INET6, "fd12:3456::1"));
    ck_assert(!match("fd00::/8", AF_INET6, "fe80::1"));
    ck_assert(match("::1/128", AF_INET6, "::1"));
    ck_assert(match("2001:db8::/33", AF_INET6, "2001:db8:7fff::1"));
    ck_assert(!match("2001:db8::/33", AF_INET6, "2001:db8:8000::1"));
    /* An IPv4-mapped peer (a dual-stack socket) matches its IPv4 block. */
    ck_assert(match("10.0.0.0/8", AF_INET6, "::ffff:10.1.2.3"));
    ck_assert(!match("::/0", AF_INET, "10.1.2.3"));
}
END_TEST

START_TEST(good_lists_parse)
{
    struct cidr_list l;
    struct cg_err err = {""};

    ck_assert_int_eq(cidr_list_parse(" 10.0.0.0/8 ,::1,192.0.2.7, fd00::/8 ", &l, &err), CG_OK);
    ck_assert_uint_eq(l.count, 4);
    ck_assert_int_eq(l.items[0].family, AF_INET);
    ck_assert_uint_eq(l.items[0].bits, 8);
    ck_assert_int_eq(l.items[1].family, AF_INET6);
    ck_assert_uint_eq(l.items[1].bits, 128);
    ck_assert_uint_eq(l.items[2].bits, 32);
    ck_assert_uint_eq(l.items[3].bits, 8);
    cidr_list_free(&l);
    ck_assert_ptr_null(l.items);
}
END_TEST

static const struct {
    const char *list;   /* --trusted-proxy */
    const char *reason; /* a part of the message */
} bad_lists[] = {
    {"", "empty entry"},
    {"10.0.0.0/8,", "empty entry"},
    {",10.0.0.0/8", "empty entry"},
    {"10.0.0.0/8,,::1", "empty entry"},
    {"10.0.0.1/8", "host bits"},
    {"fd00::1/8", "host bits"},
    {"10.0.0.0/33", "from 0 to 32"},
    {"::/129", "from 0 to 128"},
    {"10.0.0.0/", "from 0 to 32"},
    {"10.0.0.0/-1", "from 0 to 32"},
    {"10.0.0.0/8x", "from 0 to 32"},
    {"10.0.0.0/0008", "from 0 to 32"},
    {"lb.example.com", "not an IPv4 or IPv6"},
    {"10.0.0/8", "not an IPv4 or IPv6"},
    {"[::1]/128", "not an IPv4 or IPv6"},
    {"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21/8", "not an address block"},
};

START_TEST(bad_cidrs_are_refused)
{
    struct cidr_list l = {NULL, 0};
    struct cg_err err = {""};

    ck_assert_int_eq(cidr_list_parse(bad_lists[_i].list, &l, &err), CG_EINVAL);
    ck_assert_msg(strstr(err.msg, bad_lists[_i].reason), "'%s': %s", bad_lists[_i].list, err.msg);
    ck_assert_ptr_null(l.items);
    ck_assert_uint_eq(l.count, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cidr");
    TCase *tc_match = tcase_create("match");
    TCase *tc_parse = tcase_create("parse");
    SRunner *sr;
    int failed;

    tcase_add_test(tc_match, cidr_matches);
    tcase_add_test(tc_parse, good_lists_parse);
    tcase_add_loop_test(tc_parse, bad_cidrs_are_refused, 0,
                        sizeof(bad_lists) / sizeof(bad_lists[0]));
    suite_add_tcase(s, tc_match);
    suite_add_tcase(s, tc_parse);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
