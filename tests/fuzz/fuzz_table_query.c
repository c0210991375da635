/*
 * fuzz_table_query: a Table API list request from its query string to the
 * records it returns: the query string split into arguments as
 * libmicrohttpd splits and decodes them, table_query_parse, then
 * dtable_query on a table of every column type (SQLite, in a temporary
 * directory), next to dtable_row_matches and dtable_row_may_match.
 * Input: the query string; optionally FUZZ_SEP and a JSON record that is
 * inserted first (and rolled back after).
 * Properties: SQL returns exactly the records dtable_row_matches accepts,
 * in the window sysparm_offset/sysparm_limit give; a record that matches
 * may match; an integer filter is the number written.
 */
#include "config.h"
#include "base/utf8.h"

#include <microhttpd.h>
#include <unistd.h>

#include "db/dtable.h"
#include "fuzz.h"
#include "db/store.h"
#include "engine/table_query.h"

static char dir[64];
static struct dtable_db *db;
static struct dtable_table table;

/* Records of every type, with values that compare equal across types. */
static const char *const seed_rows[] = {
    "{\"name\":\"a\",\"n\":1,\"x\":1.0,\"doc\":{\"a\":1}}",
    "{\"name\":\"b\",\"n\":-5,\"x\":2.5,\"doc\":[1,2]}",
    "{\"name\":\"\",\"n\":0,\"x\":0,\"doc\":\"a\"}",
    "{\"name\":\"caf\\u00e9\",\"n\":9223372036854775807,\"x\":1e300,\"doc\":1}",
    "{\"name\":\"a\",\"n\":null,\"x\":null,\"doc\":null}",
    "{\"n\":1,\"doc\":{\"b\":[true,null],\"a\":1.5}}",
    "{\"name\":\"1\",\"x\":-0.0,\"doc\":true}",
};

static void cleanup(void)
{
    char cmd[128];

    dtable_table_free(&table);
    dtable_close(db);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_table_query: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const struct dtable_column cols[] = {
        {"name", DT_TEXT},
        {"n", DT_INTEGER},
        {"x", DT_REAL},
        {"doc", DT_JSON},
    };
    char *roles[] = {(char *)"push"}, path[128];
    struct store *s = NULL;
    struct cg_err err = {""};
    char id[37];

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "%s/fuzz_table_query.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/t.db", dir);
    if (store_open(path, STORE_OPEN_INIT, &s, &err) || (store_close(s), 0) ||
        dtable_open(path, &db, &err) || dtable_table_create(db, "u_rec", cols, 4, roles, 1, &err) ||
        dtable_table_get(db, "u_rec", &table, &err)) {
        fprintf(stderr, "fuzz_table_query: %s\n", err.msg);
        abort();
    }
    for (size_t i = 0; i < sizeof(seed_rows) / sizeof(seed_rows[0]); i++) {
        json_t *rec = json_loads(seed_rows[i], 0, NULL);

        if (!rec || dtable_insert(db, &table, rec, "fuzzer", id, &err))
            abort();
        json_decref(rec);
    }
    atexit(cleanup);
    return 0;
}

/* The query's arguments as libmicrohttpd hands them on: split at '&',
 * name and value at the first '=', '+' as a space, %XX decoded; the last
 * of two equal names wins (as collecting them into an object does). */
static json_t *query_args(char *q)
{
    json_t *args = json_object();
    char *save = NULL;

    for (char *arg = strtok_r(q, "&", &save); arg; arg = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(arg, '='), *val = eq ? eq + 1 : arg + strlen(arg);

        if (eq)
            *eq = '\0';
        for (char *p = arg; *p; p++)
            *p = *p == '+' ? ' ' : *p;
        for (char *p = val; *p; p++)
            *p = *p == '+' ? ' ' : *p;
        MHD_http_unescape(arg);
        MHD_http_unescape(val);
        json_object_set_new(args, arg, utf8_json(val));
    }
    return args;
}

/* An integer filter value must be the number written, not a clamped one. */
static void check_integer(json_t *args, json_t *filter)
{
    json_t *v = json_object_get(filter, "n");
    const char *text = json_string_value(json_object_get(args, "n")), *s = text;
    char want[32], got[32];
    bool neg = false;

    if (!json_is_integer(v) || !s)
        return;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    while (*s == '0' && s[1])
        s++;
    snprintf(want, sizeof(want), "%s%.24s", neg && strcmp(s, "0") != 0 ? "-" : "", s);
    snprintf(got, sizeof(got), "%lld", (long long)json_integer_value(v));
    FUZZ_ASSERT(strcmp(want, got) == 0, "n=%s filters n = %s", text, got);
}

/* Compares SQL's answer with the rows dtable_row_matches accepts. */
static void check_query(const struct table_query *tq)
{
    struct cg_err err = {""};
    json_t *all = NULL, *got = NULL, *row;
    size_t i, k = 0, seen = 0;
    int rc;

    rc = dtable_query(db, &table, tq->filter, tq->limit, tq->offset, &got, &err);
    if (rc) {
        FUZZ_ASSERT(rc == CG_EINVAL, "the query failed: %s", err.msg);
        FUZZ_ASSERT(dtable_check_filter(&table, tq->filter, &err) == CG_EINVAL,
                    "a filter the check accepts was refused");
        return;
    }
    FUZZ_ASSERT(dtable_check_filter(&table, tq->filter, &err) == CG_OK, "check refuses");
    FUZZ_ASSERT(dtable_query(db, &table, NULL, DTABLE_MAX_LIMIT, 0, &all, &err) == CG_OK,
                "the whole table: %s", err.msg);
    json_array_foreach(all, i, row)
    {
        bool match = dtable_row_matches(&table, row, tq->filter);

        FUZZ_ASSERT(!match || dtable_row_may_match(&table, row, tq->filter),
                    "matches but may not match");
        if (!match)
            continue;
        if (seen++ < (size_t)tq->offset || k >= (size_t)tq->limit)
            continue;
        FUZZ_ASSERT(k < json_array_size(got), "SQL left out row %zu", i);
        FUZZ_ASSERT(json_equal(json_array_get(got, k), row), "SQL returned another row at %zu", k);
        k++;
    }
    FUZZ_ASSERT(k == json_array_size(got), "SQL returned %zu rows, the filter accepts %zu",
                json_array_size(got), k);
    json_decref(all);
    json_decref(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_piece p[2];
    size_t n = fuzz_split(data, size, p, 2);
    char *q = fuzz_strndup(p[0].data, p[0].len), detail[200];
    struct cg_err err = {""};
    struct table_query tq;
    json_t *args;
    int rc;

    /* The server refuses a query string that is not text before this. */
    if (utf8_prefix(q, strlen(q)) != strlen(q)) {
        free(q);
        return 0;
    }
    args = query_args(q);
    if (dtable_begin(db, &err))
        abort();
    if (n == 2) {
        json_t *rec = json_loadb((const char *)p[1].data, p[1].len, 0, NULL);
        char id[37];

        if (rec && dtable_check_record(&table, rec, &err) == CG_OK)
            FUZZ_ASSERT(dtable_insert(db, &table, rec, "fuzzer", id, &err) == CG_OK,
                        "a checked record was not inserted: %s", err.msg);
        json_decref(rec);
    }
    rc = table_query_parse(&table, args, &tq, detail, sizeof(detail));
    if (rc == CG_OK) {
        FUZZ_ASSERT(tq.limit >= 1 && tq.limit <= DTABLE_MAX_LIMIT && tq.offset >= 0,
                    "limit %ld offset %ld", tq.limit, tq.offset);
        check_integer(args, tq.filter);
        check_query(&tq);
        json_decref(tq.filter);
    } else {
        FUZZ_ASSERT(rc == CG_EINVAL && detail[0] && fuzz_is_utf8(detail), "refusal");
    }
    dtable_rollback(db);
    json_decref(args);
    free(q);
    return 0;
}
