/*
 * router: the one table of what answers where: certgate's own endpoints
 * below, then the catalog's scripted resources and the Table API
 * (routes.c matches those). Every 404 and 405, with its Allow header, is
 * decided here; stage_route answers the ones outside /api/ at once, and
 * authorise answers those under /api/ after authentication.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <string.h>

#include "base/metrics.h"

/* An endpoint of certgate's own. */
struct builtin_route {
    const char *path;   /* exact path */
    const char *method; /* GET also answers HEAD */
    bool is_public;     /* no authentication */
    const char *role;   /* role required, NULL: any authenticated user */
    handler_fn handler; /* what it does */
};

/* certgate's own endpoints; the catalog's routes come after them. */
static const struct builtin_route builtins[] = {
    /* Liveness, no authentication. */
    {.path = "/healthz", .method = "GET", .is_public = true, .handler = healthz_handle},
    /* The caller's identity: user, roles, how it authenticated, certificate facts. */
    {.path = "/api/certgate/v1/whoami", .method = "GET", .handler = whoami_handle},
    /* Trust data summary for operators. */
    {.path = "/api/certgate/v1/admin/trust",
     .method = "GET",
     .role = "certgate_admin",
     .handler = admin_trust_handle},
};

/* A built-in path asked for with another method adds its methods to Allow. */
static bool match_builtin(struct request *r, struct route_hit *out)
{
    bool is_head = strcmp(r->method, "HEAD") == 0, seen = false;

    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        const struct builtin_route *b = &builtins[i];
        bool is_get = strcmp(b->method, "GET") == 0;
        size_t len = strlen(out->allow);

        if (strcmp(b->path, r->path) != 0)
            continue;
        if (strcmp(b->method, r->method) == 0 || (is_get && is_head)) {
            out->kind = ROUTE_KIND_BUILTIN;
            out->is_public = b->is_public;
            out->role = b->role;
            out->handler = b->handler;
            return true;
        }
        seen = true;
        snprintf(out->allow + len, sizeof(out->allow) - len, "%s%s%s", len ? ", " : "", b->method,
                 is_get ? ", HEAD" : "");
    }
    if (seen)
        out->kind = ROUTE_KIND_WRONG_METHOD;
    return seen;
}

/* The catalog: scripted resources and the Table API. HEAD is answered
 * where GET is (libmicrohttpd drops the body); a script sees the method as
 * sent. */
static void match_catalog(struct request *r, struct route_hit *out)
{
    struct http_server *srv = r->conn->srv;

    if (!srv->writer)
        return;
    r->cat = writer_catalog_acquire(srv->writer);
    routes_match(r->cat, strcmp(r->method, "HEAD") == 0 ? "GET" : r->method, r->path, &out->dyn);
    switch (out->dyn.match) {
    case ROUTE_NONE: break;
    case ROUTE_WRONG_METHOD:
        out->kind = ROUTE_KIND_WRONG_METHOD;
        snprintf(out->allow, sizeof(out->allow), "%s", out->dyn.allow);
        break;
    case ROUTE_RESOURCE:
        out->kind = ROUTE_KIND_SCRIPT;
        out->is_public = out->dyn.resource->auth == DT_AUTH_NONE;
        out->handler = scripted_handle;
        break;
    case ROUTE_TABLE:
        out->kind = ROUTE_KIND_TABLE;
        out->handler = table_api_handle;
        break;
    }
}

enum stage stage_route(struct request *r)
{
    struct route_hit *h = &r->route;
    bool under_api = strncmp(r->path, "/api/", 5) == 0;

    h->kind = ROUTE_KIND_NONE;
    if (match_builtin(r, h) && h->kind == ROUTE_KIND_BUILTIN)
        return STAGE_NEXT;
    if (!under_api) {
        if (h->kind == ROUTE_KIND_WRONG_METHOD)
            return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                                h->allow);
        return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
    }
    /* A built-in path with another method keeps its own Allow. */
    if (h->kind == ROUTE_KIND_NONE)
        match_catalog(r, h);
    return STAGE_NEXT;
}

struct metrics_endpoint route_endpoint(const struct dtable_resource *res)
{
    return (struct metrics_endpoint){res->id,  res->method,  res->ns,
                                     res->api, res->version, res->path};
}

uint64_t route_metrics_slot(const struct route_hit *h)
{
    struct metrics_endpoint e;

    switch (h->kind) {
    case ROUTE_KIND_BUILTIN: return METRICS_SLOT_BUILTIN;
    case ROUTE_KIND_SCRIPT: e = route_endpoint(h->dyn.resource); return metrics_resource_slot(&e);
    case ROUTE_KIND_TABLE: return METRICS_SLOT_TABLE_API;
    default: return METRICS_SLOT_NONE;
    }
}
