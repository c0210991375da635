/*
 * http: the libmicrohttpd daemon and the request pipeline: per-connection
 * identity (decided once per TLS connection, redone when trust data or the
 * time moved past it), the checks on the head as a whole (size, framing,
 * text), the route table, authentication (password checks on threads of
 * their own), authorisation, bodies, JSON responses and the access log; and
 * the sweeper that enforces --head-timeout. Relies on every module before
 * it; the only module besides tls that sees libmicrohttpd or GnuTLS. Does
 * not parse the command line.
 */
#ifndef CG_HTTP_H
#define CG_HTTP_H

#include <stdint.h>

#include "base/settings.h"
#include "tls/tls.h"
#include "trust/trust.h"
#include "base/util.h"
#include "engine/writer.h"

struct http_server;

/**
 * Start serving.
 * @param cfg settings (kept by pointer: must outlive the server)
 * @param trust trust holder
 * @param tls server credentials
 * @param writer the committer for scripted resources and the Table API
 * @param out_srv the running server (stop with http_stop)
 * @return CG_OK or CG_ERR with a message
 */
int http_start(const struct serve_config *cfg, struct trust_holder *trust, struct tls_server *tls,
               struct writer *writer, struct http_server **out_srv, struct cg_err *err);

/**
 * Serve GET /metrics (Prometheus text, plain HTTP) on a separate address.
 * @param out_port the bound port
 * @return CG_OK or an error with a message
 */
int http_start_metrics(struct http_server *srv, const char *listen, uint16_t *out_port,
                       struct cg_err *err);

/** The address and port it listens on, "127.0.0.1:8443" or "[::1]:8443". */
const char *http_address(struct http_server *srv);

/**
 * Use new settings for the next requests (SIGHUP): Basic, error details and
 * the body limit; @p cfg must outlive the server. Address, threads and
 * connection limits take a restart.
 */
void http_set_config(struct http_server *srv, const struct serve_config *cfg);

/** Stop accepting new connections; requests in flight go on. */
void http_quiesce(struct http_server *srv);

/** Requests received and not yet completed. */
int http_active_requests(struct http_server *srv);

/** Requests that ended without a complete answer so far (timeout, client gone, error). */
int http_unanswered_requests(struct http_server *srv);

/** Stop the daemon and free the server. */
void http_stop(struct http_server *srv);

#endif
