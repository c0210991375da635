#include "config.h"
#include "http/target.h"
#include "base/utf8.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes as libmicrohttpd does (others stay as they are);
 * returns the decoded length. @p out has room for @p len bytes. */
static size_t percent_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (in[i] == '%' && i + 2 < len && (hi = hex_digit(in[i + 1])) >= 0 &&
            (lo = hex_digit(in[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* The path and the query as libmicrohttpd hands them on must be text:
 * NUL would cut them short (/healthz%00junk is not /healthz) and bytes that
 * are not UTF-8 cannot go into JSON. */
const char *target_check(const char *target)
{
    const char *q;
    size_t len, plen, n;
    char *buf;
    const char *why = NULL;

    if (!target)
        return NULL;
    len = strlen(target);
    q = strchr(target, '?');
    plen = q ? (size_t)(q - target) : len;
    buf = malloc(len + 1);
    if (!buf)
        return "out of memory";
    n = percent_decode(target, plen, buf);
    if (memchr(buf, '\0', n))
        why = "the request path holds a NUL byte (%00)";
    else if (utf8_prefix(buf, n) != n)
        why = "the request path is not valid UTF-8 once percent-decoded";
    if (!why && q) {
        n = percent_decode(q + 1, len - plen - 1, buf);
        if (memchr(buf, '\0', n))
            why = "the query string holds a NUL byte (%00)";
        else if (utf8_prefix(buf, n) != n)
            why = "the query string is not valid UTF-8 once percent-decoded";
    }
    free(buf);
    return why;
}
