/*
 * util: status codes, error messages, time and small string helpers shared by
 * every module. Relies on libc only. Does not log and does not allocate
 * anything a caller has to know about beyond what each function documents.
 */
#ifndef CG_UTIL_H
#define CG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Status of an internal operation: 0 is success, negative is an error. */
enum cg_status {
    CG_OK = 0,
    CG_ERR = -1,       /* unspecified failure, see the message */
    CG_ENOMEM = -2,    /* out of memory */
    CG_EINVAL = -3,    /* invalid argument or input */
    CG_ENOTFOUND = -4, /* no such record */
    CG_EEXIST = -5,    /* record already exists */
    CG_EDB = -6,       /* database failure */
    CG_EIO = -7,       /* file or system I/O failure */
    CG_EPARSE = -8,    /* input could not be parsed */
    CG_EVERSION = -9,  /* database schema is newer than this program */
    CG_EDEPEND = -10,  /* other records depend on this one */
    CG_EDENIED = -11,  /* refused by policy */
    CG_ENOTSUP = -12,  /* the backend cannot do it */
};

/** A human-readable error message filled in by the function that failed. */
struct cg_err {
    char msg[512]; /* one line, no trailing newline; empty when unset */
};

/**
 * Name a status code in words.
 * @param status a value of enum cg_status
 * @return a static string
 */
const char *cg_strerror(int status);

/**
 * Set an error message (printf-style); a NULL @p err is allowed and ignored.
 * @return always CG_ERR-style pass-through is not done: returns nothing
 */
void cg_err_set(struct cg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Current UTC time in seconds since the epoch.
 * @return seconds
 */
int64_t cg_now(void);

/**
 * Format a UTC time as ISO 8601 ("2026-11-24T22:23:42Z").
 * @param t seconds since the epoch
 * @param out buffer of at least 21 bytes
 */
void cg_time_iso(int64_t t, char out[static 21]);

/**
 * The current UTC time as ISO 8601 with milliseconds ("2026-11-24T22:23:42.123Z").
 * @param out buffer of at least 96 bytes
 */
void cg_now_iso_ms(char out[static 96]);

/**
 * Parse an ISO 8601 UTC time ("YYYY-MM-DDTHH:MM:SSZ", or "+00:00" suffix).
 * @param s text
 * @param out_t seconds since the epoch
 * @return CG_OK or CG_EPARSE
 */
int cg_time_parse(const char *s, int64_t *out_t);

/**
 * Lower-case hex encoding.
 * @param in bytes
 * @param len number of bytes
 * @param out buffer of at least 2*len+1 bytes
 */
void cg_hex(const unsigned char *in, size_t len, char *out);

/**
 * Read a whole file into memory, NUL-terminated; refuses files over @p max bytes.
 * @param path file name
 * @param max largest accepted size
 * @param out_data malloc'd contents (caller frees)
 * @param out_len length without the terminating NUL
 * @param err message on failure
 * @return CG_OK, CG_EIO or CG_EINVAL (too large)
 */
int cg_read_file(const char *path, size_t max, char **out_data, size_t *out_len,
                 struct cg_err *err);

/**
 * Append printf-style text to a buffer that always stays NUL-terminated;
 * what does not fit is cut off.
 * @param buf the buffer
 * @param size its size
 * @param len the length used so far, updated
 */
void cg_strappend(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * Copy a string into a buffer that always ends NUL-terminated; what does
 * not fit is cut off (a NULL source copies as ""). snprintf(buf, size,
 * "%s", src) without the formatting machinery, for the hot paths.
 * @return the length of what was copied
 */
size_t cg_strlcpy(char *buf, const char *src, size_t size);

/**
 * Duplicate a string; NULL stays NULL.
 * @return malloc'd copy or NULL
 */
char *cg_strdup(const char *s);

/**
 * Split a comma-separated list ("a,b , c") into trimmed, non-empty items.
 * @param list text, may be NULL or empty
 * @param out_items malloc'd array of malloc'd strings (free with cg_strv_free)
 * @param out_n number of items
 * @return CG_OK or CG_ENOMEM
 */
int cg_split_list(const char *list, char ***out_items, size_t *out_n);

/** Free an array of strings made by cg_split_list (or similar). */
void cg_strv_free(char **v, size_t n);

/**
 * Constant-time comparison of two byte strings of equal length.
 * @return true when equal
 */
bool cg_consttime_eq(const void *a, const void *b, size_t len);

/**
 * Whether @p s is a valid role or user name: 1-64 chars of [A-Za-z0-9_.@-].
 * @return true when valid
 */
bool cg_valid_name(const char *s);

#endif
