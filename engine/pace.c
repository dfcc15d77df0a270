/*
 * pace.c - smooth pacing (GCRA) and rate arithmetic. See pace.h: pure, no
 * clock, no allocation; O(1) per call.
 */
#include "pace.h"

#include <inttypes.h>
#include <stdio.h>

#define UMPH_US		3600000000000000ull	/* 1 h in us, times 10^6 (mph units) */

uint64_t
pace_pct(uint64_t x, uint64_t pct)
{
	unsigned __int128 v = (unsigned __int128)x * pct / 100;

	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

uint64_t
pace_mph(const struct rate *r)
{
	unsigned __int128 mph;

	if (r == NULL || r->count == 0 || r->per_ms == 0)
		return 0;
	mph = (unsigned __int128)r->count * 3600000000000ull / r->per_ms;
	if (mph > UINT64_MAX / 128)
		mph = UINT64_MAX / 128;	/* far beyond anything a lane sends */
	return mph ? (uint64_t)mph : 1;
}

uint64_t
pace_interval_us(uint64_t mph)
{
	uint64_t t;

	if (mph == 0)
		return 0;
	t = UMPH_US / mph;
	return t ? t : 1;
}

uint64_t
pace_wait(const struct pace *p, uint64_t interval_us, uint32_t burst, uint64_t now_ms)
{
	/* The clock counts whole milliseconds: all of the current one is
	 * "now". Comparing against its first microsecond let a lane send
	 * at most one message per millisecond whatever its rate (1,000/s
	 * for a lane configured at 1,000,000/s), each refusal a timer. */
	uint64_t now_us = now_ms * 1000 + 999, tau, allowed_at;

	if (interval_us == 0)
		return 0;
	if (burst == 0)
		burst = 1;
	tau = (uint64_t)(burst - 1) * interval_us;
	if (p->tat_us <= now_us + tau)
		return 0;
	allowed_at = p->tat_us - tau;	/* > now_us */
	return (allowed_at - now_us + 999) / 1000;
}

void
pace_take(struct pace *p, uint64_t interval_us, uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000;

	if (p->tat_us < now_us)
		p->tat_us = now_us;
	p->tat_us += interval_us;
}

const char *
pace_rate_text(uint64_t mph, char *buf, size_t len)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "s", 1000 }, { "min", 60000 }, { "h", 3600000 }, { "day", 86400000 },
	};
	uint64_t milli[4];

	if (mph == 0) {
		snprintf(buf, len, "unlimited");
		return buf;
	}
	for (size_t i = 0; i < 4; i++) {
		/* thousandths of a message per unit, rounded */
		unsigned __int128 v = ((unsigned __int128)mph * units[i].ms + 1800000000ull) /
		    3600000000ull;

		milli[i] = v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
		if (milli[i] >= 1000) {
			uint64_t frac = milli[i] % 1000, whole = (milli[i] + 500) / 1000;

			if (frac <= 5 * whole || 1000 - frac <= 5 * whole) {
				snprintf(buf, len, "%" PRIu64 "/%s", whole, units[i].unit);
				return buf;
			}
		}
	}
	if (milli[2] >= 1000)
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "/h", milli[2] / 1000, milli[2] % 1000 / 100);
	else
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "/day", milli[3] / 1000, milli[3] % 1000 / 100);
	return buf;
}
