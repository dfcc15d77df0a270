/*
 * test_mime.c - the bounded MIME walker: header unfolding and lookup,
 * parameters, base64 and quoted-printable, the part tree, CRLF and bare
 * LF alike, and every limit (size, depth, parts, headers) as a clean
 * rejection.
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

#include "mime.h"
#include "util.h"

static void
test_headers(void **state)
{
	static const char h[] =
	    "From some@one Mon Nov 30 00:00:00 2026\n"
	    "Subject: a long\n"
	    "\tsubject line\r\n"
	    "  continued\n"
	    "not a header line\n"
	    "X-Empty:\n"
	    "content-TYPE : text/plain; charset=us-ascii\n"
	    "X-Ctl: a\001b\n"
	    "\n"
	    "body: not a header\n";
	struct mime_headers hs;
	size_t off;
	const char *why = NULL;

	assert_int_equal(mime_headers_parse(h, strlen(h), &hs, &off, &why), 0);
	assert_int_equal(hs.n, 4);
	assert_string_equal(mime_header_get(&hs, "subject"), "a long subject line  continued");
	assert_string_equal(mime_header_get(&hs, "X-EMPTY"), "");
	assert_string_equal(mime_header_get(&hs, "Content-Type"), "text/plain; charset=us-ascii");
	assert_string_equal(mime_header_get(&hs, "X-Ctl"), "a b");
	assert_null(mime_header_get(&hs, "body"));
	assert_string_equal(h + off, "body: not a header\n");
	mime_headers_free(&hs);

	/* headers only: the body offset is the end */
	assert_int_equal(mime_headers_parse("A: 1\nB: 2", 9, &hs, &off, &why), 0);
	assert_int_equal(off, 9);
	assert_string_equal(mime_header_get(&hs, "b"), "2");
	mime_headers_free(&hs);

	/* too many */
	struct buf b = { 0 };

	for (int i = 0; i <= MIME_HEADERS_MAX; i++)
		buf_appendf(&b, "X-%d: v\n", i);
	assert_int_equal(mime_headers_parse(b.data, b.len, &hs, &off, &why), -1);
	assert_string_equal(why, "too many header lines");
	mime_headers_free(&hs);
	buf_free(&b);

	/* a value is cut at MIME_VALUE_MAX however many lines fold into it */
	buf_appendf(&b, "Subject: x\n");
	for (int i = 0; i < 5000; i++)
		buf_appendf(&b, " 0123456789\n");
	assert_int_equal(mime_headers_parse(b.data, b.len, &hs, &off, &why), 0);
	assert_true(strlen(mime_header_get(&hs, "Subject")) <= MIME_VALUE_MAX);
	mime_headers_free(&hs);
	buf_free(&b);
}

static void
test_params(void **state)
{
	static const struct { const char *v, *name, *want; } cases[] = {
		{ "multipart/report; report-type=delivery-status; boundary=\"a;b\\\"c\"", "boundary", "a;b\"c" },
		{ "multipart/report; report-type=delivery-status; boundary=\"a;b\"", "REPORT-TYPE", "delivery-status" },
		{ "multipart/mixed;boundary=plain-token", "boundary", "plain-token" },
		{ "multipart/mixed; BOUNDARY = spaced ; x=y", "boundary", "spaced" },
		{ "multipart/mixed; boundary=\"unterminated", "boundary", "unterminated" },
		{ "multipart/mixed; xboundary=no", "boundary", NULL },
		{ "multipart/mixed", "boundary", NULL },
		{ "multipart/mixed; ; ;", "boundary", NULL },
		{ "multipart/mixed; flag; boundary=after-flag", "boundary", "after-flag" },
	};
	char out[64];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = mime_param(cases[i].v, cases[i].name, out, sizeof out);

		if (cases[i].want == NULL) {
			assert_int_equal(rc, -1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(out, cases[i].want);
	}
	/* cut to the buffer */
	char tiny[4];

	assert_int_equal(mime_param("a/b; boundary=abcdefgh", "boundary", tiny, sizeof tiny), 0);
	assert_string_equal(tiny, "abc");
	assert_int_equal(mime_param(NULL, "boundary", out, sizeof out), -1);
}

static void
test_decode(void **state)
{
	static const struct { const char *in, *want; int b64; } cases[] = {
		{ "aGVsbG8gd29ybGQ=", "hello world", 1 },
		{ "aGVs\r\nbG8g\nd29y bGQ=", "hello world", 1 },
		{ "aGVsbG8*!gd29ybGQ", "hello world", 1 },	/* junk skipped */
		{ "", "", 1 },
		{ "Caf=E9 =\r\nau=\nlait", "Caf\xe9 aulait", 0 },
		{ "a=3Db=3d", "a=b=", 0 },
		{ "bad =ZZ escape =", "bad =ZZ escape =", 0 },
		{ "end=4", "end=4", 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].in);
		char *out = xmalloc(n + 1);
		size_t m = cases[i].b64 ? mime_decode_base64(cases[i].in, n, out)
		    : mime_decode_qp(cases[i].in, n, out);

		assert_true(m <= n);
		out[m] = '\0';
		assert_string_equal(out, cases[i].want);
		free(out);
	}
}

static const char nested[] =
    "From: a@example.org\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\n"
    "\n"
    "preamble\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9\n"
    "--inner\n"
    "Content-Type: TEXT/HTML; charset=utf-8\n"
    "Content-Transfer-Encoding: BASE64\n"
    "\n"
    "PGI+aGk8L2I+\n"
    "--inner--\n"
    "--outer\n"
    "\n"
    "no headers: text/plain\n"
    "--outer \t\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: inside\n"
    "\n"
    "--inner\n"
    "--outer--\n"
    "epilogue\n";

static void
check_nested(const char *msg, size_t len)
{
	struct mime_msg m;

	assert_int_equal(mime_parse(msg, len, &m), 0);
	assert_int_equal(m.n, 6);
	assert_string_equal(m.parts[0].ctype, "multipart/mixed");
	assert_string_equal(m.parts[1].ctype, "multipart/alternative");
	assert_int_equal(m.parts[1].parent, 0);
	assert_string_equal(m.parts[2].ctype, "text/plain");
	assert_int_equal(m.parts[2].depth, 2);
	assert_int_equal(m.parts[2].body_len, 5);
	assert_memory_equal(m.parts[2].body, "caf\xc3\xa9", 5);
	assert_string_equal(m.parts[3].ctype, "text/html");
	assert_int_equal(m.parts[3].body_len, 9);
	assert_memory_equal(m.parts[3].body, "<b>hi</b>", 9);
	assert_string_equal(m.parts[4].ctype, "text/plain");
	assert_int_equal(m.parts[4].body_len, strlen("no headers: text/plain"));
	assert_string_equal(m.parts[5].ctype, "message/rfc822");
	/* message/rfc822 is not descended into: a stray boundary inside stays */
	assert_non_null(memmem(m.parts[5].body, m.parts[5].body_len, "--inner", 7));
	assert_int_equal(m.truncated, 0);
	mime_free(&m);
}

static void
test_tree(void **state)
{
	struct buf crlf = { 0 };

	check_nested(nested, strlen(nested));
	for (const char *p = nested; *p; p++)
		buf_append(&crlf, *p == '\n' ? "\r\n" : p, *p == '\n' ? 2 : 1);
	check_nested(crlf.data, crlf.len);
	buf_free(&crlf);
}

static void
test_odd_shapes(void **state)
{
	struct mime_msg m;
	static const char noclose[] =
	    "Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/plain\n\nfirst\n--b\n\nsecond, cut";
	static const char nobd[] = "Content-Type: multipart/mixed\n\nbody without boundary\n";
	static const char digest[] =
	    "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nx\n--d--\n";
	static const char badtype[] = "Content-Type: @@@/;;\n\nx";

	assert_int_equal(mime_parse(noclose, strlen(noclose), &m), 0);
	assert_int_equal(m.truncated, 1);
	assert_int_equal(m.n, 3);
	assert_memory_equal(m.parts[2].body, "second, cut", 11);
	mime_free(&m);

	assert_int_equal(mime_parse(nobd, strlen(nobd), &m), 0);
	assert_int_equal(m.n, 1);
	mime_free(&m);

	assert_int_equal(mime_parse(digest, strlen(digest), &m), 0);
	assert_int_equal(m.n, 2);
	assert_string_equal(m.parts[1].ctype, "message/rfc822");
	mime_free(&m);

	assert_int_equal(mime_parse(badtype, strlen(badtype), &m), 0);
	assert_string_equal(m.parts[0].ctype, "text/plain");
	mime_free(&m);

	assert_int_equal(mime_parse("", 0, &m), -1);
	assert_string_equal(m.reason, "empty message");
	mime_free(&m);
}

/* nest - a message with depth multiparts inside each other. */
static void
nest(struct buf *b, int depth)
{
	buf_appendf(b, "Content-Type: multipart/mixed; boundary=\"b0\"\n\n");
	for (int i = 0; i < depth - 1; i++)
		buf_appendf(b, "--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n", i, i + 1);
	buf_appendf(b, "--b%d\n\nleaf\n", depth - 1);
	for (int i = depth - 1; i >= 0; i--)
		buf_appendf(b, "--b%d--\n", i);
}

static void
test_limits(void **state)
{
	struct mime_msg m;
	struct buf b = { 0 };

	/* MIME_DEPTH_MAX multiparts inside each other are fine, one more is not */
	nest(&b, MIME_DEPTH_MAX);
	assert_int_equal(mime_parse(b.data, b.len, &m), 0);
	assert_int_equal(m.n, MIME_DEPTH_MAX + 1);
	mime_free(&m);
	buf_free(&b);
	nest(&b, MIME_DEPTH_MAX + 1);
	assert_int_equal(mime_parse(b.data, b.len, &m), -1);
	assert_string_equal(m.reason, "multiparts nested deeper than 8");
	mime_free(&m);
	buf_free(&b);

	/* too many parts */
	buf_appendf(&b, "Content-Type: multipart/mixed; boundary=x\n\n");
	for (int i = 0; i < 100000; i++)
		buf_appendf(&b, "--x\n\n.\n");
	assert_int_equal(mime_parse(b.data, b.len, &m), -1);
	assert_string_equal(m.reason, "more than 256 MIME parts");
	mime_free(&m);
	buf_free(&b);

	/* too large */
	char *big = xcalloc(1, MIME_INPUT_MAX + 1);

	memset(big, 'a', MIME_INPUT_MAX + 1);
	assert_int_equal(mime_parse(big, MIME_INPUT_MAX + 1, &m), -1);
	assert_string_equal(m.reason, "message larger than 10485760 bytes");
	mime_free(&m);

	/* the largest accepted input, all lines, is read in linear time */
	clock_t t0 = clock();

	memcpy(big, "Content-Type: multipart/mixed; boundary=x\n\n", 43);
	for (size_t i = 43; i + 1 < MIME_INPUT_MAX; i += 2)
		memcpy(big + i, "-\n", 2);
	assert_int_equal(mime_parse(big, MIME_INPUT_MAX, &m), 0);
	mime_free(&m);
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 5.0);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_tree),
		cmocka_unit_test(test_odd_shapes),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests_name("mime", tests, NULL, NULL);
}
