/*
 * fuzz_routes: route matching (routes_match) over a catalog built from the
 * input, and the template checks (routes_valid_template, routes_same_shape,
 * routes_looks_versioned). Input: lines; the first is the request,
 * "METHOD /path"; each further one adds a resource,
 * "R METHOD NAMESPACE API VERSION TEMPLATE" (VERSION "-" for none), or a
 * table, "T NAME" (exposed) or "t NAME" (not exposed). Resources are
 * refused as `certgate resource add` refuses them.
 * Properties: a match is consistent (method, parameters, Allow), and the
 * same resource answers whatever the order the catalog lists them in.
 */
#include "config.h"

#include "fuzz.h"
#include "http/routes.h"

#define MAX_ENTRIES 16

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

static bool ident(const char *s)
{
    if (!(*s >= 'a' && *s <= 'z'))
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

static bool version_ok(const char *v)
{
    return !v[0] ||
           (v[0] == 'v' && v[1] && strlen(v) < 8 && strspn(v + 1, "0123456789") == strlen(v + 1));
}

static bool method_ok(const char *m)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(methods[i], m) == 0)
            return true;
    }
    return false;
}

static size_t count_params(const char *tmpl)
{
    size_t n = 0;

    for (const char *p = tmpl; *p; p++)
        n += *p == '{';
    return n;
}

/* Adds the resource on @p line as the CLI would, or nothing. */
static void add_resource(struct catalog *c, char *line, int64_t id)
{
    char *save = NULL, *f[6];
    struct dtable_resource *r;

    for (size_t i = 0; i < 6; i++) {
        f[i] = strtok_r(i ? NULL : line, " ", &save);
        if (!f[i])
            return;
    }
    if (strcmp(f[4], "-") == 0)
        f[4] = (char *)"";
    (void)routes_same_shape(f[5], f[5]);
    if (!method_ok(f[1]) || !ident(f[2]) || !ident(f[3]) || strcmp(f[2], "now") == 0 ||
        strcmp(f[2], "certgate") == 0 || !routes_valid_template(f[5]) || !version_ok(f[4]) ||
        (!f[4][0] && routes_looks_versioned(f[5])))
        return;
    FUZZ_ASSERT(routes_same_shape(f[5], f[5]), "'%s' has not its own shape", f[5]);
    for (size_t i = 0; i < c->n_resources; i++) {
        const struct dtable_resource *o = &c->resources[i];

        FUZZ_ASSERT(routes_same_shape(o->path, f[5]) == routes_same_shape(f[5], o->path),
                    "same shape is not symmetric: '%s' '%s'", o->path, f[5]);
        if (strcmp(o->ns, f[2]) == 0 && strcmp(o->api, f[3]) == 0 &&
            strcmp(o->version, f[4]) == 0 && strcmp(o->method, f[1]) == 0 &&
            routes_same_shape(o->path, f[5]))
            return;
    }
    r = &c->resources[c->n_resources++];
    r->id = id;
    r->method = f[1];
    r->ns = f[2];
    r->api = f[3];
    r->version = f[4];
    r->path = f[5];
    r->is_active = true;
}

static void add_table(struct catalog *c, char *line)
{
    static char *role[] = {(char *)"push"};
    char *name = line + 2;

    if (!dtable_valid_name(name))
        return;
    for (size_t i = 0; i < c->n_tables; i++) {
        if (strcmp(c->tables[i].name, name) == 0)
            return;
    }
    c->tables[c->n_tables].name = name;
    c->tables[c->n_tables].roles = line[0] == 'T' ? role : NULL;
    c->tables[c->n_tables++].n_roles = line[0] == 'T' ? 1 : 0;
}

static bool allow_lists(const char *allow, const char *method)
{
    size_t n = strlen(method);

    for (const char *p = strstr(allow, method); p; p = strstr(p + 1, method)) {
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    }
    return false;
}

static void check_match(const struct route_result *m, const char *method)
{
    switch (m->match) {
    case ROUTE_NONE:
        FUZZ_ASSERT(!m->allow[0] && !m->resource && !m->params, "no match carries data");
        break;
    case ROUTE_WRONG_METHOD:
        FUZZ_ASSERT(m->allow[0], "405 without Allow");
        FUZZ_ASSERT(!allow_lists(m->allow, method), "405 for %s with Allow: %s", method, m->allow);
        FUZZ_ASSERT(!m->params, "405 with parameters");
        break;
    case ROUTE_RESOURCE:
        FUZZ_ASSERT(m->resource && strcmp(m->resource->method, method) == 0,
                    "a resource of another method");
        FUZZ_ASSERT(!m->allow[0], "a match with Allow");
        FUZZ_ASSERT(json_object_size(m->params) == count_params(m->resource->path),
                    "%zu parameters for '%s'", json_object_size(m->params), m->resource->path);
        break;
    case ROUTE_TABLE:
        FUZZ_ASSERT(m->table && m->table->n_roles > 0, "an unexposed table");
        FUZZ_ASSERT(strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0, "table %s", method);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size), *save = NULL, *line, *method, *path;
    struct dtable_resource res[MAX_ENTRIES], rev[MAX_ENTRIES];
    struct dtable_table tables[MAX_ENTRIES];
    struct catalog c, r;
    struct route_result m1, m2;
    int64_t id = 0;

    memset(&c, 0, sizeof(c));
    memset(res, 0, sizeof(res));
    memset(tables, 0, sizeof(tables));
    c.resources = res;
    c.tables = tables;
    line = strtok_r(text, "\n", &save);
    if (!line || !strchr(line, ' ')) {
        free(text);
        return 0;
    }
    method = line;
    path = strchr(line, ' ');
    *path++ = '\0';
    /* A request line has a method, and target_check refuses a path that is
     * not text before routing. */
    if (!*method || !fuzz_is_utf8(path)) {
        free(text);
        return 0;
    }
    while ((line = strtok_r(NULL, "\n", &save)) && id < 4 * MAX_ENTRIES) {
        id++;
        if (line[0] == 'R' && line[1] == ' ' && c.n_resources < MAX_ENTRIES)
            add_resource(&c, line, id);
        else if ((line[0] == 'T' || line[0] == 't') && line[1] == ' ' && c.n_tables < MAX_ENTRIES)
            add_table(&c, line);
    }
    routes_match(&c, method, path, &m1);
    check_match(&m1, method);
    /* The catalog lists resources by id; the answer must not depend on it. */
    r = c;
    r.resources = rev;
    for (size_t i = 0; i < c.n_resources; i++)
        rev[i] = res[c.n_resources - 1 - i];
    routes_match(&r, method, path, &m2);
    FUZZ_ASSERT(m1.match == m2.match, "match %d, reversed %d", (int)m1.match, (int)m2.match);
    FUZZ_ASSERT(!m1.resource || m1.resource->id == m2.resource->id,
                "%s %s: resource %lld (%s) answers, reversed resource %lld (%s)", method, path,
                (long long)m1.resource->id, m1.resource->path, (long long)m2.resource->id,
                m2.resource->path);
    json_decref(m1.params);
    json_decref(m2.params);
    free(text);
    return 0;
}
