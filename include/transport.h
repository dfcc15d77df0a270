/*
 * transport.h - what sits between a connection's bytes and the protocol
 * above it: a small vtable, so that a TLS transport (OpenSSL with memory
 * BIOs) can slide in under the SMTP client without the client or the
 * session's protocol glue changing.
 *
 * The layer above (the upper side) is reached through three callbacks:
 *   deliver(buf, n)   plaintext received
 *   pull(iov)         plaintext waiting to go out (up to 3 iovecs; they
 *                     stay valid until pushed() has been called for them)
 *   pushed(n)         n bytes of what pull() gave have left
 * The layer below is driven by the session:
 *   transport_input(buf, n)    wire bytes received; the transport decodes
 *                              them and calls deliver() (0, or -1 on a
 *                              fatal transport error, text in err())
 *   transport_output(iov, max) wire bytes to send now (max >=
 *                              TRANSPORT_IOV_MIN); the count, 0 for none
 *   transport_sent(n)          n bytes of the last output were written
 *                              (n may be short: output again for the rest)
 * One output is in flight at a time. What output() points to stays valid
 * until sent() is called for it.
 *
 * raw: wire bytes are the plaintext. input() hands them up as they are;
 * output() is pull(); sent() is pushed(). It never fails.
 */
#ifndef VOLLEY_TRANSPORT_H
#define VOLLEY_TRANSPORT_H

#include <stddef.h>
#include <sys/uio.h>

#define TRANSPORT_IOV_MIN	3

struct transport;

struct transport_upper {
	void (*deliver)(void *arg, const char *buf, size_t n);
	int (*pull)(void *arg, struct iovec iov[3]);
	void (*pushed)(void *arg, size_t n);
};

struct transport_vtable {
	const char *name;	/* "raw", "tls" */
	int (*input)(struct transport *t, const char *buf, size_t n);
	int (*output)(struct transport *t, struct iovec *iov, int max);
	void (*sent)(struct transport *t, size_t n);
	const char *(*err)(const struct transport *t);
	void (*free)(struct transport *t);
};

/* Every transport starts with this; its own state follows. */
struct transport {
	const struct transport_vtable *vt;
	const struct transport_upper *up;
	void *arg;		/* for the upper callbacks */
};

struct transport *transport_raw_new(const struct transport_upper *up, void *arg);

static inline int
transport_input(struct transport *t, const char *buf, size_t n)
{
	return t->vt->input(t, buf, n);
}

static inline int
transport_output(struct transport *t, struct iovec *iov, int max)
{
	return t->vt->output(t, iov, max);
}

static inline void
transport_sent(struct transport *t, size_t n)
{
	t->vt->sent(t, n);
}

/* The last fatal error as text ("" if none). */
static inline const char *
transport_err(const struct transport *t)
{
	return t->vt->err(t);
}

static inline const char *
transport_name(const struct transport *t)
{
	return t->vt->name;
}

/* NULL is fine. */
static inline void
transport_free(struct transport *t)
{
	if (t)
		t->vt->free(t);
}

#endif
