/*
 * luapat: budgeted Lua 5.4 pattern matching (see luapat.h).
 *
 * The matcher is a backtracking interpreter over the pattern text, like the
 * reference one, because the observable behaviour depends on it: a malformed
 * pattern is only reported when matching reaches the broken item, and
 * "pattern too complex" is raised when the nesting of pending alternatives
 * (quantifiers that may backtrack, open and closed captures) passes 200. The
 * same constructs nest here, so the same inputs hit the limit.
 */
#include "config.h"
#include "script/luapat.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

enum {
    MAX_CAPTURES = 32,  /* Lua's LUA_MAXCAPTURES */
    MAX_DEPTH = 200,    /* Lua's MAXCCALLS: nested tries of one match */
    BYTES_PER_STEP = 16 /* memchr/memcmp/copies do this many bytes in a step's time */
};

#define CAP_OPEN ((ptrdiff_t)-1) /* capture started, not closed yet */
#define CAP_POS ((ptrdiff_t)-2)  /* position capture "()" */

/* Kept as a full userdata upvalue of the installed functions: one per state. */
struct budget {
    luapat_charge_fn charge; /* NULL: count only */
    unsigned long left;      /* steps until the next charge, carried between calls */
};

struct capture {
    const char *at; /* start in the subject */
    ptrdiff_t len;  /* length, CAP_OPEN or CAP_POS */
};

struct matcher {
    const char *s0;                   /* subject start */
    const char *se;                   /* subject end */
    const char *pe;                   /* pattern end */
    lua_State *L;                     /* state to raise errors and push results in */
    struct budget *bud;               /* where steps are counted */
    int depth;                        /* nested tries still allowed */
    int ncap;                         /* captures started (open or closed) */
    struct capture cap[MAX_CAPTURES]; /* the captures */
};

/* Bytes that make find take the matcher; anything else is searched as text. */
static const char SPECIALS[] = "^$*+?.([%-";

/* --- the budget --- */

static void charge_now(struct matcher *m)
{
    m->bud->left = LUAPAT_STEPS;
    if (m->bud->charge != NULL)
        m->bud->charge(m->L, LUAPAT_STEPS);
}

static inline void step(struct matcher *m)
{
    if (--m->bud->left == 0)
        charge_now(m);
}

static void steps(struct matcher *m, size_t n)
{
    while (n >= m->bud->left) {
        n -= m->bud->left;
        charge_now(m);
    }
    m->bud->left -= n;
}

/* Bulk work on @p bytes bytes: one step plus one per BYTES_PER_STEP. */
static void charge_bytes(struct matcher *m, size_t bytes)
{
    steps(m, 1 + bytes / BYTES_PER_STEP);
}

/* --- single items: '.', %x, [set], or a plain byte --- */

static bool in_class(int c, int cl)
{
    int r;

    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break; /* deprecated in 5.4, still there */
    default: return cl == c;     /* %. %% %q ...: the byte itself */
    }
    return isupper(cl) ? r == 0 : r != 0;
}

/* Whether byte @p c is in the set that opens at @p p ('[') and closes at @p close (']'). */
static bool in_set(int c, const char *p, const char *close)
{
    bool want = true;

    p++;
    if (*p == '^') {
        want = false;
        p++;
    }
    /* item_end() made sure there is at least one member and no '%' right before close */
    for (; p < close; p++) {
        if (*p == '%') {
            p++;
            if (in_class(c, (unsigned char)*p))
                return want;
        } else if (p + 2 < close && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return want;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* End of the single item at @p p (p < pattern end); raises on a malformed one. */
static const char *item_end(struct matcher *m, const char *p)
{
    char c = *p++;

    if (c == '%') {
        if (p == m->pe)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[')
        return p;
    if (p < m->pe && *p == '^')
        p++;
    /* the first member is taken as is, so "[]]" and "[^]]" hold a ']' */
    do {
        if (p == m->pe)
            luaL_error(m->L, "malformed pattern (missing ']')");
        c = *p++;
        if (c == '%' && p < m->pe)
            p++;
    } while (p == m->pe || *p != ']');
    return p + 1;
}

/* Whether the subject byte at @p s matches the item [p, ep). */
static bool one(struct matcher *m, const char *s, const char *p, const char *ep)
{
    int c;

    step(m);
    if (s >= m->se)
        return false;
    c = (unsigned char)*s;
    switch (*p) {
    case '.': return true;
    case '%': return in_class(c, (unsigned char)p[1]);
    case '[': return in_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* --- the matcher --- */

static const char *run(struct matcher *m, const char *s, const char *p);

/* Item [p, ep) repeated as often as possible, then fewer until the rest [ep + 1, ...) matches. */
static const char *greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    size_t n = 0;

    while (one(m, s + n, p, ep))
        n++;
    for (;;) {
        const char *r = run(m, s + n, ep + 1);

        if (r != NULL)
            return r;
        if (n == 0)
            return NULL;
        n--;
    }
}

/* Item [p, ep) repeated as rarely as possible so that the rest matches. */
static const char *lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = run(m, s, ep + 1);

        if (r != NULL)
            return r;
        if (!one(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t kind)
{
    const char *r;

    if (m->ncap >= MAX_CAPTURES) {
        luaL_error(m->L, "too many captures");
        return NULL;
    }
    m->cap[m->ncap].at = s;
    m->cap[m->ncap].len = kind;
    m->ncap++;
    r = run(m, s, p);
    if (r == NULL)
        m->ncap--;
    return r;
}

static const char *close_capture(struct matcher *m, const char *s, const char *p)
{
    const char *r;
    int i = m->ncap - 1;

    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0) {
        luaL_error(m->L, "invalid pattern capture");
        return NULL;
    }
    m->cap[i].len = s - m->cap[i].at;
    r = run(m, s, p);
    if (r == NULL)
        m->cap[i].len = CAP_OPEN;
    return r;
}

/* %bxy at @p s, with @p p just after "%b"; returns the end of the balanced run or NULL. */
static const char *balance(struct matcher *m, const char *s, const char *p)
{
    size_t level = 1;
    char open, close;

    if (m->pe - p < 2) {
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
        return NULL;
    }
    step(m);
    if (s >= m->se || *s != p[0])
        return NULL;
    open = p[0];
    close = p[1];
    while (++s < m->se) {
        step(m);
        if (*s == close) {
            if (--level == 0)
                return s + 1;
        } else if (*s == open) {
            level++;
        }
    }
    return NULL;
}

/* %1-%9 (and the invalid %0) at @p s: the same bytes as capture @p digit. */
static const char *backref(struct matcher *m, const char *s, int digit)
{
    int i = digit - '1';
    size_t len;

    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN) {
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
        return NULL;
    }
    if (m->cap[i].len == CAP_POS) /* a position is no text: never matches */
        return NULL;
    len = (size_t)m->cap[i].len;
    charge_bytes(m, len);
    if ((size_t)(m->se - s) < len || memcmp(m->cap[i].at, s, len) != 0)
        return NULL;
    return s + len;
}

/* %f[set] at @p s, with @p p just after "%f"; returns the rest of the pattern or NULL. */
static const char *frontier(struct matcher *m, const char *s, const char *p)
{
    const char *ep;
    int before, after;

    if (p == m->pe || *p != '[') {
        luaL_error(m->L, "missing '[' after '%%f' in pattern");
        return NULL;
    }
    step(m);
    ep = item_end(m, p);
    /* the start and the end of the subject count as a '\0' byte */
    before = s == m->s0 ? 0 : (unsigned char)s[-1];
    after = s < m->se ? (unsigned char)*s : 0;
    if (!in_set(before, p, ep - 1) && in_set(after, p, ep - 1))
        return ep;
    return NULL;
}

/*
 * Match pattern [p, pe) at subject position @p s; returns the end of the match or NULL.
 * Each call is one level of MAX_DEPTH; items that cannot backtrack loop instead of nesting.
 */
static const char *run(struct matcher *m, const char *s, const char *p)
{
    if (m->depth-- == 0) {
        luaL_error(m->L, "pattern too complex");
        return NULL;
    }
    while (s != NULL && p != m->pe) {
        const char *ep;
        char q;

        switch (*p) {
        case '(':
            step(m); /* the single-item path counts its steps in one() */
            if (p + 1 < m->pe && p[1] == ')')
                s = open_capture(m, s, p + 2, CAP_POS);
            else
                s = open_capture(m, s, p + 1, CAP_OPEN);
            goto out;
        case ')':
            step(m);
            s = close_capture(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 != m->pe)
                break; /* a '$' elsewhere is a plain byte */
            step(m);
            if (s != m->se)
                s = NULL;
            goto out;
        case '%':
            if (p + 1 == m->pe)
                break; /* item_end() reports it */
            if (p[1] == 'b') {
                s = balance(m, s, p + 2);
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p = frontier(m, s, p + 2);
                if (p == NULL)
                    s = NULL;
                continue;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                s = backref(m, s, (unsigned char)p[1]);
                p += 2;
                continue;
            }
            break; /* %a, %., ...: a single item */
        default: break;
        }

        /* a single item with an optional quantifier */
        ep = *p == '%' || *p == '[' ? item_end(m, p) : p + 1;
        q = ep < m->pe ? *ep : '\0';
        if (!one(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') {
                p = ep + 1; /* zero times is fine */
                continue;
            }
            s = NULL;
            goto out;
        }
        switch (q) {
        case '?': {
            const char *r = run(m, s + 1, ep + 1);

            if (r != NULL) {
                s = r;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+': s = greedy(m, s + 1, p, ep); goto out;
        case '*': s = greedy(m, s, p, ep); goto out;
        case '-': s = lazy(m, s, p, ep); goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    m->depth++;
    return s;
}

/* --- results --- */

static void matcher_init(struct matcher *m, lua_State *L, struct budget *bud, const char *s,
                         size_t ls, const char *p, size_t lp)
{
    m->s0 = s;
    m->se = s + ls;
    m->pe = p + lp;
    m->L = L;
    m->bud = bud;
    m->depth = MAX_DEPTH;
    m->ncap = 0;
}

/* Try one match of @p p at @p s from a fresh state. */
static const char *attempt(struct matcher *m, const char *s, const char *p)
{
    m->ncap = 0;
    m->depth = MAX_DEPTH;
    return run(m, s, p);
}

/*
 * Capture @p i of the match [s, e) (capture 0 is the whole match when there are none): its
 * text in @p out and the length returned, or CAP_POS with the position pushed on the stack.
 */
static ptrdiff_t capture_text(struct matcher *m, int i, const char *s, const char *e,
                              const char **out)
{
    if (i >= m->ncap) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *out = s;
        return e - s;
    }
    if (m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "unfinished capture");
    if (m->cap[i].len == CAP_POS)
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].at - m->s0) + 1);
    *out = m->cap[i].at;
    return m->cap[i].len;
}

static void push_capture(struct matcher *m, int i, const char *s, const char *e)
{
    const char *text;
    ptrdiff_t len = capture_text(m, i, s, e, &text);

    if (len != CAP_POS)
        lua_pushlstring(m->L, text, (size_t)len);
}

/* Push all captures, or the whole match [s, e) when there are none and @p s is not NULL. */
static int push_captures(struct matcher *m, const char *s, const char *e)
{
    int n = (m->ncap == 0 && s != NULL) ? 1 : m->ncap;
    int i;

    luaL_checkstack(m->L, n, "too many captures");
    for (i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* Lua's rule for init arguments, as a 0-based offset that may exceed @p len. */
static size_t start_offset(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 0;
    return len - (size_t)(-pos);
}

static bool has_specials(const char *p, size_t lp)
{
    size_t i;

    for (i = 0; i < lp; i++)
        if (memchr(SPECIALS, p[i], sizeof(SPECIALS) - 1) != NULL)
            return true;
    return false;
}

/*
 * First occurrence of [p, p + lp) in the subject from @p s1: memchr to each candidate, then
 * memcmp. Both run many bytes per step, so they are charged by size; a needle whose first
 * byte is everywhere costs a step per candidate and its length over BYTES_PER_STEP.
 */
static const char *text_find(struct matcher *m, const char *s1, const char *p, size_t lp)
{
    const char *last;

    if (lp == 0)
        return s1;
    if ((size_t)(m->se - s1) < lp)
        return NULL;
    last = m->se - lp; /* the last place the needle fits */
    while (s1 <= last) {
        const char *c = memchr(s1, p[0], (size_t)(last - s1) + 1);

        if (c == NULL) {
            charge_bytes(m, (size_t)(last - s1));
            return NULL;
        }
        charge_bytes(m, (size_t)(c - s1) + lp);
        if (memcmp(c + 1, p + 1, lp - 1) == 0)
            return c;
        s1 = c + 1;
    }
    return NULL;
}

static struct budget *budget_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* --- string.find, string.match --- */

static int find_or_match(lua_State *L, bool find)
{
    size_t ls, lp, init;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    struct matcher m;
    const char *s1;
    bool anchor;

    init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    matcher_init(&m, L, budget_of(L), s, ls, p, lp);
    s1 = s + init;
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = text_find(&m, s1, p, lp);

        if (hit == NULL) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
        return 2;
    }
    anchor = lp > 0 && *p == '^';
    if (anchor)
        p++;
    for (;;) {
        const char *e = attempt(&m, s1, p);

        if (e != NULL) {
            if (!find)
                return push_captures(&m, s1, e);
            lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
            lua_pushinteger(L, (lua_Integer)(e - s));
            return push_captures(&m, NULL, NULL) + 2;
        }
        if (anchor || s1 == m.se)
            break;
        s1++;
    }
    luaL_pushfail(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_or_match(L, true);
}

static int l_match(lua_State *L)
{
    return find_or_match(L, false);
}

/* --- string.gmatch --- */

struct gmatch_state {
    struct matcher m; /* subject, pattern end, captures */
    const char *p;    /* pattern start ('^' is a plain byte here) */
    size_t pos;       /* offset of the next try; > subject length: done */
    const char *last; /* end of the previous match, NULL before the first */
};

static int gmatch_next(lua_State *L)
{
    struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    size_t len = (size_t)(g->m.se - g->m.s0), pos;

    g->m.L = L; /* the iterator may be called from another coroutine */
    for (pos = g->pos; pos <= len; pos++) {
        const char *s = g->m.s0 + pos;
        const char *e;

        step(&g->m);
        e = attempt(&g->m, s, g->p);
        /* an empty match right where the previous match ended does not count */
        if (e != NULL && e != g->last) {
            g->pos = (size_t)(e - g->m.s0);
            g->last = e;
            return push_captures(&g->m, s, e);
        }
    }
    g->pos = len + 1; /* a later call finds nothing either: skip the rescan */
    return 0;
}

static int l_gmatch(lua_State *L)
{
    size_t ls, lp, init;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    struct gmatch_state *g;

    init = start_offset(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2); /* the closure keeps subject and pattern alive */
    g = lua_newuserdatauv(L, sizeof(*g), 0);
    matcher_init(&g->m, L, budget_of(L), s, ls, p, lp);
    g->p = p;
    g->pos = init > ls ? ls + 1 : init;
    g->last = NULL;
    lua_pushvalue(L, lua_upvalueindex(1)); /* and the budget */
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* --- string.gsub --- */

/* Append the replacement string (argument 3) for the match [s, e), expanding %0-%9 and %%. */
static void add_string(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    size_t l;
    const char *r = lua_tolstring(m->L, 3, &l);
    const char *end = r + l;

    for (;;) {
        const char *pct = memchr(r, '%', (size_t)(end - r));
        int c;

        if (pct == NULL)
            break;
        luaL_addlstring(b, r, (size_t)(pct - r));
        charge_bytes(m, (size_t)(pct - r));
        c = pct + 1 < end ? (unsigned char)pct[1] : -1;
        if (c == '%') {
            luaL_addchar(b, '%');
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
            charge_bytes(m, (size_t)(e - s));
        } else if (c >= '1' && c <= '9') {
            const char *text;
            ptrdiff_t len = capture_text(m, c - '1', s, e, &text);

            if (len == CAP_POS) {
                luaL_addvalue(b);
            } else {
                luaL_addlstring(b, text, (size_t)len);
                charge_bytes(m, (size_t)len);
            }
        } else {
            luaL_error(m->L, "invalid use of '%%' in replacement string");
        }
        r = pct + 2;
    }
    luaL_addlstring(b, r, (size_t)(end - r));
    charge_bytes(m, (size_t)(end - r));
}

/* Append the replacement for the match [s, e); returns whether it differs from the match. */
static bool add_value(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = m->L;

    if (tr == LUA_TFUNCTION) {
        int n;

        lua_pushvalue(L, 3);
        n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_string(m, b, s, e);
        return true;
    }
    if (!lua_toboolean(L, -1)) { /* false or nil: keep the original */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        charge_bytes(m, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
        return false;
    }
    charge_bytes(m, lua_rawlen(L, -1)); /* a number gives 0 here, fine */
    luaL_addvalue(b);
    return true;
}

static int l_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    lua_Integer n = 0;
    const char *src = s, *last = NULL;
    bool anchor = lp > 0 && *p == '^', changed = false;
    struct matcher m;
    luaL_Buffer b;

    luaL_argexpected(
        L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
        "string/function/table");
    matcher_init(&m, L, budget_of(L), s, ls, p, lp);
    if (anchor)
        p++;
    luaL_buffinit(L, &b);
    while (n < max) {
        const char *e;

        step(&m);
        e = attempt(&m, src, p);
        /* as in gmatch, no empty match right at the end of the previous one */
        if (e != NULL && e != last) {
            n++;
            changed = add_value(&m, &b, src, e, tr) || changed;
            src = last = e;
        } else if (src < m.se) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(m.se - src));
        charge_bytes(&m, (size_t)(m.se - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

void luapat_install(lua_State *L, int idx, luapat_charge_fn charge)
{
    static const luaL_Reg fns[] = {
        {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}, {NULL, NULL}};
    struct budget *bud;
    const luaL_Reg *f;

    idx = lua_absindex(L, idx);
    bud = lua_newuserdatauv(L, sizeof(*bud), 0);
    bud->charge = charge;
    bud->left = LUAPAT_STEPS;
    for (f = fns; f->name != NULL; f++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, idx, f->name);
    }
    lua_pop(L, 1);
}

void luapat_reset(lua_State *L, int idx)
{
    struct budget *bud;

    lua_getfield(L, idx, "find"); /* every installed function shares the budget */
    if (lua_getupvalue(L, -1, 1) != NULL) {
        bud = lua_touserdata(L, -1);
        if (bud)
            bud->left = LUAPAT_STEPS;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}
