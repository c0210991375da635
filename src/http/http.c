#include "config.h"
#include "http/http.h"
#include "base/crypto.h"
#include "base/clock.h"
#include "base/utf8.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "auth/identity.h"
#include "base/log.h"
#include "base/metrics.h"
#include "http/routes.h"
#include "engine/table_query.h"
#include "http/target.h"
#include "engine/writer.h"

/* The longest Authorization header certgate reads. */
#define MAX_AUTH_HEADER 4096
/* The longest Idempotency-Key accepted. */
#define MAX_IDEM_KEY 200

struct http_server {
    const struct serve_config *cfg;     /* settings */
    struct trust_holder *trust;         /* trust snapshots */
    struct tls_server *tls;             /* credentials */
    struct writer *writer;              /* scripted resources and the Table API */
    struct MHD_Daemon *daemon;          /* libmicrohttpd */
    int active;                         /* requests in flight (atomic) */
    int unanswered;                     /* requests that ended without a full answer (atomic) */
    uint16_t port;                      /* bound port */
    MHD_socket quiesced;                /* listen socket after quiesce, closed at stop */
    size_t max_header_size;             /* --max-header-size at start (the pool is sized for it) */
    size_t pool_size;                   /* libmicrohttpd's memory pool per connection */
    char address[INET6_ADDRSTRLEN + 8]; /* what it listens on, "[::1]:8443" */
    struct MHD_Daemon *metrics;         /* the --metrics-listen daemon, or NULL */
    pthread_mutex_t conns_lock;         /* guards conns; taken per connection, not per request */
    struct conn *conns;                 /* open connections, for the sweeper */
    pthread_t sweeper;                  /* enforces --head-timeout */
    pthread_cond_t sweeper_wake;        /* with conns_lock: stops the sweeper */
    bool sweeper_started;               /* it runs */
    bool stopping;                      /* the sweeper should end (conns_lock) */
    struct kdf_pool *kdf;               /* password checks off the worker threads */
    struct identity_limiter *limiter;   /* wrong passwords per client address */
};

/* What one TLS connection knows, kept across its keep-alive requests. */
struct conn {
    struct http_server *srv;      /* the server */
    char remote[64];              /* client address */
    bool peer_read;               /* peer certificates were read */
    struct pki_cert_list peer;    /* leaf first; empty when none was sent */
    bool has_cert_id;             /* cert_id holds a decision */
    struct identity cert_id;      /* the certificate's identity or refusal */
    bool has_basic;               /* basic_id holds a decision */
    unsigned char basic_key[32];  /* SHA-256 of the Authorization value it decided */
    struct identity basic_id;     /* the Basic identity or refusal */
    struct tls_generation *creds; /* the credentials its session uses */
    MHD_socket fd;                /* its socket, for the sweeper */
    uint64_t head_state;          /* atomic: what the sweeper watches (HEAD_..., see below) */
    unsigned requests;            /* requests begun on it */
    unsigned request_lines;       /* request lines read on it (requests may fail later) */
    bool swept;                   /* the sweeper shut it down (conns_lock) */
    struct conn *prev, *next;     /* the server's list (conns_lock) */
};

/* head_state: the two top bits say what the connection waits for, the rest
 * is a monotonic time in ms. The workers store it, the sweeper reads it and
 * moves it only by compare-and-swap, so a head completed meanwhile wins. */
#define HEAD_NONE 0ULL             /* in a request: not watched */
#define HEAD_DEADLINE (1ULL << 62) /* the head must be complete by the time */
#define HEAD_IDLE (2ULL << 62)     /* between requests since the time */
#define HEAD_TIME(s) ((s) & ((1ULL << 62) - 1))
#define HEAD_KIND(s) ((s) & (3ULL << 62))

/* Outcome of a pipeline stage. */
enum stage {
    STAGE_CONTINUE,  /* go on with the next stage */
    STAGE_DONE,      /* a response was queued */
    STAGE_SUSPENDED, /* the connection sleeps until a password check is done */
};

struct request;

/* A route handler; it queues a response. */
typedef enum stage (*handler_fn)(struct request *r);

/* Who may call a route. */
enum route_auth {
    ROUTE_AUTH_ANY,  /* certificate or Basic */
    ROUTE_AUTH_NONE, /* public */
};

struct route {
    const char *path;     /* exact path */
    const char *method;   /* GET, POST, ... */
    enum route_auth auth; /* authentication */
    const char *role;     /* role required, NULL: any authenticated user */
    handler_fn handler;   /* what it does */
};

/* One request, from the first access callback to the completion callback. */
struct request {
    struct conn *conn;           /* its connection */
    struct MHD_Connection *mhd;  /* libmicrohttpd's connection */
    char id[33];                 /* request id (X-Request-Id) */
    int64_t start_us;            /* when it arrived (clock_us) */
    const char *method;          /* request method (MHD's storage) */
    char *target;                /* the request target as sent, before percent-decoding */
    bool started;                /* the access handler has seen the complete head */
    bool bad_target;             /* the target is not text: the log shows it as sent */
    char *path;                  /* request path */
    const struct route *route;   /* matched built-in route, NULL if none */
    struct route_result dyn;     /* matched resource or Table API route */
    struct catalog *cat;         /* the catalog dyn points into (held until completed) */
    struct writer_job *job;      /* handed to the writer, NULL if none */
    bool job_done;               /* the writer finished the job */
    const struct identity *who;  /* the caller, NULL when unauthenticated */
    char *body;                  /* request body */
    size_t body_len;             /* its length */
    bool has_body;               /* Content-Length > 0 or chunked */
    bool chunked;                /* Transfer-Encoding: chunked */
    uint64_t content_length;     /* Content-Length, 0 when none */
    bool expect_continue;        /* the client waits for 100 Continue */
    uint64_t discarded;          /* body bytes dropped after an early answer */
    bool close_now;              /* the early answer closes the connection */
    bool direct_answer;          /* the early answer must go through send_and_close */
    bool queued;                 /* the answer is decided (maybe not yet handed over) */
    struct MHD_Response *answer; /* the decided answer, not yet queued */
    const char *answer_text;     /* its body (owned by answer) */
    char allow[64];              /* its Allow header, "" when none */
    bool sent_directly;          /* send_and_close wrote it */
    unsigned status;             /* status sent */
    size_t bytes;                /* body bytes sent */
    const char *reason;          /* refusal reason code, NULL if none */
    char retry_after[12];        /* Retry-After seconds, "" when none */
    bool kdf_pending;            /* suspended for a password check */
    bool kdf_done;               /* it is done (atomic) */
    unsigned kdf_barred;         /* the address was barred before its check ran: seconds left */
    bool method_mismatch;        /* a built-in path with another method */
    char route_allow[64];        /* its Allow list */
};

static enum stage h_healthz(struct request *r);
static enum stage h_whoami(struct request *r);
static enum stage h_admin_trust(struct request *r);

/* The built-in routes; scripted resources come after them (issue #5). */
static const struct route routes[] = {
    /* Liveness, no authentication. */
    {.path = "/healthz", .method = "GET", .auth = ROUTE_AUTH_NONE, .handler = h_healthz},
    /* The caller's identity: user, roles, how it authenticated, certificate facts. */
    {.path = "/api/certgate/v1/whoami",
     .method = "GET",
     .auth = ROUTE_AUTH_ANY,
     .handler = h_whoami},
    /* Trust data summary for operators (role certgate_admin). */
    {.path = "/api/certgate/v1/admin/trust",
     .method = "GET",
     .auth = ROUTE_AUTH_ANY,
     .role = "certgate_admin",
     .handler = h_admin_trust},
};

/* The settings in force: SIGHUP may swap them while requests run. */
static const struct serve_config *cfg_of(struct http_server *srv)
{
    return __atomic_load_n(&srv->cfg, __ATOMIC_ACQUIRE);
}

void http_set_config(struct http_server *srv, const struct serve_config *cfg)
{
    __atomic_store_n(&srv->cfg, cfg, __ATOMIC_RELEASE);
}

/* ---- responses ---- */

/* The headers every answer carries (and its reason, Allow, Basic realm),
 * as name/value pairs: one list for libmicrohttpd's responses and for the
 * answers send_and_close writes itself. @return the number of pairs. */
static size_t answer_headers(const struct request *r, unsigned status, const char *out[10][2])
{
    size_t n = 0;

    out[n][0] = MHD_HTTP_HEADER_CONTENT_TYPE, out[n++][1] = "application/json";
    out[n][0] = "X-Request-Id", out[n++][1] = r->id;
    out[n][0] = "Strict-Transport-Security", out[n++][1] = "max-age=31536000";
    out[n][0] = "X-Content-Type-Options", out[n++][1] = "nosniff";
    out[n][0] = "Cache-Control", out[n++][1] = "no-store";
    if (r->reason)
        out[n][0] = "X-Certgate-Reason", out[n++][1] = r->reason;
    if (r->allow[0])
        out[n][0] = "Allow", out[n++][1] = r->allow;
    if (status == 401 && cfg_of(r->conn->srv)->basic_auth)
        out[n][0] = "WWW-Authenticate", out[n++][1] = "Basic realm=\"certgate\"";
    if (r->retry_after[0])
        out[n][0] = "Retry-After", out[n++][1] = r->retry_after;
    return n;
}

static void add_common_headers(struct request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
}

/*
 * Decides the answer: @p text (taken over, malloc'd) with @p status as
 * application/json. It is handed to libmicrohttpd later (send_answer), once
 * the request is complete: libmicrohttpd 0.9.75 closes the connection after
 * any response queued before the end of the request, even a GET without a
 * body, so a 404 queued at once would cost the client its keep-alive.
 */
static enum stage respond_text(struct request *r, unsigned status, char *text, const char *allow)
{
    static const char oom[] = "{\"error\":{\"message\":\"Internal server error\","
                              "\"detail\":\"out of memory\"},\"status\":\"failure\"}";
    const char *hdr[10][2];
    struct MHD_Response *resp;
    size_t len = text ? strlen(text) : 0, n;

    if (r->queued) {
        free(text);
        return STAGE_DONE;
    }
    if (allow)
        snprintf(r->allow, sizeof(r->allow), "%s", allow);
    if (!text) {
        /* Out of memory while building the body: still answer. */
        status = 500;
        len = sizeof(oom) - 1;
        resp =
            MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    }
    if (!resp) {
        free(text);
        return STAGE_DONE;
    }
    n = answer_headers(r, status, hdr);
    for (size_t i = 0; i < n; i++)
        MHD_add_response_header(resp, hdr[i][0], hdr[i][1]);
    r->answer = resp;
    r->answer_text = text ? text : oom;
    r->queued = true;
    r->status = status;
    r->bytes = strcmp(r->method ? r->method : "", "HEAD") == 0 ? 0 : len;
    return STAGE_DONE;
}

/* Hands the decided answer to libmicrohttpd. */
static void send_answer(struct request *r)
{
    if (!r->answer)
        return;
    MHD_queue_response(r->mhd, r->status, r->answer);
    MHD_destroy_response(r->answer);
    r->answer = NULL;
}

/* Set when send_and_close returns MHD_NO on purpose, so that the
 * "Application reported internal error" line that libmicrohttpd then
 * writes on this thread is not logged as one. */
static __thread bool closing_on_purpose;

/*
 * Writes the decided answer on the TLS session itself and closes the
 * connection. For what libmicrohttpd 0.9.75 cannot answer: it queues no
 * response while a body is arriving (a chunked body over the limit is cut
 * here rather than read to its end), and a head that nearly fills the
 * connection's memory pool leaves it no room to build the answer's
 * headers. This runs on the connection's own thread inside a callback,
 * when libmicrohttpd is not writing to the session, so records cannot
 * interleave; returning MHD_NO then makes libmicrohttpd close it (with a
 * TLS close_notify).
 */
static enum MHD_Result send_and_close(struct request *r)
{
    const union MHD_ConnectionInfo *si =
        MHD_get_connection_info(r->mhd, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(r->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    const char *hdr[10][2], *phrase = MHD_get_reason_phrase_for(r->status);
    size_t body_len = r->answer_text ? strlen(r->answer_text) : 0, n, len;
    char head[2048], date[64];
    struct tm tm;
    time_t now = time(NULL);

    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    len = (size_t)snprintf(head, sizeof(head),
                           "HTTP/1.1 %u %s\r\nDate: %s\r\nConnection: close\r\n"
                           "Content-Length: %zu\r\n",
                           r->status, phrase && *phrase ? phrase : "Error", date, body_len);
    n = answer_headers(r, r->status, hdr);
    for (size_t i = 0; i < n && len < sizeof(head); i++)
        len += (size_t)snprintf(head + len, sizeof(head) - len, "%s: %s\r\n", hdr[i][0], hdr[i][1]);
    if (len + 2 < sizeof(head) && si && si->tls_session && fi) {
        memcpy(head + len, "\r\n", 2);
        len += 2;
        if (tls_session_send_all(si->tls_session, fi->connect_fd, head, len) &&
            strcmp(r->method ? r->method : "", "HEAD") != 0)
            tls_session_send_all(si->tls_session, fi->connect_fd, r->answer_text, body_len);
    }
    if (r->answer)
        MHD_destroy_response(r->answer);
    r->answer = NULL;
    r->answer_text = NULL;
    r->sent_directly = true;
    closing_on_purpose = true;
    return MHD_NO;
}

static enum stage respond_json(struct request *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(body);
    return respond_text(r, status, text, NULL);
}

static enum stage respond_error(struct request *r, enum cg_error e, const char *detail)
{
    return respond_text(r, error_status(e), error_body(e, NULL, detail), NULL);
}

/* ---- identity per connection ---- */

static void conn_forget(struct conn *c)
{
    if (c->has_cert_id)
        identity_free(&c->cert_id);
    if (c->has_basic)
        identity_free(&c->basic_id);
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
            rc = tls_session_peer(ci->tls_session, &c->peer);
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

/* ---- password checks, off the worker threads ---- */

/* Password checks waiting at most; more get a 503 (try again). */
#define KDF_QUEUE_MAX 64

struct kdf_job {
    struct request *r;     /* the suspended request */
    unsigned char key[32]; /* SHA-256 of its Authorization value */
    char *user;            /* decoded user name */
    char *password;        /* decoded password (wiped when done) */
    size_t password_len;   /* its length */
    unsigned barred;       /* its address was barred while it waited: seconds left, 0: run it */
    struct kdf_job *next;  /* queue */
};

struct kdf_pool {
    struct http_server *srv; /* the server */
    pthread_mutex_t lock;    /* guards the queue */
    pthread_cond_t wake;     /* work or stop */
    struct kdf_job *head;    /* oldest job */
    struct kdf_job *tail;    /* newest job */
    unsigned queued;         /* jobs waiting */
    bool stopping;           /* end once the queue is empty */
    pthread_t threads[4];    /* the workers */
    unsigned n_threads;      /* started */
};

static void kdf_job_free(struct kdf_job *job)
{
    if (job->password) {
        crypto_wipe(job->password, job->password_len);
        free(job->password);
    }
    free(job->user);
    free(job);
}

/* Runs the KDF for one suspended request, records the decision on its
 * connection (which nothing else touches while it sleeps) and wakes it.
 * A job whose address was barred while it waited gets no check. */
static void kdf_run(struct kdf_pool *pool, struct kdf_job *job)
{
    struct request *r = job->r;
    struct conn *c = r->conn;
    struct http_server *srv = pool->srv;
    struct trust_snapshot *snap;
    struct identity id;
    bool failed;
    int rc;

    if (job->barred) {
        r->kdf_barred = job->barred;
        goto out;
    }
    snap = trust_holder_acquire(srv->trust);
    rc = identity_from_basic(snap, job->user, job->password, job->password_len, &id);
    trust_release(snap);
    failed = rc == CG_OK && id.reason == AUTH_BAD_PASSWORD;
    if (rc == CG_OK) {
        if (c->has_basic)
            identity_free(&c->basic_id);
        c->basic_id = id;
        memcpy(c->basic_key, job->key, sizeof(job->key));
        c->has_basic = true;
    }
    if (identity_limiter_end(srv->limiter, c->remote, clock_s(), failed))
        log_event("basic_barred",
                  json_pack("{s:s, s:i, s:i, s:s}", "remote", c->remote, "failures",
                            IDENTITY_MAX_FAILURES, "seconds", IDENTITY_BAR_SECONDS, "detail",
                            "too many wrong passwords from this address: no password is "
                            "checked for it for a while"));
    /* Jobs of this address that waited for it may go now, or are barred. */
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
out:
    kdf_job_free(job);
    __atomic_store_n(&r->kdf_done, true, __ATOMIC_RELEASE);
    MHD_resume_connection(r->mhd);
}

/* The oldest job that may go now, taken off the queue: one whose address
 * has room for another check under the limit, or is barred (then it gets
 * no check). Jobs of an address whose checks under way could still bar it
 * stay queued. NULL when none may go. Called with the pool's lock. */
static struct kdf_job *kdf_take(struct kdf_pool *pool)
{
    int64_t now = clock_s();
    struct kdf_job *job, *prev = NULL;

    for (job = pool->head; job; prev = job, job = job->next) {
        unsigned seconds = 0;
        enum identity_limit v =
            identity_limiter_begin(pool->srv->limiter, job->r->conn->remote, now, &seconds);

        if (v == IDENTITY_LIMIT_WAIT)
            continue;
        if (v == IDENTITY_LIMIT_BARRED)
            job->barred = seconds ? seconds : 1;
        if (prev)
            prev->next = job->next;
        else
            pool->head = job->next;
        if (pool->tail == job)
            pool->tail = prev;
        pool->queued--;
        return job;
    }
    return NULL;
}

static void *kdf_main(void *arg)
{
    struct kdf_pool *pool = arg;

    /* Below the worker threads: a burst of password checks must not slow
     * the requests that are already authenticated. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct kdf_job *job = kdf_take(pool);

        if (!job) {
            /* Queued jobs wait for a running check, which wakes us. */
            if (pool->stopping && !pool->head)
                break;
            pthread_cond_wait(&pool->wake, &pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        kdf_run(pool, job);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static void kdf_stop(struct kdf_pool *pool)
{
    if (!pool)
        return;
    /* Queued checks still run: their connections must be resumed before
     * libmicrohttpd stops. */
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}

static int kdf_start(struct http_server *srv, unsigned n, struct kdf_pool **out_pool)
{
    struct kdf_pool *pool = calloc(1, sizeof(*pool));

    if (!pool)
        return CG_ENOMEM;
    pool->srv = srv;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (unsigned i = 0; i < n && i < 4; i++) {
        if (pthread_create(&pool->threads[i], NULL, kdf_main, pool) != 0)
            break;
        pool->n_threads++;
    }
    if (pool->n_threads == 0) {
        kdf_stop(pool);
        return CG_ERR;
    }
    *out_pool = pool;
    return CG_OK;
}

/* Queues @p job; false when the queue is full (the job is not taken). */
static bool kdf_submit(struct kdf_pool *pool, struct kdf_job *job)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->queued >= KDF_QUEUE_MAX) {
        pthread_mutex_unlock(&pool->lock);
        return false;
    }
    job->next = NULL;
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    pthread_cond_signal(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    return true;
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
    if (__atomic_load_n(&r->kdf_done, __ATOMIC_ACQUIRE)) {
        if (r->kdf_barred)
            return refuse_barred(r, r->kdf_barred, out_refusal);
        if (c->has_basic)
            return BASIC_DECIDED;
    }
    if (crypto_sha256(header, strlen(header), key))
        return BASIC_ERROR;
    if (c->has_basic && c->basic_id.trust_version == trust_holder_version(c->srv->trust) &&
        cg_consttime_eq(key, c->basic_key, sizeof(key)))
        return BASIC_DECIDED;
    if (c->has_basic)
        identity_free(&c->basic_id);
    c->has_basic = false;
    memset(&c->basic_id, 0, sizeof(c->basic_id));
    colon = NULL;
    if (crypto_base64_decode(header + 6, strlen(header + 6), &creds, &creds_len) == CG_OK)
        colon = memchr(creds, ':', creds_len);
    if (!colon) {
        crypto_wipe(creds, creds_len);
        free(creds);
        c->basic_id.reason = AUTH_BAD_PASSWORD;
        snprintf(c->basic_id.detail, sizeof(c->basic_id.detail),
                 "the Authorization header is not valid Basic credentials");
        c->basic_id.trust_version = trust_holder_version(c->srv->trust);
        memcpy(c->basic_key, key, sizeof(key));
        c->has_basic = true;
        return BASIC_DECIDED;
    }
    *colon = '\0';
    pw_len = creds_len - (size_t)(colon + 1 - (char *)creds);
    snap = trust_holder_acquire(c->srv->trust);
    if (identity_from_basic_cached(snap, (const char *)creds, colon + 1, pw_len, &c->basic_id) ==
        CG_OK) {
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
        job->r = r;
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
    r->kdf_pending = true;
    r->kdf_barred = 0;
    __atomic_store_n(&r->kdf_done, false, __ATOMIC_RELEASE);
    MHD_suspend_connection(r->mhd);
    if (!kdf_submit(c->srv->kdf, job)) {
        MHD_resume_connection(r->mhd);
        r->kdf_pending = false;
        kdf_job_free(job);
        snprintf(r->retry_after, sizeof(r->retry_after), "1");
        return BASIC_BUSY;
    }
    return BASIC_PENDING;
}

/* ---- stages ---- */

static enum stage refuse_auth(struct request *r, const struct identity *id)
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
static enum stage stage_authenticate(struct request *r)
{
    struct conn *c = r->conn;
    const char *auth;

    if (r->route && r->route->auth == ROUTE_AUTH_NONE)
        return STAGE_CONTINUE;
    if (resolve_cert(r))
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    if (c->peer.n > 0) {
        if (c->cert_id.reason != AUTH_OK)
            return refuse_auth(r, &c->cert_id);
        r->who = &c->cert_id;
        return STAGE_CONTINUE;
    }
    auth = MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && cfg_of(c->srv)->basic_auth && strncasecmp(auth, "Basic ", 6) == 0 &&
        strlen(auth) < MAX_AUTH_HEADER) {
        struct identity barred;

        switch (resolve_basic(r, auth, &barred)) {
        case BASIC_PENDING: return STAGE_SUSPENDED;
        case BASIC_BARRED: return refuse_auth(r, &barred);
        case BASIC_BUSY:
            return respond_error(r, CG_ERROR_UNAVAILABLE,
                                 "too many password checks are waiting: try again in a second");
        case BASIC_ERROR: return respond_error(r, CG_ERROR_INTERNAL, r->id);
        case BASIC_DECIDED: break;
        }
        if (c->basic_id.reason != AUTH_OK)
            return refuse_auth(r, &c->basic_id);
        r->who = &c->basic_id;
        return STAGE_CONTINUE;
    }
    metrics_refusal(AUTH_NO_CREDENTIALS);
    r->reason = auth_reason_code(AUTH_NO_CREDENTIALS);
    log_event("auth_refused",
              json_pack("{s:s, s:s, s:s, s:s}", "request_id", r->id, "remote", c->remote, "reason",
                        r->reason, "detail", CG_DETAIL_NO_CREDENTIALS));
    return respond_error(r, CG_ERROR_NO_CREDENTIALS, CG_DETAIL_NO_CREDENTIALS);
}

/* Routing: exact built-in paths; a known path with another method is a 405
 * with Allow. Unknown /api paths are answered after authentication, so the
 * route map is not revealed to strangers. */
static enum stage stage_route(struct request *r, bool *out_method_mismatch, char *allow,
                              size_t allow_len)
{
    *out_method_mismatch = false;
    allow[0] = '\0';
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        bool is_get = strcmp(routes[i].method, "GET") == 0;

        if (strcmp(routes[i].path, r->path) != 0)
            continue;
        if (strcmp(routes[i].method, r->method) == 0 ||
            (is_get && strcmp(r->method, "HEAD") == 0)) {
            r->route = &routes[i];
            return STAGE_CONTINUE;
        }
        *out_method_mismatch = true;
        snprintf(allow + strlen(allow), allow_len - strlen(allow), "%s%s%s", allow[0] ? ", " : "",
                 routes[i].method, is_get ? ", HEAD" : "");
    }
    return STAGE_CONTINUE;
}

static enum stage stage_authorise(struct request *r)
{
    char detail[160];
    char *role;

    if (!r->route || !r->route->role)
        return STAGE_CONTINUE;
    role = (char *)r->route->role;
    if (identity_has_any_role(r->who, &role, 1))
        return STAGE_CONTINUE;
    metrics_refusal(AUTH_ROLE_MISSING);
    r->reason = auth_reason_code(AUTH_ROLE_MISSING);
    snprintf(detail, sizeof(detail), "the role '%s' is required", r->route->role);
    {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "request_id", r->id, "remote",
                              r->conn->remote, "reason", r->reason, "detail", detail);

        if (o)
            json_object_set_new(o, "user", utf8_json(r->who->user));
        log_event("auth_refused", o);
    }
    return respond_error(r, CG_ERROR_NOT_AUTHORIZED, detail);
}

/* Whether the identity's method suits a resource's --auth. */
static enum stage check_resource_auth(struct request *r)
{
    enum dtable_auth mode = r->dyn.resource->auth;

    if (mode == DT_AUTH_CERT && r->who->method != AUTH_METHOD_CERT) {
        struct identity id;

        memset(&id, 0, sizeof(id));
        id.reason = AUTH_CERT_REQUIRED;
        snprintf(id.detail, sizeof(id.detail),
                 "this resource requires a client certificate; "
                 "HTTP Basic is not accepted here");
        return refuse_auth(r, &id);
    }
    if (mode == DT_AUTH_BASIC && r->who->method != AUTH_METHOD_BASIC) {
        struct identity id;

        memset(&id, 0, sizeof(id));
        id.reason = AUTH_NO_CREDENTIALS;
        snprintf(id.detail, sizeof(id.detail), "this resource takes HTTP Basic credentials");
        return refuse_auth(r, &id);
    }
    return STAGE_CONTINUE;
}

static enum stage refuse_role(struct request *r, char *const *roles, size_t n)
{
    char detail[200];
    size_t len;

    metrics_refusal(AUTH_ROLE_MISSING);
    r->reason = auth_reason_code(AUTH_ROLE_MISSING);
    len = (size_t)snprintf(detail, sizeof(detail), "one of these roles is required: ");
    for (size_t i = 0; i < n && len < sizeof(detail); i++)
        len +=
            (size_t)snprintf(detail + len, sizeof(detail) - len, "%s%s", i ? ", " : "", roles[i]);
    log_event("auth_refused", json_pack("{s:s, s:s, s:s, s:s, s:s?}", "request_id", r->id, "remote",
                                        r->conn->remote, "reason", r->reason, "detail", detail,
                                        "user", r->who ? r->who->user : NULL));
    return respond_error(r, CG_ERROR_NOT_AUTHORIZED, detail);
}

/* Runs the stages that need no body, on the first callback of a request. */
/* Runs the stages after routing: authentication (which may suspend the
 * request for a password check, and is run again once it is done),
 * authorisation and the body limit. */
static enum stage pipeline_auth(struct request *r)
{
    struct http_server *srv = r->conn->srv;
    enum stage st;

    /* A public resource skips authentication; everything else under /api
     * authenticates before a 404, so strangers learn nothing of the routes. */
    if (!(r->dyn.match == ROUTE_RESOURCE && r->dyn.resource->auth == DT_AUTH_NONE)) {
        st = stage_authenticate(r);
        if (st != STAGE_CONTINUE)
            return st;
    }
    if (!r->route) {
        if (r->method_mismatch || r->dyn.match == ROUTE_WRONG_METHOD)
            return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                                r->method_mismatch ? r->route_allow : r->dyn.allow);
        if (r->dyn.match == ROUTE_NONE)
            return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
        if (r->dyn.match == ROUTE_RESOURCE && r->who) {
            if (check_resource_auth(r) == STAGE_DONE)
                return STAGE_DONE;
            if (!identity_has_any_role(r->who, r->dyn.resource->roles, r->dyn.resource->n_roles))
                return refuse_role(r, r->dyn.resource->roles, r->dyn.resource->n_roles);
        }
        if (r->dyn.match == ROUTE_TABLE &&
            !identity_has_any_role(r->who, r->dyn.table->roles, r->dyn.table->n_roles))
            return refuse_role(r, r->dyn.table->roles, r->dyn.table->n_roles);
    } else if (stage_authorise(r) == STAGE_DONE) {
        return STAGE_DONE;
    }
    if (r->content_length > cfg_of(srv)->max_body_size) {
        char detail[64];

        snprintf(detail, sizeof(detail), "the limit is %zu bytes", cfg_of(srv)->max_body_size);
        return respond_error(r, CG_ERROR_BODY_TOO_LARGE, detail);
    }
    return STAGE_CONTINUE;
}

/* Runs the stages that need no body, on the first callback of a request. */
static enum stage pipeline_head(struct request *r)
{
    struct http_server *srv = r->conn->srv;

    stage_route(r, &r->method_mismatch, r->route_allow, sizeof(r->route_allow));
    if (!r->route && strncmp(r->path, "/api/", 5) != 0) {
        if (r->method_mismatch)
            return respond_text(r, 405, error_body(CG_ERROR_METHOD_NOT_ALLOWED, NULL, r->method),
                                r->route_allow);
        return respond_error(r, CG_ERROR_NOT_FOUND, r->path);
    }
    /* HEAD is answered where GET is, without the body (libmicrohttpd
     * drops it); a script sees the method as sent. */
    if (!r->route && srv->writer) {
        r->cat = writer_catalog_acquire(srv->writer);
        routes_match(r->cat, strcmp(r->method, "HEAD") == 0 ? "GET" : r->method, r->path, &r->dyn);
    }
    return pipeline_auth(r);
}

/* ---- scripted resources and the Table API ---- */

/* Headers get lower-case names (design section 6); query keys keep theirs.
 * Values were checked to be UTF-8 for the query (target_check); header
 * values are repaired rather than dropped. */
static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    json_t *o = cls;
    char name[128];
    size_t i;

    if (!key)
        return MHD_YES;
    if (kind == MHD_HEADER_KIND) {
        for (i = 0; key[i] && i + 1 < sizeof(name); i++)
            name[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] - 'A' + 'a' : key[i]);
        name[i] = '\0';
        /* Credentials never reach scripts. */
        if (strcmp(name, "authorization") == 0 || strcmp(name, "cookie") == 0)
            return MHD_YES;
        key = name;
    }
    json_object_set_new(o, key, utf8_json(value ? value : ""));
    return MHD_YES;
}

static json_t *collect_args(struct request *r, enum MHD_ValueKind kind)
{
    json_t *o = json_object();

    if (o)
        MHD_get_connection_values(r->mhd, kind, collect, o);
    return o;
}

static json_t *user_json(const struct identity *id)
{
    json_t *roles = json_array(), *u;

    if (!id)
        return json_pack("{s:n, s:o, s:s, s:n}", "name", "roles", roles, "auth", "none",
                         "certificate");
    for (size_t i = 0; i < id->n_roles; i++)
        json_array_append_new(roles, json_string(id->roles[i]));
    u = json_pack("{s:s, s:o, s:s}", "name", id->user, "roles", roles, "auth",
                  auth_method_name(id->method));
    if (u && id->has_cert) {
        char na[21];

        cg_time_iso(id->cert.not_after, na);
        json_object_set_new(u, "certificate",
                            json_pack("{s:o, s:o, s:s, s:s, s:s}", "subject",
                                      utf8_json(id->cert.subject), "issuer",
                                      utf8_json(id->cert.issuer), "serial", id->cert.serial,
                                      "fingerprint", id->cert.fingerprint, "not_after", na));
    } else if (u) {
        json_object_set_new(u, "certificate", json_null());
    }
    return u;
}

/* Called on the committer thread once the job's writes are committed. */
static void job_finished(struct writer_job *job)
{
    struct request *r = job->ctx;

    __atomic_store_n(&r->job_done, true, __ATOMIC_RELEASE);
    MHD_resume_connection(r->mhd);
}

static bool json_content_type(struct request *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen("application/json");

    return ct && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Builds the job for the writer, or answers the request itself (400/415). */
static enum stage start_job(struct request *r)
{
    struct http_server *srv = r->conn->srv;
    struct writer_job *job = calloc(1, sizeof(*job));
    const char *idem;
    json_error_t jerr;

    if (!job)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    r->job = job;
    if (r->body_len > 0) {
        if (!json_content_type(r))
            return respond_error(r, CG_ERROR_UNSUPPORTED_MEDIA_TYPE,
                                 "send the body as Content-Type: application/json");
        job->req.body =
            json_loadb(r->body, r->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (!job->req.body) {
            char detail[300];

            snprintf(detail, sizeof(detail), "the body is not valid JSON: line %d column %d: %s",
                     jerr.line, jerr.column, jerr.text);
            return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
        }
    } else if (r->dyn.match == ROUTE_TABLE && strcmp(r->method, "POST") == 0) {
        return respond_error(r, CG_ERROR_BAD_REQUEST,
                             "the body must be a JSON object of "
                             "column values");
    }
    if (r->dyn.match == ROUTE_TABLE) {
        job->table = strdup(r->dyn.table->name);
        if (strcmp(r->method, "POST") == 0) {
            job->op = WRITER_TABLE_INSERT;
            if (!json_is_object(job->req.body))
                return respond_error(r, CG_ERROR_BAD_REQUEST,
                                     "the body must be a JSON object of column values");
        } else if (r->dyn.sys_id[0]) {
            job->op = WRITER_TABLE_GET;
            job->sys_id = strdup(r->dyn.sys_id);
        } else {
            json_t *q = collect_args(r, MHD_GET_ARGUMENT_KIND);
            struct table_query tq;
            char detail[200];
            int rc;

            job->op = WRITER_TABLE_LIST;
            rc = table_query_parse(r->dyn.table, q, &tq, detail, sizeof(detail));
            json_decref(q);
            if (rc == CG_EINVAL)
                return respond_error(r, CG_ERROR_BAD_REQUEST, detail);
            if (rc)
                return respond_error(r, CG_ERROR_INTERNAL, r->id);
            job->limit = tq.limit;
            job->offset = tq.offset;
            job->filter = tq.filter;
        }
    } else {
        job->op = WRITER_SCRIPT;
        job->resource = r->dyn.resource;
        job->req.params = json_incref(r->dyn.params);
        job->req.query = collect_args(r, MHD_GET_ARGUMENT_KIND);
        job->req.headers = collect_args(r, MHD_HEADER_KIND);
    }
    job->method = strdup(r->method);
    job->path = strdup(r->path);
    /* Always set by on_uri; the path stands in if libmicrohttpd skipped it. */
    job->target = strdup(r->target ? r->target : r->path);
    job->raw_body = r->body ? strdup(r->body) : strdup("");
    job->req.method = job->method;
    job->req.path = job->path;
    job->req.raw_body = job->raw_body;
    job->req.raw_len = r->body_len;
    job->req.user = user_json(r->who);
    job->user_name = strdup(r->who && r->who->user ? r->who->user : "anonymous");
    idem = MHD_lookup_connection_value(r->mhd, MHD_HEADER_KIND, "Idempotency-Key");
    /* Keys belong to a user: an anonymous caller of a public resource
     * must not replay what another anonymous caller stored. */
    if (idem && r->who && strcmp(r->method, "POST") == 0) {
        if (!*idem || strlen(idem) > MAX_IDEM_KEY)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "Idempotency-Key must be 1 to 200 "
                                 "characters");
        job->idem_key = strdup(idem);
        if (!job->idem_key)
            return respond_error(r, CG_ERROR_INTERNAL, r->id);
    }
    memcpy(job->request_id, r->id, sizeof(job->request_id));
    if (!job->method || !job->path || !job->target || !job->raw_body || !job->user_name ||
        !job->req.user)
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    /* The key binds the whole request: method, target with its query
     * string, body. */
    if (job->idem_key && dtable_request_sha256(job->method, job->target, r->body ? r->body : "",
                                               r->body_len, job->request_sha256))
        return respond_error(r, CG_ERROR_INTERNAL, r->id);
    job->done = job_finished;
    job->ctx = r;
    /* The worker does not wait for the disk: the connection sleeps until
     * the committer has made the writes durable. */
    MHD_suspend_connection(r->mhd);
    writer_submit(srv->writer, job);
    return STAGE_DONE;
}

/* Whether a script may set response header @p name: not the ones certgate
 * sets itself or that frame the answer. */
static bool script_header_allowed(const char *name)
{
    static const char *const reserved[] = {
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "X-Request-Id",
        "Idempotent-Replayed",
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "Cache-Control",
        "Set-Cookie",
        "Upgrade",
        "Trailer",
        NULL,
    };

    if (strncasecmp(name, "X-Certgate-", 11) == 0)
        return false;
    for (const char *const *p = reserved; *p; p++) {
        if (strcasecmp(name, *p) == 0)
            return false;
    }
    return true;
}

static void finish_job(struct request *r)
{
    struct writer_job *job = r->job;
    struct MHD_Response *resp;
    char *body = job->body;
    size_t len = body ? strlen(body) : 0;
    const char *key;
    json_t *v;

    job->body = NULL;
    if (job->log_detail[0])
        log_event("script_error",
                  json_pack("{s:s, s:s, s:i, s:s}", "request_id", r->id, "path", r->path, "status",
                            job->status, "detail", job->log_detail));
    resp = MHD_create_response_from_buffer(len, body ? body : (void *)"",
                                           body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return;
    }
    if (body)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    add_common_headers(r, resp);
    if (job->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    json_object_foreach(job->headers, key, v)
    {
        if (script_header_allowed(key))
            MHD_add_response_header(resp, key, json_string_value(v));
    }
    MHD_queue_response(r->mhd, (unsigned)job->status, resp);
    MHD_destroy_response(resp);
    r->queued = true;
    r->status = (unsigned)job->status;
    r->bytes = len;
}

/* ---- handlers ---- */

static enum stage h_healthz(struct request *r)
{
    return respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static enum stage h_whoami(struct request *r)
{
    const struct identity *id = r->who;
    json_t *roles = json_array(), *result;

    for (size_t i = 0; i < id->n_roles; i++)
        json_array_append_new(roles, json_string(id->roles[i]));
    result = json_pack("{s:s, s:o, s:s}", "user", id->user, "roles", roles, "auth",
                       auth_method_name(id->method));
    if (result && id->has_cert) {
        char nb[21], na[21];

        cg_time_iso(id->cert.not_before, nb);
        cg_time_iso(id->cert.not_after, na);
        json_object_set_new(result, "certificate",
                            json_pack("{s:o, s:o, s:s, s:s, s:s, s:s, s:I, s:s?}", "subject",
                                      utf8_json(id->cert.subject), "issuer",
                                      utf8_json(id->cert.issuer), "serial", id->cert.serial,
                                      "fingerprint", id->cert.fingerprint, "not_before", nb,
                                      "not_after", na, "mapping_id", (json_int_t)id->mapping_id,
                                      "mapping_kind", id->mapping_kind));
    } else if (result) {
        json_object_set_new(result, "certificate", json_null());
    }
    return respond_json(r, 200, json_pack("{s:o}", "result", result));
}

static enum stage h_admin_trust(struct request *r)
{
    struct trust_snapshot *snap = trust_holder_acquire(r->conn->srv->trust);
    json_t *o = json_pack("{s:{s:I, s:I, s:I, s:I, s:I}}", "result", "trust_version",
                          (json_int_t)snap->version, "cas", (json_int_t)snap->pki.n_cas, "crls",
                          (json_int_t)snap->pki.n_crls, "users", (json_int_t)snap->n_users,
                          "mappings", (json_int_t)snap->n_maps);

    trust_release(snap);
    return respond_json(r, 200, o);
}

/* ---- libmicrohttpd callbacks ---- */

static void request_id(char out[33])
{
    unsigned char raw[16];

    if (crypto_random(raw, sizeof(raw), false))
        memset(raw, 0, sizeof(raw));
    cg_hex(raw, sizeof(raw), out);
}

/* A new request: called by libmicrohttpd as soon as the request line is in
 * (the URI log callback), so that even a request libmicrohttpd answers
 * itself later (a broken header or chunk) gets its access-log line. */
static struct request *request_new(struct http_server *srv, struct MHD_Connection *mhd,
                                   const char *target)
{
    struct request *r = calloc(1, sizeof(*r));
    const union MHD_ConnectionInfo *ci;

    if (!r)
        return NULL;
    __atomic_add_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
    r->start_us = clock_us();
    request_id(r->id);
    r->mhd = mhd;
    r->target = target ? strdup(target) : NULL;
    ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->conn = ci ? ci->socket_context : NULL;
    return r;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mhd)
{
    struct request *r = request_new(cls, mhd, uri);

    if (r && r->conn)
        r->conn->request_lines++;
    return r;
}

/* What the request head holds, for the checks libmicrohttpd leaves to us. */
struct head_scan {
    size_t bytes;         /* header names and values, bytes */
    size_t pool;          /* estimate of what the head takes of the memory pool */
    unsigned n_cl;        /* Content-Length headers */
    bool cl_differ;       /* ... and they disagree */
    const char *cl;       /* the first one */
    unsigned n_te;        /* Transfer-Encoding headers */
    const char *te;       /* the first one */
    bool expect_continue; /* Expect: 100-continue */
};

static enum MHD_Result scan_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    struct head_scan *h = cls;

    /* libmicrohttpd keeps each value in a pool entry of about 64 bytes;
     * cookies are parsed again from a copy of their header. */
    h->pool += 64 + (kind == MHD_COOKIE_KIND ? key_size + value_size + 2 : 0);
    if (kind != MHD_HEADER_KIND)
        return MHD_YES;
    h->bytes += key_size + value_size;
    h->pool += key_size + value_size + 4;
    if (!value)
        return MHD_YES;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (h->n_cl++ == 0)
            h->cl = value;
        else if (strcmp(h->cl, value) != 0)
            h->cl_differ = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (h->n_te++ == 0)
            h->te = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_EXPECT) == 0 &&
               strcasecmp(value, "100-continue") == 0) {
        h->expect_continue = true;
    }
    return MHD_YES;
}

/*
 * The checks on the head as a whole, before anything else looks at it:
 * its size (libmicrohttpd only refuses a head that overflows the memory
 * pool, which is sized well above --max-header-size so that the answer
 * always fits), the body framing (a request with two framings is how
 * requests are smuggled past proxies), and the target (target_check).
 */
static enum stage stage_head(struct request *r, const char *version)
{
    struct http_server *srv = r->conn->srv;
    struct head_scan h;
    const char *bad;
    char detail[200];

    memset(&h, 0, sizeof(h));
    MHD_get_connection_values_n(r->mhd, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND,
                                scan_value, &h);
    h.bytes +=
        strlen(r->method) + strlen(r->target ? r->target : "") + strlen(version ? version : "") + 2;
    h.pool += h.bytes;
    if (h.bytes > srv->max_header_size || h.pool + 4096 > srv->pool_size) {
        if (h.bytes > srv->max_header_size)
            snprintf(detail, sizeof(detail),
                     "the request head is %zu bytes; the limit is %zu (request line, header names "
                     "and values)",
                     h.bytes, srv->max_header_size);
        else
            snprintf(detail, sizeof(detail), "the request head has too many header fields");
        r->close_now = r->direct_answer = true;
        return respond_error(r, CG_ERROR_HEADER_TOO_LARGE, detail);
    }
    r->expect_continue = h.expect_continue;
    if (h.n_te) {
        r->has_body = r->chunked = true;
        r->close_now = h.n_cl > 0 || h.n_te > 1 || strcasecmp(h.te, "chunked") != 0;
        if (h.n_cl)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "the request has both Content-Length and Transfer-Encoding; "
                                 "send only one of them");
        if (r->close_now)
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "Transfer-Encoding must be exactly chunked, once");
    } else if (h.n_cl) {
        r->content_length = strtoull(h.cl, NULL, 10);
        r->has_body = r->content_length > 0;
        if (h.cl_differ) {
            r->close_now = true;
            return respond_error(r, CG_ERROR_BAD_REQUEST,
                                 "the request has Content-Length headers that disagree");
        }
    }
    bad = target_check(r->target);
    if (bad) {
        r->bad_target = true;
        return respond_error(r, CG_ERROR_BAD_REQUEST, bad);
    }
    return STAGE_CONTINUE;
}

/*
 * An answer decided from the head alone. Without a body it waits for the
 * end of the request (keep-alive stays). With a body that fits the limit,
 * the body is read and dropped first, for the same reason. Otherwise the
 * answer goes now and the connection closes: a body over the limit, a
 * client waiting for 100-continue (it need not send the body at all), a
 * framing that cannot be trusted.
 */
static enum MHD_Result answer_early(struct request *r)
{
    if (r->direct_answer)
        return send_and_close(r);
    if (r->close_now || r->expect_continue ||
        (r->has_body && !r->chunked && r->content_length > cfg_of(r->conn->srv)->max_body_size))
        send_answer(r);
    return MHD_YES;
}

static enum MHD_Result on_body(struct request *r, const char *data, size_t n)
{
    size_t limit = cfg_of(r->conn->srv)->max_body_size;
    char *nb;

    if (r->queued) {
        /* Answered already: the body is read and dropped, up to the limit. */
        r->discarded += n;
        return r->discarded > limit ? send_and_close(r) : MHD_YES;
    }
    if (r->body_len + n > limit) {
        char detail[64];

        /* Only a chunked body gets here: a Content-Length over the limit
         * was answered from the head. */
        snprintf(detail, sizeof(detail), "the limit is %zu bytes", limit);
        respond_error(r, CG_ERROR_BODY_TOO_LARGE, detail);
        return send_and_close(r);
    }
    nb = realloc(r->body, r->body_len + n + 1);
    if (!nb)
        return MHD_NO;
    r->body = nb;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;

    if (!r) {
        r = request_new(srv, mhd, NULL);
        if (!r)
            return MHD_NO;
        *req_cls = r;
    }
    if (!r->started) {
        r->started = true;
        if (r->conn) {
            __atomic_store_n(&r->conn->head_state, HEAD_NONE, __ATOMIC_RELEASE);
            r->conn->requests++;
        }
        r->method = method;
        r->path = strdup(url ? url : "/");
        if (!r->path || !r->conn)
            return MHD_NO;
        if (stage_head(r, version) == STAGE_CONTINUE)
            pipeline_head(r);
        return r->queued ? answer_early(r) : MHD_YES;
    }
    if (r->kdf_pending) {
        /* Resumed after the password check: go on from authentication. */
        if (!__atomic_load_n(&r->kdf_done, __ATOMIC_ACQUIRE))
            return MHD_YES;
        r->kdf_pending = false;
        pipeline_auth(r);
        return r->queued ? answer_early(r) : MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        return on_body(r, upload_data, n);
    }
    /* The request is complete. */
    if (r->job && __atomic_load_n(&r->job_done, __ATOMIC_ACQUIRE)) {
        if (!r->queued)
            finish_job(r);
        return MHD_YES;
    }
    if (!r->queued && !r->job) {
        if (r->route)
            r->route->handler(r);
        else if (r->dyn.match == ROUTE_RESOURCE || r->dyn.match == ROUTE_TABLE)
            start_job(r);
        if (!r->queued && !(r->job && r->job->done))
            respond_error(r, CG_ERROR_INTERNAL, r->id);
    }
    send_answer(r);
    return MHD_YES;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "completed";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "unknown";
}

static void on_completed(void *cls, struct MHD_Connection *mhd, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    long long us;
    json_t *o;
    bool handed;

    (void)mhd;
    if (!r)
        return;
    /* Whether our answer reached libmicrohttpd (or the socket): a request
     * it refused itself later (a broken chunk) got its answer, not ours. */
    handed = (r->queued && !r->answer) || r->sent_directly;
    us = (long long)(clock_us() - r->start_us);
    o = json_pack("{s:s, s:s, s:o, s:o, s:i, s:I, s:I}", "request_id", r->id, "remote",
                  r->conn ? r->conn->remote : "", "method", utf8_json(r->method ? r->method : ""),
                  "path",
                  utf8_json(r->path && !r->bad_target ? r->path
                            : r->target               ? r->target
                                                      : ""),
                  "status", handed ? (int)r->status : 0, "bytes", handed ? (json_int_t)r->bytes : 0,
                  "us", (json_int_t)us);
    if (o) {
        json_object_set_new(o, "user", r->who ? utf8_json(r->who->user) : json_null());
        json_object_set_new(o, "auth",
                            json_string(r->who ? auth_method_name(r->who->method) : "none"));
        json_object_set_new(o, "cert_fingerprint",
                            r->conn && r->conn->peer.n
                                ? json_string(r->conn->peer.items[0].fingerprint)
                                : json_null());
        if (r->reason)
            json_object_set_new(o, "reason", json_string(r->reason));
        /* The certificate decision of this connection used a CRL past its
         * next update: it still applied, and the log says so. */
        if (r->conn && r->conn->has_cert_id && r->conn->cert_id.crl_stale) {
            json_object_set_new(o, "crl_stale", json_true());
            json_object_set_new(o, "crl_issuer", utf8_json(r->conn->cert_id.crl_issuer));
        }
        if (!handed && toe == MHD_REQUEST_TERMINATED_WITH_ERROR) {
            json_object_set_new(o, "answered_by", json_string("libmicrohttpd"));
            if (r->queued)
                json_object_set_new(o, "decided_status", json_integer((json_int_t)r->status));
        }
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->sent_directly)
            json_object_set_new(o, "terminated", json_string(termination_name(toe)));
    }
    log_event("request", o);
    metrics_request(r->route                         ? METRICS_SLOT_BUILTIN
                    : r->dyn.match == ROUTE_RESOURCE ? metrics_resource_slot(r->dyn.resource)
                    : r->dyn.match == ROUTE_TABLE    ? METRICS_SLOT_TABLE_API
                                                     : METRICS_SLOT_NONE,
                    r->status, us > 0 ? (uint64_t)us : 0);
    if (r->answer)
        MHD_destroy_response(r->answer);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        __atomic_add_fetch(&srv->unanswered, 1, __ATOMIC_ACQ_REL);
    /* Between requests now: the next head's deadline starts with its first
     * byte (the sweeper watches for it); until then --idle-timeout rules. */
    if (r->conn)
        __atomic_store_n(&r->conn->head_state, HEAD_IDLE | (uint64_t)clock_ms(), __ATOMIC_RELEASE);
    writer_job_free(r->job);
    writer_catalog_release(r->cat);
    json_decref(r->dyn.params);
    free(r->path);
    free(r->target);
    free(r->body);
    free(r);
    *req_cls = NULL;
    __atomic_sub_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
}

static void on_connection(void *cls, struct MHD_Connection *mhd, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    struct conn *c = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci;
        struct trust_snapshot *snap;

        c = calloc(1, sizeof(*c));
        if (!c)
            return;
        c->srv = srv;
        /* The handshake and the first head must be done in --head-timeout. */
        c->head_state =
            HEAD_DEADLINE | ((uint64_t)clock_ms() + 1000ULL * cfg_of(srv)->head_timeout);
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;

            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                          c->remote, sizeof(c->remote));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                          c->remote, sizeof(c->remote));
        }
        /* Before the handshake: our credentials (fresh CA names), and the
         * certificate request mode. */
        ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ci && ci->tls_session) {
            snap = trust_holder_acquire(srv->trust);
            tls_session_setup(srv->tls, ci->tls_session, &snap->pki, snap->version, &c->creds);
            trust_release(snap);
        }
        pthread_mutex_lock(&srv->conns_lock);
        c->next = srv->conns;
        if (c->next)
            c->next->prev = c;
        srv->conns = c;
        pthread_mutex_unlock(&srv->conns_lock);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* libmicrohttpd closes the socket only after this returns: once c is
     * off the list, the sweeper cannot touch a descriptor number that may
     * be reused. */
    pthread_mutex_lock(&srv->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&srv->conns_lock);
    /* Nothing else logs a connection that never got as far as a request
     * line: a failed or abandoned TLS handshake, a client that sent
     * nothing, or a request line libmicrohttpd refused itself (its "httpd"
     * line says which, without the address). */
    if (c->request_lines == 0 && !c->swept)
        log_event("connection_closed",
                  json_pack("{s:s, s:i, s:s}", "remote", c->remote, "requests", 0, "detail",
                            "closed before a request line was read: a TLS handshake that failed "
                            "or was abandoned, no data, or a request line libmicrohttpd refused "
                            "(see the httpd line)"));
    /* libmicrohttpd has called gnutls_deinit by now (MHD_cleanup_connections;
     * its other CLOSED call, for a connection that failed to start, cannot
     * happen with poll and a thread pool), so the credentials may go. */
    tls_session_release(srv->tls, c->creds);
    conn_forget(c);
    pki_cert_list_free(&c->peer);
    free(c);
    *socket_context = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (closing_on_purpose && strncmp(msg, "Application reported internal error", 35) == 0) {
        closing_on_purpose = false;
        return;
    }
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    log_event("httpd", json_pack("{s:o}", "detail", utf8_json(msg)));
}

/* ---- the head deadline ---- */

/* When the peer last sent data, in our monotonic ms, or 0 if unknown. */
static uint64_t last_data_received(MHD_socket fd, uint64_t now)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < sizeof(ti))
        return 0;
    return now > ti.tcpi_last_data_recv ? now - ti.tcpi_last_data_recv : 0;
}

/*
 * Closes the connections whose TLS handshake and request head are not done
 * within --head-timeout (a client sending one byte a second would hold one
 * for ever: --idle-timeout only measures silence). libmicrohttpd 0.9.75
 * cannot close a connection from outside, so the sweeper shuts its socket
 * down; libmicrohttpd then sees the end of the stream on its own thread and
 * closes it as usual. The descriptor is valid while the connection is on
 * the list under conns_lock (see on_connection).
 */
static void sweep(struct http_server *srv)
{
    uint64_t now = (uint64_t)clock_ms(), timeout = 1000ULL * cfg_of(srv)->head_timeout;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next) {
        uint64_t st = __atomic_load_n(&c->head_state, __ATOMIC_ACQUIRE);

        if (c->fd == MHD_INVALID_SOCKET || HEAD_KIND(st) == HEAD_NONE)
            continue;
        if (HEAD_KIND(st) == HEAD_IDLE) {
            uint64_t got = last_data_received(c->fd, now);

            /* Data after the end of the last request: a head has begun.
             * The kernel's figure is in coarse ticks, hence the margin. */
            if (got > HEAD_TIME(st) + 50)
                __atomic_compare_exchange_n(&c->head_state, &st, HEAD_DEADLINE | (got + timeout),
                                            false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            continue;
        }
        if (now < HEAD_TIME(st) || c->swept)
            continue;
        c->swept = true;
        shutdown(c->fd, SHUT_RDWR);
        log_event("head_timeout",
                  json_pack("{s:s, s:s, s:i, s:s}", "remote", c->remote, "stage",
                            c->requests ? "request head" : "TLS handshake or first request head",
                            "head_timeout", (int)cfg_of(srv)->head_timeout, "detail",
                            "the client took too long to send its request head; connection "
                            "closed (--head-timeout)"));
    }
    pthread_mutex_unlock(&srv->conns_lock);
}

static void *sweeper_main(void *arg)
{
    struct http_server *srv = arg;

    pthread_mutex_lock(&srv->conns_lock);
    while (!srv->stopping) {
        struct timespec until;

        clock_deadline(&until, 250);
        pthread_cond_timedwait(&srv->sweeper_wake, &srv->conns_lock, &until);
        if (srv->stopping)
            break;
        pthread_mutex_unlock(&srv->conns_lock);
        sweep(srv);
        pthread_mutex_lock(&srv->conns_lock);
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return NULL;
}

int http_start(const struct serve_config *cfg, struct trust_holder *trust, struct tls_server *tls,
               struct writer *writer, struct http_server **out_srv, struct cg_err *err)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    unsigned threads = cfg->threads;
    const union MHD_DaemonInfo *di;
    unsigned flags;

    if (!srv)
        return CG_ENOMEM;
    srv->quiesced = MHD_INVALID_SOCKET;
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_cond_init(&srv->sweeper_wake, NULL);
    srv->cfg = cfg;
    srv->trust = trust;
    srv->tls = tls;
    srv->writer = writer;
    if (settings_address(cfg->listen, &addr, &addr_len, err)) {
        http_stop(srv);
        return CG_EINVAL;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        threads = n > 0 ? (unsigned)n : 1;
    }
    /* The connection's memory pool holds the request head, its parsed
     * fields and the answer's headers. It is sized well above
     * --max-header-size, which stage_head enforces with a JSON 431; only a
     * head that overflows the whole pool gets libmicrohttpd's own 431. */
    srv->max_header_size = cfg->max_header_size;
    srv->pool_size = 2 * cfg->max_header_size + 32 * 1024;
    /* poll(), not epoll: with TLS, libmicrohttpd 0.9.75's epoll loop cost
     * about 1.3 ms of CPU per new connection here against 0.5 ms with poll
     * (bench/handshake.sh, server CPU from /proc). */
    flags = MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_HTTPS_MEM_CERT,
        tls_server_cert_pem(tls), MHD_OPTION_HTTPS_MEM_KEY, tls_server_key_pem(tls),
        MHD_OPTION_HTTPS_PRIORITIES,
        cfg->tls_priority ? cfg->tls_priority : settings_default_priority,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, srv->pool_size,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        cg_err_set(err,
                   "cannot listen on %s (address in use, not permitted, or the TLS priority "
                   "string or certificate was refused; see the log)",
                   cfg->listen);
        http_stop(srv);
        return CG_ERR;
    }
    if (identity_limiter_new(0, &srv->limiter)) {
        cg_err_set(err, "out of memory");
        http_stop(srv);
        return CG_ENOMEM;
    }
    /* Half the cores for password checks (at least one, at most four). */
    if (kdf_start(srv, threads / 2 ? (threads / 2 < 4 ? threads / 2 : 4) : 1, &srv->kdf)) {
        cg_err_set(err, "cannot start the password-check threads");
        http_stop(srv);
        return CG_ERR;
    }
    if (pthread_create(&srv->sweeper, NULL, sweeper_main, srv) != 0) {
        cg_err_set(err, "cannot start the connection sweeper thread");
        http_stop(srv);
        return CG_ERR;
    }
    srv->sweeper_started = true;
    di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    {
        char host[INET6_ADDRSTRLEN];
        const void *a = addr.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&addr)->sin_addr;

        if (!inet_ntop(addr.ss_family, a, host, sizeof(host)))
            snprintf(host, sizeof(host), "?");
        snprintf(srv->address, sizeof(srv->address),
                 addr.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, (unsigned)srv->port);
    }
    *out_srv = srv;
    return CG_OK;
}

/* ---- GET /metrics on the separate listener ---- */

/* The live scripted resources, for the metrics labels. */
static size_t resource_label(void *ctx, const struct dtable_resource **out_resources)
{
    struct http_server *srv = ctx;
    const struct catalog *c = srv->writer ? writer_catalog(srv->writer) : NULL;

    *out_resources = c ? c->resources : NULL;
    return c ? c->n_resources : 0;
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *mhd, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct MHD_Response *resp;
    struct trust_snapshot *snap;
    unsigned cas = 0, certs = 0;
    int64_t soon = cg_now() + 30 * 86400;
    char *text;
    enum MHD_Result rc;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    if (strcmp(url, "/metrics") != 0 || strcmp(method, "GET") != 0) {
        static const char nf[] = "not found: GET /metrics\n";

        resp = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        rc = MHD_queue_response(mhd, MHD_HTTP_NOT_FOUND, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    snap = trust_holder_acquire(srv->trust);
    for (size_t i = 0; i < snap->pki.n_cas; i++)
        cas += snap->pki.cas[i].is_active && snap->pki.cas[i].cert.not_after < soon;
    for (size_t i = 0; i < snap->n_maps; i++)
        certs += snap->maps[i].kind != STORE_MAP_RULE && snap->maps[i].not_after < soon;
    trust_release(snap);
    text = metrics_render(resource_label, srv, cas, certs);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    rc = MHD_queue_response(mhd, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

int http_start_metrics(struct http_server *srv, const char *listen, uint16_t *out_port,
                       struct cg_err *err)
{
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    const union MHD_DaemonInfo *di;

    if (settings_address(listen, &addr, &addr_len, err))
        return CG_EINVAL;
    srv->metrics = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                                        (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                                    0, NULL, NULL, on_metrics, srv, MHD_OPTION_EXTERNAL_LOGGER,
                                    on_mhd_log, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                    MHD_OPTION_CONNECTION_LIMIT, 16, MHD_OPTION_CONNECTION_TIMEOUT,
                                    10, MHD_OPTION_END);
    if (!srv->metrics) {
        cg_err_set(err, "cannot listen on %s for metrics", listen);
        return CG_ERR;
    }
    di = MHD_get_daemon_info(srv->metrics, MHD_DAEMON_INFO_BIND_PORT);
    *out_port = di ? di->port : 0;
    return CG_OK;
}

uint16_t http_port(struct http_server *srv)
{
    return srv->port;
}

const char *http_address(struct http_server *srv)
{
    return srv->address;
}

void http_quiesce(struct http_server *srv)
{
    /* libmicrohttpd's threads may still look at it: close after stopping. */
    srv->quiesced = MHD_quiesce_daemon(srv->daemon);
}

int http_active_requests(struct http_server *srv)
{
    return __atomic_load_n(&srv->active, __ATOMIC_ACQUIRE);
}

int http_unanswered_requests(struct http_server *srv)
{
    return __atomic_load_n(&srv->unanswered, __ATOMIC_ACQUIRE);
}

void http_stop(struct http_server *srv)
{
    if (!srv)
        return;
    if (srv->sweeper_started) {
        pthread_mutex_lock(&srv->conns_lock);
        srv->stopping = true;
        pthread_cond_signal(&srv->sweeper_wake);
        pthread_mutex_unlock(&srv->conns_lock);
        pthread_join(srv->sweeper, NULL);
    }
    kdf_stop(srv->kdf);
    if (srv->metrics)
        MHD_stop_daemon(srv->metrics);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    identity_limiter_free(srv->limiter);
    if (srv->quiesced != MHD_INVALID_SOCKET)
        close(srv->quiesced);
    pthread_mutex_destroy(&srv->conns_lock);
    pthread_cond_destroy(&srv->sweeper_wake);
    free(srv);
}
