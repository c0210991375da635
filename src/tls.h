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

#include "pki.h"
#include "util.h"

struct tls_server;

/**
 * Load the server's certificate (chain) and key and check they belong together.
 * @param cert_file PEM certificate, optionally followed by its chain
 * @param key_file PEM key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC)
 * @param require true: refuse handshakes without a client certificate
 * @param send_ca_names name the CA table's subjects in the certificate request
 * @param out_srv the server state (free with tls_server_free)
 * @return CG_OK or CG_EINVAL with a message naming the file
 */
int tls_server_new(const char *cert_file, const char *key_file, bool require, bool send_ca_names,
                   struct tls_server **out_srv, struct cg_err *err);

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
 * Prepare a new session before its handshake: current credentials (with the
 * CA names of @p trust at @p trust_version), request or require a client
 * certificate, CA names on or off.
 * @param session the gnutls_session_t, as an opaque pointer
 * @return CG_OK, or an error when the session cannot be set up
 */
int tls_session_setup(struct tls_server *srv, void *session, const struct pki_trust *trust,
                      int64_t trust_version);

/**
 * The certificates the client sent, leaf first, as facts.
 * @param session the gnutls_session_t, as an opaque pointer
 * @param out_list empty when the client sent none (free with pki_cert_list_free)
 * @return CG_OK, or CG_EPARSE when a sent certificate does not parse
 */
int tls_session_peer(void *session, struct pki_cert_list *out_list);

/** Protocol and cipher suite of a session, e.g. "TLS1.3" and "TLS_AES_128_GCM_SHA256". */
void tls_session_describe(void *session, const char **out_protocol, const char **out_cipher);

#endif
