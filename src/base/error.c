#include "config.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    unsigned status;     /* HTTP status */
    const char *message; /* the fixed message */
} registry[CG_ERROR_COUNT] = {
#define CG_ERROR(name, st, msg) [CG_ERROR_##name] = {st, msg},
#include "base/errors.def"
#undef CG_ERROR
};

unsigned error_status(enum cg_error e)
{
    return (unsigned)e < CG_ERROR_COUNT ? registry[e].status : 500;
}

const char *error_message(enum cg_error e)
{
    return (unsigned)e < CG_ERROR_COUNT ? registry[e].message : "Internal server error";
}

/* Length of the valid character starting at s[0] (0 when it is not one). */
static size_t char_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c >= 0x01 && c <= 0x7F)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (left < n)
        return 0;
    /* The second byte's range rules out overlong forms, surrogates and
     * code points above U+10FFFF (RFC 3629, section 4). */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

size_t error_utf8_prefix(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = char_len(u + i, len - i);

        if (n == 0)
            break;
        i += n;
    }
    return i;
}

json_t *error_json_text(const char *s)
{
    size_t len, ok, o = 0;
    char *buf;
    json_t *j;

    if (!s)
        return json_null();
    len = strlen(s);
    ok = error_utf8_prefix(s, len);
    if (ok == len)
        return json_stringn(s, len);
    buf = malloc(len * 4 + 1);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = char_len((const unsigned char *)s + i, len - i);

        if (n) {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        } else {
            snprintf(buf + o, 5, "\\x%02x", (unsigned char)s[i]);
            o += 4;
            i++;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

void error_utf8_trim(char *s)
{
    size_t len = strlen(s), p;

    if (len == 0)
        return;
    /* The lead byte of the last character is at most 3 bytes back. */
    p = len - 1;
    while (p > 0 && len - p < 4 && ((unsigned char)s[p] & 0xC0) == 0x80)
        p--;
    if ((unsigned char)s[p] >= 0xC0 && char_len((const unsigned char *)s + p, len - p) == 0)
        s[p] = '\0';
}

char *error_body(enum cg_error e, const char *message, const char *detail)
{
    json_t *o;
    char *text;

    /* jansson keeps the key order we pack with JSON_PRESERVE_ORDER and
     * escapes whatever the detail holds; bad UTF-8 is repaired first, or
     * json_pack would refuse the whole body. */
    o = json_pack("{s:{s:o, s:o}, s:s}", "error", "message",
                  error_json_text(message ? message : error_message(e)), "detail",
                  error_json_text(detail ? detail : ""), "status", "failure");
    if (!o)
        return NULL;
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}
