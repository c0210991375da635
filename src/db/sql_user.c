#include "config.h"
#include "db/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- users and roles ---- */

static int check_roles(char *const *roles, size_t n, struct cg_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!cg_valid_name(roles[i])) {
            cg_err_set(err, "invalid role name '%s'", roles[i] ? roles[i] : "");
            return CG_EINVAL;
        }
    }
    return CG_OK;
}

/* Refuses invalid role names, then begins the write transaction. */
static int begin_with_roles(struct store *s, char *const *roles, size_t n, struct cg_err *err)
{
    int rc = check_roles(roles, n, err);

    return rc ? rc : store_begin(s, err);
}

static int insert_roles(struct store *s, int64_t user_id, char *const *roles, size_t n,
                        struct cg_err *err)
{
    for (size_t i = 0; i < n; i++) {
        struct db_stmt *st = stmt(s, ST_ROLE_INSERT, err);
        int rc;

        if (!st)
            return CG_EDB;
        st_bind_int64(st, 1, user_id);
        bind_text(st, 2, roles[i]);
        rc = step_done(s, st, err, "add role");
        done(st);
        if (rc)
            return rc;
    }
    return CG_OK;
}

int store_user_add(struct store *s, const char *name, char *const *roles, size_t n_roles,
                   const char *password_hash, int64_t *out_id, struct cg_err *err)
{
    struct db_stmt *st;
    char now[21];
    int64_t id = 0;
    int rc;

    /* A name starting with '-' would read as an option on every later
     * command line. */
    if (!cg_valid_name(name) || name[0] == '-') {
        cg_err_set(err, "invalid user name '%s'", name ? name : "");
        return CG_EINVAL;
    }
    rc = begin_with_roles(s, roles, n_roles, err);
    if (rc)
        return rc;
    /* integrator1 and Integrator1 side by side invite mapping a certificate
     * to the wrong one. */
    st = stmt(s, ST_USER_SAME_CASE, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    bind_text(st, 1, name);
    rc = st_step(st);
    if (rc == DB_ROW) {
        cg_err_set(err,
                   "a user '%s' already exists, and names that differ only in case are "
                   "refused ('%s' vs '%s'): pick another name",
                   (const char *)st_column_text(st, 0), name, (const char *)st_column_text(st, 0));
        rc = CG_EEXIST;
    } else if (rc == DB_DONE) {
        rc = CG_OK;
    } else {
        rc = db_fail(s, err, "look up users");
    }
    done(st);
    if (rc)
        goto out;
    st = stmt(s, ST_USER_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, name);
    bind_text(st, 2, password_hash);
    bind_text(st, 3, now);
    bind_text(st, 4, now);
    rc = step_insert(s, st, &id, err, "add user");
    if (rc == CG_EEXIST)
        cg_err_set(err, "user '%s' already exists", name);
    if (rc)
        goto out;
    rc = insert_roles(s, id, roles, n_roles, err);
out:
    rc = store_end(s, rc, err);
    if (rc == CG_OK && out_id)
        *out_id = id;
    return rc;
}

static int read_roles(struct store *s, struct store_user *u, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_USER_ROLES, err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, u->id);
    for (;;) {
        char **nr;

        rc = st_step(st);
        if (rc != DB_ROW)
            break;
        nr = realloc(u->roles, (u->n_roles + 1) * sizeof(*nr));
        if (!nr) {
            done(st);
            return CG_ENOMEM;
        }
        u->roles = nr;
        u->roles[u->n_roles] = col_str(st, 0);
        if (!u->roles[u->n_roles]) {
            done(st);
            return CG_ENOMEM;
        }
        u->n_roles++;
    }
    done(st);
    return rc == DB_DONE ? CG_OK : db_fail(s, err, "read roles");
}

/* One row into the struct store_user at @p rec (a core_read_fn). */
static int read_user_row(struct db_stmt *st, void *rec)
{
    struct store_user *u = rec;

    memset(u, 0, sizeof(*u));
    u->id = st_column_int64(st, 0);
    u->name = col_str(st, 1);
    u->is_active = st_column_int(st, 2) != 0;
    u->is_locked = st_column_int(st, 3) != 0;
    u->password_hash = col_str(st, 4);
    col_buf(st, 5, u->created_on, sizeof(u->created_on));
    col_buf(st, 6, u->updated_on, sizeof(u->updated_on));
    return u->name ? CG_OK : CG_ENOMEM;
}

static int user_one(struct store *s, struct db_stmt *st, struct store_user *out, struct cg_err *err)
{
    int rc = core_one(&s->core, st, read_user_row, out, "read user", err);

    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no such user");
    if (rc == CG_OK)
        rc = read_roles(s, out, err);
    if (rc && rc != CG_ENOTFOUND)
        store_user_free(out);
    return rc;
}

int store_user_get(struct store *s, const char *name, struct store_user *out_user,
                   struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_USER_BY_NAME, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, name);
    return user_one(s, st, out_user, err);
}

int store_user_get_by_id(struct store *s, int64_t id, struct store_user *out_user,
                         struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_USER_BY_ID, err);

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    return user_one(s, st, out_user, err);
}

static void free_user_row(void *rec)
{
    store_user_free(rec);
}

int store_user_list(struct store *s, struct store_user **out_users, size_t *out_n,
                    struct cg_err *err)
{
    struct store_user *users;
    size_t n;
    int rc;

    *out_users = NULL;
    *out_n = 0;
    rc = core_list(&s->core, stmt(s, ST_USER_LIST, err), sizeof(*users), read_user_row,
                   free_user_row, (void **)&users, &n, "list users", err);
    if (rc)
        return rc;
    /* Roles after the list statement is reset: one statement at a time. */
    for (size_t i = 0; i < n; i++) {
        rc = read_roles(s, &users[i], err);
        if (rc) {
            store_user_list_free(users, n);
            return rc;
        }
    }
    *out_users = users;
    *out_n = n;
    return CG_OK;
}

static int update_user(struct store *s, enum stmt_id id, const char *name, int flag,
                       const char *text, bool use_text, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, id, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    if (use_text)
        bind_text(st, 1, text);
    else
        st_bind_int(st, 1, flag);
    bind_text(st, 2, now);
    bind_text(st, 3, name);
    rc = step_change(s, st, err, "update user");
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no user named '%s'", name);
    return rc;
}

int store_user_set_locked(struct store *s, const char *name, bool is_locked, struct cg_err *err)
{
    return update_user(s, ST_USER_SET_LOCKED, name, is_locked ? 1 : 0, NULL, false, err);
}

int store_user_set_password(struct store *s, const char *name, const char *password_hash,
                            struct cg_err *err)
{
    return update_user(s, ST_USER_SET_PASSWORD, name, 0, password_hash, true, err);
}

int store_user_set_roles(struct store *s, const char *name, char *const *roles, size_t n_roles,
                         struct cg_err *err)
{
    struct store_user u;
    struct db_stmt *st;
    char now[21];
    int rc;

    rc = begin_with_roles(s, roles, n_roles, err);
    if (rc)
        return rc;
    rc = store_user_get(s, name, &u, err);
    if (rc) {
        if (rc == CG_ENOTFOUND)
            cg_err_set(err, "no user named '%s'", name);
        goto out;
    }
    st = stmt(s, ST_ROLE_CLEAR, err);
    if (!st) {
        rc = CG_EDB;
        goto out_user;
    }
    st_bind_int64(st, 1, u.id);
    rc = step_done(s, st, err, "clear roles");
    done(st);
    if (rc)
        goto out_user;
    rc = insert_roles(s, u.id, roles, n_roles, err);
    if (rc)
        goto out_user;
    st = stmt(s, ST_USER_TOUCH, err);
    if (!st) {
        rc = CG_EDB;
        goto out_user;
    }
    now_iso(now);
    bind_text(st, 1, now);
    st_bind_int64(st, 2, u.id);
    rc = step_done(s, st, err, "update user");
    done(st);
out_user:
    store_user_free(&u);
out:
    return store_end(s, rc, err);
}

int store_user_delete(struct store *s, const char *name, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_USER_DELETE, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, name);
    rc = step_change(s, st, err, "delete user");
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no user named '%s'", name);
    return rc;
}

/* ---- user-to-certificate mappings ---- */

static enum store_map_kind kind_of(const char *name)
{
    if (name && strcmp(name, "pinned") == 0)
        return STORE_MAP_PINNED;
    if (name && strcmp(name, "rule") == 0)
        return STORE_MAP_RULE;
    return STORE_MAP_CERT;
}

/* One row into the struct store_map at @p rec (a core_read_fn). */
static int read_map(struct db_stmt *st, void *rec)
{
    struct store_map *m = rec;

    memset(m, 0, sizeof(*m));
    m->id = st_column_int64(st, 0);
    m->user_id = st_column_int64(st, 1);
    m->user_name = col_str(st, 2);
    m->kind = kind_of((const char *)st_column_text(st, 3));
    m->name = col_str(st, 4);
    col_buf(st, 5, m->fingerprint, sizeof(m->fingerprint));
    m->subject = col_str(st, 6);
    m->issuer = col_str(st, 7);
    m->serial = col_str(st, 8);
    m->not_before = st_column_int64(st, 9);
    m->not_after = st_column_int64(st, 10);
    m->der = col_blob(st, 11, &m->der_len);
    m->ca_id = st_column_int64(st, 12);
    m->match_field = col_str(st, 13);
    m->match_value = col_str(st, 14);
    m->is_active = st_column_int(st, 15) != 0;
    col_buf(st, 16, m->created_on, sizeof(m->created_on));
    if (!m->user_name || (m->kind == STORE_MAP_RULE && (!m->match_field || !m->match_value)) ||
        (m->kind != STORE_MAP_RULE && (!m->subject || !m->der))) {
        store_map_free(m);
        return CG_ENOMEM;
    }
    return CG_OK;
}

int store_map_insert(struct store *s, struct store_map *map, struct cg_err *err)
{
    bool rule = map->kind == STORE_MAP_RULE;
    struct store_user u;
    struct db_stmt *st;
    char now[21], key[24];
    int rc;

    if (rule && (!map->ca_id || !map->match_field || !map->match_value)) {
        cg_err_set(err, "a rule needs a CA, a field and a value");
        return CG_EINVAL;
    }
    if (!rule && (!map->fingerprint[0] || !map->der || !map->subject)) {
        cg_err_set(err, "a certificate mapping needs the certificate");
        return CG_EINVAL;
    }
    rc = store_begin(s, err);
    if (rc)
        return rc;
    if (rule) {
        struct store_ca ca;

        snprintf(key, sizeof(key), "%lld", (long long)map->ca_id);
        rc = store_ca_find(s, key, &ca, err);
        if (rc) {
            if (rc == CG_ENOTFOUND)
                cg_err_set(err, "no CA with id %lld", (long long)map->ca_id);
            goto out;
        }
        store_ca_free(&ca);
        st = stmt(s, ST_MAP_RULE_EXISTS, err);
        if (!st) {
            rc = CG_EDB;
            goto out;
        }
        st_bind_int64(st, 1, map->ca_id);
        bind_text(st, 2, map->match_field);
        bind_text(st, 3, map->match_value);
        if (st_step(st) == DB_ROW) {
            cg_err_set(err, "the same rule already exists for user %s (mapping %lld)",
                       st_column_text(st, 1), (long long)st_column_int64(st, 0));
            rc = CG_EEXIST;
        }
        done(st);
        if (rc)
            goto out;
    } else {
        struct store_map old;

        rc = store_map_get_by_fingerprint(s, map->fingerprint, &old, err);
        if (rc == CG_OK) {
            cg_err_set(err, "certificate %s is already mapped to user %s (mapping %lld)",
                       map->fingerprint, old.user_name, (long long)old.id);
            store_map_free(&old);
            rc = CG_EEXIST;
            goto out;
        }
        if (rc != CG_ENOTFOUND)
            goto out;
    }
    rc = store_user_get_by_id(s, map->user_id, &u, err);
    if (rc) {
        if (rc == CG_ENOTFOUND)
            cg_err_set(err, "no user with id %lld", (long long)map->user_id);
        goto out;
    }
    store_user_free(&u);
    st = stmt(s, ST_MAP_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    st_bind_int64(st, 1, map->user_id);
    bind_text(st, 2, store_map_kind_name(map->kind));
    bind_text(st, 3, map->name);
    if (rule) {
        for (int i = 4; i <= 10; i++)
            st_bind_null(st, i);
        st_bind_int64(st, 11, map->ca_id);
        bind_text(st, 12, map->match_field);
        bind_text(st, 13, map->match_value);
    } else {
        bind_text(st, 4, map->fingerprint);
        bind_text(st, 5, map->subject);
        bind_text(st, 6, map->issuer);
        bind_text(st, 7, map->serial);
        st_bind_int64(st, 8, map->not_before);
        st_bind_int64(st, 9, map->not_after);
        st_bind_blob(st, 10, map->der, (int)map->der_len);
        for (int i = 11; i <= 13; i++)
            st_bind_null(st, i);
    }
    st_bind_int(st, 14, map->is_active ? 1 : 0);
    bind_text(st, 15, now);
    rc = step_insert(s, st, &map->id, err, "add mapping");
    if (rc == CG_OK)
        snprintf(map->created_on, sizeof(map->created_on), "%s", now);
out:
    return store_end(s, rc, err);
}

static int map_one(struct store *s, struct db_stmt *st, struct store_map *out, struct cg_err *err)
{
    int rc = core_one(&s->core, st, read_map, out, "read mapping", err);

    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no such mapping");
    return rc;
}

int store_map_get(struct store *s, int64_t id, struct store_map *out_map, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_MAP_BY_ID, err);

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    return map_one(s, st, out_map, err);
}

int store_map_get_by_fingerprint(struct store *s, const char *fingerprint,
                                 struct store_map *out_map, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_MAP_BY_FP, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, fingerprint);
    return map_one(s, st, out_map, err);
}

static void free_map_row(void *rec)
{
    store_map_free(rec);
}

int store_map_list(struct store *s, const char *user_name, struct store_map **out_maps,
                   size_t *out_n, struct cg_err *err)
{
    struct store_user u;
    struct db_stmt *st;
    int rc;

    *out_maps = NULL;
    *out_n = 0;
    if (user_name) {
        rc = store_user_get(s, user_name, &u, err);
        if (rc) {
            if (rc == CG_ENOTFOUND)
                cg_err_set(err, "no user named '%s'", user_name);
            return rc;
        }
        store_user_free(&u);
    }
    st = stmt(s, user_name ? ST_MAP_LIST_USER : ST_MAP_LIST, err);
    if (st && user_name)
        bind_text(st, 1, user_name);
    return core_list(&s->core, st, sizeof(**out_maps), read_map, free_map_row, (void **)out_maps,
                     out_n, "list mappings", err);
}

int store_map_delete(struct store *s, int64_t id, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_MAP_DELETE, err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    rc = step_change(s, st, err, "delete mapping");
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no mapping with id %lld", (long long)id);
    return rc;
}
