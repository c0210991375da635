#include "config.h"
#include "trust/trust.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/log.h"

/* How often the holder reads the trust version: on SQLite (nothing
 * announces a change the CLI made from another process) and while a
 * PostgreSQL connection is down. */
#define POLL_MS 200
/* On PostgreSQL changes are announced (LISTEN/NOTIFY, schema 005) and
 * applied at once; the version is still read this often, in case a
 * connection pooler between certgate and the server drops
 * announcements. */
#define LISTEN_POLL_MS 500
/* Verdict cache: entries and lock shards. */
#define CACHE_SLOTS 4096
#define CACHE_SHARDS 16

/* One remembered trusted chain: enough to skip pki_verify for a client that
 * reconnects with the same certificates. */
struct cache_entry {
    char key[65];         /* hash of the presented fingerprints, "" when empty */
    int64_t issuer_ca_id; /* from the verdict */
    int64_t root_ca_id;   /* from the verdict */
    char issuer_spki[65]; /* from the verdict */
    int64_t valid_from;   /* chain validity window: from */
    int64_t valid_until;  /* ... until */
    bool crl_stale;       /* from the verdict */
    char crl_issuer[256]; /* issuer of the stale CRL */
};

struct trust_cache {
    pthread_mutex_t locks[CACHE_SHARDS];   /* one per shard */
    struct cache_entry slots[CACHE_SLOTS]; /* direct-mapped by key */
    uint64_t hits, misses;                 /* counters (atomic) */
};

static unsigned slot_of(const char key[65])
{
    unsigned v = 0;

    for (int i = 0; i < 8; i++) {
        char c = key[i];

        v = (v << 4) | (unsigned)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    return v % CACHE_SLOTS;
}

bool trust_cache_get(const struct trust_snapshot *snap, const char key[65], int64_t now,
                     struct pki_verdict *out_verdict)
{
    struct trust_cache *c = snap->cache;
    unsigned slot = slot_of(key);
    pthread_mutex_t *lock;
    bool hit = false;

    if (!c)
        return false;
    lock = &c->locks[slot % CACHE_SHARDS];
    pthread_mutex_lock(lock);
    if (strcmp(c->slots[slot].key, key) == 0 && now >= c->slots[slot].valid_from &&
        now <= c->slots[slot].valid_until) {
        memset(out_verdict, 0, sizeof(*out_verdict));
        out_verdict->reason = PKI_OK;
        out_verdict->issuer_ca_id = c->slots[slot].issuer_ca_id;
        out_verdict->root_ca_id = c->slots[slot].root_ca_id;
        memcpy(out_verdict->issuer_spki, c->slots[slot].issuer_spki,
               sizeof(out_verdict->issuer_spki));
        out_verdict->crl_stale = c->slots[slot].crl_stale;
        memcpy(out_verdict->stale_crl_issuer, c->slots[slot].crl_issuer,
               sizeof(out_verdict->stale_crl_issuer));
        out_verdict->valid_from = c->slots[slot].valid_from;
        out_verdict->valid_until = c->slots[slot].valid_until;
        hit = true;
    }
    pthread_mutex_unlock(lock);
    __atomic_add_fetch(hit ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
    return hit;
}

void trust_cache_put(const struct trust_snapshot *snap, const char key[65],
                     const struct pki_verdict *v)
{
    struct trust_cache *c = snap->cache;
    unsigned slot = slot_of(key);
    pthread_mutex_t *lock;

    if (!c || v->reason != PKI_OK)
        return;
    lock = &c->locks[slot % CACHE_SHARDS];
    pthread_mutex_lock(lock);
    snprintf(c->slots[slot].key, sizeof(c->slots[slot].key), "%s", key);
    c->slots[slot].issuer_ca_id = v->issuer_ca_id;
    c->slots[slot].root_ca_id = v->root_ca_id;
    memcpy(c->slots[slot].issuer_spki, v->issuer_spki, sizeof(c->slots[slot].issuer_spki));
    c->slots[slot].valid_from = v->valid_from;
    c->slots[slot].valid_until = v->valid_until;
    c->slots[slot].crl_stale = v->crl_stale;
    snprintf(c->slots[slot].crl_issuer, sizeof(c->slots[slot].crl_issuer), "%s",
             v->stale_crl_issuer);
    pthread_mutex_unlock(lock);
}

void trust_cache_stats(const struct trust_snapshot *snap, uint64_t *out_hits, uint64_t *out_misses)
{
    *out_hits = snap->cache ? __atomic_load_n(&snap->cache->hits, __ATOMIC_RELAXED) : 0;
    *out_misses = snap->cache ? __atomic_load_n(&snap->cache->misses, __ATOMIC_RELAXED) : 0;
}

static void snapshot_free(struct trust_snapshot *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->pki.n_cas; i++)
        pki_cert_free(&snap->pki.cas[i].cert);
    free(snap->pki.cas);
    for (size_t i = 0; i < snap->pki.n_crls; i++)
        pki_crl_free(&snap->pki.crls[i].crl);
    free(snap->pki.crls);
    for (size_t i = 0; i < snap->pki.n_deleted; i++)
        free(snap->pki.deleted[i].subject);
    free(snap->pki.deleted);
    for (size_t i = 0; i < snap->n_users; i++) {
        free(snap->users[i].name);
        free(snap->users[i].password_hash);
        cg_strv_free(snap->users[i].roles, snap->users[i].n_roles);
    }
    free(snap->users);
    store_map_list_free(snap->maps, snap->n_maps);
    if (snap->cache) {
        for (int i = 0; i < CACHE_SHARDS; i++)
            pthread_mutex_destroy(&snap->cache->locks[i]);
        free(snap->cache);
    }
    free(snap);
}

void trust_release(struct trust_snapshot *snap)
{
    if (snap && __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) == 0)
        snapshot_free(snap);
}

static int load_cas(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_ca *cas = NULL;
    size_t n = 0;
    int rc = store_ca_list(s, &cas, &n, err);

    if (rc)
        return rc;
    snap->pki.cas = calloc(n ? n : 1, sizeof(*snap->pki.cas));
    if (!snap->pki.cas) {
        store_ca_list_free(cas, n);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct pki_trust_ca *t = &snap->pki.cas[snap->pki.n_cas];

        /* A record that no longer parses cannot anchor anything: skip it. */
        if (pki_cert_from_der(cas[i].der, cas[i].der_len, &t->cert))
            continue;
        t->id = cas[i].id;
        t->is_active = cas[i].is_active;
        snap->pki.n_cas++;
    }
    store_ca_list_free(cas, n);
    return CG_OK;
}

static int load_crls(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_crl *crls = NULL;
    size_t n = 0;
    int rc = store_crl_list(s, &crls, &n, err);

    if (rc)
        return rc;
    snap->pki.crls = calloc(n ? n : 1, sizeof(*snap->pki.crls));
    if (!snap->pki.crls) {
        store_crl_list_free(crls, n);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct pki_trust_crl *t = &snap->pki.crls[snap->pki.n_crls];

        /* A CRL loaded before certgate refused partial ones still applies:
         * applying its entries only ever refuses more. */
        if (pki_parse_crl((const char *)crls[i].der, crls[i].der_len, &t->crl, NULL))
            continue;
        memcpy(t->signer_spki, crls[i].signer_spki, sizeof(t->signer_spki));
        snap->pki.n_crls++;
    }
    store_crl_list_free(crls, n);
    return CG_OK;
}

static int load_deleted(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_ca_deleted *list = NULL;
    size_t n = 0;
    int rc = store_ca_deleted_list(s, &list, &n, err);

    if (rc)
        return rc;
    snap->pki.deleted = calloc(n ? n : 1, sizeof(*snap->pki.deleted));
    if (!snap->pki.deleted) {
        store_ca_deleted_list_free(list, n);
        return CG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct pki_trust_deleted *d = &snap->pki.deleted[i];

        memcpy(d->spki_sha256, list[i].spki_sha256, sizeof(d->spki_sha256));
        d->subject = list[i].subject;
        list[i].subject = NULL;
        d->deleted_at = list[i].deleted_at;
    }
    snap->pki.n_deleted = n;
    store_ca_deleted_list_free(list, n);
    return CG_OK;
}

static int load_users(struct store *s, struct trust_snapshot *snap, struct cg_err *err)
{
    struct store_user *users = NULL;
    size_t n = 0;
    int rc = store_user_list(s, &users, &n, err);

    if (rc)
        return rc;
    snap->users = calloc(n ? n : 1, sizeof(*snap->users));
    if (!snap->users) {
        store_user_list_free(users, n);
        return CG_ENOMEM;
    }
    /* Move the strings over; store_user_list returns them sorted by name. */
    for (size_t i = 0; i < n; i++) {
        struct trust_user *u = &snap->users[i];

        u->id = users[i].id;
        u->name = users[i].name;
        u->is_active = users[i].is_active;
        u->is_locked = users[i].is_locked;
        u->password_hash = users[i].password_hash;
        u->roles = users[i].roles;
        u->n_roles = users[i].n_roles;
        memset(&users[i], 0, sizeof(users[i]));
    }
    snap->n_users = n;
    store_user_list_free(users, n);
    return CG_OK;
}

int trust_load(struct store *s, struct trust_snapshot **out_snap, struct cg_err *err)
{
    struct trust_snapshot *snap = calloc(1, sizeof(*snap));
    int rc;

    if (!snap)
        return CG_ENOMEM;
    /* One read transaction: the version and every table come from the same
     * snapshot of the database, whatever the CLI commits meanwhile. */
    rc = store_read_begin(s, err);
    if (rc) {
        free(snap);
        return rc;
    }
    rc = store_trust_version(s, &snap->version);
    if (rc == CG_OK)
        rc = load_cas(s, snap, err);
    if (rc == CG_OK)
        rc = load_crls(s, snap, err);
    if (rc == CG_OK)
        rc = load_deleted(s, snap, err);
    if (rc == CG_OK)
        rc = load_users(s, snap, err);
    if (rc == CG_OK)
        rc = store_map_list(s, NULL, &snap->maps, &snap->n_maps, err);
    store_rollback(s); /* read only: nothing to keep */
    if (rc) {
        snapshot_free(snap);
        return rc;
    }
    snap->refs = 1;
    snap->cache = calloc(1, sizeof(*snap->cache));
    if (snap->cache) {
        for (int i = 0; i < CACHE_SHARDS; i++)
            pthread_mutex_init(&snap->cache->locks[i], NULL);
    }
    *out_snap = snap;
    return CG_OK;
}

const struct trust_user *trust_find_user(const struct trust_snapshot *snap, const char *name)
{
    size_t lo = 0, hi = snap->n_users;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(snap->users[mid].name, name);

        if (c == 0)
            return &snap->users[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct trust_user *trust_find_user_id(const struct trust_snapshot *snap, int64_t id)
{
    for (size_t i = 0; i < snap->n_users; i++) {
        if (snap->users[i].id == id)
            return &snap->users[i];
    }
    return NULL;
}

/* ---- the holder: current snapshot, swapped when the database changes ---- */

struct trust_holder {
    char *db_path;              /* the database, as messages name it (no password) */
    struct store *store;        /* read-only connection of the poller */
    pthread_mutex_t lock;       /* guards cur for acquire/swap (per connection, not request) */
    struct trust_snapshot *cur; /* current snapshot, one reference held by the holder */
    int64_t version;            /* cur->version, read lock-free (atomic) */
    pthread_t thread;           /* the poller */
    int wake_fd;                /* eventfd: wakes the poller at shutdown */
    bool stopping;              /* poller should exit (atomic) */
    bool has_thread;            /* thread was started */
    bool warned;                /* a reload failure was already logged */
};

int64_t trust_holder_version(struct trust_holder *h)
{
    return __atomic_load_n(&h->version, __ATOMIC_ACQUIRE);
}

struct trust_snapshot *trust_holder_acquire(struct trust_holder *h)
{
    struct trust_snapshot *snap;

    pthread_mutex_lock(&h->lock);
    snap = h->cur;
    __atomic_add_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&h->lock);
    return snap;
}

/* A CRL past its next update still applies (design section 2), but never
 * silently: one line per stale CRL each time a trust version is loaded. */
static void warn_stale_crls(const struct trust_snapshot *snap)
{
    int64_t now = cg_now();

    for (size_t i = 0; i < snap->pki.n_crls; i++) {
        const struct pki_crl *crl = &snap->pki.crls[i].crl;
        char when[21];

        if (!crl->next_update || crl->next_update >= now)
            continue;
        cg_time_iso(crl->next_update, when);
        log_event("crl_stale",
                  json_pack("{s:s, s:o, s:s, s:I, s:s}", "signer_spki",
                            snap->pki.crls[i].signer_spki, "crl_issuer", utf8_json(crl->issuer),
                            "next_update", when, "trust_version", (json_int_t)snap->version,
                            "detail",
                            "a CRL is past its next update; it still applies: load a fresh one "
                            "with certgate crl add"));
    }
}

/* Reloads when the version moved; @p via says what made it look ("notify",
 * "poll"), for the log line of a reload; NULL: no line. */
static int refresh(struct trust_holder *h, const char *via, struct cg_err *err)
{
    struct trust_snapshot *snap = NULL, *old;
    int64_t v = 0;
    int rc;

    rc = store_trust_version(h->store, &v);
    if (rc) {
        cg_err_set(err, "cannot read the trust version of %s", h->db_path);
        return rc;
    }
    if (v == trust_holder_version(h))
        return CG_OK;
    rc = trust_load(h->store, &snap, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->lock);
    old = h->cur;
    h->cur = snap;
    __atomic_store_n(&h->version, snap->version, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->lock);
    trust_release(old);
    if (via)
        log_event("trust_reloaded",
                  json_pack("{s:I, s:s}", "trust_version", (json_int_t)snap->version, "via", via));
    warn_stale_crls(snap);
    return CG_OK;
}

int trust_holder_refresh(struct trust_holder *h, struct cg_err *err)
{
    return refresh(h, NULL, err);
}

/* Sleeps @p ms, or less when trust_holder_free wakes it. */
static void nap(struct trust_holder *h, int ms)
{
    struct pollfd p = {.fd = h->wake_fd, .events = POLLIN};

    (void)poll(&p, 1, ms);
}

static void *poller(void *arg)
{
    struct trust_holder *h = arg;
    int wait_ms = POLL_MS;

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-trust");

    while (!__atomic_load_n(&h->stopping, __ATOMIC_ACQUIRE)) {
        struct cg_err err = {""};
        int rc = store_wait_change(h->store, wait_ms, h->wake_fd);

        /* Announced (PostgreSQL), or time to look anyway; SQLite and a
         * lost connection announce nothing: poll. */
        if (rc == CG_ENOTSUP || rc == CG_EDB)
            nap(h, POLL_MS);
        wait_ms = rc >= 0 ? LISTEN_POLL_MS : POLL_MS;
        if (__atomic_load_n(&h->stopping, __ATOMIC_ACQUIRE))
            break;
        if (refresh(h, rc == 1 ? "notify" : "poll", &err)) {
            /* Keep serving with the last good snapshot; say so once. */
            if (!h->warned)
                log_event("trust_reload_failed", json_pack("{s:o}", "detail", utf8_json(err.msg)));
            h->warned = true;
        } else {
            h->warned = false;
        }
    }
    return NULL;
}

int trust_holder_new(const char *db_path, struct trust_holder **out_holder, struct cg_err *err)
{
    struct trust_holder *h = calloc(1, sizeof(*h));
    int rc;

    if (!h)
        return CG_ENOMEM;
    pthread_mutex_init(&h->lock, NULL);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0) {
        cg_err_set(err, "cannot create the trust poller's eventfd: %s", strerror(errno));
        rc = CG_ERR;
        goto fail;
    }
    h->db_path = store_display_name(db_path);
    if (!h->db_path) {
        rc = CG_ENOMEM;
        goto fail;
    }
    rc = store_open(db_path, STORE_OPEN_READONLY, &h->store, err);
    if (rc)
        goto fail;
    rc = trust_load(h->store, &h->cur, err);
    if (rc)
        goto fail;
    h->version = h->cur->version;
    warn_stale_crls(h->cur);
    if (pthread_create(&h->thread, NULL, poller, h) != 0) {
        cg_err_set(err, "cannot start the trust poller thread");
        rc = CG_ERR;
        goto fail;
    }
    h->has_thread = true;
    *out_holder = h;
    return CG_OK;
fail:
    trust_holder_free(h);
    return rc;
}

void trust_holder_free(struct trust_holder *h)
{
    if (!h)
        return;
    if (h->has_thread) {
        uint64_t one = 1;

        __atomic_store_n(&h->stopping, true, __ATOMIC_RELEASE);
        if (write(h->wake_fd, &one, sizeof(one)) != sizeof(one))
            abort(); /* an eventfd write fails only on overflow */
        pthread_join(h->thread, NULL);
    }
    trust_release(h->cur);
    store_close(h->store);
    free(h->db_path);
    pthread_mutex_destroy(&h->lock);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    free(h);
}
