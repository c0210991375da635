/*
 * metrics: counters and histograms for GET /metrics (Prometheus text
 * format). The request path only does atomic operations: requests are
 * counted per (resource, status code) in a lock-free open-addressing table
 * that grows (rarely: when it is half full) by publishing a bigger table,
 * never by moving counts, so no increment is ever lost or misattributed.
 * Relies on libc only: a scripted resource is described to it as a
 * struct metrics_endpoint, and refusal reasons are named by the caller.
 * Labels come from the live catalog at render time: a deleted or disabled resource is not shown,
 * and a resource that takes a deleted one's id (SQLite may reuse the highest id) does not inherit
 * its counts, because the key covers the resource's endpoint too. Does not listen: http serves them
 * on the separate --metrics-listen address.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A scripted resource as the counters see it: its id and its endpoint. */
struct metrics_endpoint {
    int64_t id;          /* catalog id */
    const char *method;  /* GET, POST, ... */
    const char *ns;      /* namespace */
    const char *api;     /* API name */
    const char *version; /* "" or NULL when unversioned */
    const char *path;    /* path template */
};

/* Request-counter keys of the routes that are not scripted resources. A
 * scripted resource's key is metrics_resource_slot(); its top bit is set,
 * so it never equals one of these. */
#define METRICS_SLOT_NONE ((uint64_t)1 << 10)      /* no route (404s, refusals before routing) */
#define METRICS_SLOT_BUILTIN ((uint64_t)2 << 10)   /* healthz, whoami, admin */
#define METRICS_SLOT_TABLE_API ((uint64_t)3 << 10) /* /api/now/table */

/**
 * Count one answered request.
 * @param slot a METRICS_SLOT_* or metrics_resource_slot()
 * @param status the HTTP status code sent
 * @param us microseconds from request to answer
 */
void metrics_request(uint64_t slot, unsigned status, uint64_t us);
/**
 * The counter key of a scripted resource: its id and its endpoint (method,
 * namespace, API, version, path template) hashed.
 * @param e a resource of the catalog
 * @return a key for metrics_request()
 */
uint64_t metrics_resource_slot(const struct metrics_endpoint *e);
/** Count a refused authentication by reason code index (enum auth_reason). */
void metrics_refusal(unsigned reason);
/** Count a TLS connection (a handshake). */
void metrics_connection(void);
/** Count a script error (runtime error or cap). */
void metrics_script_error(void);
/** Observe one database commit. */
void metrics_commit(uint64_t us);
/** The committed writes kept for the conflict checks, now. */
void metrics_conflict_log(size_t writes);

/**
 * Gives the live scripted resources (the current catalog), for the labels.
 * @param ctx the caller's
 * @param out_endpoints set to a malloc'd array (render frees it; its strings
 *        stay valid at least until render returns)
 * @return how many
 */
typedef size_t (*metrics_resources_fn)(void *ctx, struct metrics_endpoint **out_endpoints);

/** The name of a refusal reason (enum auth_reason), "unknown" when none. */
typedef const char *(*metrics_reason_fn)(unsigned reason);

/**
 * Render everything in Prometheus text format.
 * @param resources_fn lists the live resources (NULL: none)
 * @param ctx passed to resources_fn
 * @param reason_name names the refusal reasons
 * @param expiring_cas CAs of the table expiring within 30 days
 * @param expiring_certs mapped certificates expiring within 30 days
 * @return malloc'd text, NULL when out of memory
 */
char *metrics_render(metrics_resources_fn resources_fn, void *ctx, metrics_reason_fn reason_name,
                     unsigned expiring_cas, unsigned expiring_certs);

#endif
