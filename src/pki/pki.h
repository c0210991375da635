/*
 * pki: parses certificates, bundles and CRLs into plain C facts, and decides
 * whether a client certificate chains to the CA certificate chain table.
 * Relies on GnuTLS internally; no GnuTLS type appears in this header, so the
 * modules after it (identity, auth, scripts, CLI) never touch GnuTLS.
 * Does not read the database and does not decide who the caller is: the
 * trust data comes in as a struct pki_trust, and identity maps the leaf.
 */
#ifndef CG_PKI_H
#define CG_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* ---- certificates: cert.c ---- */

/* Key usage bits (same values as RFC 5280 / GnuTLS). */
#define PKI_KU_DIGITAL_SIGNATURE 0x80
#define PKI_KU_KEY_ENCIPHERMENT 0x20
#define PKI_KU_KEY_AGREEMENT 0x08
#define PKI_KU_KEY_CERT_SIGN 0x04
#define PKI_KU_CRL_SIGN 0x02

/** The facts of one X.509 certificate, in plain C. */
struct pki_cert {
    unsigned char *der;        /* DER encoding */
    size_t der_len;            /* its length */
    char *subject;             /* subject DN, RFC 4514 string */
    char *issuer;              /* issuer DN, RFC 4514 string */
    char *cn;                  /* first subject CN, or NULL */
    char serial[80];           /* serial number, lower-case hex, no separators */
    char fingerprint[65];      /* SHA-256 of the DER, lower-case hex */
    char spki_sha256[65];      /* SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex */
    char ski[129];             /* subject key identifier, hex, "" when absent */
    char aki[129];             /* authority key identifier, hex, "" when absent */
    int64_t not_before;        /* validity start, seconds since the epoch */
    int64_t not_after;         /* validity end, seconds since the epoch */
    bool is_ca;                /* basicConstraints cA is true */
    int path_len;              /* basicConstraints pathLenConstraint, -1 when absent */
    bool is_self_issued;       /* subject DN equals issuer DN */
    bool is_self_signed;       /* self-issued and its signature verifies with its own key */
    bool has_key_usage;        /* keyUsage extension present */
    unsigned key_usage;        /* PKI_KU_* bits when present */
    bool has_eku;              /* extendedKeyUsage extension present */
    bool eku_client_auth;      /* EKU lists clientAuth */
    bool eku_any;              /* EKU lists anyExtendedKeyUsage */
    char **san_email;          /* rfc822Name SANs */
    size_t n_san_email;        /* count */
    char **san_dns;            /* dNSName SANs */
    size_t n_san_dns;          /* count */
    char **san_uri;            /* URI SANs */
    size_t n_san_uri;          /* count */
    size_t n_name_constraints; /* subtrees of its nameConstraints, 0 when it has none */
    const char *defect;        /* why the certificate breaks RFC 5280, NULL when it does not */
    char *key_type;            /* "EC P-256", "RSA 2048", ... */
    char *sig_algo;            /* signature algorithm name, e.g. "ECDSA-SHA256" */
};

/** A growable list of certificates. */
struct pki_cert_list {
    struct pki_cert *items; /* array */
    size_t n;               /* number of items */
};

/**
 * Parse one DER certificate.
 * @param der bytes
 * @param len length
 * @param out_cert facts (free with pki_cert_free)
 * @return CG_OK or CG_EPARSE
 */
int pki_cert_from_der(const unsigned char *der, size_t len, struct pki_cert *out_cert);

/** Certificates parsed before, by their DER bytes (cache.c); thread-safe. */
struct pki_parse_cache;

/** A new, empty cache of 1,024 entries. @return CG_OK or CG_ENOMEM */
int pki_parse_cache_new(struct pki_parse_cache **out_cache);

/** Free the cache and its entries (NULL: nothing). */
void pki_parse_cache_free(struct pki_parse_cache *cache);

/**
 * pki_cert_from_der, from @p cache when these exact bytes were parsed
 * before (a copy); a successful parse is kept for the next time.
 * @param cache the cache, or NULL: parse
 * @return as pki_cert_from_der (or CG_ENOMEM)
 */
int pki_cert_from_der_cached(struct pki_parse_cache *cache, const unsigned char *der, size_t len,
                             struct pki_cert *out_cert);

/**
 * Copy a certificate's facts (deep copy).
 * @return CG_OK or CG_ENOMEM
 */
int pki_cert_copy(const struct pki_cert *src, struct pki_cert *out_cert);

/** Encode a certificate as PEM ("-----BEGIN CERTIFICATE-----..."); malloc'd. */
char *pki_cert_pem(const struct pki_cert *cert);

/** Free the members of a certificate (not the struct itself). */
void pki_cert_free(struct pki_cert *cert);

/** Free a list and its certificates. */
void pki_cert_list_free(struct pki_cert_list *list);

/**
 * Whether @p issuer's key verifies @p cert's signature and @p issuer's subject
 * is @p cert's issuer.
 * @return true when @p issuer issued @p cert
 */
bool pki_cert_issued_by(const struct pki_cert *cert, const struct pki_cert *issuer);

/* ---- bundles: bundle.c ---- */

/** Why a bundle could not be used; filled by pki_parse_bundle on failure. */
struct pki_parse_error {
    size_t position;   /* 1-based index of the offending PEM block, 0 if none */
    char subject[256]; /* subject of the offending certificate, "" when unknown */
    char reason[256];  /* the reason in words */
};

/**
 * Parse a PEM bundle (any number of CERTIFICATE blocks, any order) or a single
 * DER certificate. Refuses a file that holds a private key of any kind, a
 * file with no certificate, and any block that does not parse.
 * @param data file contents
 * @param len its length
 * @param out_list certificates in file order (free with pki_cert_list_free)
 * @param out_err where and why it failed
 * @return CG_OK, CG_EPARSE (unparsable or no certificate), CG_EDENIED (private key)
 */
int pki_parse_bundle(const char *data, size_t len, struct pki_cert_list *out_list,
                     struct pki_parse_error *out_err);

/* ---- DN text: dn_text.c ---- */

/**
 * The canonical form of a DN an admin typed: parsed as RFC 4514 (attribute
 * names in any case, spaces around separators, \XX escapes) and written the
 * way certgate writes certificate subjects, so that a dn= rule compares
 * equal to the subjects it is meant to match.
 * @param in the DN text
 * @param out_dn the canonical form (malloc'd)
 * @param err why it cannot be used
 * @return CG_OK, CG_EPARSE or CG_ENOMEM
 */
int pki_canonical_dn(const char *in, char **out_dn, struct cg_err *err);

/* ---- CRLs: crl.c ---- */

/** A parsed CRL. */
struct pki_crl {
    unsigned char *der;     /* DER encoding */
    size_t der_len;         /* its length */
    char *issuer;           /* issuer DN, RFC 4514 */
    char fingerprint[65];   /* SHA-256 of the DER */
    char aki[129];          /* authority key identifier, hex, "" when absent */
    int64_t this_update;    /* seconds since the epoch */
    int64_t next_update;    /* seconds since the epoch, 0 when absent */
    char number[41];        /* CRL number, lower-case hex without leading zeros */
    char **revoked_serials; /* lower-case hex serials */
    size_t n_revoked;       /* count */
    char partial[256];      /* why it is not a complete CRL of its issuer (a delta CRL, a
                             * partitioned scope, an unknown critical extension), with what to
                             * load instead; "" for a complete CRL */
};

/**
 * Parse a CRL from PEM or DER.
 * @param out_crl facts (free with pki_crl_free)
 * @param err reason in words
 * @return CG_OK or CG_EPARSE
 */
int pki_parse_crl(const char *data, size_t len, struct pki_crl *out_crl, struct cg_err *err);

/**
 * Check a CRL's signature against a CA certificate.
 * @return true when @p ca signed @p crl
 */
bool pki_crl_signed_by(const struct pki_crl *crl, const struct pki_cert *ca);

/**
 * Compare two CRL numbers (lower-case hex without leading zeros).
 * @return <0, 0 or >0 as @p a is lower than, equal to or higher than @p b
 */
int pki_crl_number_cmp(const char *a, const char *b);

/** Free the members of a CRL. */
void pki_crl_free(struct pki_crl *crl);

/* ---- the chain verifier: verify.c ---- */

/**
 * Whether two certificates are the same CA: the same subject and public key
 * (a renewed or cross-signed copy is the same CA).
 */
bool pki_same_ca(const struct pki_cert *a, const struct pki_cert *b);

/** One CA of the CA certificate chain table, as the verifier sees it. */
struct pki_trust_ca {
    int64_t id;           /* sys_ca_certificate row id */
    bool is_active;       /* active flag of the row */
    struct pki_cert cert; /* the certificate */
};

/**
 * One CRL loaded in sys_crl. It belongs to a CA's key, not to a record of
 * the table: it applies to the certificates whose issuer is its issuer and
 * whose signature verifies with the key that signed it, whichever copy of
 * that CA (renewed, cross-signed, sent by the client, deleted) is on the path.
 */
struct pki_trust_crl {
    char signer_spki[65]; /* SHA-256 (hex) of the public key that signed it */
    struct pki_crl crl;   /* the CRL */
};

/** A CA deleted from the table: its key stays refused until it is added again. */
struct pki_trust_deleted {
    char spki_sha256[65]; /* SHA-256 (hex) of its public key */
    char *subject;        /* its subject, for messages */
    int64_t deleted_at;   /* when, seconds since the epoch */
};

/** Trust data: the CA table and the CRLs, read-only while verifying. */
struct pki_trust {
    struct pki_trust_ca *cas;          /* CA records */
    size_t n_cas;                      /* count */
    struct pki_trust_crl *crls;        /* CRLs */
    size_t n_crls;                     /* count */
    struct pki_trust_deleted *deleted; /* keys of deleted CAs */
    size_t n_deleted;                  /* count */
};

/** Verdict of a chain check; the codes map 1:1 to design section 5 reasons. */
enum pki_reason {
    PKI_OK = 0,
    PKI_UNTRUSTED_ISSUER,     /* chain ends outside the table, or breaks a CA rule */
    PKI_MISSING_INTERMEDIATE, /* an intermediate's issuer is neither sent nor stored */
    PKI_EXPIRED,              /* a certificate of the chain is past not-after */
    PKI_NOT_YET_VALID,        /* a certificate of the chain is before not-before */
    PKI_REVOKED,              /* a CRL in the table lists a certificate of the chain */
    PKI_SELF_SIGNED,          /* the leaf is self-signed (acceptable only if pinned) */
    PKI_BAD_KEY_USAGE,        /* key usage / EKU does not allow client authentication */
    PKI_CA_DISABLED,          /* the chain runs through a CA that is disabled in the table */
};

/** Result of pki_verify. */
struct pki_verdict {
    enum pki_reason reason;     /* PKI_OK when trusted */
    char detail[512];           /* the reason in words an integrator can act on */
    int64_t issuer_ca_id;       /* table id of a record of the CA that issued the leaf (same
                                 * name and key), 0 if not in the table */
    char issuer_spki[65];       /* SHA-256 (hex) of the key that signed the leaf, "" if none */
    int64_t root_ca_id;         /* table id of the root the chain ends at, 0 if none */
    size_t chain_len;           /* certificates in the built chain, leaf included */
    char chain[8][256];         /* subjects of the built chain, leaf first (first 8) */
    bool crl_stale;             /* a CRL used was past its next update (still applied) */
    int64_t valid_from;         /* PKI_OK: the chain is valid from (latest not-before) */
    int64_t valid_until;        /* PKI_OK: ... until (earliest not-after) */
    char stale_crl_issuer[256]; /* issuer of that CRL */
};

/**
 * A key for what a client presented: SHA-256 (hex) over the fingerprints of
 * the leaf and the certificates sent after it, in order.
 * @param out_key 65 bytes
 */
void pki_chain_key(const struct pki_cert *leaf, const struct pki_cert *sent, size_t n_sent,
                   char out_key[65]);

/** Reason code as in design section 5 ("untrusted_issuer", ...); "ok" for PKI_OK. */
const char *pki_reason_code(enum pki_reason reason);

/**
 * Decide whether a client certificate is trusted: build the chain from @p leaf
 * through @p sent (what the client sent after its leaf) and the table's CAs to
 * an active self-signed root of the table, and check validity at @p now, CA
 * flags, path length, key usage and EKU (clientAuth) where present, signatures,
 * and the CRLs of @p trust. A self-signed leaf gives PKI_SELF_SIGNED after its
 * own validity period has been checked (the caller accepts it only if pinned).
 * The server and `certgate check` both call this, so they never disagree.
 * @param trust CA table and CRLs
 * @param leaf the client's certificate
 * @param sent further certificates the client sent, any order (may be NULL)
 * @param n_sent their number
 * @param now validation time, seconds since the epoch
 * @param out_verdict the decision and reason
 * @return CG_OK when a verdict was reached (trusted or not), negative on internal failure
 */
int pki_verify(const struct pki_trust *trust, const struct pki_cert *leaf,
               const struct pki_cert *sent, size_t n_sent, int64_t now,
               struct pki_verdict *out_verdict);

#endif
