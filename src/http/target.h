/*
 * target: the checks on a request target (path and query) that
 * libmicrohttpd leaves to us: once percent-decoded, each must be text
 * (no NUL, valid UTF-8). Pure C over the target string; relies on error's
 * UTF-8 check. Does not route, parse query arguments or answer anything:
 * http turns a refusal into a 400.
 */
#ifndef CG_TARGET_H
#define CG_TARGET_H

/**
 * Whether a request target as sent may be handed on: its path and its query,
 * percent-decoded as libmicrohttpd decodes them, hold no NUL byte
 * (/healthz%00junk is not /healthz) and are valid UTF-8 (they go into JSON).
 * @param target the request target, "/path?query"; NULL is fine
 * @return NULL when fine, else the detail of the 400 (a static string)
 */
const char *target_check(const char *target);

#endif
