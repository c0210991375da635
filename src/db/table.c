#include "config.h"
#include "db/dtable_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static const char *const type_names[] = {"text", "integer", "real", "json"};

const char *dtable_type_name(enum dtable_type t)
{
    return (unsigned)t < 4 ? type_names[t] : "text";
}

int dtable_type_parse(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, type_names[i]) == 0)
            return i;
    }
    return -1;
}

bool dtable_valid_name(const char *name)
{
    size_t n = 0;

    if (!name || !(name[0] >= 'a' && name[0] <= 'z'))
        return false;
    for (; name[n]; n++) {
        char c = name[n];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') || n >= 63)
            return false;
    }
    /* rowid and oid would shadow SQLite's own row number, which orders records. */
    return strncmp(name, "sys_", 4) != 0 && strncmp(name, "sqlite_", 7) != 0 &&
           strcmp(name, "rowid") != 0 && strcmp(name, "oid") != 0;
}

void dtable_table_free(struct dtable_table *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->cols);
    cg_strv_free(t->roles, t->n_roles);
    memset(t, 0, sizeof(*t));
}

void dtable_table_list_free(struct dtable_table *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        dtable_table_free(&t[i]);
    free(t);
}

const struct dtable_column *dtable_column(const struct dtable_table *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++) {
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    }
    return NULL;
}

/* The columns a filter or record may name besides the admin's. */
const struct dtable_column sys_text_cols[3] = {
    {"sys_id", DT_TEXT},
    {"sys_created_on", DT_TEXT},
    {"sys_created_by", DT_TEXT},
};

/* The column @p name of @p t, the sys_ ones included when @p with_sys. */
const struct dtable_column *column(const struct dtable_table *t, const char *name, bool with_sys)
{
    const struct dtable_column *c = dtable_column(t, name);

    for (size_t i = 0; !c && with_sys && i < 3; i++) {
        if (strcmp(name, sys_text_cols[i].name) == 0)
            c = &sys_text_cols[i];
    }
    return c;
}

/* Whether @p v may be stored in column @p c (JSON null always may). */
static int check_value(const struct dtable_column *c, json_t *v, const char *table,
                       struct cg_err *err)
{
    bool ok;

    switch (c->type) {
    case DT_TEXT: ok = json_is_string(v) || json_is_null(v); break;
    case DT_INTEGER: ok = json_is_integer(v) || json_is_null(v); break;
    case DT_REAL: ok = json_is_number(v) || json_is_null(v); break;
    default: ok = true; break;
    }
    if (!ok)
        cg_err_set(err, "column '%s' of table '%s' takes %s values", c->name, table,
                   dtable_type_name(c->type));
    return ok ? CG_OK : CG_EINVAL;
}

/* The text a json column stores for @p v (malloc'd): compact, keys sorted,
 * so that equal values are equal texts and a filter can compare them. */
char *json_text(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

/* Whether each member of the object @p o names a column of @p t (the sys_
 * ones too when @p with_sys) and holds a value it may store. */
static int check_members(const struct dtable_table *t, json_t *o, bool with_sys, struct cg_err *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v)
    {
        const struct dtable_column *c = column(t, key, with_sys);

        if (!c) {
            cg_err_set(err, "unknown column '%s' in table '%s'", key, t->name);
            return CG_EINVAL;
        }
        if (check_value(c, v, t->name, err))
            return CG_EINVAL;
    }
    return CG_OK;
}

int dtable_check_record(const struct dtable_table *t, json_t *fields, struct cg_err *err)
{
    if (!json_is_object(fields)) {
        cg_err_set(err, "the record for table '%s' must be a JSON object", t->name);
        return CG_EINVAL;
    }
    return check_members(t, fields, false, err);
}

int dtable_check_filter(const struct dtable_table *t, json_t *filter, struct cg_err *err)
{
    if (!filter)
        return CG_OK;
    if (!json_is_object(filter)) {
        cg_err_set(err, "a query filter must be an object of column = value");
        return CG_EINVAL;
    }
    return check_members(t, filter, true, err);
}

json_t *dtable_new_row(const struct dtable_table *t, const char *sys_id, const char *created_on,
                       const char *created_by, json_t *fields)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "sys_id", sys_id, "sys_created_on", created_on,
                          "sys_created_by", created_by ? created_by : "");

    if (!o)
        return NULL;
    for (size_t c = 0; c < t->n_cols; c++)
        json_object_set_new(o, t->cols[c].name, json_null());
    if (dtable_merge_fields(t, o, fields)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int dtable_merge_fields(const struct dtable_table *t, json_t *row, json_t *fields)
{
    const char *key;
    json_t *v;

    json_object_foreach(fields, key, v)
    {
        const struct dtable_column *c = dtable_column(t, key);
        json_t *stored;

        if (!c)
            continue;
        /* What reading the row back would give: a real column holds reals,
         * a json column a copy of the value. */
        if (json_is_null(v))
            stored = json_null();
        else if (c->type == DT_REAL)
            stored = json_real(json_number_value(v));
        else if (c->type == DT_JSON)
            stored = json_deep_copy(v);
        else
            stored = json_incref(v);
        if (!stored || json_object_set_new(row, key, stored))
            return CG_ENOMEM;
    }
    return CG_OK;
}

/* Whether one stored value equals a filter value, as SQL `=` (or IS NULL)
 * compares them. */
static bool value_matches(const struct dtable_column *c, json_t *have, json_t *want)
{
    if (json_is_null(want))
        return !have || json_is_null(have);
    if (!have || json_is_null(have))
        return false;
    switch (c->type) {
    case DT_TEXT:
        return json_is_string(have) && json_string_length(have) == json_string_length(want) &&
               memcmp(json_string_value(have), json_string_value(want), json_string_length(want)) ==
                   0;
    case DT_INTEGER:
        return json_is_integer(have) && json_integer_value(have) == json_integer_value(want);
    case DT_REAL: return json_is_number(have) && json_number_value(have) == json_number_value(want);
    case DT_JSON: {
        char *a = json_text(have), *b = json_text(want);
        bool eq = a && b && strcmp(a, b) == 0;

        free(a);
        free(b);
        return eq;
    }
    }
    return false;
}

static bool row_matches(const struct dtable_table *t, json_t *row, json_t *filter, bool loose)
{
    const char *key;
    json_t *v;

    json_object_foreach(filter, key, v)
    {
        const struct dtable_column *c = column(t, key, true);

        if (!c)
            return loose;
        /* Loose: a json column, or a value kept only as `true` (unknown),
         * may match. */
        if (loose && (c->type == DT_JSON || json_is_true(json_object_get(row, key))))
            continue;
        if (!value_matches(c, json_object_get(row, key), v))
            return false;
    }
    return true;
}

bool dtable_row_matches(const struct dtable_table *t, json_t *row, json_t *filter)
{
    return row_matches(t, row, filter, false);
}

bool dtable_row_may_match(const struct dtable_table *t, json_t *row, json_t *filter)
{
    return row_matches(t, row, filter, true);
}
