#include "config.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

/* Histogram bounds in microseconds (Prometheus "le" in seconds). */
static const uint64_t bounds_us[] = {1000,   5000,   10000,   25000,   50000,  100000,
                                     250000, 500000, 1000000, 2500000, 5000000};
#define N_BOUNDS (sizeof(bounds_us) / sizeof(bounds_us[0]))
#define N_CLASSES 5 /* 1xx..5xx */
#define N_REASONS 16

struct histogram {
    uint64_t buckets[N_BOUNDS + 1]; /* cumulative at render time; here per bucket */
    uint64_t sum_us;                /* total */
    uint64_t count;                 /* observations */
};

static uint64_t requests[METRICS_SLOTS][N_CLASSES];
static uint64_t refusals[N_REASONS];
static uint64_t connections;
static uint64_t script_errors;
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

void metrics_request(unsigned slot, unsigned status, uint64_t us)
{
    unsigned cls = status / 100;

    if (slot >= METRICS_SLOTS)
        slot = METRICS_SLOT_NONE;
    if (cls < 1 || cls > 5)
        cls = 5;
    __atomic_add_fetch(&requests[slot][cls - 1], 1, __ATOMIC_RELAXED);
    observe(&latency, us);
}

unsigned metrics_resource_slot(int64_t id)
{
    if (id <= 0)
        return METRICS_SLOT_NONE;
    return METRICS_SLOT_FIRST_RESOURCE +
           (unsigned)((uint64_t)id % (METRICS_SLOTS - METRICS_SLOT_FIRST_RESOURCE));
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

char *metrics_render(metrics_label_fn label_fn, void *ctx, unsigned expiring_cas,
                     unsigned expiring_certs)
{
    struct buf b = {malloc(8192), 0, 8192};

    add(&b, "# HELP certgate_requests_total Requests answered, by status class and resource.\n"
            "# TYPE certgate_requests_total counter\n");
    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        for (unsigned c = 0; c < N_CLASSES; c++) {
            uint64_t v = __atomic_load_n(&requests[s][c], __ATOMIC_RELAXED);
            char label[256];
            const char *l;

            if (!v)
                continue;
            l = s == METRICS_SLOT_NONE        ? "none"
                : s == METRICS_SLOT_BUILTIN   ? "builtin"
                : s == METRICS_SLOT_TABLE_API ? "table_api"
                : label_fn                    ? label_fn(ctx, s, label, sizeof(label))
                                              : NULL;
            add(&b, "certgate_requests_total{status=\"%uxx\",resource=\"%s\"} %llu\n", c + 1,
                l ? l : "unknown", (unsigned long long)v);
        }
    }
    add(&b, "# HELP certgate_auth_refusals_total Refused authentications, by reason.\n"
            "# TYPE certgate_auth_refusals_total counter\n");
    for (unsigned r = 1; r < N_REASONS; r++) {
        const char *code = auth_reason_code((enum auth_reason)r);

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
