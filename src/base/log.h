/*
 * log: one JSON object per line to stderr or a log file, written with a
 * single write(2) so lines of concurrent threads never interleave. Relies on
 * jansson. Never receives keys, passwords, Authorization values or bodies:
 * callers pass only the fields of DESIGN.md section 8.
 */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <jansson.h>

/**
 * Send log lines to @p path (appended, created 0640), or stderr when NULL.
 * Called again (SIGHUP), it reopens the file for log rotation: the new file
 * replaces the old one atomically for every thread, and a line being
 * written meanwhile goes whole to one of them. No sleep, no lost line.
 * @return 0, or -1 with errno set: the file could not be opened, and lines
 *         keep going where they went before
 */
int log_open(const char *path);

/** Close the log file (back to stderr). */
void log_close(void);

/**
 * Write one line: @p fields plus "time" (ISO 8601 UTC with milliseconds) and
 * "event"; takes ownership of @p fields.
 * @param event what happened ("request", "auth_refused", "listening", ...)
 */
void log_event(const char *event, json_t *fields);

#endif
