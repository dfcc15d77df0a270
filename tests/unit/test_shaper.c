/*
 * test_shaper.c - the shaper's pure core (shaper.c) with a fake clock:
 * rollup keys and destinations, the concurrency window and connection
 * rate, a lane's rate under a per-IP total, the AIMD curves (halving on
 * 421, +1 per clean window, rate steps at most once a minute, capped, no
 * snap back after idle), one decrease per cohort in flight, the cohort
 * rule (one failure never closes a lane, a full window does), an
 * unlimited lane told to slow down, reputation suspensions and their end,
 * the choice of IP by weight skipping suspended and exhausted IPs, the
 * verdicts taken from trouble.c outcomes, reloads, the idle sweep, the
 * event text, and the actions of reaction rules (shaper_react).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "job.h"
#include "shaper.h"
#include "util.h"

#define T0	1800000000000ull	/* the fake clock starts here (ms) */

static const struct shaper_verdict CLEAN = { 1, 0, 0, 0, "250 ok" };
static const struct shaper_verdict SLOW = { 0, 1, 0, 0, "421 4.7.0 Try again later" };
static const struct shaper_verdict REFUSED = { 0, 1, 1, 0, "connection refused" };
static const struct shaper_verdict BLOCKED = { 0, 0, 0, 1, "550 5.7.1 listed at a blocklist" };

static void
setup_shaper(struct shaper *sh)
{
	struct config *c = config_default();
	struct shaper_params p;

	shaper_params_from_config(c, &p);
	shaper_init(sh, &p);
	config_free(c);
}

static struct shaper_lane *
mklane(struct shaper *sh, const char *ip, const char *dest, uint32_t maxconn, uint64_t mph)
{
	struct shaper_limits lim = { maxconn, 100, mph, 0 };

	return shaper_lane(sh, shaper_ip(sh, ip, 0), dest, &lim, T0);
}

static void
test_rollup_key(void **state)
{
	static const struct { const char *h[4]; size_t n; const char *key; } cases[] = {
		{ { "mx2.Hoster.NET.", "mx1.hoster.net" }, 2, "mx1.hoster.net,mx2.hoster.net" },
		{ { "mx1.hoster.net", "MX1.hoster.net.", "mx2.hoster.net" }, 3,
		  "mx1.hoster.net,mx2.hoster.net" },
		{ { "b.example", "a.example", "c.example", "a.example" }, 4, "a.example,b.example,c.example" },
		{ { "only.example." }, 1, "only.example" },
		{ { "", NULL }, 2, NULL },
		{ { NULL }, 0, NULL },
	};
	char out[SHAPER_DEST_MAX], small[10];
	const char *h[] = { "mx1.hoster.net" };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = shaper_rollup_key(cases[i].h, cases[i].n, out, sizeof out);

		if (cases[i].key == NULL) {
			assert_int_equal(rc, -1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(out, cases[i].key);
	}
	/* the same set in another order and case is the same key */
	const char *x[] = { "MX2.hoster.net", "mx1.hoster.net." };
	const char *y[] = { "mx1.hoster.net", "mx2.hoster.net" };
	char kx[SHAPER_DEST_MAX], ky[SHAPER_DEST_MAX];

	shaper_rollup_key(x, 2, kx, sizeof kx);
	shaper_rollup_key(y, 2, ky, sizeof ky);
	assert_string_equal(kx, ky);
	assert_int_equal(shaper_rollup_key(h, 1, small, sizeof small), -1);
	assert_string_equal(small, "");
}

static void
test_destination(void **state)
{
	const char *conf =
	    "smtp { max_connections = 7; max_conn_rate = \"30/min\"; }\n"
	    "site \"gmail\" { mx = [\"*.google.com\"]; max_connections = 10; max_rate = \"3000/h\"; }\n"
	    "domain \"example.net\" { max_connections = 2; }\n"
	    "domain \"hosted.example\" { max_rate = \"60/min\"; }\n";
	char *err = NULL, out[SHAPER_DEST_MAX];
	struct config *c = config_load_string(conf, strlen(conf), "t.conf", &err);
	struct config_limits lim;
	const char *gmx[] = { "alt1.gmail-smtp-in.l.google.com.", "gmail-smtp-in.l.google.com" };
	const char *hmx[] = { "mx2.hoster.net", "mx1.hoster.net" };

	if (c == NULL)
		fail_msg("%s", err);
	/* a site: every domain on its MX shares the site's lane and limits */
	assert_non_null(shaper_destination(c, "brand.example", gmx, 2, out, sizeof out, &lim));
	assert_string_equal(out, "gmail");
	assert_int_equal(lim.max_connections, 10);
	assert_int_equal(lim.max_rate.count, 3000);
	assert_int_equal(lim.max_conn_rate.count, 30);
	/* no site, no domain block: the MX rollup, the defaults */
	assert_null(shaper_destination(c, "vanity1.example", hmx, 2, out, sizeof out, &lim));
	assert_string_equal(out, "mx1.hoster.net,mx2.hoster.net");
	assert_int_equal(lim.max_connections, 7);
	assert_null(shaper_destination(c, "vanity2.example", hmx, 2, out, sizeof out, &lim));
	assert_string_equal(out, "mx1.hoster.net,mx2.hoster.net");
	/* a domain block overrides: its own lane, its limits over the defaults */
	assert_null(shaper_destination(c, "Example.NET", hmx, 2, out, sizeof out, &lim));
	assert_string_equal(out, "example.net");
	assert_int_equal(lim.max_connections, 2);
	/* ... and over a site's */
	assert_non_null(shaper_destination(c, "hosted.example", gmx, 2, out, sizeof out, &lim));
	assert_string_equal(out, "hosted.example");
	assert_int_equal(lim.max_connections, 10);
	assert_int_equal(lim.max_rate.count, 60);
	/* an IP's total: its own max_rate, else smtp.max_rate_per_ip */
	struct config_ip ip = { 0 };
	assert_int_equal(shaper_ip_rate(c, &ip), 0);
	ip.max_rate = (struct rate){ 100, 60000 };
	assert_int_equal(shaper_ip_rate(c, &ip), PACE_MPH(100, 60000));
	c->max_rate_per_ip = (struct rate){ 5, 1000 };
	assert_int_equal(shaper_ip_rate(c, NULL), PACE_MPH(5, 1000));
	/* no MX hosts: the domain itself */
	shaper_destination(c, "Bare.Example", NULL, 0, out, sizeof out, &lim);
	assert_string_equal(out, "bare.example");
	config_free(c);
}

static void
test_window_and_conn_rate(void **state)
{
	struct shaper sh;
	struct shaper_limits lim = { 3, 100, 0, PACE_MPH(6, 60000) };
	struct shaper_lane *l;
	uint64_t at;

	setup_shaper(&sh);
	l = shaper_lane(&sh, shaper_ip(&sh, "192.0.2.1", 0), "gmail", &lim, T0);
	assert_string_equal(l->name, "192.0.2.1/gmail");
	assert_ptr_equal(shaper_lane_find(&sh, "192.0.2.1/gmail"), l);
	assert_int_equal(l->window, 3);		/* initial 5, capped by max_connections */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(shaper_may_connect(&sh, l, T0, &at), SHAPER_GO);
		shaper_connect(&sh, l, T0);
	}
	assert_int_equal(shaper_may_connect(&sh, l, T0, &at), SHAPER_FULL);
	assert_int_equal(at, 0);
	shaper_disconnect(&sh, l);
	/* 6/min with a burst of 3: the fourth connection 10 s later */
	assert_int_equal(shaper_may_connect(&sh, l, T0, &at), SHAPER_PACED);
	assert_int_equal(at, T0 + 10000);
	assert_int_equal(shaper_may_connect(&sh, l, T0 + 10000, &at), SHAPER_GO);
	/* a new lane starts at initial_connections */
	l = mklane(&sh, "192.0.2.1", "yahoo", 20, 0);
	assert_int_equal(l->window, 5);
	shaper_free(&sh);
}

/* Two lanes of one IP at 120/min each under an IP total of 60/min. */
static void
test_ip_total(void **state)
{
	struct shaper sh;
	struct shaper_ip *ip;
	struct shaper_limits lim = { 20, 100, PACE_MPH(120, 60000), 0 };
	struct shaper_lane *a, *b;
	unsigned na = 0, nb = 0;
	uint64_t at;

	setup_shaper(&sh);
	ip = shaper_ip(&sh, "192.0.2.1", PACE_MPH(60, 60000));
	a = shaper_lane(&sh, ip, "gmail", &lim, T0);
	b = shaper_lane(&sh, ip, "yahoo", &lim, T0);
	for (uint64_t t = 0; t < 600000; t += 10) {
		/* the one behind asks first */
		struct shaper_lane *first = na <= nb ? a : b, *second = first == a ? b : a;

		if (shaper_may_send(&sh, first, T0 + t, &at) == SHAPER_GO) {
			shaper_take(&sh, first, T0 + t);
			(*(first == a ? &na : &nb))++;
		}
		if (shaper_may_send(&sh, second, T0 + t, &at) == SHAPER_GO) {
			shaper_take(&sh, second, T0 + t);
			(*(second == a ? &na : &nb))++;
		}
	}
	/* ten minutes at 60/min in all (plus the burst), shared */
	assert_true(na + nb >= 600 && na + nb <= 603);
	assert_true(na >= 280 && nb >= 280);
	assert_int_equal(ip->sent, na + nb);
	/* alone, a lane keeps its own 120/min */
	ip = shaper_ip(&sh, "192.0.2.2", 0);
	a = shaper_lane(&sh, ip, "gmail", &lim, T0);
	na = 0;
	for (uint64_t t = 0; t < 60000; t += 10)
		if (shaper_may_send(&sh, a, T0 + t, &at) == SHAPER_GO) {
			shaper_take(&sh, a, T0 + t);
			na++;
		}
	assert_true(na >= 120 && na <= 123);
	shaper_free(&sh);
}

/* Deliver n clean results on l at now. */
static int
clean_n(struct shaper *sh, struct shaper_lane *l, uint64_t now, unsigned n, struct shaper_event *ev)
{
	int events = 0;

	for (unsigned i = 0; i < n; i++)
		events += shaper_result(sh, l, now, &CLEAN, ev);
	return events;
}

static void
test_aimd_curves(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_event ev;
	uint64_t now = T0;
	char rate[32];

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "gmail", 20, PACE_MPH(600, 60000));
	/* slow start: +1 per window's worth of clean deliveries */
	static const struct { unsigned clean; uint32_t window; } grow[] = {
		{ 4, 5 }, { 1, 6 }, { 6, 7 }, { 7, 8 }, { 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15, 16 },
	};
	for (size_t i = 0; i < sizeof grow / sizeof grow[0]; i++) {
		assert_int_equal(clean_n(&sh, l, now, grow[i].clean, &ev), 0);
		assert_int_equal(l->window, grow[i].window);
	}
	/* 421: halve the window and the rate */
	assert_int_equal(shaper_result(&sh, l, now, &SLOW, &ev), 1);
	assert_int_equal(ev.action, SHAPER_THROTTLED);
	assert_string_equal(ev.lane, "192.0.2.1/gmail");
	assert_string_equal(ev.reason, "421 4.7.0 Try again later");
	assert_int_equal(ev.window, 8);
	assert_string_equal(pace_rate_text(ev.mph, rate, sizeof rate), "5/s");
	assert_int_equal(ev.ts, now);
	assert_int_equal(l->ceiling_mph, PACE_MPH(600, 60000));
	/* more 421s within decrease_every (30 s): no further decrease */
	assert_int_equal(shaper_result(&sh, l, now + 10000, &SLOW, &ev), 0);
	assert_int_equal(l->window, 8);
	now += 30000;
	assert_int_equal(shaper_result(&sh, l, now, &SLOW, &ev), 1);
	assert_int_equal(l->window, 4);
	assert_string_equal(pace_rate_text(l->mph, rate, sizeof rate), "150/min");
	/* floor: 1 connection, the minimum rate; the ceiling stays where
	 * the destination first pushed back */
	for (int i = 0; i < 20; i++) {
		now += 30000;
		shaper_result(&sh, l, now, &SLOW, NULL);
		shaper_result(&sh, l, now, &CLEAN, NULL);	/* so the cohort never closes */
	}
	now += 30000;
	shaper_result(&sh, l, now, &SLOW, NULL);
	assert_int_equal(l->window, 1);
	assert_string_equal(pace_rate_text(l->mph, rate, sizeof rate), "1/min");
	assert_int_equal(l->closed_until, 0);
	assert_int_equal(l->ceiling_mph, PACE_MPH(600, 60000));
	/* recovery: a step at most once a minute, 10% of 600/min each */
	now += 30000;
	clean_n(&sh, l, now, 5, &ev);
	assert_string_equal(pace_rate_text(l->mph, rate, sizeof rate), "1/min");
	now += 31000;
	clean_n(&sh, l, now, 1, &ev);
	assert_string_equal(pace_rate_text(l->mph, rate, sizeof rate), "61/min");
	/* a quiet hour changes nothing: no snap back */
	now += 3600000;
	uint32_t w = l->window;
	clean_n(&sh, l, now, w, &ev);
	assert_string_equal(pace_rate_text(l->mph, rate, sizeof rate), "121/min");
	assert_true(l->window <= w + 1);
	assert_true(l->throttled);
	/* step by step up to the configured limits, then one "recovered" */
	int recovered = 0, minutes = 0;
	while (l->throttled && minutes < 100) {
		now += 60000;
		minutes++;
		for (int i = 0; i < 40; i++)
			if (shaper_result(&sh, l, now, &CLEAN, &ev)) {
				assert_int_equal(ev.action, SHAPER_RECOVERED);
				recovered++;
			}
	}
	assert_int_equal(recovered, 1);
	assert_int_equal(l->mph, PACE_MPH(600, 60000));
	assert_true(l->window >= 16);
	/* 121 -> 541/min in 7 steps of 60, then quarter steps up to 600 */
	assert_true(minutes >= 10 && minutes <= 13);
	/* capped: more clean deliveries never go past the limits */
	now += 600000;
	clean_n(&sh, l, now, 2000, NULL);
	assert_int_equal(l->mph, PACE_MPH(600, 60000));
	assert_int_equal(l->window, 20);
	/* a rejected recipient (clean for the destination) never throttles */
	struct shaper_verdict bounce = { 1, 0, 0, 0, "550 5.1.1 no such user" };
	assert_int_equal(shaper_result(&sh, l, now, &bounce, NULL), 0);
	assert_int_equal(l->window, 20);
	shaper_free(&sh);
}

/* Outcomes of what was in flight at a decrease do not shrink it again. */
static void
test_one_decrease_per_cohort(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_event ev;

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "gmail", 20, PACE_MPH(600, 60000));
	clean_n(&sh, l, T0, 200, NULL);
	assert_int_equal(l->window, 20);
	for (int i = 0; i < 4; i++)
		shaper_connect(&sh, l, T0);
	assert_int_equal(shaper_result(&sh, l, T0, &SLOW, &ev), 1);
	assert_int_equal(l->window, 10);
	for (int i = 0; i < 3; i++)
		assert_int_equal(shaper_result(&sh, l, T0 + 30000, &SLOW, &ev), 0);
	assert_int_equal(l->window, 10);
	assert_int_equal(shaper_result(&sh, l, T0 + 30000, &SLOW, &ev), 1);
	assert_int_equal(l->window, 5);
	shaper_free(&sh);
}

static void
test_cohort_rule(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_event ev;
	uint64_t at, t = T0;

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "mx.example", 4, 0);
	assert_int_equal(l->window, 4);
	/* one failure, then a clean one: open */
	assert_int_equal(shaper_result(&sh, l, t, &REFUSED, &ev), 1);
	assert_int_equal(ev.action, SHAPER_THROTTLED);
	assert_int_equal(l->window, 2);
	shaper_result(&sh, l, t, &CLEAN, &ev);
	assert_int_equal(shaper_may_connect(&sh, l, t, &at), SHAPER_GO);
	/* a full cohort (the window when it began: 2) of consecutive failures closes it */
	t += 30000;
	assert_int_equal(shaper_result(&sh, l, t, &REFUSED, &ev), 1);
	assert_int_equal(ev.action, SHAPER_THROTTLED);
	assert_int_equal(l->window, 1);
	assert_int_equal(shaper_may_connect(&sh, l, t, &at), SHAPER_GO);
	assert_int_equal(shaper_result(&sh, l, t, &REFUSED, &ev), 1);
	assert_int_equal(ev.action, SHAPER_CLOSED);
	assert_int_equal(ev.until, t + 30000);
	assert_int_equal(shaper_may_connect(&sh, l, t + 29999, &at), SHAPER_WAIT_CLOSED);
	assert_int_equal(at, t + 30000);
	/* the connection-level slow-down shrank the window, not the rate */
	assert_int_equal(l->mph, 0);
	assert_int_equal(shaper_poll(&sh, l, t + 29999, &ev), 0);
	assert_int_equal(shaper_poll(&sh, l, t + 30000, &ev), 1);
	assert_int_equal(ev.action, SHAPER_REOPENED);
	assert_int_equal(shaper_may_connect(&sh, l, t + 30000, &at), SHAPER_GO);
	/* closed again at once: twice as long (window 1, cohort 2) */
	t += 31000;
	shaper_result(&sh, l, t, &REFUSED, &ev);
	assert_int_equal(shaper_result(&sh, l, t, &REFUSED, &ev), 1);
	assert_int_equal(ev.action, SHAPER_CLOSED);
	assert_int_equal(ev.until, t + 60000);
	/* a clean delivery forgets the penalty */
	t += 60000;
	shaper_poll(&sh, l, t, &ev);
	shaper_result(&sh, l, t, &CLEAN, &ev);
	shaper_result(&sh, l, t, &REFUSED, &ev);
	shaper_result(&sh, l, t, &REFUSED, &ev);
	assert_int_equal(l->closed_until, t + 30000);
	shaper_free(&sh);
}

/* Unlimited lane: the first slow-down starts from last minute's volume. */
static void
test_unlimited_lane(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_event ev;
	char rate[32];
	uint64_t now = T0;
	int recovered = 0;

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "mx.example", 20, 0);
	for (int i = 0; i < 40; i++)
		shaper_take(&sh, l, now + (uint64_t)i * 500);
	now += 20000;
	assert_int_equal(shaper_result(&sh, l, now, &SLOW, &ev), 1);
	assert_string_equal(pace_rate_text(ev.mph, rate, sizeof rate), "20/min");
	assert_int_equal(l->ref_mph, PACE_MPH(40, 60000));
	/* steps of 4/min a minute; unlimited again at 80/min */
	for (int m = 0; m < 30 && l->throttled; m++) {
		now += 60000;
		for (int i = 0; i < 40; i++)
			if (shaper_result(&sh, l, now, &CLEAN, &ev))
				recovered++;
	}
	assert_int_equal(recovered, 1);
	assert_int_equal(l->mph, 0);
	assert_int_equal(ev.mph, 0);
	shaper_free(&sh);
}

static void
test_suspension(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_event ev;
	uint64_t at;

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "outlook", 20, 0);
	/* two blocks, then the window (10 min) passes: the count starts over */
	assert_int_equal(shaper_result(&sh, l, T0, &BLOCKED, &ev), 0);
	assert_int_equal(shaper_result(&sh, l, T0 + 1000, &BLOCKED, &ev), 0);
	assert_int_equal(shaper_result(&sh, l, T0 + 700000, &BLOCKED, &ev), 0);
	assert_int_equal(shaper_result(&sh, l, T0 + 701000, &BLOCKED, &ev), 0);
	assert_int_equal(shaper_result(&sh, l, T0 + 702000, &BLOCKED, &ev), 1);
	assert_int_equal(ev.action, SHAPER_SUSPENDED);
	assert_string_equal(ev.reason, "550 5.7.1 listed at a blocklist");
	uint64_t until = T0 + 702000 + 1800000;
	assert_int_equal(ev.until, until);
	/* no window or rate change: a block is not a slow-down */
	assert_int_equal(l->window, 5);
	assert_int_equal(shaper_may_send(&sh, l, T0 + 800000, &at), SHAPER_WAIT_SUSPENDED);
	assert_int_equal(at, until);
	assert_int_equal(shaper_may_connect(&sh, l, T0 + 800000, &at), SHAPER_WAIT_SUSPENDED);
	/* results of what was in flight do not extend it */
	assert_int_equal(shaper_result(&sh, l, T0 + 800000, &BLOCKED, &ev), 0);
	assert_int_equal(l->suspended_until, until);
	/* the waiting jobs come back spread over a minute after the end */
	for (uint64_t salt = 0; salt < 1000; salt += 7) {
		uint64_t r = shaper_resume_at(until, 60000, salt * 2654435761u);
		assert_true(r >= until && r < until + 60000);
	}
	assert_int_equal(shaper_resume_at(until, 0, 12345), until);
	assert_int_equal(shaper_poll(&sh, l, until - 1, &ev), 0);
	assert_int_equal(shaper_poll(&sh, l, until, &ev), 1);
	assert_int_equal(ev.action, SHAPER_RESUMED);
	assert_int_equal(shaper_may_send(&sh, l, until, &at), SHAPER_GO);
	shaper_free(&sh);
}

static void
test_pick_by_weight(void **state)
{
	struct shaper sh;
	struct shaper_cand c[3];
	unsigned count[3] = { 0 };
	uint64_t at;
	size_t idx;
	const unsigned N = 60000;

	setup_shaper(&sh);
	c[0] = (struct shaper_cand){ mklane(&sh, "192.0.2.1", "gmail", 20, 0), 1, 0 };
	c[1] = (struct shaper_cand){ mklane(&sh, "192.0.2.2", "gmail", 20, 0), 2, 0 };
	c[2] = (struct shaper_cand){ mklane(&sh, "192.0.2.3", "gmail", 20, 0), 3, 0 };
	for (unsigned i = 0; i < N; i++) {
		int k = shaper_pick(&sh, c, 3, 1, T0, &at, &idx);
		assert_true(k >= 0);
		count[k]++;
	}
	for (int k = 0; k < 3; k++) {
		double want = N * (k + 1) / 6.0;
		if (count[k] < want * 0.95 || count[k] > want * 1.05)
			fail_msg("ip %d: %u picks, want %.0f +-5%%", k, count[k], want);
	}
	/* evenly spread: never the same IP of weights 1:1 twice in a row */
	c[2].weight = 1;
	c[1].weight = 1;
	c[0].weight = 1;
	int last = -1;
	for (int i = 0; i < 30; i++) {
		int k = shaper_pick(&sh, c, 3, 1, T0, &at, &idx);
		assert_int_not_equal(k, last);
		last = k;
	}
	/* suspended: skipped; the others share 1:3 */
	c[2].weight = 3;
	c[1].lane->suspended_until = T0 + 5000;
	memset(count, 0, sizeof count);
	for (unsigned i = 0; i < 4000; i++)
		count[shaper_pick(&sh, c, 3, 1, T0, &at, &idx)]++;
	assert_int_equal(count[1], 0);
	assert_true(count[0] >= 950 && count[0] <= 1050);
	/* out of warm-up budget, overflow on: skipped too */
	c[0].warm_until = T0 + 9000;
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(shaper_pick(&sh, c, 3, 1, T0, &at, &idx), 2);
	/* overflow off: its turns make the job wait for it */
	unsigned waits = 0;
	for (unsigned i = 0; i < 400; i++) {
		int k = shaper_pick(&sh, c, 3, 0, T0, &at, &idx);
		if (k == -2) {
			assert_int_equal(idx, 0);
			assert_int_equal(at, T0 + 9000);
			waits++;
		} else {
			assert_int_equal(k, 2);
		}
	}
	assert_true(waits >= 90 && waits <= 110);
	/* none usable: the earliest time one will be */
	c[2].lane->closed_until = T0 + 7000;	/* closed and no session */
	assert_int_equal(shaper_pick(&sh, c, 3, 1, T0, &at, &idx), -1);
	assert_int_equal(at, T0 + 5000);
	/* a paced lane is skipped until its time */
	c[1].lane->suspended_until = 0;
	c[2].lane->closed_until = 0;
	c[0].warm_until = 0;
	struct shaper_limits slow = { 20, 100, PACE_MPH(1, 60000), 0 };
	for (int k = 0; k < 3; k++) {
		shaper_lane(&sh, c[k].lane->ip, "gmail", &slow, T0);
		for (int i = 0; i < 3; i++)
			shaper_take(&sh, c[k].lane, T0);
	}
	assert_int_equal(shaper_pick(&sh, c, 3, 1, T0, &at, &idx), -1);
	assert_int_equal(at, T0 + 60000);
	shaper_free(&sh);
}

/*
 * A provider that answers 421 past N messages per calendar minute from an
 * IP, and a greedy sender on an unlimited lane: the lane settles under N
 * within a few minutes with few 421s, and keeps most of N.
 */
static void
test_convergence(void **state)
{
	enum { N = 60, MINUTES = 60 };
	struct shaper sh;
	struct shaper_lane *l;
	unsigned ok[MINUTES] = { 0 }, refused[MINUTES] = { 0 }, total_421 = 0, late_ok = 0;
	uint64_t at;
	char curve[MINUTES * 8 + 1];
	size_t o = 0;

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "mx.example", 20, 0);
	for (uint64_t t = 0; t < MINUTES * 60000ull; t += 100) {
		unsigned m = (unsigned)(t / 60000);

		for (int burst = 0; burst < 50; burst++) {	/* sessions keep up with 500/s */
			if (shaper_may_send(&sh, l, T0 + t, &at) != SHAPER_GO)
				break;
			shaper_take(&sh, l, T0 + t);
			if (ok[m] < N) {
				ok[m]++;
				shaper_result(&sh, l, T0 + t, &CLEAN, NULL);
			} else {
				refused[m]++;
				shaper_result(&sh, l, T0 + t, &SLOW, NULL);
			}
		}
	}
	for (unsigned m = 0; m < MINUTES; m++) {
		total_421 += refused[m];
		if (m >= 10)
			late_ok += ok[m];
		if (o < sizeof curve - 8)
			o += (size_t)snprintf(curve + o, sizeof curve - o, " %u/%u", ok[m], refused[m]);
	}
	print_message("delivered/421 per minute:%s\n", curve);
	/* after the first minute's blast (unlimited), 421s are rare */
	if (total_421 - refused[0] > MINUTES / 2)
		fail_msg("%u 421s after the first minute", total_421 - refused[0]);
	/* settled: on average at least 75% of N once past the first ten minutes */
	if (late_ok < (MINUTES - 10) * N * 3 / 4)
		fail_msg("only %u delivered in minutes 10..%d", late_ok, MINUTES);
	shaper_free(&sh);
}

static void
test_verdict_of(void **state)
{
	struct job_outcome o;
	struct shaper_verdict v;

	memset(&o, 0, sizeof o);
	o.status = JOB_DELIVERED;
	snprintf(o.reply, sizeof o.reply, "250 2.0.0 ok");
	shaper_verdict_of(&o, &v);
	assert_true(v.clean && !v.slow_down && !v.reputation);
	assert_string_equal(v.reason, "250 2.0.0 ok");

	o.status = JOB_BOUNCED;
	o.has_class = 1;
	o.cls = CLASS_INVALID_RECIPIENT;
	shaper_verdict_of(&o, &v);
	assert_true(v.clean);			/* a rejected recipient never throttles */

	o.cls = CLASS_REPUTATION_BLOCK;
	shaper_verdict_of(&o, &v);
	assert_true(v.reputation && !v.clean);

	o.status = JOB_DEFERRED;
	o.cls = CLASS_RATE_LIMITED;
	o.slow_down = 1;
	shaper_verdict_of(&o, &v);
	assert_true(v.slow_down && !v.clean && !v.reputation);

	o.slow_down = 0;
	o.cls = CLASS_CONNECTION_FAILURE;
	shaper_verdict_of(&o, &v);
	assert_true(!v.clean && !v.slow_down);	/* neither: a lost connection mid-way */

	o.site_failure = 1;
	shaper_verdict_of(&o, &v);
	assert_true(v.site_failure && !v.clean);

	memset(&o, 0, sizeof o);
	o.status = JOB_DEFERRED;
	o.source_fault = 1;
	shaper_verdict_of(&o, &v);
	assert_true(!v.clean && !v.slow_down && !v.site_failure);
	assert_null(v.reason);
}

static void
test_reload_sweep_text(void **state)
{
	struct shaper sh;
	struct shaper_lane *l;
	struct shaper_limits lim = { 4, 100, PACE_MPH(600, 60000), 0 };
	struct shaper_event ev;
	char buf[600];

	setup_shaper(&sh);
	l = mklane(&sh, "192.0.2.1", "gmail", 20, PACE_MPH(600, 60000));
	clean_n(&sh, l, T0, 100, NULL);
	assert_true(l->window > 4);
	assert_ptr_equal(shaper_lane(&sh, l->ip, "gmail", &lim, T0), l);
	assert_int_equal(l->window, 4);
	/* a throttled lane keeps its lower rate over a reload */
	shaper_result(&sh, l, T0, &SLOW, &ev);
	lim.mph = PACE_MPH(1200, 60000);
	shaper_lane(&sh, l->ip, "gmail", &lim, T0);
	assert_int_equal(l->mph, PACE_MPH(300, 60000));
	assert_int_equal(l->ref_mph, PACE_MPH(1200, 60000));

	assert_string_equal(shaper_event_text(&ev, buf, sizeof buf),
	    "lane=192.0.2.1/gmail action=throttled window=2 rate=5/s "
	    "reason=\"421 4.7.0 Try again later\"");
	shaper_warmup_event("192.0.2.7", "gmail", "daily budget", T0, T0 + 5000, &ev);
	assert_string_equal(shaper_event_text(&ev, buf, sizeof buf),
	    "lane=192.0.2.7/gmail action=warmup_exhausted window=0 rate=unlimited until=1800000005000 "
	    "reason=\"warm-up daily budget spent\"");
	/* the sweep keeps throttled lanes and lanes with sessions */
	struct shaper_lane *idle = mklane(&sh, "192.0.2.9", "x", 20, 0);
	struct shaper_lane *busy = mklane(&sh, "192.0.2.9", "y", 20, 0);
	struct shaper_lane *held = mklane(&sh, "192.0.2.9", "z", 20, 0);
	shaper_connect(&sh, busy, T0);
	shaper_lane_ref(held);
	assert_int_equal(shaper_sweep(&sh, T0 + 1000, 5000), 0);
	assert_int_equal(shaper_sweep(&sh, T0 + 10000, 5000), 1);
	(void)idle;
	assert_non_null(shaper_lane_find(&sh, "192.0.2.9/z"));
	shaper_lane_unref(held);
	assert_int_equal(shaper_sweep(&sh, T0 + 10000, 5000), 1);
	assert_null(shaper_lane_find(&sh, "192.0.2.9/z"));
	assert_null(shaper_lane_find(&sh, "192.0.2.9/x"));
	assert_non_null(shaper_lane_find(&sh, "192.0.2.9/y"));
	assert_non_null(shaper_lane_find(&sh, "192.0.2.1/gmail"));
	assert_string_equal(shaper_answer_name(SHAPER_WAIT_SUSPENDED), "suspended");
	shaper_free(&sh);
}

/*
 * Reaction rules (shaper_react): a throttle caps the rate until its time
 * (clean outcomes do not step past it), then the AIMD steps recover it to
 * the configured rate with a "recovered" event; a cap lowers the window
 * until its time; a suspension stops the lane and ends with "resumed";
 * site scope finds every lane of the destination; a rule already met
 * changes nothing.
 */
static void
test_react(void **state)
{
	struct shaper sh;
	struct shaper_lane *l, *l2, *lanes[8];
	struct shaper_event ev;
	struct reaction_rule thr = { 0 }, cap = { 0 }, sus = { 0 };
	uint64_t at, t;
	int recovered = 0;
	char buf[512];

	setup_shaper(&sh);
	l = mklane(&sh, "127.0.0.2", "gmail", 10, PACE_MPH(3000, 3600000));
	thr.name = (char *)"gmail-rate";
	thr.action = REACTION_THROTTLE;
	thr.mph = PACE_MPH(600, 3600000);
	thr.duration_ms = 30 * 60000;
	assert_int_equal(shaper_react(&sh, l, T0, &thr, "rule gmail-rate (3 in 10min): 421 4.7.28", &ev), 1);
	assert_int_equal(ev.action, SHAPER_THROTTLED);
	assert_int_equal(ev.mph, PACE_MPH(600, 3600000));
	assert_int_equal(ev.until, T0 + 30 * 60000);
	assert_string_equal(ev.reason, "rule gmail-rate (3 in 10min): 421 4.7.28");
	assert_true(strstr(shaper_event_text(&ev, buf, sizeof buf), "action=throttled window=5 rate=10/min until=") != NULL);
	assert_int_equal(l->mph, PACE_MPH(600, 3600000));
	/* again while it holds: nothing changes, no event */
	assert_int_equal(shaper_react(&sh, l, T0 + 1000, &thr, "again", &ev), 0);
	/* clean outcomes for 29 minutes: the rate stays at the ceiling */
	for (t = T0; t < T0 + 29 * 60000; t += 1000)
		shaper_result(&sh, l, t, &CLEAN, NULL);
	assert_int_equal(l->mph, PACE_MPH(600, 3600000));
	/* after it: the usual steps bring it back to 3000/h, then "recovered" */
	for (t = T0 + 31 * 60000; t < T0 + 120 * 60000 && !recovered; t += 1000) {
		shaper_poll(&sh, l, t, NULL);
		if (shaper_result(&sh, l, t, &CLEAN, &ev) && ev.action == SHAPER_RECOVERED)
			recovered = 1;
	}
	assert_true(recovered);
	assert_int_equal(l->mph, PACE_MPH(3000, 3600000));
	assert_int_equal(l->throttled, 0);

	/* cap: the window drops to 2 until its time, then grows back */
	cap.name = (char *)"cap2";
	cap.action = REACTION_CAP;
	cap.connections = 2;
	cap.duration_ms = 10 * 60000;
	t = T0 + 200 * 60000;
	assert_true(l->window > 2);
	assert_int_equal(shaper_react(&sh, l, t, &cap, "rule cap2", &ev), 1);
	assert_int_equal(ev.action, SHAPER_THROTTLED);
	assert_int_equal(ev.window, 2);
	assert_int_equal(l->window, 2);
	shaper_connect(&sh, l, t);
	shaper_connect(&sh, l, t);
	assert_int_equal(shaper_may_connect(&sh, l, t, &at), SHAPER_FULL);
	for (uint64_t u = t; u < t + 9 * 60000; u += 1000)
		shaper_result(&sh, l, u, &CLEAN, NULL);
	assert_int_equal(l->window, 2);
	for (uint64_t u = t + 11 * 60000; u < t + 12 * 60000; u += 1000)
		shaper_result(&sh, l, u, &CLEAN, NULL);
	assert_true(l->window > 2);
	shaper_disconnect(&sh, l);
	shaper_disconnect(&sh, l);

	/* suspend, scope site: both lanes of the destination */
	l2 = mklane(&sh, "127.0.0.3", "gmail", 10, PACE_MPH(3000, 3600000));
	mklane(&sh, "127.0.0.3", "yahoo", 10, 0);
	assert_int_equal(shaper_lanes_to(&sh, "gmail", lanes, 8), 2);
	assert_int_equal(shaper_lanes_to(&sh, "yahoo", lanes, 8), 1);
	assert_int_equal(shaper_lanes_to(&sh, "gmail", lanes, 1), 1);
	sus.name = (char *)"block";
	sus.action = REACTION_SUSPEND;
	sus.scope = REACTION_SCOPE_SITE;
	sus.duration_ms = 3600000;
	t = T0 + 300 * 60000;
	assert_int_equal(shaper_react(&sh, l2, t, &sus, "rule block", &ev), 1);
	assert_int_equal(ev.action, SHAPER_SUSPENDED);
	assert_int_equal(ev.until, t + 3600000);
	assert_int_equal(shaper_may_send(&sh, l2, t + 1000, &at), SHAPER_WAIT_SUSPENDED);
	assert_int_equal(at, t + 3600000);
	/* in flight when it was suspended: no second event */
	assert_int_equal(shaper_react(&sh, l2, t + 2000, &sus, "rule block", &ev), 0);
	assert_int_equal(shaper_poll(&sh, l2, t + 3600000, &ev), 1);
	assert_int_equal(ev.action, SHAPER_RESUMED);
	assert_int_equal(shaper_may_send(&sh, l2, t + 3600000, &at), SHAPER_GO);
	shaper_free(&sh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rollup_key),
		cmocka_unit_test(test_destination),
		cmocka_unit_test(test_window_and_conn_rate),
		cmocka_unit_test(test_ip_total),
		cmocka_unit_test(test_aimd_curves),
		cmocka_unit_test(test_one_decrease_per_cohort),
		cmocka_unit_test(test_cohort_rule),
		cmocka_unit_test(test_unlimited_lane),
		cmocka_unit_test(test_suspension),
		cmocka_unit_test(test_pick_by_weight),
		cmocka_unit_test(test_convergence),
		cmocka_unit_test(test_verdict_of),
		cmocka_unit_test(test_reload_sweep_text),
		cmocka_unit_test(test_react),
	};

	return cmocka_run_group_tests_name("shaper", tests, NULL, NULL);
}
