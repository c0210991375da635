/*
 * identity: decides who the caller is, from verified certificate facts or
 * from HTTP Basic credentials, against a trust snapshot; remembers verified
 * passwords (as HMACs) and counts wrong ones per address (a limiter object
 * that the server owns). Relies on pki (pki_verify), trust, password, and
 * GnuTLS only for its HMAC and random numbers. Does not know about HTTP and
 * does not authorise (roles per resource are checked by the request
 * pipeline).
 */
#ifndef CG_IDENTITY_H
#define CG_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pki/pki.h"
#include "trust/trust.h"

/** Stable refusal reasons of design section 5 (X-Certgate-Reason, logs, check --json). */
enum auth_reason {
    AUTH_OK = 0,
    AUTH_NO_CREDENTIALS,
    AUTH_UNTRUSTED_ISSUER,
    AUTH_MISSING_INTERMEDIATE,
    AUTH_EXPIRED,
    AUTH_NOT_YET_VALID,
    AUTH_REVOKED,
    AUTH_SELF_SIGNED,
    AUTH_BAD_KEY_USAGE,
    AUTH_CA_DISABLED,
    AUTH_NOT_MAPPED,
    AUTH_USER_LOCKED,
    AUTH_BAD_PASSWORD,
    AUTH_CERT_REQUIRED,
    AUTH_ROLE_MISSING,
};

/** How the caller authenticated. */
enum auth_method {
    AUTH_METHOD_NONE,  /* not authenticated */
    AUTH_METHOD_CERT,  /* client certificate */
    AUTH_METHOD_BASIC, /* HTTP Basic */
};

/** Who the caller is, or why not. */
struct identity {
    enum auth_reason reason;  /* AUTH_OK when authenticated */
    char detail[1024];        /* the reason in words an integrator can act on (UTF-8) */
    enum auth_method method;  /* how it authenticated */
    int64_t user_id;          /* sys_user id, 0 when none */
    char *user;               /* user name, NULL when none */
    char **roles;             /* sorted role names */
    size_t n_roles;           /* count */
    bool has_cert;            /* a certificate was presented */
    struct pki_cert cert;     /* the leaf's facts when has_cert */
    int64_t mapping_id;       /* sys_user_certificate id that matched, 0 when none */
    const char *mapping_kind; /* "cert", "pinned", "rule" or NULL (static string) */
    int64_t issuer_ca_id;     /* CA table id of the leaf's issuer, 0 when none */
    bool crl_stale;           /* a CRL used was past its next update */
    char crl_issuer[256];     /* the issuer of that CRL, "" when none */
    int64_t valid_from;       /* the decision holds from this time ... */
    int64_t valid_until;      /* ... to this one: the chain's validity when accepted */
    int64_t trust_version;    /* snapshot version this was decided at */
};

/** Reason code as in design section 5 ("no_credentials", ...); "ok" for AUTH_OK. */
const char *auth_reason_code(enum auth_reason reason);

/** Name of a method: "certificate", "basic", "none". */
const char *auth_method_name(enum auth_method method);

/**
 * Resolve a client certificate: verify the chain (pki_verify, through the
 * snapshot's verdict cache keyed by the leaf's fingerprint, validity still
 * checked at @p now), accept a self-signed leaf only when pinned, then map it:
 * exact fingerprint mapping first, then rules bound to the issuing CA (cn, dn,
 * email, dns, uri, spki); the user must exist, be active and not locked.
 * The decision holds while the time stays in [valid_from, valid_until] and
 * the trust version stays the same: a caller that keeps it (a keep-alive
 * connection) decides again when either moved.
 * @param snap trust snapshot
 * @param leaf the client's leaf
 * @param sent other certificates the client sent (may be NULL)
 * @param n_sent their number
 * @param now validation time
 * @param out_id the identity or the refusal (free with identity_free)
 * @return CG_OK when a decision was made (see out_id->reason), negative on internal failure
 */
int identity_from_cert(const struct trust_snapshot *snap, const struct pki_cert *leaf,
                       const struct pki_cert *sent, size_t n_sent, int64_t now,
                       struct identity *out_id);

/* Basic credentials verified recently, as HMACs under a key of the
 * process; owned by whoever runs the server (one per server), sharded
 * locks, fixed size. */
struct identity_basic_cache;

/** A new, empty cache. @return CG_OK, CG_ENOMEM, CG_ERR (no random key) */
int identity_basic_cache_new(struct identity_basic_cache **out_cache);

/** Free a cache (NULL: nothing); its keys and entries are wiped. */
void identity_basic_cache_free(struct identity_basic_cache *cache);

/**
 * Resolve HTTP Basic credentials: the user must exist, have a password, be
 * active and not locked, and the password must verify (constant time; this
 * runs the slow KDF, about 0.25 s). A success is remembered in @p cache
 * (see identity_from_basic_cached).
 * @param cache where verified credentials are remembered; NULL: nowhere
 * @return CG_OK when a decision was made, negative on internal failure
 */
int identity_from_basic(const struct trust_snapshot *snap, struct identity_basic_cache *cache,
                        const char *user, const char *password, size_t password_len,
                        struct identity *out_id);

/**
 * The decision for Basic credentials that identity_from_basic accepted at
 * the same trust version less than five minutes ago, without the KDF. The
 * credentials are remembered only as an HMAC-SHA256 under a random key of
 * this process, never in clear.
 * @return CG_OK with @p out_id filled, or CG_ENOTFOUND (run identity_from_basic)
 */
int identity_from_basic_cached(const struct trust_snapshot *snap,
                               struct identity_basic_cache *cache, const char *user,
                               const char *password, size_t password_len, struct identity *out_id);

/** Failed password checks from one address within a minute that bar it. */
#define IDENTITY_MAX_FAILURES 10
/** How long such an address is barred from password checks, in seconds. */
#define IDENTITY_BAR_SECONDS 60
/** Addresses a limiter remembers by default; the least recently seen goes first. */
#define IDENTITY_LIMITER_ADDRESSES 4096

/**
 * Wrong passwords counted per client address, exactly (the whole address
 * is the key), in bounded memory. A check is counted from when it begins:
 * at most IDENTITY_MAX_FAILURES checks of one address are ever under way or
 * failed within a minute, so no more wrong passwords than that are tried
 * before the bar, however many arrive at once. One object per server; the
 * functions are thread-safe.
 */
struct identity_limiter;

/**
 * A limiter remembering @p capacity addresses at most (0: the default);
 * when full, the address seen least recently with no check under way is
 * forgotten.
 * @return CG_OK or CG_ENOMEM
 */
int identity_limiter_new(size_t capacity, struct identity_limiter **out_lim);

/** Free a limiter; NULL is allowed. */
void identity_limiter_free(struct identity_limiter *lim);

/**
 * Whether @p addr is barred from password checks now.
 * @param addr the client's address, as text
 * @param now seconds (any monotonic clock)
 * @return 0 when it is not, else the seconds its bar still lasts
 */
unsigned identity_limiter_barred(struct identity_limiter *lim, const char *addr, int64_t now);

/** What identity_limiter_begin decided. */
enum identity_limit {
    IDENTITY_LIMIT_GO,     /* run the check; end it with identity_limiter_end */
    IDENTITY_LIMIT_WAIT,   /* checks under way may bar the address: ask again after one ends */
    IDENTITY_LIMIT_BARRED, /* refuse without a check */
};

/**
 * Begin a password check for @p addr: allowed while the wrong passwords of
 * its current minute plus the checks under way stay below the limit.
 * @param out_seconds with IDENTITY_LIMIT_BARRED: the seconds the bar lasts
 */
enum identity_limit identity_limiter_begin(struct identity_limiter *lim, const char *addr,
                                           int64_t now, unsigned *out_seconds);

/**
 * End a check that identity_limiter_begin allowed.
 * @param failed the password was wrong (or the user unknown)
 * @return true when this failure bars the address
 */
bool identity_limiter_end(struct identity_limiter *lim, const char *addr, int64_t now, bool failed);

/**
 * Whether a rule mapping's field and value (cn, dn, email, dns, uri, spki)
 * match a certificate; the rule's CA binding and active flag are not looked at.
 * @param m a STORE_MAP_RULE mapping
 * @param c the certificate's facts
 * @return true when the rule matches
 */
bool identity_rule_matches(const struct store_map *m, const struct pki_cert *c);

/** Who reads identity_json. */
enum identity_json_form {
    IDENTITY_JSON_WHOAMI, /* GET whoami: "user", the certificate with its validity and mapping */
    IDENTITY_JSON_SCRIPT, /* a script's request.user: "name", the certificate's expiry */
};

/**
 * The caller as JSON, the one place that spells it: name, roles, how it
 * authenticated and its certificate (null for Basic).
 * @param id the caller; NULL (IDENTITY_JSON_SCRIPT only): an anonymous caller
 * @return a new object, NULL when out of memory
 */
json_t *identity_json(const struct identity *id, enum identity_json_form form);

/** Whether the identity holds at least one of @p roles (none listed: true). */
bool identity_has_any_role(const struct identity *id, char *const *roles, size_t n_roles);

/** Free the members of an identity. */
void identity_free(struct identity *id);

#endif
