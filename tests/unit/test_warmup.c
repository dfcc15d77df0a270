/*
 * test_warmup.c - warm-up budgets (warmup.c): dates as day numbers, the
 * day's cap spread over the day (a cap of 50 allows about 25 by noon),
 * when the next one may go, hourly caps, the end of the ramp, per-site
 * ramps, and a whole simulated day that sends exactly the cap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "warmup.h"

#define DAY	86400000ull
#define HOUR	3600000ull

static void
test_day_number(void **state)
{
	assert_int_equal(warmup_day_number("1970-01-01"), 0);
	assert_int_equal(warmup_day_number("1970-01-02"), 1);
	assert_int_equal(warmup_day_number("2000-03-01"), 11017);
	assert_int_equal(warmup_day_number("2024-02-29"), 19782);
	assert_int_equal(warmup_day_number("2023-02-29"), -1);
	assert_int_equal(warmup_day_number("2024-13-01"), -1);
	assert_int_equal(warmup_day_number("2024-1-01"), -1);
	assert_int_equal(warmup_day_number("yesterday"), -1);
	assert_int_equal(warmup_day_number(NULL), -1);
}

static const uint32_t daily[] = { 50, 100, 200 };
static const uint32_t hourly[] = { 10, 20 };

static void
test_spread_over_the_day(void **state)
{
	struct warmup_ramp r = { daily, 3, NULL, 0 };
	int64_t start = 20000;
	uint64_t d0 = (uint64_t)start * DAY;
	struct warmup_answer a;
	static const struct { uint64_t at; uint32_t budget; } table[] = {
		{ 0, 1 },			/* the burst: 2% of 50, at least 1 */
		{ 6 * HOUR, 13 },		/* 12.5 + 1 */
		{ 12 * HOUR, 26 },		/* about 25 by noon */
		{ 18 * HOUR, 38 },
		{ DAY - 1, 50 },
	};

	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		warmup_check(&r, start, d0 + table[i].at, 0, 0, 2, &a);
		assert_int_equal(a.day, 1);
		assert_int_equal(a.cap_day, 50);
		if (a.budget != table[i].budget)
			fail_msg("at %llu ms: budget %u, want %u", (unsigned long long)table[i].at,
			    a.budget, table[i].budget);
	}
	/* at noon with 26 sent: wait until floor(50 m / DAY) + 1 >= 27 */
	assert_int_equal(warmup_check(&r, start, d0 + 12 * HOUR, 26, 0, 2, &a), 0);
	assert_string_equal(a.why, "daily budget");
	assert_int_equal(a.next_ms, d0 + (26 * DAY + 49) / 50);
	assert_int_equal(warmup_check(&r, start, a.next_ms, 26, 0, 2, &a), 1);
	/* the cap spent: tomorrow, day 2 with 100 */
	assert_int_equal(warmup_check(&r, start, d0 + DAY - 1, 50, 0, 2, &a), 0);
	assert_string_equal(a.why, "day cap");
	assert_int_equal(a.next_ms, d0 + DAY);
	warmup_check(&r, start, d0 + DAY + 12 * HOUR, 0, 0, 2, &a);
	assert_int_equal(a.day, 2);
	assert_int_equal(a.budget, 52);
	/* past the ramp: no cap */
	assert_int_equal(warmup_check(&r, start, d0 + 3 * DAY, 1000000, 1000, 2, &a), 1);
	assert_true(a.done);
	/* a start in the future counts as day 1 */
	warmup_check(&r, start + 5, d0, 0, 0, 2, &a);
	assert_int_equal(a.day, 1);
	/* no ramp at all: unlimited */
	assert_int_equal(warmup_check(NULL, start, d0, 5, 5, 2, &a), 1);
}

static void
test_hourly_cap(void **state)
{
	struct warmup_ramp r = { daily, 3, hourly, 2 };
	int64_t start = 20000;
	uint64_t d0 = (uint64_t)start * DAY;
	struct warmup_answer a;

	assert_int_equal(warmup_check(&r, start, d0 + 20 * HOUR + 5, 10, 9, 2, &a), 1);
	assert_int_equal(a.cap_hour, 10);
	assert_int_equal(warmup_check(&r, start, d0 + 20 * HOUR + 5, 10, 10, 2, &a), 0);
	assert_string_equal(a.why, "hourly cap");
	assert_int_equal(a.next_ms, d0 + 21 * HOUR);
	/* day 3 has no hourly entry: only the daily budget */
	assert_int_equal(warmup_check(&r, start, d0 + 2 * DAY + 23 * HOUR, 0, 500, 2, &a), 1);
	assert_int_equal(a.cap_hour, 0);
}

/* A whole day at one-minute steps: exactly the cap goes, spread out. */
static void
test_simulated_day(void **state)
{
	static const uint32_t cap20[] = { 20 };
	struct warmup_ramp r = { cap20, 1, NULL, 0 };
	int64_t start = 20100;
	uint64_t d0 = (uint64_t)start * DAY;
	uint32_t sent = 0, by_noon = 0;
	struct warmup_answer a;

	for (uint64_t t = 0; t < DAY; t += 60000) {
		while (warmup_check(&r, start, d0 + t, sent, 0, 2, &a))
			sent++;
		if (t == 12 * HOUR)
			by_noon = sent;
	}
	assert_int_equal(sent, 20);
	assert_true(by_noon >= 10 && by_noon <= 11);
}

static void
test_site_ramps(void **state)
{
	uint32_t d[] = { 1000 }, gd[] = { 20 }, gh[] = { 5 };
	struct config_warmup_site s = { (char *)"gmail", gd, 1, gh, 1 };
	struct config_warmup w = { (char *)"w", d, 1, NULL, 0, &s, 1 };
	struct warmup_ramp r;

	r = warmup_ramp(&w, "gmail");
	assert_ptr_equal(r.daily, gd);
	assert_ptr_equal(r.hourly, gh);
	assert_true(warmup_has_site(&w, "gmail"));
	r = warmup_ramp(&w, "yahoo");
	assert_ptr_equal(r.daily, d);
	assert_false(warmup_has_site(&w, "yahoo"));
	r = warmup_ramp(&w, NULL);
	assert_ptr_equal(r.daily, d);
	r = warmup_ramp(NULL, "gmail");
	assert_null(r.daily);
}

/* A hold keeps the ramp at its day: the shift grows a day for every day
 * held, and stays when the hold ends (the ramp goes on from there). */
static void
test_hold_shift(void **state)
{
	struct warmup_ramp r = { daily, 3, NULL, 0 };
	struct warmup_answer a;
	int64_t start = 20000, shift = 0;

	(void)state;
	/* held at day 2 on day 2 (start + 1): nothing to move */
	assert_int_equal(warmup_hold_shift(start, 0, 2, start + 1), 0);
	/* three days later, still held: shifted by 3, the ramp says day 2 */
	shift = warmup_hold_shift(start, shift, 2, start + 4);
	assert_int_equal(shift, 3);
	warmup_check(&r, start + shift, (uint64_t)(start + 4) * DAY + HOUR, 0, 0, 2, &a);
	assert_int_equal(a.day, 2);
	assert_int_equal(a.cap_day, 100);
	/* a sync later the same day changes nothing */
	assert_int_equal(warmup_hold_shift(start, shift, 2, start + 4), 3);
	/* released: the shift stays, the next day is day 3 */
	warmup_check(&r, start + shift, (uint64_t)(start + 5) * DAY, 0, 0, 2, &a);
	assert_int_equal(a.day, 3);
	/* hold day 0 means none */
	assert_int_equal(warmup_hold_shift(start, 7, 0, start + 40), 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_day_number),
		cmocka_unit_test(test_spread_over_the_day),
		cmocka_unit_test(test_hourly_cap),
		cmocka_unit_test(test_simulated_day),
		cmocka_unit_test(test_site_ramps),
		cmocka_unit_test(test_hold_shift),
	};

	return cmocka_run_group_tests_name("warmup", tests, NULL, NULL);
}
