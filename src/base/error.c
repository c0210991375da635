#include "config.h"
#include "base/error.h"
#include "base/utf8.h"

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

char *error_body(enum cg_error e, const char *message, const char *detail)
{
    json_t *o;
    char *text;

    /* jansson keeps the key order we pack with JSON_PRESERVE_ORDER and
     * escapes whatever the detail holds; bad UTF-8 is repaired first, or
     * json_pack would refuse the whole body. */
    /* error_body_no_memory below spells the same envelope by hand. */
    o = json_pack("{s:{s:o, s:o}, s:s}", "error", "message",
                  utf8_json(message ? message : error_message(e)), "detail",
                  utf8_json(detail ? detail : ""), "status", "failure");
    if (!o)
        return NULL;
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

const char error_body_no_memory[] = "{\"error\":{\"message\":\"Internal server error\","
                                    "\"detail\":\"out of memory\"},\"status\":\"failure\"}";
