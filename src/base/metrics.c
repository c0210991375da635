#include "config.h"
#include "base/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histogram bounds in microseconds (Prometheus "le" in seconds). */
static const uint64_t bounds_us[] = {1000,   5000,   10000,   25000,   50000,  100000,
                                     250000, 500000, 1000000, 2500000, 5000000};
#define N_BOUNDS (sizeof(bounds_us) / sizeof(bounds_us[0]))
#define N_REASONS 16

/* A request-counter key is a resource key with the status code in its low
 * bits; status codes above 999 (none are sent) are counted as 999. */
#define STATUS_BITS 10
#define STATUS_MASK (((uint64_t)1 << STATUS_BITS) - 1)
#define STATUS_MAX 999
/* The first table; each growth doubles, up to MAX_CELLS. */
#define FIRST_CELLS 1024
#define MAX_CELLS ((size_t)1 << 22)

struct histogram {
    uint64_t buckets[N_BOUNDS + 1]; /* cumulative at render time; here per bucket */
    uint64_t sum_us;                /* total */
    uint64_t count;                 /* observations */
};

/* One request counter. key 0 is a free cell; a key, once set, never changes. */
struct cell {
    uint64_t key;   /* resource key | status code */
    uint64_t count; /* requests */
};

/* Open-addressing table of request counters. A full table is not resized in
 * place: a bigger one is published in front of it, holding its keys with
 * zero counts. Increments that still reach an older table are not lost,
 * since rendering adds up the whole chain by key. Tables are never freed
 * (a request may still hold one); they stay small: 16 bytes a cell. */
struct table {
    size_t mask;         /* cells - 1 (a power of two) */
    size_t used;         /* cells with a key (atomic) */
    struct cell *cells;  /* the cells */
    struct table *older; /* the table this one replaced */
};

static struct cell first_cells[FIRST_CELLS];
static struct table first_table = {FIRST_CELLS - 1, 0, first_cells, NULL};
static struct table *requests = &first_table; /* newest table (atomic pointer) */
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t refusals[N_REASONS];
static uint64_t connections;
static uint64_t script_errors;
static uint64_t conflict_log;
static struct histogram latency;
static struct histogram commits;

static void observe(struct histogram *h, uint64_t us)
{
    size_t b = 0;

    while (b < N_BOUNDS && us > bounds_us[b])
        b++;
    __atomic_add_fetch(&h->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->sum_us, us, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
}

/* splitmix64's finaliser: built-in keys are small numbers. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Counts @p key in @p t. Once the table is half full it takes no new cell
 * (so probes stay short) unless @p must, and then only while one is free.
 * @return 1 when counted, 0 when the key needs a new cell it may not take */
static int bump(struct table *t, uint64_t key, int must)
{
    size_t i = (size_t)mix(key) & t->mask;

    for (size_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
        struct cell *c = &t->cells[i];
        uint64_t k = __atomic_load_n(&c->key, __ATOMIC_ACQUIRE);

        if (k == 0) {
            uint64_t expected = 0;

            if (!must && (__atomic_load_n(&t->used, __ATOMIC_RELAXED) + 1) * 2 > t->mask + 1)
                return 0;
            if (__atomic_compare_exchange_n(&c->key, &expected, key, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_add_fetch(&t->used, 1, __ATOMIC_RELAXED);
                k = key;
            } else {
                k = expected;
            }
        }
        if (k == key) {
            __atomic_add_fetch(&c->count, 1, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return 0;
}

/* Publishes a table twice as big as @p t holding its keys, unless another
 * thread did already. @return the newest table, or NULL when it cannot grow. */
static struct table *grow(struct table *t)
{
    struct table *cur, *nt = NULL;
    size_t cells;

    pthread_mutex_lock(&grow_lock);
    cur = __atomic_load_n(&requests, __ATOMIC_ACQUIRE);
    if (cur != t) {
        nt = cur;
        goto out;
    }
    cells = (t->mask + 1) * 2;
    if (cells > MAX_CELLS)
        goto out;
    nt = calloc(1, sizeof(*nt));
    if (nt)
        nt->cells = calloc(cells, sizeof(*nt->cells));
    if (!nt || !nt->cells) {
        free(nt);
        nt = NULL;
        goto out;
    }
    nt->mask = cells - 1;
    nt->older = t;
    for (size_t i = 0; i <= t->mask; i++) {
        uint64_t k = __atomic_load_n(&t->cells[i].key, __ATOMIC_ACQUIRE);
        size_t j;

        if (!k)
            continue;
        for (j = (size_t)mix(k) & nt->mask; nt->cells[j].key; j = (j + 1) & nt->mask)
            ;
        nt->cells[j].key = k;
        nt->used++;
    }
    __atomic_store_n(&requests, nt, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&grow_lock);
    return nt;
}

void metrics_request(uint64_t slot, unsigned status, uint64_t us)
{
    uint64_t key = (slot & ~STATUS_MASK) | (status > STATUS_MAX ? STATUS_MAX : status);
    struct table *t = __atomic_load_n(&requests, __ATOMIC_ACQUIRE);

    if (!(slot & ~STATUS_MASK))
        key |= METRICS_SLOT_NONE;
    while (!bump(t, key, 0)) {
        struct table *nt = grow(t);

        if (!nt) {
            /* At the size cap or out of memory: the free cells left. */
            bump(t, key, 1);
            break;
        }
        t = nt;
    }
    observe(&latency, us);
}

/* FNV-1a, 64 bits. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t metrics_resource_slot(const struct metrics_endpoint *r)
{
    const char *parts[] = {r->method, r->ns, r->api, r->version, r->path};
    uint64_t h = 0xcbf29ce484222325ULL;
    int64_t id = r->id;

    h = fnv(h, &id, sizeof(id));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        const char *s = parts[i] ? parts[i] : "";

        h = fnv(h, s, strlen(s) + 1); /* with the NUL: "ab"+"c" is not "a"+"bc" */
    }
    return (h | (uint64_t)1 << 63) & ~STATUS_MASK;
}

void metrics_refusal(unsigned reason)
{
    if (reason < N_REASONS)
        __atomic_add_fetch(&refusals[reason], 1, __ATOMIC_RELAXED);
}

void metrics_connection(void)
{
    __atomic_add_fetch(&connections, 1, __ATOMIC_RELAXED);
}

void metrics_script_error(void)
{
    __atomic_add_fetch(&script_errors, 1, __ATOMIC_RELAXED);
}

void metrics_commit(uint64_t us)
{
    observe(&commits, us);
}

void metrics_conflict_log(size_t writes)
{
    __atomic_store_n(&conflict_log, (uint64_t)writes, __ATOMIC_RELAXED);
}

struct buf {
    char *p;    /* text */
    size_t len; /* used */
    size_t cap; /* allocated */
};

static void add(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!b->p)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        {
            char *np = realloc(b->p, b->cap * 2 + (size_t)n);

            if (!np) {
                free(b->p);
                b->p = NULL;
                return;
            }
            b->p = np;
            b->cap = b->cap * 2 + (size_t)n;
        }
    }
}

static void render_histogram(struct buf *b, const char *name, const char *help, struct histogram *h)
{
    uint64_t cum = 0;

    add(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < N_BOUNDS; i++) {
        cum += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
        add(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds_us[i] / 1e6,
            (unsigned long long)cum);
    }
    cum += __atomic_load_n(&h->buckets[N_BOUNDS], __ATOMIC_RELAXED);
    add(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    add(b, "%s_sum %.6f\n%s_count %llu\n", name,
        (double)__atomic_load_n(&h->sum_us, __ATOMIC_RELAXED) / 1e6, name,
        (unsigned long long)__atomic_load_n(&h->count, __ATOMIC_RELAXED));
}

struct count {
    uint64_t key; /* resource key | status code */
    uint64_t n;   /* requests */
};

struct live {
    uint64_t slot;                    /* metrics_resource_slot() */
    const struct metrics_endpoint *r; /* catalog entry */
};

static int cmp_u64(uint64_t x, uint64_t y)
{
    return (x > y) - (x < y);
}

static int by_key(const void *a, const void *b)
{
    return cmp_u64(((const struct count *)a)->key, ((const struct count *)b)->key);
}

static int by_slot(const void *a, const void *b)
{
    return cmp_u64(((const struct live *)a)->slot, ((const struct live *)b)->slot);
}

/* Every request counter of the table chain, added up by key and sorted.
 * @return the array (NULL when out of memory or empty) and its length */
static struct count *snapshot(size_t *out_n)
{
    struct table *newest = __atomic_load_n(&requests, __ATOMIC_ACQUIRE);
    struct count *v;
    size_t cap = 0, n = 0, m = 0;

    *out_n = 0;
    for (struct table *t = newest; t; t = t->older)
        cap += t->mask + 1;
    v = malloc(cap * sizeof(*v));
    if (!v)
        return NULL;
    for (struct table *t = newest; t; t = t->older) {
        for (size_t i = 0; i <= t->mask; i++) {
            uint64_t k = __atomic_load_n(&t->cells[i].key, __ATOMIC_ACQUIRE);
            uint64_t c = __atomic_load_n(&t->cells[i].count, __ATOMIC_RELAXED);

            if (k && c)
                v[n++] = (struct count){k, c};
        }
    }
    qsort(v, n, sizeof(*v), by_key);
    for (size_t i = 0; i < n; i++) {
        if (m && v[m - 1].key == v[i].key)
            v[m - 1].n += v[i].n;
        else
            v[m++] = v[i];
    }
    *out_n = m;
    return v;
}

/* Appends @p s as a Prometheus label value (\\, \" and \n escaped). */
static void add_escaped(struct buf *b, const char *s)
{
    for (; *s; s++) {
        size_t plain = strcspn(s, "\\\"\n");

        if (plain) {
            add(b, "%.*s", (int)plain, s);
            s += plain;
            if (!*s)
                return;
        }
        add(b, "\\%c", *s == '\n' ? 'n' : *s);
    }
}

static void render_requests(struct buf *b, metrics_resources_fn resources_fn, void *ctx)
{
    struct metrics_endpoint *res = NULL;
    struct live *live = NULL;
    struct count *counts;
    size_t n_counts, n_live = resources_fn ? resources_fn(ctx, &res) : 0;

    add(b, "# HELP certgate_requests_total Requests answered, by status code and resource.\n"
           "# TYPE certgate_requests_total counter\n");
    counts = snapshot(&n_counts);
    if (n_live) {
        live = malloc(n_live * sizeof(*live));
        if (!live)
            n_live = 0;
        for (size_t i = 0; i < n_live; i++)
            live[i] = (struct live){metrics_resource_slot(&res[i]), &res[i]};
        if (live)
            qsort(live, n_live, sizeof(*live), by_slot);
    }
    for (size_t i = 0; i < n_counts; i++) {
        uint64_t slot = counts[i].key & ~STATUS_MASK;
        unsigned status = (unsigned)(counts[i].key & STATUS_MASK);
        const char *fixed = slot == METRICS_SLOT_NONE        ? "none"
                            : slot == METRICS_SLOT_BUILTIN   ? "builtin"
                            : slot == METRICS_SLOT_TABLE_API ? "table_api"
                                                             : NULL;
        const struct live *l = NULL;

        if (!fixed) {
            struct live want = {slot, NULL};

            l = n_live ? bsearch(&want, live, n_live, sizeof(*live), by_slot) : NULL;
            if (!l)
                continue; /* deleted or disabled since */
        }
        add(b, "certgate_requests_total{status=\"%u\",resource=\"", status);
        if (fixed) {
            add(b, "%s", fixed);
        } else {
            const struct metrics_endpoint *r = l->r;

            add_escaped(b, r->method);
            add(b, " ");
            add_escaped(b, r->ns);
            add(b, "/");
            add_escaped(b, r->api);
            if (r->version && r->version[0]) {
                add(b, "/");
                add_escaped(b, r->version);
            }
            add_escaped(b, r->path);
        }
        add(b, "\"} %llu\n", (unsigned long long)counts[i].n);
    }
    free(live);
    free(res);
    free(counts);
}

char *metrics_render(metrics_resources_fn resources_fn, void *ctx, metrics_reason_fn reason_name,
                     unsigned expiring_cas, unsigned expiring_certs)
{
    struct buf b = {malloc(8192), 0, 8192};

    render_requests(&b, resources_fn, ctx);
    add(&b, "# HELP certgate_auth_refusals_total Refused authentications, by reason.\n"
            "# TYPE certgate_auth_refusals_total counter\n");
    for (unsigned r = 1; r < N_REASONS; r++) {
        const char *code = reason_name(r);

        if (strcmp(code, "unknown") != 0)
            add(&b, "certgate_auth_refusals_total{reason=\"%s\"} %llu\n", code,
                (unsigned long long)__atomic_load_n(&refusals[r], __ATOMIC_RELAXED));
    }
    add(&b,
        "# HELP certgate_tls_connections_total TLS connections accepted (handshakes).\n"
        "# TYPE certgate_tls_connections_total counter\ncertgate_tls_connections_total "
        "%llu\n",
        (unsigned long long)__atomic_load_n(&connections, __ATOMIC_RELAXED));
    add(&b,
        "# HELP certgate_script_errors_total Script runtime errors and caps reached.\n"
        "# TYPE certgate_script_errors_total counter\ncertgate_script_errors_total %llu\n",
        (unsigned long long)__atomic_load_n(&script_errors, __ATOMIC_RELAXED));
    add(&b,
        "# HELP certgate_conflict_log_writes Committed writes kept to check runs in flight "
        "against.\n"
        "# TYPE certgate_conflict_log_writes gauge\ncertgate_conflict_log_writes %llu\n",
        (unsigned long long)__atomic_load_n(&conflict_log, __ATOMIC_RELAXED));
    render_histogram(&b, "certgate_request_duration_seconds", "Time from request to answer.",
                     &latency);
    render_histogram(&b, "certgate_db_commit_duration_seconds", "Duration of one group commit.",
                     &commits);
    add(&b,
        "# HELP certgate_cas_expiring_30d CAs of the table expiring within 30 days.\n"
        "# TYPE certgate_cas_expiring_30d gauge\ncertgate_cas_expiring_30d %u\n",
        expiring_cas);
    add(&b,
        "# HELP certgate_certificates_expiring_30d Mapped client certificates expiring "
        "within 30 days.\n# TYPE certgate_certificates_expiring_30d gauge\n"
        "certgate_certificates_expiring_30d %u\n",
        expiring_certs);
    return b.p;
}
