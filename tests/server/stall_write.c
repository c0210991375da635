/*
 * stall_write: an LD_PRELOAD helper for tests/server/logs.sh. A write(2)
 * whose bytes contain $CG_STALL_MATCH waits $CG_STALL_MS milliseconds after
 * its caller chose the file descriptor and before the system call, as a
 * thread preempted at that point would. Each such write appends "stall" to
 * $CG_STALL_NOTE when it starts waiting and "done" once written, so the test
 * knows when writers are held and when they have let go. Other writes pass
 * straight through. Not part of certgate.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int fd, const void *buf, size_t n);

static write_fn next_write(void)
{
    static write_fn fn;
    write_fn f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);

    if (!f) {
        void *sym = dlsym(RTLD_NEXT, "write");

        memcpy(&f, &sym, sizeof(f));
        __atomic_store_n(&fn, f, __ATOMIC_RELEASE);
    }
    return f;
}

static void note(write_fn w, const char *what)
{
    const char *path = getenv("CG_STALL_NOTE");
    int fd;

    if (!path)
        return;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (w(fd, what, strlen(what)) < 0) {
        /* The test notices a missing note. */
    }
    close(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    write_fn w = next_write();
    const char *match = getenv("CG_STALL_MATCH");
    const char *ms = getenv("CG_STALL_MS");
    ssize_t rc;

    if (!match || !*match || !buf || !memmem(buf, n, match, strlen(match)))
        return w(fd, buf, n);
    note(w, "stall\n");
    if (ms) {
        long v = atol(ms);
        struct timespec ts = {v / 1000, (v % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    rc = w(fd, buf, n);
    note(w, rc == (ssize_t)n ? "done\n" : "failed\n");
    return rc;
}
