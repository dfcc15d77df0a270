/*
 * tls.h - TLS over OpenSSL memory BIOs: bytes in, bytes out, no sockets,
 * no blocking, no threads. One module for every TLS user of the project:
 * the engine's STARTTLS transport (client side), volley-sink and the
 * inbound listener (server side).
 *
 * The caller moves the bytes:
 *   wire bytes received      -> tls_input()   (drives the handshake)
 *   plaintext for the caller <- tls_read()    (loop until it returns 0)
 *   plaintext to send        -> tls_write()   (after the handshake)
 *   wire bytes to send       <- tls_wire_take() (after EVERY call above:
 *                               any of them may produce output: handshake
 *                               messages, alerts, tickets, close_notify)
 *   peer closed the TCP side -> tls_input_eof()
 *   before closing           -> tls_close_notify(), then send the wire bytes
 *
 * Contexts: one client context per CA setting (the system store, or a CA
 * file for tests and private CAs), one server context per certificate.
 * Both allow TLS 1.2 and 1.3 only and release OpenSSL's read/write
 * buffers while a connection is idle (SSL_MODE_RELEASE_BUFFERS); the two
 * memory BIOs give their buffers back as soon as they are empty (a
 * BIO_s_mem never shrinks on its own), so an idle connection holds no
 * wire buffer at all (tls_buffered()).
 *
 * Client connections: SNI and the RFC 6125 name check use the MX host
 * name (never an address literal). verify = 0: the handshake succeeds
 * whatever the certificate (opportunistic TLS); tls_verify_result() still
 * says what a check would have found. verify = 1: an untrusted chain or a
 * name mismatch fails the handshake. A client context keeps one session
 * per cache key (the caller makes it from MX host, port and policy) for
 * resumption; a session obtained under one key is never offered under
 * another, so an unverified session never resumes a verified policy.
 *
 * Invariants: a failed connection stays failed (every later call is a
 * no-op returning 0 / TLS_FAILED); OpenSSL's error queue is always left
 * empty, so one connection's errors never show up in another's text.
 */
#ifndef VOLLEY_TLS_H
#define VOLLEY_TLS_H

#include <stddef.h>

/* Per site/domain policy (`tls = ...`); DEFAULT inherits (then opportunistic). */
enum tls_policy {
	TLS_POLICY_DEFAULT = 0,
	TLS_POLICY_OPPORTUNISTIC,	/* TLS when offered, else clear text (RFC 7435) */
	TLS_POLICY_REQUIRED,		/* no TLS, no mail: defer */
	TLS_POLICY_VERIFY,		/* required, and chain + MX name verified */
	TLS_POLICY_DISABLED,		/* never */
	TLS_POLICY_DANE,		/* required, peer authenticated by TLSA (dane.h);
					 * chosen per MX host, never configured */
};
const char *tls_policy_name(enum tls_policy p);
/* "opportunistic", "required", "verify", "disabled": 0, else -1. */
int tls_policy_parse(const char *s, enum tls_policy *p);

enum tls_status {
	TLS_HANDSHAKE = 0,	/* handshake in progress */
	TLS_OPEN,		/* handshake done: data flows */
	TLS_CLOSED,		/* the peer sent close_notify (or a clean EOF) */
	TLS_FAILED,		/* fatal: tls_error() says why */
};

struct tls_ctx;
struct tls;

/*
 * tls_ctx_client - a client context trusting ca_file (PEM, NULL: the
 * system store). NULL on failure with the reason in err.
 */
struct tls_ctx *tls_ctx_client(const char *ca_file, char *err, size_t errsz);
/*
 * tls_ctx_server - a server context for cert + key (PEM files); with both
 * NULL a self-signed P-256 certificate for cn is made in memory. NULL on
 * failure with the reason in err.
 */
struct tls_ctx *tls_ctx_server(const char *cert, const char *key, const char *cn,
    char *err, size_t errsz);
/* Only once no connection of it is left. NULL is fine. */
void tls_ctx_free(struct tls_ctx *x);
/* Sessions kept for resumption (tests, status). */
size_t tls_ctx_cached(const struct tls_ctx *x);

/*
 * tls_client_new - a client connection to host; its ClientHello is ready
 * in tls_wire_take() at once. cache_key: the resumption slot (NULL: no
 * resumption). Returns NULL only if OpenSSL cannot allocate.
 */
struct tls *tls_client_new(struct tls_ctx *x, const char *host, int verify,
    const char *cache_key);
/*
 * tls_client_new_dane - a client connection authenticated by DANE (RFC
 * 7672): the usable records of tlsa are handed to OpenSSL, the peer must
 * match one of them (DANE-EE: the key or certificate itself, no name or
 * date check; DANE-TA: a chain to that trust anchor naming host). If
 * OpenSSL takes none of them, the connection is encrypted but not
 * authenticated (what RFC 7672 asks for unusable records).
 */
struct dane_set;
struct tls *tls_client_new_dane(struct tls_ctx *x, const char *host,
    const struct dane_set *tlsa, const char *cache_key);
/* What DANE found, for logs: "verified usage=3 selector=1 mtype=1 depth=0",
 * "not verified", "no usable TLSA (unauthenticated)"; "" without DANE. */
const char *tls_dane_text(const struct tls *t, char *buf, size_t n);
struct tls *tls_server_new(struct tls_ctx *x);
/* NULL is fine. Call tls_close_notify() first for a clean close. */
void tls_free(struct tls *t);

/* Wire bytes from the peer. Returns the status after them. */
enum tls_status tls_input(struct tls *t, const void *buf, size_t n);
/* The peer closed TCP: a later tls_read() reports the end. */
void tls_input_eof(struct tls *t);
/* Decrypted plaintext, up to n bytes: the count, 0 when nothing is ready. */
size_t tls_read(struct tls *t, void *buf, size_t n);
/* Encrypt plaintext: returns n, or 0 before the handshake is done or on failure. */
size_t tls_write(struct tls *t, const void *buf, size_t n);
/* Queue close_notify (once; nothing after it). */
void tls_close_notify(struct tls *t);
/* Wire bytes waiting to be sent, and take up to n of them. */
size_t tls_wire_pending(const struct tls *t);
size_t tls_wire_take(struct tls *t, void *buf, size_t n);
/*
 * tls_stage_out - a server session's replies on their way out: the
 * plaintext queued in out goes into t (once the handshake is done) and
 * the ciphertext t has for the wire is appended to tx; with t NULL, out
 * simply becomes tx. tx must not be in a send. Returns -1 when t would
 * not take the whole of out (the session should close), else 0. Shared
 * by volley-sink and the inbound listener.
 */
struct buf;
int tls_stage_out(struct tls *t, struct buf *out, struct buf *tx);

/* tls_ctx_has_session - whether x keeps a resumable session for key. */
int tls_ctx_has_session(struct tls_ctx *x, const char *key);
/* tls_set_session_hook - fn(key) is called whenever a client connection's
 * new session (a TLS 1.3 ticket) is kept for key; from inside OpenSSL:
 * fn must not call back into this module for that connection. */
void tls_set_session_hook(void (*fn)(const char *key));
/* Bytes the two memory BIOs have allocated (0 once both are empty). */
size_t tls_buffered(const struct tls *t);

enum tls_status tls_status(const struct tls *t);
const char *tls_error(const struct tls *t);	/* "" if none */
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once open, else "none". */
const char *tls_describe(const struct tls *t, char *buf, size_t n);
/* X509_V_OK (0) or the code a verification found, and its text. */
long tls_verify_result(const struct tls *t);
const char *tls_verify_text(const struct tls *t);
int tls_resumed(const struct tls *t);

#endif
