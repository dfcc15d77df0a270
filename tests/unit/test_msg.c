/*
 * test_msg.c - message body preparation: line ends, dot-stuffing, the
 * terminator, SIZE and 8-bit detection, refcounts, msg_unstuff round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "msg.h"

#define S(x) x, sizeof(x) - 1

static const struct {
	const char *raw;
	size_t rawlen;
	const char *data;	/* on the wire */
	const char *norm;	/* msg_unstuff(data) */
	int eightbit;
} t[] = {
	{ S(""), ".\r\n", "", 0 },
	{ S("a"), "a\r\n.\r\n", "a\r\n", 0 },
	{ S("a\n"), "a\r\n.\r\n", "a\r\n", 0 },
	{ S("a\r\n"), "a\r\n.\r\n", "a\r\n", 0 },
	{ S("a\rb"), "a\r\nb\r\n.\r\n", "a\r\nb\r\n", 0 },
	{ S("a\n\nb"), "a\r\n\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 0 },
	{ S("\n"), "\r\n.\r\n", "\r\n", 0 },
	{ S("\r\r\n"), "\r\n\r\n.\r\n", "\r\n\r\n", 0 },
	{ S("\n\r"), "\r\n\r\n.\r\n", "\r\n\r\n", 0 },
	{ S("."), "..\r\n.\r\n", ".\r\n", 0 },
	{ S(".\n"), "..\r\n.\r\n", ".\r\n", 0 },
	{ S("a\n.\nb"), "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 0 },
	{ S("..x\r\n"), "...x\r\n.\r\n", "..x\r\n", 0 },
	{ S("x.\r\n.y"), "x.\r\n..y\r\n.\r\n", "x.\r\n.y\r\n", 0 },
	{ S("Subject: t\n\nline\n.\n..\nend"),
	  "Subject: t\r\n\r\nline\r\n..\r\n...\r\nend\r\n.\r\n",
	  "Subject: t\r\n\r\nline\r\n.\r\n..\r\nend\r\n", 0 },
	{ S("caf\xc3\xa9\n"), "caf\xc3\xa9\r\n.\r\n", "caf\xc3\xa9\r\n", 1 },
	{ S("a\x7f\x01"), "a\x7f\x01\r\n.\r\n", "a\x7f\x01\r\n", 0 },
	{ S("\x80"), "\x80\r\n.\r\n", "\x80\r\n", 1 },
	{ S("a\0b\n"), NULL, NULL, 0 },	/* NUL kept: checked by length below */
};

static void
test_table(void **state)
{
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		const char *data = t[i].data, *norm = t[i].norm;
		struct msg_body *b;
		char *out;
		size_t n;

		b = msg_body_new(t[i].raw, t[i].rawlen);
		assert_non_null(b);
		assert_int_equal(b->refs, 1);
		if (data == NULL) {
			assert_int_equal(b->len, 8);
			assert_memory_equal(b->data, "a\0b\r\n.\r\n", 8);
			assert_int_equal(b->size, 5);
			msg_body_unref(b);
			continue;
		}
		assert_int_equal(b->len, strlen(data));
		assert_memory_equal(b->data, data, b->len);
		assert_int_equal(b->size, strlen(norm));
		assert_int_equal(b->eightbit, t[i].eightbit);
		out = malloc(b->len + 1);
		n = msg_unstuff(b->data, b->len, out);
		assert_int_equal(n, strlen(norm));
		assert_memory_equal(out, norm, n);
		free(out);
		msg_body_unref(b);
	}
}

/* Random bodies: the invariants hold and unstuffing gives size bytes of CRLF text. */
static void
test_random(void **state)
{
	static const char alpha[] = { '.', '\r', '\n', 'a', '\x80', '.' };
	unsigned seed = 12345;
	char raw[64], out[256];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len, n;
		struct msg_body *b;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof raw;
		for (size_t k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			raw[k] = alpha[(seed >> 16) % sizeof alpha];
		}
		b = msg_body_new(raw, len);
		assert_true(b->len >= 3);
		assert_memory_equal(b->data + b->len - 3, ".\r\n", 3);
		if (b->len > 3)
			assert_memory_equal(b->data + b->len - 5, "\r\n", 2);
		/* every CR is followed by LF, every LF preceded by CR */
		for (size_t k = 0; k < b->len; k++) {
			if (b->data[k] == '\r')
				assert_true(k + 1 < b->len && b->data[k + 1] == '\n');
			if (b->data[k] == '\n')
				assert_true(k > 0 && b->data[k - 1] == '\r');
		}
		/* no line but the last is "." */
		for (size_t k = 0; k + 3 < b->len; k++)
			if (k == 0 || b->data[k - 1] == '\n')
				assert_false(memcmp(b->data + k, ".\r\n", 3) == 0);
		n = msg_unstuff(b->data, b->len, out);
		assert_int_equal(n, b->size);
		assert_int_equal(b->eightbit, memchr(raw, '\x80', len) != NULL);
		/* stuffing an unstuffed body again is the identity */
		struct msg_body *b2 = msg_body_new(out, n);

		assert_int_equal(b2->len, b->len);
		assert_memory_equal(b2->data, b->data, b->len);
		msg_body_unref(b2);
		msg_body_unref(b);
	}
}

static void
test_refs(void **state)
{
	struct msg_body *b = msg_body_new(S("x\n"));

	assert_ptr_equal(msg_body_ref(b), b);
	assert_int_equal(b->refs, 2);
	msg_body_unref(b);
	assert_int_equal(b->refs, 1);
	msg_body_unref(b);	/* freed: ASan would see a leak otherwise */
	msg_body_unref(NULL);
}

static void
test_unstuff(void **state)
{
	static const struct {
		const char *in, *out;
	} u[] = {
		{ "..a\r\n.\r\n", ".a\r\n" },
		{ "a\n..\n.\n", "a\n.\n" },			/* bare LF lines */
		{ "a\r\n.\r\nafter\r\n", "a\r\n" },	/* stops at the terminator */
		{ "a\r\n.", "a\r\n" },			/* terminator at the end */
		{ ".\r\n", "" },
		{ "no end", "no end" },
		{ ".x\r\n", "x\r\n" },			/* RFC 5321 4.5.2: drop the dot */
	};
	char out[64];

	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
		size_t n = msg_unstuff(u[i].in, strlen(u[i].in), out);

		assert_int_equal(n, strlen(u[i].out));
		assert_memory_equal(out, u[i].out, n);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_unstuff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
