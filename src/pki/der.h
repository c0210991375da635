/*
 * der: a small bounds-checked reader of DER (X.690) elements, for the few
 * structures certgate must compare by their encoding rather than by text:
 * X.501 names (RDN sequences), the subtrees of a nameConstraints extension
 * and the entries of a CRL. Relies on nothing but libc.
 * Does not decode into a tree and does not allocate: a cursor walks one
 * level of elements and hands out views into the caller's buffer. Accepts
 * definite lengths in minimal form and single-octet tags only, which is all
 * X.509 uses; anything else is malformed.
 */
#ifndef CG_DER_H
#define CG_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Universal tags (the first octet, class and constructed bit included). */
#define DER_BOOLEAN 0x01
#define DER_INTEGER 0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STRING 0x04
#define DER_OID 0x06
#define DER_ENUMERATED 0x0a
#define DER_UTF8_STRING 0x0c
#define DER_PRINTABLE_STRING 0x13
#define DER_TELETEX_STRING 0x14
#define DER_IA5_STRING 0x16
#define DER_UTC_TIME 0x17
#define DER_GENERALIZED_TIME 0x18
#define DER_VISIBLE_STRING 0x1a
#define DER_UNIVERSAL_STRING 0x1c
#define DER_BMP_STRING 0x1e
#define DER_SEQUENCE 0x30
#define DER_SET 0x31
/* Context-specific tags: [n] primitive and [n] constructed. */
#define DER_CTX(n) (0x80 | (n))
#define DER_CTX_CONS(n) (0xa0 | (n))

/** A cursor over the contents of one constructed element (or a whole buffer). */
struct der {
    const uint8_t *p; /* next octet to read */
    size_t len;       /* octets left */
};

/** One element read by der_next: its tag, contents and whole encoding. */
struct der_tlv {
    unsigned tag;       /* the identifier octet */
    const uint8_t *val; /* contents */
    size_t len;         /* contents length */
    const uint8_t *raw; /* the whole element, header included */
    size_t raw_len;     /* its length */
};

/** A cursor over @p len octets at @p p. */
struct der der_init(const void *p, size_t len);

/**
 * Read the next element at the cursor and move past it.
 * @return 0 with @p out filled, 1 at the end of the cursor, -1 when malformed
 */
int der_next(struct der *cur, struct der_tlv *out);

/**
 * Read the next element and require tag @p tag.
 * @return 0 when it is there, -1 when it is absent, malformed or another tag
 */
int der_expect(struct der *cur, unsigned tag, struct der_tlv *out);

/** A cursor over the contents of @p t. */
struct der der_enter(const struct der_tlv *t);

/** Whether the next element at the cursor has tag @p tag (false at the end). */
bool der_peek(const struct der *cur, unsigned tag);

/** Whether the cursor has no octets left. */
bool der_at_end(const struct der *cur);

#endif
