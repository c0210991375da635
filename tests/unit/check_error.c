/* Unit tests for the error registry and the error body. */
#include "config.h"
#include "base/utf8.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "auth/identity.h"

static const struct {
    enum cg_error e;     /* registry entry */
    unsigned status;     /* HTTP status */
    const char *message; /* fixed message */
} registry_cases[] = {
    {CG_ERROR_NO_CREDENTIALS, 401, "User Not Authenticated"},
    {CG_ERROR_AUTH_REFUSED, 401, "User Not Authenticated"},
    {CG_ERROR_NOT_AUTHORIZED, 403, "User Not Authorized"},
    {CG_ERROR_NOT_FOUND, 404, "Requested URI does not represent any resource"},
    {CG_ERROR_METHOD_NOT_ALLOWED, 405, "Method not Supported"},
    {CG_ERROR_BAD_REQUEST, 400, "Invalid request"},
    {CG_ERROR_BODY_TOO_LARGE, 413, "Request body too large"},
    {CG_ERROR_UNSUPPORTED_MEDIA_TYPE, 415, "Unsupported media type"},
    {CG_ERROR_INTERNAL, 500, "Internal server error"},
    {CG_ERROR_UNAVAILABLE, 503, "Service unavailable"},
};

START_TEST(registry)
{
    ck_assert_uint_eq(error_status(registry_cases[_i].e), registry_cases[_i].status);
    ck_assert_str_eq(error_message(registry_cases[_i].e), registry_cases[_i].message);
}
END_TEST

START_TEST(no_credentials_body_is_exact)
{
    char *body = error_body(CG_ERROR_NO_CREDENTIALS, NULL, CG_DETAIL_NO_CREDENTIALS);

    ck_assert_str_eq(body, "{\"error\":{\"message\":\"User Not Authenticated\",\"detail\":"
                           "\"Required to provide Auth information\"},\"status\":\"failure\"}");
    free(body);
}
END_TEST

START_TEST(details_are_escaped)
{
    char *body = error_body(CG_ERROR_NOT_FOUND, NULL, "/api/\"x\"\n\\<>");
    json_error_t jerr;
    json_t *o = json_loads(body, 0, &jerr);

    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "detail")),
                     "/api/\"x\"\n\\<>");
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "failure");
    json_decref(o);
    free(body);
}
END_TEST

START_TEST(invalid_utf8_is_repaired_not_dropped)
{
    char *body = error_body(CG_ERROR_NOT_FOUND, NULL, "/api/x/\xff\xc3(");
    json_error_t jerr;
    json_t *o = json_loads(body, 0, &jerr);

    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "detail")),
                     "/api/x/\\xff\\xc3(");
    json_decref(o);
    free(body);
}
END_TEST

/* utf8_prefix: how much of each input is valid UTF-8. */
static const struct {
    const char *in; /* bytes */
    size_t valid;   /* expected valid prefix */
} utf8_cases[] = {
    {"plain ascii", 11},     {"J\xc3\xbcrgen", 7}, /* ü */
    {"\xe2\x82\xac", 3},                           /* € */
    {"\xf0\x9f\x94\x91", 4},                       /* U+1F511 */
    {"ab\xff", 2},                                 /* never valid */
    {"ab\xc3", 2},                                 /* cut in the middle */
    {"\xc0\xaf", 0},                               /* overlong '/' */
    {"\xe0\x80\xaf", 0},                           /* overlong, 3 bytes */
    {"\xed\xa0\x80", 0},                           /* surrogate U+D800 */
    {"\xf4\x90\x80\x80", 0},                       /* above U+10FFFF */
    {"a\xe2\x82", 1},                              /* truncated € */
    {"\xc3\xbc\x80", 2},                           /* stray continuation byte */
};

START_TEST(utf8_prefix_cases)
{
    ck_assert_uint_eq(utf8_prefix(utf8_cases[_i].in, strlen(utf8_cases[_i].in)),
                      utf8_cases[_i].valid);
}
END_TEST

START_TEST(utf8_trim_cuts_half_characters)
{
    char a[] = "M\xc3\xbcller \xc3", b[] = "\xe2\x82\xac\xe2\x82", c[] = "ok \xc3\xbc", d[] = "";

    utf8_trim(a);
    utf8_trim(b);
    utf8_trim(c);
    utf8_trim(d);
    ck_assert_str_eq(a, "M\xc3\xbcller ");
    ck_assert_str_eq(b, "\xe2\x82\xac");
    ck_assert_str_eq(c, "ok \xc3\xbc");
    ck_assert_str_eq(d, "");
}
END_TEST

START_TEST(json_text_null_and_valid)
{
    json_t *n = utf8_json(NULL), *v = utf8_json("J\xc3\xbcrgen");

    ck_assert(json_is_null(n));
    ck_assert_str_eq(json_string_value(v), "J\xc3\xbcrgen");
    json_decref(n);
    json_decref(v);
}
END_TEST

START_TEST(reason_codes)
{
    static const char *const codes[] = {
        "ok",
        "no_credentials",
        "untrusted_issuer",
        "missing_intermediate",
        "expired",
        "not_yet_valid",
        "revoked",
        "self_signed",
        "bad_key_usage",
        "ca_disabled",
        "not_mapped",
        "user_locked",
        "bad_password",
        "cert_required",
        "role_missing",
    };

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        ck_assert_str_eq(auth_reason_code((enum auth_reason)i), codes[i]);
    ck_assert_str_eq(auth_reason_code((enum auth_reason)99), "unknown");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("registry");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, registry, 0, sizeof(registry_cases) / sizeof(registry_cases[0]));
    tcase_add_test(tc, no_credentials_body_is_exact);
    tcase_add_test(tc, details_are_escaped);
    tcase_add_test(tc, reason_codes);
    suite_add_tcase(s, tc);
    tc = tcase_create("utf8");
    tcase_add_test(tc, invalid_utf8_is_repaired_not_dropped);
    tcase_add_loop_test(tc, utf8_prefix_cases, 0, sizeof(utf8_cases) / sizeof(utf8_cases[0]));
    tcase_add_test(tc, utf8_trim_cuts_half_characters);
    tcase_add_test(tc, json_text_null_and_valid);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
