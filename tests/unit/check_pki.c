/* Unit tests for pki: bundles, facts, CRLs and the verifier, on a real test
 * PKI made by tests/pki/mkpki.sh at test time. */
#include "config.h"
#include "base/utf8.h"

#include <check.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pki/pki.h"

static char dir[64];

static void make_pki(void)
{
    const char *src = getenv("TESTS_SRCDIR");
    char cmd[512];

    snprintf(dir, sizeof(dir), "/tmp/check_pki.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "sh '%s/pki/mkpki.sh' '%s' >/dev/null 2>&1", src ? src : "tests",
             dir);
    ck_assert_msg(system(cmd) == 0, "mkpki.sh failed");
}

static void remove_pki(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *name, size_t *len)
{
    char path[256], *data = NULL;
    struct cg_err err = {""};

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ck_assert_int_eq(cg_read_file(path, 1 << 20, &data, len, &err), CG_OK);
    return data;
}

static int parse(const char *name, struct pki_cert_list *l, struct pki_parse_error *e)
{
    size_t len;
    char *data = slurp(name, &len);
    int rc;

    memset(e, 0, sizeof(*e));
    rc = pki_parse_bundle(data, len, l, e);
    free(data);
    return rc;
}

/* The output of a shell command, trimmed. */
static void shell(const char *cmd, char *out, size_t size)
{
    FILE *p = popen(cmd, "r");
    size_t n;

    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
}

static const struct {
    const char *file; /* mkpki.sh output */
    int rc;           /* expected status */
    size_t n;         /* certificates */
    size_t position;  /* block named in the error */
    const char *why;  /* part of the reason */
} bundle_cases[] = {
    {"chain.pem", CG_OK, 2, 0, NULL},
    {"chain-reversed.pem", CG_OK, 2, 0, NULL},
    {"client-fullchain.pem", CG_OK, 2, 0, NULL},
    {"with-key.pem", CG_EDENIED, 0, 2, "private key"},
    {"garbage.pem", CG_EPARSE, 0, 1, "unparsable"},
    {"empty.pem", CG_EPARSE, 0, 0, "empty"},
    {"text.pem", CG_EPARSE, 0, 0, "no certificate"},
    {"int.crl", CG_EPARSE, 0, 1, "not a certificate"},
    {"client.key", CG_EDENIED, 0, 1, "private key"},
};

START_TEST(bundles)
{
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    int rc = parse(bundle_cases[_i].file, &l, &e);

    ck_assert_msg(rc == bundle_cases[_i].rc, "%s: rc %d", bundle_cases[_i].file, rc);
    ck_assert_uint_eq(l.n, bundle_cases[_i].n);
    if (bundle_cases[_i].why) {
        ck_assert_uint_eq(e.position, bundle_cases[_i].position);
        ck_assert_msg(strstr(e.reason, bundle_cases[_i].why), "%s: reason '%s'",
                      bundle_cases[_i].file, e.reason);
    }
    pki_cert_list_free(&l);
}
END_TEST

START_TEST(der_input)
{
    char cmd[256], *der;
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    size_t len;

    snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/root.pem' -outform DER -out '%s/root.der'",
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    der = slurp("root.der", &len);
    ck_assert_int_eq(pki_parse_bundle(der, len, &l, &e), CG_OK);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.items[0].subject, "CN=certgate Test Root CA,O=certgate tests");
    free(der);
    pki_cert_list_free(&l);
}
END_TEST

/* Non-PEM input other than one DER certificate: a private key in any DER
 * form is refused as a key, and broken DER is "unparsable DER" with why. */
static const struct {
    const char *make; /* shell command run in the PKI directory, making in.der */
    int rc;           /* expected status */
    const char *why;  /* part of the reason */
} der_cases[] = {
    {"openssl x509 -in client.pem -outform DER -out in.der", CG_OK, NULL},
    {"openssl pkcs12 -export -in client.pem -inkey client.key -passout pass:changeit -out in.der",
     CG_EDENIED,
     "PKCS#12 bundle (.p12/.pfx), which holds a private key: attach only the "
     "certificate"},
    {"certtool --to-p12 --load-certificate client.pem --load-privkey client.key --p12-name c "
     "--password changeit --outder --outfile in.der",
     CG_EDENIED, "PKCS#12"},
    {"openssl pkcs8 -topk8 -nocrypt -in client.key -outform DER -out in.der", CG_EDENIED,
     "this is a private key (DER PKCS#8"},
    {"openssl pkcs8 -topk8 -v2 aes256 -passout pass:x -in client.key -outform DER -out in.der",
     CG_EDENIED, "encrypted private key"},
    {"openssl ec -in client.key -outform DER -out in.der", CG_EDENIED, "private key"},
    {"openssl rsa -in server-rsa.key -outform DER -out in.der", CG_EDENIED, "private key"},
    {"openssl x509 -in client.pem -outform DER | head -c 300 > in.der", CG_EPARSE,
     "unparsable DER: the file is truncated"},
    {"openssl x509 -in client.pem -outform DER > in.der; printf 'xyz' >> in.der", CG_EPARSE,
     "unparsable DER: 3 bytes of trailing data"},
    {"openssl x509 -in client.pem -outform DER > in.der; "
     "openssl x509 -in client2.pem -outform DER >> in.der",
     CG_EPARSE, "unparsable DER: the file holds more than one DER structure"},
    {"printf '\\060\\003\\002\\001\\001' > in.der", CG_EPARSE,
     "unparsable DER: not an X.509 certificate"},
    {"openssl crl -in int.crl -outform DER -out in.der", CG_EPARSE, "this is a CRL"},
    {"openssl crl2pkcs7 -nocrl -certfile chain.pem -outform DER -out in.der", CG_EPARSE,
     "PKCS#7 bundle"},
    {"openssl req -new -key client.key -subj /CN=x -outform DER -out in.der", CG_EPARSE,
     "certificate request"},
    {"printf 'binary\\001\\002' > in.der", CG_EPARSE, "no certificate found"},
};

START_TEST(der_inputs)
{
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    char cmd[512];
    int rc;

    snprintf(cmd, sizeof(cmd), "cd '%s' && rm -f in.der && { %s; } 2>/dev/null", dir,
             der_cases[_i].make);
    ck_assert_msg(system(cmd) == 0, "%s failed", der_cases[_i].make);
    rc = parse("in.der", &l, &e);
    ck_assert_msg(rc == der_cases[_i].rc, "%s: rc %d (%s)", der_cases[_i].make, rc, e.reason);
    if (der_cases[_i].why)
        ck_assert_msg(strstr(e.reason, der_cases[_i].why), "%s: reason '%s'", der_cases[_i].make,
                      e.reason);
    else
        ck_assert_uint_eq(l.n, 1);
    pki_cert_list_free(&l);
}
END_TEST

START_TEST(facts)
{
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    const struct pki_cert *c;
    char cmd[256], want[200];

    ck_assert_int_eq(parse("client.pem", &l, &e), CG_OK);
    c = &l.items[0];
    ck_assert_str_eq(c->subject, "CN=integrator1,O=Acme");
    ck_assert_str_eq(c->issuer, "CN=certgate Test Issuing CA,O=certgate tests");
    ck_assert_str_eq(c->cn, "integrator1");
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in '%s/client.pem' -noout -fingerprint -sha256 | cut -d= -f2 | "
             "tr -d : | tr A-F a-f",
             dir);
    shell(cmd, want, sizeof(want));
    ck_assert_str_eq(c->fingerprint, want);
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in '%s/client.pem' -noout -pubkey | openssl pkey -pubin -outform DER "
             "| openssl dgst -sha256 -r | cut -d' ' -f1",
             dir);
    shell(cmd, want, sizeof(want));
    ck_assert_str_eq(c->spki_sha256, want);
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in '%s/client.pem' -noout -serial | cut -d= -f2 | tr A-F a-f", dir);
    shell(cmd, want, sizeof(want));
    ck_assert_str_eq(c->serial, want);
    ck_assert_uint_eq(c->n_san_email, 1);
    ck_assert_str_eq(c->san_email[0], "integrator1@example.com");
    ck_assert_uint_eq(c->n_san_dns, 1);
    ck_assert_str_eq(c->san_dns[0], "integrator1.example.com");
    ck_assert_uint_eq(c->n_san_uri, 1);
    ck_assert_str_eq(c->san_uri[0], "spiffe://acme/integrator1");
    ck_assert(!c->is_ca);
    ck_assert(c->has_eku && c->eku_client_auth);
    ck_assert(c->has_key_usage && (c->key_usage & PKI_KU_DIGITAL_SIGNATURE));
    ck_assert(!c->is_self_signed);
    ck_assert_str_eq(c->key_type, "EC SECP256R1");
    ck_assert_ptr_null(c->defect);
    ck_assert_int_gt(c->not_after, c->not_before);
    ck_assert(c->aki[0] && c->ski[0]);
    pki_cert_list_free(&l);

    ck_assert_int_eq(parse("chain.pem", &l, &e), CG_OK);
    ck_assert(l.items[0].is_ca && !l.items[0].is_self_signed);
    ck_assert_int_eq(l.items[0].path_len, 0);
    ck_assert(l.items[1].is_ca && l.items[1].is_self_signed && l.items[1].is_self_issued);
    ck_assert(pki_cert_issued_by(&l.items[0], &l.items[1]));
    ck_assert(!pki_cert_issued_by(&l.items[1], &l.items[0]));
    ck_assert_str_eq(l.items[0].aki, l.items[1].ski);
    pki_cert_list_free(&l);
}
END_TEST

/*
 * A self-signed certificate made here with GnuTLS, for names no certificate
 * tool writes: @p cn is the DER of the CN value (tag, length, bytes) so it
 * may hold any bytes; @p email, when not NULL, is one rfc822Name SAN taken
 * as raw bytes; @p excluded_dn, when not NULL, makes it a CA whose name
 * constraints exclude that RFC 4514 DN (given raw to GnuTLS).
 */
static void make_odd_cert(const char *cn, size_t cn_len, const char *email, const char *excluded_dn,
                          struct pki_cert *out)
{
    gnutls_x509_crt_t crt;
    gnutls_x509_privkey_t key;
    gnutls_datum_t der = {NULL, 0};
    unsigned char serial[1] = {7}, kid[20];
    size_t kid_len = sizeof(kid);
    time_t now = time(NULL);

    ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
    ck_assert_int_eq(gnutls_x509_privkey_init(&key), 0);
    ck_assert_int_eq(gnutls_x509_privkey_generate(
                         key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    ck_assert_int_eq(gnutls_x509_crt_set_key(crt, key), 0);
    gnutls_x509_crt_set_version(crt, 3);
    gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
    gnutls_x509_crt_set_activation_time(crt, now - 60);
    gnutls_x509_crt_set_expiration_time(crt, now + 86400);
    ck_assert_int_eq(
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, cn, (unsigned)cn_len),
        0);
    ck_assert_int_eq(
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, "Acme", 4), 0);
    ck_assert_int_eq(gnutls_x509_crt_get_key_id(crt, 0, kid, &kid_len), 0);
    gnutls_x509_crt_set_subject_key_id(crt, kid, kid_len);
    if (email) {
        /* SEQUENCE { [1] IA5String }: GnuTLS's setter would refuse the bytes. */
        unsigned char san[128];
        size_t n = strlen(email);
        gnutls_datum_t d = {san, (unsigned)(n + 4)};

        ck_assert_uint_lt(n, 100);
        san[0] = 0x30;
        san[1] = (unsigned char)(n + 2);
        san[2] = 0x81;
        san[3] = (unsigned char)n;
        memcpy(san + 4, email, n);
        ck_assert_int_eq(gnutls_x509_crt_set_extension_by_oid(crt, "2.5.29.17", d.data, d.size, 0),
                         0);
    }
    if (excluded_dn) {
        /* NameConstraints { excludedSubtrees [1] { GeneralSubtree { [4] Name } } },
         * by hand: GnuTLS 3.7 cannot encode a directoryName constraint. */
        gnutls_x509_dn_t dn;
        gnutls_datum_t name = {NULL, 0};
        unsigned char nc[160];

        ck_assert_int_eq(gnutls_x509_dn_init(&dn), 0);
        ck_assert_int_eq(gnutls_x509_dn_set_str(dn, excluded_dn, NULL), 0);
        ck_assert_int_eq(gnutls_x509_dn_export2(dn, GNUTLS_X509_FMT_DER, &name), 0);
        ck_assert_uint_lt(name.size, 100);
        nc[0] = 0x30;
        nc[1] = (unsigned char)(name.size + 6);
        nc[2] = 0xa1;
        nc[3] = (unsigned char)(name.size + 4);
        nc[4] = 0x30;
        nc[5] = (unsigned char)(name.size + 2);
        nc[6] = 0xa4;
        nc[7] = (unsigned char)name.size;
        memcpy(nc + 8, name.data, name.size);
        ck_assert_int_eq(gnutls_x509_crt_set_basic_constraints(crt, 1, -1), 0);
        ck_assert_int_eq(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN), 0);
        ck_assert_int_eq(
            gnutls_x509_crt_set_extension_by_oid(crt, "2.5.29.30", nc, name.size + 8, 1), 0);
        gnutls_free(name.data);
        gnutls_x509_dn_deinit(dn);
    }
    ck_assert_int_eq(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
    ck_assert_int_eq(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), 0);
    ck_assert_int_eq(pki_cert_from_der(der.data, der.size, out), CG_OK);
    gnutls_free(der.data);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
}

static const struct {
    const char *cn;      /* DER of the CN value: UTF8String (0x0c) or T61String (0x14) */
    size_t cn_len;       /* its length */
    const char *subject; /* certgate's subject string */
    const char *text;    /* certgate's CN string */
} odd_names[] = {
    /* Latin-1 bytes in a UTF8String: escaped, not passed on. */
    {"\x0c\x07Soci\xe9t\xe9", 9, "O=Acme,CN=Soci\\E9t\\E9", "Soci\\E9t\\E9"},
    /* Control characters: C0, DEL and C1 (U+0085). */
    {"\x0c\x07"
     "a\nb\x01\x7f\xc2\x85",
     9, "O=Acme,CN=a\\0Ab\\01\\7F\\C2\\85", "a\\0Ab\\01\\7F\\C2\\85"},
    /* A truncated character at the end. */
    {"\x0c\x03"
     "ab\xc3",
     5, "O=Acme,CN=ab\\C3", "ab\\C3"},
    /* Valid UTF-8 and GnuTLS's own escapes are kept byte for byte. */
    {"\x0c\x11Soci\xc3\xa9t\xc3\xa9, G\\x\xe2\x82\xac", 19,
     "O=Acme,CN=Soci\xc3\xa9t\xc3\xa9\\, G\\\\x\xe2\x82\xac",
     "Soci\xc3\xa9t\xc3\xa9\\, G\\\\x\xe2\x82\xac"},
    /* GnuTLS writes a T61String with 8-bit bytes as hex: already ASCII. */
    {"\x14\x02\xe9t", 4, "O=Acme,CN=\\#e974", "\\#e974"},
};

START_TEST(names_are_utf8)
{
    struct pki_cert c, again;

    make_odd_cert(odd_names[_i].cn, odd_names[_i].cn_len, NULL, NULL, &c);
    ck_assert_str_eq(c.subject, odd_names[_i].subject);
    ck_assert_str_eq(c.issuer, odd_names[_i].subject);
    ck_assert_str_eq(c.cn, odd_names[_i].text);
    ck_assert(utf8_text_valid(c.subject) && utf8_text_valid(c.cn));
    /* The same certificate always gives the same strings. */
    ck_assert_int_eq(pki_cert_from_der(c.der, c.der_len, &again), CG_OK);
    ck_assert_str_eq(again.subject, c.subject);
    ck_assert(c.is_self_signed);
    pki_cert_free(&again);
    pki_cert_free(&c);
}
END_TEST

START_TEST(sans_are_utf8)
{
    struct pki_cert c;

    make_odd_cert("\x0c\x01x", 3, "a\\b\xe9\x01@example.com", NULL, &c);
    ck_assert_uint_eq(c.n_san_email, 1);
    /* GnuTLS hands SANs over raw: a backslash is escaped too. */
    ck_assert_str_eq(c.san_email[0], "a\\\\b\\E9\\01@example.com");
    pki_cert_free(&c);
    make_odd_cert("\x0c\x01x", 3, "plain@example.com", NULL, &c);
    ck_assert_str_eq(c.san_email[0], "plain@example.com");
    pki_cert_free(&c);
}
END_TEST

START_TEST(odd_dn_constraint_is_a_defect)
{
    struct pki_cert c;

    /* An excluded subtree whose UTF8String is not UTF-8 cannot be compared
     * as text with the subjects below it: the CA is malformed. */
    make_odd_cert("\x0c\x02"
                  "CA",
                  4, NULL, "O=Evil\xe9", &c);
    ck_assert_ptr_nonnull(c.defect);
    ck_assert_ptr_nonnull(strstr(c.defect, "directoryName"));
    pki_cert_free(&c);
    make_odd_cert("\x0c\x02"
                  "CA",
                  4, NULL, "O=Evil", &c);
    ck_assert_ptr_null(c.defect);
    pki_cert_free(&c);
}
END_TEST

START_TEST(crl_issuer_is_utf8)
{
    gnutls_x509_crt_t crt;
    gnutls_x509_privkey_t key;
    gnutls_x509_crl_t crl;
    gnutls_datum_t der = {NULL, 0};
    struct pki_crl out;
    struct cg_err err = {""};
    unsigned char num[1] = {1};
    time_t now = time(NULL);

    ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
    ck_assert_int_eq(gnutls_x509_privkey_init(&key), 0);
    ck_assert_int_eq(gnutls_x509_privkey_generate(
                         key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    gnutls_x509_crt_set_key(crt, key);
    gnutls_x509_crt_set_version(crt, 3);
    gnutls_x509_crt_set_serial(crt, num, 1);
    gnutls_x509_crt_set_activation_time(crt, now - 60);
    gnutls_x509_crt_set_expiration_time(crt, now + 86400);
    gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1,
                                  "\x0c\x03"
                                  "A\xe9Z",
                                  5);
    gnutls_x509_crt_set_basic_constraints(crt, 1, -1);
    ck_assert_int_eq(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
    ck_assert_int_eq(gnutls_x509_crl_init(&crl), 0);
    gnutls_x509_crl_set_version(crl, 2);
    gnutls_x509_crl_set_this_update(crl, now);
    gnutls_x509_crl_set_next_update(crl, now + 86400);
    gnutls_x509_crl_set_number(crl, num, 1);
    ck_assert_int_eq(gnutls_x509_crl_sign2(crl, crt, key, GNUTLS_DIG_SHA256, 0), 0);
    ck_assert_int_eq(gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &der), 0);
    ck_assert_int_eq(pki_parse_crl((const char *)der.data, der.size, &out, &err), CG_OK);
    ck_assert_str_eq(out.issuer, "CN=A\\E9Z");
    pki_crl_free(&out);
    gnutls_free(der.data);
    gnutls_x509_crl_deinit(crl);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
}
END_TEST

static const struct {
    const char *in;  /* what an admin typed after dn= */
    const char *out; /* canonical form, NULL when refused */
    const char *why; /* part of the reason when refused */
} dn_cases[] = {
    {"CN=integrator1,O=Acme", "CN=integrator1,O=Acme", NULL},
    {"CN=integrator1, O=Acme", "CN=integrator1,O=Acme", NULL},
    {"cn=integrator1,o=Acme", "CN=integrator1,O=Acme", NULL},
    {" CN = integrator1 , O = Acme ", "CN=integrator1,O=Acme", NULL},
    {"2.5.4.3=integrator1,2.5.4.10=Acme", "CN=integrator1,O=Acme", NULL},
    {"CN=Doe\\, John,O=Acme", "CN=Doe\\, John,O=Acme", NULL},
    {"CN=Doe\\2C John,O=Acme", "CN=Doe\\, John,O=Acme", NULL},
    {"CN=a\\2Bb", "CN=a\\+b", NULL},
    {"CN=Soci\\E9t\\E9,O=Acme", "CN=Soci\\E9t\\E9,O=Acme", NULL},
    {"CN=Soci\\c3\\a9t\\C3\\A9", "CN=Soci\xc3\xa9t\xc3\xa9", NULL},
    {"CN=Soci\xc3\xa9t\xc3\xa9", "CN=Soci\xc3\xa9t\xc3\xa9", NULL},
    {"uid=x,dc=example,dc=com", "UID=x,DC=example,DC=com", NULL},
    {"garbage", NULL, "not an RFC 4514 DN"},
    {"CN=", NULL, "not an RFC 4514 DN"},
    {"FOO=bar", NULL, "not an RFC 4514 DN"},
    {"CN=x,,O=y", NULL, "not an RFC 4514 DN"},
    {"CN=a+UID=b,O=x", NULL, "multi-valued RDN"},
    {"CN=a\\00b", NULL, "NUL"},
    {"CN=a\\", NULL, "lone backslash"},
    {"CN=a\\0Ab", NULL, "control character"},
};

START_TEST(canonical_dn)
{
    struct cg_err err = {""};
    char *out = NULL;
    int rc = pki_canonical_dn(dn_cases[_i].in, &out, &err);

    if (dn_cases[_i].out) {
        ck_assert_msg(rc == CG_OK, "%s: %s", dn_cases[_i].in, err.msg);
        ck_assert_str_eq(out, dn_cases[_i].out);
    } else {
        ck_assert_int_eq(rc, CG_EPARSE);
        ck_assert_ptr_null(out);
        ck_assert_msg(strstr(err.msg, dn_cases[_i].why), "%s: %s", dn_cases[_i].in, err.msg);
    }
    free(out);
}
END_TEST

/* The canonical form of a certificate's own subject is that subject, also
 * for the escaped ones, so a dn= rule copied from certgate's output matches. */
START_TEST(canonical_dn_of_subjects)
{
    static const char *const files[] = {"client.pem", "int.pem", "root.pem"};
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    struct cg_err err = {""};
    struct pki_cert c;
    char *out = NULL;

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        ck_assert_int_eq(parse(files[i], &l, &e), CG_OK);
        ck_assert_int_eq(pki_canonical_dn(l.items[0].subject, &out, &err), CG_OK);
        ck_assert_str_eq(out, l.items[0].subject);
        free(out);
        pki_cert_list_free(&l);
    }
    for (size_t i = 0; i < sizeof(odd_names) / sizeof(odd_names[0]); i++) {
        if (i == 1)
            continue; /* control characters: refused, see dn_cases */
        make_odd_cert(odd_names[i].cn, odd_names[i].cn_len, NULL, NULL, &c);
        ck_assert_msg(pki_canonical_dn(c.subject, &out, &err) == CG_OK, "%s: %s", c.subject,
                      err.msg);
        ck_assert_str_eq(out, c.subject);
        free(out);
        pki_cert_free(&c);
    }
}
END_TEST

START_TEST(copy_and_pem)
{
    struct pki_cert_list l = {NULL, 0}, back = {NULL, 0};
    struct pki_parse_error e;
    struct pki_cert copy;
    char *pem;

    ck_assert_int_eq(parse("client.pem", &l, &e), CG_OK);
    ck_assert_int_eq(pki_cert_copy(&l.items[0], &copy), CG_OK);
    ck_assert_str_eq(copy.fingerprint, l.items[0].fingerprint);
    ck_assert_str_eq(copy.san_email[0], "integrator1@example.com");
    pem = pki_cert_pem(&copy);
    ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    ck_assert_int_eq(pki_parse_bundle(pem, strlen(pem), &back, &e), CG_OK);
    ck_assert_str_eq(back.items[0].fingerprint, l.items[0].fingerprint);
    free(pem);
    pki_cert_free(&copy);
    pki_cert_list_free(&back);
    pki_cert_list_free(&l);
}
END_TEST

/* The facts two parses of one certificate must agree on. */
static void same_facts(const struct pki_cert *a, const struct pki_cert *b)
{
    ck_assert_uint_eq(a->der_len, b->der_len);
    ck_assert_int_eq(memcmp(a->der, b->der, a->der_len), 0);
    ck_assert_str_eq(a->fingerprint, b->fingerprint);
    ck_assert_str_eq(a->spki_sha256, b->spki_sha256);
    ck_assert_str_eq(a->subject, b->subject);
    ck_assert_str_eq(a->issuer, b->issuer);
    ck_assert_str_eq(a->serial, b->serial);
    ck_assert_str_eq(a->ski, b->ski);
    ck_assert_str_eq(a->aki, b->aki);
    ck_assert_int_eq(a->not_before, b->not_before);
    ck_assert_int_eq(a->not_after, b->not_after);
    ck_assert_int_eq(a->is_ca, b->is_ca);
    ck_assert_int_eq(a->eku_client_auth, b->eku_client_auth);
    ck_assert_uint_eq(a->n_san_email, b->n_san_email);
    for (size_t i = 0; i < a->n_san_email; i++)
        ck_assert_str_eq(a->san_email[i], b->san_email[i]);
    ck_assert_str_eq(a->key_type, b->key_type);
}

struct cache_run {
    struct pki_parse_cache *cache;
    const struct pki_cert_list *certs;
    int bad; /* lookups that gave other facts */
};

static void *cache_thread(void *arg)
{
    struct cache_run *run = arg;

    for (int i = 0; i < 3000; i++) {
        const struct pki_cert *want = &run->certs->items[(size_t)i % run->certs->n];
        struct pki_cert got;

        if (pki_cert_from_der_cached(run->cache, want->der, want->der_len, &got) != CG_OK) {
            run->bad++;
            continue;
        }
        if (strcmp(got.fingerprint, want->fingerprint) != 0 || strcmp(got.subject, want->subject))
            run->bad++;
        pki_cert_free(&got);
    }
    return NULL;
}

START_TEST(parse_cache)
{
    struct pki_cert_list l = {NULL, 0};
    struct pki_parse_error e;
    struct pki_parse_cache *cache = NULL;
    struct pki_cert first, again, other;
    struct cache_run runs[4];
    pthread_t threads[4];
    unsigned char *bent;
    const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};

    ck_assert_int_eq(parse("client-fullchain.pem", &l, &e), CG_OK);
    ck_assert_uint_ge(l.n, 2);
    ck_assert_int_eq(pki_parse_cache_new(&cache), CG_OK);
    /* A miss parses, a hit hands out a copy with the same facts. */
    for (size_t i = 0; i < l.n; i++) {
        ck_assert_int_eq(
            pki_cert_from_der_cached(cache, l.items[i].der, l.items[i].der_len, &first), CG_OK);
        ck_assert_int_eq(
            pki_cert_from_der_cached(cache, l.items[i].der, l.items[i].der_len, &again), CG_OK);
        same_facts(&first, &l.items[i]);
        same_facts(&again, &l.items[i]);
        ck_assert_ptr_ne(again.subject, first.subject); /* a copy, not shared */
        pki_cert_free(&first);
        pki_cert_free(&again);
    }
    /* One changed byte (in the signature: it still parses) is another
     * certificate, never the cached one's facts. */
    bent = malloc(l.items[0].der_len);
    memcpy(bent, l.items[0].der, l.items[0].der_len);
    bent[l.items[0].der_len - 1] ^= 0x01;
    ck_assert_int_eq(pki_cert_from_der_cached(cache, bent, l.items[0].der_len, &other), CG_OK);
    ck_assert_str_ne(other.fingerprint, l.items[0].fingerprint);
    ck_assert_int_eq(memcmp(other.der, bent, other.der_len), 0);
    pki_cert_free(&other);
    free(bent);
    /* What does not parse is refused every time (and not kept). */
    ck_assert_int_eq(pki_cert_from_der_cached(cache, junk, sizeof(junk), &other), CG_EPARSE);
    ck_assert_int_eq(pki_cert_from_der_cached(cache, junk, sizeof(junk), &other), CG_EPARSE);
    ck_assert_int_eq(pki_cert_from_der_cached(NULL, l.items[0].der, l.items[0].der_len, &other),
                     CG_OK);
    same_facts(&other, &l.items[0]);
    pki_cert_free(&other);
    /* Threads sharing it always get the facts of what they asked for. */
    for (int t = 0; t < 4; t++) {
        runs[t] = (struct cache_run){cache, &l, 0};
        ck_assert_int_eq(pthread_create(&threads[t], NULL, cache_thread, &runs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        ck_assert_int_eq(runs[t].bad, 0);
    }
    pki_parse_cache_free(cache);
    pki_cert_list_free(&l);
}
END_TEST

START_TEST(crls)
{
    struct pki_cert_list intl = {NULL, 0}, rev = {NULL, 0}, foreign = {NULL, 0};
    struct pki_parse_error e;
    struct pki_crl crl;
    struct cg_err err = {""};
    size_t len;
    char *data;

    ck_assert_int_eq(parse("int.pem", &intl, &e), CG_OK);
    ck_assert_int_eq(parse("revoked.pem", &rev, &e), CG_OK);
    ck_assert_int_eq(parse("foreign-root.pem", &foreign, &e), CG_OK);
    data = slurp("int.crl", &len);
    ck_assert_int_eq(pki_parse_crl(data, len, &crl, &err), CG_OK);
    free(data);
    ck_assert_str_eq(crl.issuer, "CN=certgate Test Issuing CA,O=certgate tests");
    ck_assert_uint_eq(crl.n_revoked, 1);
    ck_assert_str_eq(crl.revoked_serials[0], rev.items[0].serial);
    ck_assert_int_gt(crl.next_update, crl.this_update);
    ck_assert(pki_crl_signed_by(&crl, &intl.items[0]));
    ck_assert(!pki_crl_signed_by(&crl, &foreign.items[0]));
    pki_crl_free(&crl);

    data = slurp("client.pem", &len);
    ck_assert_int_ne(pki_parse_crl(data, len, &crl, &err), CG_OK);
    free(data);
    data = slurp("with-key.pem", &len);
    ck_assert_int_eq(pki_parse_crl(data, len, &crl, &err), CG_EDENIED);
    free(data);
    pki_cert_list_free(&intl);
    pki_cert_list_free(&rev);
    pki_cert_list_free(&foreign);
}
END_TEST

/* The verifier over the test PKI: table = root + int (+ CRL). */
static const struct {
    const char *leaf;   /* leaf file */
    const char *sent;   /* what the client sends after it, or NULL */
    bool root_active;   /* root enabled in the table */
    bool int_in_table;  /* intermediate stored in the table */
    bool with_crl;      /* int.crl loaded */
    const char *reason; /* expected pki_reason_code */
} verify_cases[] = {
    {"client.pem", NULL, true, true, false, "ok"},
    {"client.pem", "int.pem", true, false, false, "ok"},
    {"client.pem", NULL, true, false, false, "untrusted_issuer"},
    {"client.pem", NULL, false, true, false, "ca_disabled"},
    {"foreign-client.pem", NULL, true, true, false, "untrusted_issuer"},
    {"foreign-client.pem", "foreign-chain.pem", true, true, false, "untrusted_issuer"},
    {"foreign-client.pem", "foreign-int.pem", true, true, false, "missing_intermediate"},
    {"expired.pem", NULL, true, true, false, "expired"},
    {"notyet.pem", NULL, true, true, false, "not_yet_valid"},
    {"selfsigned.pem", NULL, true, true, false, "self_signed"},
    {"wrong-eku.pem", NULL, true, true, false, "bad_key_usage"},
    {"wrong-ku.pem", NULL, true, true, false, "bad_key_usage"},
    {"revoked.pem", NULL, true, true, false, "ok"},
    {"revoked.pem", NULL, true, true, true, "revoked"},
    {"client.pem", NULL, true, true, true, "ok"},
};

START_TEST(verify_table)
{
    struct pki_cert_list root = {NULL, 0}, in = {NULL, 0}, leaf = {NULL, 0}, sent = {NULL, 0};
    struct pki_trust_ca cas[2];
    struct pki_trust_crl crl;
    struct pki_trust t = {cas, 0, &crl, 0, NULL, 0};
    struct pki_parse_error e;
    struct pki_verdict v;
    struct cg_err err = {""};

    ck_assert_int_eq(parse("root.pem", &root, &e), CG_OK);
    ck_assert_int_eq(parse("int.pem", &in, &e), CG_OK);
    ck_assert_int_eq(parse(verify_cases[_i].leaf, &leaf, &e), CG_OK);
    if (verify_cases[_i].sent)
        ck_assert_int_eq(parse(verify_cases[_i].sent, &sent, &e), CG_OK);
    cas[t.n_cas].id = 1;
    cas[t.n_cas].is_active = verify_cases[_i].root_active;
    cas[t.n_cas++].cert = root.items[0];
    if (verify_cases[_i].int_in_table) {
        cas[t.n_cas].id = 2;
        cas[t.n_cas].is_active = true;
        cas[t.n_cas++].cert = in.items[0];
    }
    if (verify_cases[_i].with_crl) {
        size_t len;
        char *data = slurp("int.crl", &len);

        ck_assert_int_eq(pki_parse_crl(data, len, &crl.crl, &err), CG_OK);
        free(data);
        memcpy(crl.signer_spki, in.items[0].spki_sha256, sizeof(crl.signer_spki));
        t.n_crls = 1;
    }
    ck_assert_int_eq(pki_verify(&t, &leaf.items[0], sent.items, sent.n, cg_now(), &v), CG_OK);
    ck_assert_msg(strcmp(pki_reason_code(v.reason), verify_cases[_i].reason) == 0,
                  "%s: got %s (%s), expected %s", verify_cases[_i].leaf, pki_reason_code(v.reason),
                  v.detail, verify_cases[_i].reason);
    ck_assert(v.detail[0]);
    if (v.reason == PKI_OK) {
        ck_assert_int_eq(v.root_ca_id, 1);
        ck_assert_uint_eq(v.chain_len, 3);
    }
    if (t.n_crls)
        pki_crl_free(&crl.crl);
    pki_cert_list_free(&root);
    pki_cert_list_free(&in);
    pki_cert_list_free(&leaf);
    pki_cert_list_free(&sent);
}
END_TEST

START_TEST(verify_at_time_and_stale_crl)
{
    struct pki_cert_list root = {NULL, 0}, in = {NULL, 0}, leaf = {NULL, 0};
    struct pki_trust_ca cas[2];
    struct pki_trust_crl crl;
    struct pki_trust t = {cas, 2, &crl, 1, NULL, 0};
    struct pki_parse_error e;
    struct pki_verdict v;
    struct cg_err err = {""};
    size_t len;
    char *data;

    ck_assert_int_eq(parse("root.pem", &root, &e), CG_OK);
    ck_assert_int_eq(parse("int.pem", &in, &e), CG_OK);
    ck_assert_int_eq(parse("revoked.pem", &leaf, &e), CG_OK);
    cas[0] = (struct pki_trust_ca){1, true, root.items[0]};
    cas[1] = (struct pki_trust_ca){2, true, in.items[0]};
    data = slurp("int-stale.crl", &len);
    ck_assert_int_eq(pki_parse_crl(data, len, &crl.crl, &err), CG_OK);
    free(data);
    memcpy(crl.signer_spki, in.items[0].spki_sha256, sizeof(crl.signer_spki));
    /* A CRL past its next update still applies, and is flagged. */
    ck_assert_int_eq(pki_verify(&t, &leaf.items[0], NULL, 0, cg_now(), &v), CG_OK);
    ck_assert_str_eq(pki_reason_code(v.reason), "revoked");
    ck_assert(v.crl_stale);
    /* Validity is judged at the time given. */
    ck_assert_int_eq(pki_verify(&t, &leaf.items[0], NULL, 0, leaf.items[0].not_after + 10, &v),
                     CG_OK);
    ck_assert_str_eq(pki_reason_code(v.reason), "expired");
    pki_crl_free(&crl.crl);
    pki_cert_list_free(&root);
    pki_cert_list_free(&in);
    pki_cert_list_free(&leaf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pki");
    TCase *tc;
    SRunner *sr;
    int failed;

    tc = tcase_create("parse");
    tcase_add_unchecked_fixture(tc, make_pki, remove_pki);
    tcase_add_loop_test(tc, bundles, 0, sizeof(bundle_cases) / sizeof(bundle_cases[0]));
    tcase_add_test(tc, der_input);
    tcase_add_loop_test(tc, der_inputs, 0, sizeof(der_cases) / sizeof(der_cases[0]));
    tcase_add_test(tc, facts);
    tcase_add_test(tc, copy_and_pem);
    tcase_add_test(tc, parse_cache);
    tcase_add_loop_test(tc, names_are_utf8, 0, sizeof(odd_names) / sizeof(odd_names[0]));
    tcase_add_test(tc, sans_are_utf8);
    tcase_add_test(tc, odd_dn_constraint_is_a_defect);
    tcase_add_test(tc, crl_issuer_is_utf8);
    tcase_add_loop_test(tc, canonical_dn, 0, sizeof(dn_cases) / sizeof(dn_cases[0]));
    tcase_add_test(tc, canonical_dn_of_subjects);
    tcase_add_test(tc, crls);
    tcase_add_loop_test(tc, verify_table, 0, sizeof(verify_cases) / sizeof(verify_cases[0]));
    tcase_add_test(tc, verify_at_time_and_stale_crl);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
