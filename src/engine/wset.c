#include "config.h"
#include "engine/wset.h"
#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"
#include "base/util.h"
#include "engine/engine_int.h"

/* Committed writes are kept this long, and at most this many, to check
 * later commits against (a run whose snapshot is older is redone). */
#define LOG_KEEP_MS 30000
#define LOG_MAX_ENTRIES 50000
/* Longest text value a kept write holds; longer ones count as "may match". */
#define LOG_TEXT_MAX 256

void wset_free(struct writer_wset *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->n_ops; i++) {
        json_decref(ws->ops[i].fields);
        json_decref(ws->ops[i].row);
    }
    for (size_t i = 0; i < ws->n_reads; i++)
        json_decref(ws->reads[i].filter);
    free(ws->ops);
    free(ws->reads);
    free(ws);
}

struct wop *wset_add_op(struct writer_wset *ws)
{
    if (ws->n_ops == ws->cap_ops) {
        size_t cap = ws->cap_ops ? ws->cap_ops * 2 : 8;
        struct wop *o = realloc(ws->ops, cap * sizeof(*o));

        if (!o)
            return NULL;
        ws->ops = o;
        ws->cap_ops = cap;
    }
    memset(&ws->ops[ws->n_ops], 0, sizeof(ws->ops[0]));
    return &ws->ops[ws->n_ops++];
}

int wset_add_read(struct writer_wset *ws, const struct dtable_table *t, const char *sys_id,
                  json_t *filter)
{
    struct rpred *r;

    if (ws->n_reads == ws->cap_reads) {
        size_t cap = ws->cap_reads ? ws->cap_reads * 2 : 8;
        struct rpred *n = realloc(ws->reads, cap * sizeof(*n));

        if (!n)
            return CG_ENOMEM;
        ws->reads = n;
        ws->cap_reads = cap;
    }
    r = &ws->reads[ws->n_reads++];
    r->t = t;
    snprintf(r->sys_id, sizeof(r->sys_id), "%s", sys_id ? sys_id : "");
    r->filter = filter && json_object_size(filter) ? json_deep_copy(filter) : NULL;
    return CG_OK;
}

struct wop *wset_find(struct writer_wset *ws, const struct dtable_table *t, const char *sys_id)
{
    for (size_t i = 0; ws && i < ws->n_ops; i++) {
        if (ws->ops[i].t == t && strcmp(ws->ops[i].sys_id, sys_id) == 0)
            return &ws->ops[i];
    }
    return NULL;
}

void lbatch_truncate(struct lbatch *b, size_t n)
{
    while (b->n > n) {
        b->n--;
        json_decref(b->e[b->n].before);
        json_decref(b->e[b->n].after);
    }
}

void lbatch_free(struct lbatch *b)
{
    if (!b)
        return;
    lbatch_truncate(b, 0);
    free(b->e);
    free(b);
}

/* What a kept write needs of a record for the conflict checks: no json
 * columns (they always count as a possible match) and no long texts (kept as
 * `true`, which also does), so the log stays small. Takes @p row. */
static json_t *log_image(const struct dtable_table *t, json_t *row)
{
    json_t *img;

    if (!row)
        return NULL;
    img = json_object();
    for (size_t k = 0; img && k < 3; k++) {
        static const char *const sys[] = {"sys_id", "sys_created_on", "sys_created_by"};

        json_object_set(img, sys[k], json_object_get(row, sys[k]));
    }
    for (size_t c = 0; img && c < t->n_cols; c++) {
        json_t *v = json_object_get(row, t->cols[c].name);

        if (!v || t->cols[c].type == DT_JSON)
            continue;
        if (json_is_string(v) && json_string_length(v) > LOG_TEXT_MAX)
            v = json_true();
        else
            json_incref(v);
        json_object_set_new(img, t->cols[c].name, v);
    }
    json_decref(row);
    return img;
}

/* Records a write; the batch takes the references. */
int lbatch_add(struct lbatch *b, const struct dtable_table *t, const char *sys_id, json_t *before,
               json_t *after)
{
    const char *table = t->name;
    struct lentry *e;

    before = log_image(t, before);
    after = log_image(t, after);

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4; /* most batches are small */
        struct lentry *n = realloc(b->e, cap * sizeof(*n));

        if (!n) {
            json_decref(before);
            json_decref(after);
            return CG_ENOMEM;
        }
        b->e = n;
        b->cap = cap;
    }
    e = &b->e[b->n++];
    /* Bounded copies without snprintf's formatting: once per write, on the
     * committer's thread (snprintf here was 0.8% of a keep-alive push). */
    cg_strlcpy(e->table, table, sizeof(e->table));
    cg_strlcpy(e->sys_id, sys_id, sizeof(e->sys_id));
    e->before = before;
    e->after = after;
    return CG_OK;
}

/* Whether a committed (or earlier in this batch) write touched what the
 * job read: a record it read, or a record a query of it did (or now
 * would) return. Over-approximates (json columns always count). */
static bool touches(const struct lentry *e, const struct rpred *r)
{
    if (strcmp(e->table, r->t->name) != 0)
        return false;
    if (r->sys_id[0])
        return strcmp(e->sys_id, r->sys_id) == 0;
    if (!r->filter)
        return true;
    return (e->before && dtable_row_may_match(r->t, e->before, r->filter)) ||
           (e->after && dtable_row_may_match(r->t, e->after, r->filter));
}

static bool batch_conflicts(const struct lbatch *b, const struct writer_wset *ws)
{
    for (size_t i = 0; i < b->n; i++) {
        for (size_t k = 0; k < ws->n_reads; k++) {
            if (touches(&b->e[i], &ws->reads[k]))
                return true;
        }
    }
    return false;
}

bool wset_conflicts(struct writer *w, const struct writer_job *job)
{
    const struct writer_wset *ws = job->ws;

    /* A run that writes nothing is serializable at its snapshot. */
    if (!ws || ws->n_reads == 0 || ws->n_ops == 0)
        return false;
    if (job->snap_seq < w->log_floor)
        return true;
    for (const struct lbatch *b = w->log_old; b; b = b->next) {
        if (b->seq > job->snap_seq && batch_conflicts(b, ws))
            return true;
    }
    return batch_conflicts(w->pending, ws);
}

/*
 * The newest commit every run in flight already sees (lock held): a batch
 * up to it is in every such run's snapshot, so none can conflict with it.
 * A run still on a script thread has its snapshot from the commit count
 * when it was taken or later (floor); a run waiting for the committer
 * has its own; a run not yet taken will see everything committed.
 */
static int64_t oldest_snapshot(const struct writer *w)
{
    int64_t oldest = __atomic_load_n(&w->seq, __ATOMIC_ACQUIRE);

    for (unsigned i = 0; i < w->n_execs; i++) {
        if (w->execs[i].running != -1 && w->execs[i].floor < oldest)
            oldest = w->execs[i].floor;
    }
    for (const struct writer_job *j = w->head; j; j = j->next) {
        if (j->ws && j->ws->snapshot && j->snap_seq < oldest)
            oldest = j->snap_seq;
    }
    return oldest;
}

void wset_log_prune(struct writer *w)
{
    int64_t t = clock_ms(), seen;

    pthread_mutex_lock(&w->lock);
    seen = oldest_snapshot(w);
    pthread_mutex_unlock(&w->lock);
    while (w->log_old && (w->log_old->seq <= seen || t - w->log_old->when_ms > LOG_KEEP_MS ||
                          w->log_entries > LOG_MAX_ENTRIES)) {
        struct lbatch *old = w->log_old;

        w->log_entries -= old->n;
        w->log_floor = old->seq;
        w->log_old = old->next;
        if (!w->log_old)
            w->log_new = NULL;
        lbatch_free(old);
    }
    metrics_conflict_log(w->log_entries);
}

/* Keeps a committed batch's writes (the log takes it). */
void wset_log_push(struct writer *w, struct lbatch *b)
{
    if (b->n == 0) {
        /* Its number still counts: a snapshot may have been taken after it. */
        lbatch_free(b);
    } else if (w->log_new) {
        w->log_entries += b->n;
        w->log_new->next = b;
        w->log_new = b;
    } else {
        w->log_entries += b->n;
        w->log_old = w->log_new = b;
    }
    wset_log_prune(w);
}
