/*
 * trust_data: the records of the trust data (the CA certificate chain table,
 * deleted CA keys, CRLs, users with their roles, user-to-certificate
 * mappings) and the operations on them. Does not parse certificates (callers
 * hand in the facts pki extracted) and does not decide trust.
 */
#ifndef CG_TRUST_DATA_H
#define CG_TRUST_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct store;

/** A CA certificate chain table record. */
struct store_ca {
    int64_t id;           /* row id */
    char *name;           /* admin's label, may be NULL */
    char *subject;        /* RFC 4514 */
    char *issuer;         /* RFC 4514 */
    char *serial;         /* hex */
    char fingerprint[65]; /* SHA-256 hex of the DER */
    char spki_sha256[65]; /* SHA-256 hex of the public key info */
    char ski[129];        /* subject key identifier hex, "" if none */
    char aki[129];        /* authority key identifier hex, "" if none */
    int64_t not_before;   /* seconds since the epoch */
    int64_t not_after;    /* seconds since the epoch */
    bool is_root;         /* self-signed */
    int path_len;         /* pathLenConstraint, -1 when absent */
    unsigned char *der;   /* DER bytes */
    size_t der_len;       /* length */
    char *pem;            /* PEM text */
    bool is_active;       /* active flag */
    bool was_deleted;     /* set by store_ca_insert: the CA had been deleted, now trusted again */
    char created_on[21];  /* ISO 8601 */
    char updated_on[21];  /* ISO 8601 */
};

/**
 * A CRL record. It belongs to the key that signed it (and its issuer name),
 * not to one record of the CA table: it applies to every copy of that CA.
 */
struct store_crl {
    int64_t id;            /* row id */
    char signer_spki[65];  /* SHA-256 hex of the public key that signed it */
    char *issuer;          /* RFC 4514 */
    char fingerprint[65];  /* SHA-256 hex of the DER */
    int64_t this_update;   /* seconds since the epoch */
    int64_t next_update;   /* seconds since the epoch, 0 if none */
    int64_t revoked_count; /* number of revoked serials */
    unsigned char *der;    /* DER bytes */
    size_t der_len;        /* length */
    char created_on[21];   /* ISO 8601 */
};

/** A user record with its roles. */
struct store_user {
    int64_t id;          /* row id */
    char *name;          /* unique name */
    bool is_active;      /* active flag */
    bool is_locked;      /* locked flag */
    char *password_hash; /* encoded KDF output, NULL when the user has no password */
    char **roles;        /* role names, sorted */
    size_t n_roles;      /* count */
    char created_on[21]; /* ISO 8601 */
    char updated_on[21]; /* ISO 8601 */
};

/** Kind of a user-to-certificate mapping. */
enum store_map_kind {
    STORE_MAP_CERT,   /* exact leaf certificate */
    STORE_MAP_PINNED, /* exact self-signed certificate, pinned */
    STORE_MAP_RULE,   /* subject field or SPKI bound to an issuing CA */
};

/** A user-to-certificate mapping record. */
struct store_map {
    int64_t id;               /* row id */
    int64_t user_id;          /* sys_user id */
    char *user_name;          /* the user's name (filled by reads) */
    enum store_map_kind kind; /* what it matches */
    char *name;               /* admin's label, may be NULL */
    char fingerprint[65];     /* cert/pinned: SHA-256 hex of the leaf, "" for rules */
    char *subject;            /* cert/pinned: subject DN, NULL for rules */
    char *issuer;             /* cert/pinned: issuer DN, NULL for rules */
    char *serial;             /* cert/pinned: serial hex, NULL for rules */
    int64_t not_before;       /* cert/pinned: validity start */
    int64_t not_after;        /* cert/pinned: validity end */
    unsigned char *der;       /* cert/pinned: the certificate, NULL for rules */
    size_t der_len;           /* length */
    int64_t ca_id;            /* rule: the issuing CA it is bound to, 0 otherwise */
    char *match_field;        /* rule: "cn", "dn", "email", "dns", "uri" or "spki" */
    char *match_value;        /* rule: the value to match */
    bool is_active;           /* active flag */
    char created_on[21];      /* ISO 8601 */
};

/* ---- CA certificate chain table ---- */

/**
 * Insert a CA record (id, created_on and updated_on are filled in). A copy
 * of a disabled CA (same key) comes in disabled (is_active is cleared), and
 * a deleted CA's key is trusted again (was_deleted is set).
 * @return CG_OK, CG_EEXIST (same fingerprint), CG_EDB
 */
int store_ca_insert(struct store *s, struct store_ca *ca, struct cg_err *err);

/**
 * Find a CA by row id (decimal), full fingerprint or a unique fingerprint prefix
 * of at least 8 hex digits (colons allowed).
 * @return CG_OK, CG_ENOTFOUND, CG_EINVAL (ambiguous prefix), CG_EDB
 */
int store_ca_find(struct store *s, const char *id_or_fp, struct store_ca *out_ca,
                  struct cg_err *err);

/** Find a CA by exact fingerprint. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_ca_get_by_fingerprint(struct store *s, const char *fingerprint, struct store_ca *out_ca,
                                struct cg_err *err);

/**
 * All CA records, ordered by id.
 * @param out_cas malloc'd array (free with store_ca_list_free)
 * @return CG_OK or CG_EDB
 */
int store_ca_list(struct store *s, struct store_ca **out_cas, size_t *out_n, struct cg_err *err);

/**
 * Set the active flag of a CA: of every record of it (every certificate
 * with its key), since a copy is the same CA.
 * @return CG_OK, CG_ENOTFOUND, CG_EDB
 */
int store_ca_set_active(struct store *s, int64_t id, bool is_active, struct cg_err *err);

/**
 * What depends on a CA of the table. A child CA is a non-root record whose
 * issuer is the CA's subject (and whose authority key id, when both are
 * known, is the CA's subject key id); children count transitively.
 */
struct store_ca_deps {
    int64_t child_cas;      /* CAs below it in the table, at any depth */
    int64_t rules;          /* rules bound to the CA itself */
    int64_t mappings;       /* exact/pinned mappings whose issuer is its subject */
    int64_t child_rules;    /* rules bound to the CAs below it */
    int64_t child_mappings; /* exact mappings of certificates the CAs below it issued */
    int64_t crls;           /* CRLs its key signed (they stay when it is deleted) */
    int64_t copy_id;        /* another record of the same CA (name and key), 0 when none */
};

/**
 * Count what depends on a CA.
 * @param out_deps the counts
 * @return CG_OK or CG_EDB
 */
int store_ca_dependents(struct store *s, int64_t id, struct store_ca_deps *out_deps,
                        struct cg_err *err);

/**
 * Delete a CA record. When another record of the same CA (name and key)
 * stays, nothing depended on this one alone: its rules move to that copy.
 * Otherwise, when anything but its CRLs depends on it (see
 * store_ca_dependents) it is refused, naming what depends on it, unless
 * @p force: then its own rules go with it, and the CAs, rules and mappings
 * below it stay. Deleting the last copy keeps the CA's key refused
 * (sys_ca_deleted) until it is added again; its CRLs are kept.
 * @param out_deps what depended on it (may be NULL); filled also on CG_EDEPEND
 * @return CG_OK, CG_ENOTFOUND, CG_EDEPEND, CG_EDB
 */
int store_ca_delete(struct store *s, int64_t id, bool force, struct store_ca_deps *out_deps,
                    struct cg_err *err);

/** Free the members of a CA record. */
void store_ca_free(struct store_ca *ca);
/** Free an array of CA records. */
void store_ca_list_free(struct store_ca *cas, size_t n);

/** A CA key deleted from the table. */
struct store_ca_deleted {
    char spki_sha256[65]; /* its public key, SHA-256 hex */
    char *subject;        /* its subject */
    char fingerprint[65]; /* the last record of it that was deleted */
    int64_t deleted_at;   /* seconds since the epoch */
    char deleted_on[21];  /* ISO 8601 */
};

/** Deleted CA keys, oldest first. @return CG_OK or CG_EDB */
int store_ca_deleted_list(struct store *s, struct store_ca_deleted **out_list, size_t *out_n,
                          struct cg_err *err);
/** Free a list of deleted CA keys. */
void store_ca_deleted_list_free(struct store_ca_deleted *list, size_t n);

/* ---- CRLs ---- */

/** What the CRLs of one scope (issuer name and signing key) were when read. */
struct store_crl_scope {
    int64_t count;  /* CRLs of that scope */
    int64_t max_id; /* highest id among them, 0 when none */
};

/** The CRLs of one scope now. @return CG_OK or CG_EDB */
int store_crl_scope(struct store *s, const char *issuer, const char *signer_spki,
                    struct store_crl_scope *out_scope, struct cg_err *err);

/**
 * Load a CRL in place of the CRLs of its scope (issuer and signer_spki),
 * which the caller has judged older; refused when they changed since the
 * caller read @p seen (another crl add ran in between).
 * @return CG_OK, CG_EEXIST (same fingerprint, or the scope changed), CG_EDB
 */
int store_crl_replace(struct store *s, struct store_crl *crl, const struct store_crl_scope *seen,
                      struct cg_err *err);

/** All CRLs, ordered by id. @return CG_OK or CG_EDB */
int store_crl_list(struct store *s, struct store_crl **out_crls, size_t *out_n, struct cg_err *err);

/** Free the members of a CRL record. */
void store_crl_free(struct store_crl *crl);
/** Free an array of CRL records. */
void store_crl_list_free(struct store_crl *crls, size_t n);

/* ---- users and roles ---- */

/**
 * Add a user with roles and an optional password hash. Refuses a name that
 * is not cg_valid_name or starts with '-', and one that differs only in case
 * from an existing user's (CG_EEXIST, naming it).
 * @return CG_OK, CG_EEXIST, CG_EINVAL (bad name or role), CG_EDB
 */
int store_user_add(struct store *s, const char *name, char *const *roles, size_t n_roles,
                   const char *password_hash, int64_t *out_id, struct cg_err *err);

/** Find a user by name. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_user_get(struct store *s, const char *name, struct store_user *out_user,
                   struct cg_err *err);

/** Find a user by id. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_user_get_by_id(struct store *s, int64_t id, struct store_user *out_user,
                         struct cg_err *err);

/** All users with their roles, ordered by name. @return CG_OK or CG_EDB */
int store_user_list(struct store *s, struct store_user **out_users, size_t *out_n,
                    struct cg_err *err);

/** Set the locked flag. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_user_set_locked(struct store *s, const char *name, bool is_locked, struct cg_err *err);

/** Replace a user's roles. @return CG_OK, CG_ENOTFOUND, CG_EINVAL, CG_EDB */
int store_user_set_roles(struct store *s, const char *name, char *const *roles, size_t n_roles,
                         struct cg_err *err);

/** Set or clear (NULL) the password hash. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_user_set_password(struct store *s, const char *name, const char *password_hash,
                            struct cg_err *err);

/** Delete a user, its roles and its mappings. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_user_delete(struct store *s, const char *name, struct cg_err *err);

/** Free the members of a user record. */
void store_user_free(struct store_user *user);
/** Free an array of user records. */
void store_user_list_free(struct store_user *users, size_t n);

/* ---- user-to-certificate mappings ---- */

/**
 * Insert a mapping (id and created_on are filled in).
 * @return CG_OK, CG_EEXIST (fingerprint already mapped, or identical rule), CG_EDB
 */
int store_map_insert(struct store *s, struct store_map *map, struct cg_err *err);

/** Find a mapping by id. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_map_get(struct store *s, int64_t id, struct store_map *out_map, struct cg_err *err);

/** Find a cert/pinned mapping by leaf fingerprint. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_map_get_by_fingerprint(struct store *s, const char *fingerprint,
                                 struct store_map *out_map, struct cg_err *err);

/**
 * Mappings, ordered by id; of one user when @p user_name is not NULL.
 * @return CG_OK, CG_ENOTFOUND (no such user), CG_EDB
 */
int store_map_list(struct store *s, const char *user_name, struct store_map **out_maps,
                   size_t *out_n, struct cg_err *err);

/** Delete a mapping. @return CG_OK, CG_ENOTFOUND, CG_EDB */
int store_map_delete(struct store *s, int64_t id, struct cg_err *err);

/** Free the members of a mapping record. */
void store_map_free(struct store_map *map);
/** Free an array of mapping records. */
void store_map_list_free(struct store_map *maps, size_t n);

/** Name of a mapping kind: "cert", "pinned", "rule". */
const char *store_map_kind_name(enum store_map_kind kind);

#endif
