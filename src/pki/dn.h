/*
 * dn: compares X.501 distinguished names as what they are, sequences of
 * RDNs of (attribute type, value) pairs in DER, never as rendered text, in
 * which an escaped ',' inside a value can pass for an RDN boundary.
 * Relies on der. Does not render names (pki does, for people) and does not
 * decide trust (constraints and the verifier do).
 * Values of the directory string types are compared as RFC 5280 7.1 asks
 * and OpenSSL does: as Unicode text, ASCII letters folded to lower case,
 * leading and trailing white space dropped and inner runs of it taken as
 * one space; other values compare by their encoding.
 */
#ifndef CG_DN_H
#define CG_DN_H

#include <stddef.h>
#include <stdint.h>

/**
 * Whether the DER Name @p name lies in the subtree @p base: base's RDNs
 * are the first RDNs of name, each equal as a set of attributes.
 * @param name a DER Name (SEQUENCE OF RDN), as in a certificate's subject
 * @param base a DER Name, as in a directoryName name constraint
 * @return 1 when within, 0 when not, -1 when either is malformed
 */
int dn_within(const uint8_t *name, size_t name_len, const uint8_t *base, size_t base_len);

/**
 * Number of RDNs in a DER Name, checking that it is well formed: every
 * attribute a type and a value, every directory string valid for its type
 * (a UTF8String that is not UTF-8 cannot be compared as text).
 * @return the count, or -1 when malformed
 */
int dn_rdn_count(const uint8_t *name, size_t name_len);

#endif
