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
 *
 * tls: a TLS client connection over OpenSSL memory BIOs (tls.h). Created
 * after the 220 to STARTTLS, it has the ClientHello ready at once. input()
 * decrypts and calls deliver() with the plaintext, and secured() once,
 * when the handshake is done; -1 when TLS failed (handshake, bad record,
 * alert), the reason in err(). output() encrypts what pull() gives (at
 * most TRANSPORT_TLS_CHUNK plaintext bytes per output: the rest waits, as
 * after a short send) and calls pushed() for it at once (the plaintext is
 * copied into TLS records), then hands out the ciphertext in one iovec
 * from a buffer it owns, freed when sent: an idle TLS transport holds no
 * buffer of its own. close_notify() queues TLS's close_notify for the
 * next output.
 */
#ifndef VOLLEY_TRANSPORT_H
#define VOLLEY_TRANSPORT_H

#include <stddef.h>
#include <sys/uio.h>

#define TRANSPORT_IOV_MIN	3
#define TRANSPORT_TLS_CHUNK	65536

struct transport;
struct tls;
struct tls_ctx;

struct transport_upper {
	void (*deliver)(void *arg, const char *buf, size_t n);
	int (*pull)(void *arg, struct iovec iov[3]);
	void (*pushed)(void *arg, size_t n);
	void (*secured)(void *arg);	/* tls: handshake done (NULL: not told) */
};

struct transport_vtable {
	const char *name;	/* "raw", "tls" */
	int (*input)(struct transport *t, const char *buf, size_t n);
	int (*output)(struct transport *t, struct iovec *iov, int max);
	void (*sent)(struct transport *t, size_t n);
	const char *(*err)(const struct transport *t);
	void (*close_notify)(struct transport *t);
	void (*free)(struct transport *t);
};

/* Every transport starts with this; its own state follows. */
struct transport {
	const struct transport_vtable *vt;
	const struct transport_upper *up;
	void *arg;		/* for the upper callbacks */
};

struct transport *transport_raw_new(const struct transport_upper *up, void *arg);
/*
 * transport_tls_new - a TLS client transport to host (SNI and name check;
 * verify: fail the handshake on an untrusted chain or a wrong name),
 * resuming from x's cache under cache_key (NULL: none). NULL if OpenSSL
 * cannot allocate.
 */
struct transport *transport_tls_new(const struct transport_upper *up, void *arg,
    struct tls_ctx *x, const char *host, int verify, const char *cache_key);
/* transport_tls_new authenticated by DANE: tls_client_new_dane (tls.h). */
struct dane_set;
struct transport *transport_tls_new_dane(const struct transport_upper *up, void *arg,
    struct tls_ctx *x, const char *host, const struct dane_set *tlsa, const char *cache_key);
/* The TLS connection under t, or NULL (raw). */
struct tls *transport_tls(const struct transport *t);

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

/* Queue the end of the transport (TLS close_notify) for the next output. */
static inline void
transport_close_notify(struct transport *t)
{
	t->vt->close_notify(t);
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
