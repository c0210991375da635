#include "config.h"
#include "tls.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One generation of credentials: the key pair and the CA names of one
 * trust version. Sessions keep pointing at the generation they started
 * with, so generations live until the server is freed. */
struct creds {
    gnutls_certificate_credentials_t cred; /* key pair + CA names */
    int64_t trust_version;                 /* CA names are of this version */
    unsigned keypair_gen;                  /* which loaded key pair */
    struct creds *older;                   /* previous generation */
};

struct tls_server {
    char *cert_pem;       /* current certificate chain PEM */
    char *key_pem;        /* current key PEM; never logged */
    unsigned keypair_gen; /* bumped by every successful reload */
    bool require;         /* GNUTLS_CERT_REQUIRE instead of REQUEST */
    bool send_ca_names;   /* name the CA table in the certificate request */
    pthread_mutex_t lock; /* guards building and swapping generations */
    struct creds *cur;    /* newest generation (atomic pointer) */
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

int tls_server_new(const char *cert_file, const char *key_file, bool require, bool send_ca_names,
                   struct tls_server **out_srv, struct cg_err *err)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    int rc;

    if (!srv)
        return CG_ENOMEM;
    pthread_mutex_init(&srv->lock, NULL);
    srv->require = require;
    srv->send_ca_names = send_ca_names;
    rc = tls_server_reload(srv, cert_file, key_file, err);
    if (rc) {
        tls_server_free(srv);
        return rc;
    }
    *out_srv = srv;
    return CG_OK;
}

int tls_server_reload(struct tls_server *srv, const char *cert_file, const char *key_file,
                      struct cg_err *err)
{
    char *cert = NULL, *key = NULL, why[256];
    gnutls_certificate_credentials_t cred = NULL;
    struct creds *gen;
    int rc;

    rc = read_pem(cert_file, "certificate", &cert, err);
    if (rc)
        goto out;
    rc = read_pem(key_file, "private key", &key, err);
    if (rc)
        goto out;
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
    gen->trust_version = -1; /* no CA names yet: rebuilt on first session */
    gen->keypair_gen = ++srv->keypair_gen;
    gen->older = srv->cur;
    free(srv->cert_pem);
    if (srv->key_pem) {
        gnutls_memset(srv->key_pem, 0, strlen(srv->key_pem));
        free(srv->key_pem);
    }
    srv->cert_pem = cert;
    srv->key_pem = key;
    cert = key = NULL;
    __atomic_store_n(&srv->cur, gen, __ATOMIC_RELEASE);
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
    struct creds *g;

    if (!srv)
        return;
    g = srv->cur;
    while (g) {
        struct creds *older = g->older;

        gnutls_certificate_free_credentials(g->cred);
        free(g);
        g = older;
    }
    free(srv->cert_pem);
    if (srv->key_pem) {
        gnutls_memset(srv->key_pem, 0, strlen(srv->key_pem));
        free(srv->key_pem);
    }
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

/* The generation for @p trust_version, building it when the CA names moved. */
static struct creds *current(struct tls_server *srv, const struct pki_trust *trust,
                             int64_t trust_version)
{
    struct creds *g = __atomic_load_n(&srv->cur, __ATOMIC_ACQUIRE), *ng;
    gnutls_certificate_credentials_t cred = NULL;
    char why[256];

    if (!srv->send_ca_names || g->trust_version == trust_version)
        return g;
    pthread_mutex_lock(&srv->lock);
    g = srv->cur;
    if (g->trust_version != trust_version &&
        build(srv->cert_pem, srv->key_pem, trust, &cred, why, sizeof(why)) == CG_OK) {
        ng = calloc(1, sizeof(*ng));
        if (ng) {
            ng->cred = cred;
            ng->trust_version = trust_version;
            ng->keypair_gen = srv->keypair_gen;
            ng->older = g;
            __atomic_store_n(&srv->cur, ng, __ATOMIC_RELEASE);
            g = ng;
        } else {
            gnutls_certificate_free_credentials(cred);
        }
    }
    pthread_mutex_unlock(&srv->lock);
    return g;
}

int tls_session_setup(struct tls_server *srv, void *session, const struct pki_trust *trust,
                      int64_t trust_version)
{
    gnutls_session_t s = session;
    struct creds *g = current(srv, trust, trust_version);

    if (gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g->cred) < 0)
        return CG_ERR;
    gnutls_certificate_server_set_request(s,
                                          srv->require ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_REQUEST);
    if (!srv->send_ca_names)
        gnutls_certificate_send_x509_rdn_sequence(s, 1);
    return CG_OK;
}

int tls_session_peer(void *session, struct pki_cert_list *out_list)
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
        if (pki_cert_from_der(peers[i].data, peers[i].size, &out_list->items[i])) {
            pki_cert_list_free(out_list);
            return CG_EPARSE;
        }
        out_list->n++;
    }
    return CG_OK;
}

void tls_session_describe(void *session, const char **out_protocol, const char **out_cipher)
{
    gnutls_session_t s = session;
    const char *cipher = gnutls_ciphersuite_get(s);

    *out_protocol = gnutls_protocol_get_name(gnutls_protocol_get_version(s));
    *out_cipher = cipher ? cipher : "";
}
