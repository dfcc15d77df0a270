/*
 * test_rates.c - the feedback loop's judge (rates.c) and the threshold
 * block (config.c): windows folded from hour buckets under a fake clock
 * (the previous hour weighs what is left of it inside the window), each
 * threshold held against entries of its dimension (volume floor, strictly
 * above, classes, the first-N snapshot), the reason texts with the
 * figures, rates parsed and printed, and the config errors with file:line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "rates.h"

#define H0	(493000ull * RATES_HOUR_MS)	/* the start of an hour (fake clock, ms) */

static struct config *
load(const char *text, char **err)
{
	*err = NULL;
	return config_load_string(text, strlen(text), "t.conf", err);
}

static void
test_ppm(void **state)
{
	static const struct { const char *in; int ok; uint32_t ppm; const char *out; } cases[] = {
		{ "0.3%", 1, 3000, "0.3%" }, { "5%", 1, 50000, "5%" }, { "0.003", 1, 3000, "0.3%" },
		{ "100%", 1, 1000000, "100%" }, { "0%", 1, 0, "0%" }, { "0.01%", 1, 100, "0.01%" },
		{ "101%", 0, 0, NULL }, { "-1%", 0, 0, NULL }, { "", 0, 0, NULL }, { "abc", 0, 0, NULL },
		{ "5%%", 0, 0, NULL }, { "1.5", 0, 0, NULL }, { "nan", 0, 0, NULL },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t ppm = 0;
		int r = rates_parse_ppm(cases[i].in, &ppm);

		if (!cases[i].ok) {
			assert_int_equal(r, -1);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(ppm, cases[i].ppm);
		assert_string_equal(rates_ppm_text(ppm, buf, sizeof buf), cases[i].out);
	}
}

static void
test_fold(void **state)
{
	struct rate_counts cur = { .d = 100, .c = 1 }, prev = { .d = 200, .b = 20 },
	    mid = { .d = 1000 }, old = { .d = 400, .c = 4 }, hour, day;

	(void)state;
	prev.bc[CLASS_INVALID_RECIPIENT] = 20;
	/* At the top of the hour the previous one is wholly inside. */
	rates_fold(&cur, &prev, &mid, &old, H0, &hour, &day);
	assert_true(hour.d == 300 && hour.b == 20 && hour.c == 1);
	assert_true(day.d == 1700 && day.c == 5);
	/* A quarter past: three quarters of the oldest bucket count. */
	rates_fold(&cur, &prev, &mid, &old, H0 + RATES_HOUR_MS / 4, &hour, &day);
	assert_true(hour.d == 250 && hour.b == 15 && hour.bc[CLASS_INVALID_RECIPIENT] == 15);
	assert_true(day.d == 1600 && day.c == 4);
	/* Empty buckets. */
	rates_fold(NULL, NULL, NULL, NULL, H0 + 1, &hour, &day);
	assert_true(hour.d == 0 && day.d == 0);
}

static const char THR[] =
	"site \"gmail\" { mx = [\"*.google.com\"]; }\n"
	"threshold \"complaints\" { metric = \"complaint_rate\"; over = 1d; above = \"0.3%\";\n"
	"  min_volume = 1000; per = \"campaign\"; action = \"pause\"; }\n"
	"threshold \"hard-bounces\" { metric = \"bounce_rate\"; first = 1000; above = \"5%\";\n"
	"  classes = [\"invalid_recipient\", \"bad_domain\"]; per = \"campaign\"; action = \"pause\"; }\n"
	"threshold \"ip-hour\" { metric = \"bounce_rate\"; over = 1h; above = \"10%\"; min_volume = 50;\n"
	"  per = \"ip\"; site = \"gmail\"; action = \"suspend\"; duration = 2h; }\n"
	"threshold \"tenant\" { metric = \"complaint_rate\"; over = \"1h\"; above = \"1%\";\n"
	"  per = \"tenant\"; action = \"pause\"; }\n";

static void
test_config(void **state)
{
	char *err;
	struct config *c = load(THR, &err);
	const struct rate_threshold *t;

	(void)state;
	assert_null(err);
	assert_non_null(c);
	assert_int_equal(c->nthresholds, 4);
	t = &c->thresholds[0];
	assert_string_equal(t->name, "complaints");
	assert_int_equal(t->metric, RATE_METRIC_COMPLAINT);
	assert_int_equal(t->over, RATE_WIN_DAY);
	assert_int_equal(t->above_ppm, 3000);
	assert_int_equal(t->min_volume, 1000);
	assert_int_equal(t->per, RATE_DIM_CAMPAIGN);
	assert_int_equal(t->action, RATE_ACT_PAUSE);
	assert_int_equal(t->line, 2);
	t = &c->thresholds[1];
	assert_int_equal(t->over, RATE_WIN_FIRST);
	assert_int_equal(t->first, 1000);
	assert_int_equal(t->classes, (1u << CLASS_INVALID_RECIPIENT) | (1u << CLASS_BAD_DOMAIN));
	t = &c->thresholds[2];
	assert_int_equal(t->action, RATE_ACT_SUSPEND);
	assert_string_equal(t->site, "gmail");
	assert_int_equal(t->duration_ms, 2 * RATES_HOUR_MS);
	assert_int_equal(c->thresholds[3].over, RATE_WIN_HOUR);
	config_free(c);
}

static void
test_config_errors(void **state)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "threshold \"a\" { over = 1d; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "t.conf:1: threshold \"a\": needs metric = complaint_rate | bounce_rate" },
		{ "threshold \"a\" { metric = \"complaint_rate\"; over = 2h; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "t.conf:1: threshold \"a\": over: '2h' is not a window (1h or 1d)" },
		{ "threshold \"a\" { metric = \"complaint_rate\"; over = 1d; above = \"200%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "t.conf:1: threshold \"a\": above: '200%' is not a rate" },
		{ "threshold \"a\" { metric = \"complaint_rate\"; over = 1d; above = \"1%\"; per = \"ip\"; action = \"pause\"; }\n",
		  "threshold \"a\": action pause needs per = campaign or tenant" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; first = 300; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "first: '300' is not one of the kept volumes" },
		{ "threshold \"a\" { metric = \"complaint_rate\"; first = 1000; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "first applies to per = campaign with metric = bounce_rate" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; first = 1000; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "needs exactly one of over = 1h | 1d and first = N" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\";\n classes = [\"nope\"]; per = \"campaign\"; action = \"pause\"; }\n",
		  "t.conf:2: threshold \"a\": classes: 'nope' is not a bounce class" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"ip\"; action = \"suspend\"; }\n",
		  "action suspend per = ip needs the site" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"site\"; action = \"throttle\"; }\n",
		  "action throttle needs rate" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"ip\"; site = \"nosuch\"; action = \"suspend\"; }\n",
		  "threshold \"a\": site \"nosuch\" is not defined" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"campaign\"; action = \"pause\"; colour = 1; }\n",
		  "colour" },
		{ "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n"
		  "threshold \"a\" { metric = \"bounce_rate\"; over = 1d; above = \"1%\"; per = \"campaign\"; action = \"pause\"; }\n",
		  "t.conf:2: duplicate threshold \"a\" (first defined at t.conf:1)" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err;
		struct config *c = load(cases[i].text, &err);

		if (c != NULL || err == NULL || strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err ? err : "(ok)");
		free(err);
	}
}

/* A campaign's entry: day counts, and its lifetime. */
static struct rate_entry
campaign(const char *name, double d, double b, double c)
{
	struct rate_entry e;

	memset(&e, 0, sizeof e);
	e.dim = RATE_DIM_CAMPAIGN;
	e.name = name;
	e.day.d = e.hour.d = d;
	e.day.b = e.hour.b = b;
	e.day.c = e.hour.c = c;
	return e;
}

static void
test_evaluate(void **state)
{
	char *err;
	struct config *c = load(THR, &err);
	struct rate_entry e[8];
	struct rate_decision d[16];
	size_t n;

	(void)state;
	assert_non_null(c);
	/* Complaints: 0.3% of 1000 is 3: 3 is not above it, 4 is; below
	 * min_volume nothing counts. */
	e[0] = campaign("at", 1000, 0, 3);
	e[1] = campaign("over", 1000, 0, 4);
	e[2] = campaign("small", 999, 0, 50);
	/* Hard bounces within the first 1000: the snapshot at 1000 decides
	 * once it is there, the lifetime before. */
	e[3] = campaign("early", 0, 0, 0);
	e[3].has_life = 1;
	e[3].life_n = 5000;
	e[3].snap_at[0] = 100;
	e[3].snap_at[1] = 1000;
	e[3].snap[1].bc[CLASS_INVALID_RECIPIENT] = 60;
	e[3].snap[1].bc[CLASS_MAILBOX_FULL] = 500;	/* not one of the classes */
	e[3].life.bc[CLASS_INVALID_RECIPIENT] = 60;
	e[4] = campaign("young", 0, 0, 0);
	e[4].has_life = 1;
	e[4].life_n = 400;
	e[4].life.bc[CLASS_BAD_DOMAIN] = 30;
	e[5] = campaign("missed", 0, 0, 0);	/* passed 1000 before snapshots existed */
	e[5].has_life = 1;
	e[5].life_n = 3000;
	e[5].life.bc[CLASS_BAD_DOMAIN] = 3000;
	/* Not a campaign: the campaign thresholds never see it. */
	e[6] = campaign("1.2.3.4", 1000, 0, 100);
	e[6].dim = RATE_DIM_IP;
	e[6].hour.b = 200;
	n = rates_evaluate(c->thresholds, c->nthresholds, e, 7, d, 16);
	assert_int_equal(n, 4);
	assert_int_equal(d[0].threshold, 0);
	assert_string_equal(e[d[0].entry].name, "over");
	assert_string_equal(d[0].reason, "complaints 4 of 1000 delivered (0.4%) over 1d > 0.3%");
	assert_int_equal(d[0].window_ms, 24 * RATES_HOUR_MS);
	assert_int_equal(d[1].threshold, 1);
	assert_string_equal(e[d[1].entry].name, "early");
	assert_string_equal(d[1].reason, "bounces 60 of 1000 sent (6%) over the first 1000 > 5%");
	assert_int_equal(d[2].threshold, 1);
	assert_string_equal(e[d[2].entry].name, "young");
	assert_string_equal(d[2].reason, "bounces 30 of 400 sent (7.5%) over the first 1000 > 5%");
	/* ip-hour: bounces 200 of 1200 sent (16.6667%) > 10%. */
	assert_int_equal(d[3].threshold, 2);
	assert_string_equal(e[d[3].entry].name, "1.2.3.4");
	assert_string_equal(d[3].reason, "all bounces 200 of 1200 sent (16.6667%) over 1h > 10%");
	/* A full output stops at max. */
	assert_int_equal(rates_evaluate(c->thresholds, c->nthresholds, e, 7, d, 2), 2);
	config_free(c);
}

/* The instance status' text of an entry, and the busiest names first. */
static void
test_export(void **state)
{
	struct rate_entry e[5];
	size_t idx[5];
	char buf[300];

	(void)state;
	memset(e, 0, sizeof e);
	e[0].hour.d = 199.6;	/* a weighted older bucket: rounded */
	e[0].hour.c = 2;
	e[0].day.d = 1000;
	e[0].day.b = 50;
	e[0].day.c = 3;
	assert_string_equal(rates_entry_text(&e[0], buf, sizeof buf),
	    "d1h=200 b1h=0 c1h=2 br1h=0% cr1h=1.002% d1d=1000 b1d=50 c1d=3 br1d=4.7619% cr1d=0.3%");
	assert_string_equal(rates_entry_text(&e[1], buf, sizeof buf),
	    "d1h=0 b1h=0 c1h=0 br1h=0% cr1h=0% d1d=0 b1d=0 c1d=0 br1d=0% cr1d=0%");
	/* a short buffer is cut, never overrun */
	assert_int_equal(strlen(rates_entry_text(&e[0], buf, 10)), 9);
	e[1].day.d = 5;
	e[2].day.d = 2000;
	e[3].day.b = 5;		/* ties with e[1]: input order */
	e[4].day.c = 1;
	assert_int_equal(rates_top(e, 5, idx, 5), 5);
	assert_int_equal(idx[0], 2);
	assert_int_equal(idx[1], 0);
	assert_int_equal(idx[2], 1);
	assert_int_equal(idx[3], 3);
	assert_int_equal(idx[4], 4);
	assert_int_equal(rates_top(e, 5, idx, 2), 2);
	assert_int_equal(idx[0], 2);
	assert_int_equal(idx[1], 0);
	assert_int_equal(rates_top(e, 0, idx, 2), 0);
}

/* shaping:held: what one engine writes, every engine reads back; hostile
 * fields and values are refused. */
static void
test_held(void **state)
{
	static const struct { const char *f, *v; } bad[] = {
		{ "127.0.0.1", "suspended until=5 mph=0 x" },		/* no '|' */
		{ "127.0.0.1|", "suspended until=5 mph=0 x" },		/* no site */
		{ "127.0.0.1 |s", "suspended until=5 mph=0 x" },	/* not an address */
		{ "1.2.3.4|a b", "suspended until=5 mph=0 x" },		/* blank in the site */
		{ "1.2.3.4|a/b", "suspended until=5 mph=0 x" },
		{ "|s", "paused until=5 mph=0 x" },			/* unknown action */
		{ "|s", "suspended until= mph=0 x" },
		{ "|s", "suspended until=5x mph=0" },
		{ "|s", "suspended mph=0 until=5" },
		{ "|s", "suspended until=99999999999999999999999 mph=0" },
		{ "|s", "throttled until=5 mph=0 x" },			/* a throttle needs a rate */
		{ "|s", "suspended" },
		{ "|s", "" },
	};
	struct rate_held h, r;
	char f[400], v[400];

	(void)state;
	memset(&h, 0, sizeof h);
	snprintf(h.ip, sizeof h.ip, "127.0.0.84");
	snprintf(h.site, sizeof h.site, "ssite");
	h.suspend = 1;
	h.until_wall_ms = 1764490000000ull;
	h.mph = 77;	/* not written for a suspension */
	snprintf(h.reason, sizeof h.reason, "threshold t: bounces 20 of 60 sent (33%%) over 1h > 10%%");
	assert_int_equal(rates_held_field(&h, f, sizeof f), 0);
	assert_int_equal(rates_held_value(&h, v, sizeof v), 0);
	assert_string_equal(f, "127.0.0.84|ssite");
	assert_string_equal(v, "suspended until=1764490000000 mph=0 threshold t: bounces 20 of 60 "
	    "sent (33%) over 1h > 10%");
	assert_int_equal(rates_held_parse(f, v, &r), 0);
	assert_string_equal(r.ip, "127.0.0.84");
	assert_string_equal(r.site, "ssite");
	assert_int_equal(r.suspend, 1);
	assert_int_equal(r.until_wall_ms, 1764490000000ull);
	assert_int_equal(r.mph, 0);
	assert_string_equal(r.reason, h.reason);
	/* every IP, a throttle, a reason with a control byte */
	assert_int_equal(rates_held_parse("|gmail", "throttled until=5 mph=600000000 a\tb", &r), 0);
	assert_string_equal(r.ip, "");
	assert_string_equal(r.site, "gmail");
	assert_int_equal(r.suspend, 0);
	assert_int_equal(r.mph, 600000000);
	assert_string_equal(r.reason, "a?b");
	assert_int_equal(rates_held_parse("::1|s", "suspended until=5 mph=0", &r), 0);
	assert_string_equal(r.reason, "");
	h.site[0] = '\0';
	assert_int_equal(rates_held_field(&h, f, sizeof f), -1);
	assert_int_equal(rates_held_value(&h, v, 10), -1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (rates_held_parse(bad[i].f, bad[i].v, &r) != -1)
			fail_msg("accepted field '%s' value '%s'", bad[i].f, bad[i].v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ppm),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_evaluate),
		cmocka_unit_test(test_export),
		cmocka_unit_test(test_held),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
