/*
 * tls.c - TLS over OpenSSL memory BIOs (API and contract: tls.h).
 *
 * Owns: struct tls_ctx (an SSL_CTX and, for clients, the resumption
 * cache: one SSL_SESSION per cache key) and struct tls (an SSL with two
 * BIO_s_mem: rbio holds wire bytes received, wbio wire bytes to send;
 * each gives its buffer back once empty: bio_release()).
 *
 * Notes on the memory-BIO pattern with OpenSSL 3.0:
 *  - an empty rbio answers SSL_ERROR_WANT_READ (BIO_set_mem_eof_return
 *    -1); after the peer's TCP EOF it is set to 0, so SSL_read reports the
 *    end (with SSL_OP_IGNORE_UNEXPECTED_EOF a missing close_notify is a
 *    plain end, not an error: SMTP has its own end, QUIT).
 *  - SSL_write into a memory BIO never returns WANT_WRITE; any SSL call
 *    may queue output, so the caller drains wbio after each one.
 *  - the caller copies wire bytes out (tls_wire_take) into a buffer it
 *    owns: a memory BIO may move its data while a send is in flight.
 *  - SSL_shutdown before SSL_free, or the session cannot be resumed.
 *  - TLS 1.3 tickets arrive after the handshake and are taken by SSL_read:
 *    the new-session callback then stores them under the cache key.
 */
#include "tls.h"
#include "dane.h"
#include "map.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_CACHE_MAX	10000	/* resumption slots per client context */

struct tls_ctx {
	SSL_CTX *ssl;
	int server;
	struct map cache;	/* cache key -> SSL_SESSION * (clients) */
};

struct tls {
	SSL *ssl;
	struct tls_ctx *ctx;
	enum tls_status st;
	char *cache_key;	/* NULL: no resumption */
	int dane;		/* 0: no DANE, 1: TLSA records given, -1: none taken */
	char err[256];
};

static int ex_index = -1;

static const char *const policy_names[] = {
	[TLS_POLICY_DEFAULT] = "opportunistic",
	[TLS_POLICY_OPPORTUNISTIC] = "opportunistic",
	[TLS_POLICY_REQUIRED] = "required",
	[TLS_POLICY_VERIFY] = "verify",
	[TLS_POLICY_DISABLED] = "disabled",
	[TLS_POLICY_DANE] = "dane",
};

const char *
tls_policy_name(enum tls_policy p)
{
	if ((unsigned)p >= sizeof policy_names / sizeof policy_names[0])
		return "unknown";
	return policy_names[p];
}

int
tls_policy_parse(const char *s, enum tls_policy *p)
{
	for (unsigned i = TLS_POLICY_OPPORTUNISTIC; i <= TLS_POLICY_DISABLED; i++)
		if (strcasecmp(s, policy_names[i]) == 0) {
			*p = (enum tls_policy)i;
			return 0;
		}
	return -1;
}

/* ssl_errors - OpenSSL's queued errors as one line after what; empties the queue. */
static void
ssl_errors(char *buf, size_t n, const char *what)
{
	unsigned long e;
	size_t len;

	snprintf(buf, n, "%s", what);
	len = strlen(buf);
	while ((e = ERR_get_error()) != 0) {
		char one[200];

		ERR_error_string_n(e, one, sizeof one);
		if (len + 3 < n) {
			snprintf(buf + len, n - len, ": %s", one);
			len = strlen(buf);
		}
	}
}

/* --- contexts --- */

static void (*session_cached_hook)(const char *key);

void
tls_set_session_hook(void (*fn)(const char *key))
{
	session_cached_hook = fn;
}

int
tls_ctx_has_session(struct tls_ctx *x, const char *key)
{
	SSL_SESSION *s = x != NULL && key != NULL ? map_get(&x->cache, key) : NULL;

	return s != NULL && SSL_SESSION_is_resumable(s);
}

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls *t = SSL_get_ex_data(ssl, ex_index);
	SSL_SESSION *old;

	if (t == NULL || t->cache_key == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	old = map_get(&t->ctx->cache, t->cache_key);
	if (old == NULL && t->ctx->cache.len >= TLS_CACHE_MAX)
		return 0;
	SSL_SESSION_free(old);
	map_put(&t->ctx->cache, t->cache_key, sess);
	if (session_cached_hook != NULL)
		session_cached_hook(t->cache_key);
	return 1;	/* the cache keeps this reference */
}

static struct tls_ctx *
ctx_new(int server, char *err, size_t errsz)
{
	struct tls_ctx *x = xcalloc(1, sizeof *x);

	if (ex_index < 0)
		ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	x->server = server;
	x->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (x->ssl == NULL || ex_index < 0) {
		ssl_errors(err, errsz, "SSL_CTX_new");
		tls_ctx_free(x);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(x->ssl, TLS1_2_VERSION);
	SSL_CTX_set_mode(x->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(x->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	return x;
}

/*
 * system_store - the system's CA certificates, read once into memory: the
 * default bundle file (SSL_CERT_FILE, else OpenSSL's default, on Debian
 * /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt), and the
 * hashed directory (SSL_CERT_DIR, else the default) only when there is no
 * bundle. Not SSL_CTX_set_default_verify_paths(): OpenSSL 3 adds to it a
 * "store" lookup of the certs directory that lists the whole directory on
 * every handshake (a readdir of hundreds of entries each time; a thousand
 * STARTTLS sessions spent more on that than on the cryptography).
 */
static int
system_store(SSL_CTX *ctx)
{
	const char *file = getenv(X509_get_default_cert_file_env());
	const char *dir = getenv(X509_get_default_cert_dir_env());

	if (file == NULL || file[0] == '\0')
		file = X509_get_default_cert_file();
	if (dir == NULL || dir[0] == '\0')
		dir = X509_get_default_cert_dir();
	if (access(file, R_OK) == 0 && SSL_CTX_load_verify_locations(ctx, file, NULL) == 1)
		return 1;
	ERR_clear_error();
	return SSL_CTX_load_verify_locations(ctx, NULL, dir);
}

struct tls_ctx *
tls_ctx_client(const char *ca_file, char *err, size_t errsz)
{
	struct tls_ctx *x = ctx_new(0, err, errsz);

	if (x == NULL)
		return NULL;
	if (ca_file != NULL && ca_file[0]) {
		if (SSL_CTX_load_verify_locations(x->ssl, ca_file, NULL) != 1) {
			ssl_errors(err, errsz, ca_file);
			tls_ctx_free(x);
			return NULL;
		}
	} else if (system_store(x->ssl) != 1) {
		ssl_errors(err, errsz, "the system CA store");
		tls_ctx_free(x);
		return NULL;
	}
	/* DANE is only used by connections that call SSL_dane_enable. */
	if (SSL_CTX_dane_enable(x->ssl) <= 0) {
		ssl_errors(err, errsz, "SSL_CTX_dane_enable");
		tls_ctx_free(x);
		return NULL;
	}
	SSL_CTX_set_session_cache_mode(x->ssl,
	    SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(x->ssl, on_new_session);
	return x;
}

static int
self_signed(SSL_CTX *ctx, const char *cn)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	int ok = 0;

	if (pkey == NULL || x == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	ok = X509_sign(x, pkey, EVP_sha256()) != 0 && SSL_CTX_use_certificate(ctx, x) == 1 &&
	    SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ok;
}

struct tls_ctx *
tls_ctx_server(const char *cert, const char *key, const char *cn, char *err, size_t errsz)
{
	struct tls_ctx *x;

	if ((cert == NULL) != (key == NULL)) {
		snprintf(err, errsz, "give both a certificate and a key (or neither, for a "
		    "self-signed one)");
		return NULL;
	}
	if ((x = ctx_new(1, err, errsz)) == NULL)
		return NULL;
	/* Many short sessions from the same clients: let them resume. */
	SSL_CTX_set_session_cache_mode(x->ssl, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(x->ssl, (const unsigned char *)"volley", 6);
	if (cert == NULL) {
		if (!self_signed(x->ssl, cn && cn[0] ? cn : "localhost")) {
			ssl_errors(err, errsz, "cannot make a self-signed certificate");
			goto fail;
		}
	} else {
		if (SSL_CTX_use_certificate_chain_file(x->ssl, cert) != 1) {
			ssl_errors(err, errsz, cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(x->ssl, key, SSL_FILETYPE_PEM) != 1) {
			ssl_errors(err, errsz, key);
			goto fail;
		}
	}
	if (SSL_CTX_check_private_key(x->ssl) != 1) {
		ssl_errors(err, errsz, "the key does not match the certificate");
		goto fail;
	}
	return x;
fail:
	tls_ctx_free(x);
	return NULL;
}

void
tls_ctx_free(struct tls_ctx *x)
{
	const char *k;
	void *v;

	if (x == NULL)
		return;
	for (size_t i = 0; map_iter(&x->cache, &i, &k, &v);)
		SSL_SESSION_free(v);
	map_free(&x->cache);
	SSL_CTX_free(x->ssl);
	free(x);
}

size_t
tls_ctx_cached(const struct tls_ctx *x)
{
	return x->cache.len;
}

/* --- connections --- */

static struct tls *
conn_new(struct tls_ctx *x)
{
	struct tls *t;
	BIO *rb, *wb;
	SSL *ssl = SSL_new(x->ssl);

	if (ssl == NULL) {
		ERR_clear_error();
		return NULL;
	}
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	if (rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(ssl, rb, wb);
	t = xcalloc(1, sizeof *t);
	t->ssl = ssl;
	t->ctx = x;
	t->st = TLS_HANDSHAKE;
	SSL_set_ex_data(ssl, ex_index, t);
	return t;
}

/*
 * bio_release - give an empty memory BIO's buffer back. A BIO_s_mem never
 * shrinks: without this each connection keeps, for as long as it lives,
 * a buffer the size of the largest flight it ever held (the server's
 * certificate chain, a big reply burst). The next write allocates what it
 * needs again. Leaves the BIO as it is when it holds data or when the new
 * (empty) BUF_MEM cannot be allocated.
 */
static void
bio_release(BIO *b)
{
	BUF_MEM *m = NULL, *fresh;

	if (b == NULL || BIO_ctrl_pending(b) != 0)
		return;
	BIO_get_mem_ptr(b, &m);
	if (m == NULL || m->max == 0)
		return;
	if ((fresh = BUF_MEM_new()) == NULL) {
		ERR_clear_error();
		return;
	}
	BIO_set_mem_buf(b, fresh, BIO_CLOSE);	/* frees the old one */
}

/* fail - the connection is dead: keep why (what + OpenSSL's reasons). */
static void
fail(struct tls *t, const char *what)
{
	long v = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;

	t->st = TLS_FAILED;
	if (v != X509_V_OK && (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER)) {
		char e[200];

		ssl_errors(e, sizeof e, what);
		snprintf(t->err, sizeof t->err, "%s (certificate: %s)", e,
		    X509_verify_cert_error_string(v));
	} else {
		ssl_errors(t->err, sizeof t->err, what);
	}
}

/* is_literal - an address literal is never sent as SNI. */
static int
is_literal(const char *h)
{
	unsigned char a[16];

	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* drive - advance the handshake; on failure set why. */
static void
drive(struct tls *t)
{
	int r, e;

	if (t->st != TLS_HANDSHAKE)
		return;
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->st = TLS_OPEN;
		return;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		return;
	}
	fail(t, "TLS handshake failed");
}

/* client_setup - SNI, name check, verify mode, resumption: all but the
 * first flight. The name (trailing dot dropped) goes to name[256]. */
static void
client_setup(struct tls *t, const char *host, int verify, const char *cache_key, char *name)
{
	size_t l;

	snprintf(name, 256, "%s", host ? host : "");
	l = strlen(name);
	if (l > 0 && name[l - 1] == '.')
		name[--l] = '\0';
	SSL_set_connect_state(t->ssl);
	if (l > 0 && !is_literal(name)) {
		SSL_set_tlsext_host_name(t->ssl, name);
		SSL_set1_host(t->ssl, name);	/* RFC 6125 check: verify_result says */
	}
	SSL_set_verify(t->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (cache_key != NULL) {
		SSL_SESSION *s = map_get(&t->ctx->cache, cache_key);

		t->cache_key = xstrdup(cache_key);
		if (s != NULL && SSL_SESSION_is_resumable(s))
			SSL_set_session(t->ssl, s);
	}
}

struct tls *
tls_client_new(struct tls_ctx *x, const char *host, int verify, const char *cache_key)
{
	struct tls *t = conn_new(x);
	char name[256];

	if (t == NULL)
		return NULL;
	client_setup(t, host, verify, cache_key, name);
	ERR_clear_error();
	drive(t);	/* the ClientHello */
	return t;
}

/*
 * tls_client_new_dane - RFC 7672: the TLSA base domain (the MX host) is
 * the reference identifier for DANE-TA(2); DANE-EE(3) matches the key or
 * certificate alone (DANE_FLAG_NO_DANE_EE_NAMECHECKS; OpenSSL checks no
 * validity dates for it either). PKIX usages never reach OpenSSL.
 */
struct tls *
tls_client_new_dane(struct tls_ctx *x, const char *host, const struct dane_set *tlsa,
    const char *cache_key)
{
	struct tls *t = conn_new(x);
	char name[256];
	size_t added = 0;

	if (t == NULL)
		return NULL;
	client_setup(t, host, 0, cache_key, name);
	if (name[0] != '\0' && SSL_dane_enable(t->ssl, name) > 0) {
		SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
		for (size_t i = 0; tlsa != NULL && i < tlsa->n; i++) {
			const struct dane_tlsa *r = &tlsa->r[i];

			if (dane_usable(r) && SSL_dane_tlsa_add(t->ssl, r->usage, r->selector,
			    r->mtype, r->data, r->len) > 0)
				added++;
		}
	}
	t->dane = added ? 1 : -1;
	if (added == 0) {
		/* Usable records by RFC 7672 that OpenSSL would not take (or
		 * DANE could not be enabled): never go on unauthenticated
		 * under a DANE policy. The session fails (tls_failure). */
		ERR_clear_error();
		t->st = TLS_FAILED;
		snprintf(t->err, sizeof t->err, "DANE: no TLSA record could be used for %.200s",
		    name[0] ? name : "the MX host");
		return t;
	}
	SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
	ERR_clear_error();
	drive(t);	/* the ClientHello */
	return t;
}

const char *
tls_dane_text(const struct tls *t, char *buf, size_t n)
{
	uint8_t u, sel, mt;
	int depth;

	if (t == NULL || t->dane == 0) {
		snprintf(buf, n, "%s", "");
		return buf;
	}
	if (t->dane < 0) {
		snprintf(buf, n, "no usable TLSA (unauthenticated)");
		return buf;
	}
	depth = SSL_get0_dane_authority(t->ssl, NULL, NULL);
	if (depth < 0 || SSL_get0_dane_tlsa(t->ssl, &u, &sel, &mt, NULL, NULL) < 0) {
		snprintf(buf, n, "%s", tls_resumed(t) ? "resumed (verified before)" : "not verified");
		return buf;
	}
	snprintf(buf, n, "verified usage=%u selector=%u mtype=%u depth=%d", u, sel, mt, depth);
	return buf;
}

struct tls *
tls_server_new(struct tls_ctx *x)
{
	struct tls *t = conn_new(x);

	if (t != NULL)
		SSL_set_accept_state(t->ssl);
	return t;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	free(t->cache_key);
	free(t);
}

enum tls_status
tls_input(struct tls *t, const void *buf, size_t n)
{
	if (t->st == TLS_FAILED || n == 0)
		return t->st;
	if (n > (size_t)0x7fffffff || BIO_write(SSL_get_rbio(t->ssl), buf, (int)n) != (int)n) {
		fail(t, "cannot buffer TLS input");
		return t->st;
	}
	drive(t);
	bio_release(SSL_get_rbio(t->ssl));
	return t->st;
}

void
tls_input_eof(struct tls *t)
{
	BIO_set_mem_eof_return(SSL_get_rbio(t->ssl), 0);
	if (t->st == TLS_HANDSHAKE) {
		ERR_clear_error();
		t->st = TLS_FAILED;
		snprintf(t->err, sizeof t->err, "connection closed during the TLS handshake");
	}
}

size_t
tls_read(struct tls *t, void *buf, size_t n)
{
	int r, e;

	if (t->st != TLS_OPEN || n == 0)
		return 0;
	if (n > 0x7fffffff)
		n = 0x7fffffff;
	r = SSL_read(t->ssl, buf, (int)n);
	if (r > 0)
		return (size_t)r;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		bio_release(SSL_get_rbio(t->ssl));	/* all taken: idle */
	} else if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		t->st = TLS_CLOSED;
	} else {
		fail(t, "TLS read failed");
	}
	return 0;
}

size_t
tls_write(struct tls *t, const void *buf, size_t n)
{
	size_t done = 0;

	if (t->st != TLS_OPEN)
		return 0;
	while (done < n) {
		int chunk = n - done > 0x40000000 ? 0x40000000 : (int)(n - done);
		int r = SSL_write(t->ssl, (const char *)buf + done, chunk);

		if (r <= 0) {
			fail(t, "TLS write failed");
			return 0;
		}
		done += (size_t)r;
	}
	return n;
}

void
tls_close_notify(struct tls *t)
{
	if (t->st == TLS_OPEN || t->st == TLS_CLOSED) {
		if (SSL_shutdown(t->ssl) < 0)
			ERR_clear_error();
	}
}

size_t
tls_wire_pending(const struct tls *t)
{
	return BIO_ctrl_pending(SSL_get_wbio(t->ssl));
}

size_t
tls_wire_take(struct tls *t, void *buf, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	if (n > 0x7fffffff)
		n = 0x7fffffff;
	r = BIO_read(SSL_get_wbio(t->ssl), buf, (int)n);
	bio_release(SSL_get_wbio(t->ssl));
	return r > 0 ? (size_t)r : 0;
}

size_t
tls_buffered(const struct tls *t)
{
	BUF_MEM *r = NULL, *w = NULL;

	BIO_get_mem_ptr(SSL_get_rbio(t->ssl), &r);
	BIO_get_mem_ptr(SSL_get_wbio(t->ssl), &w);
	return (r ? r->max : 0) + (w ? w->max : 0);
}

enum tls_status
tls_status(const struct tls *t)
{
	return t->st;
}

const char *
tls_error(const struct tls *t)
{
	return t->err;
}

const char *
tls_describe(const struct tls *t, char *buf, size_t n)
{
	if (t == NULL || (t->st != TLS_OPEN && t->st != TLS_CLOSED))
		snprintf(buf, n, "none");
	else
		snprintf(buf, n, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
	return buf;
}

long
tls_verify_result(const struct tls *t)
{
	return SSL_get_verify_result(t->ssl);
}

const char *
tls_verify_text(const struct tls *t)
{
	return X509_verify_cert_error_string(SSL_get_verify_result(t->ssl));
}

int
tls_resumed(const struct tls *t)
{
	return SSL_session_reused(t->ssl);
}

int
tls_stage_out(struct tls *t, struct buf *out, struct buf *tx)
{
	int rc = 0;

	if (t != NULL) {
		size_t pend;

		if (out->len > 0 && tls_status(t) == TLS_OPEN) {
			if (tls_write(t, out->data, out->len) != out->len)
				rc = -1;
			buf_free(out);
		}
		pend = tls_wire_pending(t);
		if (pend > 0) {
			buf_reserve(tx, pend);
			tx->len += tls_wire_take(t, tx->data + tx->len, pend);
		}
	} else if (out->len > 0) {
		struct buf swap = *tx;	/* tx is empty: no send in flight */
		*tx = *out;
		*out = swap;
		out->len = 0;
	}
	return rc;
}
