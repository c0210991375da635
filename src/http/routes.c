#include "config.h"
#include "http/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest path and most segments matched. */
#define MAX_SEGMENTS 32

struct segs {
    char buf[2048];              /* the path, split in place */
    const char *s[MAX_SEGMENTS]; /* segments */
    size_t n;                    /* count */
};

static bool split(const char *path, struct segs *out)
{
    char *p, *save = NULL, *tok;

    out->n = 0;
    if (strlen(path) >= sizeof(out->buf) || path[0] != '/')
        return false;
    strcpy(out->buf, path);
    for (p = out->buf;; p = NULL) {
        tok = strtok_r(p, "/", &save);
        if (!tok)
            break;
        if (out->n >= MAX_SEGMENTS || strcmp(tok, "..") == 0 || strcmp(tok, ".") == 0)
            return false;
        out->s[out->n++] = tok;
    }
    return true;
}

/* "v1", "v2", ...: what a version segment looks like. */
static bool version_like(const char *s)
{
    if (s[0] != 'v' || !s[1])
        return false;
    for (const char *p = s + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    return true;
}

static bool seg_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '~' || c == '-';
}

bool routes_valid_template(const char *tmpl)
{
    struct segs t;

    if (!tmpl || tmpl[0] != '/' || strstr(tmpl, "//") || !split(tmpl, &t))
        return false;
    for (size_t i = 0; i < t.n; i++) {
        const char *s = t.s[i];
        size_t len = strlen(s);

        if (s[0] == '{') {
            if (len < 3 || s[len - 1] != '}')
                return false;
            for (size_t k = 1; k + 1 < len; k++) {
                if (!seg_char(s[k]) || s[k] == '.' || s[k] == '~')
                    return false;
            }
            /* Each parameter once: request.params has one value per name. */
            for (size_t j = 0; j < i; j++) {
                if (strcmp(t.s[j], s) == 0)
                    return false;
            }
            continue;
        }
        for (size_t k = 0; k < len; k++) {
            if (!seg_char(s[k]))
                return false;
        }
    }
    return true;
}

bool routes_same_shape(const char *a, const char *b)
{
    struct segs x, y;

    if (!split(a, &x) || !split(b, &y) || x.n != y.n)
        return false;
    for (size_t i = 0; i < x.n; i++) {
        bool px = x.s[i][0] == '{', py = y.s[i][0] == '{';

        if (px != py || (!px && strcmp(x.s[i], y.s[i]) != 0))
            return false;
    }
    return true;
}

bool routes_looks_versioned(const char *tmpl)
{
    struct segs t;

    return split(tmpl, &t) && t.n > 0 && version_like(t.s[0]);
}

/* Whether template @p a is more specific than @p b (both match the same
 * request): a literal segment beats a parameter at the first place they
 * differ, so /orders/latest wins over /orders/{id}. */
static bool more_specific(const char *a, const char *b)
{
    struct segs x, y;

    if (!split(a, &x) || !split(b, &y))
        return false;
    for (size_t i = 0; i < x.n && i < y.n; i++) {
        bool lx = x.s[i][0] != '{', ly = y.s[i][0] != '{';

        if (lx != ly)
            return lx;
    }
    return false;
}

/* Matches template segments against request segments, collecting params. */
static bool match_tail(const char *tmpl, const char *const *req, size_t n, json_t *params)
{
    struct segs t;

    if (!split(tmpl, &t) || t.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(t.s[i]);

        if (t.s[i][0] == '{') {
            if (params) {
                char name[64];

                snprintf(name, sizeof(name), "%.*s", (int)(len - 2), t.s[i] + 1);
                json_object_set_new(params, name, json_string(req[i]));
            }
        } else if (strcmp(t.s[i], req[i]) != 0) {
            return false;
        }
    }
    return true;
}

static int version_number(const char *v)
{
    return v && v[0] == 'v' ? atoi(v + 1) : 0;
}

/* The API's default version: the highest version it has ("" when it has
 * unversioned resources only). Two spellings of one number ("v2", "v02")
 * are told apart by their text, so that the catalog's order never decides
 * (found by fuzz_routes). */
static const char *default_version(const struct catalog *c, const char *ns, const char *api)
{
    const char *best = "";

    for (size_t i = 0; i < c->n_resources; i++) {
        const struct dtable_resource *r = &c->resources[i];
        int n = version_number(r->version), b = version_number(best);

        if (strcmp(r->ns, ns) == 0 && strcmp(r->api, api) == 0 &&
            (n > b || (n == b && strcmp(r->version, best) > 0)))
            best = r->version;
    }
    return best;
}

static void add_allow(struct route_result *out, const char *method)
{
    if (strstr(out->allow, method))
        return;
    snprintf(out->allow + strlen(out->allow), sizeof(out->allow) - strlen(out->allow), "%s%s",
             out->allow[0] ? ", " : "", method);
}

static void match_table(const struct catalog *c, const char *method, const struct segs *p,
                        struct route_result *out)
{
    const struct dtable_table *t = NULL;

    if (p->n < 4 || p->n > 5)
        return;
    for (size_t i = 0; i < c->n_tables; i++) {
        if (strcmp(c->tables[i].name, p->s[3]) == 0)
            t = &c->tables[i];
    }
    /* Only tables created with --roles are exposed. */
    if (!t || t->n_roles == 0)
        return;
    out->table = t;
    if (p->n == 5) {
        snprintf(out->sys_id, sizeof(out->sys_id), "%s", p->s[4]);
        if (strcmp(method, "GET") == 0) {
            out->match = ROUTE_TABLE;
            return;
        }
        add_allow(out, "GET");
    } else {
        if (strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0) {
            out->match = ROUTE_TABLE;
            return;
        }
        add_allow(out, "GET");
        add_allow(out, "POST");
    }
    out->match = ROUTE_WRONG_METHOD;
}

void routes_match(const struct catalog *c, const char *method, const char *path,
                  struct route_result *out)
{
    struct segs p;

    memset(out, 0, sizeof(*out));
    if (!split(path, &p) || p.n < 3 || strcmp(p.s[0], "api") != 0)
        return;
    if (strcmp(p.s[1], "now") == 0 && strcmp(p.s[2], "table") == 0) {
        match_table(c, method, &p, out);
        return;
    }
    int best = -1;

    for (size_t i = 0; i < c->n_resources; i++) {
        const struct dtable_resource *r = &c->resources[i];
        bool versioned, plain;
        int rank;

        if (strcmp(r->ns, p.s[1]) != 0 || strcmp(r->api, p.s[2]) != 0)
            continue;
        /* /api/ns/api/v1/path, and /api/ns/api/path for the default version. */
        versioned = r->version[0] && p.n > 3 && strcmp(p.s[3], r->version) == 0 &&
                    match_tail(r->path, p.s + 4, p.n - 4, NULL);
        plain = !versioned &&
                (!r->version[0] || strcmp(r->version, default_version(c, r->ns, r->api)) == 0) &&
                match_tail(r->path, p.s + 3, p.n - 3, NULL);
        if (!versioned && !plain)
            continue;
        if (strcmp(r->method, method) != 0) {
            add_allow(out, r->method);
            continue;
        }
        /* Whatever the order they were added in, the resource that answers
         * is: one of the version the path names, else one without versions,
         * else one of the default version reached without its version
         * segment; among those, the most specific template (an order that
         * decided before was found by fuzz_routes). */
        rank = versioned ? 2 : r->version[0] ? 0 : 1;
        if (out->resource &&
            (rank < best || (rank == best && !more_specific(r->path, out->resource->path))))
            continue;
        best = rank;
        json_decref(out->params);
        out->params = json_object();
        match_tail(r->path, p.s + (versioned ? 4 : 3), p.n - (versioned ? 4 : 3), out->params);
        out->resource = r;
        out->match = ROUTE_RESOURCE;
    }
    if (out->match == ROUTE_RESOURCE) {
        out->allow[0] = '\0';
        return;
    }
    if (out->allow[0])
        out->match = ROUTE_WRONG_METHOD;
}
