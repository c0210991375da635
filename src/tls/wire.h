/*
 * tls/wire: what libmicrohttpd 0.9.75 puts on the wire through GnuTLS, made
 * to behave as a TLS server should. libmicrohttpd calls gnutls_handshake,
 * gnutls_record_recv and gnutls_record_send through the dynamic linker, so
 * the definitions in wire.c (in the executable) are the ones it reaches;
 * each runs GnuTLS's own and adds what libmicrohttpd leaves out:
 *   - a failed handshake ends with the alert the TLS RFCs name, never a
 *     bare close, and is logged with its reason (tls_handshake_failed);
 *   - a client-initiated renegotiation gets a no_renegotiation alert;
 *   - an answer announced with tls_wire_expect_answer goes out as one TLS
 *     record and one send, head and body together, where libmicrohttpd
 *     would send two records;
 *   - an error answer libmicrohttpd writes itself (HTML) is replaced by the
 *     one the builder given to tls_wire_replace_own_answers makes;
 *   - a handshake that waits for the client says so
 *     (tls_wire_on_handshake_wait), which libmicrohttpd's epoll loop cannot
 *     see (http/park.c).
 * Relies on GnuTLS and base/log. Does not know HTTP beyond recognising the
 * heads libmicrohttpd writes: for an announced answer, and for its own.
 */
#ifndef CG_TLS_WIRE_H
#define CG_TLS_WIRE_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>

/**
 * Whether this thread's last failed handshake was logged with its reason
 * (the "tls_handshake_failed" line; the alert was sent); clears it.
 */
bool tls_handshake_failure_logged(void);

/**
 * Announces that the next answer libmicrohttpd sends on the connection of
 * socket @p fd carries a body of exactly @p body_len bytes, sent straight
 * after its head. When head and body fit one record, the head is held back
 * and sent with the body, in one record and one send (otherwise it goes
 * as it is: @p body_len 0 for a HEAD request's or a body-less answer).
 * Call on the thread serving the connection, before the answer is queued;
 * announce every answer of certgate's, so that it is never taken for one
 * of libmicrohttpd's own.
 */
void tls_wire_expect_answer(int fd, size_t body_len);

/**
 * Says that the answer announced on socket @p fd has been sent in full
 * (the request is complete): a 4xx or 5xx head that comes next without an
 * announcement is libmicrohttpd's own.
 */
void tls_wire_answer_done(int fd);

/**
 * Builds an answer (head and body, malloc'd, @p len bytes) that replaces
 * one of HTTP status @p status that libmicrohttpd writes itself; NULL
 * leaves libmicrohttpd's as it is. Called on the connection's thread.
 */
typedef char *(*tls_wire_answer_fn)(unsigned status, size_t *len);

/**
 * Replaces every error answer libmicrohttpd writes itself with what @p fn
 * builds (NULL: stop replacing).
 */
void tls_wire_replace_own_answers(tls_wire_answer_fn fn);

/**
 * The status of libmicrohttpd's own answer replaced on socket @p fd since
 * the connection started, 0 when none: libmicrohttpd closes after it,
 * often with the rest of the request still arriving.
 */
unsigned tls_wire_replaced(int fd);

/**
 * Called on the connection's thread when a TLS handshake step returned
 * GNUTLS_E_AGAIN waiting to read the client's next flight (@p session is
 * libmicrohttpd's).
 */
typedef void (*tls_wire_wait_fn)(void *ctx, gnutls_session_t session);

/**
 * Calls @p fn with @p ctx each time a handshake waits to read (NULL: stop).
 * Set it before the server starts and clear it after it has stopped.
 */
void tls_wire_on_handshake_wait(tls_wire_wait_fn fn, void *ctx);

/**
 * Drops what is held for socket @p fd (a connection starts or ends on it).
 */
void tls_wire_forget(int fd);

#endif
