/*
 * test_dest.c - the scheduler's pure state (dest.c): queue order, expiry
 * when a job leaves a queue, how many sessions to open under the
 * destination's and the global limits and during a back-off, session
 * accounting, the global waiting list, the per-destination cap (and
 * which job a higher-priority one pushes out of a full queue), the order
 * of priority classes, the
 * idle sweep, and the shaping lanes a destination holds (referenced while
 * it keeps them, so the shaper's sweep leaves them). Time is passed in by
 * hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dest.h"
#include "job.h"
#include "shaper.h"
#include "util.h"

static struct job *
mkjob(const char *key, uint64_t expires_at_ms)
{
	struct job *j = xcalloc(1, sizeof *j);

	j->key = xstrdup(key);
	j->expires_at_ms = expires_at_ms;
	return j;
}

static struct job *
mkprio(const char *key, enum job_priority p)
{
	struct job *j = mkjob(key, 1000);

	j->priority = p;
	return j;
}

static void
freejob(struct job *j)
{
	free(j->key);
	free(j);
}

static void
test_fifo_and_keys(void **state)
{
	struct dests ds = { 0 };
	struct dest *a = dests_get(&ds, "default", "a.test");
	struct dest *b = dests_get(&ds, "marketing", "a.test");
	struct job *j1 = mkjob("1", 1000), *j2 = mkjob("2", 1000), *expired = NULL;

	assert_ptr_equal(dests_get(&ds, "default", "a.test"), a);
	assert_ptr_not_equal(a, b);	/* one destination per (pool, domain) */
	assert_string_equal(a->key, "default|a.test");
	dest_push(a, j1, 10);
	dest_push(a, j2, 20);
	assert_int_equal(a->queued, 2);
	assert_int_equal(a->last_used, 20);
	assert_ptr_equal(j1->dest, a);
	assert_ptr_equal(dest_pop(a, 0, &expired), j1);
	assert_null(j1->dest);
	assert_ptr_equal(dest_pop(a, 0, &expired), j2);
	assert_null(dest_pop(a, 0, &expired));
	assert_null(expired);
	assert_int_equal(a->queued, 0);
	freejob(j1);
	freejob(j2);
	dests_free(&ds);
}

/* A job past its expires_at is never handed to a session: it comes back
 * on the expired list, in any position of the queue. */
static void
test_expiry_on_dequeue(void **state)
{
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "default", "x.test");
	struct job *old1 = mkjob("old1", 500), *fresh = mkjob("fresh", 5000);
	struct job *old2 = mkjob("old2", 999), *later = mkjob("later", 5000);
	struct job *expired = NULL, *j;
	size_t n = 0;

	dest_push(d, old1, 1);
	dest_push(d, fresh, 1);
	dest_push(d, old2, 1);
	dest_push(d, later, 1);
	assert_ptr_equal(dest_pop(d, 1000, &expired), fresh);
	assert_ptr_equal(expired, old1);
	assert_null(old1->next);
	assert_ptr_equal(dest_pop(d, 1000, &expired), later);
	for (j = expired; j; j = j->next)
		n++;
	assert_int_equal(n, 2);
	assert_ptr_equal(expired, old2);	/* most recent first */
	assert_int_equal(d->queued, 0);
	/* exactly at expires_at counts as expired */
	expired = NULL;
	dest_push(d, mkjob("edge", 2000), 1);
	assert_null(dest_pop(d, 2000, &expired));
	assert_non_null(expired);
	freejob(expired);
	freejob(old1);
	freejob(old2);
	freejob(fresh);
	freejob(later);
	dests_free(&ds);
}

static void
test_pop_any_ignores_expiry(void **state)
{
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "default", "x.test");
	struct job *j = mkjob("1", 1);

	dest_push(d, j, 1);
	assert_ptr_equal(dest_pop_any(d), j);
	assert_null(dest_pop_any(d));
	freejob(j);
	dests_free(&ds);
}

struct plan_case {
	const char *name;
	size_t queued;
	unsigned nsessions, nconnecting, max_conn, global_free;
	uint64_t now, backoff_until;
	unsigned want;
	int wait_global;
};

static void
test_plan_table(void **state)
{
	static const struct plan_case cases[] = {
		{ "nothing queued", 0, 0, 0, 5, 100, 10, 0, 0, 0 },
		{ "one job, one session", 1, 0, 0, 5, 100, 10, 0, 1, 0 },
		{ "more jobs than the limit", 50, 0, 0, 5, 100, 10, 0, 5, 0 },
		{ "limit unset: 20", 50, 0, 0, 0, 100, 10, 0, 20, 0 },
		{ "some open already", 50, 3, 0, 5, 100, 10, 0, 2, 0 },
		{ "at the limit", 50, 5, 0, 5, 100, 10, 0, 0, 0 },
		{ "connecting ones count for queued jobs", 3, 2, 2, 5, 100, 10, 0, 1, 0 },
		{ "all queued jobs have a connecting session", 2, 2, 2, 5, 100, 10, 0, 0, 0 },
		{ "global cap holds it back", 50, 0, 0, 5, 2, 10, 0, 2, 1 },
		{ "global cap full", 50, 0, 0, 5, 0, 10, 0, 0, 1 },
		{ "backing off", 50, 0, 0, 5, 100, 10, 11, 0, 0 },
		{ "back-off over", 50, 0, 0, 5, 100, 11, 11, 5, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct plan_case *c = &cases[i];
		struct dest d;
		int wait = -1;
		unsigned got;

		memset(&d, 0, sizeof d);
		d.queued = c->queued;
		d.nsessions = c->nsessions;
		d.nconnecting = c->nconnecting;
		d.lim.max_connections = c->max_conn;
		d.backoff_until = c->backoff_until;
		got = dest_plan(&d, c->now, c->global_free, &wait);
		if (got != c->want || wait != c->wait_global)
			fail_msg("%s: want %u (wait %d), got %u (wait %d)", c->name, c->want,
			    c->wait_global, got, wait);
	}
}

static void
test_session_accounting(void **state)
{
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "default", "x.test");

	dest_session_opened(d);
	dest_session_opened(d);
	assert_int_equal(d->nsessions, 2);
	assert_int_equal(d->nconnecting, 2);
	d->backoff_until = 99;
	dest_session_established(d);
	assert_int_equal(d->nconnecting, 1);
	assert_int_equal(d->backoff_until, 0);	/* a success ends the back-off */
	/* the one still connecting fails on every MX: one other carries it */
	assert_int_equal(dest_site_failed(d, 100, 5000), 1);
	assert_int_equal(d->backoff_until, 5100);
	dest_session_closed(d, 0);
	assert_int_equal(d->nsessions, 1);
	assert_int_equal(d->nconnecting, 0);
	/* now the last one fails: nobody else carries the queue */
	assert_int_equal(dest_site_failed(d, 200, 5000), 0);
	dest_session_closed(d, 1);
	assert_int_equal(d->nsessions, 0);
	dests_free(&ds);
}

static void
test_wants_mx(void **state)
{
	struct dest d;

	memset(&d, 0, sizeof d);
	assert_false(dest_wants_mx(&d, 0));		/* nothing queued */
	d.queued = 2;
	assert_true(dest_wants_mx(&d, 0));
	d.resolving = 1;
	assert_false(dest_wants_mx(&d, 0));		/* one lookup at a time */
	d.resolving = 0;
	d.nconnecting = 2;
	assert_false(dest_wants_mx(&d, 0));		/* covered by sessions on the way */
	d.nconnecting = 0;
	d.backoff_until = 10;
	assert_false(dest_wants_mx(&d, 9));
	assert_true(dest_wants_mx(&d, 10));
}

static void
test_wait_list_and_cap(void **state)
{
	struct dests ds = { 0 };
	struct dest *a = dests_get(&ds, "default", "a.test");
	struct dest *b = dests_get(&ds, "default", "b.test");

	dests_wait(&ds, a);
	dests_wait(&ds, b);
	dests_wait(&ds, a);		/* once only */
	assert_ptr_equal(dests_next_waiting(&ds), a);
	assert_false(a->waiting_global);
	assert_ptr_equal(dests_next_waiting(&ds), b);
	assert_null(dests_next_waiting(&ds));

	assert_false(dest_full(a, 2));
	a->queued = 2;
	assert_true(dest_full(a, 2));
	a->queued = 0;
	dests_free(&ds);
}

#define H JOB_PRIO_HIGH
#define N JOB_PRIO_NORMAL
#define L JOB_PRIO_LOW

/* Jobs pushed as "key:class" ("a:n" = normal job a); pops come out high
 * first, FIFO within a class, whatever the push order. */
static const struct {
	const char *push;		/* space separated key:class */
	const char *order;		/* keys in the order they leave */
} order_cases[] = {
	{ "a:n b:n c:n", "a b c" },
	{ "a:n b:h c:n", "b a c" },
	{ "a:l b:n c:h", "c b a" },
	{ "a:h b:h c:l d:n e:h", "a b e d c" },
	{ "a:l b:l c:l d:h", "d a b c" },
	{ "", "" },
};

static enum job_priority
class_of(char c)
{
	return c == 'h' ? H : c == 'l' ? L : N;
}

/* pops everything and writes the keys, space separated, into out */
static void
drain_keys(struct dest *d, char *out, size_t len)
{
	struct job *j, *expired = NULL;

	out[0] = '\0';
	while ((j = dest_pop(d, 0, &expired)) != NULL) {
		if (out[0])
			strncat(out, " ", len - strlen(out) - 1);
		strncat(out, j->key, len - strlen(out) - 1);
		freejob(j);
	}
	assert_null(expired);
}

static void
push_spec(struct dest *d, const char *spec)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof buf, "%s", spec);
	for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		char *colon = strchr(t, ':');
		*colon = '\0';
		dest_push(d, mkprio(t, class_of(colon[1])), 1);
	}
}

static void
test_priority_order(void **state)
{
	for (size_t i = 0; i < sizeof order_cases / sizeof order_cases[0]; i++) {
		struct dests ds = { 0 };
		struct dest *d = dests_get(&ds, "default", "a.test");
		char got[256];
		size_t n = 0;

		push_spec(d, order_cases[i].push);
		for (const char *p = order_cases[i].push; *p; p++)
			n += *p == ':';
		assert_int_equal(d->queued, n);
		drain_keys(d, got, sizeof got);
		assert_string_equal(got, order_cases[i].order);
		assert_int_equal(d->queued, 0);
		dests_free(&ds);
	}
}

/* A full queue (cap 3, filled with `fill`) meets job `key` of class
 * `cls`: which job is pushed out (parked), and what is left in order. */
static const struct {
	const char *fill;
	const char *key;
	enum job_priority cls;
	const char *parked;		/* the job returned: "" none */
	const char *left;
} cap_cases[] = {
	/* below the cap: queued, nothing parked */
	{ "a:n b:n", "x", H, "", "x a b" },
	/* same class as the lowest: the newcomer waits in Redis */
	{ "a:n b:n c:n", "x", N, "x", "a b c" },
	{ "a:h b:h c:h", "x", H, "x", "a b c" },
	{ "a:n b:n c:n", "x", L, "x", "a b c" },
	/* higher: the newest of the lowest class makes room */
	{ "a:n b:n c:n", "x", H, "c", "x a b" },
	{ "a:l b:n c:l", "x", H, "c", "x b a" },
	{ "a:l b:n c:l", "x", N, "c", "b x a" },
	{ "a:n b:h c:n", "x", H, "c", "b x a" },
	{ "a:l b:h c:h", "x", H, "a", "b c x" },
	{ "a:h b:h c:n", "x", N, "x", "a b c" },
	{ "a:l", "x", L, "", "a x" },
};

static void
test_cap_makes_room_for_higher(void **state)
{
	for (size_t i = 0; i < sizeof cap_cases / sizeof cap_cases[0]; i++) {
		struct dests ds = { 0 };
		struct dest *d = dests_get(&ds, "default", "a.test");
		struct job *x = mkprio(cap_cases[i].key, cap_cases[i].cls), *out;
		size_t before;
		char got[256];

		push_spec(d, cap_cases[i].fill);
		before = d->queued;
		out = dest_push_capped(d, x, 7, 3);
		if (cap_cases[i].parked[0] == '\0') {
			assert_null(out);
			assert_int_equal(d->queued, before + 1);
		} else {
			assert_non_null(out);
			assert_string_equal(out->key, cap_cases[i].parked);
			assert_null(out->dest);		/* off the queue */
			assert_int_equal(d->queued, 3);	/* never past the cap */
			freejob(out);
		}
		drain_keys(d, got, sizeof got);
		assert_string_equal(got, cap_cases[i].left);
		dests_free(&ds);
	}
}

/* Pushing out the tail keeps the class linked: later pushes and pops of
 * that class still work (the tail pointer moved back). */
static void
test_evict_keeps_class_linked(void **state)
{
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "default", "a.test");
	struct job *out;
	char got[256];

	push_spec(d, "a:n b:n c:n d:n");
	out = dest_push_capped(d, mkprio("x", H), 1, 4);
	assert_string_equal(out->key, "d");
	freejob(out);
	out = dest_push_capped(d, mkprio("y", H), 1, 4);
	assert_string_equal(out->key, "c");
	freejob(out);
	dest_push(d, mkprio("e", N), 1);	/* uncapped: after b */
	drain_keys(d, got, sizeof got);
	assert_string_equal(got, "x y a b e");
	dests_free(&ds);
}

#undef H
#undef N
#undef L

static void
test_sweep(void **state)
{
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "default", "a.test");

	d->last_used = 1000;
	assert_false(dest_sweepable(d, 1500, 1000));	/* used recently */
	assert_true(dest_sweepable(d, 2000, 1000));
	d->nsessions = 1;
	assert_false(dest_sweepable(d, 9000, 1000));
	d->nsessions = 0;
	d->resolving = 1;
	assert_false(dest_sweepable(d, 9000, 1000));
	d->resolving = 0;
	dests_drop(&ds, d);
	assert_null(map_get(&ds.map, "default|a.test"));
	dests_free(&ds);
}

static void
test_lanes_referenced(void **state)
{
	struct shaper_params p = { .initial_connections = 5, .decrease_pct = 50, .burst = 3 };
	struct shaper sh;
	struct shaper_limits lim = { .max_connections = 3 };
	struct dests ds = { 0 };
	struct dest *d = dests_get(&ds, "p", "a.test");
	struct shaper_lane **lanes = xcalloc(2, sizeof *lanes), **again;
	size_t *cfg = xcalloc(2, sizeof *cfg);
	uint32_t *w = xcalloc(2, sizeof *w);

	shaper_init(&sh, &p);
	lanes[0] = shaper_lane(&sh, shaper_ip(&sh, "192.0.2.1", 0), "mx.test", &lim, 0);
	lanes[1] = shaper_lane(&sh, shaper_ip(&sh, "192.0.2.2", 0), "mx.test", &lim, 0);
	shaper_lane_ref(lanes[0]);
	shaper_lane_ref(lanes[1]);
	dest_set_lanes(d, lanes, cfg, w, 2);
	assert_int_equal(d->nlanes, 2);
	assert_int_equal(shaper_sweep(&sh, 10000000, 1), 0);	/* held: kept */

	/* Built again (a reload): the new set is referenced, the old let go. */
	again = xcalloc(1, sizeof *again);
	again[0] = lanes[0];
	shaper_lane_ref(again[0]);
	dest_set_lanes(d, again, xcalloc(1, sizeof(size_t)), xcalloc(1, sizeof(uint32_t)), 1);
	assert_int_equal(shaper_lane_find(&sh, "192.0.2.1/mx.test")->refs, 1);
	assert_int_equal(shaper_sweep(&sh, 10000000, 1), 1);	/* 192.0.2.2's lane */
	assert_null(shaper_lane_find(&sh, "192.0.2.2/mx.test"));

	dests_drop(&ds, d);		/* lets its lanes go */
	assert_int_equal(shaper_sweep(&sh, 10000000, 1), 1);
	assert_null(shaper_lane_find(&sh, "192.0.2.1/mx.test"));
	dests_free(&ds);
	shaper_free(&sh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_keys),
		cmocka_unit_test(test_expiry_on_dequeue),
		cmocka_unit_test(test_pop_any_ignores_expiry),
		cmocka_unit_test(test_plan_table),
		cmocka_unit_test(test_session_accounting),
		cmocka_unit_test(test_wants_mx),
		cmocka_unit_test(test_wait_list_and_cap),
		cmocka_unit_test(test_priority_order),
		cmocka_unit_test(test_cap_makes_room_for_higher),
		cmocka_unit_test(test_evict_keeps_class_linked),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_lanes_referenced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
