#include "config.h"
#include "db/sqlrows.h"

#include <stdlib.h>

#include "base/util.h"

int sqlrows_collect(sqlite3_stmt *st, size_t size, sqlrows_read_fn read, sqlrows_free_fn free_one,
                    void **out_rows, size_t *out_n)
{
    unsigned char *rows = NULL;
    size_t n = 0;
    int rc;

    *out_rows = NULL;
    *out_n = 0;
    for (;;) {
        unsigned char *grown;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        grown = realloc(rows, (n + 1) * size);
        if (!grown) {
            rc = CG_ENOMEM;
            goto fail;
        }
        rows = grown;
        rc = read(st, rows + n * size);
        if (rc)
            goto fail;
        n++;
    }
    if (rc != SQLITE_DONE) {
        rc = CG_EDB;
        goto fail;
    }
    *out_rows = rows;
    *out_n = n;
    return CG_OK;
fail:
    for (size_t i = 0; i < n; i++)
        free_one(rows + i * size);
    free(rows);
    return rc;
}
