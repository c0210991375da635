#include "config.h"
#include "base/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest entry read: an IPv6 address with a prefix. */
#define ENTRY_MAX (INET6_ADDRSTRLEN + 4)

static int parse_one(const char *s, size_t len, struct cidr *out, struct cg_err *err)
{
    char entry[ENTRY_MAX + 1], host[ENTRY_MAX + 1];
    const char *slash, *b;
    unsigned long bits;
    unsigned max;

    if (len == 0 || len > ENTRY_MAX) {
        cg_err_set(err, "'%.*s' is not an address block (ADDRESS/BITS, as 10.0.0.0/8 or ::1/128)",
                   (int)(len > 64 ? 64 : len), s);
        return CG_EINVAL;
    }
    memcpy(entry, s, len);
    entry[len] = '\0';
    slash = strchr(entry, '/');
    snprintf(host, sizeof(host), "%.*s", slash ? (int)(slash - entry) : (int)len, entry);
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        cg_err_set(err, "'%s': '%s' is not an IPv4 or IPv6 address (names are not looked up)",
                   entry, host);
        return CG_EINVAL;
    }
    out->bits = max;
    if (slash) {
        b = slash + 1;
        bits = strspn(b, "0123456789") == strlen(b) && strlen(b) <= 3 ? strtoul(b, NULL, 10) : ~0UL;
        if (!*b || bits > max) {
            cg_err_set(err, "'%s': the prefix length must be a number from 0 to %u", entry, max);
            return CG_EINVAL;
        }
        out->bits = (unsigned)bits;
    }
    /* Host bits set: which block was meant is a guess. */
    for (unsigned i = out->bits; i < max; i++) {
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            cg_err_set(err,
                       "'%s' has host bits set: write the network address (the first address "
                       "of the block)",
                       entry);
            return CG_EINVAL;
        }
    }
    return CG_OK;
}

int cidr_list_parse(const char *text, struct cidr_list *out, struct cg_err *err)
{
    const char *p = text;
    size_t cap = 0;

    out->items = NULL;
    out->count = 0;
    for (;;) {
        const char *start, *stop;
        struct cidr c;

        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if (stop == start) {
            cg_err_set(err, "'%s': an empty entry (a list of ADDRESS/BITS separated by commas)",
                       text);
            goto fail;
        }
        if (parse_one(start, (size_t)(stop - start), &c, err))
            goto fail;
        if (out->count == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            struct cidr *n = realloc(out->items, ncap * sizeof(*n));

            if (!n) {
                cg_err_set(err, "out of memory");
                cidr_list_free(out);
                return CG_ENOMEM;
            }
            out->items = n;
            cap = ncap;
        }
        out->items[out->count++] = c;
        if (!*p)
            return CG_OK;
        p++;
    }
fail:
    cidr_list_free(out);
    return CG_EINVAL;
}

static bool in_block(const struct cidr *c, const unsigned char *a)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, a, full) != 0)
        return false;
    return rest == 0 || ((c->addr[full] ^ a[full]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const unsigned char *a4 = NULL, *a6 = NULL;

    if (sa->sa_family == AF_INET) {
        a4 = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a6 = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        if (memcmp(a6, mapped, sizeof(mapped)) == 0)
            a4 = a6 + 12;
    } else {
        return false;
    }
    for (size_t i = 0; i < l->count; i++) {
        const struct cidr *c = &l->items[i];

        if (c->family == AF_INET && a4 && in_block(c, a4))
            return true;
        if (c->family == AF_INET6 && a6 && in_block(c, a6))
            return true;
    }
    return false;
}

void cidr_list_free(struct cidr_list *l)
{
    free(l->items);
    l->items = NULL;
    l->count = 0;
}
