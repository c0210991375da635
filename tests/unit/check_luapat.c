/*
 * Unit tests for luapat: every case runs through Lua's own string functions
 * (a plain state) and through the installed ones (a second state), and all
 * results and error messages must be equal; then a fixed-seed fuzz over
 * random patterns, and the budget: charges, caps, recursion, memory.
 */
#include "config.h"

#include <check.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "script/luapat.h"

static unsigned long charged;      /* steps charged so far */
static unsigned long charge_limit; /* raise once charged reaches it; 0: never */
static unsigned long charge_calls; /* calls of count_charge */

static void count_charge(lua_State *L, unsigned long steps)
{
    charge_calls++;
    charged += steps;
    if (charge_limit != 0 && charged >= charge_limit)
        luaL_error(L, "step budget exceeded");
}

/* Globals the cases use, defined the same way in both states. */
static const char setup_chunk[] =
    "ALL = (function() local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end "
    "  return table.concat(t) end)()\n"
    "REPL_F = function(a, b) if a == 'a' then return false end "
    "  return '[' .. tostring(a) .. ',' .. tostring(b) .. ']' end\n"
    "REPL_T = {a = 'A', ab = false, b = {}, x = 7, [1] = 'one', [2] = 2.5}\n"
    "REPL_N = function() return 1.5 end\n"
    "REPL_ERR = function() error('boom') end\n";

static lua_State *new_state(bool install, luapat_charge_fn charge)
{
    lua_State *L = luaL_newstate();

    ck_assert_ptr_nonnull(L);
    luaL_openlibs(L);
    if (install) {
        lua_getglobal(L, "string");
        luapat_install(L, -1, charge);
        lua_pop(L, 1);
    }
    ck_assert_msg(luaL_dostring(L, setup_chunk) == LUA_OK, "setup: %s", lua_tostring(L, -1));
    return L;
}

/* --- a printable record of what a call returned --- */

struct out {
    char *buf;  /* NUL-terminated text */
    size_t len; /* its length */
    size_t cap; /* allocated */
};

static void out_add(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
        ck_assert_ptr_nonnull(o->buf);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof(tmp));
    out_add(o, tmp, (size_t)n);
}

static void out_string(struct out *o, const char *s, size_t n)
{
    size_t i;

    out_fmt(o, "\"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            out_add(o, s + i, 1);
        else
            out_fmt(o, "\\x%02x", c);
    }
    out_fmt(o, "\"");
}

/* Stack values [from, to] as text: types are kept apart (1 vs 1.0 vs "1"). */
static void out_values(struct out *o, lua_State *L, int from, int to)
{
    int i;

    out_fmt(o, "(");
    for (i = from; i <= to; i++) {
        size_t n;
        const char *s;

        if (i > from)
            out_fmt(o, ", ");
        switch (lua_type(L, i)) {
        case LUA_TNIL: out_fmt(o, "nil"); break;
        case LUA_TBOOLEAN: out_fmt(o, lua_toboolean(L, i) ? "true" : "false"); break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, i))
                out_fmt(o, "%lld", (long long)lua_tointeger(L, i));
            else
                out_fmt(o, "%.17g", (double)lua_tonumber(L, i));
            break;
        case LUA_TSTRING:
            s = lua_tolstring(L, i, &n);
            out_string(o, s, n);
            break;
        default: out_fmt(o, "<%s>", luaL_typename(L, i)); break;
        }
    }
    out_fmt(o, ")");
}

static void out_error(struct out *o, lua_State *L)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);

    out_fmt(o, "error ");
    if (s != NULL)
        out_string(o, s, n);
    else
        out_fmt(o, "<%s>", luaL_typename(L, -1));
    lua_pop(L, 1);
}

/*
 * Call string.<fn> on the @p nargs values on top of the stack and record the outcome in @p o;
 * for gmatch, call the iterator until it ends. Pops the arguments.
 */
static void call_record(lua_State *L, const char *fn, int nargs, struct out *o)
{
    int base = lua_gettop(L) - nargs;
    int i;

    lua_getglobal(L, "string");
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, base + 1);
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
        out_error(o, L);
    } else if (strcmp(fn, "gmatch") != 0) {
        out_values(o, L, base + 1, lua_gettop(L));
    } else {
        /* at most #subject + 2 rounds; more means the empty-match rule is broken */
        for (i = 0; i < 1000; i++) {
            int top = lua_gettop(L);

            lua_pushvalue(L, base + 1);
            if (lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
                out_error(o, L);
                break;
            }
            if (lua_gettop(L) == top || lua_isnil(L, top + 1)) {
                out_values(o, L, top + 1, lua_gettop(L));
                lua_settop(L, top);
                break;
            }
            out_values(o, L, top + 1, lua_gettop(L));
            lua_settop(L, top);
        }
    }
    lua_settop(L, base);
}

/* --- the differential table --- */

/*
 * fn: the string function, args: a Lua expression list for its arguments;
 * fn "lua": args is a chunk whose results are compared.
 */
static const struct {
    const char *fn;   /* find, match, gmatch, gsub or lua */
    const char *args; /* Lua source */
} cases[] = {
    /* find: plain text, init, plain flag */
    {"find", "'hello world', 'o'"},
    {"find", "'hello world', 'o', 6"},
    {"find", "'hello world', 'l+'"},
    {"find", "'hello world', 'xyz'"},
    {"find", "'hello world', 'world'"},
    {"find", "'hello', ''"},
    {"find", "'', ''"},
    {"find", "'', 'a'"},
    {"find", "'', '.*'"},
    {"find", "'hello', '', 5"},
    {"find", "'hello', '', 6"},
    {"find", "'hello', '', 7"},
    {"find", "'hello', '', 100"},
    {"find", "'hello', '$', 6"},
    {"find", "'hello', 'l', -2"},
    {"find", "'hello', 'l', -5"},
    {"find", "'hello', 'l', -6"},
    {"find", "'hello', 'l', -100"},
    {"find", "'hello', 'h', 0"},
    {"find", "'hello', 'o', math.mininteger"},
    {"find", "'hello', 'o', math.maxinteger"},
    {"find", "'hello', '', math.maxinteger"},
    {"find", "'hello', 'o', -1, true"},
    {"find", "'hello', 'lo', 5, true"},
    {"find", "'hello', '', 6, true"},
    {"find", "'hello', '', 7, true"},
    {"find", "'hello', 'hellooo', 1, true"},
    {"find", "'a.b', '.', 1, true"},
    {"find", "'a.b', '.'"},
    {"find", "'a.b', '%.'"},
    {"find", "'a+b', '+', 1, true"},
    {"find", "'a+b', 'a+b', 1, true"},
    {"find", "'a+b', 'a+b'"},
    {"find", "'aab', 'a+b'"},
    {"find", "'x^y', '^y', 1, true"},
    {"find", "'x^y', '^y'"},
    {"find", "'^y', '^^y'"},
    {"find", "'x[y', '[', 1, true"},
    {"find", "'x[y', '['"},
    {"find", "'x%y', '%', 1, true"},
    {"find", "'x%y', '%'"},
    {"find", "'abc', 'b', nil, true"},
    {"find", "'abc', 'b', 1, false"},
    {"find", "'abc', 'b', 1, nil"},
    {"find", "'abc', '.', 1, 0"},
    {"find", "'abc', '.', 1, {}"},
    {"find", "'a)', 'a)'"},
    {"find", "'a]', ']'"},
    {"find", "'a)', ')'"},
    {"find", "'aaa', 'a-', 2"},
    {"find", "'abc', '(b)(c)'"},
    {"find", "'abc', '()b()'"},
    {"find", "'abc', '(b)', 3"},
    {"find", "'hello world', '^hello'"},
    {"find", "'hello world', '^world'"},
    {"find", "'hello world', '^world', 7"},
    {"find", "'hello world', 'world$'"},
    {"find", "'hello world', 'hello$'"},
    {"find", "'a$b', 'a$b'"},
    {"find", "'a$b', '$b'"},
    {"find", "'ab', 'b$', -1"},
    /* argument coercion and argument errors */
    {"find", "123, 2"},
    {"find", "12345, 34, 2"},
    {"find", "1.5, '.'"},
    {"find", "-0.0, '0'"},
    {"find", "2^63, 'e'"},
    {"find", "'abc', 'b', '2'"},
    {"find", "'abc', 'b', ' 2 '"},
    {"find", "'abc', 'b', '0x2'"},
    {"find", "'abc', 'b', 'x'"},
    {"find", "'abc', 'b', 1.5"},
    {"find", "'abc', 'b', 2.0"},
    {"find", "'abc', 'b', 2^63"},
    {"find", "nil, 'a'"},
    {"find", "'abc'"},
    {"find", "'abc', {}"},
    {"find", "{}, 'a'"},
    {"find", "true, 'a'"},
    {"find", ""},
    {"match", "'abc'"},
    {"match", "nil, 'x'"},
    {"match", "'abc', 'b', {}"},
    {"gmatch", "'abc'"},
    {"gmatch", "'abc', 1, 'x'"},
    {"gmatch", "{}, 'a'"},
    {"gsub", "'abc'"},
    {"gsub", "'abc', 'b'"},
    {"gsub", "'abc', 'b', nil"},
    {"gsub", "'abc', 'b', true"},
    {"gsub", "'abc', 'b', type"},
    {"gsub", "'abc', 'b', coroutine.create(print)"},
    {"gsub", "'abc', 'b', 'x', 'y'"},
    {"gsub", "'abc', 'b', 'x', 1.5"},
    {"gsub", "'abc', 'b', nil, 1.5"},
    {"gsub", "'abc', {}, 'x'"},
    {"gsub", "12321, 2, 9"},
    {"gsub", "12321, 2, 9.5"},
    {"gsub", "'abc', 'b', 42"},
    /* match: classes */
    {"match", "'  key = value  ', '^%s*(.-)%s*$'"},
    {"match", "'key = value', '(%w+)%s*=%s*(%w+)'"},
    {"match", "'2024-01-31', '(%d+)-(%d+)-(%d+)'"},
    {"match", "'hello', '.'"},
    {"match", "'hello', '.-'"},
    {"match", "'hello', '.-$'"},
    {"match", "'hello', '.*'"},
    {"match", "'hello', '.+'"},
    {"match", "'hello', '.?'"},
    {"match", "'hello', 'l*'"},
    {"match", "'hello', 'l*', 3"},
    {"match", "'hello', 'x*'"},
    {"match", "'hello', 'x+'"},
    {"match", "'hello', 'x?h'"},
    {"match", "'hello', 'h?h'"},
    {"match", "'hello', 'hx?e'"},
    {"match", "'aaab', 'a-b'"},
    {"match", "'aaab', '^a-$'"},
    {"match", "'aaa', '^a-$'"},
    {"match", "'<a><b>', '<(.-)>'"},
    {"match", "'<a><b>', '<(.*)>'"},
    {"match", "ALL, '%a+'"},
    {"match", "ALL, '%d+'"},
    {"match", "ALL, '%l+'"},
    {"match", "ALL, '%u+'"},
    {"match", "ALL, '%x+'"},
    {"match", "ALL, '%c+'"},
    {"match", "ALL, '%g+'"},
    {"match", "ALL, '%s+'"},
    {"match", "ALL, '%p+'"},
    {"match", "ALL, '%w+'"},
    {"match", "ALL, '%A+'"},
    {"match", "ALL, '%C+'"},
    {"match", "ALL, '%G+'"},
    {"gsub", "ALL, '%A', ''"},
    {"gsub", "ALL, '%C', ''"},
    {"gsub", "ALL, '%D', ''"},
    {"gsub", "ALL, '%G', ''"},
    {"gsub", "ALL, '%L', ''"},
    {"gsub", "ALL, '%P', ''"},
    {"gsub", "ALL, '%S', ''"},
    {"gsub", "ALL, '%U', ''"},
    {"gsub", "ALL, '%W', ''"},
    {"gsub", "ALL, '%X', ''"},
    {"gsub", "ALL, '%a', ''"},
    {"gsub", "ALL, '%p', ''"},
    {"gsub", "ALL, '[^%a%d]', ''"},
    {"gsub", "ALL, '[%A]', ''"},
    {"gsub", "ALL, '[%a-z]', ''"},
    {"gsub", "ALL, '[^%s%p]', ''"},
    {"gsub", "ALL, '[a-f0-3]', ''"},
    {"gsub", "ALL, '[^a-f0-3]', ''"},
    {"gsub", "ALL, '[\\128-\\255]', ''"},
    {"gsub", "ALL, '[^\\128-\\255]', ''"},
    {"gsub", "ALL, '[\\0-\\31]', ''"},
    {"gsub", "ALL, '[%z]', ''"},
    {"gsub", "ALL, '%z', ''"},
    {"gsub", "ALL, '[z-a]', ''"},
    {"gsub", "ALL, '[a-]', ''"},
    {"gsub", "ALL, '[-a]', ''"},
    {"gsub", "ALL, '[a-a]', ''"},
    {"gsub", "ALL, '[%a-]', ''"},
    {"gsub", "ALL, '[%%-]', ''"},
    {"gsub", "ALL, '[%]]', ''"},
    {"gsub", "ALL, '[]]', ''"},
    {"gsub", "ALL, '[^]]', ''"},
    {"gsub", "ALL, '[]-a]', ''"},
    {"gsub", "ALL, '[^]-a]', ''"},
    {"gsub", "ALL, '[]abc]', ''"},
    {"gsub", "ALL, '[^^]', ''"},
    {"gsub", "ALL, '[a^]', ''"},
    {"gsub", "ALL, '[.]', ''"},
    {"gsub", "ALL, '[%.]', ''"},
    {"gsub", "ALL, '[[]', ''"},
    {"gsub", "ALL, '[%[]', ''"},
    {"gsub", "ALL, '[a-%%]', ''"},
    {"gsub", "ALL, '[%a-%d]', ''"},
    {"gsub", "ALL, '%.%%%[%]%(%)%*%+%-%?%$%^', '#'"},
    {"match", "'x.%[]()*+-?$^', '%.%%%[%]%(%)%*%+%-%?%$%^'"},
    {"match", "'x.%[]()*+-?$^', '%x'"},
    {"match", "'axb', '%q'"},
    {"match", "'aqb', '%q'"},
    {"match", "'aQb', '%Q'"},
    {"match", "'a_b', '%_'"},
    /* sets and classes: malformed */
    {"match", "'abc', '['"},
    {"match", "'abc', '[a'"},
    {"match", "'abc', '[^'"},
    {"match", "'abc', '[]'"},
    {"match", "'abc', '[^]'"},
    {"match", "'abc', '[%'"},
    {"match", "'abc', '[%]'"},
    {"match", "'abc', '[a%'"},
    {"match", "'abc', '%'"},
    {"match", "'abc', 'a%'"},
    {"match", "'abc', 'x%'"},
    {"match", "'xbc', 'x['"},
    {"match", "'abc', 'x['"},
    {"match", "'', '['"},
    {"match", "'', '%'"},
    {"find", "'abc', '[a', 4"},
    {"find", "'abc', 'c%', -1"},
    /* captures */
    {"match", "'hello world', '(h)(e)(l)(l)(o)'"},
    {"match", "'hello', '()ll()'"},
    {"match", "'hello', '()'"},
    {"match", "'hello', '()', 6"},
    {"match", "'hello', '(h(e(l)l)o)'"},
    {"match", "'hello', '((((((((((((((((((((((((((((((((h))))))))))))))))))))))))))))))))'"},
    {"match", "'hello', '(((((((((((((((((((((((((((((((((h)))))))))))))))))))))))))))))))))'"},
    {"match", "'hello', '"
              "()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()"
              "'"},
    {"match", "'hello', '"
              "()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()"
              "'"},
    {"match", "'hello', 'x"
              "()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()()"
              "'"},
    {"match", "'hello', '(h'"},
    {"match", "'hello', 'h)'"},
    {"match", "'hello', 'x)'"},
    {"match", "'hello', '(x'"},
    {"match", "'hello', '(h)(e'"},
    {"match", "'hello', '((h)e'"},
    {"match", "'hello', '(h)e)'"},
    {"match", "'hello', ')'"},
    {"match", "'hello', '()h)'"},
    {"find", "'hello', '(h'"},
    {"find", "'hello', '(h)()'"},
    {"match", "'', '()'"},
    {"match", "'', '(.*)'"},
    {"match", "'abc', '(.-)(.-)$'"},
    /* back-references */
    {"match", "'abcabc', '(abc)%1'"},
    {"match", "'abcab', '(abc)%1'"},
    {"match", "'xyzzy', '(z)%1'"},
    {"match", "'say \"hi\" and', '([\"\\'])(.-)%1'"},
    {"match", "'aa', '(a)%2'"},
    {"match", "'aa', '%1'"},
    {"match", "'aa', '(a%1)'"},
    {"match", "'aa', '(a)%0'"},
    {"match", "'aa', 'b%0'"},
    {"match", "'aa', '()%1'"},
    {"match", "'aa', '()a%1'"},
    {"match", "'abab', '(a)(b)%2'"},
    {"match", "'abab', '(a)(b)%1%2'"},
    {"match", "'abab', '(a)(b)%9'"},
    {"match", "'', '()%1'"},
    {"match", "'aaaa', '(a*)%1$'"},
    {"match", "'abc', '(.)%1'"},
    /* %b */
    {"match", "'f(a(b)c) d', '%b()'"},
    {"match", "'f(a(b c', '%b()'"},
    {"match", "'x)(y)', '%b()'"},
    {"match", "'[[x]]]', '%b[]'"},
    {"match", "'aaab', '%baa'"},
    {"match", "'a', '%b'"},
    {"match", "'a', '%b('"},
    {"match", "'', '%b()'"},
    {"match", "'(', '%b()'"},
    {"match", "'()', '%b()$'"},
    {"match", "'(x)(y)', '%b()%b()'"},
    {"match", "'(x)(y)', '(%b())*'"},
    {"match", "'<<>><>', '%b<>+'"},
    {"match", "'a\\0b\\0', '%b\\0\\0'"},
    {"match", "'xx', '%b\\0'"},
    {"gsub", "'f(x) + g(y, (z))', '%b()', '()'"},
    /* %f */
    {"match", "'THE (quick) fox', '%f[%a]%a+'"},
    {"gsub", "'THE (quick) fox', '%f[%a]%a+', '<%0>'"},
    {"gsub", "'THE (quick) fox', '%f[%A]', '|'"},
    {"gsub", "'hello', '%f[%z]', '|'"},
    {"gsub", "'hello', '%f[^%z]', '|'"},
    {"gsub", "'', '%f[%z]', '|'"},
    {"gsub", "'', '%f[^%z]', '|'"},
    {"gsub", "'a\\0b', '%f[%z]', '|'"},
    {"gsub", "'a b', '%f[%w]', '|'"},
    {"find", "'a b', '%f[ ]'"},
    {"match", "'abc', '%f'"},
    {"match", "'abc', '%fa'"},
    {"match", "'abc', '%f[a'"},
    {"match", "'abc', '%f[]'"},
    {"match", "'abc', 'x%f'"},
    {"match", "'abc', '%f[a]*'"},
    /* quantifiers on classes and sets, anchors */
    {"match", "'  x', '^ *x'"},
    {"match", "'ab12', '^%a+%d+$'"},
    {"match", "'ab12x', '^%a+%d+$'"},
    {"match", "'--x', '^-+'"},
    {"match", "'--x', '^%-+'"},
    {"match", "'a-b', 'a-b'"},
    {"match", "'a+b', 'a+b'"},
    {"match", "'ab', 'a**'"},
    {"match", "'a*', 'a**'"},
    {"match", "'a?', 'a?\?'"},
    {"match", "'a', 'a?*'"},
    {"match", "'*a', '*a'"},
    {"match", "'+a', '+a'"},
    {"match", "'?a', '?a'"},
    {"match", "'x', '^*'"},
    {"match", "'abc', '^'"},
    {"match", "'abc', '$'"},
    {"match", "'abc', '^$'"},
    {"match", "'', '^$'"},
    {"match", "'a$', 'a$$'"},
    {"match", "'a$', '$$'"},
    {"match", "'ab', '(a)$'"},
    {"match", "'ab', '(b)$'"},
    {"match", "'ab', 'b()$'"},
    {"match", "'[x]', '[[]'"},
    {"match", "'x', '[%w_]*'"},
    {"match", "'abc123', '[%a]+()'"},
    {"match", "'(a)', '%((.)%)'"},
    /* NUL bytes and high bytes */
    {"find", "'a\\0b', '\\0'"},
    {"find", "'a\\0b', '%z'"},
    {"find", "'a\\0b', '[\\0]'"},
    {"find", "'a\\0b', '.\\0.'"},
    {"find", "'a\\0b', '%\\0'"},
    {"find", "'a\\0b', 'b\\0'"},
    {"find", "'a\\0b\\0c', 'b\\0', 1, true"},
    {"find", "'a\\0b\\0c', '\\0c$'"},
    {"find", "'a\\0b\\0c', '\\0+'"},
    {"find", "'a\\0.b', '\\0.'"},
    {"find", "'\\0\\0\\0', '\\0*', 2"},
    {"match", "'x\\0y', '(.)\\0(.)'"},
    {"match", "'x\\0y', '[^\\0]+$'"},
    {"match", "'x\\0y', '[\\0-\\1]'"},
    {"match", "'x\\0y', '%b\\0y'"},
    {"gsub", "'a\\0b\\0', '\\0', '%%0'"},
    {"gsub", "'a\\0b\\0', '%z', '\\0\\0'"},
    {"gsub", "'ab', '', '\\0'"},
    {"find", "'\\200\\255', '[\\128-\\255]+'"},
    {"find", "'caf\\195\\169', '[\\195]'"},
    {"match", "'caf\\195\\169 x', '%S+'"},
    {"match", "'\\255\\254', '\\255.'"},
    {"match", "'\\255\\254', '[\\254-\\255]+$'"},
    {"gsub", "'\\128\\200\\255', '.', {['\\200'] = '!'}"},
    {"match", "'\\255', '%w'"},
    {"match", "'\\255', '%W'"},
    /* gmatch */
    {"gmatch", "'hello world from Lua', '%a+'"},
    {"gmatch", "'k1=v1, k2=v2', '(%w+)=(%w+)'"},
    {"gmatch", "'abc', ''"},
    {"gmatch", "'', ''"},
    {"gmatch", "'abc', '.'"},
    {"gmatch", "'abc', '.-'"},
    {"gmatch", "'abc', 'x*'"},
    {"gmatch", "'abc', '()'"},
    {"gmatch", "'aaa', 'a*'"},
    {"gmatch", "'abaab', 'a*'"},
    {"gmatch", "'a,b,,c', '([^,]*)'"},
    {"gmatch", "'hello', '^h'"},
    {"gmatch", "'^h^h', '^h'"},
    {"gmatch", "'hello', 'l+$'"},
    {"gmatch", "'abc', '.', 2"},
    {"gmatch", "'abc', '.', -1"},
    {"gmatch", "'abc', '.', -10"},
    {"gmatch", "'abc', '.', 0"},
    {"gmatch", "'abc', '.', 3"},
    {"gmatch", "'abc', '.', 4"},
    {"gmatch", "'abc', '', 4"},
    {"gmatch", "'abc', '', 5"},
    {"gmatch", "'abc', '', math.maxinteger"},
    {"gmatch", "'abc', '()', math.mininteger"},
    {"gmatch", "'abc', '.', '2'"},
    {"gmatch", "'abc', '.', 1.5"},
    {"gmatch", "12345, 3"},
    {"gmatch", "'abc', '['"},
    {"gmatch", "'xa', 'a['"},
    {"gmatch", "'xyz', '%'"},
    {"gmatch", "'abc', '(a'"},
    {"gmatch", "'abc', 'b)'"},
    {"gmatch", "'abc', '%1'"},
    {"gmatch", "'aXbXc', 'X()'"},
    {"gmatch", "'one two', '%f[%w]%w+'"},
    {"gmatch", "'(a)(b)c', '%b()'"},
    {"gmatch", "'a\\0b\\0', '[^\\0]*'"},
    /* gsub: string replacement */
    {"gsub", "'hello world', 'o', '0'"},
    {"gsub", "'hello world', '(o)', '[%1]'"},
    {"gsub", "'hello world', 'o', '%0%0'"},
    {"gsub", "'hello world', 'o', '%1'"},
    {"gsub", "'hello world', 'o', '%2'"},
    {"gsub", "'hello world', '(o)', '%2'"},
    {"gsub", "'hello world', '(o)', '%9'"},
    {"gsub", "'hello world', 'o', '%%'"},
    {"gsub", "'hello world', 'o', '100%'"},
    {"gsub", "'hello world', 'o', '%x'"},
    {"gsub", "'hello world', 'o', '%\\0'"},
    {"gsub", "'hello world', 'x', '%'"},
    {"gsub", "'hello world', 'o', 'a%%b%%'"},
    {"gsub", "'hello world', '(o)(r?)', '<%2%1>'"},
    {"gsub", "'hello world', '()o()', '%1-%2'"},
    {"gsub", "'hello world', '()o', '%0'"},
    {"gsub", "'hello', '(l)(l)', '%2%1'"},
    {"gsub", "'hello', '(h', 'x'"},
    {"gsub", "'hello', '(h', '%0'"},
    {"gsub", "'hello', '(h', '%1'"},
    {"gsub", "'hello', '(h', REPL_F"},
    {"gsub", "'hello', '(h', REPL_T"},
    {"gsub", "'hello world', '%w+', '%0 %0', 1"},
    {"gsub", "'hello world', '%w+', '%0 %0', 0"},
    {"gsub", "'hello world', '%w+', '%0 %0', -1"},
    {"gsub", "'hello world', '%w+', '%0 %0', 2"},
    {"gsub", "'hello world', '%w+', '%0 %0', 99"},
    {"gsub", "'hello world', '%w+', '%0 %0', math.mininteger"},
    {"gsub", "'hello world', '%w+', '%0 %0', '1'"},
    {"gsub", "'hello world', '%w+', '%0 %0', 2.0"},
    {"gsub", "'hello world', '', '-'"},
    {"gsub", "'hello world', '', '-', 3"},
    {"gsub", "'', '', '-'"},
    {"gsub", "'', 'x*', '-'"},
    {"gsub", "'abc', '%w*', '-'"},
    {"gsub", "'abc', 'x*', '-'"},
    {"gsub", "'a b c', '%s*', '-'"},
    {"gsub", "'abc', '.-', '-'"},
    {"gsub", "'abc', '()', '%1'"},
    {"gsub", "'aaa', 'a*', '-'"},
    {"gsub", "'baaac', 'a*', '-'"},
    {"gsub", "'hello world', '^h', 'H'"},
    {"gsub", "'hello world', '^o', 'O'"},
    {"gsub", "'hello world', '^', '>'"},
    {"gsub", "'hello world', '$', '<'"},
    {"gsub", "'hello world', '^.*$', '[%0]'"},
    {"gsub", "'hello', '^', '>', 0"},
    {"gsub", "'^^', '^^', 'x'"},
    {"gsub", "'hello', 'l', 5"},
    {"gsub", "'hello', 'l', 1.25"},
    {"gsub", "'hello', 'l', -0.0"},
    {"gsub", "'hello', '[', 'x'"},
    {"gsub", "'xxx', '[', 'x'"},
    {"gsub", "'hello', 'l', '%'"},
    {"gsub", "'abc', '%w', '%0%0%0'"},
    /* gsub: table and function replacement */
    {"gsub", "'a ab b x', '%w+', REPL_T"},
    {"gsub", "'a ab x', '%w+', REPL_T"},
    {"gsub", "'a ab x', '(%w)(%w?)', REPL_T"},
    {"gsub", "'xyz', '()', REPL_T"},
    {"gsub", "'xyz', '()y()', REPL_T"},
    {"gsub", "'b', 'b', REPL_T"},
    {"gsub", "'a ab b x', '%w+', REPL_F"},
    {"gsub", "'a ab b x', '(%w)(%w?)', REPL_F"},
    {"gsub", "'a ab b x', '()%w+()', REPL_F"},
    {"gsub", "'abc', '', REPL_F"},
    {"gsub", "'abc', '%w', REPL_N"},
    {"gsub", "'abc', '%w', REPL_ERR"},
    {"gsub", "'abc', '%w', function() return {} end"},
    {"gsub", "'abc', '%w', function() return true end"},
    {"gsub", "'abc', '%w', function() return print end"},
    {"gsub", "'abc', '%w', function() return nil end"},
    {"gsub", "'abc', '%w', function() end"},
    {"gsub", "'abc', '%w', function() return 10 end"},
    {"gsub", "'abc', '%w', function() return 'x', 'y' end"},
    {"gsub", "'abc', '%w', function(c) return c:upper() end"},
    {"gsub", "'abc', '%w', function(c) return c:upper() end, 2"},
    {"gsub", "'abc', '%w', setmetatable({}, {__index = function(t, k) return k .. k end})"},
    {"gsub", "'abc', '%w', setmetatable({}, {__call = function() return 'z' end})"},
    {"gsub", "'abc', '(%w)', function(...) return select('#', ...) end"},
    {"gsub", "'abc', '%w', {a = 1, b = 2.5, c = -0.0}"},
    {"gsub", "'k=v', '(%w+)=(%w+)', '%2=%1'"},
    {"gsub", "'$1.50', '%$(%d+)%.(%d+)', '%2 cents and %1 dollars'"},
    /* depth and capture limits */
    {"lua", "return string.find(string.rep('a', 300), string.rep('a?', 300))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a?', 199))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a?', 200))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a?', 201))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('b?', 300) .. 'a')"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a*', 199))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a*', 200))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a-', 200))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a-', 199) .. '$')"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('a', 300))"},
    {"lua", "return string.find(string.rep('a', 300), string.rep('.', 300))"},
    {"lua", "return string.find('x', string.rep('(', 33))"},
    {"lua", "return string.find('x', string.rep('(', 32) .. 'x' .. string.rep(')', 32))"},
    {"lua", "return string.find('x', string.rep('(', 32) .. 'y' .. string.rep(')', 32))"},
    {"lua", "return string.find('x', string.rep('()', 32) .. 'x')"},
    {"lua", "return string.match('x', string.rep('()', 32) .. 'x')"},
    {"lua", "return string.find('x', string.rep('()', 33) .. 'x')"},
    {"lua", "return string.find('xxx', string.rep('()', 99) .. 'y')"},
    {"lua", "return string.find('xxx', string.rep('()', 100) .. 'x')"},
    {"lua", "return string.gsub(string.rep('x', 150), string.rep('x?', 150), '')"},
    {"lua", "return string.gsub(string.rep('x', 100), '(x)', '%1%1')"},
    {"lua", "return string.find(string.rep('(', 250) .. string.rep(')', 250), '%b()')"},
    /* through Lua code: methods, loops, coroutines */
    {"lua", "return ('hello'):find('l')"},
    {"lua", "return ('hello'):find()"},
    {"lua", "return ('hello'):gsub()"},
    {"lua", "return ('x'):rep(3):gsub('x', 'y')"},
    {"lua", "local t = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do t[#t + 1] = k .. v end "
            "return table.concat(t, ';')"},
    {"lua", "local t = {} for w in ('one two  three'):gmatch('%S+') do t[#t + 1] = w end "
            "return #t, t[3]"},
    {"lua", "local it = ('abc'):gmatch('.') return it(), it(), it(), it(), it()"},
    {"lua", "local it = ('abc'):gmatch('()') return it(), it(), it(), it(), it()"},
    {"lua", "local it = ('ab'):gmatch('.') local co = coroutine.wrap(function() "
            "coroutine.yield(it()) return it() end) return co(), co(), it()"},
    {"lua", "return pcall(string.gsub, 'abc', '%w', function(c) "
            "return (string.gsub(c, '.', '%0%0')) end)"},
    {"lua", "return select('#', string.find('abc', 'x'))"},
    {"lua", "return select('#', string.match('abc', 'x'))"},
    {"lua", "return select('#', string.find('abc', 'b', 9))"},
    {"lua", "return select('#', string.gsub('abc', 'x', 'y'))"},
    {"lua", "return math.type((string.find('abc', 'b'))), math.type(select(2, "
            "string.gsub('abc', 'b', 'x')))"},
    {"lua", "return string.gsub('abc', 'b', '%%1')"},
    {"lua",
     "local s = string.rep('ab', 1000) return #s:gsub('a', 'xyz'), s:find('ba', 1000, true)"},
    {"lua", "return string.match(string.rep(' ', 100) .. 'x' .. string.rep(' ', 100), "
            "'^%s*(.-)%s*$')"},
    {"lua", "return string.find(string.rep('a', 1000) .. 'b', '.-b')"},
    {"lua", "return string.find(string.rep('a', 200), '(a*)*b')"},
    {"lua", "return string.match(('x'):rep(16), ('x?'):rep(16) .. ('x'):rep(16))"},
    {"lua", "return tostring(string.find):sub(1, 9), type(string.gmatch('a', 'a'))"},
};

START_TEST(differential)
{
    lua_State *ref = new_state(false, NULL), *mine = new_state(true, count_charge);
    struct out a = {0}, b = {0};
    lua_State *states[2] = {ref, mine};
    struct out *outs[2] = {&a, &b};
    int k;

    for (k = 0; k < 2; k++) {
        lua_State *L = states[k];
        bool chunk = strcmp(cases[_i].fn, "lua") == 0;
        char src[1024];
        int base = lua_gettop(L);

        snprintf(src, sizeof(src), "%s%s", chunk ? "" : "return ", cases[_i].args);
        ck_assert_msg(luaL_loadstring(L, src) == LUA_OK, "%s: %s", src, lua_tostring(L, -1));
        if (chunk) {
            if (lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK)
                out_error(outs[k], L);
            else
                out_values(outs[k], L, base + 1, lua_gettop(L));
            lua_settop(L, base);
        } else {
            ck_assert_msg(lua_pcall(L, 0, LUA_MULTRET, 0) == LUA_OK, "%s: %s", src,
                          lua_tostring(L, -1));
            call_record(L, cases[_i].fn, lua_gettop(L) - base, outs[k]);
        }
    }
    ck_assert_msg(strcmp(a.buf, b.buf) == 0, "%s(%s):\n  lua:    %s\n  luapat: %s", cases[_i].fn,
                  cases[_i].args, a.buf, b.buf);
    free(a.buf);
    free(b.buf);
    lua_close(ref);
    lua_close(mine);
}
END_TEST

/* The second state really runs the installed functions: they carry a budget upvalue. */
START_TEST(installed)
{
    static const char *const names[] = {"find", "match", "gmatch", "gsub"};
    lua_State *ref = new_state(false, NULL), *mine = new_state(true, count_charge);
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        lua_getglobal(ref, "string");
        lua_getfield(ref, -1, names[i]);
        ck_assert_ptr_null(lua_getupvalue(ref, -1, 1));
        lua_getglobal(mine, "string");
        lua_getfield(mine, -1, names[i]);
        ck_assert_ptr_nonnull(lua_getupvalue(mine, -1, 1));
        ck_assert_int_eq(lua_type(mine, -1), LUA_TUSERDATA);
        lua_settop(ref, 0);
        lua_settop(mine, 0);
    }
    lua_close(ref);
    lua_close(mine);
}
END_TEST

/* --- fuzz: random patterns from a pattern alphabet over random subjects --- */

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static const char *const tokens[] = {
    "a",  "b",  "x",  ".",    "%",     "[",     "]",     "^",      "$",      "(",     ")",
    "*",  "+",  "-",  "?",    "0",     "1",     " ",     "%a",     "%d",     "%s",    "%w",
    "%A", "%S", "%%", "%.",   "%b()",  "%bab",  "%b",    "%f[%w]", "%f[%W]", "%f[a]", "%f",
    "%1", "%2", "%0", "[ab]", "[^ab]", "[a-c]", "[%a_]", "[]]",    "[^]]",   "()",    ".-",
    ".*", "a*", "b+", "x?",   "(a)",   "(.)",   "%z",    "\\0"};

static const char subject_bytes[] = "ab x(1)-.\0\xff";
static const char *const replacements[] = {"%0", "<%1>", "-", "%%", "%", "%9", "%2%1", ""};
static const char *const repl_globals[] = {"REPL_F", "REPL_T", "REPL_N"};

enum { FUZZ_ROUNDS = 4000 };

struct fuzz_case {
    char pat[64];     /* pattern */
    size_t lpat;      /* its length */
    char subj[16];    /* subject */
    size_t lsubj;     /* its length */
    int fn;           /* 0 find, 1 match, 2 gmatch, 3 gsub */
    lua_Integer init; /* init (find/match/gmatch) or max n (gsub) */
    bool has_init;    /* pass init */
    bool plain;       /* find: plain flag */
    int repl;         /* gsub: < 8 a string, else a global */
};

static void fuzz_make(struct fuzz_case *c)
{
    unsigned i, n = 1 + rnd(6);

    memset(c, 0, sizeof(*c));
    for (i = 0; i < n; i++) {
        const char *t = tokens[rnd(sizeof(tokens) / sizeof(tokens[0]))];

        if (strcmp(t, "\\0") == 0) {
            c->pat[c->lpat++] = '\0';
        } else {
            memcpy(c->pat + c->lpat, t, strlen(t));
            c->lpat += strlen(t);
        }
    }
    n = rnd(11);
    for (i = 0; i < n; i++)
        c->subj[c->lsubj++] = subject_bytes[rnd(sizeof(subject_bytes) - 1)];
    c->has_init = rnd(3) == 0;
    c->init = (lua_Integer)rnd(16) - 4;
    c->plain = rnd(8) == 0;
    c->repl = (int)rnd(11);
}

static void fuzz_run(lua_State *L, const struct fuzz_case *c, struct out *o)
{
    static const char *const fns[] = {"find", "match", "gmatch", "gsub"};
    int n = 2;

    lua_pushlstring(L, c->subj, c->lsubj);
    lua_pushlstring(L, c->pat, c->lpat);
    if (c->fn == 3) {
        if (c->repl < 8)
            lua_pushstring(L, replacements[c->repl]);
        else
            lua_getglobal(L, repl_globals[c->repl - 8]);
        n++;
    }
    if (c->has_init || (c->fn == 0 && c->plain)) {
        lua_pushinteger(L, c->init);
        n++;
    }
    if (c->fn == 0 && c->plain) {
        lua_pushboolean(L, 1);
        n++;
    }
    call_record(L, fns[c->fn], n, o);
}

/* Every error the matcher can raise from a short pattern; the fuzz must reach each. */
static const char *const fuzz_errors[] = {
    "malformed pattern (ends with '%')",
    "malformed pattern (missing ']')",
    "malformed pattern (missing arguments to '%b')",
    "missing '[' after '%f' in pattern",
    "invalid capture index %",
    "invalid pattern capture",
    "unfinished capture",
    "invalid use of '%' in replacement string",
    "invalid replacement value (a table)",
};

START_TEST(fuzz_differential)
{
    enum { NERR = sizeof(fuzz_errors) / sizeof(fuzz_errors[0]) };
    lua_State *ref = new_state(false, NULL), *mine = new_state(true, count_charge);
    int round, errors = 0, seen[NERR] = {0};
    size_t i;

    rng_state = 0x9e3779b97f4a7c15u;
    for (round = 0; round < FUZZ_ROUNDS; round++) {
        struct fuzz_case c;

        fuzz_make(&c);
        for (c.fn = 0; c.fn < 4; c.fn++) {
            struct out a = {0}, b = {0};

            fuzz_run(ref, &c, &a);
            fuzz_run(mine, &c, &b);
            if (strncmp(a.buf, "error", 5) == 0)
                errors++;
            for (i = 0; i < NERR; i++)
                if (strstr(a.buf, fuzz_errors[i]) != NULL)
                    seen[i]++;
            if (strcmp(a.buf, b.buf) != 0) {
                struct out d = {0};

                out_string(&d, c.subj, c.lsubj);
                out_fmt(&d, " ");
                out_string(&d, c.pat, c.lpat);
                ck_abort_msg("round %d fn %d %s init %lld/%d plain %d repl %d:\n  lua:    %s\n"
                             "  luapat: %s",
                             round, c.fn, d.buf, (long long)c.init, c.has_init, c.plain, c.repl,
                             a.buf, b.buf);
            }
            free(a.buf);
            free(b.buf);
            ck_assert_int_eq(lua_gettop(ref), 0);
            ck_assert_int_eq(lua_gettop(mine), 0);
        }
    }
    /* the alphabet must reach every error path, and clean matches most of the time */
    for (i = 0; i < NERR; i++)
        ck_assert_msg(seen[i] > 0, "fuzz never raised \"%s\"", fuzz_errors[i]);
    ck_assert_int_lt(errors, FUZZ_ROUNDS * 4 / 2);
    lua_close(ref);
    lua_close(mine);
}
END_TEST

/* --- the budget --- */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void budget_reset(unsigned long limit)
{
    charged = 0;
    charge_calls = 0;
    charge_limit = limit;
}

/* Lua's own trim takes ~10 s on 40,000 spaces; capped at 10 million steps it stops at once. */
START_TEST(trim_is_stopped)
{
    lua_State *L = new_state(true, count_charge);
    double t0;
    const char *msg;

    budget_reset(10000000);
    t0 = now_s();
    ck_assert_int_ne(luaL_dostring(L, "local s = 'a' .. string.rep(' ', 200000) .. 'b' "
                                      "return s:match('^%s*(.-)%s*$')"),
                     LUA_OK);
    msg = lua_tostring(L, -1);
    ck_assert_ptr_nonnull(strstr(msg, "step budget exceeded"));
    ck_assert_double_lt(now_s() - t0, 1.0);
    ck_assert_uint_eq(charged, 10000000);
    ck_assert_uint_eq(charge_calls, 10000000 / LUAPAT_STEPS);
    lua_close(L);
}
END_TEST

/* Each subject position of gsub's and gmatch's loop costs at least one step. */
START_TEST(empty_matches_are_charged)
{
    lua_State *L = new_state(true, count_charge);

    budget_reset(0);
    ck_assert_int_eq(luaL_dostring(L, "local s = string.rep('x', 1 << 20) "
                                      "local r, n = s:gsub('', '-') return #r, n"),
                     LUA_OK);
    ck_assert_int_eq(lua_tointeger(L, -2), 2 * (1 << 20) + 1);
    ck_assert_int_eq(lua_tointeger(L, -1), (1 << 20) + 1);
    ck_assert_uint_ge(charged, 2ul << 20);
    lua_settop(L, 0);

    budget_reset(0);
    ck_assert_int_eq(luaL_dostring(L, "local n = 0 for _ in string.rep('x', 1 << 20):gmatch('') "
                                      "do n = n + 1 end return n"),
                     LUA_OK);
    ck_assert_int_eq(lua_tointeger(L, -1), (1 << 20) + 1);
    ck_assert_uint_ge(charged, 1ul << 20);
    lua_settop(L, 0);

    /* and the budget stops them */
    budget_reset(100000);
    ck_assert_int_ne(luaL_dostring(L, "return string.rep('x', 1 << 20):gsub('x*', '-')"), LUA_OK);
    ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "step budget exceeded"));
    lua_close(L);
}
END_TEST

/* A plain find is charged by the bytes it scans, and by each candidate it compares. */
START_TEST(plain_find_is_charged)
{
    lua_State *L = new_state(true, count_charge);

    budget_reset(0);
    ck_assert_int_eq(luaL_dostring(L, "return string.rep('a', 1 << 20):find('b', 1, true)"),
                     LUA_OK);
    ck_assert(lua_isnil(L, -1));
    ck_assert_uint_ge(charged, (1ul << 20) / 16 - LUAPAT_STEPS);
    lua_settop(L, 0);
    /* a needle that almost matches everywhere: n * m bytes of memcmp */
    budget_reset(1000000);
    ck_assert_int_ne(luaL_dostring(L, "local s = string.rep('a', 1 << 20) "
                                      "return s:find(s:sub(1, 4096) .. 'b', 1, true)"),
                     LUA_OK);
    ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "step budget exceeded"));
    lua_close(L);
}
END_TEST

/* Steps below LUAPAT_STEPS are carried to the next call, so small calls add up. */
START_TEST(small_calls_add_up)
{
    lua_State *L = new_state(true, count_charge);

    budget_reset(0);
    ck_assert_int_eq(luaL_dostring(L, "for i = 1, 10000 do assert(('abc'):find('c') == 3) end"),
                     LUA_OK);
    ck_assert_uint_ge(charged, 9000);
    ck_assert_uint_le(charged, 100000);
    lua_close(L);
}
END_TEST

/* Runs @p k small finds in @p L. */
static void small_finds(lua_State *L, unsigned long k)
{
    char code[100];

    snprintf(code, sizeof(code), "for i = 1, %lu do assert(('abc'):find('c') == 3) end", k);
    ck_assert_int_eq(luaL_dostring(L, code), LUA_OK);
}

/* luapat_reset drops the carried steps: what one request left over does not
 * move the point where the next one is charged. */
START_TEST(reset_forgets_carried_steps)
{
    lua_State *L = new_state(true, count_charge);
    unsigned long per_charge = 0, k;

    /* how many small finds make one charge */
    budget_reset(0);
    while (charge_calls == 0) {
        small_finds(L, 1);
        per_charge++;
    }
    lua_close(L);
    ck_assert_uint_ge(per_charge, 8);
    k = per_charge * 3 / 4;
    /* three quarters of a charge, twice: without a reset between, a charge */
    L = new_state(true, count_charge);
    budget_reset(0);
    small_finds(L, k);
    ck_assert_uint_eq(charge_calls, 0);
    small_finds(L, k);
    ck_assert_uint_eq(charge_calls, 1);
    lua_close(L);
    /* with one, none */
    L = new_state(true, count_charge);
    budget_reset(0);
    small_finds(L, k);
    lua_getglobal(L, "string");
    luapat_reset(L, -1);
    lua_pop(L, 1);
    small_finds(L, k);
    ck_assert_uint_eq(charge_calls, 0);
    lua_close(L);
}
END_TEST

/* Other slow shapes: nested quantifiers, %b over a long run, back-references, plain find. */
START_TEST(slow_shapes_are_stopped)
{
    static const char *const chunks[] = {
        "return string.rep('a', 5000):find(string.rep('a*', 20) .. 'b')",
        "return string.rep('(', 100000):find('%b()')",
        "local s = string.rep('a', 100000) return s:find('(a*)%1b')",
        "local s = string.rep('a', 100000) return s:gsub('.', '%0%0%0%0%0%0%0%0')",
    };
    lua_State *L = new_state(true, count_charge);
    size_t i;

    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        budget_reset(100000);
        ck_assert_msg(luaL_dostring(L, chunks[i]) != LUA_OK, "%s ran to the end", chunks[i]);
        ck_assert_msg(strstr(lua_tostring(L, -1), "step budget exceeded") != NULL, "%s: %s",
                      chunks[i], lua_tostring(L, -1));
        lua_settop(L, 0);
    }
    lua_close(L);
}
END_TEST

/* Without a charge function nothing is capped but the recursion limit still holds. */
START_TEST(no_budget_still_bounded)
{
    lua_State *L = new_state(true, NULL);

    ck_assert_int_ne(luaL_dostring(L, "return string.rep('a', 300):find(string.rep('a?', 300))"),
                     LUA_OK);
    ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "]:1: pattern too complex"));
    lua_settop(L, 0);
    ck_assert_int_eq(luaL_dostring(L, "return ('  x  '):match('^%s*(.-)%s*$')"), LUA_OK);
    ck_assert_str_eq(lua_tostring(L, -1), "x");
    lua_close(L);
}
END_TEST

/* A state with a memory cap: gsub's result is built in the state's allocator. */
static size_t mem_used, mem_cap;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && mem_used + (nsize - osize) > mem_cap)
        return NULL;
    ptr = realloc(ptr, nsize);
    if (ptr != NULL)
        mem_used = mem_used - osize + nsize;
    return ptr;
}

START_TEST(memory_cap_applies)
{
    lua_State *L;

    mem_used = 0;
    mem_cap = 4 << 20;
    L = lua_newstate(capped_alloc, NULL);
    ck_assert_ptr_nonnull(L);
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    luapat_install(L, -1, NULL);
    lua_pop(L, 1);
    ck_assert_int_eq(luaL_dostring(L, "return #string.rep('x', 100000):gsub('', 'yy')"), LUA_OK);
    ck_assert_int_eq(lua_tointeger(L, -1), 300002);
    lua_settop(L, 0);
    ck_assert_int_eq(luaL_loadstring(L, "return string.rep('x', 1 << 20):gsub('', '0123456789')"),
                     LUA_OK);
    ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_ERRMEM);
    ck_assert_str_eq(lua_tostring(L, -1), "not enough memory");
    lua_close(L);
    ck_assert_uint_eq(mem_used, 0);
}
END_TEST

static Suite *luapat_suite(void)
{
    Suite *s = suite_create("luapat");
    TCase *tc = tcase_create("differential");

    tcase_add_loop_test(tc, differential, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, installed);
    tcase_add_test(tc, fuzz_differential);
    suite_add_tcase(s, tc);
    tc = tcase_create("budget");
    tcase_add_test(tc, trim_is_stopped);
    tcase_add_test(tc, empty_matches_are_charged);
    tcase_add_test(tc, plain_find_is_charged);
    tcase_add_test(tc, small_calls_add_up);
    tcase_add_test(tc, reset_forgets_carried_steps);
    tcase_add_test(tc, slow_shapes_are_stopped);
    tcase_add_test(tc, no_budget_still_bounded);
    tcase_add_test(tc, memory_cap_applies);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(luapat_suite());
    int failed;

    fprintf(stderr, "luapat: %zu differential cases\n", sizeof(cases) / sizeof(cases[0]));
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
