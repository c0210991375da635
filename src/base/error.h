/*
 * error: the registry of client-visible errors (errors.def), the JSON body
 * every error response carries, and the UTF-8 repair that every string from
 * outside (certificate names, paths, headers) goes through before it is put
 * into JSON, so a body or a log line never loses a field to bad bytes.
 * Relies on jansson. Does not send anything: http turns a registry entry
 * into a response.
 */
#ifndef CG_ERROR_H
#define CG_ERROR_H

#include <jansson.h>
#include <stddef.h>

/** Client-visible errors, expanded from errors.def. */
enum cg_error {
#define CG_ERROR(name, status, message) CG_ERROR_##name,
#include "base/errors.def"
#undef CG_ERROR
    CG_ERROR_COUNT
};

/** The detail of the no-credentials 401, byte for byte as the design fixes it. */
#define CG_DETAIL_NO_CREDENTIALS "Required to provide Auth information"

/**
 * HTTP status of an error.
 * @return e.g. 401
 */
unsigned error_status(enum cg_error e);

/**
 * Message of an error ("User Not Authenticated").
 * @return a static string
 */
const char *error_message(enum cg_error e);

/**
 * The error body {"error":{"message":M,"detail":D},"status":"failure"}.
 * Bytes of @p message or @p detail that are not UTF-8 are written as "\xNN".
 * @param message the message (NULL: the registry's)
 * @param detail the detail (NULL: empty)
 * @return malloc'd compact JSON text; NULL only when out of memory
 */
char *error_body(enum cg_error e, const char *message, const char *detail);

/**
 * How many leading bytes of @p s are whole, valid UTF-8 characters (RFC 3629:
 * no overlong forms, surrogates or code points past U+10FFFF; NUL stops it).
 * @param s bytes
 * @param len their number
 * @return len when all of @p s is valid UTF-8
 */
size_t error_utf8_prefix(const char *s, size_t len);

/**
 * A JSON string of text that comes from outside: each byte that is not part
 * of a valid UTF-8 character becomes the four characters "\xNN", where
 * jansson would refuse the whole string.
 * @param s the text, or NULL for JSON null
 * @return a new reference; NULL only when out of memory
 */
json_t *error_json_text(const char *s);

/**
 * Cut a NUL-terminated string so that it does not end inside a multi-byte
 * character (what snprintf leaves when it truncates UTF-8 text).
 * @param s the string, shortened in place
 */
void error_utf8_trim(char *s);

#endif
