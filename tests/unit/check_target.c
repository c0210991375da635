/* Unit tests for the request target check. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdlib.h>

#include "http/target.h"

static const struct {
    const char *target; /* as sent */
    bool ok;            /* accepted */
} target_cases[] = {
    {"/healthz", true},   {"/api/acme/orders?x=1&y=caf%C3%A9", true},
    {"/caf%C3%A9", true}, {"/a%2", true},
    {"/a%zz?%", true},    {"/healthz%00junk", false},
    {"/ok?a=%00", false}, {"/%C3", false},
    {"/%C0%AF", false},   {"/ok?%FF", false},
    {"/ok?a=%e9", false}, {"", true},
};

START_TEST(target_check_cases)
{
    const char *why = target_check(target_cases[_i].target);

    ck_assert_msg((why == NULL) == target_cases[_i].ok, "%s: %s", target_cases[_i].target,
                  why ? why : "accepted");
}
END_TEST

START_TEST(null_target_is_fine)
{
    ck_assert_ptr_null(target_check(NULL));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("target");
    TCase *tc = tcase_create("check");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, target_check_cases, 0, sizeof(target_cases) / sizeof(target_cases[0]));
    tcase_add_test(tc, null_target_is_fine);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
