/*
 * clock: the one monotonic clock and deadline helper: milliseconds and
 * microseconds that never go back (for timeouts, durations, caches), and
 * the absolute time a condition variable waits until. Relies on POSIX
 * clocks. Does not give the time of day: cg_now (util) does, for what is
 * stored or shown.
 */
#ifndef CG_CLOCK_H
#define CG_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic milliseconds (an arbitrary origin, never going back). */
int64_t clock_ms(void);

/** Monotonic microseconds, same origin as clock_ms. */
int64_t clock_us(void);

/** Monotonic seconds, same origin. */
int64_t clock_s(void);

/**
 * The absolute time @p ms from now, for pthread_cond_timedwait (whose
 * condition variables use CLOCK_REALTIME, the POSIX default).
 * @param out the deadline
 */
void clock_deadline(struct timespec *out, int64_t ms);

#endif
