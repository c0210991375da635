#include "config.h"
#include "engine/catalog.h"
#include "base/clock.h"

#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

/* A replaced catalog is freed when unused and replaced this long ago. */
#define CATALOG_GRACE_MS 60000
/* How often the version is read on PostgreSQL when nothing was announced. */
#define CATALOG_READ_MS 500

static void catalog_free_one(struct catalog *c)
{
    dtable_resource_list_free(c->resources, c->n_resources);
    dtable_table_list_free(c->tables, c->n_tables);
    free(c);
}

void catalog_free_all(struct catalog *c)
{
    while (c) {
        struct catalog *older = c->older;

        catalog_free_one(c);
        c = older;
    }
}

/* Frees replaced catalogs no request holds any more. Readers load the
 * current pointer and then take a reference; a catalog replaced less than
 * CATALOG_GRACE_MS ago is never freed, so that a reader between those two
 * steps is safe. Committer thread only. */
void catalog_reclaim(struct writer *w)
{
    struct catalog *c = __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE), *prev = c, *o;
    int64_t t = clock_ms();

    for (o = c ? c->older : NULL; o; o = prev->older) {
        if (__atomic_load_n(&o->refs, __ATOMIC_ACQUIRE) == 0 &&
            t - o->retired_ms > CATALOG_GRACE_MS) {
            prev->older = o->older;
            catalog_free_one(o);
        } else {
            prev = o;
        }
    }
}

/* Loads a new catalog when the resource version moved. */
int catalog_refresh(struct writer *w, struct cg_err *err)
{
    struct catalog *c, *old = __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE);
    struct dtable_resource *all = NULL;
    size_t n_all = 0, n = 0;
    int64_t v = 0;
    int rc;

    /* PostgreSQL announces changes: the version (a round trip) is read
     * when one came, and every CATALOG_READ_MS in case a pooler dropped
     * it; SQLite's is a local read, every time. */
    if (old && dtable_resource_announced(w->db) == 0 &&
        clock_ms() - w->catalog_read_ms < CATALOG_READ_MS)
        return CG_OK;
    w->catalog_read_ms = clock_ms();
    rc = dtable_resource_version(w->db, &v);
    if (rc) {
        cg_err_set(err, "cannot read the resource version");
        return rc;
    }
    if (old && old->version == v)
        return CG_OK;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->version = v;
    rc = dtable_resource_list(w->db, &all, &n_all, err);
    if (rc == CG_OK)
        rc = dtable_table_list(w->db, &c->tables, &c->n_tables, err);
    if (rc) {
        dtable_resource_list_free(all, n_all);
        catalog_free_one(c);
        return rc;
    }
    c->resources = calloc(n_all ? n_all : 1, sizeof(*c->resources));
    if (!c->resources) {
        dtable_resource_list_free(all, n_all);
        catalog_free_one(c);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n_all; i++) {
        if (all[i].is_active)
            c->resources[n++] = all[i];
        else
            dtable_resource_free(&all[i]);
    }
    free(all);
    c->n_resources = n;
    c->older = old;
    if (old)
        old->retired_ms = clock_ms();
    __atomic_store_n(&w->cur, c, __ATOMIC_RELEASE);
    return CG_OK;
}

const struct catalog *writer_catalog(struct writer *w)
{
    return __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE);
}

struct catalog *writer_catalog_acquire(struct writer *w)
{
    struct catalog *c = __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE);

    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    return c;
}

void writer_catalog_release(struct catalog *c)
{
    if (c)
        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
}

const struct dtable_table *catalog_find_table(const struct catalog *c, const char *name)
{
    for (size_t i = 0; i < c->n_tables; i++) {
        if (strcmp(c->tables[i].name, name) == 0)
            return &c->tables[i];
    }
    return NULL;
}
