/*
 * authn: the authenticate stage. The client certificate decides when one
 * was presented (its chain verdict and identity are kept per connection
 * until the trust data or the certificate's validity changes); HTTP Basic
 * only for clients that sent none, with the slow password check handed to
 * the KDF pool while the request waits. Relies on tls (the peer chain),
 * trust and auth. Does not check roles (authz.c) or answer 404s.
 */
#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/utf8.h"

/* ---- identity per connection ---- */

void conn_forget(struct conn *c)
{
    if (c->has_cert_id)
        identity_free(&c->cert_id);
    if (c->has_basic)
        identity_free(c->basic_id);
    free(c->basic_id);
    c->basic_id = NULL;
    c->has_cert_id = c->has_basic = false;
}

static void log_refusal(struct request *r, const struct identity *id)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "request_id", r->id, "remote", r->conn->remote,
                          "reason", auth_reason_code(id->reason), "detail", utf8_json(id->detail));

    if (o && id->has_cert) {
        json_object_set_new(o, "cert_subject", utf8_json(id->cert.subject));
        json_object_set_new(o, "cert_fingerprint", json_string(id->cert.fingerprint));
    }
    if (o && id->crl_stale) {
        json_object_set_new(o, "crl_stale", json_true());
        json_object_set_new(o, "crl_issuer", utf8_json(id->crl_issuer));
    }
    log_event("auth_refused", o);
}

/* Reads the peer chain once per connection and decides its identity; redone
 * only when the trust data version moved (a lock-free check per request). */
static int resolve_cert(struct request *r)
{
    struct conn *c = r->conn;
    struct http_server *srv = c->srv;
    int64_t version = trust_holder_version(srv->trust);
    struct trust_snapshot *snap;
    const union MHD_ConnectionInfo *ci;
    int64_t now;
    int rc;

    if (!c->peer_read) {
        ci = MHD_get_connection_info(r->mhd, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        c->peer_read = true;
        if (ci && ci->tls_session) {
            rc = tls_session_peer(ci->tls_session, srv->cert_cache, &c->peer);
            if (rc)
                return rc;
        }
    }
    if (c->peer.n == 0)
        return CG_OK;
    /* The decision stands while the trust data and the chain's validity
     * do: a certificate that expires during a keep-alive connection is
     * refused from then on, with the usual reason. */
    now = cg_now();
    if (c->has_cert_id && c->cert_id.trust_version == version && now >= c->cert_id.valid_from &&
        now <= c->cert_id.valid_until)
        return CG_OK;
    if (c->has_cert_id)
        identity_free(&c->cert_id);
    c->has_cert_id = false;
    snap = trust_holder_acquire(srv->trust);
    rc = identity_from_cert(snap, &c->peer.items[0], c->peer.items + 1, c->peer.n - 1, now,
                            &c->cert_id);
    trust_release(snap);
    if (rc)
        return rc;
    c->has_cert_id = true;
    return CG_OK;
}

/* What resolve_basic found. */
enum basic_outcome {
    BASIC_DECIDED, /* c->basic_id holds the decision */
    BASIC_PENDING, /* a password check runs; the connection is suspended */
    BASIC_BARRED,  /* the address is barred; @p out_refusal says so */
    BASIC_BUSY,    /* too many password checks are waiting */
    BASIC_ERROR,   /* out of memory */
};

/* The refusal of a request from an address barred for @p seconds more. */
static enum basic_outcome refuse_barred(struct request *r, unsigned seconds,
                                        struct identity *out_refusal)
{
    memset(out_refusal, 0, sizeof(*out_refusal));
    out_refusal->reason = AUTH_BAD_PASSWORD;
    snprintf(out_refusal->detail, sizeof(out_refusal->detail),
             "too many wrong passwords from this address: no password is checked for it for "
             "%u more seconds",
             seconds);
    snprintf(r->retry_after, sizeof(r->retry_after), "%u", seconds);
    return BASIC_BARRED;
}

/* Called on a KDF thread once the password check is done: records the
 * decision on the connection (which nothing else touches while its request
 * sleeps) and wakes the request. */
static void basic_checked(struct kdf_job *job)
{
    struct request *r = job->ctx;
    struct conn *c = r->conn;

    if (job->barred) {
        r->barred = job->barred;
    } else if (job->has_id) {
        if (c->has_basic)
            identity_free(c->basic_id);
        *c->basic_id = job->id;
        job->has_id = false;
        memcpy(c->basic_key, job->key, sizeof(job->key));
        c->has_basic = true;
    }
    kdf_job_free(job);
    request_wake(r);
}

/*
 * The decision for a Basic Authorization value. PBKDF2 costs about 0.25 s
 * on purpose, so it runs where it blocks no worker thread: keep-alive
 * requests with the same value reuse the connection's decision, a value
 * verified recently (same trust version, 5 minutes) is known without it,
 * an address with too many wrong passwords gets no check at all, and the
 * rest go to the KDF threads while the connection is suspended.
 */
static enum basic_outcome resolve_basic(struct request *r, const char *header,
                                        struct identity *out_refusal)
{
    struct conn *c = r->conn;
    struct trust_snapshot *snap;
    unsigned char key[32], *creds = NULL;
    size_t creds_len = 0;
    struct kdf_job *job;
    unsigned barred;
    char *colon;
    size_t pw_len;

    /* Woken by the KDF thread: its decision stands for this request. */
    if (__atomic_load_n(&r->is_woken, __ATOMIC_ACQUIRE)) {
        if (r->barred)
            return refuse_barred(r, r->barred, out_refusal);
        if (c->has_basic)
            return BASIC_DECIDED;
    }
    if (!c->basic_id)
        c->basic_id = calloc(1, sizeof(*c->basic_id));
    if (!c->basic_id || crypto_sha256(header, strlen(header), key))
        return BASIC_ERROR;
    if (c->has_basic && c->basic_id->trust_version == trust_holder_version(c->srv->trust) &&
        cg_consttime_eq(key, c->basic_key, sizeof(key)))
        return BASIC_DECIDED;
    if (c->has_basic)
        identity_free(c->basic_id);
    c->has_basic = false;
    memset(c->basic_id, 0, sizeof(*c->basic_id));
    colon = NULL;
    if (crypto_base64_decode(header + 6, strlen(header + 6), &creds, &creds_len) == CG_OK)
        colon = memchr(creds, ':', creds_len);
    if (!colon) {
        crypto_wipe(creds, creds_len);
        free(creds);
        c->basic_id->reason = AUTH_BAD_PASSWORD;
        snprintf(c->basic_id->detail, sizeof(c->basic_id->detail),
                 "the Authorization header is not valid Basic credentials");
        c->basic_id->trust_version = trust_holder_version(c->srv->trust);
        memcpy(c->basic_key, key, sizeof(key));
        c->has_basic = true;
        return BASIC_DECIDED;
    }
    *colon = '\0';
    pw_len = creds_len - (size_t)(colon + 1 - (char *)creds);
    snap = trust_holder_acquire(c->srv->trust);
    if (identity_from_basic_cached(snap, c->srv->basic_cache, (const char *)creds, colon + 1,
                                   pw_len, c->basic_id) == CG_OK) {
        trust_release(snap);
        crypto_wipe(creds, creds_len);
        free(creds);
        memcpy(c->basic_key, key, sizeof(key));
        c->has_basic = true;
        return BASIC_DECIDED;
    }
    trust_release(snap);
    barred = identity_limiter_barred(c->srv->limiter, c->remote, clock_s());
    if (barred) {
        crypto_wipe(creds, creds_len);
        free(creds);
        return refuse_barred(r, barred, out_refusal);
    }
    job = calloc(1, sizeof(*job));
    if (job) {
        job->done = basic_checked;
        job->ctx = r;
        snprintf(job->remote, sizeof(job->remote), "%s", c->remote);
        memcpy(job->key, key, sizeof(key));
        job->user = strdup((const char *)creds);
        job->password = malloc(pw_len ? pw_len : 1);
        job->password_len = pw_len;
        if (job->password)
            memcpy(job->password, colon + 1, pw_len);
    }
    crypto_wipe(creds, creds_len);
    free(creds);
    if (!job || !job->user || !job->password) {
        if (job)
            kdf_job_free(job);
        return BASIC_ERROR;
    }
    r->barred = 0;
    MHD_suspend_connection(r->mhd);
    if (!kdf_submit(c->srv->kdf, job)) {
        MHD_resume_connection(r->mhd);
        kdf_job_free(job);
        snprintf(r->retry_after, sizeof(r->retry_after), "1");
        return BASIC_BUSY;
    }
    return BASIC_PENDING;
}

/* ---- stages ---- */

enum stage refuse_auth(struct request *r, const struct identity *id)
{
    metrics_refusal(id->reason);
    r->reason = auth_reason_code(id->reason);
    log_refusal(r, id);
    return respond_error(r, CG_ERROR_AUTH_REFUSED,
                         cfg_of(r->conn->srv)->generic_detail ? CG_DETAIL_NO_CREDENTIALS
                                                              : id->detail);
}

/* Authentication: the certificate decides when one was presented; Basic
 * only for clients that sent no certificate. */
enum stage stage_authenticate(struct request *r)
{
    struct conn *c = r->conn;
    const char *auth;

    if (r->route.is_public)
        return STAGE_NEXT;
    if (resolve_cert(r))
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    if (c->peer.n > 0) {
        if (c->cert_id.reason != AUTH_OK)
            return refuse_auth(r, &c->cert_id);
        r->who = &c->cert_id;
        return STAGE_NEXT;
    }
    auth = MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && cfg_of(c->srv)->basic_auth && strncasecmp(auth, "Basic ", 6) == 0 &&
        strlen(auth) < MAX_AUTH_HEADER) {
        struct identity barred;

        switch (resolve_basic(r, auth, &barred)) {
        case BASIC_PENDING: return STAGE_WAIT;
        case BASIC_BARRED: return refuse_auth(r, &barred);
        case BASIC_BUSY:
            return respond_error(r, CG_ERROR_UNAVAILABLE,
                                 "too many password checks are waiting: try again in a second");
        case BASIC_ERROR: return respond_error(r, CG_ERROR_INTERNAL, r->id);
        case BASIC_DECIDED: break;
        }
        if (c->basic_id->reason != AUTH_OK)
            return refuse_auth(r, c->basic_id);
        r->who = c->basic_id;
        return STAGE_NEXT;
    }
    metrics_refusal(AUTH_NO_CREDENTIALS);
    r->reason = auth_reason_code(AUTH_NO_CREDENTIALS);
    log_event("auth_refused",
              json_pack("{s:s, s:s, s:s, s:s}", "request_id", r->id, "remote", c->remote, "reason",
                        r->reason, "detail", CG_DETAIL_NO_CREDENTIALS));
    return respond_error(r, CG_ERROR_NO_CREDENTIALS, CG_DETAIL_NO_CREDENTIALS);
}
