/*
 * test_smtp_reply.c - tables for the SMTP reply parser: single and
 * multi-line replies, enhanced codes, every split point, garbage, limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp_reply.h"

struct good {
	const char *in;
	int code;
	const char *enh;
	const char *text;
	int nlines;
	size_t used;		/* 0 = strlen(in) */
};

static const struct good goods[] = {
	{ "250 OK\r\n", 250, "", "OK", 1, 0 },
	{ "220 mx.example.com ESMTP\n", 220, "", "mx.example.com ESMTP", 1, 0 },
	{ "250\r\n", 250, "", "", 1, 0 },
	{ "250 \r\n", 250, "", "", 1, 0 },
	{ "250 2.0.0 Ok: queued as 4XyZ\r\n", 250, "2.0.0", "Ok: queued as 4XyZ", 1, 0 },
	{ "550 5.1.1 <bob@example.org>: Recipient address rejected\r\n", 550, "5.1.1",
	  "<bob@example.org>: Recipient address rejected", 1, 0 },
	{ "451 4.7.650 The mail server has been rate limited\r\n", 451, "4.7.650",
	  "The mail server has been rate limited", 1, 0 },
	{ "550 5.1.10 RESOLVER.ADR.RecipientNotFound\r\n", 550, "5.1.10",
	  "RESOLVER.ADR.RecipientNotFound", 1, 0 },
	{ "250 2.1.0\r\n", 250, "2.1.0", "", 1, 0 },
	{ "250 2.1.0   spaced\r\n", 250, "2.1.0", "spaced", 1, 0 },
	/* an enhanced code of another class, or glued to text, is text */
	{ "250 5.1.1 odd\r\n", 250, "", "5.1.1 odd", 1, 0 },
	{ "550 5.1.1x y\r\n", 550, "", "5.1.1x y", 1, 0 },
	{ "550 5.1.1234 y\r\n", 550, "", "5.1.1234 y", 1, 0 },
	{ "554 delivery error: dd This user doesn't have an account\r\n", 554, "",
	  "delivery error: dd This user doesn't have an account", 1, 0 },
	/* multi-line */
	{ "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
	  250, "", "mx.example.com\nPIPELINING\nSIZE 10240000\n8BITMIME", 4, 0 },
	{ "550-5.1.1 The email account\r\n550-5.1.1 does not\r\n550 5.1.1 exist.\r\n",
	  550, "5.1.1", "The email account\ndoes not\nexist.", 3, 0 },
	{ "220-\r\n220 \r\n", 220, "", "\n", 2, 0 },
	{ "250-a\n250 b\n", 250, "", "a\nb", 2, 0 },
	/* only the repeated code is dropped on later lines */
	{ "550-5.7.1 a\r\n550 5.7.2 b\r\n", 550, "5.7.1", "a\n5.7.2 b", 2, 0 },
	/* control characters become spaces */
	{ "250 a\tb\001c\r\n", 250, "", "a b c", 1, 0 },
	{ "250 a\rb\r\n", 250, "", "a b", 1, 0 },
	/* two replies: one at a time */
	{ "250 first\r\n354 go\r\n", 250, "", "first", 1, 11 },
	{ "221 2.0.0 Bye\r\n250 x", 221, "2.0.0", "Bye", 1, 15 },
};

static void
test_good(void **state)
{
	for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
		const struct good *g = &goods[i];
		struct smtp_reply r;
		size_t used = 12345, want = g->used ? g->used : strlen(g->in);

		assert_int_equal(smtp_reply_parse(g->in, strlen(g->in), &r, &used), 1);
		assert_int_equal(used, want);
		assert_int_equal(r.code, g->code);
		assert_string_equal(r.enh, g->enh);
		assert_string_equal(r.text, g->text);
		assert_int_equal(r.nlines, g->nlines);
	}
}

/* Every proper prefix of a good reply needs more bytes and consumes nothing. */
static void
test_split_every_byte(void **state)
{
	for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
		const struct good *g = &goods[i];
		size_t want = g->used ? g->used : strlen(g->in);
		struct smtp_reply r;

		for (size_t k = 0; k < want; k++) {
			size_t used = 777;

			assert_int_equal(smtp_reply_parse(g->in, k, &r, &used), 0);
			assert_int_equal(used, 777);
		}
		/* and fed through a heap copy of exactly that size (ASan checks reads) */
		char *copy = malloc(want);
		size_t used = 0;

		memcpy(copy, g->in, want);
		assert_int_equal(smtp_reply_parse(copy, want, &r, &used), 1);
		assert_int_equal(used, want);
		assert_string_equal(r.text, g->text);
		free(copy);
	}
}

static const struct {
	const char *in;
	int rc;
} bads[] = {
	{ "hello\r\n", -1 },
	{ "h", -1 },		/* garbage is seen at once */
	{ "1", -1 },
	{ "6", -1 },
	{ "2x0 ok\r\n", -1 },
	{ "2x", -1 },
	{ "25x", -1 },
	{ "250xok\r\n", -1 },
	{ "250x", -1 },
	{ "25\r\n", -1 },
	{ "\r\n", -1 },
	{ "199 x\r\n", -1 },
	{ "650 x\r\n", -1 },
	{ "250-a\r\n251 b\r\n", -1 },	/* mixed codes */
	{ "250-a\r\n251", -1 },	/* ... seen before the line ends */
	{ "250-a\r\n550 b\r\n", -1 },
	{ "250-a\r\n\r\n", -1 },
	{ " 250 x\r\n", -1 },
	{ "", 0 },
	{ "2", 0 },
	{ "25", 0 },
	{ "250", 0 },
	{ "250-a\r\n25", 0 },
	{ "250 ok", 0 },
	{ "250 ok\r", 0 },
	{ "250\r", 0 },
	{ "250\rx", -1 },
	{ "250\r\r\n", -1 },
};

static void
test_bad(void **state)
{
	for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
		struct smtp_reply r;
		size_t used = 99;

		assert_int_equal(smtp_reply_parse(bads[i].in, strlen(bads[i].in), &r, &used),
		    bads[i].rc);
		assert_int_equal(used, 99);
	}
}

static void
test_limits(void **state)
{
	size_t cap = 200000;
	char *b = malloc(cap);
	struct smtp_reply r;
	size_t used, n;

	/* a line of exactly SMTP_REPLY_LINE_MAX is fine, one more is not */
	memcpy(b, "250 ", 4);
	memset(b + 4, 'a', SMTP_REPLY_LINE_MAX - 4);
	memcpy(b + SMTP_REPLY_LINE_MAX, "\r\n", 2);
	assert_int_equal(smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 2, &r, &used), 1);
	assert_int_equal(used, SMTP_REPLY_LINE_MAX + 2);
	assert_int_equal(strlen(r.text), SMTP_REPLY_LINE_MAX - 4);

	memset(b + 4, 'a', SMTP_REPLY_LINE_MAX - 3);
	memcpy(b + SMTP_REPLY_LINE_MAX + 1, "\r\n", 2);
	assert_int_equal(smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 3, &r, &used), -1);
	/* overlong without a line end: an error once it cannot be a line */
	assert_int_equal(smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 1, &r, &used), 0);
	assert_int_equal(smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 2, &r, &used), -1);
	/* an overlong line with a bare LF */
	b[SMTP_REPLY_LINE_MAX + 1] = '\n';
	assert_int_equal(smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 2, &r, &used), -1);

	/* SMTP_REPLY_LINES_MAX lines are fine, one more is not */
	n = 0;
	for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		n += (size_t)snprintf(b + n, cap - n, "250-line %d\r\n", i);
	n += (size_t)snprintf(b + n, cap - n, "250 last\r\n");
	assert_int_equal(smtp_reply_parse(b, n, &r, &used), 1);
	assert_int_equal(r.nlines, SMTP_REPLY_LINES_MAX);
	assert_int_equal(used, n);
	n = 0;
	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		n += (size_t)snprintf(b + n, cap - n, "250-line %d\r\n", i);
	assert_int_equal(smtp_reply_parse(b, n, &r, &used), -1);
	n += (size_t)snprintf(b + n, cap - n, "250 last\r\n");
	assert_int_equal(smtp_reply_parse(b, n, &r, &used), -1);

	/* text longer than SMTP_REPLY_TEXT_MAX is truncated, reply still whole */
	n = 0;
	for (int i = 0; i < 10; i++) {
		n += (size_t)snprintf(b + n, cap - n, "250%c", i == 9 ? ' ' : '-');
		memset(b + n, 'x', 1000);
		n += 1000;
		memcpy(b + n, "\r\n", 2);
		n += 2;
	}
	assert_int_equal(smtp_reply_parse(b, n, &r, &used), 1);
	assert_int_equal(used, n);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
	assert_int_equal(r.nlines, 10);
	free(b);
}

static void
test_first_line(void **state)
{
	static const struct {
		const char *in;
		size_t outlen;
		const char *want;
	} t[] = {
		{ "550-5.1.1 The email account\r\n550 5.1.1 gone\r\n", 512,
		  "550 5.1.1 The email account" },
		{ "250\r\n", 512, "250" },
		{ "250 2.0.0\r\n", 512, "250 2.0.0" },
		{ "554 no enh here\r\n", 512, "554 no enh here" },
		{ "220-\r\n220 second\r\n", 512, "220" },
		{ "550 5.1.1 abcdef\r\n", 8, "550 5.1" },
		{ "550 5.1.1 abcdef\r\n", 12, "550 5.1.1 a" },
		{ "550 5.1.1 abcdef\r\n", 11, "550 5.1.1 " },
		{ "550 5.1.1 abcdef\r\n", 1, "" },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct smtp_reply r;
		size_t used;
		char out[512];

		assert_int_equal(smtp_reply_parse(t[i].in, strlen(t[i].in), &r, &used), 1);
		memset(out, 'Z', sizeof out);
		smtp_reply_first_line(&r, out, t[i].outlen);
		assert_string_equal(out, t[i].want);
	}

	/* a long reply: bounded to 511 characters, no CR/LF */
	char big[3000];
	struct smtp_reply r;
	size_t used;
	char out[512];

	memcpy(big, "550 5.7.1 ", 10);
	memset(big + 10, 'q', 2000);
	memcpy(big + 2010, "\r\n", 2);
	assert_int_equal(smtp_reply_parse(big, 2012, &r, &used), 1);
	smtp_reply_first_line(&r, out, sizeof out);
	assert_int_equal(strlen(out), 511);
	assert_null(strchr(out, '\r'));
	assert_null(strchr(out, '\n'));
	assert_memory_equal(out, "550 5.7.1 qqq", 13);

	/* a hand-built reply with control characters is still one line */
	memset(&r, 0, sizeof r);
	r.code = 451;
	strcpy(r.text, "a\rb\tc\nsecond");
	smtp_reply_first_line(&r, out, sizeof out);
	assert_string_equal(out, "451 a b c");
}

static void
test_enh(void **state)
{
	static const struct {
		const char *in;
		size_t n;
		const char *out;
	} t[] = {
		{ "5.1.1", 5, "5.1.1" },
		{ "2.0.0 ok", 5, "2.0.0" },
		{ "4.7.650 x", 7, "4.7.650" },
		{ "5.1.10", 6, "5.1.10" },
		{ "5.123.456", 9, "5.123.456" },
		{ "5.1.1234", 0, "" },
		{ "5.1234.1", 0, "" },
		{ "5.1.1.2", 0, "" },
		{ "3.1.1", 0, "" },
		{ "5.1", 0, "" },
		{ "5.1.", 0, "" },
		{ "5..1", 0, "" },
		{ "x.1.1", 0, "" },
		{ "", 0, "" },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char out[16] = "junk";

		assert_int_equal(smtp_enh_parse(t[i].in, strlen(t[i].in), out), t[i].n);
		assert_string_equal(out, t[i].out);
	}
	/* the length bounds the scan */
	char out[16];

	assert_int_equal(smtp_enh_parse("5.1.1", 4, out), 0);
	assert_int_equal(smtp_enh_parse("5.1.12", 5, out), 5);
	assert_string_equal(out, "5.1.1");
}

/*
 * The scanner looks at each byte once: fed a maximal reply one byte at a
 * time, with every line it has already judged overwritten by garbage, it
 * still accepts the reply (it never went back), and its work is linear.
 */
static void
test_scan_linear(void **state)
{
	size_t cap = SMTP_REPLY_LINES_MAX * (SMTP_REPLY_LINE_MAX + 2), n = 0;
	char *b = malloc(cap), *orig = malloc(cap);
	struct smtp_reply_cursor k;
	struct smtp_reply r;
	size_t used;
	int rc = 0;

	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		memcpy(b + n, i == SMTP_REPLY_LINES_MAX - 1 ? "250 " : "250-", 4);
		memset(b + n + 4, 'a' + i % 26, SMTP_REPLY_LINE_MAX - 4);
		memcpy(b + n + SMTP_REPLY_LINE_MAX, "\r\n", 2);
		n += SMTP_REPLY_LINE_MAX + 2;
	}
	memcpy(orig, b, n);
	memset(&k, 0, sizeof k);
	for (size_t i = 1; i <= n; i++) {
		rc = smtp_reply_scan(b, i, &k);
		if (i < n)
			assert_int_equal(rc, 0);
		memset(b, 'X', k.line);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(k.end, n);
	assert_int_equal(k.nlines, SMTP_REPLY_LINES_MAX);
	assert_true(k.work <= 5 * n);
	/* the whole parse agrees */
	assert_int_equal(smtp_reply_parse(orig, n, &r, &used), 1);
	assert_int_equal(used, n);
	assert_int_equal(r.nlines, SMTP_REPLY_LINES_MAX);

	/* garbage is still seen as soon as it is visible, with a cursor */
	memset(&k, 0, sizeof k);
	assert_int_equal(smtp_reply_scan("250-a\r\n2", 8, &k), 0);
	assert_int_equal(smtp_reply_scan("250-a\r\n25", 9, &k), 0);
	assert_int_equal(smtp_reply_scan("250-a\r\n251", 10, &k), -1);
	memset(&k, 0, sizeof k);
	assert_int_equal(smtp_reply_scan("250-a\r\n250", 10, &k), 0);
	assert_int_equal(smtp_reply_scan("250-a\r\n250 b\r", 13, &k), 0);
	assert_int_equal(smtp_reply_scan("250-a\r\n250 b\r\n\r\n", 16, &k), 1);
	assert_int_equal(k.end, 14);
	free(b);
	free(orig);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_first_line),
		cmocka_unit_test(test_enh),
		cmocka_unit_test(test_scan_linear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
