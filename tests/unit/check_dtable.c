/* Unit tests for dtable: table creation and name validation, records of
 * every type, savepoints, resources, idempotency, and route matching. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "db/dtable.h"
#include "http/routes.h"
#include "db/store.h"

static char dir[64], path[128];
static struct dtable_db *db;
static struct dtable_table t;

static void setup(void)
{
    static const struct dtable_column cols[] = {
        {"name", DT_TEXT},
        {"n", DT_INTEGER},
        {"x", DT_REAL},
        {"doc", DT_JSON},
    };
    char *roles[] = {(char *)"push"};
    struct store *s = NULL;
    struct cg_err err = {""};

    snprintf(dir, sizeof(dir), "/tmp/check_dtable.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    ck_assert_int_eq(store_open(path, STORE_OPEN_INIT, &s, &err), CG_OK);
    store_close(s);
    ck_assert_int_eq(dtable_open(path, &db, &err), CG_OK);
    ck_assert_int_eq(dtable_table_create(db, "u_rec", cols, 4, roles, 1, &err), CG_OK);
    ck_assert_int_eq(dtable_table_get(db, "u_rec", &t, &err), CG_OK);
}

static void teardown(void)
{
    char cmd[128];

    dtable_table_free(&t);
    dtable_close(db);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const struct {
    const char *name; /* candidate */
    bool valid;       /* accepted */
} name_cases[] = {
    {"orders", true},
    {"u_inbound", true},
    {"a1_b2", true},
    {"", false},
    {"1abc", false},
    {"Orders", false},
    {"sys_user", false},
    {"sqlite_master", false},
    {"a-b", false},
    {"a b", false},
    {"x\"; DROP TABLE sys_user; --", false},
    {"caf\xc3\xa9", false},
    {"rowid", false},
    {"oid", false},
    {"rowid2", true},
    {"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc", true},
    {"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd", false},
};

START_TEST(names)
{
    ck_assert_msg(dtable_valid_name(name_cases[_i].name) == name_cases[_i].valid, "%s",
                  name_cases[_i].name);
}
END_TEST

START_TEST(create_refusals)
{
    struct dtable_column ok = {"a", DT_TEXT}, evil = {"a\"b", DT_TEXT}, sys = {"sys_id", DT_TEXT};
    struct dtable_column dup[2] = {{"a", DT_TEXT}, {"a", DT_INTEGER}};
    struct cg_err err = {""};
    struct dtable_table got;

    ck_assert_int_eq(dtable_table_create(db, "u_rec", &ok, 1, NULL, 0, &err), CG_EEXIST);
    ck_assert_int_eq(dtable_table_create(db, "bad name", &ok, 1, NULL, 0, &err), CG_EINVAL);
    ck_assert_int_eq(dtable_table_create(db, "t2", &evil, 1, NULL, 0, &err), CG_EINVAL);
    ck_assert_int_eq(dtable_table_create(db, "t2", &sys, 1, NULL, 0, &err), CG_EINVAL);
    ck_assert_int_eq(dtable_table_create(db, "t2", dup, 2, NULL, 0, &err), CG_EINVAL);
    ck_assert_int_eq(dtable_table_create(db, "t2", &ok, 0, NULL, 0, &err), CG_EINVAL);
    ck_assert_int_eq(dtable_table_get(db, "t2", &got, &err), CG_ENOTFOUND);
}
END_TEST

START_TEST(records)
{
    json_error_t jerr;
    json_t *in = json_loads("{\"name\":\"a\",\"n\":42,\"x\":1.5,\"doc\":{\"k\":[1,{}]}}", 0, &jerr);
    json_t *rec = NULL, *rows = NULL, *filter;
    struct cg_err err = {""};
    char id[37], id2[37];

    ck_assert_int_eq(dtable_insert(db, &t, in, "integrator1", id, &err), CG_OK);
    ck_assert_uint_eq(strlen(id), 36);
    ck_assert_int_eq(id[14], '4');
    ck_assert_int_eq(dtable_get(db, &t, id, &rec, &err), CG_OK);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "sys_created_by")), "integrator1");
    ck_assert(json_is_integer(json_object_get(rec, "n")));
    ck_assert(json_is_real(json_object_get(rec, "x")));
    ck_assert(json_is_object(json_array_get(json_object_get(json_object_get(rec, "doc"), "k"), 1)));
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(rec, "sys_created_on"))), 24);
    json_decref(rec);
    ck_assert_int_eq(dtable_insert(db, &t, in, "integrator1", id2, &err), CG_OK);
    ck_assert_str_ne(id, id2);
    filter = json_pack("{s:i}", "n", 42);
    ck_assert_int_eq(dtable_query(db, &t, filter, 10, 0, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 2);
    json_decref(rows);
    ck_assert_int_eq(dtable_query(db, &t, filter, 1, 1, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 1);
    json_decref(rows);
    json_decref(filter);
    json_decref(in);
    in = json_pack("{s:s}", "name", "b");
    ck_assert_int_eq(dtable_update(db, &t, id, in, &err), CG_OK);
    ck_assert_int_eq(dtable_update(db, &t, "no-such-id", in, &err), CG_ENOTFOUND);
    json_decref(in);
    /* An update with no fields still says whether the record exists. */
    in = json_object();
    ck_assert_int_eq(dtable_update(db, &t, id, in, &err), CG_OK);
    ck_assert_int_eq(dtable_update(db, &t, "no-such-id", in, &err), CG_ENOTFOUND);
    json_decref(in);
    /* A null filter value is IS NULL; a json filter compares values. */
    in = json_pack("{s:s}", "name", "no n");
    ck_assert_int_eq(dtable_insert(db, &t, in, "u", id, &err), CG_OK);
    json_decref(in);
    filter = json_pack("{s:n}", "n");
    ck_assert_int_eq(dtable_query(db, &t, filter, 10, 0, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "sys_id")), id);
    json_decref(rows);
    json_decref(filter);
    filter = json_loads("{\"doc\":{\"k\":[1,{}]}}", 0, &jerr);
    ck_assert_int_eq(dtable_query(db, &t, filter, 10, 0, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 2);
    json_decref(rows);
    json_decref(filter);
    /* What a write set holds for a row matches as the stored row does. */
    in = json_loads("{\"name\":\"m\",\"x\":2,\"doc\":{\"b\":1,\"a\":2}}", 0, &jerr);
    rec = dtable_new_row(&t, "id-1", "2026-01-01T00:00:00.000Z", "u", in);
    ck_assert(json_is_real(json_object_get(rec, "x")));
    ck_assert(json_is_null(json_object_get(rec, "n")));
    filter = json_loads("{\"doc\":{\"a\":2,\"b\":1},\"x\":2.0,\"n\":null}", 0, &jerr);
    ck_assert(dtable_row_matches(&t, rec, filter));
    json_decref(filter);
    filter = json_pack("{s:s}", "name", "other");
    ck_assert(!dtable_row_matches(&t, rec, filter));
    ck_assert(!dtable_row_may_match(&t, rec, filter));
    json_decref(filter);
    filter = json_pack("{s:{s:i}}", "doc", "a", 3);
    ck_assert(!dtable_row_matches(&t, rec, filter));
    /* Conflict checks treat json columns as a possible match, and a value
     * kept only as `true` (unknown) too. */
    ck_assert(dtable_row_may_match(&t, rec, filter));
    json_decref(filter);
    json_object_set_new(rec, "name", json_true());
    filter = json_pack("{s:s}", "name", "other");
    ck_assert(!dtable_row_matches(&t, rec, filter));
    ck_assert(dtable_row_may_match(&t, rec, filter));
    json_decref(filter);
    json_decref(rec);
    json_decref(in);
}
END_TEST

static const struct {
    const char *json; /* fields */
    const char *why;  /* part of the refusal */
} bad_records[] = {
    {"{\"bogus\":1}", "unknown column 'bogus'"},
    {"{\"n\":\"1\"}", "column 'n' of table 'u_rec' takes integer"},
    {"{\"n\":1.5}", "takes integer"},
    {"{\"x\":\"1\"}", "takes real"},
    {"{\"name\":5}", "takes text"},
    {"[1]", "must be a JSON object"},
    {"{\"doc\":1, \"rowid\":2}", "unknown column 'rowid'"},
};

START_TEST(record_refusals)
{
    json_error_t jerr;
    json_t *in = json_loads(bad_records[_i].json, 0, &jerr);
    struct cg_err err = {""};
    char id[37];

    ck_assert_int_eq(dtable_insert(db, &t, in, "u", id, &err), CG_EINVAL);
    ck_assert_msg(strstr(err.msg, bad_records[_i].why), "%s: %s", bad_records[_i].json, err.msg);
    json_decref(in);
}
END_TEST

START_TEST(savepoints)
{
    json_t *in = json_pack("{s:s}", "name", "sp"), *rows = NULL;
    struct cg_err err = {""};
    char id[37];

    ck_assert_int_eq(dtable_begin(db, &err), CG_OK);
    ck_assert_int_eq(dtable_savepoint(db, &err), CG_OK);
    ck_assert_int_eq(dtable_insert(db, &t, in, "u", id, &err), CG_OK);
    dtable_rollback_to(db);
    ck_assert_int_eq(dtable_savepoint(db, &err), CG_OK);
    ck_assert_int_eq(dtable_insert(db, &t, in, "u", id, &err), CG_OK);
    ck_assert_int_eq(dtable_release(db, &err), CG_OK);
    ck_assert_int_eq(dtable_commit(db, &err), CG_OK);
    ck_assert_int_eq(dtable_query(db, &t, NULL, 0, 0, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 1);
    json_decref(rows);
    json_decref(in);
}
END_TEST

START_TEST(resources_and_routes)
{
    struct dtable_resource r, *list = NULL;
    struct cg_err err = {""};
    struct catalog c;
    struct route_result m;
    size_t n = 0;
    int64_t v0 = 0, v1 = 0;

    ck_assert_int_eq(dtable_resource_version(db, &v0), CG_OK);
    memset(&r, 0, sizeof(r));
    r.ns = (char *)"acme";
    r.api = (char *)"orders";
    r.version = (char *)"v1";
    r.method = (char *)"PUT";
    r.path = (char *)"/orders/{number}";
    r.script_name = (char *)"u.lua";
    r.script = (char *)"response.status = 200";
    ck_assert_int_eq(dtable_resource_add(db, &r, &err), CG_OK);
    ck_assert_int_eq(dtable_resource_add(db, &r, &err), CG_EEXIST);
    ck_assert_int_eq(dtable_resource_version(db, &v1), CG_OK);
    ck_assert_int_gt(v1, v0);
    ck_assert_int_eq(dtable_resource_list(db, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 1);
    memset(&c, 0, sizeof(c));
    c.resources = list;
    c.n_resources = n;
    c.tables = &t;
    c.n_tables = 1;
    routes_match(&c, "PUT", "/api/acme/orders/v1/orders/A-1", &m);
    ck_assert_int_eq(m.match, ROUTE_RESOURCE);
    ck_assert_str_eq(json_string_value(json_object_get(m.params, "number")), "A-1");
    json_decref(m.params);
    routes_match(&c, "PUT", "/api/acme/orders/orders/A-2", &m);
    ck_assert_int_eq(m.match, ROUTE_RESOURCE);
    json_decref(m.params);
    routes_match(&c, "GET", "/api/acme/orders/v1/orders/A-1", &m);
    ck_assert_int_eq(m.match, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(m.allow, "PUT");
    routes_match(&c, "PUT", "/api/acme/orders/v1/orders", &m);
    ck_assert_int_eq(m.match, ROUTE_NONE);
    routes_match(&c, "PUT", "/api/acme/orders/v1/orders/../x", &m);
    ck_assert_int_eq(m.match, ROUTE_NONE);
    routes_match(&c, "GET", "/api/now/table/u_rec", &m);
    ck_assert_int_eq(m.match, ROUTE_TABLE);
    routes_match(&c, "DELETE", "/api/now/table/u_rec/abc", &m);
    ck_assert_int_eq(m.match, ROUTE_WRONG_METHOD);
    ck_assert(routes_valid_template("/a/{b}/c"));
    ck_assert(!routes_valid_template("a/b"));
    ck_assert(!routes_valid_template("/a//b"));
    ck_assert(!routes_valid_template("/a/{b"));
    ck_assert(!routes_valid_template("/a/../b"));
    ck_assert(!routes_valid_template("/a/b c"));
    ck_assert(!routes_valid_template("/a/{id}/{id}"));
    ck_assert(routes_valid_template("/a/{id}/{other}"));
    ck_assert(routes_same_shape("/o/{id}", "/o/{number}"));
    ck_assert(!routes_same_shape("/o/{id}", "/o/latest"));
    ck_assert(!routes_same_shape("/o/{id}", "/o/{id}/x"));
    ck_assert(routes_same_shape("/o/latest", "/o/latest"));
    ck_assert(routes_looks_versioned("/v1/orders"));
    ck_assert(!routes_looks_versioned("/vip/orders"));
    ck_assert(!routes_looks_versioned("/orders/v1"));
    dtable_resource_list_free(list, n);
}
END_TEST

START_TEST(most_specific_route_wins)
{
    struct dtable_resource rs[3];
    struct catalog c;
    struct route_result m;
    const char *paths[] = {"/o/{id}", "/o/{id}/items", "/o/latest"};

    memset(rs, 0, sizeof(rs));
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < 3; i++) {
        rs[i].id = i + 1;
        rs[i].ns = (char *)"acme";
        rs[i].api = (char *)"shop";
        rs[i].version = (char *)"";
        rs[i].method = (char *)"GET";
        rs[i].path = (char *)paths[i];
    }
    c.resources = rs;
    c.n_resources = 3;
    /* Added after /o/{id}, the literal still answers its own path. */
    routes_match(&c, "GET", "/api/acme/shop/o/latest", &m);
    ck_assert_int_eq(m.match, ROUTE_RESOURCE);
    ck_assert_int_eq(m.resource->id, 3);
    json_decref(m.params);
    routes_match(&c, "GET", "/api/acme/shop/o/42", &m);
    ck_assert_int_eq(m.resource->id, 1);
    ck_assert_str_eq(json_string_value(json_object_get(m.params, "id")), "42");
    json_decref(m.params);
    routes_match(&c, "GET", "/api/acme/shop/o/latest/items", &m);
    ck_assert_int_eq(m.resource->id, 2);
    json_decref(m.params);
    routes_match(&c, "POST", "/api/acme/shop/o/latest", &m);
    ck_assert_int_eq(m.match, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(m.allow, "GET");
}
END_TEST

/* Found by fuzz_routes: which resource answered depended on the catalog's order. */
START_TEST(route_precedence_is_order_free)
{
    struct dtable_resource rs[5], rev[5];
    struct catalog c, r;
    struct route_result m;
    const char *versions[] = {"", "v1", "v2", "v02", "v2"};
    const char *paths[] = {"/x", "/x", "/{p}/x", "/y", "/x"};

    memset(rs, 0, sizeof(rs));
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < 5; i++) {
        rs[i].id = i + 1;
        rs[i].ns = (char *)"acme";
        rs[i].api = (char *)"shop";
        rs[i].version = (char *)versions[i];
        rs[i].method = (char *)"GET";
        rs[i].path = (char *)paths[i];
        rev[4 - i] = rs[i];
    }
    c.resources = rs;
    c.n_resources = 5;
    r = c;
    r.resources = rev;
    for (int k = 0; k < 2; k++) {
        const struct catalog *cat = k ? &r : &c;

        /* Without a version segment: the resource without versions, not
         * the default version's. */
        routes_match(cat, "GET", "/api/acme/shop/x", &m);
        ck_assert_int_eq(m.match, ROUTE_RESOURCE);
        ck_assert_int_eq(m.resource->id, 1);
        json_decref(m.params);
        /* A version named in the path beats a parameter that would take it. */
        routes_match(cat, "GET", "/api/acme/shop/v1/x", &m);
        ck_assert_int_eq(m.match, ROUTE_RESOURCE);
        ck_assert_int_eq(m.resource->id, 2);
        json_decref(m.params);
        /* v2 and v02 are one number: the default is picked by text, not order. */
        routes_match(cat, "GET", "/api/acme/shop/y", &m);
        ck_assert_int_eq(m.match, ROUTE_NONE);
        routes_match(cat, "GET", "/api/acme/shop/v2/x", &m);
        ck_assert_int_eq(m.match, ROUTE_RESOURCE);
        ck_assert_int_eq(m.resource->id, 5);
        json_decref(m.params);
    }
}
END_TEST

START_TEST(deadline_interrupts_queries)
{
    json_t *in = json_pack("{s:s}", "name", "bulk"), *rows = NULL;
    struct cg_err err = {""};
    char id[37];

    ck_assert_int_eq(dtable_begin(db, &err), CG_OK);
    for (int i = 0; i < 3000; i++)
        ck_assert_int_eq(dtable_insert(db, &t, in, "u", id, &err), CG_OK);
    ck_assert_int_eq(dtable_commit(db, &err), CG_OK);
    /* A deadline already past interrupts a query that scans the table. */
    dtable_set_deadline(db, clock_ms() - 1);
    ck_assert_int_eq(dtable_query(db, &t, in, 1000, 2900, &rows, &err), CG_EDB);
    ck_assert_ptr_nonnull(strstr(err.msg, "interrupt"));
    dtable_set_deadline(db, 0);
    ck_assert_int_eq(dtable_query(db, &t, in, 1000, 2900, &rows, &err), CG_OK);
    ck_assert_uint_eq(json_array_size(rows), 100);
    json_decref(rows);
    json_decref(in);
}
END_TEST

START_TEST(idempotency)
{
    struct cg_err err = {""};
    struct dtable_idem st = {0}, got;
    char body[] = "{\"a\":1}", xpath[] = "/x";

    st.status = 201;
    st.body = body;
    st.headers = json_pack("{s:s}", "Location", "/x/1");
    dtable_request_sha256("POST", "/x", "{}", 2, st.request_sha256);
    snprintf(st.method, sizeof(st.method), "POST");
    st.path = xpath;
    st.created_at = 1000 - 86400;
    ck_assert_int_eq(dtable_idem_get(db, "u", "k1", 0, &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(dtable_idem_put(db, "u", "k1", &st, 1000, &err), CG_OK);
    ck_assert_int_eq(dtable_idem_get(db, "u", "k1", 500, &got, &err), CG_OK);
    ck_assert_int_eq(got.status, 201);
    ck_assert_str_eq(got.body, "{\"a\":1}");
    ck_assert_str_eq(got.path, "/x");
    ck_assert_str_eq(got.method, "POST");
    ck_assert_str_eq(got.request_sha256, st.request_sha256);
    ck_assert_str_eq(json_string_value(json_object_get(got.headers, "Location")), "/x/1");
    ck_assert_int_eq(got.created_at, 1000);
    dtable_idem_free(&got);
    /* A live key is not replaced: the second writer learns it lost. */
    st.status = 200;
    ck_assert_int_eq(dtable_idem_put(db, "u", "k1", &st, 1001, &err), CG_EEXIST);
    /* An expired one is. */
    st.created_at = 1001;
    ck_assert_int_eq(dtable_idem_put(db, "u", "k1", &st, 1002, &err), CG_OK);
    ck_assert_int_eq(dtable_idem_get(db, "u", "k1", 0, &got, &err), CG_OK);
    ck_assert_int_eq(got.status, 200);
    dtable_idem_free(&got);
    /* Older than the window, or another user's key: not found. */
    ck_assert_int_eq(dtable_idem_get(db, "u", "k1", 2000, &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(dtable_idem_get(db, "v", "k1", 0, &got, &err), CG_ENOTFOUND);
    /* Purged when expired. */
    ck_assert_int_eq(dtable_idem_purge(db, 1003, &err), CG_OK);
    ck_assert_int_eq(dtable_idem_get(db, "u", "k1", 0, &got, &err), CG_ENOTFOUND);
    json_decref(st.headers);
}
END_TEST

/* The request hash covers method, the whole target as sent, and body. */
START_TEST(request_hash)
{
    char a[DTABLE_REQUEST_HASH_SIZE], b[DTABLE_REQUEST_HASH_SIZE];
    static const struct {
        const char *method, *target, *body;
    } other[] = {
        {"PUT", "/x?a=1", "{}"},  {"POST", "/x?a=2", "{}"},   {"POST", "/x", "{}"},
        {"POST", "/x?a=1", "[]"}, {"POST", "/x?a=%31", "{}"}, {"POST", "/x?a=1&", "{}"},
        {"POST", "/y?a=1", "{}"},
    };

    dtable_request_sha256("POST", "/x?a=1", "{}", 2, a);
    ck_assert_uint_eq(strlen(a), DTABLE_REQUEST_HASH_SIZE - 1);
    ck_assert_int_eq(strncmp(a, "v2:", 3), 0);
    dtable_request_sha256("POST", "/x?a=1", "{}", 2, b);
    ck_assert_str_eq(a, b);
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        dtable_request_sha256(other[i].method, other[i].target, other[i].body,
                              strlen(other[i].body), b);
        ck_assert_str_ne(a, b);
    }
    /* Method and target are delimited: "POST" + "/x" is not "POS" + "T/x". */
    dtable_request_sha256("POS", "T/x?a=1", "{}", 2, b);
    ck_assert_str_ne(a, b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dtable");
    TCase *tc = tcase_create("tables");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, names, 0, sizeof(name_cases) / sizeof(name_cases[0]));
    tcase_add_test(tc, create_refusals);
    tcase_add_test(tc, records);
    tcase_add_loop_test(tc, record_refusals, 0, sizeof(bad_records) / sizeof(bad_records[0]));
    tcase_add_test(tc, savepoints);
    tcase_add_test(tc, resources_and_routes);
    tcase_add_test(tc, most_specific_route_wins);
    tcase_add_test(tc, route_precedence_is_order_free);
    tcase_add_test(tc, idempotency);
    tcase_add_test(tc, request_hash);
    tcase_add_test(tc, deadline_interrupts_queries);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
