/* Unit tests for util and password. */
#include "config.h"
#include "base/utf8.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/password.h"
#include "base/util.h"

START_TEST(time_roundtrip)
{
    char buf[21];
    int64_t t = 0;

    cg_time_iso(1700000000, buf);
    ck_assert_str_eq(buf, "2023-11-14T22:13:20Z");
    ck_assert_int_eq(cg_time_parse(buf, &t), CG_OK);
    ck_assert_int_eq(t, 1700000000);
    ck_assert_int_eq(cg_time_parse("2024-01-01T00:00:00+00:00", &t), CG_OK);
    ck_assert_int_eq(t, 1704067200);
    ck_assert_int_eq(cg_time_parse("yesterday", &t), CG_EPARSE);
    ck_assert_int_eq(cg_time_parse("2024-01-01T00:00:00+02:00", &t), CG_EPARSE);
}
END_TEST

START_TEST(hex_encoding)
{
    const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];

    cg_hex(in, sizeof(in), out);
    ck_assert_str_eq(out, "000fa5ff");
}
END_TEST

static const struct {
    const char *in;     /* list text */
    size_t n;           /* expected count */
    const char *joined; /* items joined with '|' */
} split_cases[] = {
    {"", 0, ""},       {"a", 1, "a"},
    {"a,b", 2, "a|b"}, {" a , b ,, c ", 3, "a|b|c"},
    {",,,", 0, ""},    {"push,read,push", 3, "push|read|push"},
};

START_TEST(strlcpy_bounds)
{
    char buf[5];

    memset(buf, 'x', sizeof(buf));
    ck_assert_uint_eq(cg_strlcpy(buf, "abc", sizeof(buf)), 3);
    ck_assert_str_eq(buf, "abc");
    ck_assert_uint_eq(cg_strlcpy(buf, "abcdefgh", sizeof(buf)), 4);
    ck_assert_str_eq(buf, "abcd");
    ck_assert_uint_eq(cg_strlcpy(buf, NULL, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "");
    buf[0] = 'z';
    ck_assert_uint_eq(cg_strlcpy(buf, "abc", 0), 0);
    ck_assert_int_eq(buf[0], 'z');
}
END_TEST

START_TEST(split_list)
{
    char **items = NULL, joined[128] = "";
    size_t n = 99;

    ck_assert_int_eq(cg_split_list(split_cases[_i].in, &items, &n), CG_OK);
    ck_assert_uint_eq(n, split_cases[_i].n);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(joined, "|");
        strcat(joined, items[i]);
    }
    ck_assert_str_eq(joined, split_cases[_i].joined);
    cg_strv_free(items, n);
}
END_TEST

START_TEST(split_null)
{
    char **items = NULL;
    size_t n = 9;

    ck_assert_int_eq(cg_split_list(NULL, &items, &n), CG_OK);
    ck_assert_uint_eq(n, 0);
    cg_strv_free(items, n);
}
END_TEST

START_TEST(valid_names)
{
    char longname[80];

    ck_assert(cg_valid_name("integrator1"));
    ck_assert(cg_valid_name("a.b-c_d@e"));
    ck_assert(!cg_valid_name(""));
    ck_assert(!cg_valid_name(NULL));
    ck_assert(!cg_valid_name("a b"));
    ck_assert(!cg_valid_name("x';DROP TABLE sys_user;--"));
    ck_assert(!cg_valid_name("caf\xc3\xa9"));
    memset(longname, 'a', 64);
    longname[64] = '\0';
    ck_assert(cg_valid_name(longname));
    longname[64] = 'a';
    longname[65] = '\0';
    ck_assert(!cg_valid_name(longname));
}
END_TEST

static const struct {
    const char *in; /* bytes */
    size_t len;     /* expected length of the first character, 0: invalid */
    uint32_t cp;    /* its code point */
} utf8_cases[] = {
    {"a", 1, 'a'},
    {"\xc3\xa9", 2, 0xe9},
    {"\xe2\x82\xac", 3, 0x20ac},
    {"\xf0\x9f\x94\x92", 4, 0x1f512},
    {"\xf4\x8f\xbf\xbf", 4, 0x10ffff},
    {"\xe9t", 0, 0},                /* Latin-1 byte */
    {"\xc3", 0, 0},                 /* truncated */
    {"\xc0\xaf", 0, 0},             /* overlong '/' */
    {"\xe0\x80\xaf", 0, 0},         /* overlong, three bytes */
    {"\xed\xa0\x80", 0, 0},         /* surrogate U+D800 */
    {"\xf4\x90\x80\x80", 0, 0},     /* past U+10FFFF */
    {"\x80", 0, 0},                 /* lone continuation byte */
    {"\xc3\x28", 0, 0},             /* bad continuation */
    {"\xf8\x88\x80\x80\x80", 0, 0}, /* five-byte form */
};

START_TEST(utf8_decoding)
{
    uint32_t cp = 0;
    size_t n = utf8_char(utf8_cases[_i].in, strlen(utf8_cases[_i].in), &cp);

    ck_assert_uint_eq(n, utf8_cases[_i].len);
    if (n)
        ck_assert_uint_eq(cp, utf8_cases[_i].cp);
}
END_TEST

START_TEST(text_validity)
{
    ck_assert(utf8_text_valid(""));
    ck_assert(utf8_text_valid("Test PKI"));
    ck_assert(utf8_text_valid("Soci\xc3\xa9t\xc3\xa9 G\xc3\xa9n\xc3\xa9rale \xe2\x82\xac"));
    ck_assert(!utf8_text_valid("Soci\xe9t\xe9"));
    ck_assert(!utf8_text_valid("a\nb"));
    ck_assert(!utf8_text_valid("tab\there"));
    ck_assert(!utf8_text_valid("del\x7f"));
    ck_assert(!utf8_text_valid("c1\xc2\x85"));
    ck_assert(!utf8_text_valid("x\xc3"));
    /* Only the first character is judged by utf8_char; a length stops it. */
    ck_assert_uint_eq(utf8_char("\xc3\xa9", 1, NULL), 0);
    ck_assert(utf8_is_control(0) && utf8_is_control(0x1f) && utf8_is_control(0x9f));
    ck_assert(!utf8_is_control(' ') && !utf8_is_control(0xa0));
}
END_TEST

START_TEST(strappend)
{
    char buf[8];
    size_t len = 0;

    cg_strappend(buf, sizeof(buf), &len, "%s", "abc");
    ck_assert_str_eq(buf, "abc");
    cg_strappend(buf, sizeof(buf), &len, "%d", 12345);
    ck_assert_str_eq(buf, "abc1234");
    ck_assert_uint_eq(len, 7);
    cg_strappend(buf, sizeof(buf), &len, "more");
    ck_assert_str_eq(buf, "abc1234");
    ck_assert_uint_eq(len, 7);
}
END_TEST

START_TEST(consttime)
{
    ck_assert(cg_consttime_eq("abcd", "abcd", 4));
    ck_assert(!cg_consttime_eq("abcd", "abce", 4));
    ck_assert(cg_consttime_eq("", "", 0));
}
END_TEST

START_TEST(read_file_limits)
{
    char path[] = "/tmp/check_util.XXXXXX", *data = NULL;
    struct cg_err err = {""};
    size_t len = 0;
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "hello", 5), 5);
    close(fd);
    ck_assert_int_eq(cg_read_file(path, 100, &data, &len, &err), CG_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(data, "hello");
    free(data);
    data = NULL;
    ck_assert_int_eq(cg_read_file(path, 4, &data, &len, &err), CG_EINVAL);
    ck_assert_ptr_null(data);
    ck_assert_ptr_nonnull(strstr(err.msg, "larger than 4 bytes"));
    unlink(path);
    ck_assert_int_eq(cg_read_file(path, 100, &data, &len, &err), CG_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(cg_read_file("/tmp", 100, &data, &len, &err), CG_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "is a directory"));
}
END_TEST

START_TEST(password_roundtrip)
{
    char *enc = NULL, *enc2 = NULL;

    ck_assert_int_eq(password_hash("correct horse", 13, &enc), CG_OK);
    ck_assert_ptr_nonnull(strstr(enc, "pbkdf2-sha256$600000$"));
    ck_assert(password_verify("correct horse", 13, enc));
    ck_assert(!password_verify("correct horsf", 13, enc));
    ck_assert(!password_verify("correct hors", 12, enc));
    ck_assert(!password_verify("", 0, enc));
    /* A fresh salt each time. */
    ck_assert_int_eq(password_hash("correct horse", 13, &enc2), CG_OK);
    ck_assert_str_ne(enc, enc2);
    ck_assert(password_verify("correct horse", 13, enc2));
    free(enc);
    free(enc2);
}
END_TEST

START_TEST(password_bad_input)
{
    char *enc = NULL;

    ck_assert_int_eq(password_hash("", 0, &enc), CG_EINVAL);
    ck_assert(!password_verify("x", 1, NULL));
    ck_assert(!password_verify("x", 1, "plain"));
    ck_assert(!password_verify("x", 1, "pbkdf2-sha256$5$AAAA$BBBB"));
    ck_assert(!password_verify("x", 1, "pbkdf2-sha256$600000$!!!$???"));
    ck_assert(!password_verify("x", 1, "pbkdf2-sha256$99999999999$AAAA$BBBB"));
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("strings");

    tcase_add_test(tc, time_roundtrip);
    tcase_add_test(tc, hex_encoding);
    tcase_add_loop_test(tc, split_list, 0, sizeof(split_cases) / sizeof(split_cases[0]));
    tcase_add_test(tc, split_null);
    tcase_add_test(tc, valid_names);
    tcase_add_test(tc, consttime);
    tcase_add_test(tc, strappend);
    tcase_add_test(tc, strlcpy_bounds);
    tcase_add_loop_test(tc, utf8_decoding, 0, sizeof(utf8_cases) / sizeof(utf8_cases[0]));
    tcase_add_test(tc, text_validity);
    tcase_add_test(tc, read_file_limits);
    suite_add_tcase(s, tc);
    tc = tcase_create("password");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, password_roundtrip);
    tcase_add_test(tc, password_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(util_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
