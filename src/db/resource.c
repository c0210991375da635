#include "config.h"
#include "db/resource.h"

#include <stdlib.h>
#include <string.h>
static const char *const auth_names[] = {"any", "cert", "basic", "none"};

const char *dtable_auth_name(enum dtable_auth a)
{
    return (unsigned)a < 4 ? auth_names[a] : "any";
}

int dtable_auth_parse(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, auth_names[i]) == 0)
            return i;
    }
    return -1;
}

void dtable_resource_free(struct dtable_resource *r)
{
    if (!r)
        return;
    free(r->ns);
    free(r->api);
    free(r->version);
    free(r->method);
    free(r->path);
    free(r->script_name);
    free(r->script);
    cg_strv_free(r->roles, r->n_roles);
    memset(r, 0, sizeof(*r));
}

void dtable_resource_list_free(struct dtable_resource *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        dtable_resource_free(&r[i]);
    free(r);
}
