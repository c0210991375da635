/*
 * metrics: counters and histograms for GET /metrics (Prometheus text
 * format), updated with atomic operations only, so the request path takes
 * no lock. Relies on nothing but libc; the daemon renders them with the
 * trust snapshot and catalog for the labels and expiry gauges. Does not
 * listen: http serves them on the separate --metrics-listen address.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Resource label slots: built-in routes and scripted resources by id. */
#define METRICS_SLOTS 512
#define METRICS_SLOT_NONE 0      /* no route (404s, refusals before routing) */
#define METRICS_SLOT_BUILTIN 1   /* healthz, whoami, admin */
#define METRICS_SLOT_TABLE_API 2 /* /api/now/table */
#define METRICS_SLOT_FIRST_RESOURCE 3

/** Count one answered request. @param slot a METRICS_SLOT_* or metrics_resource_slot() */
void metrics_request(unsigned slot, unsigned status, uint64_t us);
/** Slot of a scripted resource id. */
unsigned metrics_resource_slot(int64_t id);
/** Count a refused authentication by reason code index (enum auth_reason). */
void metrics_refusal(unsigned reason);
/** Count a TLS connection (a handshake). */
void metrics_connection(void);
/** Count a script error (runtime error or cap). */
void metrics_script_error(void);
/** Observe one database commit. */
void metrics_commit(uint64_t us);

/** Something that turns a slot into a label; NULL when unused. */
typedef const char *(*metrics_label_fn)(void *ctx, unsigned slot, char *buf, size_t len);

/**
 * Render everything in Prometheus text format.
 * @param label_fn names resource slots
 * @param expiring_cas CAs of the table expiring within 30 days
 * @param expiring_certs mapped certificates expiring within 30 days
 * @return malloc'd text
 */
char *metrics_render(metrics_label_fn label_fn, void *ctx, unsigned expiring_cas,
                     unsigned expiring_certs);

#endif
