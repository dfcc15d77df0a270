/*
 * test_pace.c - smooth pacing (pace.c): rate conversions, the GCRA's
 * answers with a fake clock, 120/min over ten simulated minutes (120 +-5%
 * a minute, no second over three times the average), a small burst after
 * a quiet spell and no more, and rates as an operator reads them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pace.h"

static void
test_conversions(void **state)
{
	static const struct { struct rate r; uint64_t mph, us; } cases[] = {
		{ { 3000, 3600000 }, 3000000000ull, 1200000 },
		{ { 120, 60000 }, 7200000000ull, 500000 },
		{ { 5, 1000 }, 18000000000ull, 200000 },
		{ { 1, 86400000 }, 41666, 86400172800ull / 1000 },
		{ { 0, 0 }, 0, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t mph = pace_mph(&cases[i].r);

		assert_int_equal(mph, cases[i].mph);
		if (i < 3)
			assert_int_equal(pace_interval_us(mph), cases[i].us);
	}
	/* 1/day: one every 24 h (to within a few ms of rounding) */
	assert_true(pace_interval_us(41666) / 1000 >= 86400000 &&
	    pace_interval_us(41666) / 1000 < 86400000 + 5000);
	assert_int_equal(pace_interval_us(0), 0);
	assert_int_equal(pace_pct(UINT64_MAX / 2, 100), UINT64_MAX / 2);
	assert_int_equal(pace_pct(7200000000ull, 50), 3600000000ull);
	assert_int_equal(PACE_MPH(120, 60000), 7200000000ull);
}

static void
test_gcra_answers(void **state)
{
	struct pace p = { 0 };
	uint64_t T = pace_interval_us(PACE_MPH(1, 1000));	/* 1/s */

	/* burst 3 at once, then one a second */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pace_wait(&p, T, 3, 10000), 0);
		pace_take(&p, T, 10000);
	}
	assert_int_equal(pace_wait(&p, T, 3, 10000), 1000);
	assert_int_equal(pace_wait(&p, T, 3, 10400), 600);
	assert_int_equal(pace_wait(&p, T, 3, 11000), 0);
	pace_take(&p, T, 11000);
	assert_int_equal(pace_wait(&p, T, 3, 11000), 1000);
	/* a fast rate on a millisecond clock: 1,000,000/s lets the whole
	 * millisecond's 1,000 go at once, the next one a millisecond later
	 * (not one per millisecond, as before) */
	{
		struct pace f = { 0 };
		uint64_t F = pace_interval_us(PACE_MPH(1000000, 1000));
		int sent = 0;

		while (pace_wait(&f, F, 1, 20000) == 0 && sent < 5000) {
			pace_take(&f, F, 20000);
			sent++;
		}
		assert_int_equal(sent, 1000);
		assert_int_equal(pace_wait(&f, F, 1, 20000), 1);
		assert_int_equal(pace_wait(&f, F, 1, 20001), 0);
	}
	/* unlimited: always now */
	assert_int_equal(pace_wait(&p, 0, 3, 0), 0);
	/* burst 1: strictly one per interval */
	memset(&p, 0, sizeof p);
	pace_take(&p, T, 5000);
	assert_int_equal(pace_wait(&p, T, 1, 5000), 1000);
	assert_int_equal(pace_wait(&p, T, 0, 5999), 1);
	/* after a quiet hour: the burst again, no more */
	int n = 0;
	while (pace_wait(&p, T, 3, 3605000) == 0 && n < 100) {
		pace_take(&p, T, 3605000);
		n++;
	}
	assert_int_equal(n, 3);
}

/* A greedy sender at 1 ms resolution against 120/min for ten minutes. */
static void
test_smooth_120_per_min(void **state)
{
	struct pace p = { 0 };
	uint64_t T = pace_interval_us(PACE_MPH(120, 60000));
	unsigned per_min[10] = { 0 }, per_sec[600] = { 0 }, max_sec = 0;
	uint64_t t0 = 1700000000000ull;

	for (uint64_t t = 0; t < 600000; t++) {
		while (pace_wait(&p, T, 3, t0 + t) == 0) {
			pace_take(&p, T, t0 + t);
			per_min[t / 60000]++;
			per_sec[t / 1000]++;
		}
	}
	for (int m = 0; m < 10; m++) {
		if (per_min[m] < 114 || per_min[m] > 126)
			fail_msg("minute %d: %u messages (want 120 +-5%%)", m, per_min[m]);
	}
	for (int s = 0; s < 600; s++)
		if (per_sec[s] > max_sec)
			max_sec = per_sec[s];
	if (max_sec > 6)
		fail_msg("a second held %u messages (average 2, limit 6)", max_sec);
	/* 3000/h: not 3000 in the first minute, 50 or so */
	memset(&p, 0, sizeof p);
	T = pace_interval_us(PACE_MPH(3000, 3600000));
	unsigned first = 0;
	for (uint64_t t = 0; t < 60000; t++)
		while (pace_wait(&p, T, 3, t0 + t) == 0) {
			pace_take(&p, T, t0 + t);
			first++;
		}
	assert_true(first >= 50 && first <= 53);
}

static void
test_rate_text(void **state)
{
	static const struct { uint64_t mph; const char *text; } cases[] = {
		{ 0, "unlimited" },
		{ PACE_MPH(3000, 3600000), "50/min" },
		{ PACE_MPH(1500, 3600000), "25/min" },
		{ PACE_MPH(750, 3600000), "750/h" },
		{ PACE_MPH(5, 1000), "5/s" },
		{ PACE_MPH(1, 86400000), "1/day" },
		{ PACE_MPH(50, 86400000), "50/day" },
		{ 1500000, "36/day" },
		{ 1234567, "1.2/h" },
		{ 10000, "0.2/day" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_string_equal(pace_rate_text(cases[i].mph, buf, sizeof buf), cases[i].text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conversions),
		cmocka_unit_test(test_gcra_answers),
		cmocka_unit_test(test_smooth_120_per_min),
		cmocka_unit_test(test_rate_text),
	};

	return cmocka_run_group_tests_name("pace", tests, NULL, NULL);
}
