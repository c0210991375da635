/*
 * trust: an immutable in-memory snapshot of the trust data (CA table, CRLs,
 * users, roles, mappings) and the holder that swaps it atomically when the
 * database changes. Relies on store (to load) and pki (parsed certificates).
 * Does not decide anything: pki verifies chains, identity maps callers.
 * Readers never take a lock on the request path: they compare
 * trust_holder_version() with the version they hold and re-acquire only when
 * it moved.
 */
#ifndef CG_TRUST_H
#define CG_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pki/pki.h"
#include "db/store.h"
#include "base/util.h"

/** A user as the authentication path needs it. */
struct trust_user {
    int64_t id;          /* sys_user id */
    char *name;          /* user name */
    bool is_active;      /* active flag */
    bool is_locked;      /* locked flag */
    char *password_hash; /* encoded hash, NULL when no password */
    char **roles;        /* sorted role names */
    size_t n_roles;      /* count */
};

struct trust_cache; /* verdict cache, private to trust.c / identity.c */

/** One immutable snapshot; shared by threads, freed when the last reference goes. */
struct trust_snapshot {
    int64_t version;           /* store trust_version it was loaded at */
    struct pki_trust pki;      /* CA table (parsed) and CRLs (parsed) */
    struct trust_user *users;  /* users sorted by name */
    size_t n_users;            /* count */
    struct store_map *maps;    /* all mappings (cert, pinned, rule) */
    size_t n_maps;             /* count */
    struct trust_cache *cache; /* chain verdicts by leaf fingerprint (thread-safe) */
    int refs;                  /* reference count, atomic */
};

/**
 * Load a snapshot from an open store (used by `certgate check` and the holder).
 * A stored CA or CRL that no longer parses is skipped and reported in @p err as a
 * warning only when nothing else failed.
 * @param out_snap new snapshot with one reference (release with trust_release)
 * @return CG_OK or CG_EDB / CG_ENOMEM
 */
int trust_load(struct store *s, struct trust_snapshot **out_snap, struct cg_err *err);

/** Drop one reference; frees the snapshot when it was the last. NULL is allowed. */
void trust_release(struct trust_snapshot *snap);

/**
 * A cached trusted-chain verdict for @p key (the leaf's and the sent
 * certificates' fingerprints, hashed), valid at @p now.
 * @return true on a hit (out_verdict filled: reason, issuer/root ids, stale flag)
 */
bool trust_cache_get(const struct trust_snapshot *snap, const char key[65], int64_t now,
                     struct pki_verdict *out_verdict);

/** Remember a PKI_OK verdict for @p key (others are not cached). */
void trust_cache_put(const struct trust_snapshot *snap, const char key[65],
                     const struct pki_verdict *v);

/** Hits and misses so far, for tests and the log. */
void trust_cache_stats(const struct trust_snapshot *snap, uint64_t *out_hits, uint64_t *out_misses);

/**
 * Find a user by name in a snapshot.
 * @return the user or NULL
 */
const struct trust_user *trust_find_user(const struct trust_snapshot *snap, const char *name);

/**
 * Find a user by id in a snapshot.
 * @return the user or NULL
 */
const struct trust_user *trust_find_user_id(const struct trust_snapshot *snap, int64_t id);

struct trust_holder;

/**
 * Create a holder: opens its own read-only store connection on @p db_path,
 * loads the first snapshot, and starts a thread that swaps in a new snapshot
 * when the trust version changed: on PostgreSQL as soon as a change is
 * announced (LISTEN/NOTIFY), with a read every 500 ms besides; on SQLite,
 * and while the connection is down, read every 200 ms.
 * @return CG_OK or the store's error
 */
int trust_holder_new(const char *db_path, struct trust_holder **out_holder, struct cg_err *err);

/** Stop the thread and free the holder (snapshots still referenced survive). */
void trust_holder_free(struct trust_holder *h);

/**
 * Version of the current snapshot; a lock-free atomic read, cheap enough for
 * every request.
 */
int64_t trust_holder_version(struct trust_holder *h);

/**
 * Take a reference to the current snapshot (release with trust_release).
 * @return the snapshot, never NULL after a successful trust_holder_new
 */
struct trust_snapshot *trust_holder_acquire(struct trust_holder *h);

/** Reload now if the database changed (the poller calls this); for tests. */
int trust_holder_refresh(struct trust_holder *h, struct cg_err *err);

#endif
