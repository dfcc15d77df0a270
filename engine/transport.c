/*
 * transport.c - the raw transport: the bytes on the wire are the
 * plaintext (API and contract: transport.h). It keeps no state of its
 * own; a TLS transport with OpenSSL memory BIOs implements the same
 * vtable, with its own buffers for ciphertext in flight.
 */
#include "transport.h"
#include "util.h"

#include <stdlib.h>

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
