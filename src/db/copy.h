/*
 * copy: `certgate db copy`: an SQLite database copied into an empty
 * PostgreSQL one (trust data, resources, data tables with their rows,
 * idempotency keys), in one transaction on the target, ids, timestamps and
 * insertion order kept. Part of the storage interface (db.h). Does not
 * delete anything on either side and does not copy into a database that
 * holds certgate data already.
 */
#ifndef CG_COPY_H
#define CG_COPY_H

#include <stdint.h>

#include "base/util.h"

/** What db_copy copied, by kind. */
struct db_copy_counts {
    int64_t cas;         /* sys_ca_certificate records */
    int64_t ca_deleted;  /* deleted CA keys */
    int64_t crls;        /* CRLs */
    int64_t users;       /* users */
    int64_t roles;       /* user-role pairs */
    int64_t mappings;    /* user-to-certificate mappings and rules */
    int64_t resources;   /* scripted resources */
    int64_t idempotency; /* stored Idempotency-Key answers */
    int64_t tables;      /* data tables */
    int64_t rows;        /* their rows, all together */
};

/**
 * Copy the SQLite database @p from (current schema) into the PostgreSQL
 * database @p to (a URI), creating the schema there when it has none.
 * @param out what was copied (on CG_OK)
 * @return CG_OK; CG_EINVAL (@p from is no SQLite path or @p to no URI);
 *         CG_EEXIST (the target holds certgate data: nothing copied, the
 *         message says what it holds); CG_ENOTFOUND, CG_EVERSION, CG_EDB
 *         (nothing committed)
 */
int db_copy(const char *from, const char *to, struct db_copy_counts *out, struct cg_err *err);

#endif
