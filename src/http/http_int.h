/*
 * http_int: what the files of the HTTP layer share and nothing outside it
 * sees: the server, connection and request structs, the pipeline's stage
 * outcome, and the functions one file calls in another. Relies on
 * libmicrohttpd and every subsystem before http. Does not declare anything
 * the daemon uses: that is http.h.
 */
#ifndef CG_HTTP_INT_H
#define CG_HTTP_INT_H

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/identity.h"
#include "auth/kdf.h"
#include "base/error.h"
#include "base/metrics.h"
#include "engine/writer.h"
#include "http/http.h"
#include "http/routes.h"

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
    struct identity_basic_cache *basic_cache; /* Basic credentials verified recently */
    struct pki_parse_cache *cert_cache;       /* client certificates parsed before */
    struct lingerer *linger;                  /* closes sockets after error answers */
    struct proxy_acceptor *proxy;             /* --proxy-protocol: accepts for libmicrohttpd */
    struct parker *park; /* --event-loop epoll: handshakes waiting for the client */
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
    struct identity *basic_id;    /* the Basic identity or refusal (allocated at the first
                                   * Authorization header: most clients send none) */
    struct tls_generation *creds; /* the credentials its session uses */
    MHD_socket fd;                /* its socket, for the sweeper */
    uint64_t head_state;          /* atomic: what the sweeper watches (HEAD_..., see below) */
    unsigned requests;            /* requests begun on it */
    unsigned request_lines;       /* request lines read on it (requests may fail later) */
    bool swept;                   /* the sweeper shut it down (conns_lock) */
    bool body_unread;             /* an answer went out before the request's body was read */
    bool parked;                  /* atomic: suspended while its handshake waits (park.c) */
    struct MHD_Connection *mhd;   /* set when parked, to resume it */
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

/* What a stage tells the orchestrator (pipeline.c), which alone decides
 * what happens next. */
enum stage {
    STAGE_NEXT,     /* go on with the next stage */
    STAGE_ANSWERED, /* an answer is decided: no further stage runs */
    STAGE_WAIT,     /* the connection sleeps (a password check, a commit) until woken;
                     * then the same stage runs again */
};

struct request;

/* An endpoint's handler (handlers/): answers, or waits and is called again. */
typedef enum stage (*handler_fn)(struct request *r);

/* What kind of thing answers a request. */
enum route_kind {
    ROUTE_KIND_NONE,         /* nothing at this path: 404 */
    ROUTE_KIND_WRONG_METHOD, /* something at this path, for other methods: 405 with Allow */
    ROUTE_KIND_BUILTIN,      /* an endpoint of certgate's own */
    ROUTE_KIND_SCRIPT,       /* a scripted resource */
    ROUTE_KIND_TABLE,        /* the Table API */
};

/* What the router found for a request (router.c). */
struct route_hit {
    enum route_kind kind;    /* see above */
    bool is_public;          /* no authentication at all */
    const char *role;        /* BUILTIN: the role required, NULL: any authenticated user */
    handler_fn handler;      /* BUILTIN, SCRIPT, TABLE */
    struct route_result dyn; /* SCRIPT, TABLE: the catalog's match (params owned) */
    char allow[64];          /* WRONG_METHOD: the Allow header */
};

/* Where the decided answer is. */
enum answer_state {
    ANSWER_NONE,    /* nothing decided yet */
    ANSWER_DECIDED, /* decided, held until libmicrohttpd may take it (send_answer) */
    ANSWER_QUEUED,  /* handed to libmicrohttpd */
    ANSWER_WRITTEN, /* written on the TLS session by send_and_close */
};

/* What an answer decided before the body was read does to the connection. */
enum early_close {
    EARLY_KEEP,       /* keep-alive: a body that fits the limit is read and dropped first */
    EARLY_CLOSE,      /* send it at once and close: the framing cannot be trusted */
    EARLY_WRITE_CLOSE /* libmicrohttpd cannot send it: send_and_close writes it */
};

/* The body the head announced (head.c). */
struct framing {
    bool has_body;           /* Content-Length > 0 or chunked */
    bool is_chunked;         /* Transfer-Encoding: chunked */
    uint64_t content_length; /* Content-Length, 0 when none */
    bool expect_continue;    /* the client waits for 100 Continue */
};

/* One request, from the request line to the completion callback. */
struct request {
    struct conn *conn;             /* its connection */
    struct MHD_Connection *mhd;    /* libmicrohttpd's connection */
    char id[33];                   /* request id (X-Request-Id) */
    int64_t start_us;              /* when it arrived (clock_us) */
    const char *method;            /* request method (libmicrohttpd's storage) */
    const char *version;           /* HTTP version (libmicrohttpd's storage) */
    char *target;                  /* the request target as sent, before percent-decoding */
    char *path;                    /* the request path, percent-decoded */
    bool is_bad_target;            /* the target is not text: the log shows it as sent */
    unsigned next_stage;           /* the stage the orchestrator runs next */
    bool has_head;                 /* the access handler has seen the complete head */
    bool has_body;                 /* the whole body is in */
    bool is_waiting;               /* suspended inside a stage */
    bool is_woken;                 /* set (atomically) by the thread that resumes it */
    struct framing framing;        /* what the head announced */
    struct route_hit route;        /* what answers it */
    struct catalog *cat;           /* the catalog route.dyn points into (held until completed) */
    const struct identity *who;    /* the caller, NULL when unauthenticated */
    unsigned barred;               /* Basic: the address was barred before its check ran */
    char *body;                    /* request body */
    size_t body_len;               /* its length */
    uint64_t discarded;            /* body bytes dropped after an early answer */
    struct writer_job *job;        /* handed to the engine, NULL if none */
    enum answer_state answer;      /* where the answer is */
    enum early_close early;        /* what an early answer does to the connection */
    struct MHD_Response *response; /* the decided answer, until queued */
    const char *answer_text;       /* its body (owned by response) */
    char allow[64];                /* its Allow header, "" when none */
    unsigned status;               /* status sent */
    size_t bytes;                  /* body bytes sent */
    const char *reason;            /* refusal reason code, NULL if none */
    char retry_after[12];          /* Retry-After seconds, "" when none */
};

/* The settings in force: SIGHUP may swap them while requests run. */
static inline const struct serve_config *cfg_of(struct http_server *srv)
{
    return __atomic_load_n(&srv->cfg, __ATOMIC_ACQUIRE);
}

/* Wakes a request that waits in a stage; any thread may call it. */
void request_wake(struct request *r);

/* respond.c */
extern __thread bool closing_on_purpose;
void add_common_headers(struct request *r, struct MHD_Response *resp);
enum stage respond_text(struct request *r, unsigned status, char *text, const char *allow);
enum stage respond_json(struct request *r, unsigned status, json_t *body);
enum stage respond_error(struct request *r, enum cg_error e, const char *detail);
enum stage respond_decided(struct request *r, unsigned status, struct MHD_Response *resp,
                           size_t bytes);
void send_answer(struct request *r);
enum MHD_Result send_and_close(struct request *r);
/** The JSON answer that replaces libmicrohttpd's own answer of @p status
 * (tls_wire_replace_own_answers); NULL for a status it does not write. */
char *respond_own_answer(unsigned status, size_t *len);

/* head.c */
enum stage stage_head(struct request *r);
enum stage stage_limits(struct request *r);

/* router.c */
enum stage stage_route(struct request *r);
uint64_t route_metrics_slot(const struct route_hit *h);
struct metrics_endpoint route_endpoint(const struct dtable_resource *res);

/* authn.c */
void conn_forget(struct conn *c);
enum stage refuse_auth(struct request *r, const struct identity *id);
enum stage stage_authenticate(struct request *r);

/* authz.c */
enum stage stage_authorise(struct request *r);
enum stage refuse_missing_role(struct request *r, const char *detail);

/* jobs.c: what the scripted and Table API handlers share */
json_t *jobs_collect(struct request *r, enum MHD_ValueKind kind);
enum stage jobs_new(struct request *r, struct writer_job **out_job);
enum stage jobs_start(struct request *r, struct writer_job *job);
enum stage jobs_finish(struct request *r);

/* pipeline.c */
enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls);
void *on_uri(void *cls, const char *uri, struct MHD_Connection *mhd);
void on_completed(void *cls, struct MHD_Connection *mhd, void **req_cls,
                  enum MHD_RequestTerminationCode toe);

/* access_log.c */
void access_log(const struct request *r, enum MHD_RequestTerminationCode toe, int64_t us);

/* handlers/ */
enum stage healthz_handle(struct request *r);
enum stage whoami_handle(struct request *r);
enum stage admin_trust_handle(struct request *r);
enum stage scripted_handle(struct request *r);
enum stage table_api_handle(struct request *r);

/* server.c */
void on_mhd_log(void *cls, const char *fmt, va_list ap);

/* server.c: seconds from the accept to the end of the first request head:
 * --head-timeout, or --idle-timeout if sooner. */
unsigned first_head_timeout(const struct serve_config *cfg);

/* sweeper.c */
void *sweeper_main(void *arg);

/* linger.c: an epoll set for a thread of its own, with an eventfd in it
 * (data.ptr NULL) to wake the thread; park.c uses one too. */
/** Opens both (closed again on failure). @return CG_OK or CG_EIO */
int wake_set_open(int *ep, int *wake);
/** Closes what wake_set_open opened (a negative descriptor is skipped). */
void wake_set_close(int ep, int wake);
/** Wakes the thread waiting on the set. */
void wake_set_signal(int wake);

/* linger.c: the lingering close (see there). */
struct lingerer;
/** Starts the draining thread. @return CG_OK, CG_ENOMEM or CG_EIO */
int linger_start(struct lingerer **out);
/** Whether closing socket @p fd now could reset the connection: a request
 * body left unread (@p body_unread), or data waiting in the socket. */
bool linger_wanted(int fd, bool body_unread);
/** Keeps a duplicate of @p fd, shut for writing, and drains it until the
 * client closes or the time bound; the caller's descriptor may be closed. */
void linger_add(struct lingerer *l, int fd);
/** Stops the thread and closes what still lingers. */
void linger_stop(struct lingerer *l);

/* park.c: epoll handshakes that wait for the client, off libmicrohttpd's
 * ready list (see there). */
struct parker;
/** Starts the watching thread and tells tls/wire to park waiting
 * handshakes. @return CG_OK, CG_ENOMEM or CG_EIO */
int park_start(struct http_server *srv, struct parker **out);
/** Parks no more, ends the thread and resumes what is parked: before the
 * daemon stops. */
void park_stop(struct parker *p);
/** Frees it, after the daemon has stopped. */
void park_free(struct parker *p);

/* proxy.c: the PROXY protocol v2 header (--proxy-protocol) and the
 * acceptor that reads it before libmicrohttpd gets the socket. */
#define PROXY_V2_FIXED 16 /* signature, version and command, family, length */
#define PROXY_V2_MAX 4096 /* the longest header read (addresses and TLVs included) */
#define PROXY_CMD_LOCAL 0 /* the balancer's own connection (a health check) */
#define PROXY_CMD_PROXY 1 /* on behalf of the client named in the header */

/* What proxy_v2_parse decided. */
enum proxy_verdict {
    PROXY_MORE, /* not complete: *out_need bytes in all are needed (more may follow) */
    PROXY_DONE, /* a valid header of exactly *out_need bytes */
    PROXY_BAD,  /* not a valid v2 header: out->reason says why */
};

/* A parsed header. */
struct proxy_addr {
    bool is_local;               /* LOCAL, or no address given: the peer's own address counts */
    struct sockaddr_storage src; /* PROXY over TCP: the client's address and port */
    socklen_t src_len;           /* its length, 0 when is_local */
    char reason[200];            /* PROXY_BAD: why, one line */
};

/**
 * Parse the start of a connection as a PROXY protocol v2 header. Decides
 * as early as the bytes allow (a wrong signature is refused at its first
 * byte); TLVs after the addresses are skipped.
 * @param buf the bytes read so far
 * @param len how many (1 or more)
 * @param out_need how many bytes the header has in all, as far as known
 *        (16 until the fixed part is in); never more than PROXY_V2_MAX
 * @param out the client's address, or the reason for PROXY_BAD
 * @return PROXY_MORE, PROXY_DONE or PROXY_BAD
 */
enum proxy_verdict proxy_v2_parse(const unsigned char *buf, size_t len, size_t *out_need,
                                  struct proxy_addr *out);

/* What the first bytes of an untrusted peer are. */
enum proxy_first {
    PROXY_FIRST_MORE,   /* the start of a PROXY signature, or nothing yet: wait */
    PROXY_FIRST_HEADER, /* a PROXY v2 signature or the v1 "PROXY " text */
    PROXY_FIRST_OTHER,  /* anything else (a TLS ClientHello begins with 0x16) */
};

/** Classify the first @p len bytes a peer sent. */
enum proxy_first proxy_first_bytes(const unsigned char *buf, size_t len);

struct proxy_acceptor;

/**
 * Listen on @p addr and start the acceptor thread, which hands connections
 * to srv->daemon (started with MHD_USE_NO_LISTEN_SOCKET).
 * @param out_port the bound port
 * @param out the acceptor (proxy_stop frees it)
 * @return CG_OK, or an error with a message
 */
int proxy_start(struct http_server *srv, const struct sockaddr_storage *addr, socklen_t addr_len,
                uint16_t *out_port, struct proxy_acceptor **out, struct cg_err *err);

/** When descriptor @p fd was accepted (clock_ms), or 0 if unknown. */
uint64_t proxy_accepted_at(struct proxy_acceptor *a, int fd);

/** Stop accepting: closes the listener and the connections still awaiting
 * their first bytes; those handed over go on. Idempotent; NULL is fine. */
void proxy_quiesce(struct proxy_acceptor *a);

/** Quiesce, then free. NULL is fine. */
void proxy_stop(struct proxy_acceptor *a);

#endif
