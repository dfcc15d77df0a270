/*
 * transport.c - the transports under the SMTP client (API and contract:
 * transport.h): raw, where the bytes on the wire are the plaintext, and
 * tls, a TLS client over OpenSSL memory BIOs (tls.c does the TLS; this
 * file moves bytes between it, the session below and the client above).
 *
 * tls invariants: one output is in flight at a time and its ciphertext
 * (`wire`, copied out of OpenSSL's write BIO) stays untouched until
 * sent() has covered all of it; `wire` is freed once sent, so an idle
 * connection holds only OpenSSL's own state (which SSL_MODE_RELEASE_BUFFERS
 * keeps small). Plaintext is taken from the upper side only after the
 * handshake, at most TRANSPORT_TLS_CHUNK bytes per output, so a large
 * body is never encrypted into memory all at once.
 */
#include "transport.h"
#include "tls.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- raw --- */

static int
raw_input(struct transport *t, const char *buf, size_t n)
{
	t->up->deliver(t->arg, buf, n);
	return 0;
}

static int
raw_output(struct transport *t, struct iovec *iov, int max)
{
	if (max < TRANSPORT_IOV_MIN)
		panic("transport raw: output with room for %d iovecs", max);
	return t->up->pull(t->arg, iov);
}

static void
raw_sent(struct transport *t, size_t n)
{
	t->up->pushed(t->arg, n);
}

static const char *
raw_err(const struct transport *t)
{
	(void)t;
	return "";
}

static void
raw_close_notify(struct transport *t)
{
	(void)t;
}

static void
raw_free(struct transport *t)
{
	free(t);
}

static const struct transport_vtable raw_vt = {
	.name = "raw",
	.input = raw_input,
	.output = raw_output,
	.sent = raw_sent,
	.err = raw_err,
	.close_notify = raw_close_notify,
	.free = raw_free,
};

struct transport *
transport_raw_new(const struct transport_upper *up, void *arg)
{
	struct transport *t = xcalloc(1, sizeof *t);

	t->vt = &raw_vt;
	t->up = up;
	t->arg = arg;
	return t;
}

/* --- tls --- */

struct tls_transport {
	struct transport base;
	struct tls *tls;
	struct buf wire;	/* ciphertext handed out by the last output */
	size_t wire_off;	/* of it, bytes sent */
	int told;		/* secured() was called */
	char err[300];
};

#define tt_of(t) ((struct tls_transport *)(void *)(t))

static int
tls_t_input(struct transport *t, const char *buf, size_t n)
{
	struct tls_transport *tt = tt_of(t);
	enum tls_status st = tls_input(tt->tls, buf, n);
	char plain[16384];
	size_t k;

	if (st == TLS_OPEN && !tt->told) {
		tt->told = 1;
		if (t->up->secured)
			t->up->secured(t->arg);
	}
	while ((k = tls_read(tt->tls, plain, sizeof plain)) > 0)
		t->up->deliver(t->arg, plain, k);
	if (tls_status(tt->tls) == TLS_FAILED) {
		snprintf(tt->err, sizeof tt->err, "%s", tls_error(tt->tls));
		return -1;
	}
	return 0;
}

/*
 * tls_t_encrypt - up to TRANSPORT_TLS_CHUNK bytes of what the upper side
 * has. Pieces that fit together in one TLS record (the commands, the job's
 * id header and a small message) are gathered and written as one: each
 * SSL_write is a record of its own, with its own nonce, tag and header,
 * and three records per message cost more than the copy.
 */
#define TLS_RECORD_MAX	16384
static void
tls_t_encrypt(struct tls_transport *tt)
{
	struct transport *t = &tt->base;
	struct iovec iov[3];
	char gather[TLS_RECORD_MAX];
	size_t done = 0, g = 0;
	int n, ok = 1;

	if (tls_status(tt->tls) != TLS_OPEN)
		return;
	n = t->up->pull(t->arg, iov);
	for (int i = 0; i < n && done + g < TRANSPORT_TLS_CHUNK; i++) {
		size_t k = iov[i].iov_len;

		if (k > TRANSPORT_TLS_CHUNK - done - g)
			k = TRANSPORT_TLS_CHUNK - done - g;
		if (g + k <= sizeof gather) {
			memcpy(gather + g, iov[i].iov_base, k);
			g += k;
			continue;
		}
		if (g > 0) {
			if (tls_write(tt->tls, gather, g) != g) {
				ok = 0;
				break;
			}
			done += g;
			g = 0;
		}
		if (tls_write(tt->tls, iov[i].iov_base, k) != k) {
			ok = 0;
			break;
		}
		done += k;
	}
	if (ok && g > 0 && tls_write(tt->tls, gather, g) == g)
		done += g;
	if (n > 0)
		t->up->pushed(t->arg, done);
}

static int
tls_t_output(struct transport *t, struct iovec *iov, int max)
{
	struct tls_transport *tt = tt_of(t);
	size_t pend;

	if (max < 1)
		panic("transport tls: output with room for %d iovecs", max);
	if (tt->wire_off >= tt->wire.len) {
		tt->wire.len = 0;
		tt->wire_off = 0;
		tls_t_encrypt(tt);
		if ((pend = tls_wire_pending(tt->tls)) > 0) {
			buf_reserve(&tt->wire, pend);
			tt->wire.len = tls_wire_take(tt->tls, tt->wire.data, pend);
		}
		if (tt->wire.len == 0) {
			buf_free(&tt->wire);
			return 0;
		}
	}
	iov[0].iov_base = tt->wire.data + tt->wire_off;
	iov[0].iov_len = tt->wire.len - tt->wire_off;
	return 1;
}

static void
tls_t_sent(struct transport *t, size_t n)
{
	struct tls_transport *tt = tt_of(t);

	if (n > tt->wire.len - tt->wire_off)
		panic("transport tls: %zu bytes sent of %zu", n, tt->wire.len - tt->wire_off);
	tt->wire_off += n;
	if (tt->wire_off == tt->wire.len) {
		buf_free(&tt->wire);
		tt->wire_off = 0;
	}
}

static const char *
tls_t_err(const struct transport *t)
{
	return tt_of(t)->err;
}

static void
tls_t_close_notify(struct transport *t)
{
	tls_close_notify(tt_of(t)->tls);
}

static void
tls_t_free(struct transport *t)
{
	struct tls_transport *tt = tt_of(t);

	tls_free(tt->tls);
	buf_free(&tt->wire);
	free(tt);
}

static const struct transport_vtable tls_vt = {
	.name = "tls",
	.input = tls_t_input,
	.output = tls_t_output,
	.sent = tls_t_sent,
	.err = tls_t_err,
	.close_notify = tls_t_close_notify,
	.free = tls_t_free,
};

static struct transport *
tls_t_wrap(const struct transport_upper *up, void *arg, struct tls *tls)
{
	struct tls_transport *tt;

	if (tls == NULL)
		return NULL;
	tt = xcalloc(1, sizeof *tt);
	tt->base.vt = &tls_vt;
	tt->base.up = up;
	tt->base.arg = arg;
	tt->tls = tls;
	return &tt->base;
}

struct transport *
transport_tls_new(const struct transport_upper *up, void *arg, struct tls_ctx *x,
    const char *host, int verify, const char *cache_key)
{
	return tls_t_wrap(up, arg, tls_client_new(x, host, verify, cache_key));
}

struct transport *
transport_tls_new_dane(const struct transport_upper *up, void *arg, struct tls_ctx *x,
    const char *host, const struct dane_set *tlsa, const char *cache_key)
{
	return tls_t_wrap(up, arg, tls_client_new_dane(x, host, tlsa, cache_key));
}

struct tls *
transport_tls(const struct transport *t)
{
	return t != NULL && t->vt == &tls_vt ? tt_of(t)->tls : NULL;
}
