/*
 * authz: the authorise stage. Once the caller is known it answers what the
 * router left open under /api/ (404, 405 with Allow: strangers get the 401
 * first and learn nothing of the routes), then checks what the route asks
 * of the caller: a resource's --auth method and roles, a built-in
 * endpoint's role. Does not authenticate (authn.c) or run anything.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/utf8.h"

/* The refusal of an authenticated caller that lacks a role; @p detail
 * names what was required. */
enum stage refuse_missing_role(struct request *r, const char *detail)
{
    json_t *o;

    metrics_refusal(AUTH_ROLE_MISSING);
    r->reason = auth_reason_code(AUTH_ROLE_MISSING);
    o = json_pack("{s:s, s:s, s:s, s:s}", "request_id", r->id, "remote", r->conn->remote, "reason",
                  r->reason, "detail", detail);
    if (o && r->who)
        json_object_set_new(o, "user", utf8_json(r->who->user));
    log_event("auth_refused", o);
    return respond_error(r, CG_ERROR_NOT_AUTHORIZED, detail);
}

/* A resource or table open to any one of @p n roles. */
static enum stage require_any_role(struct request *r, char *const *roles, size_t n)
{
    char detail[200];
    size_t len;

    if (identity_has_any_role(r->who, roles, n))
        return STAGE_NEXT;
    len = (size_t)snprintf(detail, sizeof(detail), "one of these roles is required: ");
    for (size_t i = 0; i < n && len < sizeof(detail); i++)
        len +=
            (size_t)snprintf(detail + len, sizeof(detail) - len, "%s%s", i ? ", " : "", roles[i]);
    return refuse_missing_role(r, detail);
}

/* Whether the identity's method suits a resource's --auth. */
static enum stage require_auth_method(struct request *r, enum dtable_auth mode)
{
    struct identity id;

    memset(&id, 0, sizeof(id));
    if (mode == DT_AUTH_CERT && r->who->method != AUTH_METHOD_CERT) {
        id.reason = AUTH_CERT_REQUIRED;
        snprintf(id.detail, sizeof(id.detail),
                 "this resource requires a client certificate; "
                 "HTTP Basic is not accepted here");
        return refuse_auth(r, &id);
    }
    if (mode == DT_AUTH_BASIC && r->who->method != AUTH_METHOD_BASIC) {
        id.reason = AUTH_NO_CREDENTIALS;
        snprintf(id.detail, sizeof(id.detail), "this resource takes HTTP Basic credentials");
        return refuse_auth(r, &id);
    }
    return STAGE_NEXT;
}

enum stage stage_authorise(struct request *r)
{
    const struct route_hit *h = &r->route;
    const struct dtable_resource *res = h->dyn.resource;
    char detail[160];
    char *role;

    switch (h->kind) {
    case ROUTE_KIND_NONE: return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
    case ROUTE_KIND_WRONG_METHOD:
        return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                            h->allow);
    case ROUTE_KIND_BUILTIN:
        role = (char *)h->role;
        if (!role || identity_has_any_role(r->who, &role, 1))
            return STAGE_NEXT;
        snprintf(detail, sizeof(detail), "the role '%s' is required", role);
        return refuse_missing_role(r, detail);
    case ROUTE_KIND_SCRIPT:
        /* A public resource has no caller to check. */
        if (!r->who)
            return STAGE_NEXT;
        if (require_auth_method(r, res->auth) != STAGE_NEXT)
            return STAGE_ANSWERED;
        return require_any_role(r, res->roles, res->n_roles);
    case ROUTE_KIND_TABLE: return require_any_role(r, h->dyn.table->roles, h->dyn.table->n_roles);
    }
    return respond_error(r, CG_ERROR_INTERNAL, r->id);
}
