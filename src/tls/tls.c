#include "config.h"
#include "tls/tls.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"

/* How long a session ticket resumes a session: an hour, not GnuTLS's six,
 * since a resumption skips the certificate exchange. */
#define TICKET_SECONDS 3600

/*
 * One generation of credentials: the key pair and the CA names it puts in
 * the certificate request. A session keeps a pointer to the credentials it
 * started with, so a generation lives as long as sessions use it: each
 * session holds a reference from tls_session_setup to tls_session_release.
 * A new generation is built only when the key pair or the set of active CAs
 * changes, not for every trust-data change (a user lock changes no name).
 */
struct tls_generation {
    gnutls_certificate_credentials_t cred; /* key pair + CA names */
    unsigned char names[32];               /* SHA-256 of the active CAs named, zero: none */
    unsigned keypair_gen;                  /* which loaded key pair */
    int64_t checked_version;               /* trust version known to name the same CAs */
    int refs;                              /* sessions using it, +1 while current (lock) */
    struct tls_generation *next;           /* older generations still in use (lock) */
};

struct tls_server {
    char *cert_pem;             /* current certificate chain PEM */
    char *key_pem;              /* current key PEM; never logged */
    unsigned keypair_gen;       /* bumped by every successful reload */
    pthread_mutex_t lock;       /* guards everything below; taken once per connection */
    bool require;               /* GNUTLS_CERT_REQUIRE instead of REQUEST */
    bool send_ca_names;         /* name the CA table in the certificate request */
    gnutls_priority_t priority; /* the priority string in force (GnuTLS counts its users) */
    struct tls_generation *cur; /* newest generation */
    struct tls_generation *old; /* superseded generations that sessions still use */
    unsigned n_generations;     /* alive, current included */
    gnutls_datum_t ticket_key;  /* master key of the session tickets; never logged */
};

static int read_pem(const char *path, const char *what, char **out, struct cg_err *err)
{
    size_t len = 0;
    int rc = cg_read_file(path, 1024 * 1024, out, &len, err);

    if (rc)
        return CG_EINVAL;
    if (!strstr(*out, "-----BEGIN ")) {
        cg_err_set(err, "%s: no PEM %s found", path, what);
        free(*out);
        *out = NULL;
        return CG_EINVAL;
    }
    return CG_OK;
}

/* SHA-256 over the fingerprints of the active CAs: what the certificate
 * request names. */
static void names_of(const struct pki_trust *trust, unsigned char out[32])
{
    gnutls_hash_hd_t h;

    memset(out, 0, 32);
    if (!trust || gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
        return;
    gnutls_hash(h, "names", 5);
    for (size_t i = 0; i < trust->n_cas; i++) {
        if (trust->cas[i].is_active)
            gnutls_hash(h, trust->cas[i].cert.fingerprint, 64);
    }
    gnutls_hash_deinit(h, out);
}

/* Builds credentials from the PEMs; @p trust may be NULL (no CA names). */
static int build(const char *cert_pem, const char *key_pem, const struct pki_trust *trust,
                 gnutls_certificate_credentials_t *out, char *why, size_t whylen)
{
    gnutls_certificate_credentials_t cred = NULL;
    gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    int rc;

    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(why, whylen, "out of memory");
        return CG_ENOMEM;
    }
    rc = gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(why, whylen, "%s",
                 rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
                     ? "the key does not belong to the certificate"
                     : gnutls_strerror(rc));
        gnutls_certificate_free_credentials(cred);
        return CG_EINVAL;
    }
    /* The trust list here only names CAs in the CertificateRequest: GnuTLS
     * does not verify the client in the handshake; pki_verify does. */
    for (size_t i = 0; trust && i < trust->n_cas; i++) {
        gnutls_datum_t der = {trust->cas[i].cert.der, (unsigned)trust->cas[i].cert.der_len};

        if (trust->cas[i].is_active)
            gnutls_certificate_set_x509_trust_mem(cred, &der, GNUTLS_X509_FMT_DER);
    }
    *out = cred;
    return CG_OK;
}

static void generation_free(struct tls_generation *g)
{
    gnutls_certificate_free_credentials(g->cred);
    free(g);
}

/* Makes @p g current (lock held); the one it replaces goes to the old list
 * while sessions use it. */
static void install(struct tls_server *srv, struct tls_generation *g)
{
    struct tls_generation *prev = srv->cur;

    g->refs = 1;
    srv->cur = g;
    srv->n_generations++;
    if (!prev)
        return;
    if (--prev->refs == 0) {
        generation_free(prev);
        srv->n_generations--;
    } else {
        prev->next = srv->old;
        srv->old = prev;
    }
}

int tls_server_new(const char *cert_file, const char *key_file, const char *priority, bool require,
                   bool send_ca_names, struct tls_server **out_srv, struct cg_err *err)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    int rc;

    if (!srv)
        return CG_ENOMEM;
    pthread_mutex_init(&srv->lock, NULL);
    /* Session tickets let a client that reconnects resume its session and
     * skip the certificate exchange. The key lives in memory only, for the
     * process's life (a reload keeps it, so tickets survive a SIGHUP);
     * GnuTLS derives the key that seals tickets from it and rotates that
     * one itself, and tickets expire after TICKET_SECONDS. */
    if (gnutls_session_ticket_key_generate(&srv->ticket_key) < 0) {
        cg_err_set(err, "cannot generate the session-ticket key");
        tls_server_free(srv);
        return CG_ERR;
    }
    rc = tls_server_set_policy(srv, priority, require, send_ca_names, err);
    if (rc == CG_OK)
        rc = tls_server_reload(srv, cert_file, key_file, err);
    if (rc) {
        tls_server_free(srv);
        return rc;
    }
    *out_srv = srv;
    return CG_OK;
}

int tls_server_set_policy(struct tls_server *srv, const char *priority, bool require,
                          bool send_ca_names, struct cg_err *err)
{
    gnutls_priority_t p = NULL, old;
    const char *where = NULL;

    if (gnutls_priority_init(&p, priority, &where) < 0) {
        cg_err_set(err, "--tls-priority '%s' is not a valid GnuTLS priority string (at '%.40s')",
                   priority, where ? where : "");
        return CG_EINVAL;
    }
    pthread_mutex_lock(&srv->lock);
    old = srv->priority;
    srv->priority = p;
    srv->require = require;
    srv->send_ca_names = send_ca_names;
    pthread_mutex_unlock(&srv->lock);
    /* Sessions that use the old one hold their own reference to it. */
    if (old)
        gnutls_priority_deinit(old);
    return CG_OK;
}

int tls_server_reload(struct tls_server *srv, const char *cert_file, const char *key_file,
                      struct cg_err *err)
{
    char *cert = NULL, *key = NULL, why[256];
    gnutls_certificate_credentials_t cred = NULL;
    struct tls_generation *gen;
    int rc;

    rc = read_pem(cert_file, "certificate", &cert, err);
    if (rc)
        goto out;
    rc = read_pem(key_file, "private key", &key, err);
    if (rc)
        goto out;
    if (strstr(key, "ENCRYPTED PRIVATE KEY-----") || strstr(key, "Proc-Type: 4,ENCRYPTED")) {
        cg_err_set(err,
                   "%s: the private key is encrypted (it has a passphrase); certgate needs it "
                   "unencrypted: decrypt it with openssl pkey -in %s -out server-plain.key "
                   "and keep that file readable by certgate only",
                   key_file, key_file);
        rc = CG_EINVAL;
        goto out;
    }
    if (!strstr(key, "PRIVATE KEY-----")) {
        cg_err_set(err, "%s: no PEM private key found", key_file);
        rc = CG_EINVAL;
        goto out;
    }
    rc = build(cert, key, NULL, &cred, why, sizeof(why));
    if (rc) {
        cg_err_set(err, "%s / %s: %s", cert_file, key_file, why);
        goto out;
    }
    gen = calloc(1, sizeof(*gen));
    if (!gen) {
        gnutls_certificate_free_credentials(cred);
        rc = CG_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&srv->lock);
    gen->cred = cred;
    gen->checked_version = -1; /* no CA names yet: rebuilt by the first session */
    gen->keypair_gen = ++srv->keypair_gen;
    free(srv->cert_pem);
    if (srv->key_pem) {
        gnutls_memset(srv->key_pem, 0, strlen(srv->key_pem));
        free(srv->key_pem);
    }
    srv->cert_pem = cert;
    srv->key_pem = key;
    cert = key = NULL;
    install(srv, gen);
    pthread_mutex_unlock(&srv->lock);
out:
    free(cert);
    if (key) {
        gnutls_memset(key, 0, strlen(key));
        free(key);
    }
    return rc;
}

const char *tls_server_cert_pem(const struct tls_server *srv)
{
    return srv->cert_pem;
}

const char *tls_server_key_pem(const struct tls_server *srv)
{
    return srv->key_pem;
}

void tls_server_free(struct tls_server *srv)
{
    struct tls_generation *g;

    if (!srv)
        return;
    if (srv->cur)
        generation_free(srv->cur);
    g = srv->old;
    while (g) {
        struct tls_generation *next = g->next;

        generation_free(g);
        g = next;
    }
    if (srv->priority)
        gnutls_priority_deinit(srv->priority);
    free(srv->cert_pem);
    if (srv->key_pem) {
        gnutls_memset(srv->key_pem, 0, strlen(srv->key_pem));
        free(srv->key_pem);
    }
    if (srv->ticket_key.data) {
        gnutls_memset(srv->ticket_key.data, 0, srv->ticket_key.size);
        gnutls_free(srv->ticket_key.data);
    }
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

/* The generation for @p trust_version (lock held): the current one, unless
 * the CAs it names moved, then a new one. */
static struct tls_generation *current(struct tls_server *srv, const struct pki_trust *trust,
                                      int64_t trust_version)
{
    struct tls_generation *g = srv->cur, *ng;
    gnutls_certificate_credentials_t cred = NULL;
    unsigned char names[32];
    char why[256];

    if (g->checked_version == trust_version)
        return g;
    names_of(trust, names);
    if (memcmp(names, g->names, sizeof(names)) == 0) {
        g->checked_version = trust_version;
        return g;
    }
    if (build(srv->cert_pem, srv->key_pem, trust, &cred, why, sizeof(why)) != CG_OK)
        return g;
    ng = calloc(1, sizeof(*ng));
    if (!ng) {
        gnutls_certificate_free_credentials(cred);
        return g;
    }
    ng->cred = cred;
    memcpy(ng->names, names, sizeof(names));
    ng->checked_version = trust_version;
    ng->keypair_gen = srv->keypair_gen;
    install(srv, ng);
    return ng;
}

/* Counts a completed handshake: the client's Finished message, received. */
/* A 3-byte big-endian length at @p p. */
static size_t be24(const unsigned char *p)
{
    return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
}

/*
 * Whether a client's Certificate message lists a certificate of length
 * zero. GnuTLS 3.7 takes such a message for "no certificate" and goes on;
 * it is malformed (RFC 5246 7.4.2, RFC 8446 4.4.2: ASN.1Cert<1..2^24-1>),
 * and OpenSSL answers it with decode_error (tlsfuzzer's "sanity - empty
 * client cert"). Anything else malformed is left to GnuTLS's own parser.
 */
static bool lists_empty_certificate(gnutls_session_t s, const gnutls_datum_t *msg)
{
    const unsigned char *p = msg->data, *end = msg->data + msg->size;
    bool tls13 = gnutls_protocol_get_version(s) == GNUTLS_TLS1_3;
    size_t n;

    if (tls13) {
        if (end - p < 1 || (size_t)(end - p) < 1u + p[0])
            return false;
        p += 1 + p[0]; /* certificate_request_context */
    }
    if (end - p < 3 || be24(p) > (size_t)(end - p - 3))
        return false;
    n = be24(p);
    p += 3;
    end = p + n;
    while (end - p >= 3) {
        n = be24(p);
        p += 3;
        if (n == 0)
            return true;
        if (n > (size_t)(end - p))
            return false;
        p += n;
        if (tls13) { /* each entry's extensions */
            if (end - p < 2 || (size_t)(p[0] << 8 | p[1]) > (size_t)(end - p - 2))
                return false;
            p += 2 + (p[0] << 8 | p[1]);
        }
    }
    return false;
}

/* Every handshake message: counts a completed handshake (the client's
 * Finished, received) and refuses a Certificate message that lists an empty
 * certificate with decode_error (GNUTLS_E_UNEXPECTED_PACKET_LENGTH). */
static int on_handshake_message(gnutls_session_t s, unsigned htype, unsigned when,
                                unsigned incoming, const gnutls_datum_t *msg)
{
    if (!incoming)
        return 0;
    if (htype == GNUTLS_HANDSHAKE_FINISHED && when == GNUTLS_HOOK_POST)
        metrics_connection();
    if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT && when == GNUTLS_HOOK_PRE &&
        lists_empty_certificate(s, msg))
        return GNUTLS_E_UNEXPECTED_PACKET_LENGTH;
    return 0;
}

int tls_session_setup(struct tls_server *srv, void *session, const struct pki_trust *trust,
                      int64_t trust_version, struct tls_generation **out_gen)
{
    gnutls_session_t s = session;
    struct tls_generation *g;
    bool require, send_names;
    int rc = CG_OK;

    pthread_mutex_lock(&srv->lock);
    g = current(srv, trust, trust_version);
    g->refs++;
    require = srv->require;
    send_names = srv->send_ca_names;
    /* Under the lock: a SIGHUP may replace the priority meanwhile. */
    if (gnutls_priority_set(s, srv->priority) < 0)
        rc = CG_ERR;
    pthread_mutex_unlock(&srv->lock);
    *out_gen = g;
    if (gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g->cred) < 0)
        rc = CG_ERR;
    gnutls_certificate_server_set_request(s, require ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_REQUEST);
    if (!send_names)
        gnutls_certificate_send_x509_rdn_sequence(s, 1);
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_BOTH,
                                       on_handshake_message);
    /* A resumed session carries the certificates of its first handshake
     * (tls_session_peer reads them as for a full one), so the client's
     * identity is bound to the ticket; the chain is still checked against
     * the trust data of now on every connection, resumed or not. */
    if (gnutls_session_ticket_enable_server(s, &srv->ticket_key) < 0)
        rc = CG_ERR;
    gnutls_db_set_cache_expiration(s, TICKET_SECONDS);
    return rc;
}

void tls_session_release(struct tls_server *srv, struct tls_generation *gen)
{
    struct tls_generation **p;

    if (!gen)
        return;
    pthread_mutex_lock(&srv->lock);
    if (--gen->refs == 0) {
        /* Only a superseded generation gets here (the current one holds a
         * reference of its own). */
        for (p = &srv->old; *p; p = &(*p)->next) {
            if (*p == gen) {
                *p = gen->next;
                break;
            }
        }
        generation_free(gen);
        srv->n_generations--;
    }
    pthread_mutex_unlock(&srv->lock);
}

int tls_session_peer(void *session, struct pki_parse_cache *cache, struct pki_cert_list *out_list)
{
    gnutls_session_t s = session;
    const gnutls_datum_t *peers;
    unsigned n = 0;

    out_list->items = NULL;
    out_list->n = 0;
    if (gnutls_certificate_type_get(s) != GNUTLS_CRT_X509)
        return CG_OK;
    peers = gnutls_certificate_get_peers(s, &n);
    if (!peers || n == 0)
        return CG_OK;
    if (n > 16)
        n = 16; /* a longer chain than the verifier builds is of no use */
    out_list->items = calloc(n, sizeof(*out_list->items));
    if (!out_list->items)
        return CG_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (pki_cert_from_der_cached(cache, peers[i].data, peers[i].size, &out_list->items[i])) {
            pki_cert_list_free(out_list);
            return CG_EPARSE;
        }
        out_list->n++;
    }
    return CG_OK;
}

bool tls_session_send_all(void *session, int fd, const char *buf, size_t len)
{
    int waits = 0;

    while (len > 0) {
        ssize_t n = gnutls_record_send(session, buf, len);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && waits++ < 4) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};

            poll(&p, 1, 50);
        } else {
            return false;
        }
    }
    return true;
}

int tls_priority_check(const char *priority, struct cg_err *err)
{
    gnutls_priority_t p = NULL;

    if (gnutls_priority_init(&p, priority, NULL) < 0) {
        cg_err_set(err, "--tls-priority '%s' is not a valid GnuTLS priority string", priority);
        return CG_EINVAL;
    }
    gnutls_priority_deinit(p);
    return CG_OK;
}
