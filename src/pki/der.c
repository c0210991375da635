#include "config.h"
#include "pki/der.h"

struct der der_init(const void *p, size_t len)
{
    struct der d = {p, p ? len : 0};

    return d;
}

int der_next(struct der *cur, struct der_tlv *out)
{
    const uint8_t *p = cur->p;
    size_t left = cur->len, len, hdr = 2;

    if (left == 0)
        return 1;
    if (left < 2)
        return -1;
    /* High tag numbers (0x1f) do not occur in X.509. */
    if ((p[0] & 0x1f) == 0x1f)
        return -1;
    len = p[1];
    if (len & 0x80) {
        size_t n = len & 0x7f;

        /* 0x80 is BER's indefinite length; more than 4 octets of length is
         * more than any certificate or CRL certgate reads (64 MiB at most). */
        if (n == 0 || n > 4 || left < 2 + n)
            return -1;
        len = 0;
        for (size_t i = 0; i < n; i++)
            len = (len << 8) | p[2 + i];
        /* DER: the shortest form, so one encoding per length. */
        if (len < 0x80 || (n > 1 && p[2] == 0))
            return -1;
        hdr += n;
    }
    if (len > left - hdr)
        return -1;
    out->tag = p[0];
    out->raw = p;
    out->raw_len = hdr + len;
    out->val = p + hdr;
    out->len = len;
    cur->p += hdr + len;
    cur->len -= hdr + len;
    return 0;
}

int der_expect(struct der *cur, unsigned tag, struct der_tlv *out)
{
    struct der save = *cur;

    if (der_next(cur, out) != 0 || out->tag != tag) {
        *cur = save;
        return -1;
    }
    return 0;
}

struct der der_enter(const struct der_tlv *t)
{
    return der_init(t->val, t->len);
}

bool der_peek(const struct der *cur, unsigned tag)
{
    return cur->len > 0 && cur->p[0] == tag;
}

bool der_at_end(const struct der *cur)
{
    return cur->len == 0;
}
