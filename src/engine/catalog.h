/*
 * catalog: the resources and data tables requests are routed to, loaded
 * from the database whenever its resource_version moves. A new catalog is
 * published with one atomic store, so routing reads it without a lock; a
 * replaced one is freed once no request holds it. Relies on dtable. Does
 * not route (that is routes) and does not write the database.
 */
#ifndef CG_CATALOG_H
#define CG_CATALOG_H

#include "engine/writer.h"

/** Frees a catalog and every catalog it replaced; NULL is allowed. */
void catalog_free_all(struct catalog *c);
/** Frees replaced catalogs no request holds any more (committer thread only). */
void catalog_reclaim(struct writer *w);
/** Loads a new catalog when the resource version moved. */
int catalog_refresh(struct writer *w, struct cg_err *err);
/** The data table named @p name, or NULL. */
const struct dtable_table *catalog_find_table(const struct catalog *c, const char *name);

#endif
