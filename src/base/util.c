#include "config.h"
#include "base/util.h"
#include "base/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *cg_strerror(int status)
{
    switch (status) {
    case CG_OK: return "success";
    case CG_ERR: return "failure";
    case CG_ENOMEM: return "out of memory";
    case CG_EINVAL: return "invalid input";
    case CG_ENOTFOUND: return "not found";
    case CG_EEXIST: return "already exists";
    case CG_EDB: return "database error";
    case CG_EIO: return "I/O error";
    case CG_EPARSE: return "parse error";
    case CG_EVERSION: return "database schema is newer than this program";
    case CG_EDEPEND: return "other records depend on it";
    case CG_EDENIED: return "refused";
    case CG_ENOTSUP: return "not supported";
    default: return "unknown error";
    }
}

void cg_err_set(struct cg_err *err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

int64_t cg_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

void cg_time_iso(int64_t t, char out[static 21])
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (!gmtime_r(&tt, &tm) || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 21, "invalid-time");
}

void cg_now_iso_ms(char out[static 96])
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
}

int cg_time_parse(const char *s, int64_t *out_t)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return CG_EPARSE;
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0 && *end != '\0')
        return CG_EPARSE;
    *out_t = (int64_t)timegm(&tm);
    return CG_OK;
}

void cg_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int cg_read_file(const char *path, size_t max, char **out_data, size_t *out_len, struct cg_err *err)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    int rc = CG_OK;

    f = fopen(path, "rb");
    if (!f) {
        cg_err_set(err, "%s: %s", path, strerror(errno));
        return CG_EIO;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        cg_err_set(err, "%s: is a directory", path);
        rc = CG_EIO;
        goto out;
    }
    for (;;) {
        size_t n;

        if (len + 4096 + 1 > cap) {
            char *nb;

            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (!nb) {
                rc = CG_ENOMEM;
                goto out;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (len > max) {
            cg_err_set(err, "%s: file is larger than %zu bytes", path, max);
            rc = CG_EINVAL;
            goto out;
        }
        if (n == 0) {
            if (ferror(f)) {
                cg_err_set(err, "%s: read error: %s", path, strerror(errno));
                rc = CG_EIO;
                goto out;
            }
            break;
        }
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            rc = CG_ENOMEM;
            goto out;
        }
    }
    buf[len] = '\0';
    *out_data = buf;
    *out_len = len;
    buf = NULL;
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

void cg_strappend(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (size == 0 || *len + 1 >= size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < size ? *len + (size_t)n : size - 1;
}

size_t cg_strlcpy(char *buf, const char *src, size_t size)
{
    size_t n;

    if (size == 0)
        return 0;
    n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(buf, src, n);
    buf[n] = '\0';
    return n;
}

char *cg_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int cg_split_list(const char *list, char ***out_items, size_t *out_n)
{
    char **items = NULL;
    size_t n = 0;
    const char *p = list ? list : "";

    while (*p) {
        const char *start, *end;
        char **ni;

        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == start)
            continue;
        ni = realloc(items, (n + 1) * sizeof(*items));
        if (!ni)
            goto oom;
        items = ni;
        items[n] = strndup(start, (size_t)(end - start));
        if (!items[n])
            goto oom;
        n++;
    }
    *out_items = items;
    *out_n = n;
    return CG_OK;
oom:
    cg_strv_free(items, n);
    return CG_ENOMEM;
}

void cg_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

bool cg_consttime_eq(const void *a, const void *b, size_t len)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char acc = 0;

    for (size_t i = 0; i < len; i++)
        acc |= x[i] ^ y[i];
    return acc == 0;
}

bool cg_valid_name(const char *s)
{
    size_t n = 0;

    if (!s || !*s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '@' || c == '-'))
            return false;
        if (n >= 64)
            return false;
    }
    return true;
}
