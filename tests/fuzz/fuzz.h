/*
 * fuzz: what the libFuzzer harnesses of tests/fuzz share: the entry points
 * libFuzzer calls, splitting one input into pieces, and stopping with a
 * message when a property the code promises does not hold (libFuzzer keeps
 * the input as a crash). Header-only: each harness is one fuzz_<target>.c.
 */
#ifndef CG_FUZZ_H
#define CG_FUZZ_H

#include <stdbool.h>
#include <stddef.h>

#include "base/utf8.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Separates the pieces of one input (certificates, a DN, a rule, a body).
 * Base64 and JSON seldom hold it; the dictionaries list it. */
#define FUZZ_SEP "@@@@"
#define FUZZ_SEP_LEN 4

/** libFuzzer's entry points. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/** One piece of an input. */
struct fuzz_piece {
    const uint8_t *data; /* start, inside the input */
    size_t len;          /* length */
};

/**
 * Split @p data at each FUZZ_SEP into at most @p max pieces (the last one
 * keeps the rest, separators included).
 * @return the number of pieces, at least 1
 */
static inline size_t fuzz_split(const uint8_t *data, size_t len, struct fuzz_piece *out, size_t max)
{
    size_t n = 0, start = 0;

    for (size_t i = 0; n + 1 < max && i + FUZZ_SEP_LEN <= len; i++) {
        if (memcmp(data + i, FUZZ_SEP, FUZZ_SEP_LEN) == 0) {
            out[n].data = data + start;
            out[n++].len = i - start;
            start = i + FUZZ_SEP_LEN;
            i += FUZZ_SEP_LEN - 1;
        }
    }
    out[n].data = data + start;
    out[n++].len = len - start;
    return n;
}

/** A NUL-terminated copy of @p len bytes (C code sees it up to its first NUL). */
static inline char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);

    if (!s)
        abort();
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/** Whether @p s is valid UTF-8 as certgate checks it (NULL: yes). */
static inline bool fuzz_is_utf8(const char *s)
{
    return !s || utf8_prefix(s, strlen(s)) == strlen(s);
}

/* Stops the run when a property certgate promises does not hold. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: %s:%d: property broken: ", __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
