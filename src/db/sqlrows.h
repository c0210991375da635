/*
 * sqlrows: collects the rows of a prepared SQLite statement into a growing
 * array of records, for the storage modules (store, dtable). Relies on
 * SQLite. Does not prepare, bind or reset statements: the caller does.
 */
#ifndef CG_SQLROWS_H
#define CG_SQLROWS_H

#include <sqlite3.h>
#include <stddef.h>

/** Reads the current row into @p record; returns 0 or a negative status. */
typedef int (*sqlrows_read_fn)(sqlite3_stmt *st, void *record);
/** Frees the members of one record. */
typedef void (*sqlrows_free_fn)(void *record);

/**
 * Step @p st to the end, reading each row with @p read into an array of
 * records of @p size bytes.
 * @param out_rows malloc'd array (NULL when empty); on failure nothing is returned
 * @param out_n number of records
 * @return 0, CG_ENOMEM, CG_EDB (the step failed) or what @p read returned
 */
int sqlrows_collect(sqlite3_stmt *st, size_t size, sqlrows_read_fn read, sqlrows_free_fn free_one,
                    void **out_rows, size_t *out_n);

#endif
