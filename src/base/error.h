/*
 * error: the registry of client-visible errors (errors.def) and the one
 * builder of the JSON body every error response carries. Relies on utf8
 * (text from outside is repaired before it goes into JSON) and jansson.
 * Does not send anything: http turns a registry entry into a response.
 */
#ifndef CG_ERROR_H
#define CG_ERROR_H

#include <jansson.h>
#include <stddef.h>

#include "base/utf8.h"

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

/** The 500 body for when even error_body has no memory: a constant. */
extern const char error_body_no_memory[];

#endif
