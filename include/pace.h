/*
 * pace.h - smooth pacing: the generic cell rate algorithm (GCRA) and the
 * rate arithmetic the shaper does on it.
 *
 * A pace remembers one number, the theoretical arrival time (TAT) of the
 * next message. With an emission interval T (the time one message "costs"
 * at the rate) and a burst of B messages, one more may go at now when
 * TAT - now <= (B - 1) * T; taking it moves TAT to max(TAT, now) + T. So a
 * 3000/h lane sends one message every 1.2 s, never 3000 in its first
 * minute, and after a quiet spell it may send B at once, no more.
 *
 * Rates are kept as "mph": millionths of a message per hour (so 1/day is
 * 41666, 3000/h is 3000000000); 0 means unlimited. Intervals are
 * microseconds.
 * Time comes in as milliseconds (any clock, as long as it is always the
 * same one for one pace).
 *
 * Pure: no clock, no I/O, no allocation. Unit-tested in test_pace.c.
 */
#ifndef VOLLEY_PACE_H
#define VOLLEY_PACE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct pace {
	uint64_t tat_us;	/* theoretical arrival time of the next one; 0: fresh */
};

/* pace_mph - a configured rate as mph (0: unlimited; at least 1 otherwise). */
uint64_t pace_mph(const struct rate *r);
/* pace_interval_us - the emission interval for mph (0 for unlimited; >= 1). */
uint64_t pace_interval_us(uint64_t mph);

/*
 * pace_wait - 0 if one more may go at now_ms, else the milliseconds until
 * it may (rounded up, >= 1). interval_us 0 (unlimited) always answers 0.
 * burst 0 counts as 1.
 */
uint64_t pace_wait(const struct pace *p, uint64_t interval_us, uint32_t burst, uint64_t now_ms);
/* pace_take - one goes at now_ms (whether or not pace_wait allowed it). */
void pace_take(struct pace *p, uint64_t interval_us, uint64_t now_ms);

/* PACE_MPH(n, per_ms) - n messages per per_ms as mph (constants). */
#define PACE_MPH(n, per_ms)	((uint64_t)(n) * 3600000000000ull / (per_ms))

/* pace_pct - x * pct / 100 without overflow. */
uint64_t pace_pct(uint64_t x, uint64_t pct);

/*
 * pace_rate_text - mph as a rate an operator reads: the first of N/s,
 * N/min, N/h, N/day whose N is (within 0.5%) a whole number >= 1, else
 * N/h or N/day with one decimal; "unlimited" for 0. Returns buf (len >= 24
 * recommended).
 */
const char *pace_rate_text(uint64_t mph, char *buf, size_t len);

#endif
