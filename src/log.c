#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1; /* -1: stderr */
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;

int log_open(const char *path)
{
    int fd, old;

    if (!path)
        return 0;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    pthread_mutex_lock(&reopen_lock);
    old = __atomic_exchange_n(&log_fd, fd, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&reopen_lock);
    /* A writer may still hold the old descriptor for one line: a closed fd
     * would lose that line, a late close loses nothing. */
    if (old >= 0) {
        struct timespec ts = {0, 50 * 1000000L};

        nanosleep(&ts, NULL);
        close(old);
    }
    return 0;
}

void log_close(void)
{
    int old = __atomic_exchange_n(&log_fd, -1, __ATOMIC_ACQ_REL);

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
