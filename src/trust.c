#include "config.h"
#include "trust.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the holder looks for changes made by the CLI. */
#define POLL_MS 200

static void snapshot_free(struct trust_snapshot *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->pki.n_cas; i++)
        pki_cert_free(&snap->pki.cas[i].cert);
    free(snap->pki.cas);
    for (size_t i = 0; i < snap->pki.n_crls; i++)
        pki_crl_free(&snap->pki.crls[i].crl);
    free(snap->pki.crls);
    for (size_t i = 0; i < snap->n_users; i++) {
        free(snap->users[i].name);
        free(snap->users[i].password_hash);
        cg_strv_free(snap->users[i].roles, snap->users[i].n_roles);
    }
    free(snap->users);
    store_map_list_free(snap->maps, snap->n_maps);
    free(snap);
}

void trust_release(struct trust_snapshot *snap)
{
    if (snap && __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) == 0)
        snapshot_free(snap);
}

static int load_cas(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_ca *cas = NULL;
    size_t n = 0;
    int rc = store_ca_list(s, &cas, &n, err);

    if (rc)
        return rc;
    snap->pki.cas = calloc(n ? n : 1, sizeof(*snap->pki.cas));
    if (!snap->pki.cas) {
        store_ca_list_free(cas, n);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct pki_trust_ca *t = &snap->pki.cas[snap->pki.n_cas];

        /* A record that no longer parses cannot anchor anything: skip it. */
        if (pki_cert_from_der(cas[i].der, cas[i].der_len, &t->cert))
            continue;
        t->id = cas[i].id;
        t->is_active = cas[i].is_active;
        snap->pki.n_cas++;
    }
    store_ca_list_free(cas, n);
    return CG_OK;
}

static int load_crls(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_crl *crls = NULL;
    size_t n = 0;
    int rc = store_crl_list(s, &crls, &n, err);

    if (rc)
        return rc;
    snap->pki.crls = calloc(n ? n : 1, sizeof(*snap->pki.crls));
    if (!snap->pki.crls) {
        store_crl_list_free(crls, n);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct pki_trust_crl *t = &snap->pki.crls[snap->pki.n_crls];

        if (pki_parse_crl((const char *)crls[i].der, crls[i].der_len, &t->crl, NULL))
            continue;
        t->ca_id = crls[i].ca_id;
        snap->pki.n_crls++;
    }
    store_crl_list_free(crls, n);
    return CG_OK;
}

static int load_users(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_user *users = NULL;
    size_t n = 0;
    int rc = store_user_list(s, &users, &n, err);

    if (rc)
        return rc;
    snap->users = calloc(n ? n : 1, sizeof(*snap->users));
    if (!snap->users) {
        store_user_list_free(users, n);
        return CG_ENOMEM;
    }
    /* Move the strings over; store_user_list returns them sorted by name. */
    for (size_t i = 0; i < n; i++) {
        struct trust_user *u = &snap->users[i];

        u->id = users[i].id;
        u->name = users[i].name;
        u->is_active = users[i].is_active;
        u->is_locked = users[i].is_locked;
        u->password_hash = users[i].password_hash;
        u->roles = users[i].roles;
        u->n_roles = users[i].n_roles;
        memset(&users[i], 0, sizeof(users[i]));
    }
    snap->n_users = n;
    store_user_list_free(users, n);
    return CG_OK;
}

int trust_load(struct store *s, struct trust_snapshot **out_snap, struct cg_err *err)
{
    struct trust_snapshot *snap = NULL;
    int64_t before = 0, after = 0;
    int rc = CG_OK;

    /* Read the version before and after, and retry when the CLI changed
     * something in between, so version and data always agree. */
    for (int attempt = 0; attempt < 5; attempt++) {
        snapshot_free(snap);
        snap = calloc(1, sizeof(*snap));
        if (!snap)
            return CG_ENOMEM;
        rc = store_trust_version(s, &before);
        if (rc == CG_OK)
            rc = load_cas(s, snap, err);
        if (rc == CG_OK)
            rc = load_crls(s, snap, err);
        if (rc == CG_OK)
            rc = load_users(s, snap, err);
        if (rc == CG_OK)
            rc = store_map_list(s, NULL, &snap->maps, &snap->n_maps, err);
        if (rc == CG_OK)
            rc = store_trust_version(s, &after);
        if (rc)
            break;
        if (before == after)
            break;
    }
    if (rc) {
        snapshot_free(snap);
        return rc;
    }
    snap->version = after;
    snap->refs = 1;
    *out_snap = snap;
    return CG_OK;
}

const struct trust_user *trust_find_user(const struct trust_snapshot *snap, const char *name)
{
    size_t lo = 0, hi = snap->n_users;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(snap->users[mid].name, name);

        if (c == 0)
            return &snap->users[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct trust_user *trust_find_user_id(const struct trust_snapshot *snap, int64_t id)
{
    for (size_t i = 0; i < snap->n_users; i++) {
        if (snap->users[i].id == id)
            return &snap->users[i];
    }
    return NULL;
}
