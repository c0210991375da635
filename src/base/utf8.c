#include "config.h"
#include "base/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t utf8_char(const char *s, size_t len, uint32_t *out_cp)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp, min;
    size_t n;

    if (len == 0)
        return 0;
    if (p[0] < 0x80) {
        n = 1;
        cp = p[0];
        min = 0;
    } else if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
        min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
        min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and what lies above U+10FFFF (RFC 3629). */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (out_cp)
        *out_cp = cp;
    return n;
}

size_t utf8_prefix(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_char(s + i, len - i, NULL);

        if (n == 0)
            break;
        i += n;
    }
    return i;
}

bool utf8_valid(const char *s, size_t len)
{
    return utf8_prefix(s, len) == len;
}

bool utf8_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

bool utf8_text_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;

    while (len > 0) {
        uint32_t cp = 0;
        size_t n = utf8_char(s, len, &cp);

        if (n == 0 || utf8_is_control(cp))
            return false;
        s += n;
        len -= n;
    }
    return true;
}

json_t *utf8_json(const char *s)
{
    size_t len, o = 0;
    char *buf;
    json_t *j;

    if (!s)
        return json_null();
    len = strlen(s);
    if (utf8_valid(s, len))
        return json_stringn(s, len);
    buf = malloc(len * 4 + 1);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_char(s + i, len - i, NULL);

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

void utf8_trim(char *s)
{
    size_t len = strlen(s), p;

    if (len == 0)
        return;
    /* The lead byte of the last character is at most 3 bytes back. */
    p = len - 1;
    while (p > 0 && len - p < 4 && ((unsigned char)s[p] & 0xC0) == 0x80)
        p--;
    if ((unsigned char)s[p] >= 0xC0 && utf8_char(s + p, len - p, NULL) == 0)
        s[p] = '\0';
}
