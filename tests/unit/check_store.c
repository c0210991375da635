/* Unit tests for store: migrations and every record operation, on real
 * SQLite files in a temporary directory. */
#include "config.h"

#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/core.h"
#include "db/store.h"

static char dir[64], path[128];
static struct store *s;

static void setup(void)
{
    struct cg_err err = {""};

    snprintf(dir, sizeof(dir), "/tmp/check_store.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    ck_assert_int_eq(store_open(path, STORE_OPEN_INIT, &s, &err), CG_OK);
}

static void teardown(void)
{
    char cmd[160];

    store_close(s);
    s = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void sql(const char *file, const char *q)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(sqlite3_open(file, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A CA record with fabricated facts: the store does not parse DER. */
static void fake_ca(struct store_ca *ca, const char *fp, const char *subject, bool root)
{
    static unsigned char der[] = {0x30, 0x03, 0x02, 0x01, 0x01};

    memset(ca, 0, sizeof(*ca));
    ca->subject = (char *)subject;
    ca->issuer = (char *)(root ? subject : "CN=Root");
    ca->serial = (char *)"01";
    snprintf(ca->fingerprint, sizeof(ca->fingerprint), "%s", fp);
    /* One key per certificate here: copies of one CA are tested apart. */
    snprintf(ca->spki_sha256, sizeof(ca->spki_sha256), "%s", fp);
    ca->not_before = 1000;
    ca->not_after = 4000000000LL;
    ca->is_root = root;
    ca->path_len = -1;
    ca->der = der;
    ca->der_len = sizeof(der);
    ca->pem = (char *)"-----BEGIN CERTIFICATE-----\n...";
    ca->is_active = true;
}

#define FP1 "aa11111111111111111111111111111111111111111111111111111111111111"
#define FP2 "aa22222222222222222222222222222222222222222222222222222222222222"
#define FP3 "bb33333333333333333333333333333333333333333333333333333333333333"

START_TEST(open_init_and_reopen)
{
    struct store *again = NULL;
    struct cg_err err = {""};
    struct stat st;

    ck_assert_int_eq(store_schema_version(s), store_schema_latest());
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(store_open(path, STORE_OPEN_INIT, &again, &err), CG_OK);
    store_close(again);
    ck_assert_int_eq(store_open(path, STORE_OPEN_EXISTING, &again, &err), CG_OK);
    store_close(again);
    ck_assert_int_eq(store_open(path, STORE_OPEN_READONLY, &again, &err), CG_OK);
    store_close(again);
}
END_TEST

START_TEST(open_refusals)
{
    struct store *other = NULL;
    struct cg_err err = {""};
    char p2[160];
    FILE *f;

    snprintf(p2, sizeof(p2), "%s/missing.db", dir);
    ck_assert_int_eq(store_open(p2, STORE_OPEN_EXISTING, &other, &err), CG_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "run certgate init"));
    ck_assert_int_ne(access(p2, F_OK), 0);

    snprintf(p2, sizeof(p2), "%s/text.db", dir);
    f = fopen(p2, "w");
    fputs("hello, not a database at all, really not\n", f);
    fclose(f);
    ck_assert_int_eq(store_open(p2, STORE_OPEN_EXISTING, &other, &err), CG_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a certgate database"));

    snprintf(p2, sizeof(p2), "%s/foreign.db", dir);
    sql(p2, "CREATE TABLE t (x)");
    ck_assert_int_eq(store_open(p2, STORE_OPEN_EXISTING, &other, &err), CG_EINVAL);

    store_close(s);
    s = NULL;
    sql(path, "PRAGMA user_version = 99");
    ck_assert_int_eq(store_open(path, STORE_OPEN_EXISTING, &other, &err), CG_EVERSION);
    ck_assert_ptr_nonnull(strstr(err.msg, "schema version 99, newer"));
    ck_assert_int_eq(store_open(path, STORE_OPEN_INIT, &other, &err), CG_EVERSION);
}
END_TEST

START_TEST(open_upgrades_older)
{
    struct store *other = NULL;
    struct cg_err err = {""};
    char p2[160], p3[170];
    struct stat st;
    FILE *f;

    /* An empty file is refused without writing to it (no WAL switch). */
    snprintf(p2, sizeof(p2), "%s/zero.db", dir);
    f = fopen(p2, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(store_open(p2, STORE_OPEN_EXISTING, &other, &err), CG_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "run certgate init"));
    ck_assert_int_eq(stat(p2, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    snprintf(p3, sizeof(p3), "%s-wal", p2);
    ck_assert_int_ne(access(p3, F_OK), 0);

    /* A version-0 file with no tables is a fresh database for init only. */
    snprintf(p2, sizeof(p2), "%s/empty.db", dir);
    sql(p2, "PRAGMA user_version = 0");
    ck_assert_int_eq(store_open(p2, STORE_OPEN_EXISTING, &other, &err), CG_EINVAL);
    ck_assert_int_eq(store_open(p2, STORE_OPEN_INIT, &other, &err), CG_OK);
    ck_assert_int_eq(store_schema_version(other), store_schema_latest());
    store_close(other);
}
END_TEST

extern const char *const cg_schema_sql[];

/* A real version-1 database, made from the text of schema/001_init.sql
 * with data in it, is upgraded to the latest version on open, data kept. */
START_TEST(upgrade_from_version_1)
{
    const char *src = getenv("TESTS_SRCDIR");
    struct store *up = NULL;
    struct store_user u;
    struct store_ca ca;
    struct store_crl *crls = NULL;
    struct cg_err err = {""};
    char p1[160], file[512], *v1 = NULL;
    size_t len = 0, n_crls = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    snprintf(file, sizeof(file), "%s/../schema/001_init.sql", src ? src : "tests");
    ck_assert_msg(cg_read_file(file, 1 << 20, &v1, &len, &err) == CG_OK, "%s", err.msg);
    /* The binary embeds the same text. */
    ck_assert_str_eq(v1, cg_schema_sql[0]);
    snprintf(p1, sizeof(p1), "%s/v1.db", dir);
    ck_assert_int_eq(sqlite3_open(p1, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_exec(db,
                     "PRAGMA user_version = 1;"
                     "INSERT INTO sys_user (name, created_on, updated_on) VALUES "
                     "('keepme', 'x', 'x');"
                     "INSERT INTO sys_user_role (user_id, role) VALUES (1, 'push');"
                     "INSERT INTO sys_ca_certificate (subject, issuer, serial, fingerprint, "
                     "spki_sha256, not_before, not_after, is_root, der, pem, created_on, "
                     "updated_on) VALUES ('CN=Root', 'CN=Root', '01', '" FP1 "', 'x', 1, "
                     "4000000000, 1, x'3000', 'pem', 'x', 'x');"
                     /* A disabled copy of it (same subject and key), and a CRL
                      * bound to the first record, as version 1 bound them. */
                     "INSERT INTO sys_ca_certificate (subject, issuer, serial, fingerprint, "
                     "spki_sha256, not_before, not_after, is_root, der, pem, active, created_on, "
                     "updated_on) VALUES ('CN=Root', 'CN=Root', '02', '" FP2 "', 'x', 1, "
                     "4000000000, 1, x'3001', 'pem', 0, 'x', 'x');"
                     "INSERT INTO sys_crl (ca_id, issuer, fingerprint, this_update, "
                     "revoked_count, der, created_on) VALUES (1, 'CN=Root', 'crl', 5, 1, "
                     "x'3000', 'x');",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    free(v1);

    ck_assert_int_eq(store_open(p1, STORE_OPEN_EXISTING, &up, &err), CG_OK);
    ck_assert_int_eq(store_schema_version(up), store_schema_latest());
    ck_assert_int_ge(store_schema_latest(), 2);
    ck_assert_int_eq(store_user_get(up, "keepme", &u, &err), CG_OK);
    ck_assert_uint_eq(u.n_roles, 1);
    ck_assert_str_eq(u.roles[0], "push");
    store_user_free(&u);
    ck_assert_int_eq(store_ca_find(up, FP1, &ca, &err), CG_OK);
    ck_assert_str_eq(ca.subject, "CN=Root");
    /* Version 4: copies of one CA agree (a disabled copy disables it) and a
     * CRL belongs to the key of the record it was bound to. */
    ck_assert(!ca.is_active);
    store_ca_free(&ca);
    ck_assert_int_eq(store_crl_list(up, &crls, &n_crls, &err), CG_OK);
    ck_assert_uint_eq(n_crls, 1);
    ck_assert_str_eq(crls[0].signer_spki, "x");
    ck_assert_str_eq(crls[0].issuer, "CN=Root");
    store_crl_list_free(crls, n_crls);
    store_close(up);

    /* Version 2's tables and counter are there. */
    ck_assert_int_eq(sqlite3_open(p1, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM sqlite_master WHERE name IN "
                                        "('sys_ws_operation', 'sys_db_table', 'sys_idempotency')),"
                                        " (SELECT count(*) FROM sys_meta WHERE key = "
                                        "'resource_version'), (SELECT journal_mode FROM "
                                        "pragma_journal_mode)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), 3);
    ck_assert_int_eq(sqlite3_column_int(st, 1), 1);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

START_TEST(ca_records)
{
    struct store_ca ca, got, *list = NULL;
    struct cg_err err = {""};
    size_t n = 0;
    struct store_ca_deps deps;

    fake_ca(&ca, FP1, "CN=Root", true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    ck_assert_int_eq(ca.id, 1);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_EEXIST);
    fake_ca(&ca, FP2, "CN=Int", false);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, FP3, "CN=Other", true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);

    ck_assert_int_eq(store_ca_find(s, "2", &got, &err), CG_OK);
    ck_assert_str_eq(got.subject, "CN=Int");
    ck_assert(!got.is_root);
    ck_assert_uint_eq(got.der_len, 5);
    store_ca_free(&got);
    ck_assert_int_eq(store_ca_find(s, FP3, &got, &err), CG_OK);
    ck_assert_int_eq(got.id, 3);
    store_ca_free(&got);
    ck_assert_int_eq(store_ca_find(s, "AA:22:22:22:22", &got, &err), CG_OK);
    ck_assert_int_eq(got.id, 2);
    store_ca_free(&got);
    ck_assert_int_eq(store_ca_find(s, "aa", &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_ca_find(s, "aaaaaaaa", &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_ca_find(s, "99", &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_ca_find(s, "zz; DROP TABLE x", &got, &err), CG_ENOTFOUND);
    /* "aa" + six more digits matches FP1 and FP2 only by a longer prefix. */
    ck_assert_int_eq(store_ca_find(s, "aa111111", &got, &err), CG_OK);
    store_ca_free(&got);

    ck_assert_int_eq(store_ca_list(s, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(list[0].fingerprint, FP1);
    store_ca_list_free(list, n);

    ck_assert_int_eq(store_ca_set_active(s, 2, false, &err), CG_OK);
    ck_assert_int_eq(store_ca_get_by_fingerprint(s, FP2, &got, &err), CG_OK);
    ck_assert(!got.is_active);
    store_ca_free(&got);
    ck_assert_int_eq(store_ca_set_active(s, 77, false, &err), CG_ENOTFOUND);

    ck_assert_int_eq(store_ca_dependents(s, 2, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.rules + deps.mappings + deps.child_cas, 0);
    ck_assert_int_eq(store_ca_delete(s, 3, false, NULL, &err), CG_OK);
    ck_assert_int_eq(store_ca_delete(s, 3, false, NULL, &err), CG_ENOTFOUND);
    /* The root has a child CA in the table: not without --force. */
    ck_assert_int_eq(store_ca_dependents(s, 1, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.child_cas, 1);
    ck_assert_int_eq(store_ca_delete(s, 1, false, &deps, &err), CG_EDEPEND);
    ck_assert_ptr_nonnull(strstr(err.msg, "1 child CA (CA 2 CN=Int)"));
    ck_assert_int_eq(store_ca_find(s, "1", &got, &err), CG_OK);
    store_ca_free(&got);
}
END_TEST

START_TEST(ambiguous_prefix)
{
    struct store_ca ca, got;
    struct cg_err err = {""};

    fake_ca(&ca, "cc00000000000000000000000000000000000000000000000000000000000001", "CN=A", true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, "cc00000000000000000000000000000000000000000000000000000000000002", "CN=B", true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    ck_assert_int_eq(store_ca_find(s, "cc000000", &got, &err), CG_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than one CA"));
}
END_TEST

static int64_t add_user(const char *name, const char *role)
{
    char *roles[1] = {(char *)role};
    struct cg_err err = {""};
    int64_t id = 0;

    ck_assert_int_eq(store_user_add(s, name, roles, role ? 1 : 0, NULL, &id, &err), CG_OK);
    return id;
}

START_TEST(users_and_roles)
{
    char zeta[] = "zeta", alpha[] = "alpha", nospace[] = "no spaces";
    char *roles[] = {zeta, alpha, alpha}, *bad[] = {nospace};
    struct store_user u, *list = NULL;
    struct cg_err err = {""};
    size_t n = 0;
    int64_t id = 0;

    ck_assert_int_eq(store_user_add(s, "bob", roles, 3, "pbkdf2-sha256$1$x$y", &id, &err), CG_OK);
    ck_assert_int_eq(store_user_add(s, "bob", NULL, 0, NULL, &id, &err), CG_EEXIST);
    ck_assert_int_eq(store_user_add(s, "bad name", NULL, 0, NULL, &id, &err), CG_EINVAL);
    ck_assert_int_eq(store_user_add(s, "-x", NULL, 0, NULL, &id, &err), CG_EINVAL);
    ck_assert_int_eq(store_user_add(s, "BoB", NULL, 0, NULL, &id, &err), CG_EEXIST);
    ck_assert_ptr_nonnull(strstr(err.msg, "a user 'bob' already exists"));
    ck_assert_ptr_nonnull(strstr(err.msg, "('BoB' vs 'bob')"));
    ck_assert_int_eq(store_user_get(s, "BoB", &u, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_user_add(s, "carol", bad, 1, NULL, &id, &err), CG_EINVAL);
    ck_assert_int_eq(store_user_get(s, "carol", &u, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_user_get(s, "bob", &u, &err), CG_OK);
    ck_assert_uint_eq(u.n_roles, 2);
    ck_assert_str_eq(u.roles[0], "alpha");
    ck_assert_str_eq(u.roles[1], "zeta");
    ck_assert_str_eq(u.password_hash, "pbkdf2-sha256$1$x$y");
    ck_assert(u.is_active && !u.is_locked);
    store_user_free(&u);

    ck_assert_int_eq(store_user_set_locked(s, "bob", true, &err), CG_OK);
    ck_assert_int_eq(store_user_set_locked(s, "nobody", true, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_user_set_roles(s, "bob", bad, 1, &err), CG_EINVAL);
    ck_assert_int_eq(store_user_set_roles(s, "bob", roles + 1, 1, &err), CG_OK);
    ck_assert_int_eq(store_user_set_password(s, "bob", NULL, &err), CG_OK);
    ck_assert_int_eq(store_user_get_by_id(s, id, &u, &err), CG_OK);
    ck_assert(u.is_locked);
    ck_assert_uint_eq(u.n_roles, 1);
    ck_assert_ptr_null(u.password_hash);
    store_user_free(&u);

    add_user("anna", NULL);
    ck_assert_int_eq(store_user_list(s, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].name, "anna");
    store_user_list_free(list, n);
    ck_assert_int_eq(store_user_delete(s, "anna", &err), CG_OK);
    ck_assert_int_eq(store_user_delete(s, "anna", &err), CG_ENOTFOUND);
}
END_TEST

START_TEST(mappings)
{
    static unsigned char der[] = {0x30, 0x00};
    struct store_ca ca;
    struct store_map m, got, *list = NULL;
    struct cg_err err = {""};
    int64_t uid;
    struct store_ca_deps deps;
    size_t n = 0;

    fake_ca(&ca, FP1, "CN=Int", false);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    uid = add_user("integrator1", "push");

    memset(&m, 0, sizeof(m));
    m.user_id = uid;
    m.kind = STORE_MAP_CERT;
    snprintf(m.fingerprint, sizeof(m.fingerprint), "%s", FP3);
    m.subject = (char *)"CN=integrator1";
    m.issuer = (char *)"CN=Int";
    m.serial = (char *)"03";
    m.der = der;
    m.der_len = sizeof(der);
    m.is_active = true;
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_EEXIST);
    ck_assert_ptr_nonnull(strstr(err.msg, "already mapped to user integrator1"));

    memset(&m, 0, sizeof(m));
    m.user_id = uid;
    m.kind = STORE_MAP_RULE;
    m.ca_id = 1;
    m.match_field = (char *)"cn";
    m.match_value = (char *)"integrator1";
    m.is_active = true;
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_EEXIST);
    m.ca_id = 42;
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_ENOTFOUND);

    ck_assert_int_eq(store_map_get_by_fingerprint(s, FP3, &got, &err), CG_OK);
    ck_assert_str_eq(got.user_name, "integrator1");
    ck_assert_int_eq(got.kind, STORE_MAP_CERT);
    store_map_free(&got);
    ck_assert_int_eq(store_map_get(s, 2, &got, &err), CG_OK);
    ck_assert_str_eq(got.match_value, "integrator1");
    store_map_free(&got);
    ck_assert_int_eq(store_map_list(s, "integrator1", &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 2);
    store_map_list_free(list, n);
    ck_assert_int_eq(store_map_list(s, "ghost", &list, &n, &err), CG_ENOTFOUND);

    ck_assert_int_eq(store_ca_dependents(s, 1, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.rules, 1);
    ck_assert_int_eq(deps.mappings, 1);
    ck_assert_int_eq(deps.child_cas, 0);
    ck_assert_int_eq(store_ca_delete(s, 1, false, NULL, &err), CG_EDEPEND);
    ck_assert_ptr_nonnull(strstr(err.msg, "1 rule bound to it, 1 mapped certificate it issued"));
    ck_assert_int_eq(store_map_get(s, 2, &got, &err), CG_OK);
    store_map_free(&got);
    ck_assert_int_eq(store_ca_delete(s, 1, true, NULL, &err), CG_OK);
    ck_assert_int_eq(store_map_get(s, 2, &got, &err), CG_ENOTFOUND);

    ck_assert_int_eq(store_map_delete(s, 1, &err), CG_OK);
    ck_assert_int_eq(store_map_delete(s, 1, &err), CG_ENOTFOUND);
    /* Deleting a user takes its mappings. */
    memset(&m, 0, sizeof(m));
    m.user_id = uid;
    m.kind = STORE_MAP_PINNED;
    snprintf(m.fingerprint, sizeof(m.fingerprint), "%s", FP2);
    m.subject = m.issuer = (char *)"CN=self";
    m.serial = (char *)"01";
    m.der = der;
    m.der_len = sizeof(der);
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);
    ck_assert_int_eq(store_user_delete(s, "integrator1", &err), CG_OK);
    ck_assert_int_eq(store_map_list(s, NULL, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 0);
    store_map_list_free(list, n);
}
END_TEST

/* Root 1 -> Int 2 -> Sub 3: a mapping issued by Sub and a rule bound to Int
 * depend on the root too. A CA named like Int but with another key, and a
 * re-keyed root with the root's name, are not below it. */
START_TEST(ca_delete_counts_below)
{
    static unsigned char der[] = {0x30, 0x00};
    struct store_ca ca, got;
    struct store_map m;
    struct store_ca_deps deps;
    struct cg_err err = {""};
    int64_t uid;

    fake_ca(&ca, FP1, "CN=Root", true);
    snprintf(ca.ski, sizeof(ca.ski), "01");
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, FP2, "CN=Int", false);
    snprintf(ca.ski, sizeof(ca.ski), "02");
    snprintf(ca.aki, sizeof(ca.aki), "01");
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, FP3, "CN=Sub", false);
    ca.issuer = (char *)"CN=Int";
    snprintf(ca.aki, sizeof(ca.aki), "02");
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, "cc44444444444444444444444444444444444444444444444444444444444444", "CN=Int",
            false);
    snprintf(ca.aki, sizeof(ca.aki), "99");
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    fake_ca(&ca, "dd55555555555555555555555555555555555555555555555555555555555555", "CN=Root",
            true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);

    uid = add_user("u", "push");
    memset(&m, 0, sizeof(m));
    m.user_id = uid;
    m.kind = STORE_MAP_CERT;
    snprintf(m.fingerprint, sizeof(m.fingerprint), "%064d", 5);
    m.subject = (char *)"CN=leaf";
    m.issuer = (char *)"CN=Sub";
    m.der = der;
    m.der_len = sizeof(der);
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);
    memset(&m, 0, sizeof(m));
    m.user_id = uid;
    m.kind = STORE_MAP_RULE;
    m.ca_id = 2;
    m.match_field = (char *)"cn";
    m.match_value = (char *)"leaf";
    ck_assert_int_eq(store_map_insert(s, &m, &err), CG_OK);

    ck_assert_int_eq(store_ca_dependents(s, 1, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.child_cas, 2);
    ck_assert_int_eq(deps.rules, 0);
    ck_assert_int_eq(deps.mappings, 0);
    ck_assert_int_eq(deps.child_rules, 1);
    ck_assert_int_eq(deps.child_mappings, 1);
    ck_assert_int_eq(store_ca_delete(s, 1, false, NULL, &err), CG_EDEPEND);
    ck_assert_msg(strstr(err.msg, "2 child CAs (CA 2 CN=Int, CA 3 CN=Sub) with 1 rule and 1 "
                                  "mapped certificate below it"),
                  "%s", err.msg);
    /* Int's own dependents: Sub, its mapping, the rule bound to Int. */
    ck_assert_int_eq(store_ca_dependents(s, 2, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.child_cas, 1);
    ck_assert_int_eq(deps.rules, 1);
    ck_assert_int_eq(deps.child_mappings, 1);
    /* --force deletes the root only; what was below it stays. */
    ck_assert_int_eq(store_ca_delete(s, 1, true, &deps, &err), CG_OK);
    ck_assert_int_eq(deps.child_cas, 2);
    ck_assert_int_eq(store_ca_find(s, "1", &got, &err), CG_ENOTFOUND);
    ck_assert_int_eq(store_ca_find(s, "3", &got, &err), CG_OK);
    store_ca_free(&got);
    ck_assert_int_eq(store_map_get(s, 2, &m, &err), CG_OK);
    store_map_free(&m);
}
END_TEST

START_TEST(crls)
{
    static unsigned char der[] = {0x30, 0x00};
    struct store_ca ca;
    struct store_crl c, *list = NULL;
    struct store_crl_scope seen;
    struct cg_err err = {""};
    size_t n = 0;

    fake_ca(&ca, FP1, "CN=Int", false);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    memset(&c, 0, sizeof(c));
    snprintf(c.signer_spki, sizeof(c.signer_spki), "%s", ca.spki_sha256);
    c.issuer = (char *)"CN=Int";
    snprintf(c.fingerprint, sizeof(c.fingerprint), "%s", FP2);
    c.this_update = 2000;
    c.next_update = 3000;
    c.revoked_count = 1;
    c.der = der;
    c.der_len = sizeof(der);
    ck_assert_int_eq(store_crl_scope(s, c.issuer, c.signer_spki, &seen, &err), CG_OK);
    ck_assert_int_eq(seen.count, 0);
    ck_assert_int_eq(store_crl_replace(s, &c, &seen, &err), CG_OK);
    /* The same CRL again, or any CRL decided on a stale view of the scope,
     * is refused: another one was loaded in between. */
    ck_assert_int_eq(store_crl_replace(s, &c, &seen, &err), CG_EEXIST);
    snprintf(c.fingerprint, sizeof(c.fingerprint), "%s", FP3);
    c.this_update = 2500;
    ck_assert_int_eq(store_crl_replace(s, &c, &seen, &err), CG_EEXIST);
    /* Decided on the current view, the newer one replaces it. */
    ck_assert_int_eq(store_crl_scope(s, c.issuer, c.signer_spki, &seen, &err), CG_OK);
    ck_assert_int_eq(seen.count, 1);
    ck_assert_int_eq(store_crl_replace(s, &c, &seen, &err), CG_OK);
    ck_assert_int_eq(store_crl_list(s, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(list[0].this_update, 2500);
    store_crl_list_free(list, n);
    /* The CRLs belong to the key: deleting the CA keeps them. */
    ck_assert_int_eq(store_ca_delete(s, ca.id, false, NULL, &err), CG_OK);
    ck_assert_int_eq(store_crl_list(s, &list, &n, &err), CG_OK);
    ck_assert_uint_eq(n, 1);
    store_crl_list_free(list, n);
}
END_TEST

START_TEST(trust_version_moves)
{
    struct store *other = NULL;
    struct store_ca ca;
    struct cg_err err = {""};
    int64_t v0 = 0, v1 = 0, v2 = 0, v3 = 0;

    ck_assert_int_eq(store_trust_version(s, &v0), CG_OK);
    fake_ca(&ca, FP1, "CN=Root", true);
    ck_assert_int_eq(store_ca_insert(s, &ca, &err), CG_OK);
    ck_assert_int_eq(store_trust_version(s, &v1), CG_OK);
    ck_assert_int_gt(v1, v0);
    add_user("u1", NULL);
    ck_assert_int_eq(store_trust_version(s, &v2), CG_OK);
    ck_assert_int_gt(v2, v1);
    /* A change made by another connection (the CLI) is seen too. */
    ck_assert_int_eq(store_open(path, STORE_OPEN_EXISTING, &other, &err), CG_OK);
    ck_assert_int_eq(store_user_set_locked(other, "u1", true, &err), CG_OK);
    store_close(other);
    ck_assert_int_eq(store_trust_version(s, &v3), CG_OK);
    ck_assert_int_gt(v3, v2);
}
END_TEST

START_TEST(transactions_roll_back)
{
    struct store_user u;
    struct cg_err err = {""};

    ck_assert_int_eq(store_begin(s, &err), CG_OK);
    add_user("temp", NULL);
    store_rollback(s);
    ck_assert_int_eq(store_user_get(s, "temp", &u, &err), CG_ENOTFOUND);
    store_rollback(s); /* harmless without a transaction */
}
END_TEST

/* The PostgreSQL driver's pieces that need no server (the rest runs
 * against a real one in make check-pg). */
START_TEST(pg_uri_and_placeholders)
{
    struct db_stmt st = {0};
    char *r;

    ck_assert(core_is_pg("postgresql://h/db"));
    ck_assert(core_is_pg("postgres:///db?host=/run/postgresql"));
    ck_assert(!core_is_pg("./postgresql.db"));
    ck_assert(!core_is_pg("/var/lib/certgate/certgate.db"));
    r = pg_redact("postgresql://alice:s3cret@db.example:5432/certgate?sslmode=require");
    ck_assert_str_eq(r, "postgresql://alice@db.example:5432/certgate?sslmode=require");
    free(r);
    r = pg_redact("postgresql:///certgate?host=/run/pg&password=s3cret&user=alice");
    ck_assert_str_eq(r, "postgresql:///certgate?host=/run/pg&password=***&user=alice");
    free(r);
    r = pg_redact("postgresql://alice@h/db");
    ck_assert_str_eq(r, "postgresql://alice@h/db");
    free(r);
    r = store_display_name("postgres://u:p@h/d");
    ck_assert_str_eq(r, "postgres://u@h/d");
    free(r);
    /* ? and ?N become $N (a bare ? is one past the highest so far), quoted text stays */
    ck_assert_int_eq(pg_prepare(&st, "SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ?3 OR c = ?"),
                     CG_OK);
    ck_assert_str_eq(st.pg_sql, "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $3 OR c = $4");
    ck_assert_int_eq(st.n_params, 4);
    pg_finalize(&st);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("store");
    TCase *tc;
    SRunner *sr;
    int failed;

    tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, open_init_and_reopen);
    tcase_add_test(tc, open_refusals);
    tcase_add_test(tc, open_upgrades_older);
    tcase_add_test(tc, upgrade_from_version_1);
    suite_add_tcase(suite, tc);
    tc = tcase_create("records");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, ca_records);
    tcase_add_test(tc, ambiguous_prefix);
    tcase_add_test(tc, users_and_roles);
    tcase_add_test(tc, mappings);
    tcase_add_test(tc, ca_delete_counts_below);
    tcase_add_test(tc, crls);
    tcase_add_test(tc, trust_version_moves);
    tcase_add_test(tc, transactions_roll_back);
    suite_add_tcase(suite, tc);
    tc = tcase_create("postgresql");
    tcase_add_test(tc, pg_uri_and_placeholders);
    suite_add_tcase(suite, tc);
    sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
