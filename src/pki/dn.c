#include "config.h"
#include "pki/dn.h"
#include "base/utf8.h"

#include <stdbool.h>
#include <string.h>

#include "pki/der.h"
#include "base/util.h"

/* An RDN with more attributes than this is not a name anyone issues; it
 * bounds the quadratic set comparison below. */
#define MAX_AVAS 16

/* One attribute of an RDN: its type (OID contents) and its value. */
struct ava {
    struct der_tlv type;  /* the OID */
    struct der_tlv value; /* the value, any tag */
};

/* The folded text of a directory string, one code point at a time. */
struct canon {
    const uint8_t *p; /* next octet */
    size_t len;       /* octets left */
    unsigned tag;     /* the string type */
    bool started;     /* a non-space code point was returned */
    bool space;       /* a run of white space is pending */
    bool held;        /* @p next holds a code point read ahead */
    uint32_t next;    /* that code point */
};

static bool is_string_tag(unsigned tag)
{
    switch (tag) {
    case DER_UTF8_STRING:
    case DER_PRINTABLE_STRING:
    case DER_TELETEX_STRING:
    case DER_IA5_STRING:
    case DER_VISIBLE_STRING:
    case DER_UNIVERSAL_STRING:
    case DER_BMP_STRING: return true;
    default: return false;
    }
}

/* The next code point of the raw string: 1, 0 at the end, -1 when the
 * octets are not valid for the type. */
static int raw_next(struct canon *c, uint32_t *cp)
{
    size_t n;

    if (c->len == 0)
        return 0;
    switch (c->tag) {
    case DER_UTF8_STRING:
        n = utf8_char((const char *)c->p, c->len, cp);
        if (n == 0)
            return -1;
        break;
    case DER_BMP_STRING:
        if (c->len < 2)
            return -1;
        *cp = (uint32_t)c->p[0] << 8 | c->p[1];
        if (*cp >= 0xd800 && *cp <= 0xdfff)
            return -1;
        n = 2;
        break;
    case DER_UNIVERSAL_STRING:
        if (c->len < 4)
            return -1;
        *cp = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
        if (*cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
            return -1;
        n = 4;
        break;
    case DER_TELETEX_STRING:
        /* Read as Latin-1, as OpenSSL does. */
        *cp = c->p[0];
        n = 1;
        break;
    default:
        /* PrintableString, IA5String, VisibleString: ASCII only. */
        if (c->p[0] >= 0x80)
            return -1;
        *cp = c->p[0];
        n = 1;
        break;
    }
    c->p += n;
    c->len -= n;
    return 1;
}

static bool is_space(uint32_t cp)
{
    return cp == ' ' || (cp >= '\t' && cp <= '\r');
}

/* The next code point of the folded text: 1, 0 at the end, -1 invalid. */
static int canon_next(struct canon *c, uint32_t *cp)
{
    int rc;

    if (c->held) {
        c->held = false;
        *cp = c->next;
        return 1;
    }
    for (;;) {
        rc = raw_next(c, cp);
        if (rc <= 0)
            return rc; /* trailing white space is dropped */
        if (is_space(*cp)) {
            c->space = c->started;
            continue;
        }
        if (*cp >= 'A' && *cp <= 'Z')
            *cp += 'a' - 'A';
        c->started = true;
        if (c->space) {
            /* One space for the run, then this code point. */
            c->space = false;
            c->held = true;
            c->next = *cp;
            *cp = ' ';
        }
        return 1;
    }
}

/* 1: the two strings fold to the same text, 0: they do not, -1: one of
 * them is not valid for its type. */
static int strings_equal(const struct der_tlv *a, const struct der_tlv *b)
{
    struct canon ca = {a->val, a->len, a->tag, false, false, false, 0};
    struct canon cb = {b->val, b->len, b->tag, false, false, false, 0};

    for (;;) {
        uint32_t x = 0, y = 0;
        int ra = canon_next(&ca, &x), rb = canon_next(&cb, &y);

        if (ra < 0 || rb < 0)
            return -1;
        if (ra != rb || x != y)
            return 0;
        if (ra == 0)
            return 1;
    }
}

static bool values_equal(const struct der_tlv *a, const struct der_tlv *b)
{
    if (is_string_tag(a->tag) && is_string_tag(b->tag)) {
        int rc = strings_equal(a, b);

        if (rc >= 0)
            return rc == 1;
        /* Not text after all: only the same encoding is the same value. */
    }
    return a->tag == b->tag && a->len == b->len && memcmp(a->val, b->val, a->len) == 0;
}

/* The attributes of one RDN (a SET OF AttributeTypeAndValue); -1 when
 * malformed or when it has more than MAX_AVAS. */
static int read_rdn(const struct der_tlv *set, struct ava *out, size_t *out_n)
{
    struct der cur = der_enter(set);
    struct der_tlv seq;
    size_t n = 0;
    int rc;

    if (set->tag != DER_SET)
        return -1;
    while ((rc = der_next(&cur, &seq)) == 0) {
        struct der in = der_enter(&seq);

        if (seq.tag != DER_SEQUENCE || n == MAX_AVAS)
            return -1;
        if (der_expect(&in, DER_OID, &out[n].type) || der_next(&in, &out[n].value) != 0 ||
            !der_at_end(&in) || out[n].type.len == 0)
            return -1;
        n++;
    }
    if (rc < 0 || n == 0)
        return -1;
    *out_n = n;
    return 0;
}

static bool ava_equal(const struct ava *a, const struct ava *b)
{
    return a->type.len == b->type.len && memcmp(a->type.val, b->type.val, a->type.len) == 0 &&
           values_equal(&a->value, &b->value);
}

/* Whether every attribute of @p x has an equal one in @p y. */
static bool all_found(const struct ava *x, size_t nx, const struct ava *y, size_t ny)
{
    for (size_t i = 0; i < nx; i++) {
        bool found = false;

        for (size_t j = 0; j < ny && !found; j++)
            found = ava_equal(&x[i], &y[j]);
        if (!found)
            return false;
    }
    return true;
}

/* 1: the two RDNs hold the same attributes, 0: not, -1: malformed. */
static int rdn_equal(const struct der_tlv *a, const struct der_tlv *b)
{
    struct ava x[MAX_AVAS], y[MAX_AVAS];
    size_t nx = 0, ny = 0;

    if (read_rdn(a, x, &nx) || read_rdn(b, y, &ny))
        return -1;
    if (nx != ny)
        return 0;
    /* A SET: every attribute of each has an equal one in the other. */
    return all_found(x, nx, y, ny) && all_found(y, ny, x, nx);
}

/* A cursor over the RDNs of a DER Name; -1 when it is not a SEQUENCE
 * spanning the whole buffer. */
static int open_name(const uint8_t *name, size_t len, struct der *out)
{
    struct der all = der_init(name, len);
    struct der_tlv seq;

    if (der_expect(&all, DER_SEQUENCE, &seq) || !der_at_end(&all))
        return -1;
    *out = der_enter(&seq);
    return 0;
}

int dn_within(const uint8_t *name, size_t name_len, const uint8_t *base, size_t base_len)
{
    struct der n, b;
    struct der_tlv rn, rb;
    int rc;

    if (open_name(name, name_len, &n) || open_name(base, base_len, &b))
        return -1;
    while ((rc = der_next(&b, &rb)) == 0) {
        int eq;

        rc = der_next(&n, &rn);
        if (rc < 0)
            return -1;
        if (rc == 1)
            return 0; /* the name is shorter than the subtree's base */
        eq = rdn_equal(&rn, &rb);
        if (eq != 1)
            return eq;
    }
    if (rc < 0)
        return -1;
    /* The rest of the name must still be well formed. */
    while ((rc = der_next(&n, &rn)) == 0) {
        if (rn.tag != DER_SET)
            return -1;
    }
    return rc < 0 ? -1 : 1;
}

/* Whether a value of a directory string type is valid for its type. */
static bool value_valid(const struct der_tlv *v)
{
    struct canon c = {v->val, v->len, v->tag, false, false, false, 0};
    uint32_t cp;
    int rc;

    if (!is_string_tag(v->tag))
        return true;
    while ((rc = canon_next(&c, &cp)) == 1)
        ;
    return rc == 0;
}

int dn_rdn_count(const uint8_t *name, size_t name_len)
{
    struct der n;
    struct der_tlv rdn;
    struct ava avas[MAX_AVAS];
    int count = 0, rc;

    if (open_name(name, name_len, &n))
        return -1;
    while ((rc = der_next(&n, &rdn)) == 0) {
        size_t n_avas = 0;

        if (read_rdn(&rdn, avas, &n_avas))
            return -1;
        for (size_t i = 0; i < n_avas; i++) {
            if (!value_valid(&avas[i].value))
                return -1;
        }
        count++;
    }
    return rc < 0 ? -1 : count;
}
