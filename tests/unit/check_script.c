/* Unit tests for script: JSON <-> Lua conversion and the sandbox. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "script/script.h"
#include "base/util.h"

static struct script_vm *vm;

/* jansson values alive now: the allocation functions below count them, so a
 * test can prove that a run freed every value it made or was given. */
static long json_live, json_peak;

static void *counting_malloc(size_t n)
{
    void *p = malloc(n);

    if (p && ++json_live > json_peak)
        json_peak = json_live;
    return p;
}

static void counting_free(void *p)
{
    if (p)
        json_live--;
    free(p);
}

static void setup(void)
{
    struct script_limits l;

    script_limits_default(&l);
    l.instructions = 2000000;
    l.memory = 8 * 1024 * 1024;
    l.wall_ms = 2000;
    ck_assert_int_eq(script_vm_new(&l, &vm), CG_OK);
}

static void teardown(void)
{
    script_vm_free(vm);
    vm = NULL;
}

/* JSON texts that must survive JSON -> Lua -> JSON unchanged. */
static const char *const roundtrip_cases[] = {
    "{}",
    "[]",
    "[[]]",
    "{\"a\":{}}",
    "{\"a\":[]}",
    "1",
    "-9007199254740993",
    "9223372036854775807",
    "2.0",
    "0.5",
    "1e+300",
    "true",
    "null",
    "\"\"",
    "\"caf\\u00e9 \\u2603 \\ud83d\\ude00\"",
    "[1,2,3]",
    "[null,null]",
    "{\"n\":null}",
    "[1,\"two\",3.5,false,null,{\"x\":[{}]}]",
    "{\"nested\":{\"deeper\":{\"deepest\":[1,[2,[3]]]}}}",
};

START_TEST(json_roundtrip)
{
    json_error_t jerr;
    json_t *in = json_loads(roundtrip_cases[_i], JSON_DECODE_ANY, &jerr), *out;
    char err[200] = "";
    char *a, *b;

    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(script_push_json(vm, in), CG_OK);
    out = script_pop_json(vm, err, sizeof(err));
    ck_assert_msg(out != NULL, "%s: %s", roundtrip_cases[_i], err);
    a = json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    b = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    ck_assert_str_eq(a, b);
    /* integers stay integers, reals stay reals */
    ck_assert_int_eq(json_typeof(in), json_typeof(out));
    free(a);
    free(b);
    json_decref(in);
    json_decref(out);
}
END_TEST

/* The caps are a request's: a conversion after a run that spent them works. */
START_TEST(conversion_outside_a_request)
{
    struct script_request req = {.method = "GET", .path = "/"};
    static const struct script_db_ops none = {0};
    struct script_result res;
    json_t *in = json_pack("[i, s, {s:b}]", 1, "two", "three", 1), *out;
    char err[200] = "";

    ck_assert_int_eq(
        script_run(vm, "while true do end", "while true do end", "loop.lua", &req, &none, &res),
        CG_OK);
    ck_assert_int_eq(res.outcome, SCRIPT_LIMIT_INSTRUCTIONS);
    script_result_free(&res);
    ck_assert_int_eq(script_push_json(vm, in), CG_OK);
    out = script_pop_json(vm, err, sizeof(err));
    ck_assert_msg(out != NULL, "%s", err);
    ck_assert(json_equal(in, out));
    json_decref(in);
    json_decref(out);
}
END_TEST

/* Lua expressions and the JSON they must give, or NULL when they must be refused. */
static const struct {
    const char *lua;  /* returns one value */
    const char *json; /* expected compact JSON, NULL: refused */
    const char *why;  /* part of the refusal */
} lua_cases[] = {
    {"return {}", "{}", NULL},
    {"return {1, 2, 3}", "[1,2,3]", NULL},
    {"return {a = 1, b = {c = true}}", "{\"a\":1,\"b\":{\"c\":true}}", NULL},
    {"return 3 // 1", "3", NULL},
    {"return 3 / 1", "3.0", NULL},
    {"return certgate.null", "null", NULL},
    {"return json.decode('[]')", "[]", NULL},
    {"return json.decode('{\"x\":[]}')", "{\"x\":[]}", NULL},
    {"return json.encode({1, 'a'})", "\"[1,\\\"a\\\"]\"", NULL},
    {"return 'caf\\xc3\\xa9'", "\"caf\xc3\xa9\"", NULL},
    {"return function() end", NULL, "function"},
    {"return {1, nil, 3}", NULL, "sparse"},
    {"return {1, 2, x = 3}", NULL, "mixes"},
    {"return {[true] = 1}", NULL, "key of type boolean"},
    {"return 0/0", NULL, "NaN"},
    {"return 1/0", NULL, "infinity"},
    {"return '\\xff\\xfe'", NULL, "UTF-8"},
    {"local t = {} t.self = t return t", NULL, "nested"},
    {"return coroutine", "null", NULL},
    {"return tostring(certgate.null)", "\"null\"", NULL},
    {"return getmetatable(certgate.null)", "\"null\"", NULL},
    {"return certgate.array()", "[]", NULL},
    {"return { list = certgate.array({}) }", "{\"list\":[]}", NULL},
    {"return { ['a\\0b'] = 1 }", NULL, "NUL"},
    {"return 'a\\0b'", NULL, "NUL"},
    {"return { x = 'a\\0b' }", NULL, "NUL"},
    {"return { ['\\xff'] = 1, ok = 2 }", NULL, "UTF-8"},
};

START_TEST(lua_to_json)
{
    char err[300] = "";
    json_t *v = script_eval_json(vm, lua_cases[_i].lua, err, sizeof(err));

    if (lua_cases[_i].json) {
        char *text;

        ck_assert_msg(v != NULL, "%s: %s", lua_cases[_i].lua, err);
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        ck_assert_str_eq(text, lua_cases[_i].json);
        free(text);
        json_decref(v);
    } else {
        ck_assert_msg(v == NULL, "%s: accepted", lua_cases[_i].lua);
        ck_assert_msg(strstr(err, lua_cases[_i].why), "%s: %s", lua_cases[_i].lua, err);
    }
}
END_TEST

/* Everything a script must not reach. */
static const char *const forbidden[] = {
    "io",        "require",    "package",        "debug",       "dofile",    "loadfile",
    "load",      "loadstring", "collectgarbage", "os.execute",  "os.exit",   "os.getenv",
    "os.remove", "os.rename",  "os.tmpname",     "string.dump", "coroutine", "module",
};

START_TEST(forbidden_absent)
{
    char code[200], err[300] = "";
    json_t *v;

    snprintf(code, sizeof(code), "return %s == nil", forbidden[_i]);
    v = script_eval_json(vm, code, err, sizeof(err));
    ck_assert_msg(v != NULL, "%s: %s", forbidden[_i], err);
    ck_assert_msg(json_is_true(v), "%s is reachable", forbidden[_i]);
    json_decref(v);
}
END_TEST

static const struct script_db_ops no_db = {0};

static enum script_outcome run(const char *src, struct script_result *res)
{
    struct script_request req = {.method = "POST", .path = "/x"};

    ck_assert_int_eq(script_run(vm, src, src, "test.lua", &req, &no_db, res), CG_OK);
    return res->outcome;
}

static const struct {
    const char *src;             /* the script */
    enum script_outcome outcome; /* how it must end */
    int status;                  /* HTTP status */
} limit_cases[] = {
    {"while true do end", SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local s = string.rep('x', 1e9)", SCRIPT_LIMIT_MEMORY, 500},
    {"local t = {} for i = 1, 1e9 do t[i] = i end", SCRIPT_LIMIT_MEMORY, 500},
    {"local function f(n) return f(n + 1) + 1 end f(1)", SCRIPT_LIMIT_MEMORY, 500},
    {"while true do pcall(function() while true do end end) end", SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"error('boom')", SCRIPT_ERROR, 500},
    {"error({code = 1})", SCRIPT_ERROR, 500},
    {"error(nil)", SCRIPT_ERROR, 500},
    {"error(42)", SCRIPT_ERROR, 500},
    {"error(true)", SCRIPT_ERROR, 500},
    {"error(certgate.null)", SCRIPT_ERROR, 500},
    {"local x = nil; x.y = 1", SCRIPT_ERROR, 500},
    {"certgate.fail(422, 'Missing field', 'name is required')", SCRIPT_FAILED, 422},
    {"certgate.fail(99, 'odd', 'status out of range')", SCRIPT_FAILED, 500},
    {"response.body = { f = print }", SCRIPT_BAD_RESPONSE, 500},
    {"response.status = 'ok'", SCRIPT_BAD_RESPONSE, 500},
    {"response.headers['X-A'] = 'a\\r\\nInjected: 1'", SCRIPT_BAD_RESPONSE, 500},
    {"response.status = 201 response.body = { ok = true }", SCRIPT_OK, 201},
    {"string.rep = nil", SCRIPT_OK, 200},
    {"getmetatable('').__index.upper = nil", SCRIPT_ERROR, 500},
    {"load(string.char(27) .. 'Lua')", SCRIPT_ERROR, 500},
    /* Library calls that loop in C, where the count hook never runs. */
    {"assert(string.rep('', 1e15) == '')", SCRIPT_OK, 200},
    {"assert(('').rep('', 1e15, '') == '')", SCRIPT_OK, 200},
    {"local s = ('x'):rep(1e12)", SCRIPT_LIMIT_MEMORY, 500},
    {"assert(string.rep('ab', 3, ',') == 'ab,ab,ab')", SCRIPT_OK, 200},
    {"table.move({}, 1, 1e15, 2)", SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"assert(table.move({1, 2, 3}, 1, 3, 2)[4] == 3)", SCRIPT_OK, 200},
    /* Finalizers would run after the request, outside its caps. */
    {"setmetatable({}, {__gc = function() while true do end end})", SCRIPT_ERROR, 500},
    {"assert(setmetatable({}, {__index = {a = 1}}).a == 1)", SCRIPT_OK, 200},
    /* The shared metatables cannot be reached or changed. */
    {"getmetatable(json.decode('[]')).__index = 1", SCRIPT_ERROR, 500},
    {"setmetatable(json.decode('[]'), {})", SCRIPT_ERROR, 500},
    {"local ok, e = pcall(certgate.fail, 404, 'x') error(setmetatable({status = 200}, "
     "getmetatable(e)))",
     SCRIPT_ERROR, 500},
    {"local ok, e = pcall(certgate.fail, 404, 'x') rawset(e, 'status', 200) error(e)",
     SCRIPT_FAILED, 500},
    /* Nothing of the script runs after it returned, nor on its error object. */
    {"response = setmetatable({}, {__index = function() while true do end end})", SCRIPT_OK, 200},
    {"setmetatable(_ENV, {__index = function() error('x') end}) response = nil",
     SCRIPT_BAD_RESPONSE, 500},
    {"error(setmetatable({}, {__tostring = function() while true do end end}))", SCRIPT_ERROR, 500},
    {"certgate.fail(404, 'Not here')", SCRIPT_FAILED, 404},
    /* A backtracking pattern inside one C call is charged step by step. */
    {"local s = 'a' .. string.rep(' ', 200000) .. 'b' local t = s:match('^%s*(.-)%s*$')",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local s = string.rep('a', 100000) string.find(s, '.-.-.-.-b')", SCRIPT_LIMIT_INSTRUCTIONS,
     500},
    {"assert(('  x  '):match('^%s*(.-)%s*$') == 'x')", SCRIPT_OK, 200},
    /* Table and string functions that loop in C over the script's data are
     * charged by its size: without, the hook looks at the clock once per
     * hundreds of such calls, seconds past the wall-time cap. */
    {"local t = {} for i = 1, 2e5 do t[i] = (i * 7919) % 1000003 end "
     "while true do table.sort(t) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local t = {} for i = 1, 1e5 do t[i] = 'ab' end while true do local s = table.concat(t) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local t = {} for i = 1, 1e5 do t[i] = i end while true do local a = {table.unpack(t)} end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local t = {} for i = 1, 2e5 do t[i] = i end "
     "while true do table.insert(t, 1, 0) table.remove(t, 1) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local s = string.rep('x', 3e6) while true do local n = utf8.len(s) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local s = string.rep('x', 1e6) while true do local u = s:upper() end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local s = string.rep('7', 3e6) while true do local n = tonumber(s) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 500},
    {"local t = {} for i = 1, 1e4 do t[i] = -i end table.sort(t) assert(t[1] == -1e4) "
     "table.insert(t, 1, 0) assert(table.remove(t, 1) == 0) "
     "assert(table.concat({1, 2, 3}, ',') == '1,2,3') assert(select(2, table.unpack({1, 2})) == 2) "
     "assert(('abc'):upper() == 'ABC' and utf8.len('caf\\xc3\\xa9') == 4) "
     "assert(tonumber('12') == 12 and os.date('!%Y', 0) == '1970')",
     SCRIPT_OK, 200},
    {"assert(select(2, ('a,b,c'):gsub(',', ';')) == 2)", SCRIPT_OK, 200},
};

START_TEST(limits_and_errors)
{
    struct script_result res;
    enum script_outcome o = run(limit_cases[_i].src, &res);

    ck_assert_msg(o == limit_cases[_i].outcome, "%s: outcome %d (%s)", limit_cases[_i].src, o,
                  res.log_detail);
    ck_assert_int_eq(res.status, limit_cases[_i].status);
    script_result_free(&res);
    /* The VM keeps serving, and nothing leaked into the next request. */
    o = run("assert(string.rep('a', 3) == 'aaa') assert(x == nil) response.body = {ok=true}", &res);
    ck_assert_msg(o == SCRIPT_OK, "next request after %s: %s", limit_cases[_i].src, res.log_detail);
    script_result_free(&res);
}
END_TEST

START_TEST(wall_time)
{
    struct script_limits l;
    struct script_vm *slow = NULL;
    struct script_request req = {.method = "GET", .path = "/"};
    struct script_result res;
    const char *src = "local t = os.clock() while os.clock() - t < 10 do end";
    /* One string.match call that would take hours: the wall clock stops it too. */
    const char *trim = "local s = 'a' .. string.rep(' ', 1000000) .. 'b' "
                       "local t = s:match('^%s*(.-)%s*$')";

    script_limits_default(&l);
    l.instructions = 1000000000000ULL;
    l.wall_ms = 150;
    ck_assert_int_eq(script_vm_new(&l, &slow), CG_OK);
    ck_assert_int_eq(script_run(slow, src, src, "slow.lua", &req, &no_db, &res), CG_OK);
    ck_assert_int_eq(res.outcome, SCRIPT_LIMIT_TIME);
    ck_assert_int_eq(res.status, 503);
    script_result_free(&res);
    /* Without the cap this call runs for hours; the test's timeout would fail it. */
    ck_assert_int_eq(script_run(slow, trim, trim, "trim.lua", &req, &no_db, &res), CG_OK);
    ck_assert_msg(res.outcome == SCRIPT_LIMIT_TIME, "trim: outcome %d %s", res.outcome,
                  res.log_detail);
    script_result_free(&res);
    script_vm_free(slow);
}
END_TEST

START_TEST(globals_do_not_leak)
{
    struct script_result res;

    ck_assert_int_eq(run("leaked = 1 string.upper = nil os.time = nil", &res), SCRIPT_OK);
    script_result_free(&res);
    ck_assert_int_eq(run("assert(leaked == nil) assert(string.upper('a') == 'A') "
                         "assert(os.time() > 0)",
                         &res),
                     SCRIPT_OK);
    script_result_free(&res);
    /* every library table the sandbox offers */
    ck_assert_int_eq(
        run("for _, lib in ipairs({string, table, math, utf8, os, certgate, json, db}) "
            "do lib.x = 1 for k in pairs(lib) do lib[k] = nil end end",
            &res),
        SCRIPT_OK);
    script_result_free(&res);
    ck_assert_int_eq(
        run("for _, lib in ipairs({string, table, math, utf8, os, certgate, json, db}) "
            "do assert(lib.x == nil) end assert(string.upper and table.insert and "
            "math.floor and utf8.char and os.time and certgate.fail and json.encode "
            "and db.query)",
            &res),
        SCRIPT_OK);
    script_result_free(&res);
}
END_TEST

/* The body of a run, as compact JSON (malloc'd). */
static char *run_body(const char *src)
{
    struct script_result res;
    char *text;

    ck_assert_msg(run(src, &res) == SCRIPT_OK, "%s: %s", src, res.log_detail);
    text = json_dumps(res.body, JSON_COMPACT | JSON_ENCODE_ANY);
    script_result_free(&res);
    return text;
}

START_TEST(random_state_is_per_request)
{
    const char *draw = "local t = {} for i = 1, 4 do t[i] = math.random(1, 1000000000) end "
                       "response.body = t";
    const char *seeded = "math.randomseed(42) local t = {} for i = 1, 4 do "
                         "t[i] = math.random(1, 1000000000) end response.body = t";
    struct script_result res;
    char *with42 = run_body(seeded), *again42 = run_body(seeded), *next, *a, *b;

    /* A script's own seed still makes its own sequence repeatable. */
    ck_assert_str_eq(with42, again42);
    /* A seed does not reach the next request... */
    ck_assert_int_eq(run("math.randomseed(42)", &res), SCRIPT_OK);
    script_result_free(&res);
    next = run_body(draw);
    ck_assert_msg(strcmp(next, with42) != 0, "the next request drew the seeded sequence %s", next);
    /* ...and requests that do not seed draw different sequences. */
    a = run_body(draw);
    b = run_body(draw);
    ck_assert_msg(strcmp(a, b) != 0, "two requests drew the same sequence %s", a);
    free(with42);
    free(again42);
    free(next);
    free(a);
    free(b);
}
END_TEST

START_TEST(clock_is_per_request)
{
    struct script_result res;
    char *c;
    double used;

    /* one request burns CPU... */
    ck_assert_int_eq(run("local t = os.clock() while os.clock() - t < 0.3 do end", &res),
                     SCRIPT_OK);
    script_result_free(&res);
    /* ...which the next one's os.clock() does not show */
    c = run_body("response.body = os.clock()");
    used = strtod(c, NULL);
    ck_assert_msg(used >= 0 && used < 0.2, "os.clock() is %s in a fresh request", c);
    free(c);
}
END_TEST

START_TEST(nothing_kept_after_a_run)
{
    struct script_result res;
    size_t before = script_vm_memory(vm);

    ck_assert_int_eq(run("kept = string.rep('x', 3e6) response.body = {n = #kept}", &res),
                     SCRIPT_OK);
    script_result_free(&res);
    /* the run's globals are garbage once it is over */
    ck_assert_msg(script_vm_memory(vm) < before + 1024 * 1024,
                  "%zu bytes held after the run, %zu before", script_vm_memory(vm), before);
}
END_TEST

START_TEST(request_is_visible)
{
    json_error_t jerr;
    json_t *body = json_loads("{\"name\":\"x\",\"n\":2,\"list\":[]}", 0, &jerr);
    json_t *user = json_loads("{\"name\":\"integrator1\",\"roles\":[\"push\"]}", 0, &jerr);
    struct script_request req = {.method = "POST",
                                 .path = "/api/a/b/x",
                                 .body = body,
                                 .raw_body = "{}",
                                 .raw_len = 2,
                                 .user = user};
    struct script_result res;
    const char *src =
        "assert(request.method == 'POST') assert(request.body.name == 'x') "
        "assert(math.type(request.body.n) == 'integer') assert(request.user.roles[1] == 'push') "
        "response.status = 201 response.body = { echo = request.body.list, who = "
        "request.user.name } response.headers['X-Test'] = 'yes'";

    ck_assert_int_eq(script_run(vm, src, src, "r.lua", &req, &no_db, &res), CG_OK);
    ck_assert_msg(res.outcome == SCRIPT_OK, "%s", res.log_detail);
    ck_assert_int_eq(res.status, 201);
    ck_assert(json_is_array(json_object_get(res.body, "echo")));
    ck_assert_str_eq(json_string_value(json_object_get(res.body, "who")), "integrator1");
    ck_assert_str_eq(json_string_value(json_object_get(res.headers, "X-Test")), "yes");
    script_result_free(&res);
    json_decref(body);
    json_decref(user);
}
END_TEST

static unsigned log_count;
static size_t log_longest;

static void count_log(void *ctx, const char *message)
{
    json_t *j = json_string(message);

    (void)ctx;
    /* Every line can go into the JSON log. */
    ck_assert_msg(j != NULL, "log line is not UTF-8: %s", message);
    json_decref(j);
    log_count++;
    if (strlen(message) > log_longest)
        log_longest = strlen(message);
}

START_TEST(log_is_bounded)
{
    struct script_db_ops ops = {.log = count_log};
    struct script_request req = {.method = "GET", .path = "/"};
    struct script_result res;
    const char *src =
        "log('caf\\xc3\\xa9 \\xff\\xfe end') for i = 1, 1000 do log(string.rep('x', 10000), i) end";

    log_count = 0;
    log_longest = 0;
    ck_assert_int_eq(script_run(vm, src, src, "log.lua", &req, &ops, &res), CG_OK);
    ck_assert_msg(res.outcome == SCRIPT_OK, "%s", res.log_detail);
    /* 100 lines, then one saying the rest were dropped. */
    ck_assert_uint_eq(log_count, 101);
    ck_assert_uint_le(log_longest, 4096 + 3);
    script_result_free(&res);
}
END_TEST

/*
 * A small database behind the db.* functions: a query answers rows_per_query
 * fresh records, get one record, insert and update accept. What they hand to
 * the script is the script module's to free.
 */
static size_t rows_per_query = 3;

static int t_insert(void *ctx, const char *table, json_t *fields, char out_id[37], char *err,
                    size_t errlen)
{
    (void)ctx, (void)table, (void)fields, (void)err, (void)errlen;
    snprintf(out_id, 37, "%s", "00000000-0000-4000-8000-000000000001");
    return CG_OK;
}

static int t_get(void *ctx, const char *table, const char *sys_id, json_t **out, char *err,
                 size_t errlen)
{
    (void)ctx, (void)table, (void)err, (void)errlen;
    *out = json_pack("{s:s, s:s}", "sys_id", sys_id, "name", "one record");
    return *out ? CG_OK : CG_ENOMEM;
}

static int t_query(void *ctx, const char *table, json_t *filter, long limit, long offset,
                   json_t **out, char *err, size_t errlen)
{
    json_t *rows = json_array();

    (void)ctx, (void)table, (void)filter, (void)limit, (void)offset, (void)err, (void)errlen;
    for (size_t i = 0; rows && i < rows_per_query; i++)
        json_array_append_new(rows, json_pack("{s:i, s:s}", "n", (int)i, "name",
                                              "a record of the test table, long enough"));
    *out = rows;
    return rows ? CG_OK : CG_ENOMEM;
}

static int t_update(void *ctx, const char *table, const char *sys_id, json_t *fields, char *err,
                    size_t errlen)
{
    (void)ctx, (void)table, (void)sys_id, (void)fields, (void)err, (void)errlen;
    return CG_OK;
}

static const struct script_db_ops test_db = {NULL, t_insert, t_get, t_query, t_update, NULL};

/* Scripts whose Lua errors unwind through a library function that holds C
 * memory at that moment, and how they must end. */
static const struct {
    const char *src;             /* the script */
    enum script_outcome outcome; /* how it ends */
} unwind_cases[] = {
    /* luaL_check* raising in db.query's options, after the filter was made */
    {"db.query('t', {name = 'x'}, {limit = 'many'})", SCRIPT_ERROR},
    {"db.query('t', {name = 'x'}, {offset = 1.5})", SCRIPT_ERROR},
    {"db.query('t', {name = 'x'}, setmetatable({}, {__index = function() error('no') end}))",
     SCRIPT_ERROR},
    {"for i = 1, 50 do pcall(db.query, 't', {name = 'x'}, {limit = {}}) end", SCRIPT_OK},
    {"db.insert('t', {name = 'x', f = print})", SCRIPT_ERROR},
    {"db.update('t', 'id', {name = {1, nil, 3}})", SCRIPT_ERROR},
    /* memory errors while records, decoded values or encoded text are made */
    {"local keep = {} for i = 1, 100 do keep[i] = db.query('t') end", SCRIPT_LIMIT_MEMORY},
    {"local keep = {} for i = 1, 1e6 do keep[i] = db.get('t', 'id') end", SCRIPT_LIMIT_MEMORY},
    {"json.decode('[' .. string.rep('[1],', 5e5) .. '1]')", SCRIPT_LIMIT_MEMORY},
    {"local s = string.rep('x', 3e6) local t = json.encode({s, s})", SCRIPT_LIMIT_MEMORY},
    /* and the same calls when nothing goes wrong */
    {"assert(#db.query('t', {name = 'x'}, {limit = 5}) == 3) "
     "assert(db.get('t', 'id').name == 'one record') "
     "assert(db.insert('t', {name = 'y'})) assert(db.update('t', 'id', {name = 'z'})) "
     "assert(json.encode(json.decode('{\"a\":[1,2]}')) == '{\"a\":[1,2]}')",
     SCRIPT_OK},
};

START_TEST(unwinding_frees_c_memory)
{
    struct script_request req = {.method = "POST", .path = "/x"};
    struct script_result res;
    const char *src = unwind_cases[_i].src;
    long before;

    rows_per_query = 3;
    if (strstr(src, "keep[i] = db.query"))
        rows_per_query = 2000;
    before = json_live;
    ck_assert_int_eq(script_run(vm, src, src, "unwind.lua", &req, &test_db, &res), CG_OK);
    ck_assert_msg(res.outcome == unwind_cases[_i].outcome, "%s: outcome %d (%s)", src, res.outcome,
                  res.log_detail);
    script_result_free(&res);
    ck_assert_msg(json_live == before, "%s: %ld jansson allocations left behind", src,
                  json_live - before);
}
END_TEST

/* Scripts that would make far more JSON in C than their memory cap (8 MiB
 * here: 524288 values, 8388608 bytes), and scripts as large as a legitimate
 * one gets, with how each must end. */
static const struct {
    const char *src;             /* the script */
    enum script_outcome outcome; /* how it ends */
    long max_allocs;             /* jansson allocations alive at once at most, 0: the default */
} amplify_cases[] = {
    /* a table reached twice is converted twice: 2^21 values from 21 tables */
    {"local t = {} for i = 1, 21 do t = {t, t} end response.body = t", SCRIPT_LIMIT_MEMORY, 0},
    {"local t = {} for i = 1, 22 do t = {t, t} end response.body = {deep = t}", SCRIPT_LIMIT_MEMORY,
     0},
    {"local t = {} for i = 1, 21 do t = {t, t} end local s = json.encode(t)", SCRIPT_LIMIT_MEMORY,
     0},
    {"local t = {} for i = 1, 21 do t = {a = t, b = t} end db.insert('t', {payload = t})",
     SCRIPT_LIMIT_MEMORY, 0},
    {"local t = {} for i = 1, 21 do t = {t, t} end db.query('t', {payload = t})",
     SCRIPT_LIMIT_MEMORY, 0},
    /* caught, the same conversion again and again: the instruction cap */
    {"local t = {} for i = 1, 21 do t = {t, t} end "
     "while true do pcall(json.encode, t) end",
     SCRIPT_LIMIT_INSTRUCTIONS, 0},
    /* one string many times: bytes, escapes counted */
    {"local s = string.rep('x', 1e6) local t = {} for i = 1, 100 do t[i] = s end "
     "response.body = t",
     SCRIPT_LIMIT_MEMORY, 0},
    {"response.body = string.rep('\\1', 2e6)", SCRIPT_LIMIT_MEMORY, 0},
    {"local v = string.rep('v', 4000) for i = 1, 5000 do response.headers['X-H' .. i] = v end",
     SCRIPT_LIMIT_MEMORY, 0},
    {"for i = 1, 3 do db.insert('t', {s = string.rep('x', 3e6)}) end", SCRIPT_LIMIT_MEMORY, 0},
    /* a text with more values than the memory left is not parsed */
    {"local t = json.decode('[' .. string.rep('0,', 1e6) .. '0]')", SCRIPT_LIMIT_MEMORY, 100},
    /* as large as fits: these work */
    {"local t = {} for i = 1, 200000 do t[i] = i end response.body = t", SCRIPT_OK, 0},
    {"local t = {} for i = 1, 20000 do t[i] = {id = i, name = 'item ' .. i} end "
     "response.body = t",
     SCRIPT_OK, 0},
    {"response.body = {s = string.rep('x', 3e6)}", SCRIPT_OK, 0},
    {"local t = {} for i = 1, 10 do t = {t, t} end response.body = {a = t, b = json.encode(t)}",
     SCRIPT_OK, 0},
    {"local s = string.rep('1,', 1e5) assert(#json.decode('[' .. s .. '1]') == 100001)", SCRIPT_OK,
     0},
};

START_TEST(conversion_stays_within_caps)
{
    struct script_request req = {.method = "POST", .path = "/x"};
    struct script_result res;
    const char *src = amplify_cases[_i].src;
    long before = json_live, made, max = amplify_cases[_i].max_allocs;

    json_peak = json_live;
    ck_assert_int_eq(script_run(vm, src, src, "amplify.lua", &req, &test_db, &res), CG_OK);
    made = json_peak - before;
    /* A value converted counts as one instruction but takes the time of
     * dozens: on a loaded machine the wall clock may stop the loop first. */
    if (amplify_cases[_i].outcome == SCRIPT_LIMIT_INSTRUCTIONS && res.outcome == SCRIPT_LIMIT_TIME)
        res.outcome = SCRIPT_LIMIT_INSTRUCTIONS;
    ck_assert_msg(res.outcome == amplify_cases[_i].outcome, "%s: outcome %d (%s)", src, res.outcome,
                  res.log_detail);
    if (res.outcome == SCRIPT_LIMIT_MEMORY)
        ck_assert_int_eq(res.status, 500);
    /* By default at most 3 allocations a value (a value, its storage, a
     * string copy) for the memory cap's share of values, not what the
     * sharing multiplies. */
    if (max == 0)
        max = 3 * (8 * 1024 * 1024 / 16);
    ck_assert_msg(made <= max, "%s: %ld jansson allocations at once", src, made);
    script_result_free(&res);
    ck_assert_int_eq(json_live, before);
    /* and the VM goes on serving */
    ck_assert_int_eq(run("response.body = {ok = true}", &res), SCRIPT_OK);
    script_result_free(&res);
}
END_TEST

START_TEST(conversion_says_why)
{
    struct script_result res;

    ck_assert_int_eq(run("local t = {} for i = 1, 21 do t = {t, t} end response.body = t", &res),
                     SCRIPT_LIMIT_MEMORY);
    ck_assert_msg(strstr(res.log_detail,
                         "response.body would be more than the memory cap allows (8388608 bytes"),
                  "%s", res.log_detail);
    script_result_free(&res);
    ck_assert_int_eq(
        run("local t = {} for i = 1, 21 do t = {t, t} end local ok, e = pcall(json.encode, t) "
            "response.body = {e = e}",
            &res),
        SCRIPT_OK);
    ck_assert_msg(strstr(json_string_value(json_object_get(res.body, "e")),
                         "json.encode: the text would be more than the memory cap allows"),
                  "%s", json_dumps(res.body, 0));
    script_result_free(&res);
}
END_TEST

START_TEST(syntax_errors_name_file_and_line)
{
    char err[300];

    ck_assert_int_eq(
        script_check_syntax("local x = 1\nif then\n", 21, "push.lua", err, sizeof(err)), CG_EPARSE);
    ck_assert_msg(strncmp(err, "push.lua:2:", 11) == 0, "%s", err);
    ck_assert_int_eq(script_check_syntax("\x1bLua", 4, "b.lua", err, sizeof(err)), CG_EPARSE);
    ck_assert_int_eq(script_check_syntax("return 1", 8, "ok.lua", err, sizeof(err)), CG_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("script");
    TCase *tc;
    SRunner *sr;
    int failed;

    json_set_alloc_funcs(counting_malloc, counting_free);
    tc = tcase_create("json");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, json_roundtrip, 0,
                        sizeof(roundtrip_cases) / sizeof(roundtrip_cases[0]));
    tcase_add_loop_test(tc, lua_to_json, 0, sizeof(lua_cases) / sizeof(lua_cases[0]));
    tcase_add_test(tc, conversion_outside_a_request);
    suite_add_tcase(s, tc);
    tc = tcase_create("sandbox");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, forbidden_absent, 0, sizeof(forbidden) / sizeof(forbidden[0]));
    tcase_add_loop_test(tc, limits_and_errors, 0, sizeof(limit_cases) / sizeof(limit_cases[0]));
    tcase_add_test(tc, wall_time);
    tcase_add_test(tc, globals_do_not_leak);
    tcase_add_test(tc, random_state_is_per_request);
    tcase_add_test(tc, clock_is_per_request);
    tcase_add_test(tc, nothing_kept_after_a_run);
    tcase_add_test(tc, request_is_visible);
    tcase_add_test(tc, syntax_errors_name_file_and_line);
    tcase_add_test(tc, log_is_bounded);
    suite_add_tcase(s, tc);
    tc = tcase_create("cleanup");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, unwinding_frees_c_memory, 0,
                        sizeof(unwind_cases) / sizeof(unwind_cases[0]));
    tcase_add_loop_test(tc, conversion_stays_within_caps, 0,
                        sizeof(amplify_cases) / sizeof(amplify_cases[0]));
    tcase_add_test(tc, conversion_says_why);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
