/*
 * routes: matches a request path against the scripted resources of the
 * catalog (/api/{namespace}/{api}[/{version}]/{path} with {param} segments)
 * and the Table API (/api/now/table/{table}[/{sys_id}]). Pure C over the
 * catalog; relies on writer's catalog type and jansson for parameters. Does
 * not authenticate or run anything.
 */
#ifndef CG_ROUTES_H
#define CG_ROUTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/writer.h"

/** Result of matching. */
enum route_match {
    ROUTE_NONE,         /* nothing answers at this path */
    ROUTE_WRONG_METHOD, /* something answers at this path, for other methods (see allow) */
    ROUTE_RESOURCE,     /* a scripted resource */
    ROUTE_TABLE,        /* the Table API */
};

/** What matched. */
struct route_result {
    enum route_match match;                 /* see above */
    const struct dtable_resource *resource; /* ROUTE_RESOURCE */
    json_t *params;                         /* ROUTE_RESOURCE: {param: value} (owned) */
    const struct dtable_table *table;       /* ROUTE_TABLE */
    char sys_id[64];                        /* ROUTE_TABLE: record id, "" for the list */
    char allow[64];                         /* ROUTE_WRONG_METHOD: "GET, POST" */
};

/**
 * Match @p method and @p path.
 * @param out the result (free out->params with json_decref)
 */
void routes_match(const struct catalog *c, const char *method, const char *path,
                  struct route_result *out);

/**
 * Whether a resource template is valid: starts with '/', segments of
 * [A-Za-z0-9._~-] or one {name} each, no name twice.
 */
bool routes_valid_template(const char *tmpl);

/**
 * Whether two templates answer exactly the same paths (parameters in the
 * same places, the same literal segments), whatever the parameter names.
 */
bool routes_same_shape(const char *a, const char *b);

/** Whether a template's first segment looks like a version ("/v1/..."). */
bool routes_looks_versioned(const char *tmpl);

#endif
