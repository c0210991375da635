#include "config.h"
#include "engine/table_query.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A filter value from the query string, typed as the column compares it:
 * integers and reals as numbers, json columns as JSON (else as a string),
 * text as text. Unknown columns are left as text for the query to refuse
 * by name, and so is an integer out of range: strtoll would give the
 * nearest limit, a filter for another number (found by fuzz_table_query). */
static json_t *filter_value(const struct dtable_column *c, const char *val)
{
    char *end = NULL;

    if (c && c->type == DT_INTEGER && *val) {
        long long n;

        errno = 0;
        n = strtoll(val, &end, 10);
        if (!*end && errno != ERANGE)
            return json_integer(n);
    } else if (c && c->type == DT_REAL && *val) {
        double d = strtod(val, &end);

        if (!*end && isfinite(d))
            return json_real(d);
    } else if (c && c->type == DT_JSON) {
        json_error_t jerr;
        json_t *j = json_loads(val, JSON_DECODE_ANY, &jerr);

        if (j)
            return j;
    }
    return json_string(val);
}

int table_query_parse(const struct dtable_table *t, json_t *args, struct table_query *out_query,
                      char *detail, size_t detail_len)
{
    struct table_query *q = out_query;
    const char *key;
    json_t *v;

    q->limit = 100;
    q->offset = 0;
    q->filter = json_object();
    if (!q->filter)
        return CG_ENOMEM;
    json_object_foreach(args, key, v)
    {
        const char *val = json_string_value(v);
        char *end = NULL;

        if (!val)
            val = "";
        if (strcmp(key, "sysparm_limit") == 0 || strcmp(key, "sysparm_offset") == 0) {
            bool lim = key[8] == 'l';
            long n = strtol(val, &end, 10);

            if (!*val || *end || n < (lim ? 1 : 0) || n > (lim ? DTABLE_MAX_LIMIT : INT32_MAX)) {
                snprintf(detail, detail_len, "%s takes a whole number from %d to %ld", key,
                         lim ? 1 : 0, lim ? (long)DTABLE_MAX_LIMIT : (long)INT32_MAX);
                goto invalid;
            }
            if (lim)
                q->limit = n;
            else
                q->offset = n;
        } else if (strncmp(key, "sysparm_", 8) == 0) {
            snprintf(detail, detail_len,
                     "%.64s is not supported: use sysparm_limit, sysparm_offset and "
                     "COLUMN=VALUE filters",
                     key);
            goto invalid;
        } else {
            json_t *fv = filter_value(t ? dtable_column(t, key) : NULL, val);

            if (!fv) {
                snprintf(detail, detail_len, "a filter value is not valid UTF-8");
                goto invalid;
            }
            if (json_object_set_new(q->filter, key, fv)) {
                json_decref(q->filter);
                q->filter = NULL;
                return CG_ENOMEM;
            }
        }
    }
    return CG_OK;
invalid:
    json_decref(q->filter);
    q->filter = NULL;
    return CG_EINVAL;
}
