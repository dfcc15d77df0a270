/*
 * rates.h - the feedback loop's judge: delivery, bounce and complaint
 * rates per campaign, tenant, pool, IP and site, held against the
 * configured thresholds.
 *
 * Pure: counters in (read from Redis by the caller), decisions out; the
 * time is passed in. The counting itself happens in Redis, in the scripts
 * that write the events (redis.c; schema in docs/redis.md): hash
 * PREFIXrate:DIM:NAME:HOUR per hour, and per campaign a lifetime hash
 * PREFIXrate:campaign:NAME:life with snapshots of its bounces at fixed
 * volumes (RATES_CHECKPOINTS), which is what `first = N` judges.
 *
 * Windows slide: the hour is the current hour bucket plus the previous
 * one weighted by the part of it still inside the last 60 minutes; the
 * day likewise over 24 buckets plus a weighted 25th.
 *
 * What to do about a decision (pause, hold, suspend, throttle) is the
 * engine's; that it is done once per threshold, name and window is
 * Redis' (a SET NX marker, see rq_rates_act).
 */
#ifndef VOLLEY_RATES_H
#define VOLLEY_RATES_H

#include "classify.h"

#include <stddef.h>
#include <stdint.h>

enum rate_dim {
	RATE_DIM_CAMPAIGN = 0,
	RATE_DIM_TENANT,
	RATE_DIM_POOL,
	RATE_DIM_IP,
	RATE_DIM_SITE,
	RATE_DIM__N
};

enum rate_metric {
	RATE_METRIC_COMPLAINT = 0,	/* complaints / delivered */
	RATE_METRIC_BOUNCE,		/* bounces (of the classes) / (delivered + sync bounces) */
};

enum rate_window {
	RATE_WIN_HOUR = 0,
	RATE_WIN_DAY,
	RATE_WIN_FIRST,			/* a campaign's first N outcomes */
};

enum rate_action {
	RATE_ACT_PAUSE = 0,		/* campaign or tenant: the pause hash */
	RATE_ACT_WARMUP_HOLD,		/* ip: its warm-up ramp stays at its day */
	RATE_ACT_SUSPEND,		/* ip x site: nothing sent for duration */
	RATE_ACT_THROTTLE,		/* ip x site: at most rate for duration */
};

/* The volumes at which a campaign's bounces are kept (first = one of them). */
#define RATES_CHECKPOINTS	{ 100, 200, 500, 1000, 2000, 5000, 10000 }

#define RATES_HOUR_MS		3600000ull
#define RATES_NAME_MAX		200	/* longer names are not judged */

/* One `threshold "NAME" { }` block. */
struct rate_threshold {
	char *name;
	char *file;
	int line;
	enum rate_metric metric;
	enum rate_dim per;
	enum rate_window over;
	uint32_t first;			/* RATE_WIN_FIRST: N */
	uint32_t above_ppm;		/* parts per million: 0.3% = 3000 */
	uint64_t min_volume;		/* the denominator must reach this */
	uint32_t classes;		/* bounce classes counted (bit per class); 0: all */
	enum rate_action action;
	char *site;			/* suspend/throttle: the site (NULL: every site) */
	uint64_t duration_ms;		/* warmup_hold, suspend, throttle; pause: until resumed */
	uint64_t mph;			/* throttle: the rate ceiling (pace.h scale) */
	char *rate_text;		/* throttle: as written */
};

/* Counts over one window. */
struct rate_counts {
	double d, b, c;			/* delivered, bounced, complained */
	double bc[CLASS__COUNT];	/* bounced per class */
};

/* Everything known about one (dimension, name). */
struct rate_entry {
	enum rate_dim dim;
	const char *name;
	struct rate_counts hour, day;
	/* the campaign's lifetime: n outcomes so far, and where n reached a
	 * checkpoint, the bounces at that point */
	int has_life;
	double life_n;
	struct rate_counts life;		/* .b, .bc: bounces so far */
	uint32_t snap_at[8];			/* checkpoints reached (0: unused) */
	struct rate_counts snap[8];		/* .b, .bc at each */
};

/* One threshold crossed by one entry. */
struct rate_decision {
	size_t threshold;		/* index into the thresholds */
	size_t entry;			/* index into the entries */
	double num, den;
	uint32_t rate_ppm;
	uint64_t window_ms;		/* how long the marker covers it */
	char reason[300];		/* "complaints 5 of 1000 delivered (0.5%) over 1d > 0.3%" */
};

/*
 * rates_fold - the sliding hour and day from raw hour buckets: cur (this
 * hour, H), prev (H-1), mid (H-23..H-2 summed), old (H-24, the part of it
 * still inside the last 24 hours counts), at now (wall ms). Any pointer
 * may be NULL (empty).
 */
void rates_fold(const struct rate_counts *cur, const struct rate_counts *prev,
    const struct rate_counts *mid, const struct rate_counts *old, uint64_t now_wall_ms,
    struct rate_counts *hour, struct rate_counts *day);

/*
 * rates_evaluate - every (threshold, entry) pair over its threshold:
 * the entry's dimension is the threshold's `per`, its volume at least
 * min_volume, its rate strictly above `above`. Up to max into out;
 * returns how many.
 */
size_t rates_evaluate(const struct rate_threshold *t, size_t nt, const struct rate_entry *e,
    size_t ne, struct rate_decision *out, size_t max);

/* rates_ppm_text - "0.3%" for 3000. Returns buf. */
const char *rates_ppm_text(uint32_t ppm, char *buf, size_t len);
/* rates_parse_ppm - "0.3%", "5%", "0.003" -> parts per million; -1 if not a rate in 0..100%. */
int rates_parse_ppm(const char *s, uint32_t *ppm);
int rates_checkpoint_ok(uint32_t n);	/* is n one of RATES_CHECKPOINTS? */

const char *rates_dim_name(enum rate_dim d);		/* "campaign" */
int rates_dim_from_name(const char *s, enum rate_dim *d);
const char *rates_action_name(enum rate_action a);	/* "paused", "warmup_held", ... */
const char *rates_window_name(const struct rate_threshold *t, char *buf, size_t len);

/*
 * The instance status (PREFIXinstance:NAME) carries the figures an engine
 * last read, one field per name: `rate:DIM:NAME` = rates_entry_text().
 *
 * rates_entry_text - "d1h=D b1h=B c1h=C br1h=X% cr1h=Y% d1d=.. b1d=..
 * c1d=.. br1d=..% cr1d=..%": delivered, bounced, complained over the last
 * hour and day (rounded), the bounce rate (of delivered + bounced) and the
 * complaint rate (of delivered). Returns buf.
 */
const char *rates_entry_text(const struct rate_entry *e, char *buf, size_t len);
/* rates_top - the indices of the (at most max) entries with the most
 * outcomes over the day, most first (ties: input order). Returns how many. */
size_t rates_top(const struct rate_entry *e, size_t n, size_t *idx, size_t max);

/*
 * A threshold's suspend or throttle as every engine applies it: one field
 * of PREFIXshaping:held per lane set, "IP|SITE" (IP empty: from every IP),
 * value "ACTION until=MS mph=N REASON" (ACTION `suspended` or `throttled`,
 * until in wall ms, mph in pace.h's scale, 0 for a suspension).
 */
struct rate_held {
	char ip[64];
	char site[RATES_NAME_MAX + 1];
	int suspend;			/* else throttle */
	uint64_t until_wall_ms, mph;
	char reason[300];
};
/* rates_held_field / rates_held_value - the field and value of h; -1 if
 * they do not fit (or the site is empty). */
int rates_held_field(const struct rate_held *h, char *buf, size_t len);
int rates_held_value(const struct rate_held *h, char *buf, size_t len);
/* rates_held_parse - h from a field and value read from Redis; -1 when
 * either is malformed (no site, unknown action, no until, a throttle
 * without a rate, bytes that cannot be in a name). */
int rates_held_parse(const char *field, const char *value, struct rate_held *h);

#endif
