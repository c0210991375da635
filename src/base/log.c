#include "config.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -1: stderr. Once a file is open its number never changes: a reopen puts
 * the new file under the same number (dup3), so a writer that loaded the
 * number before the reopen writes a whole line to the old file or to the
 * new one, never to a closed or reused descriptor. */
static int log_fd = -1;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER; /* one open at a time */

int log_open(const char *path)
{
    int fd, cur, rc = 0, saved;

    if (!path)
        return 0;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    pthread_mutex_lock(&open_lock);
    cur = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
    if (cur < 0) {
        __atomic_store_n(&log_fd, fd, __ATOMIC_RELEASE);
        fd = -1;
    } else if (dup3(fd, cur, O_CLOEXEC) < 0) {
        /* The old file stays in place: nothing is lost. */
        rc = -1;
    }
    pthread_mutex_unlock(&open_lock);
    saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    return rc;
}

void log_close(void)
{
    int old;

    /* Called when the other threads are gone: no writer holds the number. */
    pthread_mutex_lock(&open_lock);
    old = __atomic_exchange_n(&log_fd, -1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&open_lock);
    if (old >= 0)
        close(old);
}

void log_event(const char *event, json_t *fields)
{
    char when[96];
    char *line;
    size_t len;
    int fd;

    if (!fields)
        fields = json_object();
    if (!fields)
        return;
    cg_now_iso_ms(when);
    json_object_set_new(fields, "time", json_string(when));
    json_object_set_new(fields, "event", json_string(event));
    line = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(fields);
    if (!line)
        return;
    len = strlen(line);
    line[len] = '\n'; /* replaces the NUL: the line is written by length */
    fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
    if (write(fd >= 0 ? fd : STDERR_FILENO, line, len + 1) < 0) {
        /* Nowhere left to report a failed log write. */
    }
    free(line);
}
