/*
 * test_dkim.c - DKIM signing: canonicalisation against RFC 6376 3.4.5 and
 * edge cases (empty body, trailing white space and empty lines, long
 * lines, folded headers, 8-bit bytes, dot-stuffed storage), header/body
 * split, the From domain, signer choice, header selection and
 * over-signing, folding, key loading errors, and RFC 8463's Ed25519
 * example (public key, bh= and b=). Prints a small benchmark (signatures
 * per second, body hashing MB/s); nothing asserts on speed.
 *
 * `test_dkim --write DIR RSA.pem ED.pem` writes signed messages (as a
 * receiver sees them) and the DNS records of their keys to DIR for
 * tests/integration/t_dkim_verify.sh, which checks them with an
 * independent verifier (python3-dkim).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "config.h"
#include "dkim.h"
#include "msg.h"
#include "util.h"
#include "testkey.h"

/* RFC 8463 appendix A: the Ed25519 example key (base64 seed) and its public key. */
static const char rfc8463_seed[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc8463_pub[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

static struct dkim_key *
key_rsa(void)
{
	char err[300];
	struct dkim_key *k = dkim_key_parse(rsa_pem, strlen(rsa_pem), DKIM_RSA_SHA256, err, sizeof err);

	if (k == NULL)
		fail_msg("rsa key: %s", err);
	return k;
}

static struct dkim_key *
key_ed(void)
{
	char err[300];
	struct dkim_key *k = dkim_key_parse(rfc8463_seed, strlen(rfc8463_seed), DKIM_ALG_NONE, err,
	    sizeof err);

	if (k == NULL)
		fail_msg("ed25519 key: %s", err);
	return k;
}

static void
assert_bytes(const char *what, const struct buf *got, const char *want, size_t wlen)
{
	if (got->len != wlen || (wlen > 0 && memcmp(got->data, want, wlen) != 0)) {
		char g[600], w[600];
		size_t gn = 0, wn = 0;

		for (size_t i = 0; i < got->len && gn + 5 < sizeof g; i++)
			gn += (size_t)snprintf(g + gn, sizeof g - gn, (unsigned char)got->data[i] < 0x20 ?
			    "\\x%02x" : "%c", (unsigned char)got->data[i]);
		g[gn] = '\0';
		for (size_t i = 0; i < wlen && wn + 5 < sizeof w; i++)
			wn += (size_t)snprintf(w + wn, sizeof w - wn, (unsigned char)want[i] < 0x20 ?
			    "\\x%02x" : "%c", (unsigned char)want[i]);
		w[wn] = '\0';
		fail_msg("%s:\n got  [%s]\n want [%s]", what, g, w);
	}
}

/* ------------------------------------------------------------------ */
/* canonicalisation                                                     */

/* RFC 6376 3.4.5, both canonicalisations, headers and body. */
static void
test_rfc6376_example(void **state)
{
	static const char hdr_a[] = "A: X\r\n";
	static const char hdr_b[] = "B : Y\t\r\n\tZ  \r\n";
	static const char body[] = " C \r\nD \t E\r\n\r\n\r\n";
	struct buf b = { 0 };

	dkim_canon_header(DKIM_CANON_RELAXED, hdr_a, strlen(hdr_a), 0, &b);
	dkim_canon_header(DKIM_CANON_RELAXED, hdr_b, strlen(hdr_b), 0, &b);
	assert_bytes("relaxed headers", &b, "a:X\r\nb:Y Z\r\n", 12);
	b.len = 0;
	dkim_canon_body(DKIM_CANON_RELAXED, body, strlen(body), 0, &b);
	assert_bytes("relaxed body", &b, " C\r\nD E\r\n", 9);
	b.len = 0;
	dkim_canon_header(DKIM_CANON_SIMPLE, hdr_a, strlen(hdr_a), 0, &b);
	dkim_canon_header(DKIM_CANON_SIMPLE, hdr_b, strlen(hdr_b), 0, &b);
	assert_bytes("simple headers", &b, "A: X\r\nB : Y\t\r\n\tZ  \r\n", 20);
	b.len = 0;
	dkim_canon_body(DKIM_CANON_SIMPLE, body, strlen(body), 0, &b);
	assert_bytes("simple body", &b, " C \r\nD \t E\r\n", 12);
	buf_free(&b);
}

static void
test_body_cases(void **state)
{
	static const struct {
		const char *name, *in;
		unsigned flags;
		const char *relaxed, *simple;
	} cases[] = {
		{ "empty", "", 0, "", "\r\n" },
		{ "only empty lines", "\r\n\r\n\r\n", 0, "", "\r\n" },
		{ "only white space lines", " \r\n\t\r\n", 0, "", " \r\n\t\r\n" },
		{ "no final line end", "a", 0, "a\r\n", "a\r\n" },
		{ "trailing white space", "a  \t\r\nb\t\r\n", 0, "a\r\nb\r\n", "a  \t\r\nb\t\r\n" },
		{ "white space runs", "a \t  b\t\tc\r\n", 0, "a b c\r\n", "a \t  b\t\tc\r\n" },
		{ "leading white space kept", "  a\r\n", 0, " a\r\n", "  a\r\n" },
		{ "trailing empty lines", "a\r\n\r\n\r\n", 0, "a\r\n", "a\r\n" },
		{ "trailing blank-ish lines", "a\r\n  \r\n\t\r\n", 0, "a\r\n", "a\r\n  \r\n\t\r\n" },
		{ "inner empty lines kept", "a\r\n\r\n\r\nb\r\n", 0, "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n" },
		{ "bare LF and CR", "a\nb\rc\r\n", 0, "a\r\nb\r\nc\r\n", "a\r\nb\r\nc\r\n" },
		{ "8-bit kept", "caf\xc3\xa9 \xff\r\n", 0, "caf\xc3\xa9 \xff\r\n", "caf\xc3\xa9 \xff\r\n" },
		{ "leading dots raw", ".\r\n..x\r\n", 0, ".\r\n..x\r\n", ".\r\n..x\r\n" },
		{ "stuffed: dots undone", "..\r\n...x\r\n.\r\n", DKIM_STUFFED, ".\r\n..x\r\n", ".\r\n..x\r\n" },
		{ "stuffed: empty", ".\r\n", DKIM_STUFFED, "", "\r\n" },
		{ "stuffed: trailing empty", "a\r\n\r\n.\r\n", DKIM_STUFFED, "a\r\n", "a\r\n" },
		{ "stuffed: stops at terminator", "a\r\n.\r\nb\r\n", DKIM_STUFFED, "a\r\n", "a\r\n" },
	};
	struct buf b = { 0 };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char what[100];

		b.len = 0;
		dkim_canon_body(DKIM_CANON_RELAXED, cases[i].in, strlen(cases[i].in), cases[i].flags, &b);
		snprintf(what, sizeof what, "%s (relaxed)", cases[i].name);
		assert_bytes(what, &b, cases[i].relaxed, strlen(cases[i].relaxed));
		b.len = 0;
		dkim_canon_body(DKIM_CANON_SIMPLE, cases[i].in, strlen(cases[i].in), cases[i].flags, &b);
		snprintf(what, sizeof what, "%s (simple)", cases[i].name);
		assert_bytes(what, &b, cases[i].simple, strlen(cases[i].simple));
	}
	buf_free(&b);
}

/* A 100,000-byte line and a long run of white space go through whole. */
static void
test_body_long_lines(void **state)
{
	size_t n = 100000;
	char *in = xmalloc(n + 3);
	struct buf b = { 0 };

	for (size_t i = 0; i < n; i++)
		in[i] = (char)('a' + i % 26);
	memset(in + 5000, ' ', 40000);
	memcpy(in + n, "\r\n", 3);
	dkim_canon_body(DKIM_CANON_SIMPLE, in, n + 2, 0, &b);
	assert_bytes("simple long line", &b, in, n + 2);
	b.len = 0;
	dkim_canon_body(DKIM_CANON_RELAXED, in, n + 2, 0, &b);
	assert_int_equal(b.len, n + 2 - 40000 + 1);
	assert_memory_equal(b.data, in, 5000);
	assert_int_equal(b.data[5000], ' ');
	assert_memory_equal(b.data + 5001, in + 45000, n + 2 - 45000);
	buf_free(&b);
	free(in);
}

static void
test_header_cases(void **state)
{
	static const struct {
		const char *in;
		unsigned flags;
		const char *relaxed;
	} cases[] = {
		{ "Subject: Hello World\r\n", 0, "subject:Hello World\r\n" },
		{ "SUBJECT:Hello\r\n", 0, "subject:Hello\r\n" },
		{ "Subject \t:   Hello   \t\r\n", 0, "subject:Hello\r\n" },
		{ "Subject: a\r\n b\r\n\t c\r\n", 0, "subject:a b c\r\n" },
		{ "Subject:\r\n folded at once\r\n", 0, "subject:folded at once\r\n" },
		{ "Subject: \xc3\xa9t\xc3\xa9  8bit\r\n", 0, "subject:\xc3\xa9t\xc3\xa9 8bit\r\n" },
		{ "Subject: x\n y\n", 0, "subject:x y\r\n" },
		{ "X-Empty:\r\n", 0, "x-empty:\r\n" },
		{ "X-Empty:   \r\n", 0, "x-empty:\r\n" },
		{ "..Dotted: x\r\n", DKIM_STUFFED, ".dotted:x\r\n" },
	};
	struct buf b = { 0 };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		b.len = 0;
		dkim_canon_header(DKIM_CANON_RELAXED, cases[i].in, strlen(cases[i].in), cases[i].flags, &b);
		assert_bytes(cases[i].in, &b, cases[i].relaxed, strlen(cases[i].relaxed));
	}
	/* simple: as is, but with CRLF line ends and stuffing undone */
	b.len = 0;
	dkim_canon_header(DKIM_CANON_SIMPLE, "Subject: x\n y \n", 15, 0, &b);
	assert_bytes("simple bare LF", &b, "Subject: x\r\n y \r\n", 17);
	b.len = 0;
	dkim_canon_header(DKIM_CANON_SIMPLE, "..X: y\r\n", 8, DKIM_STUFFED, &b);
	assert_bytes("simple stuffed", &b, ".X: y\r\n", 7);
	buf_free(&b);
}

static void
test_split(void **state)
{
	static const struct {
		const char *in;
		unsigned flags;
		size_t hlen, boff;
	} cases[] = {
		{ "A: 1\r\nB: 2\r\n\r\nbody\r\n", 0, 12, 14 },
		{ "A: 1\r\n", 0, 6, 6 },
		{ "A: 1", 0, 4, 4 },
		{ "A: 1\r\n.\r\n", DKIM_STUFFED, 6, 6 },
		{ "A: 1\r\n\r\n.\r\n", DKIM_STUFFED, 6, 8 },
		{ ".\r\n", DKIM_STUFFED, 0, 0 },
		{ "\r\nbody", 0, 0, 2 },
		{ "A: 1\n\nbody", 0, 5, 6 },
		{ "", 0, 0, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t h = 99, o = 99;

		dkim_split(cases[i].in, strlen(cases[i].in), cases[i].flags, &h, &o);
		if (h != cases[i].hlen || o != cases[i].boff)
			fail_msg("split case %zu: got %zu/%zu want %zu/%zu", i, h, o, cases[i].hlen,
			    cases[i].boff);
	}
}

static void
test_from_domain(void **state)
{
	static const struct {
		const char *hdr;
		unsigned flags;
		const char *want;	/* NULL: -1 */
	} cases[] = {
		{ "From: Joe <joe@Example.COM>\r\n", 0, "example.com" },
		{ "From: joe@example.com\r\n", 0, "example.com" },
		{ "from :  joe@x.example.  \r\n", 0, "x.example" },
		{ "From: \"a@b.example, c\" <joe@x.example>\r\n", 0, "x.example" },
		{ "From: (comment@evil.example) joe@good.example\r\n", 0, "good.example" },
		{ "From: Joe (a (nested) comment) <joe@good.example> (x@evil.example)\r\n", 0, "good.example" },
		{ "From: Smith, John <j@ex.org>\r\n", 0, "ex.org" },
		{ "From: a@one.example, b@two.example\r\n", 0, "one.example" },
		{ "From: Joe\r\n <joe@fold.example>\r\n", 0, "fold.example" },
		{ "From: =?utf-8?q?J=C3=B6?= <jo@news.example>\r\n", 0, "news.example" },
		{ "To: x@to.example\r\nFrom: a@b.example\r\nSubject: s\r\n", 0, "b.example" },
		{ "..X: y\r\nFrom: a@dot.example\r\n", DKIM_STUFFED, "dot.example" },
		{ "To: x@to.example\r\n", 0, NULL },
		{ "From: a@one.example\r\nFrom: b@two.example\r\n", 0, NULL },
		{ "From: undisclosed-recipients\r\n", 0, NULL },
		{ "From: <joe@[192.0.2.1]>\r\n", 0, NULL },
		{ "From: joe@\xc3\xa9t\xc3\xa9.example\r\n", 0, "xn--t-9fab.example" },
		{ "From: joe@\xff\xfe.example\r\n", 0, NULL },
		{ "From: joe@\r\n", 0, NULL },
		{ "From: joe@a..b\r\n", 0, NULL },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[DKIM_DOMAIN_MAX];
		int r = dkim_from_domain(cases[i].hdr, strlen(cases[i].hdr), cases[i].flags, out, sizeof out);

		if (cases[i].want == NULL) {
			if (r != -1)
				fail_msg("%s: got %s, want none", cases[i].hdr, out);
		} else {
			if (r != 0)
				fail_msg("%s: got none, want %s", cases[i].hdr, cases[i].want);
			assert_string_equal(out, cases[i].want);
		}
	}
}

static void
test_signer_select(void **state)
{
	struct dkim_signer v[3];

	memset(v, 0, sizeof v);
	v[0].domain = "example.com";
	v[0].subdomains = 1;
	v[1].domain = "mail.example.org";
	v[2].domain = "esp.example";
	v[2].is_default = 1;
	assert_ptr_equal(dkim_signer_select(v, 3, "example.com"), &v[0]);
	assert_ptr_equal(dkim_signer_select(v, 3, "news.example.com"), &v[0]);
	assert_ptr_equal(dkim_signer_select(v, 3, "a.b.example.com"), &v[0]);
	assert_ptr_equal(dkim_signer_select(v, 3, "mail.example.org"), &v[1]);
	assert_ptr_equal(dkim_signer_select(v, 3, "x.mail.example.org"), &v[2]);	/* no subdomains */
	assert_ptr_equal(dkim_signer_select(v, 3, "example.org"), &v[2]);
	assert_ptr_equal(dkim_signer_select(v, 3, "notexample.com"), &v[2]);
	assert_ptr_equal(dkim_signer_select(v, 3, ""), &v[2]);
	assert_ptr_equal(dkim_signer_select(v, 3, NULL), &v[2]);
	/* without a default: no key */
	assert_null(dkim_signer_select(v, 2, "example.org"));
	assert_null(dkim_signer_select(v, 2, NULL));
	assert_null(dkim_signer_select(NULL, 0, "example.com"));
}

/* ------------------------------------------------------------------ */
/* signatures                                                           */

/* the unfolded value of tag t in a DKIM-Signature field */
static char *
tag_value(const char *sig, const char *t)
{
	struct buf u = { 0 };
	char key[16], *p, *e, *v;

	for (const char *s = sig; *s; s++)
		if (*s != '\r' && *s != '\n' && *s != ' ' && *s != '\t')
			buf_append(&u, s, 1);
	buf_append(&u, "", 1);
	snprintf(key, sizeof key, ";%s=", t);
	p = strstr(u.data, key);
	assert_non_null(p);
	p += strlen(key);
	e = strchr(p, ';');
	v = e ? xstrndup(p, (size_t)(e - p)) : xstrdup(p);
	buf_free(&u);
	return v;
}

static void
assert_folded(const char *sig, size_t len)
{
	const char *p = sig, *end = sig + len;

	assert_true(len > 2 && memcmp(end - 2, "\r\n", 2) == 0);
	while (p < end) {
		const char *nl = strstr(p, "\r\n");

		assert_non_null(nl);
		if (nl - p > 78)
			fail_msg("line longer than 78: %.*s", (int)(nl - p), p);
		p = nl + 2;
		if (p < end && strncmp(p, "DKIM-Signature:", 15) != 0 && *p != ' ')
			fail_msg("a line neither starts a field nor continues one: %.20s", p);
	}
}

/* dkim_sign_message() on msg alone, no cache, no extra fields */
static enum dkim_status
sign_msg(const struct dkim_signer *v, size_t n, const char *msg, size_t len, unsigned flags,
    time_t now, char **sig, size_t *siglen, const struct dkim_signer **who)
{
	struct dkim_request rq = { .msg = msg, .len = len, .flags = flags, .now = now };

	return dkim_sign_message(v, n, &rq, sig, siglen, who);
}

static struct dkim_signer
signer(struct dkim_key *rsa, struct dkim_key *ed)
{
	struct dkim_signer s;

	memset(&s, 0, sizeof s);
	s.domain = "example.com";
	if (rsa != NULL) {
		s.keys[s.nkeys].selector = "rsa1";
		s.keys[s.nkeys++].key = rsa;
	}
	if (ed != NULL) {
		s.keys[s.nkeys].selector = "ed1";
		s.keys[s.nkeys++].key = ed;
	}
	return s;
}

static void
test_header_selection(void **state)
{
	static const char msg[] =
	    "Received: from x by y\r\n"
	    "From: Joe <joe@example.com>\r\n"
	    "To: a@example.net\r\n"
	    "Subject: two To fields\r\n"
	    "To: b@example.net\r\n"
	    "X-Mailer: not signed\r\n"
	    "\r\n"
	    "Hi.\r\n";
	struct dkim_key *ed = key_ed();
	struct dkim_signer s = signer(NULL, ed);
	char bh[DKIM_BH_SIZE];
	size_t hlen, boff, len;
	char *sig, *h;

	dkim_split(msg, strlen(msg), 0, &hlen, &boff);
	dkim_body_hash(DKIM_CANON_RELAXED, msg + boff, strlen(msg) - boff, 0, bh);
	sig = dkim_sign(&s, msg, hlen, 0, NULL, 0, bh, 1700000000, &len);
	assert_non_null(sig);
	assert_int_equal(strlen(sig), len);
	assert_folded(sig, len);
	h = tag_value(sig, "h");
	assert_string_equal(h, "from:from:to:to:subject");	/* From over-signed, both To */
	free(h);
	h = tag_value(sig, "bh");
	assert_string_equal(h, bh);
	free(h);
	h = tag_value(sig, "t");
	assert_string_equal(h, "1700000000");
	free(h);
	h = tag_value(sig, "c");
	assert_string_equal(h, "relaxed/relaxed");
	free(h);
	free(sig);

	/* a configured list: case-insensitive, From added when missing, duplicates once */
	char *names[] = { "Subject", "X-MAILER", "subject", "Received" };

	s.headers = names;
	s.nheaders = 4;
	s.hcanon = DKIM_CANON_SIMPLE;
	s.bcanon = DKIM_CANON_SIMPLE;
	sig = dkim_sign(&s, msg, hlen, 0, "List-Unsubscribe: <https://u.example/1>\r\n", 41, bh, 0,
	    &len);
	h = tag_value(sig, "h");
	assert_string_equal(h, "subject:x-mailer:received:from:from");
	free(h);
	assert_null(strstr(sig, "t="));
	h = tag_value(sig, "c");
	assert_string_equal(h, "simple/simple");
	free(h);
	free(sig);

	/* extra fields count as headers above the message's own */
	s.headers = NULL;
	s.hcanon = DKIM_CANON_RELAXED;
	sig = dkim_sign(&s, msg, hlen, 0, "List-Unsubscribe: <https://u.example/1>\r\n", 41, bh, 0,
	    &len);
	h = tag_value(sig, "h");
	assert_string_equal(h, "from:from:to:to:subject:list-unsubscribe");
	free(h);
	free(sig);
	dkim_key_free(ed);
}

/* More than DKIM_MAX_INSTANCES of one name: only the bottom ones are listed. */
static void
test_instances_capped(void **state)
{
	struct buf m = { 0 };
	struct dkim_key *ed = key_ed();
	struct dkim_signer s = signer(NULL, ed);
	size_t len, n = 0;
	char *sig, *h;

	buf_append(&m, "From: a@example.com\r\n", 21);
	for (int i = 0; i < 1000; i++)
		buf_appendf(&m, "To: r%d@example.net\r\n", i);
	sig = dkim_sign(&s, m.data, m.len, 0, NULL, 0, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
	    0, &len);
	assert_folded(sig, len);
	h = tag_value(sig, "h");
	for (char *p = h; (p = strstr(p, "to")) != NULL; p += 2)
		n++;
	assert_int_equal(n, DKIM_MAX_INSTANCES);
	free(h);
	free(sig);

	/* 20 From fields: the bottom 16 are listed and no over-signing
	 * entry (a 17th would name a present, unhashed From) */
	m.len = 0;
	for (int i = 0; i < 20; i++)
		buf_appendf(&m, "From: a%d@example.com\r\n", i);
	sig = dkim_sign(&s, m.data, m.len, 0, NULL, 0, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
	    0, &len);
	h = tag_value(sig, "h");
	n = 0;
	for (char *p = h; (p = strstr(p, "from")) != NULL; p += 4)
		n++;
	assert_int_equal(n, DKIM_MAX_INSTANCES);
	free(h);
	free(sig);
	buf_free(&m);
	dkim_key_free(ed);
}

/* Raw bytes and the stuffed form msg_body_new() makes sign identically. */
static void
test_stuffed_equals_raw(void **state)
{
	static const char *const msgs[] = {
		"From: a@example.com\r\nSubject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
		"From: a@example.com\nSubject: bare LF\n\nline\n\n\n",
		"From: a@example.com\r\nSubject: no body\r\n",
		"From: a@example.com\r\nSubject: empty body\r\n\r\n",
		"From: a@example.com\r\nSubject: no final CRLF\r\n\r\nlast",
		".Dotted-Header: yes\r\nFrom: a@example.com\r\n\r\nx\r\n",
		"",
	};
	struct dkim_key *rsa = key_rsa(), *ed = key_ed();
	struct dkim_signer s = signer(rsa, ed);

	s.is_default = 1;	/* the empty message has no From */
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		size_t rl = strlen(msgs[i]), sl1, sl2;
		struct msg_body *b = msg_body_new(msgs[i], rl);
		char *s1, *s2;

		for (int c = 0; c < 2; c++) {
			s.hcanon = s.bcanon = c ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
			assert_int_equal(sign_msg(&s, 1, msgs[i], rl, 0, 1700000000, &s1, &sl1, NULL),
			    DKIM_SIGNED);
			assert_int_equal(sign_msg(&s, 1, b->data, b->len, DKIM_STUFFED, 1700000000,
			    &s2, &sl2, NULL), DKIM_SIGNED);
			if (sl1 != sl2 || memcmp(s1, s2, sl1) != 0)
				fail_msg("message %zu (%s): raw and stuffed differ:\n%s\n%s", i,
				    c ? "simple" : "relaxed", s1, s2);
			assert_folded(s1, sl1);
			free(s1);
			free(s2);
		}
		msg_body_unref(b);
	}
	dkim_key_free(rsa);
	dkim_key_free(ed);
}

/*
 * random_message - a random but well-formed message from a seed: From
 * and a few other fields with white space runs, folds, tabs and 8-bit
 * bytes, then a body of lines built from the bytes canonicalisation
 * cares about (SP, HTAB, '.', CR, LF, 8-bit), empty lines included.
 */
static char *
random_message(unsigned *seed, const char *dom)
{
	static const char *const names[] = { "To", "Subject", "Date", "Message-ID", "Cc", "X-Other" };
	static const char *const bits[] = {
		"a", "word", " ", "  ", "\t", " \t ", ".", "..", "\xc3\xa9", "\xff", ":", ";", "=", "x",
	};
	static const char *const ends[] = { "\r\n", "\r\n", "\r\n", "\n", "\r" };
	struct buf b = { 0 };
	int nf = rand_r(seed) % 5, nl = rand_r(seed) % 12;

	buf_appendf(&b, "From: %s<joe@%s>\r\n", rand_r(seed) % 2 ? "Joe " : "", dom);
	for (int i = 0; i < nf; i++) {
		int parts = 1 + rand_r(seed) % 6;

		buf_appendf(&b, "%s:%s", names[rand_r(seed) % 6], rand_r(seed) % 2 ? " " : "");
		for (int j = 0; j < parts; j++) {
			const char *t = bits[rand_r(seed) % 14];

			buf_append(&b, t, strlen(t));
			if (rand_r(seed) % 5 == 0)
				buf_append(&b, "\r\n ", 3);	/* a fold */
		}
		buf_append(&b, "\r\n", 2);
	}
	if (rand_r(seed) % 8 != 0)
		buf_append(&b, "\r\n", 2);
	else
		nl = 0;		/* no empty line, no body */
	for (int i = 0; i < nl; i++) {
		int parts = rand_r(seed) % 6;

		for (int j = 0; j < parts; j++) {
			const char *t = bits[rand_r(seed) % 14];

			buf_append(&b, t, strlen(t));
		}
		if (i + 1 < nl || rand_r(seed) % 3 != 0) {
			const char *e = ends[rand_r(seed) % 5];

			buf_append(&b, e, strlen(e));
		}
	}
	buf_append(&b, "", 1);
	return b.data;
}

/* Property: for random messages, raw and stored forms sign identically. */
static void
test_random_raw_equals_stuffed(void **state)
{
	struct dkim_key *ed = key_ed();
	struct dkim_signer s = signer(NULL, ed);
	unsigned seed = 12345;

	for (int i = 0; i < 500; i++) {
		char *raw = random_message(&seed, "example.com"), *s1, *s2;
		size_t rl = strlen(raw), l1, l2;
		struct msg_body *b = msg_body_new(raw, rl);

		s.hcanon = i % 2 ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
		s.bcanon = i % 3 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
		assert_int_equal(sign_msg(&s, 1, raw, rl, 0, 1, &s1, &l1, NULL), DKIM_SIGNED);
		assert_int_equal(sign_msg(&s, 1, b->data, b->len, DKIM_STUFFED, 1, &s2, &l2, NULL),
		    DKIM_SIGNED);
		if (l1 != l2 || memcmp(s1, s2, l1) != 0)
			fail_msg("random message %d differs raw/stuffed:\n%s", i, raw);
		free(s1);
		free(s2);
		free(raw);
		msg_body_unref(b);
	}
	dkim_key_free(ed);
}

static void
test_sign_message_status(void **state)
{
	static const char msg[] = "From: a@unknown.example\r\n\r\nx\r\n";
	struct dkim_key *ed = key_ed();
	struct dkim_signer s = signer(NULL, ed);
	const struct dkim_signer *who = (void *)1;
	char *sig = (void *)1;
	size_t len = 7;

	assert_int_equal(sign_msg(&s, 1, msg, strlen(msg), 0, 0, &sig, &len, &who),
	    DKIM_NO_KEY);
	assert_null(sig);
	assert_int_equal(len, 0);
	assert_null(who);
	assert_string_equal(dkim_status_text(DKIM_NO_KEY), "no key");
	s.is_default = 1;
	assert_int_equal(sign_msg(&s, 1, msg, strlen(msg), 0, 0, &sig, &len, &who),
	    DKIM_SIGNED);
	assert_ptr_equal(who, &s);
	assert_non_null(strstr(sig, "d=example.com;"));
	free(sig);
	dkim_key_free(ed);
}

/*
 * A shared body: its hashes are cached per canonicalisation; per-job
 * fields passed as extra are signed (and can carry the From).
 */
static void
test_body_hash_cache_and_extra(void **state)
{
	static const char raw[] = "From: a@example.com\r\nSubject: shared\r\n\r\n.dot\r\nbody  \r\n";
	static const char extra[] = "List-Unsubscribe: <https://u.example/job1>\r\n";
	struct msg_body *b = msg_body_new(raw, strlen(raw));
	struct dkim_key *ed = key_ed();
	struct dkim_signer s = signer(NULL, ed);
	struct dkim_body_hashes bhc;
	struct dkim_request rq = { .msg = b->data, .len = b->len, .flags = DKIM_STUFFED,
	    .bh = &bhc, .now = 5 };
	char *sig, *sig2, *h, want[DKIM_BH_SIZE];
	size_t len, len2, hl, bo;

	memset(&bhc, 0, sizeof bhc);
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig, &len, NULL), DKIM_SIGNED);
	assert_int_equal(bhc.have, 1u << DKIM_CANON_RELAXED);
	dkim_split(raw, strlen(raw), 0, &hl, &bo);
	dkim_body_hash(DKIM_CANON_RELAXED, raw + bo, strlen(raw) - bo, 0, want);
	assert_string_equal(bhc.bh[DKIM_CANON_RELAXED], want);
	/* a poisoned cache entry is used as is: proof it is not recomputed */
	strcpy(bhc.bh[DKIM_CANON_RELAXED], "cached");
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig2, &len2, NULL), DKIM_SIGNED);
	h = tag_value(sig2, "bh");
	assert_string_equal(h, "cached");
	free(h);
	free(sig2);
	s.bcanon = DKIM_CANON_SIMPLE;
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig2, &len2, NULL), DKIM_SIGNED);
	assert_int_equal(bhc.have, (1u << DKIM_CANON_RELAXED) | (1u << DKIM_CANON_SIMPLE));
	free(sig2);
	free(sig);

	/* extra: signed; and a message without From takes it from extra */
	s.bcanon = DKIM_CANON_RELAXED;
	rq.extra = extra;
	rq.extra_len = strlen(extra);
	rq.bh = NULL;
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig, &len, NULL), DKIM_SIGNED);
	h = tag_value(sig, "h");
	assert_string_equal(h, "from:from:subject:list-unsubscribe");
	free(h);
	free(sig);
	static const char nofrom[] = "Subject: x\r\n\r\nbody\r\n";
	static const char fromx[] = "From: job@example.com\r\n";

	rq.msg = nofrom;
	rq.len = strlen(nofrom);
	rq.flags = 0;
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig, &len, NULL), DKIM_NO_KEY);
	rq.extra = fromx;
	rq.extra_len = strlen(fromx);
	assert_int_equal(dkim_sign_message(&s, 1, &rq, &sig, &len, NULL), DKIM_SIGNED);
	h = tag_value(sig, "h");
	assert_string_equal(h, "from:from:subject");
	free(h);
	free(sig);
	msg_body_unref(b);
	dkim_key_free(ed);
}

/*
 * RFC 8463 appendix A: the Ed25519 example. Its key gives the published
 * public key; its body gives its bh=; its signed data (five fields, then
 * its DKIM-Signature field with b= empty) gives its b=.
 */
static void
test_rfc8463_example(void **state)
{
	static const char headers[] =
	    "From: Joe SixPack <joe@football.example.com>\r\n"
	    "To: Suzie Q <suzie@shopping.example.net>\r\n"
	    "Subject: Is dinner ready?\r\n"
	    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
	    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n";
	static const char body[] =
	    "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
	static const char sigfield[] =
	    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	    " d=football.example.com; i=@football.example.com;\r\n"
	    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	    " subject : date : message-id : from : subject : date;\r\n"
	    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	    " b=\r\n";
	static const char want_b[] =
	    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
	    "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
	struct dkim_key *k = key_ed();
	char *txt = dkim_key_dns_txt(k), bh[DKIM_BH_SIZE], *b;
	struct buf data = { 0 };
	const char *p = headers;

	assert_string_equal(txt, rfc8463_pub);
	free(txt);
	assert_int_equal(dkim_key_alg(k), DKIM_ED25519_SHA256);
	dkim_body_hash(DKIM_CANON_RELAXED, body, strlen(body), 0, bh);
	assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	/* h= order is the fields' order here; each field is one line */
	while (*p) {
		const char *e = strstr(p, "\r\n") + 2;

		dkim_canon_header(DKIM_CANON_RELAXED, p, (size_t)(e - p), 0, &data);
		p = e;
	}
	dkim_canon_header(DKIM_CANON_RELAXED, sigfield, strlen(sigfield), 0, &data);
	data.len -= 2;	/* the signature field is signed without its CRLF */
	b = dkim_key_sign(k, data.data, data.len);
	assert_non_null(b);
	assert_string_equal(b, want_b);
	free(b);
	buf_free(&data);
	dkim_key_free(k);
}

/* ------------------------------------------------------------------ */
/* keys                                                                 */

static char *
pem_of(EVP_PKEY *pk, const char *pass)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;
	long n;

	assert_non_null(bio);
	if (pass != NULL)
		assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, EVP_aes_128_cbc(),
		    (unsigned char *)pass, (int)strlen(pass), NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(bio, &data);
	out = xstrndup(data, (size_t)n);
	BIO_free(bio);
	return out;
}

static void
expect_key_error(const char *text, enum dkim_alg alg, const char *want)
{
	char err[300] = "";
	struct dkim_key *k = dkim_key_parse(text, strlen(text), alg, err, sizeof err);

	if (k != NULL)
		fail_msg("key accepted, want error '%s'", want);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s', want '%s'", err, want);
}

static void
test_key_errors(void **state)
{
	EVP_PKEY *small = EVP_RSA_gen(512);
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	char *pem;
	char err[300];

	expect_key_error("", DKIM_ALG_NONE, "empty");
	expect_key_error("garbage", DKIM_ALG_NONE, "not a private key");
	expect_key_error("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	    DKIM_ALG_NONE, "not a usable PEM private key");
	expect_key_error(rsa_pem, DKIM_ED25519_SHA256, "an RSA key cannot sign ed25519-sha256");
	expect_key_error(rfc8463_seed, DKIM_RSA_SHA256, "an Ed25519 key cannot sign rsa-sha256");
	assert_non_null(small);
	pem = pem_of(small, NULL);
	expect_key_error(pem, DKIM_ALG_NONE, "shorter than 1024 bits");
	free(pem);
	assert_non_null(ec);
	pem = pem_of(ec, NULL);
	expect_key_error(pem, DKIM_ALG_NONE, "unsupported key type");
	free(pem);
	EVP_PKEY_free(small);
	EVP_PKEY_free(ec);

	/* encrypted: an error, never a prompt; traditional "RSA PRIVATE KEY" PEM: fine */
	BIO *bio = BIO_new_mem_buf(rsa_pem, -1);
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	struct dkim_key *k;
	char *data;
	long n;

	BIO_free(bio);
	assert_non_null(pk);
	pem = pem_of(pk, "secret");
	expect_key_error(pem, DKIM_ALG_NONE, "encrypted");
	free(pem);
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(bio, &data);
	assert_non_null(memmem(data, (size_t)n, "BEGIN RSA PRIVATE KEY", 21));
	k = dkim_key_parse(data, (size_t)n, DKIM_ALG_NONE, err, sizeof err);
	assert_non_null(k);
	assert_int_equal(dkim_key_alg(k), DKIM_RSA_SHA256);
	assert_int_equal(dkim_key_bits(k), 2048);
	dkim_key_free(k);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	assert_null(dkim_key_load("/nonexistent/dkim.pem", DKIM_ALG_NONE, err, sizeof err));
	assert_non_null(strstr(err, "cannot open the key file: No such file or directory"));
}

/* ------------------------------------------------------------------ */
/* benchmark (printed, never asserted)                                  */

static double
secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char bench_headers[] =
    "From: News <news@example.com>\r\n"
    "To: someone@example.net\r\n"
    "Subject: The weekly letter\r\n"
    "Date: Mon, 30 Nov 2026 05:00:00 +0000\r\n"
    "Message-ID: <20261130050000.1@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "List-Unsubscribe: <https://u.example.com/u/1>, <mailto:u@example.com>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "Feedback-ID: c1:t1:p1:volley\r\n";

/* signatures per second with signer s for about `budget` seconds */
static double
bench_sign(const struct dkim_signer *s, double budget)
{
	const char *bh = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	double t0 = secs(), t;
	long n = 0;

	do {
		size_t len;
		char *sig = dkim_sign(s, bench_headers, sizeof bench_headers - 1, 0, NULL, 0, bh,
		    1700000000, &len);

		assert_non_null(sig);
		free(sig);
		n++;
	} while ((t = secs() - t0) < budget || n < 10);
	return (double)n / t;
}

static double
bench_hash(enum dkim_canon c, const char *body, size_t len, unsigned flags, double budget)
{
	double t0 = secs(), t;
	long n = 0;
	char bh[DKIM_BH_SIZE];

	do {
		dkim_body_hash(c, body, len, flags, bh);
		n++;
	} while ((t = secs() - t0) < budget || n < 2);
	return (double)n * (double)len / t / 1e6;
}

static void
test_bench(void **state)
{
	struct dkim_key *rsa = key_rsa(), *ed = key_ed();
	struct dkim_signer srsa = signer(rsa, NULL), sed = signer(NULL, ed);
	double budget = getenv("DKIM_BENCH_SECS") ? atof(getenv("DKIM_BENCH_SECS")) : 0.25;
	struct buf body = { 0 };
	double r, e;

	/* 4 MiB of 72-column text with word spaces: a typical newsletter body */
	while (body.len < 4u << 20)
		buf_append(&body, "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n",
		    74);
	struct msg_body *mb = msg_body_new(body.data, body.len);

	r = bench_sign(&srsa, budget);
	e = bench_sign(&sed, budget);
	printf("# dkim bench: rsa-2048 %.0f signatures/s (%.3f ms each), ed25519 %.0f/s (%.1f us each)\n",
	    r, 1000.0 / r, e, 1e6 / e);
	printf("# dkim bench: body hash relaxed %.0f MB/s, simple %.0f MB/s, relaxed from the stuffed form %.0f MB/s\n",
	    bench_hash(DKIM_CANON_RELAXED, body.data, body.len, 0, budget),
	    bench_hash(DKIM_CANON_SIMPLE, body.data, body.len, 0, budget),
	    bench_hash(DKIM_CANON_RELAXED, mb->data, mb->len, DKIM_STUFFED, budget));
	msg_body_unref(mb);
	buf_free(&body);
	dkim_key_free(rsa);
	dkim_key_free(ed);
}

/* ------------------------------------------------------------------ */
/* --write DIR RSA.pem ED.pem: signed messages for an outside verifier  */

/* replace every "DOM" in t with d */
static char *
with_domain(const char *t, const char *d)
{
	struct buf b = { 0 };

	for (const char *p = t; *p;) {
		if (strncmp(p, "DOM", 3) == 0) {
			buf_append(&b, d, strlen(d));
			p += 3;
		} else {
			buf_append(&b, p, 1);
			p++;
		}
	}
	buf_append(&b, "", 1);
	return b.data;
}

static int
write_file_at(const char *dir, const char *name, const char *a, size_t alen, const char *b,
    size_t blen, const char *c, size_t clen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	fwrite(a, 1, alen, f);
	fwrite(b, 1, blen, f);
	fwrite(c, 1, clen, f);
	return fclose(f) == 0 ? 0 : -1;
}

static int
write_corpus(const char *dir, const char *rsa_path, const char *ed_path)
{
	static const struct {
		const char *name, *text;
	} msgs[] = {
		{ "plain",
		  "From: Joe SixPack <joe@DOM>\r\nTo: Suzie Q <suzie@example.net>\r\n"
		  "Subject: Is dinner ready?\r\nDate: Fri, 11 Jul 2003 21:00:37 -0700\r\n"
		  "Message-ID: <20030712040037.46341.5F8J@DOM>\r\nMIME-Version: 1.0\r\n"
		  "Content-Type: text/plain; charset=us-ascii\r\n"
		  "List-Unsubscribe: <https://u.example/x?a=1&b=2>, <mailto:u@DOM>\r\n"
		  "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nFeedback-ID: c1:t1:p1:volley\r\n"
		  "\r\nHi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n" },
		{ "trailing_ws",
		  "From: joe@DOM\r\nSubject: white space \t \r\n\r\n"
		  "line one   \r\nline\t\ttwo \t\r\n  indented  with   runs\r\n\r\n   \r\n\t\r\n\r\n" },
		{ "empty_body", "From: joe@DOM\r\nSubject: empty body\r\n\r\n" },
		{ "no_body", "From: joe@DOM\r\nSubject: no empty line, no body\r\n" },
		{ "leading_dot",
		  "From: joe@DOM\r\nSubject: dots\r\n\r\n.\r\n..\r\n.hidden line\r\nmiddle\r\n...three\r\n." },
		{ "eightbit",
		  "From: J\xc3\xb6rg <joe@DOM>\r\nSubject: Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac 8-bit\r\n"
		  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		  "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa7" "a va? caf\xc3\xa9 \xe2\x82\xac\r\n"
		  "latin-1 \xe9\xff\xfe bytes\r\n" },
		{ "folded",
		  "Received: from a by b;\r\n\tMon, 30 Nov 2026 05:00:00 +0000\r\n"
		  "From:\r\n Joe\r\n\t<joe@DOM>\r\n"
		  "Subject: a long subject\r\n that is folded\r\n\tover three lines   \r\n"
		  "To: a@example.net,\r\n  b@example.net\r\nTo: second@example.net\r\n"
		  "Cc:   spaced   out   <c@example.net>  \r\n"
		  "\r\nbody\r\n" },
		{ "bare_lf",
		  "From: joe@DOM\nSubject: bare LF and CR\n\nline one\nline two\rline three\r\n\n\n" },
	};
	static const char *const doms[] = {
		"example.com", "news.ed.example", "simple.example", "unknown.example",
	};
	char *conf = xasprintf(
	    "dkim \"example.com\" { selector = [\"rsa1\", \"ed1\"]; key = [\"%s\", \"%s\"];\n"
	    "  algorithm = [\"rsa-sha256\", \"ed25519-sha256\"]; }\n"
	    "dkim \"simple.example\" { selector = \"rsa2\"; key = \"%s\"; canonicalization = \"simple/simple\"; }\n"
	    "dkim \"ed.example\" { selector = \"ed2\"; key = \"%s\"; algorithm = \"ed25519-sha256\";\n"
	    "  canonicalization = \"simple/simple\"; subdomains = true; }\n"
	    "dkim \"esp.example\" { selector = [\"esp-ed\", \"esp-rsa\"]; key = [\"%s\", \"%s\"];\n"
	    "  default = true; canonicalization = \"relaxed/simple\"; }\n",
	    rsa_path, ed_path, rsa_path, ed_path, ed_path, rsa_path);
	char *errors = NULL;
	struct config *c = config_load_string(conf, strlen(conf), "dkim-test.conf", &errors);
	struct buf dns = { 0 }, longmsg = { 0 };
	int rc = 0, count = 0;

	free(conf);
	if (c == NULL) {
		fprintf(stderr, "config: %s", errors ? errors : "?\n");
		free(errors);
		return 1;
	}
	for (size_t i = 0; i < c->ndkim; i++)
		for (size_t j = 0; j < c->dkim[i].nkeys; j++) {
			char *txt = dkim_key_dns_txt(c->dkim[i].keys[j].key);

			buf_appendf(&dns, "%s._domainkey.%s\t%s\n", c->dkim[i].keys[j].selector,
			    c->dkim[i].domain, txt);
			free(txt);
		}
	if (write_file_at(dir, "dns.txt", dns.data, dns.len, "", 0, "", 0) < 0)
		rc = 1;
	buf_free(&dns);

	/* long lines: 998 octets (the SMTP limit), then a 5000-octet line with spaces */
	buf_appendf(&longmsg, "From: joe@DOM\r\nSubject: long lines\r\n\r\n");
	for (int i = 0; i < 998; i++)
		buf_append(&longmsg, i % 10 == 9 ? " " : "x", 1);
	buf_append(&longmsg, "\r\n", 2);
	for (int i = 0; i < 5000; i++)
		buf_append(&longmsg, i % 7 == 6 ? "  " : "y", i % 7 == 6 ? 2 : 1);
	buf_append(&longmsg, "\r\nshort\r\n", 9);
	buf_append(&longmsg, "", 1);

	for (size_t m = 0; m <= sizeof msgs / sizeof msgs[0] && rc == 0; m++) {
		const char *name = m < sizeof msgs / sizeof msgs[0] ? msgs[m].name : "long_lines";
		const char *text = m < sizeof msgs / sizeof msgs[0] ? msgs[m].text : longmsg.data;

		for (size_t d = 0; d < sizeof doms / sizeof doms[0] && rc == 0; d++) {
			char *raw = with_domain(text, doms[d]);
			struct msg_body *b = msg_body_new(raw, strlen(raw));
			char *wire = xmalloc(b->len + 1), *sig, fname[200];
			size_t wlen = msg_unstuff(b->data, b->len, wire), siglen;
			static const char idhdr[] = "X-Volley-Id: 1764478800000-0\r\n";
			enum dkim_status st = sign_msg(c->dkim, c->ndkim, b->data, b->len,
			    DKIM_STUFFED, time(NULL), &sig, &siglen, NULL);

			if (st != DKIM_SIGNED) {
				fprintf(stderr, "%s/%s: %s\n", name, doms[d], dkim_status_text(st));
				rc = 1;
			} else {
				snprintf(fname, sizeof fname, "%s.%s.eml", name, doms[d]);
				/* as sent: signatures, the unsigned per-job header, the message */
				if (write_file_at(dir, fname, sig, siglen, idhdr, sizeof idhdr - 1, wire,
				    wlen) < 0)
					rc = 1;
				count++;
			}
			free(sig);
			free(wire);
			free(raw);
			msg_body_unref(b);
		}
	}
	/* random messages, each for a From domain in turn (fixed seed: reproducible) */
	unsigned seed = 2026;

	for (int i = 0; i < 100 && rc == 0; i++) {
		const char *dom = doms[i % (sizeof doms / sizeof doms[0])];
		char *raw = random_message(&seed, dom), *sig, fname[200];
		struct msg_body *b = msg_body_new(raw, strlen(raw));
		char *wire = xmalloc(b->len + 1);
		size_t wlen = msg_unstuff(b->data, b->len, wire), siglen;
		static const char idhdr[] = "X-Volley-Id: 1764478800000-1\r\n";

		if (sign_msg(c->dkim, c->ndkim, b->data, b->len, DKIM_STUFFED, time(NULL), &sig,
		    &siglen, NULL) != DKIM_SIGNED) {
			rc = 1;
		} else {
			snprintf(fname, sizeof fname, "random%02d.%s.eml", i, dom);
			if (write_file_at(dir, fname, sig, siglen, idhdr, sizeof idhdr - 1, wire, wlen) < 0)
				rc = 1;
			count++;
		}
		free(sig);
		free(wire);
		free(raw);
		msg_body_unref(b);
	}
	buf_free(&longmsg);
	config_free(c);
	if (rc == 0)
		printf("wrote %d signed messages to %s\n", count, dir);
	return rc;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc6376_example),
		cmocka_unit_test(test_body_cases),
		cmocka_unit_test(test_body_long_lines),
		cmocka_unit_test(test_header_cases),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test(test_signer_select),
		cmocka_unit_test(test_header_selection),
		cmocka_unit_test(test_instances_capped),
		cmocka_unit_test(test_stuffed_equals_raw),
		cmocka_unit_test(test_random_raw_equals_stuffed),
		cmocka_unit_test(test_sign_message_status),
		cmocka_unit_test(test_body_hash_cache_and_extra),
		cmocka_unit_test(test_rfc8463_example),
		cmocka_unit_test(test_key_errors),
		cmocka_unit_test(test_bench),
	};

	if (argc == 5 && strcmp(argv[1], "--write") == 0)
		return write_corpus(argv[2], argv[3], argv[4]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s [--write DIR RSA.pem ED.pem]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests_name("dkim", tests, NULL, NULL);
}
