/*
 * utf8: the one UTF-8 decoder certgate has, and what is built on it: valid
 * prefixes, text checks, repairing text for JSON and cutting it safely.
 * Relies on libc and jansson (for the JSON string). Does not transcode: text
 * that is not UTF-8 is refused, escaped or cut, never guessed at.
 * Valid means RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF. U+0000 is a valid character (callers that hand text to C strings
 * check for it themselves).
 */
#ifndef CG_UTF8_H
#define CG_UTF8_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Decode one UTF-8 character.
 * @param s bytes
 * @param len bytes available
 * @param out_cp the code point (may be NULL)
 * @return its length in bytes (1 to 4), or 0 when @p s does not start with a
 *         valid character (or @p len is 0)
 */
size_t utf8_char(const char *s, size_t len, uint32_t *out_cp);

/** Length of the longest valid UTF-8 prefix of @p s (@p len bytes). */
size_t utf8_prefix(const char *s, size_t len);

/** Whether @p len bytes at @p s are valid UTF-8. */
bool utf8_valid(const char *s, size_t len);

/** Whether a code point is a C0 or C1 control character (or DEL). */
bool utf8_is_control(uint32_t cp);

/** Whether a NUL-terminated string is valid UTF-8 without control characters. */
bool utf8_text_valid(const char *s);

/**
 * A JSON string of @p s with every byte that is not part of a valid UTF-8
 * character written as "\xNN", so it can always be logged or sent.
 * @return a new reference, json_null() for NULL, NULL when out of memory
 */
json_t *utf8_json(const char *s);

/** Cut a string that was truncated in the middle of a character back to a whole one. */
void utf8_trim(char *s);

#endif
