#include "config.h"
#include "db/trust_data.h"

#include <stdlib.h>
#include <string.h>

void store_ca_free(struct store_ca *ca)
{
    if (!ca)
        return;
    free(ca->name);
    free(ca->subject);
    free(ca->issuer);
    free(ca->serial);
    free(ca->der);
    free(ca->pem);
    memset(ca, 0, sizeof(*ca));
}

void store_ca_list_free(struct store_ca *cas, size_t n)
{
    for (size_t i = 0; cas && i < n; i++)
        store_ca_free(&cas[i]);
    free(cas);
}

void store_crl_free(struct store_crl *crl)
{
    if (!crl)
        return;
    free(crl->issuer);
    free(crl->der);
    memset(crl, 0, sizeof(*crl));
}

void store_crl_list_free(struct store_crl *crls, size_t n)
{
    for (size_t i = 0; crls && i < n; i++)
        store_crl_free(&crls[i]);
    free(crls);
}

void store_ca_deleted_list_free(struct store_ca_deleted *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i].subject);
    free(list);
}

void store_user_free(struct store_user *user)
{
    if (!user)
        return;
    free(user->name);
    free(user->password_hash);
    cg_strv_free(user->roles, user->n_roles);
    memset(user, 0, sizeof(*user));
}

void store_user_list_free(struct store_user *users, size_t n)
{
    for (size_t i = 0; users && i < n; i++)
        store_user_free(&users[i]);
    free(users);
}

static const char *const kind_names[] = {
    [STORE_MAP_CERT] = "cert",
    [STORE_MAP_PINNED] = "pinned",
    [STORE_MAP_RULE] = "rule",
};

const char *store_map_kind_name(enum store_map_kind kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind]
                                                                       : "unknown";
}

void store_map_free(struct store_map *map)
{
    if (!map)
        return;
    free(map->user_name);
    free(map->name);
    free(map->subject);
    free(map->issuer);
    free(map->serial);
    free(map->der);
    free(map->match_field);
    free(map->match_value);
    memset(map, 0, sizeof(*map));
}

void store_map_list_free(struct store_map *maps, size_t n)
{
    for (size_t i = 0; maps && i < n; i++)
        store_map_free(&maps[i]);
    free(maps);
}
