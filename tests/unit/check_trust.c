/* Unit tests for trust snapshots, the verdict cache, the holder, and
 * identity resolution, on a real store and a test PKI. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/identity.h"
#include "auth/password.h"
#include "db/store.h"
#include "trust/trust.h"

static char dir[64], db[128];

static struct pki_cert load(const char *name)
{
    char path[256], *data = NULL;
    struct cg_err err = {""};
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    struct pki_cert c;
    size_t len;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ck_assert_int_eq(cg_read_file(path, 1 << 20, &data, &len, &err), CG_OK);
    ck_assert_int_eq(pki_parse_bundle(data, len, &l, &e), CG_OK);
    free(data);
    c = l.items[0];
    for (size_t i = 1; i < l.n; i++)
        pki_cert_free(&l.items[i]);
    free(l.items);
    return c;
}

static void add_ca(struct store *s, const char *name)
{
    struct pki_cert c = load(name);
    struct store_ca ca;
    struct cg_err err = {""};
    char *pem = pki_cert_pem(&c);

    memset(&ca, 0, sizeof(ca));
    ca.subject = c.subject;
    ca.issuer = c.issuer;
    ca.serial = c.serial;
    snprintf(ca.fingerprint, sizeof(ca.fingerprint), "%s", c.fingerprint);
    snprintf(ca.spki_sha256, sizeof(ca.spki_sha256), "%s", c.spki_sha256);
    ca.not_before = c.not_before;
    ca.not_after = c.not_after;
    ca.is_root = c.is_self_signed;
    ca.path_len = c.path_len;
    ca.der = c.der;
    ca.der_len = c.der_len;
    ca.pem = pem;
    ca.is_active = true;
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    free(pem);
    pki_cert_free(&c);
}

static void map_cert(struct store *s, int64_t user, const char *name)
{
    struct pki_cert c = load(name);
    struct store_map m;
    struct cg_err err = {""};

    memset(&m, 0, sizeof(m));
    m.user_id = user;
    m.kind = STORE_MAP_CERT;
    snprintf(m.fingerprint, sizeof(m.fingerprint), "%s", c.fingerprint);
    m.subject = c.subject;
    m.issuer = c.issuer;
    m.serial = c.serial;
    m.not_before = c.not_before;
    m.not_after = c.not_after;
    m.der = c.der;
    m.der_len = c.der_len;
    m.is_active = true;
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);
    pki_cert_free(&c);
}

static void setup(void)
{
    const char *src = getenv("TESTS_SRCDIR");
    char cmd[512];
    struct store *s = NULL;
    struct cg_err err = {""};
    char *roles[1] = {(char *)"push"}, *hash = NULL;
    int64_t uid = 0;

    snprintf(dir, sizeof(dir), "/tmp/check_trust.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "sh '%s/pki/mkpki.sh' '%s' >/dev/null 2>&1", src ? src : "tests",
             dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(db, sizeof(db), "%s/t.db", dir);
    ck_assert_int_eq(store_open(db, STORE_OPEN_INIT, &s, &err), CG_OK);
    add_ca(s, "int.pem");
    add_ca(s, "root.pem");
    ck_assert_int_eq(password_hash("a long enough password", 22, &hash), CG_OK);
    ck_assert_int_eq(store_user_add(s, "integrator1", roles, 1, hash, &uid, &err), CG_OK);
    free(hash);
    map_cert(s, uid, "client.pem");
    store_close(s);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct trust_snapshot *snapshot(void)
{
    struct store *s = NULL;
    struct trust_snapshot *snap = NULL;
    struct cg_err err = {""};

    ck_assert_int_eq(store_open(db, STORE_OPEN_READONLY, &s, &err), CG_OK);
    ck_assert_int_eq(trust_load(s, &snap, &err), CG_OK);
    store_close(s);
    return snap;
}

START_TEST(cached_verdicts)
{
    struct trust_snapshot *snap = snapshot();
    struct pki_cert leaf = load("client.pem");
    struct identity id;
    uint64_t hits = 0, misses = 0;

    ck_assert_int_eq(identity_from_cert(snap, &leaf, NULL, 0, cg_now(), &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    ck_assert_str_eq(id.user, "integrator1");
    identity_free(&id);
    ck_assert_int_eq(identity_from_cert(snap, &leaf, NULL, 0, cg_now(), &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    ck_assert_int_eq(id.issuer_ca_id, 1);
    identity_free(&id);
    trust_cache_stats(snap, &hits, &misses);
    ck_assert_uint_eq(hits, 1);
    ck_assert_uint_eq(misses, 1);
    /* A cached chain is still refused once the time leaves its window. */
    ck_assert_int_eq(identity_from_cert(snap, &leaf, NULL, 0, leaf.not_after + 60, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_EXPIRED);
    identity_free(&id);
    pki_cert_free(&leaf);
    trust_release(snap);
}
END_TEST

/* The window a decision holds for: the chain's, the earliest not-after of
 * leaf, intermediate and root, and the latest not-before. */
START_TEST(decision_window)
{
    struct trust_snapshot *snap = snapshot();
    struct pki_cert leaf = load("client.pem"), in = load("int.pem"), root = load("root.pem");
    struct pki_cert notyet = load("notyet.pem");
    struct identity id;
    int64_t until = leaf.not_after, from = leaf.not_before, now = cg_now();

    until = in.not_after < until ? in.not_after : until;
    until = root.not_after < until ? root.not_after : until;
    from = in.not_before > from ? in.not_before : from;
    from = root.not_before > from ? root.not_before : from;
    ck_assert_int_eq(identity_from_cert(snap, &leaf, NULL, 0, now, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    ck_assert_int_eq(id.valid_from, from);
    ck_assert_int_eq(id.valid_until, until);
    identity_free(&id);
    /* A certificate not valid yet is decided again a second later. */
    ck_assert_int_eq(identity_from_cert(snap, &notyet, NULL, 0, now, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_NOT_YET_VALID);
    ck_assert_int_eq(id.valid_until, now);
    identity_free(&id);
    pki_cert_free(&leaf);
    pki_cert_free(&in);
    pki_cert_free(&root);
    pki_cert_free(&notyet);
    trust_release(snap);
}
END_TEST

START_TEST(refusals_and_basic)
{
    struct identity_basic_cache *cache = NULL;
    struct trust_snapshot *snap = snapshot();
    struct pki_cert other = load("client2.pem"), foreign = load("foreign-client.pem");
    struct identity id;

    ck_assert_int_eq(identity_basic_cache_new(&cache), CG_OK);
    ck_assert_int_eq(identity_from_cert(snap, &other, NULL, 0, cg_now(), &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_NOT_MAPPED);
    ck_assert_ptr_nonnull(strstr(id.detail, "certgate cert map"));
    identity_free(&id);
    ck_assert_int_eq(identity_from_cert(snap, &foreign, NULL, 0, cg_now(), &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_UNTRUSTED_ISSUER);
    identity_free(&id);
    ck_assert_int_eq(
        identity_from_basic(snap, cache, "integrator1", "a long enough password", 22, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    ck_assert_int_eq(id.method, AUTH_METHOD_BASIC);
    identity_free(&id);
    ck_assert_int_eq(identity_from_basic(snap, cache, "integrator1", "wrong", 5, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_BAD_PASSWORD);
    identity_free(&id);
    ck_assert_int_eq(identity_from_basic(snap, cache, "ghost", "a long enough password", 22, &id),
                     CG_OK);
    ck_assert_int_eq(id.reason, AUTH_BAD_PASSWORD);
    identity_free(&id);
    pki_cert_free(&other);
    pki_cert_free(&foreign);
    trust_release(snap);
    identity_basic_cache_free(cache);
}
END_TEST

/* A verified password is remembered for its trust version only. */
START_TEST(basic_verifications_are_remembered)
{
    struct identity_basic_cache *cache = NULL;
    struct trust_snapshot *snap = snapshot();
    struct identity id;

    ck_assert_int_eq(identity_basic_cache_new(&cache), CG_OK);
    ck_assert_int_eq(
        identity_from_basic_cached(snap, cache, "integrator1", "a long enough password", 22, &id),
        CG_ENOTFOUND);
    ck_assert_int_eq(
        identity_from_basic(snap, cache, "integrator1", "a long enough password", 22, &id), CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    identity_free(&id);
    ck_assert_int_eq(
        identity_from_basic_cached(snap, cache, "integrator1", "a long enough password", 22, &id),
        CG_OK);
    ck_assert_int_eq(id.reason, AUTH_OK);
    ck_assert_int_eq(id.method, AUTH_METHOD_BASIC);
    ck_assert_str_eq(id.user, "integrator1");
    identity_free(&id);
    ck_assert_int_eq(
        identity_from_basic_cached(snap, cache, "integrator1", "a long enough passwore", 22, &id),
        CG_ENOTFOUND);
    /* Another trust version: checked again. */
    snap->version++;
    ck_assert_int_eq(
        identity_from_basic_cached(snap, cache, "integrator1", "a long enough password", 22, &id),
        CG_ENOTFOUND);
    trust_release(snap);
    identity_basic_cache_free(cache);
}
END_TEST

/* Begins and ends @p n checks of @p addr at @p now, all wrong. */
static bool fail_n(struct identity_limiter *lim, const char *addr, int n, int64_t now)
{
    bool barred = false;
    unsigned secs;

    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(identity_limiter_begin(lim, addr, now, &secs), IDENTITY_LIMIT_GO);
        barred = identity_limiter_end(lim, addr, now, true);
    }
    return barred;
}

START_TEST(limiter_bars_after_ten_failures)
{
    struct identity_limiter *lim = NULL;
    const char *addr = "192.0.2.7";
    unsigned secs = 0;

    ck_assert_int_eq(identity_limiter_new(0, &lim), CG_OK);
    ck_assert(!fail_n(lim, addr, IDENTITY_MAX_FAILURES - 1, 1000));
    ck_assert_uint_eq(identity_limiter_barred(lim, addr, 1000), 0);
    ck_assert(fail_n(lim, addr, 1, 1001));
    ck_assert_uint_eq(identity_limiter_barred(lim, addr, 1001), IDENTITY_BAR_SECONDS);
    ck_assert_int_eq(identity_limiter_begin(lim, addr, 1002, &secs), IDENTITY_LIMIT_BARRED);
    ck_assert_uint_eq(secs, IDENTITY_BAR_SECONDS - 1);
    ck_assert_uint_eq(identity_limiter_barred(lim, "192.0.2.8", 1001), 0);
    ck_assert_uint_eq(identity_limiter_barred(lim, addr, 1001 + IDENTITY_BAR_SECONDS), 0);
    /* Failures spread over more than a minute do not add up. */
    for (int i = 0; i < 2 * IDENTITY_MAX_FAILURES; i++)
        ck_assert(!fail_n(lim, "192.0.2.9", 1, 2000 + 61 * i / (IDENTITY_MAX_FAILURES - 1)));
    /* A right password does not count. */
    ck_assert_int_eq(identity_limiter_begin(lim, "192.0.2.10", 3000, &secs), IDENTITY_LIMIT_GO);
    ck_assert(!identity_limiter_end(lim, "192.0.2.10", 3000, false));
    ck_assert(!fail_n(lim, "192.0.2.10", IDENTITY_MAX_FAILURES - 1, 3000));
    identity_limiter_free(lim);
}
END_TEST

/* Addresses never share a count: each is its own key, whatever its hash. */
START_TEST(limiter_is_exact_per_address)
{
    struct identity_limiter *lim = NULL;
    char a[32], b[32];

    ck_assert_int_eq(identity_limiter_new(0, &lim), CG_OK);
    /* Alternating wrong passwords from many addresses: none resets another. */
    for (int round = 0; round < IDENTITY_MAX_FAILURES - 1; round++) {
        for (int i = 0; i < 600; i++) {
            snprintf(a, sizeof(a), "10.0.%d.%d", i / 250, i % 250);
            ck_assert(!fail_n(lim, a, 1, 1000));
        }
    }
    for (int i = 0; i < 600; i++) {
        snprintf(a, sizeof(a), "10.0.%d.%d", i / 250, i % 250);
        ck_assert(fail_n(lim, a, 1, 1000));
    }
    /* A bar of one address does not stop another from being counted. */
    snprintf(b, sizeof(b), "10.9.9.9");
    ck_assert(fail_n(lim, b, IDENTITY_MAX_FAILURES, 1000));
    identity_limiter_free(lim);
}
END_TEST

/* Checks under way count: no more than the limit run before the bar. */
START_TEST(limiter_counts_checks_under_way)
{
    struct identity_limiter *lim = NULL;
    const char *addr = "2001:db8::1";
    unsigned secs = 0;
    int i, started = 0, barred = 0;

    ck_assert_int_eq(identity_limiter_new(0, &lim), CG_OK);
    for (i = 0; i < 3 * IDENTITY_MAX_FAILURES; i++) {
        enum identity_limit v = identity_limiter_begin(lim, addr, 1000, &secs);

        if (v == IDENTITY_LIMIT_GO)
            started++;
        else
            ck_assert_int_eq(v, IDENTITY_LIMIT_WAIT);
    }
    ck_assert_int_eq(started, IDENTITY_MAX_FAILURES);
    /* One right password frees one place; wrong ones fill the rest. */
    ck_assert(!identity_limiter_end(lim, addr, 1000, false));
    ck_assert_int_eq(identity_limiter_begin(lim, addr, 1000, &secs), IDENTITY_LIMIT_GO);
    for (i = 0; i < IDENTITY_MAX_FAILURES; i++)
        barred += identity_limiter_end(lim, addr, 1001, true);
    ck_assert_int_eq(barred, 1);
    ck_assert_int_eq(identity_limiter_begin(lim, addr, 1001, &secs), IDENTITY_LIMIT_BARRED);
    identity_limiter_free(lim);
}
END_TEST

/* Memory is bounded: a full table forgets the address seen least recently,
 * never one with a check under way. */
START_TEST(limiter_forgets_the_least_recent)
{
    struct identity_limiter *lim = NULL;
    unsigned secs;

    ck_assert_int_eq(identity_limiter_new(3, &lim), CG_OK);
    ck_assert(fail_n(lim, "a", IDENTITY_MAX_FAILURES, 1000));
    ck_assert_int_eq(identity_limiter_begin(lim, "b", 1000, &secs), IDENTITY_LIMIT_GO);
    ck_assert(!fail_n(lim, "c", 1, 1000));
    ck_assert_uint_gt(identity_limiter_barred(lim, "a", 1000), 0); /* a is now the newest */
    /* d takes the place of c: b is older but has a check under way. */
    ck_assert(!fail_n(lim, "d", 1, 1000));
    ck_assert_uint_gt(identity_limiter_barred(lim, "a", 1000), 0);
    ck_assert(!identity_limiter_end(lim, "b", 1000, true));
    ck_assert(!fail_n(lim, "c", IDENTITY_MAX_FAILURES - 1, 1000)); /* forgotten: 9, not 10 */
    identity_limiter_free(lim);
}
END_TEST

/* Adds users (each with a role: +2 on the trust version) until told to stop. */
static void *writer(void *arg)
{
    volatile int *stop = arg;
    struct store *s = NULL;
    struct cg_err err = {""};
    char *roles[1] = {(char *)"push"};

    ck_assert_int_eq(store_open(db, STORE_OPEN_EXISTING, &s, &err), CG_OK);
    for (int i = 0; i < 1000 && !*stop; i++) {
        char name[32];
        int64_t id;

        snprintf(name, sizeof(name), "w%d", i);
        ck_assert_int_eq(store_user_add(s, name, roles, 1, NULL, &id, &err), CG_OK);
    }
    store_close(s);
    return NULL;
}

/* A snapshot is one moment of the database: its version and its data agree
 * however fast the CLI writes (each user added here moves the version by 2). */
START_TEST(snapshot_is_consistent_under_writes)
{
    struct trust_snapshot *snap = snapshot();
    int64_t base = snap->version - 2 * (int64_t)(snap->n_users - 1);
    volatile int stop = 0;
    pthread_t t;

    trust_release(snap);
    ck_assert_int_eq(pthread_create(&t, NULL, writer, (void *)&stop), 0);
    for (int i = 0; i < 60; i++) {
        snap = snapshot();
        ck_assert_msg(snap->version == base + 2 * (int64_t)(snap->n_users - 1),
                      "version %lld with %zu users (base %lld)", (long long)snap->version,
                      snap->n_users, (long long)base);
        for (size_t u = 0; u < snap->n_users; u++)
            ck_assert_uint_eq(snap->users[u].n_roles, 1);
        trust_release(snap);
    }
    stop = 1;
    pthread_join(t, NULL);
}
END_TEST

START_TEST(holder_sees_changes)
{
    struct trust_holder *h = NULL;
    struct store *s = NULL;
    struct cg_err err = {""};
    int64_t v0;
    int waited = 0;

    ck_assert_int_eq(trust_holder_new(db, &h, &err), CG_OK);
    v0 = trust_holder_version(h);
    ck_assert_int_eq(store_open(db, STORE_OPEN_EXISTING, &s, &err), CG_OK);
    ck_assert_int_eq(store_user_set_locked(s, "integrator1", true, &err), CG_OK);
    store_close(s);
    while (trust_holder_version(h) == v0 && waited < 2000) {
        usleep(20000);
        waited += 20;
    }
    ck_assert_int_lt(waited, 1000);
    {
        struct trust_snapshot *snap = trust_holder_acquire(h);
        const struct trust_user *u = trust_find_user(snap, "integrator1");

        ck_assert_ptr_nonnull(u);
        ck_assert(u->is_locked);
        trust_release(snap);
    }
    trust_holder_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trust");
    TCase *tc = tcase_create("identity");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cached_verdicts);
    tcase_add_test(tc, decision_window);
    tcase_add_test(tc, refusals_and_basic);
    tcase_add_test(tc, holder_sees_changes);
    tcase_add_test(tc, snapshot_is_consistent_under_writes);
    tcase_add_test(tc, basic_verifications_are_remembered);
    tcase_add_test(tc, limiter_bars_after_ten_failures);
    tcase_add_test(tc, limiter_is_exact_per_address);
    tcase_add_test(tc, limiter_counts_checks_under_way);
    tcase_add_test(tc, limiter_forgets_the_least_recent);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
