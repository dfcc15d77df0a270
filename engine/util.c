/*
 * util.c - logging, fatal errors, checked allocation, clocks, buffers,
 * quoting values for log lines.
 */
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_max = LOG_INFO;
static const char *log_prog = "volley";
static int log_pid;
/* Buffered mode (the engine): lines collect here and go out in one write
 * per loop turn (log_flush from an end-of-turn hook), or when the buffer
 * fills, or at once for warnings and errors. */
static int log_buffered;
static char log_buf[65536];
static size_t log_len;

static const char *const level_name[] = { "error", "warn", "info", "debug" };

void
log_init(const char *progname)
{
	const char *e = getenv("VOLLEY_LOG");

	log_prog = progname;
	log_pid = (int)getpid();
	if (e == NULL)
		return;
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (strcmp(e, level_name[i]) == 0)
			log_level_max = (enum log_level)i;
}

void
log_flush(void)
{
	size_t off = 0;

	while (off < log_len) {
		ssize_t n = write(STDERR_FILENO, log_buf + off, log_len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	log_len = 0;
}

void
log_set_buffered(int on)
{
	if (!on)
		log_flush();
	log_buffered = on;
}

static void
log_vmsg(enum log_level lvl, const char *subsys, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d] %s: ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ts.tv_nsec / 1000000, level_name[lvl], log_prog,
	    log_pid ? log_pid : (int)getpid(), subsys);
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	n = (int)strlen(line);
	/* Never let a peer's bytes break the one-line-per-record rule. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\r' || line[i] == '\n' || (unsigned char)line[i] < 0x20)
			line[i] = ' ';
	line[n++] = '\n';
	if (!log_buffered || lvl <= LOG_WARN) {
		log_flush();	/* keep the order */
		(void)!write(STDERR_FILENO, line, (size_t)n);
		return;
	}
	if (log_len + (size_t)n > sizeof log_buf)
		log_flush();
	memcpy(log_buf + log_len, line, (size_t)n);
	log_len += (size_t)n;
}

void
log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_level_max)
		return;
	va_start(ap, fmt);
	log_vmsg(lvl, subsys, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERROR, "fatal", fmt, ap);	/* errors flush the buffer */
	va_end(ap);
	exit(1);
}

void
panic_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_msg(LOG_ERROR, "panic", "%s:%d: %s", file, line, msg);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		fatal("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		fatal("out of memory (asprintf)");
	va_end(ap);
	return p;
}

uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	char probe[1];

	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof probe, fmt, ap);	/* length only */
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	if (b->data)
		b->data[b->len] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *
str_lower(char *s)
{
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

/*
 * log_quote - escape src for use inside "..." on a log line: '"' and '\'
 * are backslash-escaped, CR, LF and TAB become \r \n \t, any other
 * control byte (and DEL) becomes \xHH. Bytes >= 0x80 pass (UTF-8). An
 * escape is never cut in half: on truncation the output ends before it.
 */
size_t
log_quote(char *dst, size_t dstlen, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (dstlen == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p; p++) {
		char esc[4];
		size_t k = 0;

		switch (*p) {
		case '"': esc[k++] = '\\'; esc[k++] = '"'; break;
		case '\\': esc[k++] = '\\'; esc[k++] = '\\'; break;
		case '\r': esc[k++] = '\\'; esc[k++] = 'r'; break;
		case '\n': esc[k++] = '\\'; esc[k++] = 'n'; break;
		case '\t': esc[k++] = '\\'; esc[k++] = 't'; break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				esc[k++] = '\\';
				esc[k++] = 'x';
				esc[k++] = hex[*p >> 4];
				esc[k++] = hex[*p & 15];
			} else {
				esc[k++] = (char)*p;
			}
			break;
		}
		if (n + k >= dstlen)
			break;
		memcpy(dst + n, esc, k);
		n += k;
	}
	dst[n] = '\0';
	return n;
}

void
errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
