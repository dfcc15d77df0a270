/*
 * stats.c - counters and the published snapshot (stats.h).
 */
#include "stats.h"
#include "dest.h"
#include "fleet.h"
#include "ledger.h"
#include "map.h"
#include "redis.h"
#include "shaper.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DESTS_SHOWN 200		/* destinations in one snapshot */
#define LANES_SHOWN 500		/* lanes in one snapshot */
#define STATS_EVENTS_MAX 1024	/* shaping events waiting for the next publish */

struct ipstat {				/* per (pool, source IP) */
	unsigned sessions;
	uint64_t delivered, deferred, bounced;
};

struct sitetls {			/* per site ("-": none), since start */
	uint64_t tls_sessions, plain_sessions;		/* past greeting and EHLO */
	uint64_t tls_delivered, plain_delivered;
};

struct stats {
	struct map ips;			/* "pool|ip" -> struct ipstat */
	struct map sitetls;		/* site -> struct sitetls */
	const struct shaper *sh;	/* lanes to show, or NULL */
	const struct fleet *fleet;	/* fleet-wide limits to show, or NULL */
	struct shaper_event *ev;	/* ring of STATS_EVENTS_MAX */
	size_t ev_head, ev_n;
	uint64_t ev_dropped;
	struct rq *rq;			/* from the last stats_publish: events go at once */
};

/* Write the queued shaping events while Redis takes them. */
static void
events_flush(struct stats *st)
{
	while (st->rq && st->ev_n > 0 && rq_shaping_event(st->rq, &st->ev[st->ev_head]) == 0) {
		st->ev_head = (st->ev_head + 1) % STATS_EVENTS_MAX;
		st->ev_n--;
	}
}

void
stats_set_shaper(struct stats *st, const struct shaper *sh)
{
	st->sh = sh;
}

void
stats_set_fleet(struct stats *st, const struct fleet *f)
{
	st->fleet = f;
}

/*
 * fleet_text - one line per fleet-wide limit this instance uses: KEY RATE
 * TOKENS_IN_HAND TAKEN GRANTED ASKS WAITS (RATE as text).
 */
static void
fleet_text(const struct fleet *f, struct buf *b)
{
	uint64_t now = clock_mono_ms();
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&f->keys, &it, &k, &v)) {
		const struct fleet_key *fk = v;
		char rate[32];

		pace_rate_text(fk->mph, rate, sizeof rate);
		buf_appendf(b, "%s %s %u %llu %llu %llu %llu\n", fk->name, rate,
		    fleet_tokens(f, fk->name, now), (unsigned long long)fk->taken,
		    (unsigned long long)fk->granted, (unsigned long long)fk->asks,
		    (unsigned long long)fk->waits);
	}
}

void
stats_shaping_event(struct stats *st, const struct shaper_event *ev)
{
	if (st->ev == NULL)
		st->ev = xcalloc(STATS_EVENTS_MAX, sizeof *st->ev);
	if (st->ev_n == STATS_EVENTS_MAX) {
		st->ev_head = (st->ev_head + 1) % STATS_EVENTS_MAX;
		st->ev_n--;
		st->ev_dropped++;
	}
	st->ev[(st->ev_head + st->ev_n) % STATS_EVENTS_MAX] = *ev;
	st->ev_n++;
	events_flush(st);
}

void
stats_detach(struct stats *st)
{
	st->rq = NULL;
}

/*
 * lanes_text - one line per lane: NAME WINDOW MAX NCONN RATE CEILING
 * SUSPENDED_S CLOSED_S SENT SLOWDOWNS (rates as text, "-" when none;
 * seconds left of a suspension or closure, 0: none).
 */
static void
lanes_text(const struct shaper *sh, struct buf *b)
{
	uint64_t now = clock_mono_ms();
	const char *k;
	void *v;
	size_t it = 0, shown = 0;

	while (map_iter(&sh->lanes, &it, &k, &v) && shown++ < LANES_SHOWN) {
		const struct shaper_lane *l = v;
		char rate[32], ceil[32];

		pace_rate_text(l->mph, rate, sizeof rate);
		if (l->ceiling_mph)
			pace_rate_text(l->ceiling_mph, ceil, sizeof ceil);
		else
			snprintf(ceil, sizeof ceil, "-");
		buf_appendf(b, "%s %u %u %u %s %s %llu %llu %llu %llu\n", l->name, l->window,
		    l->lim.max_connections ? l->lim.max_connections : 20, l->nconn, rate, ceil,
		    (unsigned long long)(l->suspended_until > now ?
		    (l->suspended_until - now + 999) / 1000 : 0),
		    (unsigned long long)(l->closed_until > now ?
		    (l->closed_until - now + 999) / 1000 : 0),
		    (unsigned long long)l->sent, (unsigned long long)l->slowdowns);
	}
}

struct stats *
stats_new(void)
{
	return xcalloc(1, sizeof(struct stats));
}

void
stats_free(struct stats *st)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (st == NULL)
		return;
	while (map_iter(&st->ips, &it, &k, &v))
		free(v);
	map_free(&st->ips);
	it = 0;
	while (map_iter(&st->sitetls, &it, &k, &v))
		free(v);
	map_free(&st->sitetls);
	free(st->ev);
	free(st);
}

static struct ipstat *
ipstat_get(struct stats *st, const char *pool, const char *src_ip)
{
	char key[300];
	struct ipstat *s;

	snprintf(key, sizeof key, "%s|%s", pool, src_ip && *src_ip ? src_ip : "default");
	s = map_get(&st->ips, key);
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		map_put(&st->ips, key, s);
	}
	return s;
}

void
stats_session(struct stats *st, const char *pool, const char *src_ip, int delta)
{
	struct ipstat *s = ipstat_get(st, pool, src_ip);

	if (delta < 0 && s->sessions == 0)
		panic("stats: session count underflow for %s/%s", pool, src_ip);
	s->sessions += (unsigned)delta;
}

void
stats_result(struct stats *st, const char *pool, const char *src_ip, enum job_status status)
{
	struct ipstat *s = ipstat_get(st, pool, src_ip);

	if (status == JOB_DELIVERED)
		s->delivered++;
	else if (status == JOB_BOUNCED)
		s->bounced++;
	else
		s->deferred++;
}

static struct sitetls *
sitetls_get(struct stats *st, const char *site)
{
	const char *name = site && *site ? site : "-";
	struct sitetls *s = map_get(&st->sitetls, name);

	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		map_put(&st->sitetls, name, s);
	}
	return s;
}

void
stats_site_session(struct stats *st, const char *site, int tls)
{
	struct sitetls *s = sitetls_get(st, site);

	if (tls)
		s->tls_sessions++;
	else
		s->plain_sessions++;
}

void
stats_site_delivered(struct stats *st, const char *site, int tls)
{
	struct sitetls *s = sitetls_get(st, site);

	if (tls)
		s->tls_delivered++;
	else
		s->plain_delivered++;
}

/* site_line - one line of the sites table (t NULL: no TLS counts yet). */
static void
site_line(struct buf *b, const char *name, unsigned sessions, size_t queued,
    uint64_t delivered, uint64_t deferred, uint64_t bounced, const struct sitetls *t)
{
	static const struct sitetls none;

	if (t == NULL)
		t = &none;
	buf_appendf(b, "%s %u %zu %llu %llu %llu %llu %llu %llu %llu\n", name, sessions, queued,
	    (unsigned long long)delivered, (unsigned long long)deferred,
	    (unsigned long long)bounced, (unsigned long long)t->tls_sessions,
	    (unsigned long long)t->plain_sessions, (unsigned long long)t->tls_delivered,
	    (unsigned long long)t->plain_delivered);
}

struct siteagg {
	unsigned sessions;
	size_t queued;
	uint64_t delivered, deferred, bounced;
};

void
stats_publish(struct stats *st, struct rq *q, const struct dests *ds,
    const struct ledger *lg, unsigned sessions, uint64_t started_ms)
{
	const struct ledger_counts *n = ledger_counts(lg);
	struct buf dests = { 0 }, sites = { 0 }, ips = { 0 }, lanes = { 0 }, fleet = { 0 };
	struct map agg = { 0 };
	struct rq_stats s;
	const char *k;
	void *v;
	size_t it = 0, shown = 0;

	while (map_iter(&ds->map, &it, &k, &v)) {
		const struct dest *d = v;
		const char *name = d->site[0] ? d->site : "-";
		struct siteagg *a = map_get(&agg, name);

		if (d->nsessions == 0 && d->queued == 0 && d->delivered + d->deferred + d->bounced == 0)
			continue;
		if (shown++ < DESTS_SHOWN)
			buf_appendf(&dests, "%s %u %zu %llu %llu %llu\n", k, d->nsessions, d->queued,
			    (unsigned long long)d->delivered, (unsigned long long)d->deferred,
			    (unsigned long long)d->bounced);
		if (a == NULL) {
			a = xcalloc(1, sizeof *a);
			map_put(&agg, name, a);
		}
		a->sessions += d->nsessions;
		a->queued += d->queued;
		a->delivered += d->delivered;
		a->deferred += d->deferred;
		a->bounced += d->bounced;
	}
	it = 0;
	while (map_iter(&agg, &it, &k, &v)) {
		struct siteagg *a = v;
		site_line(&sites, k, a->sessions, a->queued, a->delivered, a->deferred, a->bounced,
		    map_get(&st->sitetls, k));
	}
	/* Sites whose destinations are gone keep their TLS counts. */
	it = 0;
	while (map_iter(&st->sitetls, &it, &k, &v))
		if (map_get(&agg, k) == NULL)
			site_line(&sites, k, 0, 0, 0, 0, 0, v);
	it = 0;
	while (map_iter(&agg, &it, &k, &v))
		free(v);
	map_free(&agg);
	it = 0;
	while (map_iter(&st->ips, &it, &k, &v)) {
		struct ipstat *a = v;
		buf_appendf(&ips, "%s %u 0 %llu %llu %llu\n", k, a->sessions,
		    (unsigned long long)a->delivered, (unsigned long long)a->deferred,
		    (unsigned long long)a->bounced);
	}
	s.pid = (long)getpid();
	s.started_ms = started_ms;
	s.heartbeat_ms = clock_wall_ms();
	s.sessions = sessions;
	s.in_memory = ledger_count(lg);
	s.delivered = n->delivered;
	s.deferred = n->deferred;
	s.bounced = n->bounced;
	s.expired = n->expired;
	s.failed = n->failed;
	s.suppressed = n->suppressed;
	s.dests = dests.data ? dests.data : "";
	s.sites = sites.data ? sites.data : "";
	s.ips = ips.data ? ips.data : "";
	if (st->sh)
		lanes_text(st->sh, &lanes);
	s.lanes = lanes.data ? lanes.data : "";
	if (st->fleet)
		fleet_text(st->fleet, &fleet);
	s.fleet = fleet.data ? fleet.data : "";
	rq_publish_stats(q, &s);
	st->rq = q;
	events_flush(st);
	if (st->ev_dropped) {
		log_warn("stats", "%llu shaping event(s) dropped: the shaping stream could not "
		    "be written fast enough", (unsigned long long)st->ev_dropped);
		st->ev_dropped = 0;
	}
	buf_free(&dests);
	buf_free(&sites);
	buf_free(&ips);
	buf_free(&lanes);
	buf_free(&fleet);
}

void
stats_progress(const struct ledger *lg, unsigned sessions, uint64_t started_ms, int final)
{
	const struct ledger_counts *n = ledger_counts(lg);
	uint64_t secs = (clock_wall_ms() - started_ms) / 1000;

	log_flush();
	fprintf(stderr, "%s[volley] %llus  delivered %llu  deferred %llu  bounced %llu  "
	    "expired %llu  failed %llu  suppressed %llu | in memory %zu  sessions %u%s",
	    final ? "" : "\r", (unsigned long long)secs,
	    (unsigned long long)n->delivered, (unsigned long long)n->deferred,
	    (unsigned long long)n->bounced, (unsigned long long)n->expired,
	    (unsigned long long)n->failed, (unsigned long long)n->suppressed,
	    ledger_count(lg), sessions, final ? "\n" : "   ");
	fflush(stderr);
}
