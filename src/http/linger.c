/*
 * linger: the lingering close. An error answer to a request whose body is
 * still arriving (413, 431, a framing refused) is written while the client
 * is still sending; closing the socket then makes the kernel answer the
 * unread data with a reset, which can reach the client before it reads the
 * answer and destroy it there (newman and Postman report ECONNRESET
 * instead of the 413). Like nginx's lingering close, the socket is kept
 * after libmicrohttpd is done with it: its write side is shut down (the
 * client sees the end of the answer), and what the client still sends is
 * read and dropped until it closes, goes quiet for LINGER_IDLE_MS, or
 * LINGER_TOTAL_MS pass. One thread, one epoll set, at most LINGER_MAX
 * sockets (more are closed at once, as before). Does not know TLS: the
 * bytes drained are never decrypted.
 */
#include "config.h"
#include "http/http_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"

#define LINGER_MAX 1024       /* sockets lingering at once */
#define LINGER_TOTAL_MS 30000 /* nginx's lingering_time */
#define LINGER_IDLE_MS 5000   /* nginx's lingering_timeout */

struct lingering {
    int fd;                        /* our duplicate of the socket */
    uint64_t until;                /* closed at this time whatever happens (ms) */
    uint64_t idle_until;           /* closed at this time if nothing arrives (ms) */
    struct lingering *prev, *next; /* the list (lock) */
};

struct lingerer {
    int ep;                 /* epoll set of the sockets and of `wake` */
    int wake;               /* eventfd: a socket was added, or stop */
    pthread_t thread;       /* drains them */
    pthread_mutex_t lock;   /* guards the list and count */
    struct lingering *head; /* every lingering socket */
    unsigned count;         /* how many (atomic: read without the lock) */
    bool stopping;          /* the thread should end (atomic) */
};

/* Ends the thread's wait. */
int wake_set_open(int *ep, int *wake)
{
    *ep = epoll_create1(EPOLL_CLOEXEC);
    *wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (*ep >= 0 && *wake >= 0 &&
        epoll_ctl(*ep, EPOLL_CTL_ADD, *wake,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = NULL}) == 0)
        return CG_OK;
    wake_set_close(*ep, *wake);
    return CG_EIO;
}

void wake_set_close(int ep, int wake)
{
    if (ep >= 0)
        close(ep);
    if (wake >= 0)
        close(wake);
}

void wake_set_signal(int wake)
{
    uint64_t one = 1;

    if (write(wake, &one, sizeof(one)) < 0)
        return; /* the counter is full: a wake-up is pending anyway */
}

static void wake(struct lingerer *l)
{
    wake_set_signal(l->wake);
}

static void unlink_close(struct lingerer *l, struct lingering *s)
{
    epoll_ctl(l->ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    __atomic_sub_fetch(&l->count, 1, __ATOMIC_RELEASE);
    free(s);
}

/* Reads and drops what is there. @return false when the client is gone
 * (end of stream or an error). */
static bool drain(int fd)
{
    char buf[16384];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
}

static void *linger_main(void *arg)
{
    struct lingerer *l = arg;
    struct epoll_event ev[64];

    /* Its name in top -H, perf and /proc (at most 15 bytes). */
    pthread_setname_np(pthread_self(), "cg-linger");

    while (!__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE)) {
        /* Asleep while nothing lingers; else the deadlines are checked
         * four times a second. */
        int n = epoll_wait(l->ep, ev, 64, __atomic_load_n(&l->count, __ATOMIC_ACQUIRE) ? 250 : -1);
        uint64_t now = clock_ms();
        uint64_t woken;

        pthread_mutex_lock(&l->lock);
        for (int i = 0; i < n; i++) {
            struct lingering *s = ev[i].data.ptr;

            if (!s) {
                if (read(l->wake, &woken, sizeof(woken)) < 0)
                    woken = 0;
                continue;
            }
            if (drain(s->fd))
                s->idle_until = now + LINGER_IDLE_MS;
            else
                unlink_close(l, s);
        }
        for (struct lingering *s = l->head, *next; s; s = next) {
            next = s->next;
            if (now >= s->until || now >= s->idle_until)
                unlink_close(l, s);
        }
        pthread_mutex_unlock(&l->lock);
    }
    return NULL;
}

int linger_start(struct lingerer **out)
{
    struct lingerer *l = calloc(1, sizeof(*l));

    *out = NULL;
    if (!l)
        return CG_ENOMEM;
    if (wake_set_open(&l->ep, &l->wake)) {
        free(l);
        return CG_EIO;
    }
    pthread_mutex_init(&l->lock, NULL);
    if (pthread_create(&l->thread, NULL, linger_main, l) != 0) {
        pthread_mutex_destroy(&l->lock);
        wake_set_close(l->ep, l->wake);
        free(l);
        return CG_EIO;
    }
    *out = l;
    return CG_OK;
}

bool linger_wanted(int fd, bool body_unread)
{
    int unread = 0;

    return fd >= 0 && (body_unread || (ioctl(fd, FIONREAD, &unread) == 0 && unread > 0));
}

void linger_add(struct lingerer *l, int fd)
{
    struct lingering *s;
    int own = l ? dup(fd) : -1;
    uint64_t now = clock_ms();

    if (own < 0)
        return;
    s = calloc(1, sizeof(*s));
    if (!s) {
        close(own);
        return;
    }
    s->fd = own;
    s->until = now + LINGER_TOTAL_MS;
    s->idle_until = now + LINGER_IDLE_MS;
    /* The client sees the end of the answer now; libmicrohttpd's close of
     * its own descriptor will not end the connection while ours is open. */
    shutdown(own, SHUT_WR);
    pthread_mutex_lock(&l->lock);
    if (l->count >= LINGER_MAX ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, own,
                  &(struct epoll_event){.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s}) != 0) {
        pthread_mutex_unlock(&l->lock);
        close(own);
        free(s);
        return;
    }
    s->next = l->head;
    if (s->next)
        s->next->prev = s;
    l->head = s;
    __atomic_add_fetch(&l->count, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

void linger_stop(struct lingerer *l)
{
    if (!l)
        return;
    __atomic_store_n(&l->stopping, true, __ATOMIC_RELEASE);
    wake(l);
    pthread_join(l->thread, NULL);
    while (l->head)
        unlink_close(l, l->head);
    pthread_mutex_destroy(&l->lock);
    wake_set_close(l->ep, l->wake);
    free(l);
}
