/* Unit tests for the Table API's query arguments. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/table_query.h"

static struct dtable_column cols[] = {
    {"name", DT_TEXT},
    {"n", DT_INTEGER},
    {"x", DT_REAL},
    {"doc", DT_JSON},
};
static struct dtable_table table = {.name = (char *)"u_rec", .cols = cols, .n_cols = 4};

static const struct {
    const char *args;   /* the arguments as a JSON object */
    int rc;             /* CG_OK or CG_EINVAL */
    long limit, offset; /* on CG_OK */
    const char *filter; /* on CG_OK: the filter as compact JSON */
} cases[] = {
    {"{}", CG_OK, 100, 0, "{}"},
    {"{\"sysparm_limit\":\"5\",\"sysparm_offset\":\"7\"}", CG_OK, 5, 7, "{}"},
    {"{\"sysparm_limit\":\"0\"}", CG_EINVAL, 0, 0, NULL},
    {"{\"sysparm_limit\":\"1001\"}", CG_EINVAL, 0, 0, NULL},
    {"{\"sysparm_offset\":\"-1\"}", CG_EINVAL, 0, 0, NULL},
    {"{\"sysparm_offset\":\"\"}", CG_EINVAL, 0, 0, NULL},
    {"{\"sysparm_query\":\"a=b\"}", CG_EINVAL, 0, 0, NULL},
    {"{\"n\":\"42\",\"x\":\"2.5\",\"name\":\"42\"}", CG_OK, 100, 0,
     "{\"n\":42,\"x\":2.5,\"name\":\"42\"}"},
    {"{\"doc\":\"{\\\"a\\\":[1]}\"}", CG_OK, 100, 0, "{\"doc\":{\"a\":[1]}}"},
    {"{\"doc\":\"plain\"}", CG_OK, 100, 0, "{\"doc\":\"plain\"}"},
    {"{\"n\":\"abc\",\"x\":\"1e999\"}", CG_OK, 100, 0, "{\"n\":\"abc\",\"x\":\"1e999\"}"},
    /* Out of range: kept as text (and refused by the query), not clamped. */
    {"{\"n\":\"9223372036854775808\"}", CG_OK, 100, 0, "{\"n\":\"9223372036854775808\"}"},
    {"{\"n\":\"-9223372036854775808\"}", CG_OK, 100, 0, "{\"n\":-9223372036854775808}"},
    {"{\"other\":\"1\"}", CG_OK, 100, 0, "{\"other\":\"1\"}"},
};

START_TEST(parse_cases)
{
    json_t *args = json_loads(cases[_i].args, 0, NULL);
    struct table_query q;
    char detail[200] = "";
    int rc;

    ck_assert_ptr_nonnull(args);
    rc = table_query_parse(&table, args, &q, detail, sizeof(detail));
    ck_assert_msg(rc == cases[_i].rc, "%s: rc %d (%s)", cases[_i].args, rc, detail);
    if (rc == CG_OK) {
        char *f = json_dumps(q.filter, JSON_COMPACT | JSON_PRESERVE_ORDER);

        ck_assert_int_eq(q.limit, cases[_i].limit);
        ck_assert_int_eq(q.offset, cases[_i].offset);
        ck_assert_str_eq(f, cases[_i].filter);
        free(f);
        json_decref(q.filter);
    } else {
        ck_assert_ptr_null(q.filter);
        ck_assert(detail[0] != '\0');
    }
    json_decref(args);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("table_query");
    TCase *tc = tcase_create("parse");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, parse_cases, 0, sizeof(cases) / sizeof(cases[0]));
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
