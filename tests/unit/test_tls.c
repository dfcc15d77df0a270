/*
 * test_tls.c - tls.c: a client and a server pumped against each other in
 * memory (no sockets). The handshake (TLS 1.3 by default, SNI), data both
 * ways (small and large, split at odd sizes), close_notify, resumption per
 * cache key (and never across keys), verification (untrusted chain, wrong
 * name, trusted CA file, verify off still reporting the result), failing
 * handshakes (garbage, plaintext where a ServerHello is due, EOF), TLS 1.2
 * as the floor, and the policy names. Then the TLS transport (transport.c)
 * against an in-memory server: secured() once, plaintext both ways, a
 * 300 KB upper send taken in 64 KiB pieces with pushed() for each, short
 * wire sends, no buffer held once sent, close_notify, a failed handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dane.h"
#include "tls.h"
#include "transport.h"
#include "util.h"

#define CONN_IOV_MAX_TEST 4

static char tmpdir[64];
static char cert_path[128], key_path[128], other_path[128];

/* make_cert - a self-signed P-256 certificate for cn, as PEM files. */
static int
make_cert(const char *cn, const char *cert, const char *key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (!X509_sign(x, pk, EVP_sha256()))
		return -1;
	if ((f = fopen(cert, "w")) == NULL)
		return -1;
	PEM_write_X509(f, x);
	fclose(f);
	if (key != NULL) {
		if ((f = fopen(key, "w")) == NULL)
			return -1;
		PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
		fclose(f);
	}
	X509_free(x);
	EVP_PKEY_free(pk);
	return 0;
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/volley-tls-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof key_path, "%s/key.pem", tmpdir);
	snprintf(other_path, sizeof other_path, "%s/other.pem", tmpdir);
	if (make_cert("mx.example.test", cert_path, key_path) < 0 ||
	    make_cert("other.example.test", other_path, NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(cert_path);
	unlink(key_path);
	unlink(other_path);
	rmdir(tmpdir);
	return 0;
}

struct side {
	struct tls *t;
	struct buf got;		/* plaintext read */
};

/* move - wire bytes from a to b, in pieces of at most step bytes. */
static size_t
move(struct side *a, struct side *b, size_t step)
{
	char buf[70000];
	size_t n, total = 0;

	while ((n = tls_wire_take(a->t, buf, step < sizeof buf ? step : sizeof buf)) > 0) {
		tls_input(b->t, buf, n);
		total += n;
	}
	return total;
}

static void
drain(struct side *s)
{
	char buf[4096];
	size_t n;

	while ((n = tls_read(s->t, buf, sizeof buf)) > 0)
		buf_append(&s->got, buf, n);
}

/* pump - until neither side has anything to send. */
static void
pump(struct side *c, struct side *s, size_t step)
{
	for (int i = 0; i < 100; i++) {
		size_t moved = move(c, s, step);

		drain(s);
		moved += move(s, c, step);
		drain(c);
		if (moved == 0 && tls_wire_pending(c->t) == 0 && tls_wire_pending(s->t) == 0)
			return;
	}
	fail_msg("pump: no quiet after 100 rounds");
}

static void
side_free(struct side *s)
{
	tls_free(s->t);
	buf_free(&s->got);
}

static struct tls_ctx *
server_ctx(void)
{
	char err[256];
	struct tls_ctx *x = tls_ctx_server(cert_path, key_path, NULL, err, sizeof err);

	if (x == NULL)
		fail_msg("server ctx: %s", err);
	return x;
}

static struct tls_ctx *
client_ctx(const char *ca)
{
	char err[256];
	struct tls_ctx *x = tls_ctx_client(ca, err, sizeof err);

	if (x == NULL)
		fail_msg("client ctx: %s", err);
	return x;
}

static void
test_handshake_and_data(void **state)
{
	static const size_t steps[] = { 1, 7, 512, 65536 };
	struct tls_ctx *sx = server_ctx(), *cx = client_ctx(NULL);

	(void)state;
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		struct side c = { tls_client_new(cx, "mx.example.test.", 0, NULL), { 0 } };
		struct side s = { tls_server_new(sx), { 0 } };
		char big[100000], d[80];

		assert_non_null(c.t);
		assert_non_null(s.t);
		assert_true(tls_wire_pending(c.t) > 0);		/* ClientHello ready */
		assert_int_equal(tls_status(c.t), TLS_HANDSHAKE);
		assert_int_equal(tls_write(c.t, "x", 1), 0);	/* not before the handshake */
		assert_string_equal(tls_describe(c.t, d, sizeof d), "none");
		pump(&c, &s, steps[k]);
		assert_int_equal(tls_status(c.t), TLS_OPEN);
		assert_int_equal(tls_status(s.t), TLS_OPEN);
		assert_string_equal(tls_describe(c.t, d, sizeof d), "TLSv1.3 TLS_AES_256_GCM_SHA384");
		/* self-signed, not trusted: verify off still says what it found */
		assert_int_equal(tls_verify_result(c.t), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);

		assert_int_equal(tls_write(c.t, "EHLO a\r\n", 8), 8);
		pump(&c, &s, steps[k]);
		assert_int_equal(s.got.len, 8);
		assert_memory_equal(s.got.data, "EHLO a\r\n", 8);

		for (size_t i = 0; i < sizeof big; i++)
			big[i] = (char)('a' + i % 26);
		assert_int_equal(tls_write(s.t, big, sizeof big), sizeof big);
		pump(&c, &s, steps[k]);
		assert_int_equal(c.got.len, sizeof big);
		assert_memory_equal(c.got.data, big, sizeof big);
		/* Idle again: neither side keeps a wire buffer (100 KB went through). */
		assert_int_equal(tls_buffered(c.t), 0);
		assert_int_equal(tls_buffered(s.t), 0);

		tls_close_notify(c.t);
		assert_true(tls_wire_pending(c.t) > 0);
		pump(&c, &s, steps[k]);
		assert_int_equal(tls_status(s.t), TLS_CLOSED);
		side_free(&c);
		side_free(&s);
	}
	tls_ctx_free(cx);
	tls_ctx_free(sx);
}

/* One full connection; returns whether it resumed. */
static int
connect_once(struct tls_ctx *cx, struct tls_ctx *sx, const char *key)
{
	struct side c = { tls_client_new(cx, "mx.example.test", 0, key), { 0 } };
	struct side s = { tls_server_new(sx), { 0 } };
	int resumed;

	pump(&c, &s, 65536);
	assert_int_equal(tls_status(c.t), TLS_OPEN);
	tls_write(s.t, "220 hi\r\n", 8);	/* tickets are taken with data */
	pump(&c, &s, 65536);
	resumed = tls_resumed(c.t);
	tls_close_notify(c.t);
	pump(&c, &s, 65536);
	side_free(&c);
	side_free(&s);
	return resumed;
}

static void
test_resumption(void **state)
{
	struct tls_ctx *sx = server_ctx(), *cx = client_ctx(NULL);

	(void)state;
	assert_int_equal(connect_once(cx, sx, "mx.example.test:25:opportunistic"), 0);
	assert_int_equal(tls_ctx_cached(cx), 1);
	assert_int_equal(connect_once(cx, sx, "mx.example.test:25:opportunistic"), 1);
	/* another key (policy) never gets that session */
	assert_int_equal(connect_once(cx, sx, "mx.example.test:25:verify"), 0);
	assert_int_equal(tls_ctx_cached(cx), 2);
	/* no key: no cache */
	assert_int_equal(connect_once(cx, sx, NULL), 0);
	assert_int_equal(tls_ctx_cached(cx), 2);
	tls_ctx_free(cx);
	tls_ctx_free(sx);
}

static void
test_verify(void **state)
{
	static const struct {
		const char *ca, *host;
		int verify;
		enum tls_status want;
		long result;
		const char *err;
	} t[] = {
		{ NULL, "mx.example.test", 1, TLS_FAILED, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
		  "certificate verify failed" },
		{ NULL, "mx.example.test", 0, TLS_OPEN, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "" },
		{ "cert", "mx.example.test", 1, TLS_OPEN, X509_V_OK, "" },
		{ "cert", "MX.Example.Test.", 1, TLS_OPEN, X509_V_OK, "" },
		{ "cert", "wrong.example.test", 1, TLS_FAILED, X509_V_ERR_HOSTNAME_MISMATCH,
		  "hostname mismatch" },
		{ "cert", "wrong.example.test", 0, TLS_OPEN, X509_V_ERR_HOSTNAME_MISMATCH, "" },
		{ "other", "mx.example.test", 1, TLS_FAILED, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
		  "self-signed" },
	};
	struct tls_ctx *sx = server_ctx();

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		const char *ca = t[i].ca == NULL ? NULL : strcmp(t[i].ca, "cert") == 0 ?
		    cert_path : other_path;
		struct tls_ctx *cx = client_ctx(ca);
		struct side c = { tls_client_new(cx, t[i].host, t[i].verify, NULL), { 0 } };
		struct side s = { tls_server_new(sx), { 0 } };

		pump(&c, &s, 65536);
		if (tls_status(c.t) != t[i].want || tls_verify_result(c.t) != t[i].result)
			fail_msg("case %zu: status %d result %ld (%s), want %d %ld", i,
			    tls_status(c.t), tls_verify_result(c.t), tls_error(c.t), t[i].want,
			    t[i].result);
		if (t[i].err[0] && strstr(tls_error(c.t), t[i].err) == NULL)
			fail_msg("case %zu: error '%s' lacks '%s'", i, tls_error(c.t), t[i].err);
		if (t[i].want == TLS_FAILED) {
			char d[80];

			/* the server saw it fail too (an alert went out) */
			assert_int_equal(tls_status(s.t), TLS_FAILED);
			assert_string_equal(tls_describe(c.t, d, sizeof d), "none");
			assert_int_equal(tls_write(c.t, "x", 1), 0);
		}
		side_free(&c);
		side_free(&s);
		tls_ctx_free(cx);
	}
	tls_ctx_free(sx);
}

static void
test_failing_handshakes(void **state)
{
	struct tls_ctx *cx = client_ctx(NULL), *sx = server_ctx();
	char buf[100];

	(void)state;
	/* plaintext SMTP where the ServerHello is due (an injected reply) */
	{
		struct tls *c = tls_client_new(cx, "mx.example.test", 0, NULL);
		tls_wire_take(c, buf, 0);
		assert_int_equal(tls_input(c, "250 2.0.0 Ok\r\n", 14), TLS_FAILED);
		assert_non_null(strstr(tls_error(c), "TLS handshake failed"));
		/* stays failed; no plaintext ever comes out */
		assert_int_equal(tls_input(c, "more", 4), TLS_FAILED);
		assert_int_equal(tls_read(c, buf, sizeof buf), 0);
		tls_free(c);
	}
	/* the server gets text instead of a ClientHello */
	{
		struct tls *s = tls_server_new(sx);
		assert_int_equal(tls_input(s, "MAIL FROM:<a@b>\r\n", 17), TLS_FAILED);
		tls_free(s);
	}
	/* the peer closes during the handshake */
	{
		struct tls *c = tls_client_new(cx, "mx.example.test", 0, NULL);
		tls_input_eof(c);
		assert_int_equal(tls_status(c), TLS_FAILED);
		assert_non_null(strstr(tls_error(c), "closed"));
		tls_free(c);
	}
	/* a peer that offers only TLS 1.1: below the floor */
	{
		SSL_CTX *old = SSL_CTX_new(TLS_server_method());
		SSL *ss;
		BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
		struct tls *c = tls_client_new(cx, "mx.example.test", 0, NULL);
		char wire[20000];
		size_t n;

		SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
		SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
		SSL_CTX_set_security_level(old, 0);
		SSL_CTX_use_certificate_file(old, cert_path, SSL_FILETYPE_PEM);
		SSL_CTX_use_PrivateKey_file(old, key_path, SSL_FILETYPE_PEM);
		ss = SSL_new(old);
		SSL_set_bio(ss, rb, wb);
		SSL_set_accept_state(ss);
		n = tls_wire_take(c, wire, sizeof wire);
		BIO_write(rb, wire, (int)n);
		SSL_do_handshake(ss);
		while ((n = (size_t)BIO_read(wb, wire, sizeof wire)) > 0 && n < sizeof wire)
			tls_input(c, wire, n);
		assert_int_equal(tls_status(c), TLS_FAILED);
		tls_free(c);
		SSL_free(ss);
		SSL_CTX_free(old);
	}
	tls_ctx_free(cx);
	tls_ctx_free(sx);
}

static void
test_ctx_errors(void **state)
{
	char err[256];

	(void)state;
	assert_null(tls_ctx_client("/nonexistent/ca.pem", err, sizeof err));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	assert_null(tls_ctx_server(cert_path, NULL, NULL, err, sizeof err));
	assert_null(tls_ctx_server(cert_path, other_path, NULL, err, sizeof err));
	struct tls_ctx *x = tls_ctx_server(NULL, NULL, "sink.test", err, sizeof err);
	assert_non_null(x);
	tls_ctx_free(x);
}

static void
test_policy_names(void **state)
{
	enum tls_policy p;

	(void)state;
	assert_int_equal(tls_policy_parse("opportunistic", &p), 0);
	assert_int_equal(p, TLS_POLICY_OPPORTUNISTIC);
	assert_int_equal(tls_policy_parse("REQUIRED", &p), 0);
	assert_int_equal(p, TLS_POLICY_REQUIRED);
	assert_int_equal(tls_policy_parse("verify", &p), 0);
	assert_int_equal(p, TLS_POLICY_VERIFY);
	assert_int_equal(tls_policy_parse("disabled", &p), 0);
	assert_int_equal(p, TLS_POLICY_DISABLED);
	assert_int_equal(tls_policy_parse("may", &p), -1);
	assert_int_equal(tls_policy_parse("", &p), -1);
	assert_string_equal(tls_policy_name(TLS_POLICY_DEFAULT), "opportunistic");
	assert_string_equal(tls_policy_name(TLS_POLICY_VERIFY), "verify");
}

/* --- the TLS transport, its upper side faked --- */

struct upper {
	int secured;
	struct buf got;		/* delivered plaintext */
	const char *out;	/* plaintext to send */
	size_t out_len, out_off, pulled;
	int pulls;
};

static void
up_deliver(void *arg, const char *buf, size_t n)
{
	buf_append(&((struct upper *)arg)->got, buf, n);
}

static int
up_pull(void *arg, struct iovec iov[3])
{
	struct upper *u = arg;
	size_t left = u->out_len - u->out_off;

	if (left == 0)
		return 0;
	u->pulls++;
	iov[0].iov_base = (void *)(u->out + u->out_off);
	if (left < 2) {
		iov[0].iov_len = left;
		return 1;
	}
	/* two iovecs, as the SMTP client hands out commands and a body */
	iov[0].iov_len = left / 2;
	iov[1].iov_base = (void *)(u->out + u->out_off + left / 2);
	iov[1].iov_len = left - left / 2;
	return 2;
}

static void
up_pushed(void *arg, size_t n)
{
	struct upper *u = arg;

	assert_true(n <= u->out_len - u->out_off);
	u->out_off += n;
	u->pulled = n;
}

static void
up_secured(void *arg)
{
	((struct upper *)arg)->secured++;
}

static const struct transport_upper upper_ops = { up_deliver, up_pull, up_pushed, up_secured };

/* wire - move the transport's output to the server (sent in pieces of
 * `step`), and the server's output back; the server echoes nothing. */
static void
wire(struct transport *t, struct side *srv, size_t step, int *fail)
{
	char buf[70000];
	size_t n;

	for (int round = 0; round < 100000; round++) {
		struct iovec iov[CONN_IOV_MAX_TEST];
		int k = transport_output(t, iov, CONN_IOV_MAX_TEST);
		int moved = 0;

		if (k > 0) {
			size_t len = iov[0].iov_len < step ? iov[0].iov_len : step;

			assert_int_equal(k, 1);
			tls_input(srv->t, iov[0].iov_base, len);
			transport_sent(t, len);
			moved = 1;
		}
		drain(srv);
		while ((n = tls_wire_take(srv->t, buf, sizeof buf)) > 0) {
			if (transport_input(t, buf, n) < 0)
				*fail = 1;
			moved = 1;
		}
		if (!moved)
			return;
	}
	fail_msg("wire: no quiet after 100000 rounds");
}

static void
test_transport(void **state)
{
	static const size_t steps[] = { 100, 100000 };
	struct tls_ctx *sx = server_ctx(), *cx = client_ctx(NULL);
	size_t big = 300000;
	char *data = malloc(big);

	(void)state;
	for (size_t i = 0; i < big; i++)
		data[i] = (char)('A' + i % 23);
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		struct upper u = { 0 };
		struct side srv = { tls_server_new(sx), { 0 } };
		struct transport *t = transport_tls_new(&upper_ops, &u, cx, "mx.example.test", 0, NULL);
		struct iovec iov[CONN_IOV_MAX_TEST];
		int failed = 0;

		assert_non_null(t);
		assert_string_equal(transport_name(t), "tls");
		assert_non_null(transport_tls(t));
		u.out = "EHLO client.test\r\n";
		u.out_len = 18;
		wire(t, &srv, steps[k], &failed);
		assert_int_equal(failed, 0);
		assert_int_equal(u.secured, 1);
		/* plaintext is only taken once the handshake is done: all of it went */
		assert_int_equal(u.out_off, 18);
		assert_int_equal(srv.got.len, 18);
		assert_memory_equal(srv.got.data, "EHLO client.test\r\n", 18);

		tls_write(srv.t, "250 mx\r\n", 8);
		wire(t, &srv, steps[k], &failed);
		assert_int_equal(u.got.len, 8);
		assert_int_equal(u.secured, 1);

		/* a large body: at most TRANSPORT_TLS_CHUNK per output */
		srv.got.len = 0;
		u.out = data;
		u.out_len = big;
		u.out_off = 0;
		u.pulls = 0;
		wire(t, &srv, steps[k], &failed);
		assert_int_equal(u.out_off, big);
		assert_true(u.pulls >= (int)(big / TRANSPORT_TLS_CHUNK));
		assert_int_equal(srv.got.len, big);
		assert_memory_equal(srv.got.data, data, big);
		/* idle: nothing to send, no buffer of its own */
		assert_int_equal(transport_output(t, iov, CONN_IOV_MAX_TEST), 0);

		transport_close_notify(t);
		wire(t, &srv, steps[k], &failed);
		assert_int_equal(tls_status(srv.t), TLS_CLOSED);
		assert_string_equal(transport_err(t), "");
		transport_free(t);
		side_free(&srv);
		buf_free(&u.got);
	}
	/* a failed handshake: input returns -1 with the reason */
	{
		struct upper u = { 0 };
		struct transport *t = transport_tls_new(&upper_ops, &u, cx, "mx.example.test", 0, NULL);
		struct iovec iov[CONN_IOV_MAX_TEST];

		assert_int_equal(transport_output(t, iov, CONN_IOV_MAX_TEST), 1);	/* ClientHello */
		transport_sent(t, iov[0].iov_len);
		assert_int_equal(transport_input(t, "554 no\r\n", 8), -1);
		assert_non_null(strstr(transport_err(t), "TLS handshake failed"));
		assert_int_equal(u.secured, 0);
		assert_null(transport_tls(NULL));
		transport_free(t);
	}
	free(data);
	tls_ctx_free(cx);
	tls_ctx_free(sx);
}

/* tlsa_of - usage/selector/mtype record for the test certificate (or,
 * wrong: for other.pem) into a new set. */
static struct dane_set *
tlsa_of(struct dane_set *set, int usage, int selector, int mtype, int wrong)
{
	FILE *f = fopen(wrong ? other_path : cert_path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL, rd[3 + 64];
	unsigned int mdlen = 0;
	int len;

	if (f)
		fclose(f);
	assert_non_null(x);
	len = selector ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : i2d_X509(x, &der);
	assert_true(len > 0);
	rd[0] = (unsigned char)usage, rd[1] = (unsigned char)selector, rd[2] = (unsigned char)mtype;
	assert_true(EVP_Digest(der, (size_t)len, rd + 3, &mdlen,
	    mtype == 2 ? EVP_sha512() : EVP_sha256(), NULL));
	if (set == NULL)
		set = dane_set_new(1000);
	dane_set_add(set, rd, 3 + mdlen);
	OPENSSL_free(der);
	X509_free(x);
	return set;
}

static void
test_dane(void **state)
{
	static const struct {
		int u, s, m, wrong;
		const char *host;
		enum tls_status want;
		const char *text;	/* in tls_dane_text or, failed, tls_error */
	} t[] = {
		{ 3, 1, 1, 0, "mx.example.test", TLS_OPEN, "verified usage=3 selector=1 mtype=1 depth=0" },
		{ 3, 0, 1, 0, "mx.example.test", TLS_OPEN, "verified usage=3 selector=0 mtype=1" },
		{ 3, 1, 2, 0, "mx.example.test", TLS_OPEN, "verified usage=3 selector=1 mtype=2" },
		/* DANE-EE: no name check (RFC 7672 3.1.1) */
		{ 3, 1, 1, 0, "another.name.test", TLS_OPEN, "verified usage=3" },
		{ 3, 1, 1, 1, "mx.example.test", TLS_FAILED, "no matching DANE TLSA records" },
		/* PKIX-EE only: unusable for SMTP, never handed to OpenSSL;
		 * under a DANE policy that is a failure, never an
		 * unauthenticated session (the engine asks for DANE only with
		 * a usable record: dane_policy) */
		{ 1, 1, 1, 1, "mx.example.test", TLS_FAILED, "no TLSA record could be used" },
	};
	struct tls_ctx *sx = server_ctx(), *cx = client_ctx(NULL);

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct dane_set *set = tlsa_of(NULL, t[i].u, t[i].s, t[i].m, t[i].wrong);
		struct side c = { tls_client_new_dane(cx, t[i].host, set, NULL), { 0 } };
		struct side s = { tls_server_new(sx), { 0 } };
		char d[120];

		dane_unref(set);	/* OpenSSL has its own copy */
		pump(&c, &s, 65536);
		if (tls_status(c.t) != t[i].want)
			fail_msg("case %zu: status %d (%s), want %d", i, tls_status(c.t),
			    tls_error(c.t), t[i].want);
		if (strstr(t[i].want == TLS_OPEN ? tls_dane_text(c.t, d, sizeof d) : tls_error(c.t),
		    t[i].text) == NULL)
			fail_msg("case %zu: '%s' / '%s' lacks '%s'", i, tls_dane_text(c.t, d, sizeof d),
			    tls_error(c.t), t[i].text);
		side_free(&c);
		side_free(&s);
	}
	/* without DANE the text is empty */
	{
		struct side c = { tls_client_new(cx, "mx.example.test", 0, NULL), { 0 } };
		char d[120];

		assert_string_equal(tls_dane_text(c.t, d, sizeof d), "");
		side_free(&c);
	}
	tls_ctx_free(cx);
	tls_ctx_free(sx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_resumption),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_failing_handshakes),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_transport),
		cmocka_unit_test(test_dane),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
