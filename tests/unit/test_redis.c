/*
 * test_redis.c - the Redis module's pure policy: which error replies keep a
 * settling write for a later retry (and which drop it), matched on the
 * error code alone; and the back-off steps (500 ms doubling, capped at
 * 30 s).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis.h"

static void
test_error_kept(void **state)
{
	static const struct { const char *err; int kept; } t[] = {
		{ "LOADING Redis is loading the dataset in memory", 1 },
		{ "BUSY Redis is busy running a script.", 1 },
		{ "BUSYGROUP Consumer Group name already exists", 0 },
		{ "NOSCRIPT No matching script. Please use EVAL.", 1 },
		{ "READONLY You can't write against a read only replica.", 1 },
		{ "OOM command not allowed when used memory > 'maxmemory'.", 1 },
		{ "NOPERM this user has no permissions to run the 'evalsha' command", 1 },
		{ "NOAUTH Authentication required.", 1 },
		{ "WRONGPASS invalid username-password pair or user is disabled.", 1 },
		{ "MISCONF Redis is configured to save RDB snapshots", 1 },
		{ "TRYAGAIN", 1 },
		{ "WRONGTYPE Operation against a key holding the wrong kind of value", 0 },
		{ "ERR Error running script", 0 },
		{ "NOGROUP No such key", 0 },
		{ "LOADINGX", 0 },
		{ "", 0 },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (rq_error_kept(t[i].err) != t[i].kept)
			fail_msg("'%s': kept %d, want %d", t[i].err, rq_error_kept(t[i].err), t[i].kept);
	}
}

static void
test_backoff(void **state)
{
	static const uint64_t steps[] = { 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
	uint64_t cur = 0;

	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		cur = rq_backoff_next(cur);
		assert_int_equal(cur, steps[i]);
	}
	assert_int_equal(rq_backoff_next(100), 500);
	assert_int_equal(rq_backoff_next(20000), 30000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_kept),
		cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
