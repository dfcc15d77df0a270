/*
 * test_util.c - log_quote(): a hostile value cannot forge key= fields or
 * extra lines in a log line, and truncation never cuts an escape.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "util.h"

static const struct {
	const char *in, *out;
} quote_cases[] = {
	{ "", "" },
	{ "250 2.0.0 Ok: queued as 4ABC", "250 2.0.0 Ok: queued as 4ABC" },
	{ "550 x\" status=delivered reply=\"ok", "550 x\\\" status=delivered reply=\\\"ok" },
	{ "a\\b", "a\\\\b" },
	{ "line\r\n2024-01-01 info [job] job=forged", "line\\r\\n2024-01-01 info [job] job=forged" },
	{ "tab\there", "tab\\there" },
	{ "\x01\x1b[31mred\x7f", "\\x01\\x1b[31mred\\x7f" },
	{ "b\xc3\xbc" "cher", "b\xc3\xbc" "cher" },	/* UTF-8 passes */
};

static void
test_quote(void **state)
{
	char buf[256];

	for (size_t i = 0; i < sizeof quote_cases / sizeof quote_cases[0]; i++) {
		size_t n = log_quote(buf, sizeof buf, quote_cases[i].in);
		assert_string_equal(buf, quote_cases[i].out);
		assert_int_equal(n, strlen(quote_cases[i].out));
	}
	assert_int_equal(log_quote(buf, sizeof buf, NULL), 0);
	assert_string_equal(buf, "");
}

static void
test_quote_truncates_safely(void **state)
{
	char buf[8];

	/* room for 7 bytes: "abcdef" + half of \" would be 8: stop before */
	assert_int_equal(log_quote(buf, sizeof buf, "abcdef\"xyz"), 6);
	assert_string_equal(buf, "abcdef");
	assert_int_equal(log_quote(buf, sizeof buf, "abcd\x01zz"), 4);
	assert_string_equal(buf, "abcd");
	assert_int_equal(log_quote(buf, sizeof buf, "abc\\de"), 7);
	assert_string_equal(buf, "abc\\\\de");
	assert_int_equal(log_quote(buf, sizeof buf, "0123456789"), 7);
	assert_string_equal(buf, "0123456");
	assert_int_equal(log_quote(buf, 1, "abc"), 0);
	assert_string_equal(buf, "");
	/* a tiny buffer is never overrun */
	memset(buf, 'Z', sizeof buf);
	assert_int_equal(log_quote(buf, 3, "\r\r\r"), 2);
	assert_memory_equal(buf, "\\r\0ZZZZZ", 8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_quote_truncates_safely),
	};
	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
