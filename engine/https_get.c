/*
 * https_get.c - one HTTPS GET on the loop (API: https_get.h): a conn
 * (conn.h) carrying a verified TLS client (tls.h), one request out, the
 * response gathered into one bounded buffer and parsed when it is
 * complete (Content-Length reached, or the server closed).
 *
 * Owns: the conn, the tls, the deadline timer, the send buffer (read by
 * the kernel until on_sent) and the response buffer. Freed from the
 * conn's on_closed, never before: a completion may still be due.
 */
#include "https_get.h"
#include "conn.h"
#include "loop.h"
#include "tls.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTPS_HEAD_MAX	16384
#define HTTPS_SEND_MAX	16384

struct https_get {
	struct loop *loop;
	struct conn *conn;
	struct tls *tls;
	struct timer timer;
	void (*cb)(void *arg, const struct https_result *r);
	void *arg;
	char host[256];
	char *request;
	size_t request_len;
	int request_sent;		/* written into TLS */
	int done;			/* the callback ran (or was cancelled) */
	char sbuf[HTTPS_SEND_MAX];	/* wire bytes being sent */
	size_t soff, slen;
	char *rbuf;			/* plaintext received */
	size_t rlen, rcap;		/* rcap: the most we accept */
	size_t max_body;
	long head_len;			/* > 0 once the head is parsed */
	int status, chunked;
	long long clen;
	char ctype[128];
};

/* --- pure parsing --- */

static int __attribute__((format(printf, 3, 4)))
herr(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int
name_is(const char *b, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(b, name, n) == 0;
}

long
https_parse_head(const char *buf, size_t n, int *status, char *ctype, size_t ctsz,
    long long *clen, int *chunked, char *err, size_t errsz)
{
	const char *end = NULL, *p, *le;
	size_t hl;

	*status = 0;
	*clen = -1;
	*chunked = 0;
	if (ctsz > 0)
		ctype[0] = '\0';
	for (size_t i = 0; i + 1 < n; i++) {
		if (buf[i] == '\n' && buf[i + 1] == '\n') {
			end = buf + i + 2;
			break;
		}
		if (i + 3 < n && buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
		    buf[i + 3] == '\n') {
			end = buf + i + 4;
			break;
		}
	}
	if (end == NULL)
		return n > HTTPS_HEAD_MAX ? herr(err, errsz, "response head too long") : 0;
	hl = (size_t)(end - buf);
	/* Status line: HTTP/1.x SP 3DIGIT */
	if (hl < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) || (hl > 12 && buf[12] != ' ' && buf[12] != '\r' &&
	    buf[12] != '\n'))
		return herr(err, errsz, "malformed status line");
	*status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	p = (const char *)memchr(buf, '\n', hl) + 1;
	while (p < end) {
		const char *colon, *v, *ve;

		le = memchr(p, '\n', (size_t)(end - p));
		ve = le;
		if (ve > p && ve[-1] == '\r')
			ve--;
		if (ve == p)
			break;		/* the blank line */
		if ((colon = memchr(p, ':', (size_t)(ve - p))) == NULL)
			return herr(err, errsz, "malformed header line");
		v = colon + 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (name_is(p, (size_t)(colon - p), "content-type")) {
			size_t k = 0;

			for (const char *q = v; q < ve && *q != ';' && *q != ' ' && k + 1 < ctsz; q++)
				ctype[k++] = (char)tolower((unsigned char)*q);
			if (ctsz > 0)
				ctype[k] = '\0';
		} else if (name_is(p, (size_t)(colon - p), "content-length")) {
			long long x = 0;

			if (v == ve || ve - v > 12)
				return herr(err, errsz, "bad Content-Length");
			for (const char *q = v; q < ve; q++) {
				if (!isdigit((unsigned char)*q))
					return herr(err, errsz, "bad Content-Length");
				x = x * 10 + (*q - '0');
			}
			if (*clen >= 0 && *clen != x)
				return herr(err, errsz, "conflicting Content-Length");
			*clen = x;
		} else if (name_is(p, (size_t)(colon - p), "transfer-encoding")) {
			if ((size_t)(ve - v) == 7 && strncasecmp(v, "chunked", 7) == 0)
				*chunked = 1;
			else
				return herr(err, errsz, "unsupported Transfer-Encoding");
		}
		p = le + 1;
	}
	return (long)hl;
}

int
https_dechunk(char *buf, size_t n, size_t *out)
{
	size_t r = 0, w = 0;

	for (;;) {
		size_t sz = 0, digits = 0;
		char *nl;

		while (r < n && isxdigit((unsigned char)buf[r])) {
			if (++digits > 7)
				return -1;
			sz = sz * 16 + (size_t)(isdigit((unsigned char)buf[r]) ? buf[r] - '0' :
			    tolower((unsigned char)buf[r]) - 'a' + 10);
			r++;
		}
		if (r == n)
			return 0;
		if (digits == 0)
			return -1;
		if ((nl = memchr(buf + r, '\n', n - r)) == NULL)
			return 0;	/* extensions, then the line end */
		r = (size_t)(nl - buf) + 1;
		if (sz == 0) {
			/* Trailers up to a blank line. */
			for (;;) {
				char *e = memchr(buf + r, '\n', n - r);
				size_t len;

				if (e == NULL)
					return 0;
				len = (size_t)(e - (buf + r));
				r = (size_t)(e - buf) + 1;
				if (len == 0 || (len == 1 && buf[r - 2] == '\r')) {
					*out = w;
					return 1;
				}
			}
		}
		if (n - r < sz)
			return 0;
		memmove(buf + w, buf + r, sz);
		w += sz;
		r += sz;
		if (r < n && buf[r] == '\r')
			r++;
		if (r == n)
			return 0;
		if (buf[r] != '\n')
			return -1;
		r++;
	}
}

/* --- I/O --- */

static void https_flush(struct https_get *g);

static void
https_finish(struct https_get *g, struct https_result *r)
{
	if (g->done)
		return;
	g->done = 1;
	timer_cancel(g->loop, &g->timer);
	g->cb(g->arg, r);
	if (g->conn)
		conn_close(g->conn);	/* on_closed frees g, maybe at once */
}

static void __attribute__((format(printf, 2, 3)))
https_fail(struct https_get *g, const char *fmt, ...)
{
	struct https_result r;
	va_list ap;

	memset(&r, 0, sizeof r);
	va_start(ap, fmt);
	vsnprintf(r.error, sizeof r.error, fmt, ap);
	va_end(ap);
	https_finish(g, &r);
}

/* https_complete - the response is whole (eof: the server closed). */
static void
https_complete(struct https_get *g, int eof)
{
	struct https_result r;
	size_t blen;

	if (g->head_len <= 0) {
		if (eof)
			https_fail(g, "connection closed before a complete response");
		return;
	}
	blen = g->rlen - (size_t)g->head_len;
	if (g->chunked) {
		size_t out = 0;
		int k;

		if (!eof)
			return;
		k = https_dechunk(g->rbuf + g->head_len, blen, &out);
		if (k <= 0) {
			https_fail(g, k < 0 ? "malformed chunked body" : "chunked body cut short");
			return;
		}
		blen = out;
	} else if (g->clen >= 0) {
		if (blen < (size_t)g->clen) {
			if (eof)
				https_fail(g, "body cut short (%zu of %lld bytes)", blen, g->clen);
			return;
		}
		blen = (size_t)g->clen;
	} else if (!eof) {
		return;
	}
	if (blen > g->max_body) {
		https_fail(g, "body larger than %zu bytes", g->max_body);
		return;
	}
	memset(&r, 0, sizeof r);
	r.ok = 1;
	r.status = g->status;
	snprintf(r.content_type, sizeof r.content_type, "%s", g->ctype);
	r.body = g->rbuf + g->head_len;
	r.len = blen;
	https_finish(g, &r);
}

/* Plaintext out of TLS into rbuf, then see whether the response is whole. */
static void
https_read(struct https_get *g)
{
	char tmp[4096];
	size_t n;

	while (!g->done && (n = tls_read(g->tls, tmp, sizeof tmp)) > 0) {
		if (g->rcap - g->rlen < n) {
			https_fail(g, "response larger than %zu bytes", g->rcap);
			return;
		}
		if (g->rbuf == NULL)
			g->rbuf = xmalloc(g->rcap + 1);
		memcpy(g->rbuf + g->rlen, tmp, n);
		g->rlen += n;
		if (g->head_len <= 0) {
			char err[128];
			long h = https_parse_head(g->rbuf, g->rlen, &g->status, g->ctype,
			    sizeof g->ctype, &g->clen, &g->chunked, err, sizeof err);

			if (h < 0) {
				https_fail(g, "%s", err);
				return;
			}
			g->head_len = h;
			if (h > 0 && g->clen > (long long)g->max_body) {
				https_fail(g, "body larger than %zu bytes", g->max_body);
				return;
			}
		}
	}
	if (!g->done)
		https_complete(g, 0);
}

static void
https_drive(struct https_get *g)
{
	enum tls_status st = tls_status(g->tls);

	if (st == TLS_FAILED) {
		https_fail(g, "TLS: %s", tls_error(g->tls));
		return;
	}
	if (st == TLS_OPEN && !g->request_sent) {
		if (tls_write(g->tls, g->request, g->request_len) != g->request_len) {
			https_fail(g, "TLS: cannot write the request");
			return;
		}
		g->request_sent = 1;
	}
	https_read(g);
	/* close_notify ends a body without a length as the TCP close does. */
	if (!g->done && tls_status(g->tls) == TLS_CLOSED)
		https_complete(g, 1);
	if (!g->done)
		https_flush(g);
}

static void
https_flush(struct https_get *g)
{
	struct iovec iov;

	if (g->done || g->conn == NULL || conn_send_busy(g->conn))
		return;
	if (g->soff == g->slen) {
		g->soff = 0;
		g->slen = tls_wire_take(g->tls, g->sbuf, sizeof g->sbuf);
	}
	if (g->slen == 0)
		return;
	iov.iov_base = g->sbuf + g->soff;
	iov.iov_len = g->slen - g->soff;
	conn_send(g->conn, &iov, 1);
}

static void
on_connect(struct conn *c, void *arg, int res)
{
	struct https_get *g = arg;

	if (g->done)
		return;
	if (res < 0) {
		https_fail(g, "connect: %s", strerror(-res));
		return;
	}
	https_flush(g);		/* the ClientHello */
}

static void
on_recv(struct conn *c, void *arg, const char *buf, size_t n)
{
	struct https_get *g = arg;

	if (g->done)
		return;
	tls_input(g->tls, buf, n);
	https_drive(g);
}

static void
on_eof(struct conn *c, void *arg, int res)
{
	struct https_get *g = arg;

	if (g->done)
		return;
	tls_input_eof(g->tls);
	https_drive(g);
	if (!g->done)
		https_complete(g, 1);
}

static void
on_sent(struct conn *c, void *arg, int res)
{
	struct https_get *g = arg;

	if (g->done)
		return;
	if (res < 0) {
		https_fail(g, "send: %s", strerror(-res));
		return;
	}
	g->soff += (size_t)res;
	https_flush(g);
}

static void
on_closed(struct conn *c, void *arg)
{
	struct https_get *g = arg;

	g->conn = NULL;
	if (!g->done) {
		/* Closed under us (loop teardown): nobody to tell. */
		g->done = 1;
		timer_cancel(g->loop, &g->timer);
	}
	tls_free(g->tls);
	free(g->request);
	free(g->rbuf);
	free(g);
}

static void
on_timeout(struct timer *t)
{
	struct https_get *g = (struct https_get *)(void *)((char *)t - offsetof(struct https_get, timer));

	https_fail(g, "timed out");
}

static const struct conn_ops https_conn_ops = {
	on_connect, on_recv, on_eof, on_sent, on_closed,
};

struct https_get *
https_get_start(struct loop *l, struct tls_ctx *x, const struct sockaddr *dst,
    const char *host, const char *path, size_t max_body, uint64_t timeout_ms,
    void (*cb)(void *arg, const struct https_result *r), void *arg, char *err, size_t errsz)
{
	struct https_get *g = xcalloc(1, sizeof *g);
	struct buf req = { 0 };

	g->loop = l;
	g->cb = cb;
	g->arg = arg;
	g->max_body = max_body;
	g->rcap = HTTPS_HEAD_MAX + 2 * max_body + 1024;	/* chunk framing */
	g->clen = -1;
	snprintf(g->host, sizeof g->host, "%s", host);
	g->tls = tls_client_new(x, host, 1, NULL);
	if (g->tls == NULL) {
		snprintf(err, errsz, "cannot allocate a TLS connection");
		free(g);
		return NULL;
	}
	buf_appendf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: volley\r\n"
	    "Accept: text/plain\r\nConnection: close\r\n\r\n", path, host);
	g->request = (char *)req.data;
	g->request_len = req.len;
	g->conn = conn_open(l, &https_conn_ops, g, dst, NULL, timeout_ms, err, errsz);
	if (g->conn == NULL) {
		tls_free(g->tls);
		free(g->request);
		free(g);
		return NULL;
	}
	timer_set(l, &g->timer, timeout_ms, on_timeout);
	return g;
}

void
https_get_cancel(struct https_get *g)
{
	if (g == NULL || g->done)
		return;
	g->done = 1;
	timer_cancel(g->loop, &g->timer);
	if (g->conn)
		conn_close(g->conn);
}
