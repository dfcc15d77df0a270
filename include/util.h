/*
 * util.h - logging, fatal errors, checked allocation, clocks.
 *
 * Three tiers of error: panic() for a broken invariant (a bug),
 * fatal() for start-up/config/allocation failure, and error values for
 * anything that comes from the network or Redis.
 *
 * Logs go to stderr, one line each: "TIME LEVEL [subsys] message".
 * Callers put the job or session id in the message ("job=... ").
 */
#ifndef VOLLEY_UTIL_H
#define VOLLEY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_level_max;	/* default LOG_INFO; VOLLEY_LOG=debug */

void log_init(const char *progname);
/* Buffered logging: info/debug lines are collected and written by
 * log_flush() (once per loop turn in the engine); warnings and errors
 * flush and go out at once. */
void log_set_buffered(int on);
void log_flush(void);
void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(sub, ...) log_msg(LOG_ERROR, sub, __VA_ARGS__)
#define log_warn(sub, ...)  log_msg(LOG_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...)  do { if (log_level_max >= LOG_INFO) log_msg(LOG_INFO, sub, __VA_ARGS__); } while (0)
#define log_debug(sub, ...) do { if (log_level_max >= LOG_DEBUG) log_msg(LOG_DEBUG, sub, __VA_ARGS__); } while (0)

void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
#define panic(...) panic_at(__FILE__, __LINE__, __VA_ARGS__)
void panic_at(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

/* Allocation that never returns NULL: out of memory is fatal. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Clocks, in milliseconds. mono for deadlines, wall for events/Redis. */
uint64_t clock_mono_ms(void);
uint64_t clock_wall_ms(void);

/* Growable byte buffer. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n);	/* drop n bytes from the front */
void buf_free(struct buf *b);

/* ASCII lower-case in place; returns s. */
char *str_lower(char *s);

/*
 * log_quote - src escaped for a log line's key="..." value, so that a
 * peer's reply cannot forge key= fields or lines: '"' and '\' get a
 * backslash, CR/LF/TAB become \r \n \t, other control bytes \xHH.
 * Writes at most dstlen bytes including the NUL (dstlen > 0), never half
 * an escape; returns the length written. src NULL reads as "".
 */
size_t log_quote(char *dst, size_t dstlen, const char *src);

/* errbuf_set - format a reason into a caller's buffer (err may be NULL). */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
