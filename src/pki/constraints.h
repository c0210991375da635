/*
 * constraints: a CA's nameConstraints (RFC 5280 4.2.1.10) against a
 * certificate below it in a chain, for every name form: directoryName
 * compared as parsed RDNs (dn), dNSName, rfc822Name and iPAddress through
 * GnuTLS's matchers fed with this CA's subtrees only, URI by its host, and
 * a form certgate cannot check (otherName, x400Address, ediPartyName,
 * registeredID) refused only when the certificate has a name of that form.
 * Relies on der, dn and GnuTLS. Does not walk the chain: the verifier calls
 * it for each constrained CA and each certificate below it, and skips the
 * self-issued intermediates RFC 5280 6.1.3 exempts.
 */
#ifndef CG_CONSTRAINTS_H
#define CG_CONSTRAINTS_H

#include <stddef.h>

#include "pki/pki.h"

/**
 * Why the nameConstraints extension @p ext (its DER value) cannot be used,
 * or NULL when it is well formed and lists at least one subtree.
 * @param out_n the number of subtrees when well formed (may be NULL)
 */
const char *constraints_defect(const unsigned char *ext, size_t len, size_t *out_n);

/**
 * Whether the names of @p below satisfy the name constraints of @p ca.
 * @param ca a CA certificate (with or without nameConstraints)
 * @param below a certificate it issued, directly or through others
 * @param why the violated constraint in words, when it returns 0
 * @return 1 when they hold (or @p ca has none), 0 when not, -1 when a
 *         certificate cannot be read or the constraints are malformed
 */
int constraints_hold(const struct pki_cert *ca, const struct pki_cert *below, char *why,
                     size_t whylen);

#endif
