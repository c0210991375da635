/*
 * table: the data tables admins create (records with sys_id, sys_created_on,
 * sys_created_by): their definitions, the rules a record and a filter obey,
 * and the operations on tables and records. Relies on jansson (records are
 * JSON objects). Does not decide who may call what.
 */
#ifndef CG_TABLE_H
#define CG_TABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct dtable_db;

/** Column types of a data table. */
enum dtable_type {
    DT_TEXT,    /* UTF-8 string */
    DT_INTEGER, /* 64-bit integer */
    DT_REAL,    /* double */
    DT_JSON,    /* any JSON value, stored as compact text */
};

/** A column of a data table. */
struct dtable_column {
    char name[64];         /* validated name */
    enum dtable_type type; /* its type */
};

/** A data table's definition. */
struct dtable_table {
    int64_t id;                 /* sys_db_table id */
    char *name;                 /* validated name */
    struct dtable_column *cols; /* admin's columns (the sys_ ones not included) */
    size_t n_cols;              /* count */
    char **roles;               /* roles of the Table API; none: not exposed */
    size_t n_roles;             /* count */
    char created_on[21];        /* ISO 8601 */
};

/** Name of a type ("text", ...), and the reverse (-1 when unknown). */
const char *dtable_type_name(enum dtable_type t);
int dtable_type_parse(const char *name);
/**
 * Whether @p name may name a table or column: [a-z][a-z0-9_]{0,62}, not
 * starting with sys_ or sqlite_.
 */
bool dtable_valid_name(const char *name);

/* ---- tables ---- */

/**
 * Create a data table and register it, in one transaction.
 * @return CG_OK, CG_EINVAL (bad name, column or type), CG_EEXIST, CG_EDB
 */
int dtable_table_create(struct dtable_db *db, const char *name, const struct dtable_column *cols,
                        size_t n_cols, char *const *roles, size_t n_roles, struct cg_err *err);
/** All tables, by name. */
int dtable_table_list(struct dtable_db *db, struct dtable_table **out_tables, size_t *out_n,
                      struct cg_err *err);
/** One table. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_table_get(struct dtable_db *db, const char *name, struct dtable_table *out_table,
                     struct cg_err *err);
/** Rows in a table. */
int dtable_table_count(struct dtable_db *db, const char *name, int64_t *out_n, struct cg_err *err);
/** Drop a table and its registry row. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_table_drop(struct dtable_db *db, const char *name, struct cg_err *err);
void dtable_table_free(struct dtable_table *t);
void dtable_table_list_free(struct dtable_table *t, size_t n);
/** The column named @p name, or NULL. */
const struct dtable_column *dtable_column(const struct dtable_table *t, const char *name);

/* ---- records ---- */

/** Most records one query returns. */
#define DTABLE_MAX_LIMIT 1000

/**
 * Whether @p fields (a JSON object of column -> value) may be written to
 * @p t: known columns, values of the column's type (null always).
 * @return CG_OK or CG_EINVAL with the message naming the column
 */
int dtable_check_record(const struct dtable_table *t, json_t *fields, struct cg_err *err);
/**
 * Whether @p filter (NULL, or an object of column -> value; sys_id,
 * sys_created_on and sys_created_by included) may query @p t.
 * @return CG_OK or CG_EINVAL
 */
int dtable_check_filter(const struct dtable_table *t, json_t *filter, struct cg_err *err);
/**
 * The record as reading it back would give it, for a row not yet written:
 * the sys_ columns, every column (null when absent), @p fields merged.
 * @return a new JSON object, or NULL when out of memory
 */
json_t *dtable_new_row(const struct dtable_table *t, const char *sys_id, const char *created_on,
                       const char *created_by, json_t *fields);
/** Merge checked @p fields into @p row as they would be stored. @return CG_OK or CG_ENOMEM */
int dtable_merge_fields(const struct dtable_table *t, json_t *row, json_t *fields);
/** Whether @p row has every column = value of @p filter (null: IS NULL), as a query compares. */
bool dtable_row_matches(const struct dtable_table *t, json_t *row, json_t *filter);
/**
 * dtable_row_matches, except that json columns, and values given as JSON
 * true in a text, integer or real column (unknown), always match (for
 * conflict checks, which may over-approximate).
 */
bool dtable_row_may_match(const struct dtable_table *t, json_t *row, json_t *filter);

/**
 * Insert a record with the given sys_ values (the caller made them).
 * @return CG_OK, CG_EINVAL (unknown column, wrong type: the message names it), CG_EDB
 */
int dtable_insert_row(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                      const char *created_on, const char *created_by, json_t *fields,
                      struct cg_err *err);
/**
 * Insert a record. @p fields is a JSON object of column → value.
 * @param out_sys_id the new UUID v4
 * @return CG_OK, CG_EINVAL (unknown column, wrong type: the message names it), CG_EDB
 */
int dtable_insert(struct dtable_db *db, const struct dtable_table *t, json_t *fields,
                  const char *user, char out_sys_id[37], struct cg_err *err);
/** Update columns of a record (none: only check it exists). @return CG_OK, CG_ENOTFOUND, CG_EINVAL,
 * CG_EDB */
int dtable_update(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t *fields, struct cg_err *err);
/** A record as a JSON object. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int dtable_get(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
               json_t **out_record, struct cg_err *err);
/** dtable_get, also giving the record's rowid (insertion order) when @p out_rowid is set. */
int dtable_get_ex(struct dtable_db *db, const struct dtable_table *t, const char *sys_id,
                  json_t **out_record, int64_t *out_rowid, struct cg_err *err);
/**
 * Records whose columns equal @p filter's values (NULL: all; a null value
 * means IS NULL), in insertion order; @p limit is clamped to 1..DTABLE_MAX_LIMIT.
 * @return CG_OK, CG_EINVAL (unknown column, wrong type), CG_EDB
 */
int dtable_query(struct dtable_db *db, const struct dtable_table *t, json_t *filter, long limit,
                 long offset, json_t **out_array, struct cg_err *err);
/**
 * dtable_query with more control.
 * @param exclude NULL or a JSON array of sys_ids left out
 * @param limit exact LIMIT
 * @param max_bytes 0, or the largest result: beyond it CG_EINVAL says to ask for fewer
 * @param out_rowids NULL, or a JSON array of the records' rowids, in the same order
 */
int dtable_query_ex(struct dtable_db *db, const struct dtable_table *t, json_t *filter,
                    json_t *exclude, long limit, long offset, size_t max_bytes, json_t **out_array,
                    json_t **out_rowids, struct cg_err *err);

#endif
