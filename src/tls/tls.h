/*
 * tls: the server's GnuTLS side: its certificate and key (reloadable), the
 * priority string, the client-certificate request of each handshake (mode
 * and the CA names of the table), and turning a session's peer certificates
 * into plain pki_cert facts. Relies on GnuTLS and pki. After this module a
 * certificate is a struct pki_cert; nothing else touches GnuTLS types (the
 * session is passed as an opaque pointer).
 */
#ifndef CG_TLS_H
#define CG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pki/pki.h"
#include "base/util.h"

struct tls_server;

/** The credentials a session was set up with (opaque; see tls_session_release). */
struct tls_generation;

/**
 * Load the server's certificate (chain) and key and check they belong together.
 * @param cert_file PEM certificate, optionally followed by its chain
 * @param key_file PEM key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted
 * @param priority GnuTLS priority string of the handshakes
 * @param require true: refuse handshakes without a client certificate
 * @param send_ca_names name the CA table's subjects in the certificate request
 * @param out_srv the server state (free with tls_server_free)
 * @return CG_OK or CG_EINVAL with a message naming the file
 */
int tls_server_new(const char *cert_file, const char *key_file, const char *priority, bool require,
                   bool send_ca_names, struct tls_server **out_srv, struct cg_err *err);

/**
 * Change the handshake policy for new connections (SIGHUP); connections
 * already open keep theirs.
 * @param priority GnuTLS priority string
 * @param require true: refuse handshakes without a client certificate
 * @param send_ca_names name the CA table's subjects in the certificate request
 * @return CG_OK, or CG_EINVAL (an invalid priority string; nothing changed)
 */
int tls_server_set_policy(struct tls_server *srv, const char *priority, bool require,
                          bool send_ca_names, struct cg_err *err);

/**
 * Reload certificate and key (SIGHUP); on failure the old ones stay in use.
 * @return CG_OK or CG_EINVAL
 */
int tls_server_reload(struct tls_server *srv, const char *cert_file, const char *key_file,
                      struct cg_err *err);

/** The PEM texts MHD needs at start-up (owned by @p srv). */
const char *tls_server_cert_pem(const struct tls_server *srv);
/** The key PEM MHD needs at start-up (owned by @p srv; never log it). */
const char *tls_server_key_pem(const struct tls_server *srv);

/** Free everything, after the HTTP daemon has stopped. */
void tls_server_free(struct tls_server *srv);

/**
 * Prepare a new session before its handshake: the priority string, current
 * credentials (naming the active CAs of @p trust; rebuilt only when that set
 * changed), request or require a client certificate, CA names on or off.
 * Takes one per connection lock, never one per request.
 * @param session the gnutls_session_t, as an opaque pointer
 * @param out_gen the credentials now in use by the session: give them back
 *        with tls_session_release once the session is gone
 * @return CG_OK, or an error when the session cannot be set up (out_gen is
 *         set all the same)
 */
int tls_session_setup(struct tls_server *srv, void *session, const struct pki_trust *trust,
                      int64_t trust_version, struct tls_generation **out_gen);

/**
 * A session set up with @p gen is gone (gnutls_deinit done): superseded
 * credentials that no session uses any more are freed. NULL is allowed.
 */
void tls_session_release(struct tls_server *srv, struct tls_generation *gen);

/**
 * The certificates the client sent, leaf first, as facts.
 * @param session the gnutls_session_t, as an opaque pointer
 * @param cache certificates parsed before (NULL: parse each)
 * @param out_list empty when the client sent none (free with pki_cert_list_free)
 * @return CG_OK, or CG_EPARSE when a sent certificate does not parse
 */
int tls_session_peer(void *session, struct pki_parse_cache *cache, struct pki_cert_list *out_list);

/**
 * Write @p len bytes on a session whose socket is non-blocking, waiting at
 * most 200 ms in all for a full socket (for answers written outside the
 * HTTP server's own sending).
 * @return true when all were written
 */
bool tls_session_send_all(void *session, int fd, const char *buf, size_t len);

/**
 * Whether @p priority is a GnuTLS priority string GnuTLS accepts.
 * @param err why not
 * @return CG_OK or CG_EINVAL
 */
int tls_priority_check(const char *priority, struct cg_err *err);

#endif
