/*
 * warmup.h - warm-up budgets: how much a new source IP may send now.
 *
 * A warm-up schedule (config_warmup) gives, per day since the IP's start
 * day, a cap per day and optionally per hour; a schedule may carry its own
 * ramp for a site (Gmail and Microsoft each get theirs, counted per IP and
 * site). The day's cap is SPREAD over the day: at time t the budget is
 * the cap times the part of the (UTC) day gone by, plus a small burst
 * (warmup_burst percent of the cap, at least 1), never more than the cap.
 * Day 1 with a cap of 50 allows about 26 by noon, 50 only at the end.
 *
 * The counters (sent today, sent this hour) live outside, in Redis, shared
 * by every host and kept over restarts: they come in as arguments, and
 * the answer says whether one more may go and, if not, when it may.
 *
 * Pausing a ramp (complaints, bounces) is done by the caller moving the
 * IP's start day forward: the current day's cap then repeats
 * (warmup_hold_shift says by how much).
 *
 * Pure: no clock, no I/O, no allocation. Unit-tested in test_warmup.c.
 */
#ifndef VOLLEY_WARMUP_H
#define VOLLEY_WARMUP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define WARMUP_DAY_MS	86400000ull
#define WARMUP_HOUR_MS	3600000ull

/* A ramp: a schedule's own lists or one of its per-site ramps. */
struct warmup_ramp {
	const uint32_t *daily;
	size_t ndaily;
	const uint32_t *hourly;
	size_t nhourly;
};

struct warmup_answer {
	int allowed;		/* one more may go now */
	int done;		/* past the end of the ramp: no warm-up cap any more */
	uint32_t day;		/* 1..: day of the ramp now */
	uint32_t cap_day;	/* today's cap (0 when done) */
	uint32_t cap_hour;	/* this hour's cap, 0: none */
	uint32_t budget;	/* what may have gone by now (spread) */
	uint64_t next_ms;	/* !allowed: wall ms when one more may go */
	const char *why;	/* !allowed: "daily budget", "hourly cap", "day cap" */
};

/* warmup_ramp - w's own ramp (site NULL or no ramp for it) or site's. */
struct warmup_ramp warmup_ramp(const struct config_warmup *w, const char *site);
/* warmup_has_site - whether w has a ramp of its own for site. */
int warmup_has_site(const struct config_warmup *w, const char *site);

/*
 * warmup_day_number - "YYYY-MM-DD" as days since 1970-01-01 (UTC), or -1
 * if it is not a valid date. warmup_start is kept as this number.
 */
int64_t warmup_day_number(const char *date);

/*
 * warmup_check - may one more message go at now_wall_ms from an IP whose
 * ramp started on start_day (days since the epoch; day 1 is that day; a
 * start in the future counts as day 1), having sent sent_today since
 * 00:00 UTC and sent_hour since the start of the hour (to this site for a
 * site ramp)? burst_pct: the shaping.warmup_burst percent. Fills *a and
 * returns a->allowed. O(1).
 */
int warmup_check(const struct warmup_ramp *r, int64_t start_day, uint64_t now_wall_ms,
    uint32_t sent_today, uint32_t sent_hour, uint32_t burst_pct, struct warmup_answer *a);

/*
 * warmup_hold_shift - a hold keeps a ramp at day hold_day: the shift
 * (days added to start) that a ramp started on start + shift needs on
 * `today` so that its day, today - (start + shift) + 1, does not pass
 * hold_day. shift itself when it does not. The Redis sync script does the
 * same arithmetic for every host; the scheduler uses this between syncs.
 */
int64_t warmup_hold_shift(int64_t start, int64_t shift, uint32_t hold_day, int64_t today);

#endif
