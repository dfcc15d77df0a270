/*
 * test_fleet.c - fleet-wide token caches (fleet.c) with a fake clock:
 * batch sizes, one key's answers step by step (take, refuse, ask, grant,
 * expire, fail), and two instances sharing one bucket modelled on the
 * Redis script (the same GCRA arithmetic as fleet_lua in redis.c): under
 * unbounded demand they stay under the limit together (every 1 s window
 * at most rate + one batch), use most of it, and ask Redis about once per
 * batch, not once per message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fleet.h"
#include "pace.h"

static void
test_batch(void **state)
{
	static const struct { uint64_t mph; uint32_t batch; } cases[] = {
		{ PACE_MPH(20, 1000), 4 },		/* 200 ms of 20/s */
		{ PACE_MPH(100, 1000), 20 },
		{ PACE_MPH(1, 60000), 1 },		/* slow: at least 1 */
		{ PACE_MPH(3000, 3600000), 1 },
		{ PACE_MPH(100000, 1000), FLEET_BATCH_MAX },	/* bounded */
		{ 1, 1 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(fleet_batch(cases[i].mph), cases[i].batch);
}

enum op { MAY, TAKE, NEED, GRANT, FAIL, TOKENS };

struct step {
	enum op op;
	uint64_t now;
	uint32_t arg;		/* GRANT: n */
	uint64_t wait;		/* GRANT: wait_ms */
	int want;		/* MAY/TAKE: 1/0; NEED: keys; TOKENS: count */
	uint64_t at;		/* MAY/TAKE refused: expected *at; NEED: tokens asked */
	uint64_t slack;		/* MAY/TAKE: *at may be up to this later (jitter) */
};

/* One key at 20/s (batch 4), step by step. */
static void
test_steps(void **state)
{
	static const struct step steps[] = {
		{ NEED, 1000, 0, 0, 0, 0, 0 },		/* unknown key: nothing */
		{ TAKE, 1000, 0, 0, 0, 1020, 0 },		/* none in hand: look again soon */
		{ NEED, 1000, 0, 0, 1, 4, 0 },		/* a batch of 4 wanted */
		{ NEED, 1001, 0, 0, 0, 0, 0 },		/* in flight: not again */
		{ TAKE, 1001, 0, 0, 0, 1021, 0 },
		{ GRANT, 1003, 4, 0, 0, 0, 0 },
		{ TOKENS, 1003, 0, 0, 4, 0, 0 },
		{ MAY, 1003, 0, 0, 1, 0, 0 },		/* may: nothing taken */
		{ TAKE, 1003, 0, 0, 1, 0, 0 },
		{ TAKE, 1004, 0, 0, 1, 0, 0 },
		{ NEED, 1005, 0, 0, 0, 0, 0 },		/* 2 of 4 left: not low yet */
		{ TAKE, 1005, 0, 0, 1, 0, 0 },
		{ NEED, 1006, 0, 0, 1, 3, 0 },		/* 1 left, in use: prefetch 3 */
		{ GRANT, 1008, 1, 180, 0, 0, 0 },		/* 1 of 3; half a batch fits in 180 ms */
		{ TOKENS, 1008, 0, 0, 2, 0, 0 },
		{ TAKE, 1009, 0, 0, 1, 0, 0 },
		{ TAKE, 1010, 0, 0, 1, 0, 0 },
		{ TAKE, 1011, 0, 0, 0, 1188, 45 },	/* Redis named 1188 (+ jitter) */
		{ NEED, 1100, 0, 0, 0, 0, 0 },		/* not before 1188 */
		{ NEED, 1188 + 45, 0, 0, 1, 4, 0 },
		{ GRANT, 1190, 4, 0, 0, 0, 0 },
		{ TOKENS, 2189, 0, 0, 4, 0, 0 },
		{ TOKENS, 2190, 0, 0, 0, 0, 0 },		/* unused tokens expire after 1 s */
		{ TAKE, 2190, 0, 0, 0, 2210, 0 },
		{ NEED, 2190, 0, 0, 1, 4, 0 },
		{ FAIL, 2195, 0, 0, 0, 0, 0 },		/* Redis unreachable */
		{ TAKE, 2196, 0, 0, 0, 2695, 0 },		/* wait, never exceed */
		{ NEED, 2600, 0, 0, 0, 0, 0 },
		{ NEED, 2695, 0, 0, 1, 4, 0 },
		{ NEED, 2695 + FLEET_ASK_TIMEOUT_MS - 1, 0, 0, 0, 0, 0 },
		{ TAKE, 2695 + FLEET_ASK_TIMEOUT_MS, 0, 0, 0, 2695 + FLEET_ASK_TIMEOUT_MS + 20, 0 },
		{ NEED, 2695 + FLEET_ASK_TIMEOUT_MS, 0, 0, 1, 4, 0 },	/* lost: ask again */
		{ GRANT, 2695 + FLEET_ASK_TIMEOUT_MS + 1, 4, 0, 0, 0, 0 },
		{ GRANT, 2695 + FLEET_ASK_TIMEOUT_MS + 2, 4, 0, 0, 0, 0 },	/* late duplicate: dropped */
		{ TOKENS, 2695 + FLEET_ASK_TIMEOUT_MS + 2, 0, 0, 4, 0, 0 },
	};
	const char *key = "site:gmail";
	uint64_t mph = PACE_MPH(20, 1000);
	struct fleet f;

	fleet_init(&f, 1);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		const struct step *s = &steps[i];
		struct fleet_ask ask[4];
		uint64_t at = 0;
		size_t n;
		int r;

		switch (s->op) {
		case MAY:
		case TAKE:
			r = s->op == MAY ? fleet_may(&f, key, mph, s->now, &at) :
			    fleet_take(&f, key, mph, s->now, &at);
			if (r != s->want || (!r && (at < s->at || at > s->at + s->slack)))
				fail_msg("step %zu: got %d at %llu", i, r, (unsigned long long)at);
			break;
		case NEED:
			n = fleet_need(&f, s->now, ask, 4);
			if ((int)n != s->want || (n && (ask[0].n != s->at || ask[0].burst != 4 ||
			    strcmp(ask[0].name, key) != 0 || ask[0].mph != mph)))
				fail_msg("step %zu: need %zu (n %u)", i, n, n ? ask[0].n : 0);
			break;
		case GRANT:
			fleet_grant(&f, key, s->arg, s->wait, s->now);
			break;
		case FAIL:
			fleet_fail(&f, key, s->now);
			break;
		case TOKENS:
			if (fleet_tokens(&f, key, s->now) != (uint32_t)s->want)
				fail_msg("step %zu: %u tokens", i, fleet_tokens(&f, key, s->now));
			break;
		}
	}
	/* no limit: always yes, no key, never asked */
	{
		uint64_t at;
		struct fleet_ask ask[4];

		assert_int_equal(fleet_take(&f, "site:none", 0, 5000, &at), 1);
		assert_int_equal(fleet_tokens(&f, "site:none", 5000), 0);
		assert_int_equal(fleet_sweep(&f, 100000, 60000), 1);	/* site:gmail idle */
		assert_int_equal(fleet_need(&f, 100000, ask, 4), 0);
	}
	fleet_free(&f);
}

/*
 * The Redis side, as fleet_lua computes it (us): grant k <= n while
 * TAT - now stays within burst * T; the wait (ms, rounded up) is until
 * a whole batch (burst) fits again: TAT - now.
 */
struct bucket {
	uint64_t tat_us;
};

static uint32_t
bucket_take(struct bucket *b, uint64_t now_us, uint32_t n, uint64_t T, uint32_t burst,
    uint64_t *wait_ms)
{
	uint64_t tat = b->tat_us > now_us ? b->tat_us : now_us;
	int64_t room = ((int64_t)(now_us + burst * T) - (int64_t)tat) / (int64_t)T;
	uint32_t k = room <= 0 ? 0 : room < n ? (uint32_t)room : n;

	tat += k * T;
	if (k)
		b->tat_us = tat;
	*wait_ms = (tat - now_us + 999) / 1000;
	return k;
}

/*
 * Two instances with unbounded demand on one limit of `rate`/s for 60 s,
 * 2 ms round trip to Redis, the take tried every ms: combined, every 1 s
 * window holds at most rate + one batch (the burst), the whole run at
 * least 90% of the rate, both instances send, and each Redis request
 * brings at least min_per_ask messages on average.
 */
static void
two_instances(uint32_t rate, uint32_t min_per_ask)
{
	enum { RUN_MS = 60000, RTT = 2 };
	uint64_t mph = PACE_MPH(rate, 1000), T = pace_interval_us(mph);
	uint32_t batch = fleet_batch(mph);
	static uint32_t sent_at[RUN_MS];
	struct fleet f[2];
	struct bucket b = { 0 };
	struct { int pending; uint64_t due; uint32_t n, burst; } req[2] = { { 0 } };
	uint64_t total[2] = { 0 }, asks = 0, worst = 0, win = 0;

	memset(sent_at, 0, sizeof sent_at);
	fleet_init(&f[0], 1);
	fleet_init(&f[1], 2);
	for (uint64_t now = 1; now < RUN_MS; now++) {
		for (int i = 0; i < 2; i++) {
			struct fleet_ask ask[1];
			uint64_t at;

			if (req[i].pending && now >= req[i].due) {
				uint64_t wait;
				uint32_t k = bucket_take(&b, (now - RTT / 2) * 1000, req[i].n, T,
				    req[i].burst, &wait);

				req[i].pending = 0;
				fleet_grant(&f[i], "site:s", k, wait, now);
			}
			/* instance 1 runs 1 ms behind instance 0's phase */
			while (fleet_take(&f[i], "site:s", mph, now, &at)) {
				sent_at[now]++;
				total[i]++;
			}
			if (fleet_need(&f[i], now, ask, 1) == 1) {
				req[i].pending = 1;
				req[i].due = now + RTT;
				req[i].n = ask[0].n;
				req[i].burst = ask[0].burst;
				asks++;
			}
		}
	}
	for (uint64_t t = 0; t < RUN_MS; t++) {
		win += sent_at[t];
		if (t >= 1000)
			win -= sent_at[t - 1000];
		if (win > worst)
			worst = win;
	}
	printf("fleet: two instances at %u/s for 60 s: sent %llu + %llu, worst 1 s window %llu, "
	    "%llu Redis requests\n", rate, (unsigned long long)total[0],
	    (unsigned long long)total[1], (unsigned long long)worst, (unsigned long long)asks);
	assert_true(worst <= rate + batch);
	assert_true(total[0] + total[1] >= 60ull * rate * 9 / 10);
	assert_true(total[0] + total[1] <= 60ull * rate + batch);
	assert_true(total[0] > 60ull * rate / 10 && total[1] > 60ull * rate / 10);
	assert_true(asks * min_per_ask <= total[0] + total[1]);
	fleet_free(&f[0]);
	fleet_free(&f[1]);
}

static void
test_two_instances(void **state)
{
	two_instances(20, 2);		/* batch 4: a grant of 4, a refusal */
	two_instances(500, 25);		/* batch 100 */
}

/* An instance that stops asking (Redis gone) sends nothing more. */
static void
test_unreachable(void **state)
{
	uint64_t mph = PACE_MPH(20, 1000), at, sent = 0;
	struct fleet f;

	fleet_init(&f, 1);
	for (uint64_t now = 1; now < 10000; now++) {
		struct fleet_ask ask[1];

		while (fleet_take(&f, "ip:192.0.2.1", mph, now, &at))
			sent++;
		if (fleet_need(&f, now, ask, 1))
			fleet_fail(&f, ask[0].name, now + 1);
	}
	assert_int_equal(sent, 0);
	fleet_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_steps),
		cmocka_unit_test(test_two_instances),
		cmocka_unit_test(test_unreachable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
