/*
 * fuzz_target: the request target check (target_check), which stands
 * between what libmicrohttpd decodes and everything after it (routing, the
 * JSON that scripts and logs see). Input: the target as sent.
 * Property, checked against libmicrohttpd's own decoder (MHD_http_unescape,
 * over the path and over each query argument as libmicrohttpd splits
 * them): the target is accepted exactly when every decoded piece is free of
 * NUL and valid UTF-8.
 */
#include "config.h"
#include "base/utf8.h"

#include <microhttpd.h>

#include "fuzz.h"
#include "http/target.h"

/* Whether libmicrohttpd's decoding of @p s (len bytes) is text. */
static bool decodes_to_text(const char *s, size_t len)
{
    char *buf = fuzz_strndup((const uint8_t *)s, len);
    size_t n;
    bool ok;

    /* A decoded %00 would end the string: count what the decoder wrote. */
    n = MHD_http_unescape(buf);
    ok = memchr(buf, '\0', n) == NULL && utf8_prefix(buf, n) == n;
    free(buf);
    return ok;
}

/* The query as libmicrohttpd splits it: arguments at '&', name and value
 * at the first '='; each decoded on its own. */
static bool query_is_text(const char *q)
{
    while (true) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));

        if (eq) {
            if (!decodes_to_text(q, (size_t)(eq - q)) ||
                !decodes_to_text(eq + 1, (size_t)(end - eq - 1)))
                return false;
        } else if (!decodes_to_text(q, (size_t)(end - q))) {
            return false;
        }
        if (!amp)
            return true;
        q = amp + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *target = fuzz_strndup(data, size), *q;
    const char *why = target_check(target);
    bool text;

    q = strchr(target, '?');
    text = decodes_to_text(target, q ? (size_t)(q - target) : strlen(target)) &&
           (!q || query_is_text(q + 1));
    FUZZ_ASSERT(text == (why == NULL), "'%s': target_check says '%s', the decoded pieces are %s",
                target, why ? why : "fine", text ? "text" : "not text");
    FUZZ_ASSERT(!why || fuzz_is_utf8(why), "the detail is not text");
    FUZZ_ASSERT(target_check(NULL) == NULL, "NULL refused");
    free(target);
    return 0;
}
