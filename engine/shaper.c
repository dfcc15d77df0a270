/*
 * shaper.c - lanes, their limits and adaptive back-off, suspensions, the
 * choice of source IP (see shaper.h; the model is written down in
 * docs/shaping.md). Pure: time comes in, decisions and events go out.
 *
 * Numbers in one place:
 *  - a new lane's window: shaping.initial_connections (5), at most
 *    max_connections (20 when unset);
 *  - decrease: window and rate keep shaping.decrease percent (50), floors
 *    1 connection and shaping.min_rate; at most once per cohort in flight
 *    and once per shaping.decrease_every (30s); the rate it was at is
 *    remembered as the lane's ceiling;
 *  - increase: +1 connection per window's worth of clean outcomes; the
 *    rate + shaping.rate_step percent (10) of its reference (the
 *    configured rate) after a window's worth of clean outcomes and
 *    shaping.rate_step_every (1min); a quarter step from 90% of the
 *    ceiling on, so that it probes slowly where it was pushed back;
 *  - an unlimited lane that is told to slow down starts from the volume it
 *    sent in the last minute (its reference from then on); it is
 *    unlimited again at twice that;
 *  - closure: a cohort of max(2, window) consecutive failures closes the
 *    lane for close_time (30s) * 2^(closures-1), at most max_close_time;
 *  - suspension: suspend_after (3) reputation blocks within
 *    suspend_window (10min) suspend the lane for suspend (30min);
 *  - reaction rules (shaper_react): a rate or window ceiling, or a
 *    suspension, for the rule's duration; the ceilings hold the AIMD
 *    increases back until they end, then the usual steps recover.
 */
#include "shaper.h"
#include "classify.h"
#include "job.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_CONNECTIONS	20
#define OBS_BUCKET_MS		60000ull	/* the volume window: one minute */
#define MPH_PER_MSG_PER_MIN	PACE_MPH(1, 60000)	/* 1/min in mph */

/* ------------------------------------------------------------------ */
/* set-up                                                               */

void
shaper_params_from_config(const struct config *c, struct shaper_params *p)
{
	const struct config_shaping *s = &c->shaping;

	memset(p, 0, sizeof *p);
	p->initial_connections = s->initial_connections ? s->initial_connections : 5;
	p->decrease_pct = s->decrease ? s->decrease : 50;
	p->rate_step_pct = s->rate_step ? s->rate_step : 10;
	p->rate_step_every_ms = s->rate_step_every_ms;
	p->decrease_every_ms = s->decrease_every_ms;
	p->min_mph = pace_mph(&s->min_rate);
	if (p->min_mph == 0)
		p->min_mph = MPH_PER_MSG_PER_MIN;
	p->burst = s->burst ? s->burst : 3;
	p->close_ms = s->close_ms;
	p->max_close_ms = s->max_close_ms;
	p->suspend_after = s->suspend_after ? s->suspend_after : 3;
	p->suspend_window_ms = s->suspend_window_ms;
	p->suspend_ms = s->suspend_ms;
	p->resume_spread_ms = s->resume_spread_ms;
}

void
shaper_init(struct shaper *sh, const struct shaper_params *p)
{
	memset(sh, 0, sizeof *sh);
	sh->p = *p;
}

void
shaper_set_params(struct shaper *sh, const struct shaper_params *p)
{
	sh->p = *p;
}

void
shaper_free(struct shaper *sh)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&sh->lanes, &it, &k, &v))
		free(v);
	it = 0;
	while (map_iter(&sh->ips, &it, &k, &v))
		free(v);
	map_free(&sh->lanes);
	map_free(&sh->ips);
}

struct shaper_limits
shaper_limits_from(const struct config_limits *l)
{
	struct shaper_limits s = { 0 };

	s.max_connections = l->max_connections;
	s.max_msgs_per_connection = l->max_msgs_per_connection;
	s.mph = pace_mph(&l->max_rate);
	s.conn_mph = pace_mph(&l->max_conn_rate);
	return s;
}

static uint32_t
lane_max_conn(const struct shaper_lane *l)
{
	return l->lim.max_connections ? l->lim.max_connections : DEFAULT_MAX_CONNECTIONS;
}

uint64_t
shaper_ip_rate(const struct config *c, const struct config_ip *ip)
{
	if (ip != NULL && ip->max_rate.count != 0)
		return pace_mph(&ip->max_rate);
	return pace_mph(&c->max_rate_per_ip);
}

struct shaper_ip *
shaper_ip(struct shaper *sh, const char *addr, uint64_t mph)
{
	struct shaper_ip *ip = map_get(&sh->ips, addr);

	if (ip == NULL) {
		ip = xcalloc(1, sizeof *ip);
		snprintf(ip->addr, sizeof ip->addr, "%s", addr);
		map_put(&sh->ips, addr, ip);
	}
	if (ip->mph != mph) {
		ip->mph = mph;
		ip->interval_us = pace_interval_us(mph);
	}
	return ip;
}

static void
lane_set_rate(struct shaper_lane *l, uint64_t mph)
{
	l->mph = mph;
	l->interval_us = pace_interval_us(mph);
}

static int
limits_equal(const struct shaper_limits *a, const struct shaper_limits *b)
{
	return a->max_connections == b->max_connections &&
	    a->max_msgs_per_connection == b->max_msgs_per_connection &&
	    a->mph == b->mph && a->conn_mph == b->conn_mph;
}

/* Adopt (new) limits: clamp the window and the rate to them. */
static void
lane_adopt(struct shaper_lane *l, const struct shaper_limits *lim)
{
	uint32_t max;

	l->lim = *lim;
	max = lane_max_conn(l);
	if (l->window > max)
		l->window = max;
	if (l->pre_window > max)
		l->pre_window = max;
	l->conn_interval_us = pace_interval_us(lim->conn_mph);
	if (!l->throttled) {
		lane_set_rate(l, lim->mph);
		l->ref_mph = lim->mph;
	} else if (lim->mph != 0) {
		l->ref_mph = lim->mph;
		if (l->mph == 0 || l->mph > lim->mph)
			lane_set_rate(l, lim->mph);
	}
}

struct shaper_lane *
shaper_lane(struct shaper *sh, struct shaper_ip *ip, const char *dest,
    const struct shaper_limits *lim, uint64_t now)
{
	char name[SHAPER_LANE_MAX];
	struct shaper_lane *l;

	snprintf(name, sizeof name, "%s/%s", ip->addr, dest);
	l = map_get(&sh->lanes, name);
	if (l == NULL) {
		l = xcalloc(1, sizeof *l);
		memcpy(l->name, name, sizeof name);
		l->ip = ip;
		l->lim = *lim;
		l->window = sh->p.initial_connections ? sh->p.initial_connections : 1;
		if (l->window > lane_max_conn(l))
			l->window = lane_max_conn(l);
		lane_adopt(l, lim);
		map_put(&sh->lanes, name, l);
	} else if (!limits_equal(&l->lim, lim)) {
		lane_adopt(l, lim);
	}
	l->ip = ip;
	l->last_used = now;
	return l;
}

struct shaper_lane *
shaper_lane_find(const struct shaper *sh, const char *name)
{
	return map_get(&sh->lanes, name);
}

void
shaper_lane_ref(struct shaper_lane *l)
{
	l->refs++;
}

void
shaper_lane_unref(struct shaper_lane *l)
{
	if (l->refs == 0)
		panic("shaper: lane %s: reference count underflow", l->name);
	l->refs--;
}

size_t
shaper_sweep(struct shaper *sh, uint64_t now, uint64_t idle_ms)
{
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	while (map_iter(&sh->lanes, &it, &k, &v)) {
		struct shaper_lane *l = v;

		if (l->refs > 0 || l->nconn > 0 || l->throttled || l->closed_until > now ||
		    l->suspended_until > now || now - l->last_used < idle_ms)
			continue;
		map_del(&sh->lanes, l->name);
		free(l);
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* decisions                                                            */

enum shaper_answer
shaper_may_connect(const struct shaper *sh, const struct shaper_lane *l, uint64_t now,
    uint64_t *at)
{
	uint64_t w;

	*at = 0;
	if (l->suspended_until > now) {
		*at = l->suspended_until;
		return SHAPER_WAIT_SUSPENDED;
	}
	if (l->closed_until > now) {
		*at = l->closed_until;
		return SHAPER_WAIT_CLOSED;
	}
	if (l->nconn >= l->window)
		return SHAPER_FULL;
	if ((w = pace_wait(&l->conn_pace, l->conn_interval_us, sh->p.burst, now)) > 0) {
		*at = now + w;
		return SHAPER_PACED;
	}
	return SHAPER_GO;
}

enum shaper_answer
shaper_may_send(const struct shaper *sh, const struct shaper_lane *l, uint64_t now,
    uint64_t *at)
{
	uint64_t w, wi;

	*at = 0;
	if (l->suspended_until > now) {
		*at = l->suspended_until;
		return SHAPER_WAIT_SUSPENDED;
	}
	w = pace_wait(&l->pace, l->interval_us, sh->p.burst, now);
	if (l->ip != NULL) {
		wi = pace_wait(&l->ip->pace, l->ip->interval_us, sh->p.burst, now);
		if (wi > w)
			w = wi;
	}
	if (w > 0) {
		*at = now + w;
		return SHAPER_PACED;
	}
	return SHAPER_GO;
}

int
shaper_pick(const struct shaper *sh, struct shaper_cand *c, size_t n, int overflow,
    uint64_t now, uint64_t *at, size_t *idx)
{
	int64_t total = 0;
	size_t best = n;
	uint64_t earliest = 0;

	*at = 0;
	*idx = 0;
	for (size_t i = 0; i < n; i++) {
		const struct shaper_lane *l = c[i].lane;
		uint64_t t = 0;
		int64_t w = c[i].weight ? c[i].weight : 1;

		if (l->suspended_until > now)
			t = l->suspended_until;
		else if (l->closed_until > now && l->nconn == 0)
			t = l->closed_until;
		else if (shaper_may_send(sh, l, now, &t) == SHAPER_GO)
			t = 0;
		if (t == 0 && c[i].warm_until > now && overflow)
			t = c[i].warm_until;
		if (t != 0) {
			if (earliest == 0 || t < earliest)
				earliest = t;
			continue;
		}
		c[i].lane->wrr += w;
		total += w;
		if (best == n || c[i].lane->wrr > c[best].lane->wrr)
			best = i;
	}
	if (best == n) {
		*at = earliest;
		return -1;
	}
	c[best].lane->wrr -= total;
	*idx = best;
	if (c[best].warm_until > now) {		/* overflow off: the job waits for its IP */
		*at = c[best].warm_until;
		return -2;
	}
	return (int)best;
}

/* ------------------------------------------------------------------ */
/* what happened                                                        */

/* Roll the volume buckets forward to now. */
static void
obs_roll(uint64_t now, uint64_t *start, uint32_t *cur, uint32_t *prev)
{
	if (*start == 0 || now >= *start + 2 * OBS_BUCKET_MS) {
		*prev = 0;
		*cur = 0;
		*start = now;
	} else if (now >= *start + OBS_BUCKET_MS) {
		*prev = *cur;
		*cur = 0;
		*start += OBS_BUCKET_MS;
	}
}

/* Messages taken in the last minute (sliding estimate), as mph. */
static uint64_t
obs_mph(const struct shaper_lane *l, uint64_t now)
{
	uint64_t start = l->obs_start, into;
	uint32_t cur = l->obs_cur, prev = l->obs_prev;

	if (start == 0)
		return 0;
	if (now < start)
		now = start;
	obs_roll(now, &start, &cur, &prev);
	into = now - start;
	return ((uint64_t)prev * (OBS_BUCKET_MS - into) / OBS_BUCKET_MS + cur) * MPH_PER_MSG_PER_MIN;
}

void
shaper_connect(struct shaper *sh, struct shaper_lane *l, uint64_t now)
{
	l->nconn++;
	l->last_used = now;
	pace_take(&l->conn_pace, l->conn_interval_us, now);
}

void
shaper_disconnect(struct shaper *sh, struct shaper_lane *l)
{
	if (l->nconn == 0)
		panic("shaper: lane %s: session count underflow", l->name);
	l->nconn--;
}

void
shaper_take(struct shaper *sh, struct shaper_lane *l, uint64_t now)
{
	l->sent++;
	l->last_used = now;
	pace_take(&l->pace, l->interval_us, now);
	if (l->ip != NULL) {
		pace_take(&l->ip->pace, l->ip->interval_us, now);
		l->ip->sent++;
	}
	obs_roll(now, &l->obs_start, &l->obs_cur, &l->obs_prev);
	if (l->obs_cur < UINT32_MAX)
		l->obs_cur++;
}

static void
ev_fill(const struct shaper_lane *l, enum shaper_action a, const char *reason, uint64_t until,
    uint64_t now, struct shaper_event *ev)
{
	if (ev == NULL)
		return;
	memset(ev, 0, sizeof *ev);
	snprintf(ev->lane, sizeof ev->lane, "%s", l->name);
	ev->action = a;
	snprintf(ev->reason, sizeof ev->reason, "%s", reason ? reason : "");
	ev->window = l->window;
	ev->mph = l->mph;
	ev->until = until;
	ev->ts = now;
}

/* A decrease: window and (for a message-level slow-down) rate. */
static int
lane_decrease(struct shaper *sh, struct shaper_lane *l, uint64_t now, int rate_too)
{
	uint32_t w = (uint32_t)pace_pct(l->window, sh->p.decrease_pct);
	int changed = 0;

	if (l->last_decrease != 0 && now - l->last_decrease < sh->p.decrease_every_ms)
		return 0;	/* one decrease per decrease_every */
	if (w < 1)
		w = 1;
	if (w != l->window) {
		l->window = w;
		changed = 1;
	}
	if (rate_too) {
		uint64_t base = l->mph ? l->mph : obs_mph(l, now);
		uint64_t r;

		if (base < sh->p.min_mph)
			base = sh->p.min_mph;
		if (l->ref_mph == 0)
			l->ref_mph = base;
		/* where the destination pushed back: set when this is the
		 * first decrease or the lane grew since the last one (not in
		 * a cascade of decreases while its window lasts) */
		if (l->ceiling_mph == 0 || l->grown)
			l->ceiling_mph = base;
		r = pace_pct(base, sh->p.decrease_pct);
		if (r < sh->p.min_mph)
			r = sh->p.min_mph;
		if (r != l->mph) {
			lane_set_rate(l, r);
			changed = 1;
		}
	}
	l->credit = 0;
	l->grown = 0;
	l->last_step = now;
	l->last_decrease = now;
	l->hold = l->nconn > 0 ? l->nconn - 1 : 0;	/* the others' outcomes */
	return changed;
}

/* A clean outcome: additive increase. Returns 1 when fully recovered. */
static int
lane_increase(struct shaper *sh, struct shaper_lane *l, uint64_t now)
{
	if (++l->credit >= l->window) {
		l->credit = 0;
		if (l->window < lane_max_conn(l) &&
		    !(l->rule_conn_until > now && l->window >= l->rule_conn))
			l->window++;
		if (l->throttled && l->mph != l->lim.mph && l->rule_mph_until <= now &&
		    now - l->last_step >= sh->p.rate_step_every_ms) {
			uint64_t step = pace_pct(l->ref_mph, sh->p.rate_step_pct), r;

			/* near where it pushed back: probe in quarter steps */
			if (l->ceiling_mph != 0 && l->mph >= pace_pct(l->ceiling_mph, 90))
				step /= 4;
			if (step == 0)
				step = 1;
			r = l->mph + step;
			if (l->lim.mph != 0 && r >= l->lim.mph)
				r = l->lim.mph;
			else if (l->lim.mph == 0 && r >= pace_pct(l->ref_mph, 200))
				r = 0;	/* unlimited again */
			lane_set_rate(l, r);
			l->last_step = now;
			l->grown = 1;
			if (l->ceiling_mph != 0 && r > l->ceiling_mph)
				l->ceiling_mph = 0;	/* past it without complaint */
		}
	}
	if (!l->throttled || l->mph != l->lim.mph || l->window < l->pre_window)
		return 0;
	l->throttled = 0;
	l->ceiling_mph = 0;
	if (l->lim.mph == 0)
		l->ref_mph = 0;
	return 1;
}

int
shaper_result(struct shaper *sh, struct shaper_lane *l, uint64_t now,
    const struct shaper_verdict *v, struct shaper_event *ev)
{
	const char *why = v->reason;
	int changed, held = 0;

	l->last_used = now;
	if (l->hold > 0) {
		l->hold--;	/* in flight at the last decrease */
		held = 1;
	}
	if (v->reputation) {
		if (l->suspended_until > now)
			return 0;	/* in flight when it was suspended */
		if (l->blocks == 0 || now - l->blocks_since > sh->p.suspend_window_ms) {
			l->blocks = 0;
			l->blocks_since = now;
		}
		if (++l->blocks < sh->p.suspend_after)
			return 0;
		l->blocks = 0;
		l->suspended_until = now + sh->p.suspend_ms;
		ev_fill(l, SHAPER_SUSPENDED, why, l->suspended_until, now, ev);
		return 1;
	}
	if (v->slow_down || v->site_failure) {
		l->failures++;
		if (v->slow_down)
			l->slowdowns++;
		if (l->fail_streak == 0)
			l->fail_cohort = l->window > 2 ? l->window : 2;
		l->fail_streak++;
		changed = 0;
		if (!held) {
			uint32_t before = l->window;

			changed = lane_decrease(sh, l, now, v->slow_down && !v->site_failure);
			if (changed && !l->throttled) {
				l->throttled = 1;
				l->pre_window = before;
			}
		}
		if (l->fail_streak >= l->fail_cohort) {
			uint64_t d = sh->p.close_ms;

			for (uint32_t i = 0; i < l->closures && d < sh->p.max_close_ms; i++)
				d *= 2;
			if (d > sh->p.max_close_ms)
				d = sh->p.max_close_ms;
			l->closures++;
			l->fail_streak = 0;
			l->closed_until = now + d;
			ev_fill(l, SHAPER_CLOSED, why, l->closed_until, now, ev);
			return 1;
		}
		if (!changed)
			return 0;
		ev_fill(l, SHAPER_THROTTLED, why, 0, now, ev);
		return 1;
	}
	if (!v->clean)
		return 0;
	l->clean++;
	l->fail_streak = 0;
	l->closures = 0;
	if (!lane_increase(sh, l, now))
		return 0;
	ev_fill(l, SHAPER_RECOVERED, "clean deliveries", 0, now, ev);
	return 1;
}

int
shaper_react(struct shaper *sh, struct shaper_lane *l, uint64_t now,
    const struct reaction_rule *r, const char *reason, struct shaper_event *ev)
{
	uint64_t until = now + r->duration_ms;

	l->last_used = now;
	switch (r->action) {
	case REACTION_THROTTLE: {
		uint64_t base = l->mph ? l->mph : obs_mph(l, now);

		if (l->rule_mph_until <= now || r->mph < l->rule_mph)
			l->rule_mph = r->mph;
		if (until > l->rule_mph_until)
			l->rule_mph_until = until;
		if (l->mph != 0 && l->mph <= l->rule_mph)
			return 0;	/* already at or under it */
		if (!l->throttled) {
			l->throttled = 1;
			l->pre_window = l->window;
		}
		/* what the recovery steps are a percent of, and where the
		 * destination pushed back */
		if (l->ref_mph == 0)
			l->ref_mph = l->lim.mph ? l->lim.mph : (base > l->rule_mph ? base : l->rule_mph);
		if (l->ceiling_mph == 0 || l->grown)
			l->ceiling_mph = base > l->rule_mph ? base : l->rule_mph;
		lane_set_rate(l, l->rule_mph);
		l->credit = 0;
		l->grown = 0;
		l->last_step = now;
		ev_fill(l, SHAPER_THROTTLED, reason, l->rule_mph_until, now, ev);
		return 1;
	}
	case REACTION_CAP: {
		uint32_t n = r->connections ? r->connections : 1;

		if (l->rule_conn_until <= now || n < l->rule_conn)
			l->rule_conn = n;
		if (until > l->rule_conn_until)
			l->rule_conn_until = until;
		if (l->window <= l->rule_conn)
			return 0;
		if (!l->throttled) {
			l->throttled = 1;
			l->pre_window = l->window;
		}
		l->window = l->rule_conn;
		l->credit = 0;
		ev_fill(l, SHAPER_THROTTLED, reason, l->rule_conn_until, now, ev);
		return 1;
	}
	case REACTION_SUSPEND:
		if (l->suspended_until > now)
			return 0;	/* in flight when it was suspended */
		l->blocks = 0;
		l->suspended_until = until;
		ev_fill(l, SHAPER_SUSPENDED, reason, until, now, ev);
		return 1;
	}
	return 0;
}

size_t
shaper_lanes_to(const struct shaper *sh, const char *dest, struct shaper_lane **out,
    size_t max)
{
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	while (n < max && map_iter(&sh->lanes, &it, &k, &v)) {
		const char *slash = strchr(k, '/');

		if (slash != NULL && strcmp(slash + 1, dest) == 0)
			out[n++] = v;
	}
	return n;
}

int
shaper_poll(struct shaper *sh, struct shaper_lane *l, uint64_t now, struct shaper_event *ev)
{
	if (l->rule_mph_until != 0 && l->rule_mph_until <= now)
		l->rule_mph_until = 0;	/* the AIMD steps take it from here */
	if (l->rule_conn_until != 0 && l->rule_conn_until <= now)
		l->rule_conn_until = 0;
	if (l->suspended_until != 0 && l->suspended_until <= now) {
		l->suspended_until = 0;
		ev_fill(l, SHAPER_RESUMED, "suspension ended", 0, now, ev);
		return 1;
	}
	if (l->closed_until != 0 && l->closed_until <= now) {
		l->closed_until = 0;
		ev_fill(l, SHAPER_REOPENED, "closure ended", 0, now, ev);
		return 1;
	}
	return 0;
}

void
shaper_verdict_of(const struct job_outcome *o, struct shaper_verdict *v)
{
	int reputation = o->has_class && o->cls == CLASS_REPUTATION_BLOCK;
	int link = o->has_class && (o->cls == CLASS_CONNECTION_FAILURE ||
	    o->cls == CLASS_PROTOCOL_ERROR || o->cls == CLASS_TLS_FAILURE);

	memset(v, 0, sizeof *v);
	v->slow_down = o->slow_down;
	v->site_failure = o->site_failure;
	v->reputation = reputation && !o->slow_down;
	v->clean = !o->slow_down && !o->site_failure && !o->source_fault && !reputation && !link;
	v->reason = o->reply[0] ? o->reply : NULL;
}

void
shaper_warmup_event(const char *ip, const char *dest, const char *why, uint64_t now,
    uint64_t until, struct shaper_event *ev)
{
	memset(ev, 0, sizeof *ev);
	snprintf(ev->lane, sizeof ev->lane, "%s/%s", ip, dest ? dest : "*");
	ev->action = SHAPER_WARMUP_EXHAUSTED;
	snprintf(ev->reason, sizeof ev->reason, "warm-up %s spent", why ? why : "budget");
	ev->until = until;
	ev->ts = now;
}

/* ------------------------------------------------------------------ */
/* helpers                                                              */

/* length of host h without one trailing dot */
static size_t
host_len(const char *h)
{
	size_t n = strlen(h);

	return n > 0 && h[n - 1] == '.' ? n - 1 : n;
}

static int
host_cmp(const char *a, const char *b)
{
	size_t la = host_len(a), lb = host_len(b);
	int r = strncasecmp(a, b, la < lb ? la : lb);

	if (r != 0)
		return r;
	return la < lb ? -1 : la > lb;
}

int
shaper_rollup_key(const char *const *hosts, size_t n, char *out, size_t len)
{
	const char *v[SHAPER_MAX_MX];
	size_t m = 0, o = 0;

	if (len == 0)
		return -1;
	out[0] = '\0';
	if (n > SHAPER_MAX_MX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t j;

		if (hosts[i] == NULL || host_len(hosts[i]) == 0)
			continue;
		for (j = m; j > 0 && host_cmp(v[j - 1], hosts[i]) > 0; j--)
			v[j] = v[j - 1];
		v[j] = hosts[i];
		m++;
	}
	if (m == 0)
		return -1;
	for (size_t i = 0; i < m; i++) {
		size_t hl = host_len(v[i]);

		if (i > 0 && host_cmp(v[i - 1], v[i]) == 0)
			continue;
		if (o + (o > 0) + hl + 1 > len) {
			out[0] = '\0';
			return -1;
		}
		if (o > 0)
			out[o++] = ',';
		for (size_t k = 0; k < hl; k++) {
			char ch = v[i][k];

			out[o++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
		}
	}
	out[o] = '\0';
	return 0;
}

const struct config_site *
shaper_destination(const struct config *c, const char *domain, const char *const *mx,
    size_t nmx, char *out, size_t len, struct config_limits *lim)
{
	const struct config_site *site = NULL;
	const struct config_domain *dom = config_domain_find(c, domain);

	for (size_t i = 0; i < nmx && site == NULL; i++)
		site = config_site_for_mx(c, mx[i]);
	*lim = config_limits_for(c, site, dom);
	if (dom != NULL) {
		snprintf(out, len, "%s", dom->name);
	} else if (site != NULL) {
		snprintf(out, len, "%s", site->name);
	} else if (shaper_rollup_key(mx, nmx, out, len) < 0) {
		snprintf(out, len, "%s", domain);
		str_lower(out);
	}
	return site;
}

uint64_t
shaper_resume_at(uint64_t until, uint64_t spread_ms, uint64_t salt)
{
	if (spread_ms == 0)
		return until;
	return until + salt % spread_ms;
}

const char *
shaper_action_name(enum shaper_action a)
{
	static const char *const names[] = {
		[SHAPER_THROTTLED] = "throttled", [SHAPER_RECOVERED] = "recovered",
		[SHAPER_CLOSED] = "closed", [SHAPER_REOPENED] = "reopened",
		[SHAPER_SUSPENDED] = "suspended", [SHAPER_RESUMED] = "resumed",
		[SHAPER_WARMUP_EXHAUSTED] = "warmup_exhausted",
		[SHAPER_PAUSED] = "paused",
	};

	return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

const char *
shaper_answer_name(enum shaper_answer a)
{
	static const char *const names[] = {
		[SHAPER_GO] = "go", [SHAPER_FULL] = "full", [SHAPER_PACED] = "paced",
		[SHAPER_WAIT_CLOSED] = "closed", [SHAPER_WAIT_SUSPENDED] = "suspended",
		[SHAPER_WAIT_WARMUP] = "warmup",
	};

	return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

const char *
shaper_event_text(const struct shaper_event *ev, char *buf, size_t len)
{
	char rate[32], reason[SHAPER_REASON_MAX * 4];
	int n;

	log_quote(reason, sizeof reason, ev->reason);
	n = snprintf(buf, len, "lane=%s action=%s window=%" PRIu32 " rate=%s", ev->lane,
	    shaper_action_name(ev->action), ev->window, pace_rate_text(ev->mph, rate, sizeof rate));
	if (n >= 0 && (size_t)n < len && ev->until != 0)
		n += snprintf(buf + n, len - (size_t)n, " until=%" PRIu64, ev->until);
	if (n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, " reason=\"%s\"", reason);
	return buf;
}
