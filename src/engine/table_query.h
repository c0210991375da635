/*
 * table_query: turns the query arguments of a Table API list request
 * (GET /api/now/table/{table}?sysparm_limit=..&COLUMN=VALUE) into its limit,
 * offset and a filter whose values are typed as the table's columns compare
 * them. Pure C over jansson and the table's definition from dtable. Does not
 * check the filter against the table (dtable_check_filter does, when the
 * query runs) and does not read the database.
 */
#ifndef CG_TABLE_QUERY_H
#define CG_TABLE_QUERY_H

#include <jansson.h>
#include <stddef.h>

#include "db/dtable.h"

/** A list request, as its query arguments give it. */
struct table_query {
    long limit;     /* sysparm_limit, 100 when absent */
    long offset;    /* sysparm_offset, 0 when absent */
    json_t *filter; /* object of column -> value (owned) */
};

/**
 * Read a list request from its query arguments.
 * @param t the table; a column it does not have is kept as text, for the
 *          query to refuse by name
 * @param args object of argument name -> string value (NULL: none)
 * @param out_query filled on CG_OK (free out_query->filter with json_decref)
 * @param detail on CG_EINVAL, the detail of the 400
 * @param detail_len its size
 * @return CG_OK, CG_EINVAL (a sysparm_ argument is wrong), CG_ENOMEM
 */
int table_query_parse(const struct dtable_table *t, json_t *args, struct table_query *out_query,
                      char *detail, size_t detail_len);

#endif
