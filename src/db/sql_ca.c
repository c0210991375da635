#include "config.h"
#include "db/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CA certificate chain table ---- */

/* One row into the struct store_ca at @p rec (a core_read_fn). */
static int read_ca(struct db_stmt *st, void *rec)
{
    struct store_ca *ca = rec;

    memset(ca, 0, sizeof(*ca));
    ca->id = st_column_int64(st, 0);
    ca->name = col_str(st, 1);
    ca->subject = col_str(st, 2);
    ca->issuer = col_str(st, 3);
    ca->serial = col_str(st, 4);
    col_buf(st, 5, ca->fingerprint, sizeof(ca->fingerprint));
    col_buf(st, 6, ca->spki_sha256, sizeof(ca->spki_sha256));
    col_buf(st, 7, ca->ski, sizeof(ca->ski));
    col_buf(st, 8, ca->aki, sizeof(ca->aki));
    ca->not_before = st_column_int64(st, 9);
    ca->not_after = st_column_int64(st, 10);
    ca->is_root = st_column_int(st, 11) != 0;
    ca->path_len = st_column_int(st, 12);
    ca->der = col_blob(st, 13, &ca->der_len);
    ca->pem = col_str(st, 14);
    ca->is_active = st_column_int(st, 15) != 0;
    col_buf(st, 16, ca->created_on, sizeof(ca->created_on));
    col_buf(st, 17, ca->updated_on, sizeof(ca->updated_on));
    if (!ca->subject || !ca->issuer || !ca->serial || !ca->der || !ca->pem) {
        store_ca_free(ca);
        return CG_ENOMEM;
    }
    return CG_OK;
}

/* Whether the key @p spki is a disabled CA's: 1 yes, 0 no, negative on failure. */
static int key_is_disabled(struct store *s, const char *spki, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_COPY_DISABLED, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, spki);
    rc = st_step(st);
    rc = rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : db_fail(s, err, "read CA state");
    done(st);
    return rc;
}

/* Forgets that the CA with key @p spki was deleted; *out_was tells whether it was. */
static int unbury(struct store *s, const char *spki, bool *out_was, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_UNBURY, err);
    int rc;

    if (!st)
        return CG_EDB;
    bind_text(st, 1, spki);
    rc = step_done(s, st, err, "forget a deleted CA");
    *out_was = rc == CG_OK && core_changes(&s->core) > 0;
    done(st);
    return rc;
}

int store_ca_insert(struct store *s, struct store_ca *ca, struct cg_err *err)
{
    struct db_stmt *st;
    char now[21];
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    /* A copy of a disabled CA is the same CA: it comes in disabled. */
    rc = key_is_disabled(s, ca->spki_sha256, err);
    if (rc < 0)
        goto out;
    if (rc == 1)
        ca->is_active = false;
    rc = unbury(s, ca->spki_sha256, &ca->was_deleted, err);
    if (rc)
        goto out;
    st = stmt(s, ST_CA_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, ca->name);
    bind_text(st, 2, ca->subject);
    bind_text(st, 3, ca->issuer);
    bind_text(st, 4, ca->serial);
    bind_text(st, 5, ca->fingerprint);
    bind_text(st, 6, ca->spki_sha256);
    bind_text(st, 7, ca->ski);
    bind_text(st, 8, ca->aki);
    st_bind_int64(st, 9, ca->not_before);
    st_bind_int64(st, 10, ca->not_after);
    st_bind_int(st, 11, ca->is_root ? 1 : 0);
    st_bind_int(st, 12, ca->path_len);
    st_bind_blob(st, 13, ca->der, (int)ca->der_len);
    bind_text(st, 14, ca->pem);
    st_bind_int(st, 15, ca->is_active ? 1 : 0);
    bind_text(st, 16, now);
    bind_text(st, 17, now);
    rc = step_insert(s, st, &ca->id, err, "add CA");
    if (rc == CG_EEXIST)
        cg_err_set(err, "a CA with fingerprint %s is already in the table", ca->fingerprint);
    if (rc == CG_OK) {
        snprintf(ca->created_on, sizeof(ca->created_on), "%s", now);
        snprintf(ca->updated_on, sizeof(ca->updated_on), "%s", now);
    }
out:
    return store_end(s, rc, err);
}

static int ca_one(struct store *s, struct db_stmt *st, struct store_ca *out, struct cg_err *err)
{
    int rc = core_one(&s->core, st, read_ca, out, "read CA", err);

    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no such CA");
    return rc;
}

int store_ca_get_by_fingerprint(struct store *s, const char *fingerprint, struct store_ca *out_ca,
                                struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_BY_FP, err);

    if (!st)
        return CG_EDB;
    bind_text(st, 1, fingerprint);
    return ca_one(s, st, out_ca, err);
}

int store_ca_find(struct store *s, const char *id_or_fp, struct store_ca *out_ca,
                  struct cg_err *err)
{
    struct db_stmt *st;
    char hex[65];
    size_t n = 0;
    int rc;

    if (!id_or_fp || !*id_or_fp) {
        cg_err_set(err, "no CA id or fingerprint given");
        return CG_EINVAL;
    }
    if (strspn(id_or_fp, "0123456789") == strlen(id_or_fp) && strlen(id_or_fp) < 16) {
        st = stmt(s, ST_CA_BY_ID, err);
        if (!st)
            return CG_EDB;
        st_bind_int64(st, 1, strtoll(id_or_fp, NULL, 10));
        return ca_one(s, st, out_ca, err);
    }
    for (const char *p = id_or_fp; *p; p++) {
        char c = *p;

        if (c == ':')
            continue;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n >= 64) {
            cg_err_set(err, "'%s' is neither a CA id nor a SHA-256 fingerprint", id_or_fp);
            return CG_ENOTFOUND;
        }
        hex[n++] = c;
    }
    hex[n] = '\0';
    if (n < 8) {
        cg_err_set(err, "a fingerprint prefix needs at least 8 hex digits");
        return CG_ENOTFOUND;
    }
    st = stmt(s, ST_CA_BY_FP_PREFIX, err);
    if (!st)
        return CG_EDB;
    bind_text(st, 1, hex);
    rc = st_step(st);
    if (rc == DB_DONE) {
        done(st);
        cg_err_set(err, "no CA with fingerprint %s", hex);
        return CG_ENOTFOUND;
    }
    if (rc != DB_ROW) {
        done(st);
        return db_fail(s, err, "find CA");
    }
    rc = read_ca(st, out_ca);
    if (rc == CG_OK && st_step(st) == DB_ROW) {
        store_ca_free(out_ca);
        cg_err_set(err, "fingerprint prefix %s matches more than one CA: give more digits", hex);
        rc = CG_EINVAL;
    }
    done(st);
    return rc;
}

static void free_ca_row(void *rec)
{
    store_ca_free(rec);
}

int store_ca_list(struct store *s, struct store_ca **out_cas, size_t *out_n, struct cg_err *err)
{
    return core_list(&s->core, stmt(s, ST_CA_LIST, err), sizeof(**out_cas), read_ca, free_ca_row,
                     (void **)out_cas, out_n, "list CAs", err);
}

int store_ca_set_active(struct store *s, int64_t id, bool is_active, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_SET_ACTIVE, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    st_bind_int(st, 1, is_active ? 1 : 0);
    bind_text(st, 2, now);
    st_bind_int64(st, 3, id);
    rc = step_change(s, st, err, "update CA");
    if (rc == CG_ENOTFOUND)
        cg_err_set(err, "no CA with id %lld", (long long)id);
    return rc;
}

int store_ca_dependents(struct store *s, int64_t id, struct store_ca_deps *out_deps,
                        struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_DEPS, err);
    int rc = CG_OK;

    memset(out_deps, 0, sizeof(*out_deps));
    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    if (st_step(st) == DB_ROW) {
        out_deps->child_cas = st_column_int64(st, 0);
        out_deps->rules = st_column_int64(st, 1);
        out_deps->mappings = st_column_int64(st, 2);
        out_deps->child_rules = st_column_int64(st, 3);
        out_deps->child_mappings = st_column_int64(st, 4);
        out_deps->crls = st_column_int64(st, 5);
    } else {
        rc = db_fail(s, err, "count what depends on a CA");
    }
    done(st);
    return rc;
}

static const char *plural(int64_t n)
{
    return n == 1 ? "" : "s";
}

/* The refusal naming what depends on CA @p id: "CA 2 has 1 mapped
 * certificate it issued, 1 child CA (CA 1 CN=...) ... depending on it". */
static int refuse_delete(struct store *s, int64_t id, const struct store_ca_deps *d,
                         struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_CHILDREN, err);
    char what[400] = "", kids[256] = "";
    size_t wl = 0, kl = 0;
    int64_t shown = 0;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    while (shown < 3 && st_step(st) == DB_ROW) {
        cg_strappend(kids, sizeof(kids), &kl, "%sCA %lld %s", shown ? ", " : "",
                     (long long)st_column_int64(st, 0), (const char *)st_column_text(st, 1));
        shown++;
    }
    done(st);
    if (d->child_cas > shown)
        cg_strappend(kids, sizeof(kids), &kl, ", ...");
    if (d->rules)
        cg_strappend(what, sizeof(what), &wl, "%lld rule%s bound to it", (long long)d->rules,
                     plural(d->rules));
    if (d->mappings)
        cg_strappend(what, sizeof(what), &wl, "%s%lld mapped certificate%s it issued",
                     wl ? ", " : "", (long long)d->mappings, plural(d->mappings));
    if (d->child_cas)
        cg_strappend(what, sizeof(what), &wl, "%s%lld child CA%s (%s)", wl ? ", " : "",
                     (long long)d->child_cas, plural(d->child_cas), kids);
    if (d->child_rules || d->child_mappings)
        cg_strappend(what, sizeof(what), &wl,
                     "%s%lld rule%s and %lld mapped certificate%s below it", wl ? " with " : "",
                     (long long)d->child_rules, plural(d->child_rules),
                     (long long)d->child_mappings, plural(d->child_mappings));
    cg_err_set(err,
               "CA %lld has %s depending on it, and clients chaining through it would be "
               "refused: use --force to delete it anyway (its own rules go with it)",
               (long long)id, what);
    return CG_EDEPEND;
}

/* Another record of the same CA as @p id, 0 when none: 0 or positive,
 * negative on failure. */
static int64_t copy_of(struct store *s, int64_t id, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_COPY, err);
    int64_t other;
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, id);
    rc = st_step(st);
    other = rc == DB_ROW    ? st_column_int64(st, 0)
            : rc == DB_DONE ? 0
                            : db_fail(s, err, "find copies of a CA");
    done(st);
    return other;
}

static int run_ids(struct store *s, enum stmt_id id, int64_t a, int64_t b, const char *what,
                   struct cg_err *err)
{
    struct db_stmt *st = stmt(s, id, err);
    int rc;

    if (!st)
        return CG_EDB;
    st_bind_int64(st, 1, a);
    if (b)
        st_bind_int64(st, 2, b);
    rc = step_done(s, st, err, what);
    done(st);
    return rc;
}

/* Deletes the last record of a CA, keeping its key refused (sys_ca_deleted):
 * a renewed or cross-signed copy of it that a client sends is the same CA. */
static int delete_last_copy(struct store *s, int64_t id, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CA_BURY, err);
    char now[21];
    int rc;

    if (!st)
        return CG_EDB;
    now_iso(now);
    st_bind_int64(st, 1, id);
    st_bind_int64(st, 2, cg_now());
    bind_text(st, 3, now);
    rc = step_done(s, st, err, "remember the deleted CA");
    done(st);
    if (rc)
        return rc;
    return run_ids(s, ST_CA_DELETE_RULES, id, 0, "delete rules", err);
}

int store_ca_delete(struct store *s, int64_t id, bool force, struct store_ca_deps *out_deps,
                    struct cg_err *err)
{
    struct store_ca_deps d;
    int64_t other;
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    rc = store_ca_dependents(s, id, &d, err);
    if (rc)
        goto out;
    other = copy_of(s, id, err);
    if (other < 0) {
        rc = (int)other;
        goto out;
    }
    d.copy_id = other;
    if (out_deps)
        *out_deps = d;
    if (other) {
        /* The CA stays in the table through its other copy: what was bound
         * to this record is bound to that one. */
        rc = run_ids(s, ST_CA_MOVE_RULES, id, other, "move rules", err);
    } else if ((d.child_cas || d.rules || d.mappings || d.child_rules || d.child_mappings) &&
               !force) {
        rc = refuse_delete(s, id, &d, err);
    } else {
        rc = delete_last_copy(s, id, err);
    }
    if (rc)
        goto out;
    rc = run_ids(s, ST_CA_DELETE, id, 0, "delete CA", err);
    if (rc == CG_OK && core_changes(&s->core) == 0) {
        cg_err_set(err, "no CA with id %lld", (long long)id);
        rc = CG_ENOTFOUND;
    }
out:
    return store_end(s, rc, err);
}

/* ---- CRLs ---- */

int store_crl_scope(struct store *s, const char *issuer, const char *signer_spki,
                    struct store_crl_scope *out_scope, struct cg_err *err)
{
    struct db_stmt *st = stmt(s, ST_CRL_SCOPE, err);
    int rc = CG_OK;

    memset(out_scope, 0, sizeof(*out_scope));
    if (!st)
        return CG_EDB;
    bind_text(st, 1, issuer);
    bind_text(st, 2, signer_spki);
    if (st_step(st) == DB_ROW) {
        out_scope->count = st_column_int64(st, 0);
        out_scope->max_id = st_column_int64(st, 1);
    } else {
        rc = db_fail(s, err, "read the CRLs of a CA");
    }
    done(st);
    return rc;
}

int store_crl_replace(struct store *s, struct store_crl *crl, const struct store_crl_scope *seen,
                      struct cg_err *err)
{
    struct store_crl_scope now_scope;
    struct db_stmt *st;
    char now[21];
    int rc;

    rc = store_begin(s, err);
    if (rc)
        return rc;
    /* The caller decided "newer" from what it saw: another crl add in
     * between would make that decision stale. */
    rc = store_crl_scope(s, crl->issuer, crl->signer_spki, &now_scope, err);
    if (rc)
        goto out;
    if (now_scope.count != seen->count || now_scope.max_id != seen->max_id) {
        cg_err_set(err, "another CRL of this CA was loaded meanwhile: run certgate crl add again");
        rc = CG_EEXIST;
        goto out;
    }
    st = stmt(s, ST_CRL_DELETE_SCOPE, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    bind_text(st, 1, crl->issuer);
    bind_text(st, 2, crl->signer_spki);
    rc = step_done(s, st, err, "replace CRL");
    done(st);
    if (rc)
        goto out;
    st = stmt(s, ST_CRL_INSERT, err);
    if (!st) {
        rc = CG_EDB;
        goto out;
    }
    now_iso(now);
    bind_text(st, 1, crl->issuer);
    bind_text(st, 2, crl->signer_spki);
    bind_text(st, 3, crl->fingerprint);
    st_bind_int64(st, 4, crl->this_update);
    st_bind_int64(st, 5, crl->next_update);
    st_bind_int64(st, 6, crl->revoked_count);
    st_bind_blob(st, 7, crl->der, (int)crl->der_len);
    bind_text(st, 8, now);
    rc = step_insert(s, st, &crl->id, err, "add CRL");
    if (rc == CG_EEXIST)
        cg_err_set(err, "this CRL is already loaded");
    if (rc == CG_OK)
        snprintf(crl->created_on, sizeof(crl->created_on), "%s", now);
out:
    return store_end(s, rc, err);
}

static int read_crl_row(struct db_stmt *st, void *rec)
{
    struct store_crl *c = rec;

    memset(c, 0, sizeof(*c));
    c->id = st_column_int64(st, 0);
    col_buf(st, 1, c->signer_spki, sizeof(c->signer_spki));
    c->issuer = col_str(st, 2);
    col_buf(st, 3, c->fingerprint, sizeof(c->fingerprint));
    c->this_update = st_column_int64(st, 4);
    c->next_update = st_column_int64(st, 5);
    c->revoked_count = st_column_int64(st, 6);
    c->der = col_blob(st, 7, &c->der_len);
    col_buf(st, 8, c->created_on, sizeof(c->created_on));
    if (!c->issuer || !c->der) {
        store_crl_free(c);
        return CG_ENOMEM;
    }
    return CG_OK;
}

static void free_crl_row(void *rec)
{
    store_crl_free(rec);
}

int store_crl_list(struct store *s, struct store_crl **out_crls, size_t *out_n, struct cg_err *err)
{
    return core_list(&s->core, stmt(s, ST_CRL_LIST, err), sizeof(**out_crls), read_crl_row,
                     free_crl_row, (void **)out_crls, out_n, "list CRLs", err);
}

/* ---- deleted CAs ---- */

static int read_deleted_row(struct db_stmt *st, void *rec)
{
    struct store_ca_deleted *d = rec;

    memset(d, 0, sizeof(*d));
    col_buf(st, 0, d->spki_sha256, sizeof(d->spki_sha256));
    d->subject = col_str(st, 1);
    col_buf(st, 2, d->fingerprint, sizeof(d->fingerprint));
    d->deleted_at = st_column_int64(st, 3);
    col_buf(st, 4, d->deleted_on, sizeof(d->deleted_on));
    return d->subject ? CG_OK : CG_ENOMEM;
}

static void free_deleted_row(void *rec)
{
    struct store_ca_deleted *d = rec;

    free(d->subject);
    d->subject = NULL;
}

int store_ca_deleted_list(struct store *s, struct store_ca_deleted **out_list, size_t *out_n,
                          struct cg_err *err)
{
    return core_list(&s->core, stmt(s, ST_CA_DELETED_LIST, err), sizeof(**out_list),
                     read_deleted_row, free_deleted_row, (void **)out_list, out_n,
                     "list deleted CAs", err);
}
