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
 *     would send two records.
 * Relies on GnuTLS and base/log. Does not know HTTP beyond recognising the
 * head libmicrohttpd writes for an announced answer.
 */
#ifndef CG_TLS_WIRE_H
#define CG_TLS_WIRE_H

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
 * and sent with the body, in one record and one send. Call on the thread
 * serving the connection, before the answer is queued; an answer that is
 * not announced (a HEAD request's, libmicrohttpd's own) goes as before.
 */
void tls_wire_expect_answer(int fd, size_t body_len);

/**
 * Drops what is held for socket @p fd (a connection starts or ends on it).
 */
void tls_wire_forget(int fd);

#endif
