#include "config.h"
#include "auth/identity.h"
#include "base/crypto.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <strings.h>
#include <time.h>

#include "base/error.h"
#include "auth/password.h"

static const char *const reason_codes[] = {
    [AUTH_OK] = "ok",
    [AUTH_NO_CREDENTIALS] = "no_credentials",
    [AUTH_UNTRUSTED_ISSUER] = "untrusted_issuer",
    [AUTH_MISSING_INTERMEDIATE] = "missing_intermediate",
    [AUTH_EXPIRED] = "expired",
    [AUTH_NOT_YET_VALID] = "not_yet_valid",
    [AUTH_REVOKED] = "revoked",
    [AUTH_SELF_SIGNED] = "self_signed",
    [AUTH_BAD_KEY_USAGE] = "bad_key_usage",
    [AUTH_CA_DISABLED] = "ca_disabled",
    [AUTH_NOT_MAPPED] = "not_mapped",
    [AUTH_USER_LOCKED] = "user_locked",
    [AUTH_BAD_PASSWORD] = "bad_password",
    [AUTH_CERT_REQUIRED] = "cert_required",
    [AUTH_ROLE_MISSING] = "role_missing",
};

const char *auth_reason_code(enum auth_reason reason)
{
    return (unsigned)reason < sizeof(reason_codes) / sizeof(reason_codes[0]) ? reason_codes[reason]
                                                                             : "unknown";
}

const char *auth_method_name(enum auth_method method)
{
    switch (method) {
    case AUTH_METHOD_CERT: return "certificate";
    case AUTH_METHOD_BASIC: return "basic";
    default: return "none";
    }
}

static enum auth_reason from_pki(enum pki_reason r)
{
    switch (r) {
    case PKI_OK: return AUTH_OK;
    case PKI_UNTRUSTED_ISSUER: return AUTH_UNTRUSTED_ISSUER;
    case PKI_MISSING_INTERMEDIATE: return AUTH_MISSING_INTERMEDIATE;
    case PKI_EXPIRED: return AUTH_EXPIRED;
    case PKI_NOT_YET_VALID: return AUTH_NOT_YET_VALID;
    case PKI_REVOKED: return AUTH_REVOKED;
    case PKI_SELF_SIGNED: return AUTH_SELF_SIGNED;
    case PKI_BAD_KEY_USAGE: return AUTH_BAD_KEY_USAGE;
    case PKI_CA_DISABLED: return AUTH_CA_DISABLED;
    }
    return AUTH_UNTRUSTED_ISSUER;
}

static int set_user(struct identity *id, const struct trust_user *u, enum auth_method method)
{
    id->method = method;
    id->user_id = u->id;
    id->user = strdup(u->name);
    if (!id->user)
        return CG_ENOMEM;
    if (u->n_roles) {
        id->roles = calloc(u->n_roles, sizeof(char *));
        if (!id->roles)
            return CG_ENOMEM;
        for (size_t i = 0; i < u->n_roles; i++) {
            id->roles[i] = strdup(u->roles[i]);
            if (!id->roles[i])
                return CG_ENOMEM;
            id->n_roles++;
        }
    }
    return CG_OK;
}

static void refuse(struct identity *id, enum auth_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail is cut on a character boundary: certificate names are UTF-8,
 * and half a character would make the text invalid for JSON. */
static void refuse(struct identity *id, enum auth_reason reason, const char *fmt, ...)
{
    va_list ap;

    id->reason = reason;
    va_start(ap, fmt);
    vsnprintf(id->detail, sizeof(id->detail), fmt, ap);
    va_end(ap);
    utf8_trim(id->detail);
}

static bool any_eq(char *const *v, size_t n, const char *value, bool nocase)
{
    for (size_t i = 0; i < n; i++) {
        if (nocase ? strcasecmp(v[i], value) == 0 : strcmp(v[i], value) == 0)
            return true;
    }
    return false;
}

bool identity_rule_matches(const struct store_map *m, const struct pki_cert *c)
{
    const char *f = m->match_field, *v = m->match_value;

    if (strcmp(f, "cn") == 0)
        return c->cn && strcmp(c->cn, v) == 0;
    if (strcmp(f, "dn") == 0)
        return c->subject && strcmp(c->subject, v) == 0;
    if (strcmp(f, "email") == 0)
        return any_eq(c->san_email, c->n_san_email, v, true);
    if (strcmp(f, "dns") == 0)
        return any_eq(c->san_dns, c->n_san_dns, v, true);
    if (strcmp(f, "uri") == 0)
        return any_eq(c->san_uri, c->n_san_uri, v, false);
    if (strcmp(f, "spki") == 0)
        return strcasecmp(c->spki_sha256, v) == 0;
    return false;
}

/* Exact mapping by fingerprint (kinds cert and pinned). */
static const struct store_map *find_exact(const struct trust_snapshot *snap, const char *fp)
{
    for (size_t i = 0; i < snap->n_maps; i++) {
        const struct store_map *m = &snap->maps[i];

        if (m->kind != STORE_MAP_RULE && m->is_active && strcmp(m->fingerprint, fp) == 0)
            return m;
    }
    return NULL;
}

/* Whether table record @p ca_id is a copy of the CA that signed @p c with
 * the key @p issuer_spki: a rule is bound to a CA, not to one certificate of
 * it, so a renewed or cross-signed copy on the path matches it too. */
static bool rule_ca_issued(const struct trust_snapshot *snap, int64_t ca_id,
                           const char *issuer_spki, const struct pki_cert *c)
{
    for (size_t i = 0; i < snap->pki.n_cas; i++) {
        const struct pki_cert *ca = &snap->pki.cas[i].cert;

        if (snap->pki.cas[i].id == ca_id)
            return strcmp(ca->spki_sha256, issuer_spki) == 0 && ca->subject &&
                   strcmp(ca->subject, c->issuer) == 0;
    }
    return false;
}

static const struct store_map *find_rule(const struct trust_snapshot *snap,
                                         const struct pki_verdict *v, const struct pki_cert *c)
{
    if (!v->issuer_spki[0])
        return NULL;
    for (size_t i = 0; i < snap->n_maps; i++) {
        const struct store_map *m = &snap->maps[i];

        if (m->kind == STORE_MAP_RULE && m->is_active && identity_rule_matches(m, c) &&
            rule_ca_issued(snap, m->ca_id, v->issuer_spki, c))
            return m;
    }
    return NULL;
}

static int map_user(const struct trust_snapshot *snap, const struct store_map *m,
                    struct identity *id)
{
    const struct trust_user *u = trust_find_user_id(snap, m->user_id);

    if (!u) {
        refuse(id, AUTH_NOT_MAPPED, "the certificate's user no longer exists");
        return CG_OK;
    }
    id->mapping_id = m->id;
    id->mapping_kind = store_map_kind_name(m->kind);
    if (u->is_locked || !u->is_active) {
        refuse(id, AUTH_USER_LOCKED, "user %s is locked: an admin can run certgate user unlock %s",
               u->name, u->name);
        return CG_OK;
    }
    id->reason = AUTH_OK;
    snprintf(id->detail, sizeof(id->detail), "mapped to user %s", u->name);
    return set_user(id, u, AUTH_METHOD_CERT);
}

int identity_from_cert(const struct trust_snapshot *snap, const struct pki_cert *leaf,
                       const struct pki_cert *sent, size_t n_sent, int64_t now,
                       struct identity *out_id)
{
    struct identity *id = out_id;
    const struct store_map *m;
    struct pki_verdict v;
    char key[65];
    int rc;

    memset(id, 0, sizeof(*id));
    id->trust_version = snap->version;
    id->method = AUTH_METHOD_NONE;
    id->valid_from = INT64_MIN;
    id->valid_until = INT64_MAX;
    rc = pki_cert_copy(leaf, &id->cert);
    if (rc)
        return rc;
    id->has_cert = true;
    /* A client that reconnects with the same certificates costs only its
     * handshake: the chain verdict is cached per trust version (the cache
     * lives in the snapshot) and the validity window is still checked. */
    pki_chain_key(leaf, sent, n_sent, key);
    if (!trust_cache_get(snap, key, now, &v)) {
        rc = pki_verify(&snap->pki, leaf, sent, n_sent, now, &v);
        if (rc)
            return rc;
        trust_cache_put(snap, key, &v);
    }
    id->issuer_ca_id = v.issuer_ca_id;
    id->crl_stale = v.crl_stale;
    if (v.crl_stale) {
        snprintf(id->crl_issuer, sizeof(id->crl_issuer), "%s", v.stale_crl_issuer);
        utf8_trim(id->crl_issuer);
    }
    if (v.reason == PKI_SELF_SIGNED) {
        m = find_exact(snap, leaf->fingerprint);
        if (m && m->kind == STORE_MAP_PINNED) {
            id->valid_from = leaf->not_before;
            id->valid_until = leaf->not_after;
            return map_user(snap, m, id);
        }
        refuse(id, AUTH_SELF_SIGNED, "%s", v.detail);
        return CG_OK;
    }
    if (v.reason != PKI_OK) {
        /* Not valid yet: decide again in the next second, it may be by then. */
        if (v.reason == PKI_NOT_YET_VALID)
            id->valid_until = now;
        refuse(id, from_pki(v.reason), "%s", v.detail);
        return CG_OK;
    }
    id->valid_from = v.valid_from;
    id->valid_until = v.valid_until;
    m = find_exact(snap, leaf->fingerprint);
    if (m && m->kind == STORE_MAP_PINNED)
        m = NULL; /* a pinned mapping is for the self-signed path only */
    if (!m)
        m = find_rule(snap, &v, leaf);
    if (!m) {
        /* What to do comes first, the names last: a long subject may be
         * cut, the fix and the fingerprint never are. */
        refuse(id, AUTH_NOT_MAPPED,
               "the certificate is trusted but not mapped to a user: an admin can run certgate "
               "cert map USER CERT.pem, or certgate cert rule USER --ca %lld --match cn=%s "
               "(SHA-256 %s, subject '%s', issuer '%s')",
               (long long)v.issuer_ca_id, leaf->cn && strlen(leaf->cn) <= 64 ? leaf->cn : "CN",
               leaf->fingerprint, leaf->subject, leaf->issuer);
        return CG_OK;
    }
    return map_user(snap, m, id);
}

/* ---- verified Basic credentials, remembered ---- */

#define BASIC_SLOTS 1024
#define BASIC_SHARDS 16
#define BASIC_SECONDS 300

struct basic_entry {
    unsigned char mac[32]; /* HMAC-SHA256(key, user NUL password) */
    int64_t trust_version; /* the version it was verified at, 0: empty */
    int64_t until;         /* monotonic seconds it is good until */
};

struct identity_basic_cache {
    unsigned char key[32];                 /* random, this process only */
    pthread_mutex_t locks[BASIC_SHARDS];   /* one per shard */
    struct basic_entry slots[BASIC_SLOTS]; /* direct-mapped by the MAC */
};

int identity_basic_cache_new(struct identity_basic_cache **out_cache)
{
    struct identity_basic_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return CG_ENOMEM;
    if (crypto_random(c->key, sizeof(c->key), true)) {
        free(c);
        return CG_ERR;
    }
    for (int i = 0; i < BASIC_SHARDS; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    *out_cache = c;
    return CG_OK;
}

void identity_basic_cache_free(struct identity_basic_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < BASIC_SHARDS; i++)
        pthread_mutex_destroy(&c->locks[i]);
    crypto_wipe(c, sizeof(*c));
    free(c);
}

/* The MAC of the credentials and their slot; false when there is no cache. */
static bool basic_mac(struct identity_basic_cache *c, const char *user, const char *password,
                      size_t len, unsigned char mac[32], unsigned *out_slot)
{
    struct crypto_hash h;

    if (!c || crypto_hmac_sha256_begin(&h, c->key, sizeof(c->key)))
        return false;
    crypto_hash_update(&h, user, strlen(user) + 1);
    crypto_hash_update(&h, password, len);
    crypto_hash_end(&h, mac);
    *out_slot = ((unsigned)mac[0] << 8 | mac[1]) % BASIC_SLOTS;
    return true;
}

static void basic_remember(struct identity_basic_cache *c, int64_t version, const char *user,
                           const char *password, size_t len)
{
    unsigned char mac[32];
    unsigned slot;
    pthread_mutex_t *lock;

    if (!basic_mac(c, user, password, len, mac, &slot))
        return;
    lock = &c->locks[slot % BASIC_SHARDS];
    pthread_mutex_lock(lock);
    memcpy(c->slots[slot].mac, mac, sizeof(mac));
    c->slots[slot].trust_version = version;
    c->slots[slot].until = clock_s() + BASIC_SECONDS;
    pthread_mutex_unlock(lock);
    crypto_wipe(mac, sizeof(mac));
}

static int accept_basic(const struct trust_user *u, struct identity *id)
{
    id->reason = AUTH_OK;
    snprintf(id->detail, sizeof(id->detail), "user %s by password", u->name);
    return set_user(id, u, AUTH_METHOD_BASIC);
}

int identity_from_basic_cached(const struct trust_snapshot *snap, struct identity_basic_cache *c,
                               const char *user, const char *password, size_t password_len,
                               struct identity *out_id)
{
    const struct trust_user *u = user ? trust_find_user(snap, user) : NULL;
    unsigned char mac[32];
    unsigned slot;
    pthread_mutex_t *lock;
    bool hit;

    if (!u || !basic_mac(c, user, password, password_len, mac, &slot))
        return CG_ENOTFOUND;
    lock = &c->locks[slot % BASIC_SHARDS];
    pthread_mutex_lock(lock);
    hit = c->slots[slot].trust_version == snap->version && clock_s() < c->slots[slot].until &&
          cg_consttime_eq(c->slots[slot].mac, mac, sizeof(mac));
    pthread_mutex_unlock(lock);
    crypto_wipe(mac, sizeof(mac));
    if (!hit)
        return CG_ENOTFOUND;
    /* Same trust version: the user is as it was when the password was
     * checked (it was active and not locked then). */
    memset(out_id, 0, sizeof(*out_id));
    out_id->trust_version = snap->version;
    out_id->valid_from = INT64_MIN;
    out_id->valid_until = INT64_MAX;
    return accept_basic(u, out_id);
}

int identity_from_basic(const struct trust_snapshot *snap, struct identity_basic_cache *cache,
                        const char *user, const char *password, size_t password_len,
                        struct identity *out_id)
{
    /* A hash of a random password, so unknown users cost the same time. */
    static const char decoy[] = "pbkdf2-sha256$600000$c2VydGdhdGUtZGVjb3k0MQ==$"
                                "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const struct trust_user *u = user ? trust_find_user(snap, user) : NULL;
    struct identity *id = out_id;
    bool ok;

    memset(id, 0, sizeof(*id));
    id->trust_version = snap->version;
    id->valid_from = INT64_MIN;
    id->valid_until = INT64_MAX;
    ok = password_verify(password, password_len, u && u->password_hash ? u->password_hash : decoy);
    if (!u || !u->password_hash || !ok) {
        refuse(id, AUTH_BAD_PASSWORD, "the user name or password is wrong");
        return CG_OK;
    }
    if (u->is_locked || !u->is_active) {
        refuse(id, AUTH_USER_LOCKED, "user %s is locked: an admin can run certgate user unlock %s",
               u->name, u->name);
        return CG_OK;
    }
    basic_remember(cache, snap->version, user, password, password_len);
    return accept_basic(u, id);
}

/* ---- failed passwords per address ---- */

/* What the limiter knows of one address. */
struct limit_entry {
    char addr[64];             /* client address, the whole of it */
    int64_t window_start;      /* start of the current minute of failures */
    unsigned failures;         /* wrong passwords in that minute */
    unsigned running;          /* checks begun and not yet ended */
    int64_t barred_until;      /* no password checks before this */
    struct limit_entry *chain; /* next in its hash bucket */
    struct limit_entry *newer; /* recency list, towards the most recent */
    struct limit_entry *older; /* recency list, towards the least recent */
};

struct identity_limiter {
    pthread_mutex_t lock;         /* guards everything below */
    struct limit_entry *entries;  /* capacity entries, allocated once */
    size_t capacity;              /* addresses remembered at most */
    size_t used;                  /* entries in use */
    struct limit_entry **buckets; /* hash chains, n_buckets of them */
    size_t n_buckets;             /* a power of two, at least 2 * capacity */
    uint64_t seed;                /* random: no one can pick addresses that share a chain */
    struct limit_entry *newest;   /* most recently seen */
    struct limit_entry *oldest;   /* least recently seen */
};

int identity_limiter_new(size_t capacity, struct identity_limiter **out_lim)
{
    struct identity_limiter *lim = calloc(1, sizeof(*lim));

    if (!lim)
        return CG_ENOMEM;
    lim->capacity = capacity ? capacity : IDENTITY_LIMITER_ADDRESSES;
    lim->n_buckets = 16;
    while (lim->n_buckets < 2 * lim->capacity)
        lim->n_buckets *= 2;
    lim->entries = calloc(lim->capacity, sizeof(*lim->entries));
    lim->buckets = calloc(lim->n_buckets, sizeof(*lim->buckets));
    if (!lim->entries || !lim->buckets)
        goto nomem;
    if (crypto_random(&lim->seed, sizeof(lim->seed), false))
        lim->seed = (uint64_t)clock_s();
    pthread_mutex_init(&lim->lock, NULL);
    *out_lim = lim;
    return CG_OK;
nomem:
    free(lim->entries);
    free(lim->buckets);
    free(lim);
    return CG_ENOMEM;
}

void identity_limiter_free(struct identity_limiter *lim)
{
    if (!lim)
        return;
    pthread_mutex_destroy(&lim->lock);
    free(lim->entries);
    free(lim->buckets);
    free(lim);
}

static struct limit_entry **bucket(struct identity_limiter *lim, const char *addr)
{
    uint64_t h = 14695981039346656037ULL ^ lim->seed;

    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= h >> 29;
    return &lim->buckets[h & (lim->n_buckets - 1)];
}

static void unlink_recent(struct identity_limiter *lim, struct limit_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        lim->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        lim->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(struct identity_limiter *lim, struct limit_entry *e)
{
    e->older = lim->newest;
    e->newer = NULL;
    if (lim->newest)
        lim->newest->newer = e;
    lim->newest = e;
    if (!lim->oldest)
        lim->oldest = e;
}

/* The entry of @p addr, moved to the most recent end; NULL when it has none
 * and @p add is false. Adding to a full table forgets the least recently
 * seen address with no check under way (there are at most as many of
 * those as password-check threads). Call with the lock held. */
static struct limit_entry *find(struct identity_limiter *lim, const char *addr, bool add)
{
    struct limit_entry **head = bucket(lim, addr), *e, **pp;

    for (e = *head; e; e = e->chain) {
        if (strcmp(e->addr, addr) == 0) {
            unlink_recent(lim, e);
            push_newest(lim, e);
            return e;
        }
    }
    if (!add)
        return NULL;
    if (lim->used < lim->capacity) {
        e = &lim->entries[lim->used++];
    } else {
        for (e = lim->oldest; e && e->running; e = e->newer) {
        }
        if (!e)
            return NULL;
        for (pp = bucket(lim, e->addr); *pp != e; pp = &(*pp)->chain) {
        }
        *pp = e->chain;
        unlink_recent(lim, e);
    }
    memset(e, 0, sizeof(*e));
    snprintf(e->addr, sizeof(e->addr), "%s", addr);
    e->chain = *head;
    *head = e;
    push_newest(lim, e);
    return e;
}

/* The minute of failures starts with the first one; once it is over,
 * they no longer count. */
static void roll_window(struct limit_entry *e, int64_t now)
{
    if (e->failures && now - e->window_start >= 60)
        e->failures = 0;
}

unsigned identity_limiter_barred(struct identity_limiter *lim, const char *addr, int64_t now)
{
    struct limit_entry *e;
    unsigned left = 0;

    pthread_mutex_lock(&lim->lock);
    e = find(lim, addr, false);
    if (e && e->barred_until > now)
        left = (unsigned)(e->barred_until - now);
    pthread_mutex_unlock(&lim->lock);
    return left;
}

enum identity_limit identity_limiter_begin(struct identity_limiter *lim, const char *addr,
                                           int64_t now, unsigned *out_seconds)
{
    struct limit_entry *e;
    enum identity_limit v = IDENTITY_LIMIT_GO;

    pthread_mutex_lock(&lim->lock);
    e = find(lim, addr, true);
    if (!e) {
        /* Every entry has a check under way: more than the table holds
         * run at once, which the password-check threads rule out. */
        v = IDENTITY_LIMIT_WAIT;
    } else if (e->barred_until > now) {
        *out_seconds = (unsigned)(e->barred_until - now);
        v = IDENTITY_LIMIT_BARRED;
    } else {
        roll_window(e, now);
        /* Checks under way count as failures until they end: the bar
         * takes effect after exactly IDENTITY_MAX_FAILURES wrong ones. */
        if (e->failures + e->running >= IDENTITY_MAX_FAILURES)
            v = IDENTITY_LIMIT_WAIT;
        else
            e->running++;
    }
    pthread_mutex_unlock(&lim->lock);
    return v;
}

bool identity_limiter_end(struct identity_limiter *lim, const char *addr, int64_t now, bool failed)
{
    struct limit_entry *e;
    bool barred = false;

    pthread_mutex_lock(&lim->lock);
    e = find(lim, addr, true);
    if (e && e->running)
        e->running--;
    if (e && failed && e->barred_until <= now) {
        roll_window(e, now);
        if (e->failures++ == 0)
            e->window_start = now;
        if (e->failures >= IDENTITY_MAX_FAILURES) {
            e->barred_until = now + IDENTITY_BAR_SECONDS;
            e->failures = 0;
            e->window_start = now;
            barred = true;
        }
    }
    pthread_mutex_unlock(&lim->lock);
    return barred;
}

bool identity_has_any_role(const struct identity *id, char *const *roles, size_t n_roles)
{
    if (n_roles == 0)
        return true;
    for (size_t i = 0; i < n_roles; i++) {
        if (any_eq(id->roles, id->n_roles, roles[i], false))
            return true;
    }
    return false;
}

void identity_free(struct identity *id)
{
    if (!id)
        return;
    free(id->user);
    cg_strv_free(id->roles, id->n_roles);
    if (id->has_cert)
        pki_cert_free(&id->cert);
    memset(id, 0, sizeof(*id));
}

json_t *identity_json(const struct identity *id, enum identity_json_form form)
{
    bool is_whoami = form == IDENTITY_JSON_WHOAMI;
    json_t *roles = json_array(), *o, *cert = NULL;
    char nb[21], na[21];

    if (!id)
        return json_pack("{s:n, s:o, s:s, s:n}", "name", "roles", roles, "auth", "none",
                         "certificate");
    for (size_t i = 0; i < id->n_roles; i++)
        json_array_append_new(roles, json_string(id->roles[i]));
    o = json_pack("{s:s, s:o, s:s}", is_whoami ? "user" : "name", id->user, "roles", roles, "auth",
                  auth_method_name(id->method));
    if (!o)
        return NULL;
    if (id->has_cert) {
        cg_time_iso(id->cert.not_before, nb);
        cg_time_iso(id->cert.not_after, na);
        cert = json_pack("{s:o, s:o, s:s, s:s}", "subject", utf8_json(id->cert.subject), "issuer",
                         utf8_json(id->cert.issuer), "serial", id->cert.serial, "fingerprint",
                         id->cert.fingerprint);
        if (cert && is_whoami)
            json_object_set_new(cert, "not_before", json_string(nb));
        if (cert)
            json_object_set_new(cert, "not_after", json_string(na));
        if (cert && is_whoami) {
            json_object_set_new(cert, "mapping_id", json_integer((json_int_t)id->mapping_id));
            json_object_set_new(cert, "mapping_kind",
                                id->mapping_kind ? json_string(id->mapping_kind) : NULL);
        }
    }
    json_object_set_new(o, "certificate", cert ? cert : json_null());
    return o;
}
