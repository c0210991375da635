/*
 * metrics_listen: GET /metrics in Prometheus text on the separate plain
 * HTTP --metrics-listen address, with labels from the live catalog and the
 * expiry counts of the trust snapshot. Does not count: base/metrics does.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/metrics.h"

/* ---- GET /metrics on the separate listener ---- */

/* The live scripted resources, for the metrics labels. */
static size_t resource_label(void *ctx, struct metrics_endpoint **out_endpoints)
{
    struct http_server *srv = ctx;
    const struct catalog *c = srv->writer ? writer_catalog(srv->writer) : NULL;
    size_t n = c ? c->n_resources : 0;

    *out_endpoints = n ? malloc(n * sizeof(**out_endpoints)) : NULL;
    if (!*out_endpoints)
        return 0;
    for (size_t i = 0; i < n; i++)
        (*out_endpoints)[i] = route_endpoint(&c->resources[i]);
    return n;
}

static const char *reason_name(unsigned reason)
{
    return auth_reason_code((enum auth_reason)reason);
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *mhd, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct MHD_Response *resp;
    struct trust_snapshot *snap;
    unsigned cas = 0, certs = 0;
    int64_t soon = cg_now() + 30 * 86400;
    char *text;
    enum MHD_Result rc;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    if (strcmp(url, "/metrics") != 0 || strcmp(method, "GET") != 0) {
        static const char nf[] = "not found: GET /metrics\n";

        resp = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        rc = MHD_queue_response(mhd, MHD_HTTP_NOT_FOUND, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    snap = trust_holder_acquire(srv->trust);
    for (size_t i = 0; i < snap->pki.n_cas; i++)
        cas += snap->pki.cas[i].is_active && snap->pki.cas[i].cert.not_after < soon;
    for (size_t i = 0; i < snap->n_maps; i++)
        certs += snap->maps[i].kind != STORE_MAP_RULE && snap->maps[i].not_after < soon;
    trust_release(snap);
    text = metrics_render(resource_label, srv, reason_name, cas, certs);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    rc = MHD_queue_response(mhd, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

int http_start_metrics(struct http_server *srv, const char *listen, uint16_t *out_port,
                       struct cg_err *err)
{
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    const union MHD_DaemonInfo *di;

    if (settings_address(listen, &addr, &addr_len, err))
        return CG_EINVAL;
    srv->metrics = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                                        (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                                    0, NULL, NULL, on_metrics, srv, MHD_OPTION_EXTERNAL_LOGGER,
                                    on_mhd_log, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                    MHD_OPTION_CONNECTION_LIMIT, 16, MHD_OPTION_CONNECTION_TIMEOUT,
                                    10, MHD_OPTION_END);
    if (!srv->metrics) {
        cg_err_set(err, "cannot listen on %s for metrics", listen);
        return CG_ERR;
    }
    di = MHD_get_daemon_info(srv->metrics, MHD_DAEMON_INFO_BIND_PORT);
    *out_port = di ? di->port : 0;
    return CG_OK;
}
