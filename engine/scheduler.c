/*
 * scheduler.c - the scheduler (scheduler.h): destinations, sessions, outcomes.
 *
 * A destination (pool, domain) owns its queue; its sessions leave
 * through lanes (source IP, shaping destination) that the shaper keeps
 * (shaper.h): which IP, how many sessions, how fast, and the reaction to
 * every result (AIMD, closures, suspensions) are the shaper's decisions;
 * warm-up budgets are warmup.c's (counters in memory here); the global
 * smtp.max_sessions, the per-destination cap and idle reuse are this
 * file's and dest.c's; what a result means is trouble.c's. This file does
 * the I/O those decisions ask for: sessions, timers, settling, and the
 * shaping events (log line and the stats' shaping stream).
 */
#include "scheduler.h"
#include "classify.h"
#include "config.h"
#include "conn.h"
#include "dest.h"
#include "dns.h"
#include "fleet.h"
#include "job.h"
#include "ledger.h"
#include "loop.h"
#include "map.h"
#include "redis.h"
#include "msg.h"
#include "mtasts_cache.h"
#include "reaction.h"
#include "route.h"
#include "session.h"
#include "shaper.h"
#include "stats.h"
#include "trouble.h"
#include "util.h"
#include "warmup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHAPE_HOLD_MS		10000	/* jobs that must wait longer for a lane go back to Redis */
#define SOURCE_BROKEN_MS	60000	/* a source that could not be bound is set aside */
#define PARK_MS			3000	/* a job over a destination's share waits in Redis */
#ifndef DEST_IDLE_MS
#define DEST_IDLE_MS		300000	/* forget a destination unused this long */
#endif

/*
 * A configuration generation: the session settings built from one
 * configuration, alive while the configuration is current or any session
 * opened under it is open.
 */
struct epoch {
	struct config *cfg;		/* NULL if not ours to free */
	const struct config *ccfg;
	struct session_cfg *scfg;	/* [0] default, then one per pool ip */
	struct smtp_timeouts timeouts;
	unsigned nsessions;
	struct epoch *next;
};

/* A pool address that could not be bound, set aside until `until`. */
struct broken {
	uint64_t until;			/* mono ms */
	char reason[512];
};

/* What a session's owner pointer names. */
struct sref {
	struct sched *s;
	struct dest *d;
	struct epoch *ep;
	struct shaper_lane *lane;	/* referenced while the session lives */
	const struct config_ip *cip;	/* its pool IP in ep's configuration, or NULL */
	const struct config_warmup *cw;	/* that IP's warm-up schedule, or NULL */
	struct session_relay relay;	/* a smarthost route (port 0: none); its
					 * strings live in ep's configuration */
};

/*
 * Warm-up counters of one source IP (key "ip") or of one IP for one site
 * with a ramp of its own (key "ip|site"). Redis has the truth, shared by
 * every host and kept over restarts (rq_warmup_sync); here is a copy so
 * that the hot path never asks Redis: the totals of the last answer
 * (base_*), plus what this host sent since (the call in flight and the
 * deltas not sent yet, each with the hour it was counted in). An IP is
 * not used before its first answer (loaded), so a restart never spends
 * the day's budget again.
 */
#define WARM_FLUSH_MS	250	/* local sends reach Redis at most this late (+ a round trip) */
#define WARM_REFRESH_MS	1000	/* other hosts' sends are seen within this */
#define WARM_LOAD_MS	100	/* not loaded yet: look again in */
#define WARM_NPEND	4

struct warm_delta {
	uint64_t hour;			/* hours since the epoch it was counted in */
	uint32_t n;
};

struct warm {
	char *ip, *site;		/* site NULL: the IP's own counters */
	int64_t cfg_start;		/* warmup_start as a day number, -1: none */
	unsigned gen;			/* configuration generation cfg_start is from */
	int loaded;			/* Redis answered once */
	int in_flight;
	int64_t start_day;		/* day 1 of the ramp (Redis: start + shift) */
	uint64_t base_hour;		/* the hour the totals below are for */
	uint32_t base_day, base_hourn;	/* Redis' totals, every host */
	struct warm_delta fly;		/* sent, unanswered (n 0: none); resent as is */
	uint64_t fly_id;
	uint64_t fly_hour_req;		/* the hour of the call in flight */
	struct warm_delta pend[WARM_NPEND];	/* not sent yet, oldest first */
	size_t npend;
	uint64_t last_sync;		/* mono ms of the last call */
	uint64_t hold_until;		/* wall ms: the ramp is held at hold_day */
	uint32_t hold_day;
	int hold_send;			/* a hold (or release) to write to Redis */
	char hold_reason[160];
	uint64_t exhausted_until;	/* wall ms: the warmup_exhausted event was raised */
};

struct sched {
	struct loop *loop;
	struct dns *dns;
	struct ledger *lg;
	struct stats *st;
	const struct config *cfg;	/* current */
	const struct route_owner *own;	/* which pool IPs are ours (NULL: all) */
	const struct classify_rules *rules;
	struct epoch *epochs;		/* current first */
	struct session_ops ops;
	struct dests ds;
	struct map broken;		/* source ip -> struct broken */
	struct shaper sh;		/* lanes: (source IP, destination) */
	/* A reaction rule with scope campaign pauses the job's campaign until
	 * a time (the engine writes it to Redis, where every engine sees it). */
	void (*pause_campaign)(void *arg, const char *campaign, uint64_t until_wall,
	    const char *by);
	void *pause_arg;
	struct reaction_state react;	/* reaction rule counters per (rule, lane) */
	struct map warm;		/* "ip" or "ip|site" -> struct warm */
	uint64_t warm_seq;		/* ids of warm-up sync calls */
	struct fleet fleet;		/* fleet-wide tokens in hand (the engine asks Redis) */
	unsigned gen;			/* configuration generation (lanes are looked up again) */
	unsigned nsessions;
	unsigned max_sessions;		/* smtp.max_sessions, capped by the fd limit */
	unsigned fd_cap;
	int stopping;
	struct mtasts_cache *sts;	/* MTA-STS policies (used when smtp.mta_sts) */
	unsigned long sts_answers;	/* on_sts calls (was an answer synchronous?) */
	struct rq *sts_rq;		/* where fetched policies are kept (sched_sts_attach) */
};

static void sched_kick(struct sched *s, struct dest *d);
static void on_dest_retry(struct timer *t);

/* quote - a peer's words for a quoted log value (log_quote). */
static const char *
quote(char *dst, size_t n, const char *src)
{
	log_quote(dst, n, src);
	return dst;
}
static void sched_open_sessions(struct sched *s, struct dest *d);

/* --- configuration generations --- */

static struct epoch *
epoch_new(const struct config *c, struct config *owned)
{
	struct epoch *ep = xcalloc(1, sizeof *ep);
	size_t n = 1, k = 1;

	ep->cfg = owned;
	ep->ccfg = c;
	for (size_t i = 0; i < c->npools; i++)
		n += c->pools[i].nips;
	ep->scfg = xcalloc(n, sizeof *ep->scfg);
	ep->timeouts.greeting = c->t_greeting_ms;
	ep->timeouts.ehlo = c->t_ehlo_ms;
	ep->timeouts.mail = c->t_mail_ms;
	ep->timeouts.rcpt = c->t_rcpt_ms;
	ep->timeouts.data = c->t_data_ms;
	ep->timeouts.block = c->t_block_ms;
	ep->timeouts.dot = c->t_dot_ms;
	ep->timeouts.quit = 10000;
	ep->timeouts.transaction = c->t_transaction_ms;
	for (size_t i = 0; i < n; i++) {
		struct session_cfg *sc = &ep->scfg[i];
		sc->ehlo = c->ehlo;
		sc->port = c->port;
		sc->connect_ms = c->t_connect_ms;
		sc->idle_ms = c->idle_ms;
		sc->max_msgs = c->defaults.max_msgs_per_connection ?
		    c->defaults.max_msgs_per_connection : 100;
		sc->timeouts = &ep->timeouts;
		sc->bdat_threshold = c->bdat_threshold;
		sc->bdat_pipeline = c->bdat_pipeline;
		sc->id_header = c->id_header;
		sc->return_path = c->return_path;
		sc->tls = (enum tls_policy)c->defaults.tls;
		sc->tls_ca_file = c->tls_ca_file;
	}
	for (size_t i = 0; i < c->npools; i++)
		for (size_t j = 0; j < c->pools[i].nips; j++, k++)
			if (c->pools[i].ips[j].ehlo)
				ep->scfg[k].ehlo = c->pools[i].ips[j].ehlo;
	return ep;
}

static void
epoch_free(struct epoch *ep)
{
	config_free(ep->cfg);
	free(ep->scfg);
	free(ep);
}

/* Free replaced generations no session uses any more. */
static void
epochs_collect(struct sched *s)
{
	struct epoch **pp = &s->epochs->next;

	while (*pp) {
		struct epoch *ep = *pp;
		if (ep->nsessions == 0) {
			*pp = ep->next;
			if (ep->cfg)
				log_info("scheduler", "a configuration replaced by SIGHUP is freed: "
				    "no session uses it any more");
			epoch_free(ep);
		} else {
			pp = &ep->next;
		}
	}
}

/* --- destinations --- */

/* sched_event - a lane changed state: a log line and the shaping stream. */
static void
sched_event(struct sched *s, const struct shaper_event *ev)
{
	char buf[1024];
	struct shaper_event w = *ev;
	uint64_t now = loop_now(s->loop), wall = clock_wall_ms();

	/* The shaper runs on the loop's monotonic clock; the stream and
	 * the log tell wall-clock times (ms since the epoch). */
	w.ts = wall;
	if (w.until)
		w.until = wall + (ev->until > now ? ev->until - now : 0);
	log_info("shaper", "%s", shaper_event_text(&w, buf, sizeof buf));
	stats_shaping_event(s->st, &w);
}

/* warmup_of - the warm-up schedule of pool IP ip in c, or NULL. */
static const struct config_warmup *
warmup_of(const struct config *c, const struct config_ip *ip)
{
	if (ip == NULL || ip->warmup == NULL)
		return NULL;
	for (size_t i = 0; i < c->nwarmups; i++)
		if (strcmp(c->warmups[i].name, ip->warmup) == 0)
			return &c->warmups[i];
	return NULL;
}

static struct warm *
warm_get(struct sched *s, const struct config_ip *ip, const char *site)
{
	char key[SHAPER_IP_MAX + 80];
	struct warm *w;

	snprintf(key, sizeof key, "%s%s%s", ip->addr, site ? "|" : "", site ? site : "");
	w = map_get(&s->warm, key);
	if (w == NULL) {
		w = xcalloc(1, sizeof *w);
		w->ip = xstrdup(ip->addr);
		w->site = site ? xstrdup(site) : NULL;
		w->gen = s->gen + 1;
		map_put(&s->warm, key, w);
	}
	if (w->gen != s->gen) {
		int64_t sd = ip->warmup_start ? warmup_day_number(ip->warmup_start) : -1;
		w->gen = s->gen;
		w->cfg_start = sd;
		if (sd >= 0 && w->start_day < sd)
			w->start_day = sd;	/* until Redis adds the holds' shift */
	}
	return w;
}

/* warm_counts - what w's IP (and site) has sent on the day and in the
 * hour of `hour`: Redis' totals as last answered plus this host's since. */
static void
warm_counts(const struct warm *w, uint64_t hour, uint32_t *day, uint32_t *hr)
{
	uint64_t d = 0, h = 0;

	if (w->base_hour / 24 == hour / 24) {
		d = w->base_day;
		if (w->base_hour == hour)
			h = w->base_hourn;
	}
	for (size_t i = 0; i <= w->npend; i++) {
		const struct warm_delta *x = i < w->npend ? &w->pend[i] : &w->fly;
		if (x->n == 0 || x->hour / 24 != hour / 24)
			continue;
		d += x->n;
		if (x->hour == hour)
			h += x->n;
	}
	*day = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
	*hr = h > UINT32_MAX ? UINT32_MAX : (uint32_t)h;
}

/* warm_take - count one message sent now (hour). */
static void
warm_take(struct warm *w, uint64_t hour)
{
	if (w->npend > 0 && w->pend[w->npend - 1].hour == hour) {
		w->pend[w->npend - 1].n++;
		return;
	}
	if (w->npend == WARM_NPEND) {
		/* Redis has been away for hours: the newest slot takes it
		 * (the old hours' caps no longer matter). */
		w->pend[w->npend - 1].hour = hour;
		w->pend[w->npend - 1].n++;
		return;
	}
	w->pend[w->npend].hour = hour;
	w->pend[w->npend].n = 1;
	w->npend++;
}

/* warm_start - w's start day at now_wall, a hold taken into account. */
static int64_t
warm_start(const struct warm *w, uint64_t now_wall)
{
	int64_t today = (int64_t)(now_wall / WARMUP_DAY_MS);

	if (w->hold_until > now_wall)
		return w->start_day + warmup_hold_shift(w->start_day, 0, w->hold_day, today);
	return w->start_day;
}

/*
 * sched_warm_ok - whether pool IP ip (schedule w, NULL: none) may send one
 * more message to site (d's site name, "" for none) at now_wall: its own
 * ramp, and a site ramp if the schedule has one for site. If not, *next
 * is the wall time it may, and a warmup_exhausted event is raised once per
 * exhaustion. take: count the message. Until Redis has answered for the
 * IP (start-up, first use) it may not: *next is a moment later.
 */
static int
sched_warm(struct sched *s, const struct config_ip *ip, const struct config_warmup *w,
    const char *site, const char *dest, uint64_t now_wall, int take, uint64_t *next)
{
	int with_site;
	uint64_t hour = now_wall / WARMUP_HOUR_MS;

	if (w == NULL || ip == NULL)
		return 1;
	with_site = site && site[0] && warmup_has_site(w, site);
	for (int pass = 0; pass < 1 + with_site; pass++) {
		struct warm *wm = warm_get(s, ip, pass ? site : NULL);
		struct warmup_ramp r = warmup_ramp(w, pass ? site : NULL);
		struct warmup_answer a;
		uint32_t sent_day, sent_hour;

		if (take) {
			warm_take(wm, hour);
			continue;
		}
		if (!wm->loaded) {
			*next = now_wall + WARM_LOAD_MS;
			return 0;
		}
		warm_counts(wm, hour, &sent_day, &sent_hour);
		if (!warmup_check(&r, warm_start(wm, now_wall), now_wall, sent_day, sent_hour,
		    s->cfg->shaping.warmup_burst, &a)) {
			*next = a.next_ms;
			if (wm->exhausted_until <= now_wall) {
				struct shaper_event ev;
				wm->exhausted_until = a.next_ms;
				shaper_warmup_event(ip->addr, pass ? site : "*", a.why, now_wall,
				    a.next_ms, &ev);
				snprintf(ev.reason, sizeof ev.reason, "warm-up %s spent: day %u, %u of "
				    "%u sent (%s)", a.why ? a.why : "budget", a.day, sent_day,
				    a.cap_day, dest);
				ev.window = 0;
				log_info("shaper", "lane=%s/%s action=warmup_exhausted until=%llu "
				    "reason=\"%s\"", ip->addr, pass ? site : "*",
				    (unsigned long long)a.next_ms, ev.reason);
				stats_shaping_event(s->st, &ev);
			}
			return 0;
		}
	}
	return 1;
}

/*
 * warm_preload - counters for every pool IP with a warm-up (and each of
 * its schedule's sites), so that the first sync, sent before the first
 * read, loads them before any job can ask.
 */
static void
warm_preload(struct sched *s)
{
	const struct config *c = s->cfg;

	for (size_t i = 0; i < c->npools; i++) {
		for (size_t j = 0; j < c->pools[i].nips; j++) {
			const struct config_ip *ip = &c->pools[i].ips[j];
			const struct config_warmup *w = warmup_of(c, ip);
			if (w == NULL)
				continue;
			warm_get(s, ip, NULL);
			for (size_t k = 0; k < w->nsites; k++)
				warm_get(s, ip, w->sites[k].site);
		}
	}
}

/* on_warm_sync - Redis' answer for one warm: its totals replace ours. */
static void
on_warm_sync(void *arg, const struct rq_warmup_ans *a)
{
	struct warm *w = arg;
	w->in_flight = 0;
	if (a == NULL)
		return;		/* the call in flight is resent as it is */
	w->base_hour = w->fly_hour_req;
	w->base_day = a->sent_day;
	w->base_hourn = a->sent_hour;
	w->fly.n = 0;
	w->start_day = a->start;
	w->hold_until = a->held ? a->hold_until : 0;
	w->hold_day = a->held ? a->hold_day : 0;
	if (!w->loaded) {
		w->loaded = 1;
		log_info("shaper", "warm-up of %s%s%s: starts on day %lld (days since 1970)%s, "
		    "%u sent today by every host", w->ip, w->site ? " for " : "",
		    w->site ? w->site : "", (long long)a->start, a->held ? ", held" : "",
		    a->sent_day);
	}
}

void
sched_warm_sync(struct sched *s, struct rq *q, int now_all)
{
	uint64_t now = loop_now(s->loop), wall = clock_wall_ms();
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&s->warm, &it, &k, &v)) {
		struct warm *w = v;
		struct rq_warmup_req r;

		if (w->in_flight)
			continue;
		if (w->hold_send && w->site == NULL &&
		    rq_warmup_hold(q, w->ip, w->cfg_start, w->hold_until, w->hold_reason, wall) == 0)
			w->hold_send = 0;
		if (w->fly.n == 0 && w->npend > 0 && (now_all || now - w->last_sync >= WARM_FLUSH_MS)) {
			w->fly = w->pend[0];
			memmove(&w->pend[0], &w->pend[1], (w->npend - 1) * sizeof w->pend[0]);
			w->npend--;
			w->fly_id = ++s->warm_seq;
		}
		if (w->loaded && w->fly.n == 0 && now - w->last_sync < WARM_REFRESH_MS)
			continue;
		memset(&r, 0, sizeof r);
		r.ip = w->ip;
		r.site = w->site;
		r.cfg_start = w->cfg_start;
		r.hour = w->fly.n ? w->fly.hour : wall / WARMUP_HOUR_MS;
		r.delta = w->fly.n;
		r.id = w->fly_id;
		r.now_wall_ms = wall;
		if (rq_warmup_sync(q, &r, on_warm_sync, w) == 0) {
			w->in_flight = 1;
			w->fly_hour_req = r.hour;
			w->last_sync = now;
		}
	}
}

int
sched_warm_busy(const struct sched *s)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&s->warm, &it, &k, &v)) {
		const struct warm *w = v;
		if (w->fly.n || w->npend || w->hold_send)
			return 1;
	}
	return 0;
}

int
sched_warm_hold(struct sched *s, const char *ip, const char *reason, uint64_t until_wall)
{
	const struct config_ip *cip = NULL;
	uint64_t wall = clock_wall_ms();
	const char *k;
	void *v;
	size_t it = 0;
	struct warm *own;

	for (size_t i = 0; i < s->cfg->npools && cip == NULL; i++)
		for (size_t j = 0; j < s->cfg->pools[i].nips; j++)
			if (strcmp(s->cfg->pools[i].ips[j].addr, ip) == 0 &&
			    s->cfg->pools[i].ips[j].warmup != NULL) {
				cip = &s->cfg->pools[i].ips[j];
				break;
			}
	if (cip == NULL)
		return -1;
	own = warm_get(s, cip, NULL);
	own->hold_send = 1;
	snprintf(own->hold_reason, sizeof own->hold_reason, "%s", reason ? reason : "");
	/* Here at once; Redis (and so every host) at the next sync. */
	while (map_iter(&s->warm, &it, &k, &v)) {
		struct warm *w = v;
		if (strcmp(w->ip, ip) != 0)
			continue;
		if (until_wall == 0) {
			w->hold_until = 0;
			w->hold_day = 0;
		} else if (w->hold_until <= wall) {
			int64_t day = (int64_t)(wall / WARMUP_DAY_MS) - warm_start(w, wall) + 1;
			w->hold_day = day < 1 ? 1 : day > UINT32_MAX ? UINT32_MAX : (uint32_t)day;
			w->hold_until = until_wall;
		} else {
			w->hold_until = until_wall;
		}
	}
	own->hold_until = until_wall;	/* what Redis is told (0: release) */
	log_info("shaper", "warm-up of %s: %s%s%s", ip, until_wall ? "held" : "released",
	    reason && reason[0] ? ": " : "", reason ? reason : "");
	return 0;
}

/* The wall time `wall` on the loop's clock. */
static uint64_t
mono_of(struct sched *s, uint64_t wall)
{
	uint64_t nw = clock_wall_ms(), now = loop_now(s->loop);

	return wall > nw ? now + (wall - nw) : now;
}

/* d's pool in the running configuration (a pool that is gone: default). */
static const struct config_pool *
sched_pool(const struct sched *s, const struct dest *d)
{
	const struct config_pool *p = config_pool(s->cfg, d->pool);

	return p ? p : config_pool(s->cfg, "default");
}

/*
 * sched_dest_lanes - d's shaping destination (from its MX hosts: site,
 * domain block or MX rollup), its limits, and one lane per IP of its pool
 * (looked up by name in the running configuration; a pool that is gone
 * falls back to `default`). Built again when the destination name or the
 * configuration generation changed.
 */
static void sched_lw_remove(struct sched *s, struct dest *d);

/*
 * sched_smarthost_dest - d relays through a smarthost: its shaping
 * destination is "smarthost:NAME" (every domain through it shares its
 * lanes), its limits the defaults overlaid by the smarthost block's, and
 * its TLS policy what the smarthost's tls/verify ask for. 0: direct.
 */
static int
sched_smarthost_dest(const struct config *c, const struct dest *d, char *name, size_t len,
    struct config_limits *cl)
{
	const struct config_smarthost *h = config_smarthost_for(c, d->pool, d->domain);
	struct config_site as_site;

	if (h == NULL)
		return 0;
	memset(&as_site, 0, sizeof as_site);
	as_site.lim = h->lim;
	as_site.lim.tls = h->tls == SMARTHOST_TLS_NONE ? TLS_POLICY_DISABLED :
	    h->verify ? TLS_POLICY_VERIFY : TLS_POLICY_REQUIRED;
	*cl = config_limits_for(c, &as_site, NULL);
	snprintf(name, len, "smarthost:%s", h->name);
	return 1;
}

/* sched_smarthost_log - each smarthost at start and reload (never its
 * password); AUTH in clear text is worth a warning. */
static void
sched_smarthost_log(const struct config *c)
{
	static const char *const tls[] = { "?", "starttls", "implicit", "none" };

	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct config_smarthost *h = &c->smarthosts[i];

		log_info("scheduler", "smarthost %s: host=%s port=%d tls=%s verify=%d auth=%s",
		    h->name, h->host, h->port, tls[h->tls >= 1 && h->tls <= 3 ? h->tls : 0],
		    h->verify, h->user ? smtp_auth_mech_name((enum smtp_auth_mech)h->auth) : "none");
		if (h->tls == SMARTHOST_TLS_NONE && h->user != NULL)
			log_warn("scheduler", "smarthost %s: tls = \"none\": the credentials of user "
			    "%s go to %s:%d in clear text", h->name, h->user, h->host, h->port);
	}
}

/* sched_relay - the session settings of d's smarthost route, if any. */
static void
sched_relay(const struct config *c, const struct dest *d, struct session_relay *r)
{
	const struct config_smarthost *h = config_smarthost_for(c, d->pool, d->domain);

	memset(r, 0, sizeof *r);
	if (h == NULL)
		return;
	r->port = h->port;
	r->implicit_tls = h->tls == SMARTHOST_TLS_IMPLICIT;
	r->user = h->user;
	r->password = h->password;
	r->mech = (enum smtp_auth_mech)h->auth;
	r->auth_clear = h->tls == SMARTHOST_TLS_NONE;
}

static void
sched_dest_lanes(struct sched *s, struct dest *d)
{
	const struct config *c = s->cfg;
	const char *hosts[SHAPER_MAX_MX];
	size_t nh = 0, n, base = 1;
	char name[SHAPER_DEST_MAX];
	struct config_limits cl;
	const struct config_site *site;
	const struct config_pool *p;
	struct shaper_lane **lanes;
	size_t *cfgi;
	uint32_t *w;
	uint64_t now = loop_now(s->loop);

	if (d->mx == NULL) {
		sched_lw_remove(s, d);
		dest_clear_lanes(d);
		return;
	}
	for (size_t i = 0; i < d->mx->n && nh < SHAPER_MAX_MX; i++)
		if (nh == 0 || strcmp(hosts[nh - 1], d->mx->t[i].host) != 0)
			hosts[nh++] = d->mx->t[i].host;
	site = shaper_destination(c, d->domain, hosts, nh, name, sizeof name, &cl);
	if (sched_smarthost_dest(c, d, name, sizeof name, &cl))
		site = NULL;
	if (d->nlanes > 0 && d->lanes_gen == s->gen && strcmp(name, d->sdest) == 0)
		return;
	sched_lw_remove(s, d);	/* its counts are on the old lanes */
	d->lim = cl;
	snprintf(d->site, sizeof d->site, "%s", site ? site->name : "");
	snprintf(d->sdest, sizeof d->sdest, "%s", name);
	d->slim = shaper_limits_from(&cl);
	{
		struct rate fr = config_fleet_for(site, strncmp(name, "smarthost:", 10) == 0 ? NULL :
		    config_domain_find(c, d->domain), d->fleet_key, sizeof d->fleet_key);

		d->fleet_mph = pace_mph(&fr);
	}
	d->lanes_gen = s->gen;
	p = config_pool(c, d->pool);
	if (p == NULL)
		p = config_pool(c, "default");
	for (size_t i = 0; p && i < c->npools && &c->pools[i] != p; i++)
		base += c->pools[i].nips;
	n = p && p->nips ? p->nips : 1;
	lanes = xcalloc(n, sizeof *lanes);
	cfgi = xcalloc(n, sizeof *cfgi);
	w = xcalloc(n, sizeof *w);
	{
		/* Only the pool's IPs that are ours (route.h). None (a job
		 * queued before a reload made the pool another host's; it is
		 * handed over when it comes back): every IP, as before. */
		size_t mine = 0, k = 0;

		for (size_t i = 0; p && i < p->nips; i++)
			mine += route_ip_ours(s->own, base - 1 + i);
		for (size_t i = 0; i < n; i++) {
			const struct config_ip *ip = p && p->nips ? &p->ips[i] : NULL;
			struct shaper_ip *sip;

			if (ip && mine > 0 && !route_ip_ours(s->own, base - 1 + i))
				continue;
			sip = shaper_ip(&s->sh, ip ? ip->addr : "0.0.0.0", shaper_ip_rate(c, ip));
			lanes[k] = shaper_lane(&s->sh, sip, name, &d->slim, now);
			shaper_lane_ref(lanes[k]);
			cfgi[k] = ip ? base + i : 0;
			w[k] = ip && ip->weight ? ip->weight : 1;
			k++;
		}
		n = k;
	}
	dest_set_lanes(d, lanes, cfgi, w, n);
}

/*
 * lane_ip - the pool IP of d's lane k (p: d's pool in the running
 * configuration, which its lanes were built from), or NULL for the
 * default source. Lanes hold only this host's IPs of the pool, so lane k
 * is not always the pool's IP k.
 */
static const struct config_ip *
lane_ip(const struct sched *s, const struct config_pool *p, const struct dest *d, size_t k)
{
	size_t base = 1;

	if (p == NULL || p->nips == 0 || d->lane_cfg[k] == 0)
		return NULL;
	for (size_t i = 0; i < s->cfg->npools && &s->cfg->pools[i] != p; i++)
		base += s->cfg->pools[i].nips;
	if (d->lane_cfg[k] < base || d->lane_cfg[k] - base >= p->nips)
		return NULL;	/* lanes of another configuration */
	return &p->ips[d->lane_cfg[k] - base];
}

/* lane_src - the source address of d's lane k, NULL for the default. */
static const char *
lane_src(const struct dest *d, size_t k)
{
	return d->lane_cfg[k] ? d->lanes[k]->ip->addr : NULL;
}

/*
 * sched_lanes_held - whether every lane of d is suspended or closed at now
 * (then *until is the earliest end): its jobs wait for that, not for the
 * retry schedule.
 */
static int
sched_lanes_held(const struct dest *d, uint64_t now, uint64_t *until)
{
	*until = 0;
	if (d->nlanes == 0)
		return 0;
	for (size_t k = 0; k < d->nlanes; k++) {
		const struct shaper_lane *l = d->lanes[k];
		uint64_t t = l->suspended_until > now ? l->suspended_until :
		    l->closed_until > now ? l->closed_until : 0;
		if (t == 0)
			return 0;
		if (*until == 0 || t < *until)
			*until = t;
	}
	return 1;
}

/* A per-job salt for spreading resumed jobs. */
static uint64_t
job_salt(const struct job *j)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = j->key; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

/* The wall-clock retry time for a job held until mono time `until`. */
static uint64_t
sched_resume_wall(struct sched *s, const struct job *j, uint64_t until)
{
	uint64_t now = loop_now(s->loop);
	uint64_t at = shaper_resume_at(until, s->cfg->shaping.resume_spread_ms, job_salt(j));

	return clock_wall_ms() + (at > now ? at - now : 0);
}

/* Settle every queued job of d with the same outcome (DNS or site failure). */
static void
sched_fail_queue(struct sched *s, struct dest *d, const struct job_outcome *tmpl)
{
	struct job *j;

	uint64_t until = 0;
	int held = tmpl->status == JOB_DEFERRED && sched_lanes_held(d, loop_now(s->loop), &until);

	while ((j = dest_pop_any(d)) != NULL) {
		struct job_outcome o = *tmpl;
		/* Every lane suspended or closed: back when that ends. */
		ledger_settle_at(s->lg, j, &o, held ? sched_resume_wall(s, j, until) : 0);
	}
}

/* Settle jobs that expired while queued. */
static void
sched_settle_expired(struct sched *s, struct job *expired)
{
	struct job *j, *next;

	for (j = expired; j; j = next) {
		struct job_outcome o;
		next = j->next;
		j->next = NULL;
		trouble_expired(j, j->attempts, j->last_reply, &o);
		ledger_settle(s->lg, j, &o);
	}
}

static void
on_mx(void *arg, const struct dns_result *r)
{
	struct dest *d = arg;
	struct sched *s = d->owner;
	struct job_outcome o;
	const struct config_smarthost *now_h = config_smarthost_for(s->cfg, d->pool, d->domain);

	d->resolving = 0;
	if (strcmp(d->q_route, now_h ? now_h->name : "") != 0) {
		/* The route changed (SIGHUP) while this lookup was out: its
		 * answer is for the other route (a recipient's MX must never
		 * get a smarthost's credentials, a smarthost's NXDOMAIN must
		 * never bounce recipients). Ask again for the route now. */
		if (!s->stopping)
			sched_kick(s, d);
		return;
	}
	if (r->status == DNS_OK && r->ntargets > 0) {
		mxset_unref(d->mx);
		d->mx = mxset_from_dns(r);
		sched_dest_lanes(s, d);
		if (!s->stopping)
			sched_open_sessions(s, d);
		return;
	}
	if (s->stopping)
		return;		/* queues were handed back */
	/* A smarthost's name that does not resolve says nothing about the
	 * recipients' domain: defer, never bounce. */
	trouble_from_dns(config_smarthost_for(s->cfg, d->pool, d->domain) != NULL &&
	    r->status != DNS_OK ? DNS_TEMPFAIL : r->status, d->domain, r->error, &o);
	if (o.status == JOB_DEFERRED && d->nsessions > 0 && d->mx != NULL) {
		/* A passing DNS failure on a new lookup while sessions from the
		 * last good answer still carry the queue: let them. */
		log_info("dest", "dest=%s MX lookup failed; %u open session(s) carry the queue",
		    d->key, d->nsessions);
		return;
	}
	sched_fail_queue(s, d, &o);
}

/* --- MTA-STS (RFC 8461) --- */

/*
 * sched_sts_wanted - does MTA-STS apply to d? A domain block's mta_sts
 * decides; else, once the MX is known (mx_host), its site block's; else
 * smtp.mta_sts. Before the MX answer (mx_host NULL) a site that turns it
 * on where smtp.mta_sts is off makes the lookup happen (the site is not
 * known yet).
 */
static int
sched_sts_wanted(const struct sched *s, const struct dest *d, const char *mx_host)
{
	const struct config_domain *dom = config_domain_find(s->cfg, d->domain);
	const struct config_site *site;

	if (dom != NULL && dom->lim.mta_sts)
		return dom->lim.mta_sts == 1;
	if (mx_host != NULL) {
		site = config_site_for_mx(s->cfg, mx_host);
		if (site != NULL && site->lim.mta_sts)
			return site->lim.mta_sts == 1;
		return s->cfg->mta_sts;
	}
	if (s->cfg->mta_sts)
		return 1;
	for (size_t i = 0; i < s->cfg->nsites; i++)
		if (s->cfg->sites[i].lim.mta_sts == 1)
			return 1;
	return 0;
}

/* A warm-up of the MX cache while the MTA-STS lookup runs: the MX answer
 * is then in hand (or on its way) when the policy is. */
static void
on_mx_prefetch(void *arg, const struct dns_result *r)
{
	(void)arg;
	(void)r;
}

/* The stored policies, back at start (sched_sts_attach). */
static void
on_sts_load(void *arg, int ok, const char *const *domains, const char *const *values,
    const size_t *lens, size_t n)
{
	struct sched *s = arg;
	uint64_t now = clock_wall_ms();
	size_t kept = 0;

	if (!ok || s->stopping)
		return;
	for (size_t i = 0; i < n; i++) {
		char err[200], q[300];

		if (mtasts_cache_restore(s->sts, domains[i], values[i], lens[i], now, err,
		    sizeof err) == 0) {
			kept++;
			continue;
		}
		log_debug("mtasts", "stored policy of \"%s\" dropped: %s", quote(q, sizeof q,
		    domains[i]), err);
		if (s->sts_rq != NULL)
			rq_sts_forget(s->sts_rq, domains[i], values[i]);
	}
	if (n > 0)
		log_info("mtasts", "%zu stored policy(ies) loaded, %zu dropped (expired or malformed)",
		    kept, n - kept);
}

static void
sts_store(void *arg, const char *domain, const char *value)
{
	struct sched *s = arg;

	if (s->sts_rq != NULL && rq_sts_store(s->sts_rq, domain, value) < 0)
		log_info("mtasts", "policy of %s not stored: Redis is not connected", domain);
}

void
sched_sts_attach(struct sched *s, struct rq *q)
{
	int any = s->cfg->mta_sts;

	if (s->sts_rq != NULL)
		return;
	s->sts_rq = q;
	mtasts_cache_set_store(s->sts, sts_store, s);
	for (size_t i = 0; i < s->cfg->nsites; i++)
		any |= s->cfg->sites[i].lim.mta_sts == 1;
	for (size_t i = 0; i < s->cfg->ndomains; i++)
		any |= s->cfg->domains[i].lim.mta_sts == 1;
	if (!any)
		return;		/* MTA-STS is off everywhere: nothing to load */
	if (rq_sts_load(q, on_sts_load, s) < 0)
		log_info("mtasts", "stored policies not loaded: Redis is not connected");
}

/* The domain's policy, carried from its lookup to the MX answer. */
struct sts_mx {
	struct dest *d;
	struct mtasts_policy pol;
};

/*
 * on_mx_sts - the MX answer of a domain with an MTA-STS policy (testing
 * or enforce). enforce: only the MX hosts the policy names are kept and
 * its sessions use tls = verify (DANE still comes first: dane_policy);
 * none left: the queue is deferred (tls_failure). testing: the answer is
 * used as it is; what enforce would change is logged.
 */
static void
on_mx_sts(void *arg, const struct dns_result *r)
{
	struct sts_mx *m = arg;
	struct dest *d = m->d;
	struct sched *s = d->owner;
	int enforce = m->pol.mode == MTASTS_ENFORCE;
	struct dns_result f;
	char pmx[600], skipped[600] = "", q[300];
	size_t off = 0;

	d->sts_enforce = enforce;
	if (r->status != DNS_OK || r->ntargets == 0 || s->stopping) {
		on_mx(d, r);
		free(m);
		return;
	}
	if (sched_sts_wanted(s, d, r->targets[0].host) == 0) {
		/* site { mta_sts = false; } for the site of these MX hosts. */
		log_debug("mtasts", "dest=%s: mta_sts = false for its site; policy ignored", d->key);
		d->sts_enforce = 0;
		on_mx(d, r);
		free(m);
		return;
	}
	mtasts_mx_text(&m->pol, pmx, sizeof pmx);
	f = *r;
	f.targets = xcalloc(r->ntargets, sizeof *f.targets);
	f.ntargets = 0;
	for (size_t i = 0; i < r->ntargets; i++) {
		const char *h = r->targets[i].host;

		if (mtasts_mx_match(&m->pol, h)) {
			f.targets[f.ntargets++] = r->targets[i];
			continue;
		}
		/* Each host once (its addresses follow each other). */
		if (i > 0 && strcmp(r->targets[i - 1].host, h) == 0)
			continue;
		if (off < sizeof skipped) {
			int k = snprintf(skipped + off, sizeof skipped - off, "%s\"%s\"", off ? ", " : "",
			    quote(q, sizeof q, h));
			if (k > 0)
				off += (size_t)k;
		}
	}
	if (!enforce) {
		log_info("mtasts", "testing dest=%s: enforce would %s%s%s and require verified TLS "
		    "(policy mx: %s); delivering as without a policy", d->key,
		    skipped[0] ? "skip MX " : "use every MX", skipped, skipped[0] ? " (not in the policy)" : "",
		    pmx);
		d->sts_enforce = 0;
		on_mx(d, r);
	} else if (f.ntargets == 0) {
		struct job_outcome o;
		char why[1400];

		d->resolving = 0;
		snprintf(why, sizeof why, "mode enforce: no MX host matches the policy "
		    "(MX: %s; policy mx: %s)", skipped, pmx);
		log_info("mtasts", "dest=%s %s", d->key, why);
		trouble_mtasts(d->domain, why, &o);
		sched_fail_queue(s, d, &o);
	} else {
		if (skipped[0])
			log_info("mtasts", "dest=%s enforce: skipping MX %s (not in the policy mx: %s)",
			    d->key, skipped, pmx);
		log_debug("mtasts", "dest=%s enforce: tls = verify", d->key);
		on_mx(d, &f);
	}
	free(f.targets);
	free(m);
}

/* on_sts - the domain's MTA-STS policy (NULL: none): now its MX. */
static void
on_sts(void *arg, const struct mtasts_policy *p)
{
	struct dest *d = arg;
	struct sched *s = d->owner;
	struct sts_mx *m;

	s->sts_answers++;
	if (s->stopping) {
		d->resolving = 0;
		return;
	}
	if (p == NULL || p->mode == MTASTS_NONE) {
		d->sts_enforce = 0;
		dns_query_mx(s->dns, d->domain, on_mx, d);	/* may call on_mx at once */
		return;
	}
	m = xmalloc(sizeof *m);
	m->d = d;
	m->pol = *p;
	dns_query_mx(s->dns, d->domain, on_mx_sts, m);	/* may call back at once */
}

/* A source that could not be bound stays aside for a while; returns its
 * record while it does. */
static const struct broken *
source_broken(struct sched *s, const char *ip)
{
	struct broken *b = map_get(&s->broken, ip);

	if (b == NULL)
		return NULL;
	if (loop_now(s->loop) >= b->until) {
		map_del(&s->broken, ip);
		free(b);
		return NULL;
	}
	return b;
}

static void
source_set_aside(struct sched *s, const char *ip, const char *reason)
{
	struct broken *b = map_get(&s->broken, ip);

	if (b == NULL) {
		b = xcalloc(1, sizeof *b);
		map_put(&s->broken, ip, b);
	}
	b->until = loop_now(s->loop) + SOURCE_BROKEN_MS;
	snprintf(b->reason, sizeof b->reason, "%s", reason);
}

/* Wait for a global slot; an idle session elsewhere holds one it does
 * not use: close it (its close wakes the waiting list). */
static void
sched_wait_global(struct sched *s, struct dest *d)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (d->waiting_global)
		return;
	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *o = v;
		if (o != d && o->idle) {
			session_quit(o->idle);
			break;
		}
	}
	dests_wait(&s->ds, d);
}

/* sched_arm - d's timer fires at mono time `at` at the latest. */
static void
sched_arm(struct sched *s, struct dest *d, uint64_t at)
{
	uint64_t now = loop_now(s->loop);

	if (at == 0 || s->stopping)
		return;
	if (timer_armed(&d->retry_timer) && d->retry_timer.when <= at)
		return;
	if (timer_armed(&d->retry_timer))
		timer_cancel(s->loop, &d->retry_timer);
	timer_set(s->loop, &d->retry_timer, at > now ? at - now : 0, on_dest_retry);
}

/*
 * sched_wait_lane - every usable lane of d has its window full: wait for
 * one of their sessions to close (sop_on_closed kicks the waiters). An
 * idle session of another destination on one of those lanes holds a slot
 * it does not use: close it.
 */
/* Put d at the end of the waiting queue of each of its lanes. */
static void
sched_lw_link(struct sched *s, struct dest *d)
{
	(void)s;
	if (d->lw_cap < d->nlanes) {
		free(d->lw);
		d->lw = xcalloc(d->nlanes, sizeof *d->lw);
		d->lw_cap = d->nlanes;
	}
	d->lane_waiting = 1;
	for (size_t i = 0; i < d->nlanes; i++) {
		struct shaper_lane *l = d->lanes[i];
		struct dest_lw *w = &d->lw[i];

		w->d = d;
		w->next = NULL;
		w->prev = l->sched_wq_tail;
		if (l->sched_wq_tail)
			l->sched_wq_tail->next = w;
		else
			l->sched_wq_head = w;
		l->sched_wq_tail = w;
		l->sched_waiting++;
	}
}

/* Take d out of its lanes' waiting queues (before its lanes change, when
 * it is woken, at stop). O(its lanes). */
static void
sched_lw_remove(struct sched *s, struct dest *d)
{
	(void)s;
	if (!d->lane_waiting)
		return;
	d->lane_waiting = 0;
	for (size_t i = 0; i < d->nlanes; i++) {
		struct shaper_lane *l = d->lanes[i];
		struct dest_lw *w = &d->lw[i];

		if (w->prev)
			w->prev->next = w->next;
		else
			l->sched_wq_head = w->next;
		if (w->next)
			w->next->prev = w->prev;
		else
			l->sched_wq_tail = w->prev;
		w->prev = w->next = NULL;
		if (l->sched_waiting > 0)
			l->sched_waiting--;
	}
}

static void
sched_wait_lane(struct sched *s, struct dest *d)
{
	const char *k;
	void *v;
	size_t it = 0;
	unsigned idle = 0;

	if (d->lane_waiting)
		return;
	sched_lw_link(s, d);
	for (size_t i = 0; i < d->nlanes; i++)
		idle += d->lanes[i]->sched_idle;
	if (idle == 0)
		return;		/* nobody's idle session to close: no scan */
	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *o = v;
		if (o == d || o->idle == NULL)
			continue;
		for (struct session *ss = o->idle; ss; ss = session_list_next(ss)) {
			struct sref *ref = session_owner(ss);
			for (size_t i = 0; i < d->nlanes; i++)
				if (d->lanes[i] == ref->lane) {
					session_quit(ss);
					return;
				}
		}
	}
}

/*
 * sched_kick_waiters - a slot of lane l is free (a session on it closed,
 * its window grew): the destinations waiting for l try again, oldest
 * first, until one of them has taken the room (one still blocked goes to
 * the end of the queues again; each waiter is tried at most once). l
 * NULL: every waiting destination (the sweep's safety net). A thousand
 * destinations can share a site's lanes: waking them all on every result
 * made each message cost a pass over all of them, to open one session.
 */
static void
sched_kick_waiters(struct sched *s, struct shaper_lane *l)
{
	if (l == NULL) {
		const char *k;
		void *v;
		size_t it = 0, n = 0, i = 0;
		struct dest **all;

		while (map_iter(&s->ds.map, &it, &k, &v))
			n += ((struct dest *)v)->lane_waiting != 0;
		if (n == 0)
			return;
		all = xcalloc(n, sizeof *all);
		it = 0;
		while (map_iter(&s->ds.map, &it, &k, &v) && i < n)
			if (((struct dest *)v)->lane_waiting)
				all[i++] = v;
		for (size_t j = 0; j < i; j++) {
			sched_lw_remove(s, all[j]);
			if (all[j]->queued > 0)
				sched_kick(s, all[j]);	/* may wait again */
		}
		free(all);
		return;
	}
	for (unsigned tries = l->sched_waiting; tries > 0 && l->sched_wq_head; tries--) {
		struct dest *d = l->sched_wq_head->d;

		sched_lw_remove(s, d);
		if (d->queued > 0)
			sched_kick(s, d);	/* may wait again, at the end */
		if (l->nconn >= l->window)
			break;			/* the room is taken */
	}
}

/* Whether some destination waits for a slot of lane l. A destination
 * whose queue emptied while it waited (settled, parked, expired) leaves
 * the queue here, lazily, so it does not keep other sessions from idling. */
static int
sched_lane_wanted(struct sched *s, struct shaper_lane *l)
{
	while (l->sched_wq_head != NULL && l->sched_wq_head->d->queued == 0)
		sched_lw_remove(s, l->sched_wq_head->d);
	return l->sched_wq_head != NULL;
}

/* lane_index - k with d->lanes[k] == l, or -1 (a lane from before a
 * reload). */
static int
lane_index(const struct dest *d, const struct shaper_lane *l)
{
	for (size_t k = 0; k < d->nlanes; k++)
		if (d->lanes[k] == l)
			return (int)k;
	return -1;
}

/*
 * sched_weight_ok - may a session of lane l take d's next job, as far as
 * the pool's weights go? Weights split jobs, not sessions: every job
 * handed out moves smooth weighted round-robin credit (lane k gains its
 * weight, the lane that took the job loses the total). A lane in debit
 * waits while another lane of d that is owed a job has a session of d to
 * take it; with nobody else to take it, it goes on; and it waits at most
 * WEIGHT_WAIT_MS (the other lane's sessions may be busy, paced, out of
 * warm-up budget: weights must never stall a destination). *at: when to
 * look again after a refusal.
 */
#define WEIGHT_WAIT_MS	200
static int
sched_weight_ok(struct dest *d, const struct shaper_lane *l, uint64_t now, uint64_t *at)
{
	int k = d->nlanes > 1 && !d->weights_equal ? lane_index(d, l) : -1;

	if (k < 0 || d->lane_credit[k] >= 0)
		return 1;
	for (size_t j = 0; j < d->nlanes; j++)
		if ((int)j != k && d->lane_credit[j] >= 0 && d->lane_nsess[j] > 0) {
			if (d->weight_wait == 0)
				d->weight_wait = now;
			if (now - d->weight_wait >= WEIGHT_WAIT_MS) {
				/* The owed lane did not take its turn in time (busy,
				 * paced, out of budget): the debt is forgiven, or
				 * every later job would wait again. */
				for (size_t i = 0; i < d->nlanes; i++)
					d->lane_credit[i] = 0;
				d->weight_wait = 0;
				return 1;
			}
			*at = d->weight_wait + WEIGHT_WAIT_MS;
			return 0;
		}
	return 1;
}

/* A job went to a session of lane l: move the credit; a lane now owed a
 * job that has an idle session of d is woken through d's timer. */
static void
sched_weight_took(struct sched *s, struct dest *d, const struct shaper_lane *l)
{
	int k = d->nlanes > 1 && !d->weights_equal ? lane_index(d, l) : -1;
	int64_t total = 0, cap;
	int wake = 0;

	if (k < 0)
		return;
	d->weight_wait = 0;
	for (size_t j = 0; j < d->nlanes; j++)
		total += d->lane_weight[j] ? d->lane_weight[j] : 1;
	cap = 2 * total;	/* a lane without sessions does not bank credit */
	for (size_t j = 0; j < d->nlanes; j++) {
		int64_t c = d->lane_credit[j] + (d->lane_weight[j] ? d->lane_weight[j] : 1);
		if ((int)j == k)
			c -= total;
		c = c > cap ? cap : c < -cap ? -cap : c;
		if ((int)j != k && d->lane_credit[j] < 0 && c >= 0)
			wake = 1;
		d->lane_credit[j] = c;
	}
	if (wake && d->idle != NULL)
		sched_arm(s, d, loop_now(s->loop));
}

/*
 * sched_open_sessions - open sessions for d's queue: for each, the shaper
 * picks which of the pool's IPs (smooth weighted round robin over those
 * whose lane may connect and send now); a source set aside after a failed
 * bind, or of a family no MX address has, is skipped. Then it waits:
 * for a session of a full lane to close, for the time the shaper names
 * (a timer), or, when every lane is suspended or closed for longer than
 * SHAPE_HOLD_MS and no session carries the queue, the queue goes back to
 * Redis until the lanes reopen.
 */
static void
sched_open_sessions(struct sched *s, struct dest *d)
{
	uint64_t now = loop_now(s->loop), wake = 0;
	int full = 0, unusable = 0, warm_wait = 0;
	char why[600];
	const char *why_ip = NULL;
	const struct config_pool *p;

	if (d->nlanes == 0)
		sched_dest_lanes(s, d);
	p = sched_pool(s, d);
	if (p && p->nips && p->nips < d->nlanes)
		p = NULL;	/* not the pool the lanes were built from (lanes
				 * hold this host's IPs of it: maybe fewer) */
	while (d->queued > d->nconnecting && d->nlanes > 0) {
		struct shaper_cand cand[d->nlanes];
		size_t map[d->nlanes], nc = 0, idx;
		uint64_t at;
		int pick;
		struct session *ss;

		full = unusable = 0;
		for (size_t k = 0; k < d->nlanes; k++) {
			const char *ip = lane_src(d, k);
			const struct broken *b = ip ? source_broken(s, ip) : NULL;
			int fam = ip ? conn_ip_family(ip) : AF_UNSPEC;
			enum shaper_answer a;

			if (b != NULL) {
				snprintf(why, sizeof why, "%s", b->reason);
				why_ip = ip;
				unusable++;
				continue;
			}
			if (fam != AF_UNSPEC && mxset_count_family(d->mx, fam) == 0) {
				snprintf(why, sizeof why, "source %s is %s and every MX address of this "
				    "destination is %s (%zu address(es), first host %s)", ip,
				    fam == AF_INET6 ? "IPv6" : "IPv4", fam == AF_INET6 ? "IPv4" : "IPv6",
				    d->mx->n, d->mx->n ? d->mx->t[0].host : "?");
				why_ip = ip;
				unusable++;
				continue;
			}
			a = shaper_may_connect(&s->sh, d->lanes[k], now, &at);
			if (a == SHAPER_FULL) {
				full = 1;
				continue;
			}
			if (a != SHAPER_GO) {
				if (wake == 0 || at < wake)
					wake = at;
				continue;
			}
			cand[nc].lane = d->lanes[k];
			cand[nc].weight = d->lane_weight[k];
			cand[nc].warm_until = 0;
			if (p && p->nips) {
				uint64_t next;
				const struct config_ip *lip = lane_ip(s, p, d, k);
				if (lip && !sched_warm(s, lip, warmup_of(s->cfg, lip), d->site,
				    d->sdest, clock_wall_ms(), 0, &next))
					cand[nc].warm_until = mono_of(s, next);
			}
			map[nc++] = k;
		}
		if (unusable == (int)d->nlanes) {
			struct job_outcome o;
			char q[sizeof why * 4 + 1];

			if (d->nsessions > 0)
				return;		/* the open sessions carry the queue */
			trouble_from_local(&o, why);
			o.ip = why_ip;
			log_warn("scheduler", "dest=%s no usable source address pool=%s reason=\"%s\"; "
			    "deferring %zu queued job(s)", d->key, d->pool, quote(q, sizeof q, why),
			    d->queued);
			sched_fail_queue(s, d, &o);
			return;
		}
		if (nc == 0)
			break;
		if (s->nsessions >= s->max_sessions) {
			sched_wait_global(s, d);
			break;
		}
		pick = shaper_pick(&s->sh, cand, nc, p ? p->overflow : 1, now, &at, &idx);
		if (pick < 0) {
			/* -2: the turn of an IP out of warm-up budget (no
			 * overflow): the job waits for it. */
			if (at && (wake == 0 || at < wake))
				wake = at;
			/* every IP that could go is out of warm-up budget */
			warm_wait = 1;
			for (size_t i = 0; i < nc; i++)
				if (cand[i].warm_until <= now)
					warm_wait = 0;
			break;
		}
		size_t k = map[pick];
		struct sref *ref = xmalloc(sizeof *ref);
		const char *src = lane_src(d, k);

		ref->s = s;
		ref->d = d;
		ref->ep = s->epochs;
		ref->lane = d->lanes[k];
		d->lane_nsess[k]++;
		ref->cip = lane_ip(s, p, d, k);
		ref->cw = warmup_of(s->cfg, ref->cip);
		sched_relay(s->cfg, d, &ref->relay);
		shaper_lane_ref(ref->lane);
		shaper_connect(&s->sh, ref->lane, now);
		log_debug("scheduler", "dest=%s session from lane %s (%u of window %u)", d->key,
		    ref->lane->name, ref->lane->nconn, ref->lane->window);
		ref->ep->nsessions++;
		dest_session_opened(d);
		s->nsessions++;
		stats_session(s->st, d->pool, src, 1);
		ss = session_open_relay(s->loop, &s->ops, &s->epochs->scfg[d->lane_cfg[k]], d->mx,
		    src, d->lim.max_msgs_per_connection, ref, ref->relay.port ? &ref->relay : NULL);
		session_set_tls(ss, d->sts_enforce && !ref->relay.port ? TLS_POLICY_VERIFY :
		    (enum tls_policy)d->lim.tls);
	}
	if (d->queued <= d->nconnecting)
		return;
	if (full)
		sched_wait_lane(s, d);
	if (wake) {
		uint64_t until;
		if (!full && d->nsessions == 0 && wake > now + SHAPE_HOLD_MS &&
		    sched_lanes_held(d, now, &until)) {
			struct job *j;
			struct job_outcome o;
			trouble_outcome_init(&o, JOB_DEFERRED);
			trouble_set_reply(&o, "4.7.0 every source address of pool %s is suspended or "
			    "closed for %s for %llu s more", d->pool, d->sdest,
			    (unsigned long long)((until - now + 999) / 1000));
			o.no_attempt = 1;
			log_info("scheduler", "dest=%s every lane is suspended or closed; %zu queued "
			    "job(s) wait in Redis for %llu s", d->key, d->queued,
			    (unsigned long long)((until - now + 999) / 1000));
			while ((j = dest_pop_any(d)) != NULL) {
				struct job_outcome oj = o;
				ledger_settle_at(s->lg, j, &oj, sched_resume_wall(s, j, until));
			}
			return;
		}
		if (!full && d->nsessions == 0 && warm_wait && wake > now + SHAPE_HOLD_MS) {
			/* Out of warm-up budget for a while (a day's cap
			 * spent, no overflow): the queue waits in Redis for
			 * the next window, deferred, not failed. */
			struct job *j;
			struct job_outcome o;
			trouble_outcome_init(&o, JOB_DEFERRED);
			trouble_set_reply(&o, "4.7.0 warm-up budget of pool %s spent for %s; waiting "
			    "%llu s for the next window", d->pool, d->sdest,
			    (unsigned long long)((wake - now + 999) / 1000));
			o.no_attempt = 1;
			log_info("scheduler", "dest=%s warm-up budget spent; %zu queued job(s) wait in "
			    "Redis for %llu s", d->key, d->queued,
			    (unsigned long long)((wake - now + 999) / 1000));
			while ((j = dest_pop_any(d)) != NULL) {
				struct job_outcome oj = o;
				ledger_settle_at(s->lg, j, &oj, sched_resume_wall(s, j, wake));
			}
			return;
		}
		sched_arm(s, d, wake);
	}
}

static void
on_dest_retry(struct timer *t)
{
	struct dest *d = (struct dest *)((char *)t - offsetof(struct dest, retry_timer));
	struct sched *s = d->owner;
	uint64_t now = loop_now(s->loop);
	struct shaper_event ev;

	for (size_t k = 0; k < d->nlanes; k++)
		if (shaper_poll(&s->sh, d->lanes[k], now, &ev))
			sched_event(s, &ev);
	sched_kick(s, d);
}

/*
 * sched_fleet - the fleet-wide limits (shared through Redis) on a
 * session's next message: its destination's (site or domain
 * fleet_max_rate) and its source IP's. take 0: may one go at now? (1; 0
 * with *at, when to look again: the engine asks Redis for tokens
 * meanwhile). take 1: count the message. Nothing to do (1) when neither
 * is set.
 */
static int
sched_fleet(struct sched *s, const struct sref *ref, uint64_t now, int take, uint64_t *at)
{
	const struct dest *d = ref->d;
	uint64_t ipm = ref->cip ? pace_mph(&ref->cip->fleet_max_rate) : 0, a = 0, b = 0;
	char ipk[FLEET_KEY_MAX];
	int ok;

	if (d->fleet_mph == 0 && ipm == 0)
		return 1;
	if (ipm)
		snprintf(ipk, sizeof ipk, "ip:%s", ref->cip->addr);
	if (take) {
		fleet_take(&s->fleet, d->fleet_key, d->fleet_mph, now, &a);
		if (ipm)
			fleet_take(&s->fleet, ipk, ipm, now, &b);
		return 1;
	}
	ok = fleet_may(&s->fleet, d->fleet_key, d->fleet_mph, now, &a);
	if (ipm && !fleet_may(&s->fleet, ipk, ipm, now, &b)) {
		if (ok || b > a)
			a = b;
		ok = 0;
	}
	*at = a;
	return ok;
}

/* Something changed for d (new job, session freed): act on it. */
static void
sched_kick(struct sched *s, struct dest *d)
{
	struct session *idle;
	uint64_t now = loop_now(s->loop);

	if (s->stopping)
		return;
	/* Idle sessions first: a reused session costs nothing; each sends
	 * when its lane's pace allows (else the timer comes back then). */
	for (idle = d->idle; idle != NULL && d->queued > 0; ) {
		struct session *next = session_list_next(idle);
		struct sref *ref = session_owner(idle);
		struct job *expired = NULL, *j;
		uint64_t at;

		if (shaper_may_send(&s->sh, ref->lane, now, &at) != SHAPER_GO) {
			sched_arm(s, d, at);
			idle = next;
			continue;
		}
		if (!sched_warm(s, ref->cip, ref->cw, d->site, d->sdest, clock_wall_ms(), 0, &at)) {
			sched_arm(s, d, mono_of(s, at));
			idle = next;
			continue;
		}
		if (!sched_weight_ok(d, ref->lane, now, &at)) {
			sched_arm(s, d, at);
			idle = next;	/* another IP's turn (pool weights) */
			continue;
		}
		if (!sched_fleet(s, ref, now, 0, &at)) {
			sched_arm(s, d, at);
			idle = next;
			continue;
		}
		j = dest_pop(d, clock_wall_ms(), &expired);
		sched_settle_expired(s, expired);
		if (j == NULL)
			break;
		shaper_take(&s->sh, ref->lane, now);
		sched_weight_took(s, d, ref->lane);
		sched_fleet(s, ref, now, 1, &at);
		sched_warm(s, ref->cip, ref->cw, d->site, d->sdest, clock_wall_ms(), 1, &at);
		session_give(idle, j);	/* on_idle(idle, 0) unlinks it */
		idle = next;
	}
	if (d->queued == 0)
		return;
	/* New sessions: after the MX answer, as the lanes allow (a lane
	 * whose connections failed has a smaller window, or is closed). */
	if (!dest_wants_mx(d, now))
		return;
	d->resolving = 1;
	{
		/* A smarthost route: its host's addresses, no MX lookup. */
		const struct config_smarthost *h = config_smarthost_for(s->cfg, d->pool, d->domain);

		snprintf(d->q_route, sizeof d->q_route, "%s", h ? h->name : "");
		if (h != NULL) {
			d->sts_enforce = 0;
			dns_query_host(s->dns, h->host, on_mx, d);	/* may call on_mx at once */
		} else if (sched_sts_wanted(s, d, NULL)) {
			/* MTA-STS first: the destination waits for its policy
			 * (only when none is kept; meanwhile the MX lookup runs
			 * too, so the policy's wait is not added to it). */
			unsigned long before = s->sts_answers;

			mtasts_cache_get(s->sts, d->domain, s->cfg->mta_sts_port,
			    s->cfg->tls_ca_file, on_sts, d);		/* may call on_sts at once */
			if (s->sts_answers == before && !s->stopping)
				dns_query_mx(s->dns, d->domain, on_mx_prefetch, NULL);
		} else {
			d->sts_enforce = 0;
			dns_query_mx(s->dns, d->domain, on_mx, d);	/* may call on_mx at once */
		}
	}
}

/* --- session callbacks --- */

/*
 * sched_adopt - ss's destination has nothing left for it: hand the session
 * to a destination waiting for a slot of the same lane whose MX addresses
 * include the server ss talks to (session_serves: no name check on either
 * side), same pool and source settings. A thousand vanity domains hosted on
 * one provider's servers, sharing that site's few connections, then keep
 * those connections instead of closing one and opening another for each
 * domain's handful of messages. Looks at the first SCHED_ADOPT_SCAN
 * waiters only. 1: ss belongs to that destination now.
 */
#define SCHED_ADOPT_SCAN	16
static int
sched_adopt(struct sched *s, struct session *ss, struct sref *ref)
{
	struct dest *d = ref->d;
	struct shaper_lane *l = ref->lane;
	int k = lane_index(d, l), n = 0;

	if (k < 0 || d->sts_enforce || ref->relay.port)
		return 0;
	for (struct dest_lw *w = l->sched_wq_head; w && n < SCHED_ADOPT_SCAN; w = w->next, n++) {
		struct dest *o = w->d;
		int ko, which;

		if (o == d || o->queued == 0 || o->mx == NULL || o->sts_enforce ||
		    o->lim.tls != d->lim.tls || strcmp(o->pool, d->pool) != 0 ||
		    config_smarthost_for(s->cfg, o->pool, o->domain) != NULL)
			continue;
		if ((ko = lane_index(o, l)) < 0 || o->lane_cfg[ko] != d->lane_cfg[k] ||
		    (which = session_serves(ss, o->mx, (enum tls_policy)o->lim.tls)) == 0)
			continue;
		session_take_mx(ss, o->mx, which);
		if (d->lane_nsess[k] > 0)
			d->lane_nsess[k]--;
		dest_session_closed(d, 1);
		o->lane_nsess[ko]++;
		dest_session_opened(o);
		dest_session_established(o);
		ref->d = o;
		log_debug("scheduler", "dest=%s takes over a session of dest=%s peer=%s lane %s",
		    o->key, d->key, session_peer(ss), l->name);
		return 1;
	}
	return 0;
}

static struct job *
sop_next_job(struct session *ss)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct job *expired = NULL, *j;
	uint64_t now = loop_now(s->loop), at;

	if (s->stopping)
		return NULL;
	if (ref->d->queued == 0 && !sched_adopt(s, ss, ref))
		return NULL;
	if (shaper_may_send(&s->sh, ref->lane, now, &at) != SHAPER_GO) {
		/* The lane's pace (or a suspension): the session idles and
		 * the destination's timer hands it the job then. */
		sched_arm(s, ref->d, at);
		return NULL;
	}
	if (!sched_warm(s, ref->cip, ref->cw, ref->d->site, ref->d->sdest, clock_wall_ms(), 0, &at)) {
		/* Out of warm-up budget: the pool's other IPs' sessions
		 * take the queue; this one idles. */
		sched_arm(s, ref->d, mono_of(s, at));
		return NULL;
	}
	if (!sched_weight_ok(ref->d, ref->lane, now, &at)) {
		sched_arm(s, ref->d, at);	/* another IP's turn (pool weights) */
		return NULL;
	}
	if (!sched_fleet(s, ref, now, 0, &at)) {
		/* No fleet-wide token in hand: idle until the engine's
		 * request to Redis brings some (never send without one). */
		sched_arm(s, ref->d, at);
		return NULL;
	}
	j = dest_pop(ref->d, clock_wall_ms(), &expired);
	sched_settle_expired(s, expired);
	if (j != NULL) {
		shaper_take(&s->sh, ref->lane, now);
		sched_weight_took(s, ref->d, ref->lane);
		sched_fleet(s, ref, now, 1, &at);
		sched_warm(s, ref->cip, ref->cw, ref->d->site, ref->d->sdest, clock_wall_ms(), 1, &at);
	}
	return j;
}

/* A lane of d was suspended: its idle sessions to d have nothing to do
 * until the suspension ends; they QUIT now rather than at their idle
 * time-out. */
static void
sched_quit_lane_idle(struct dest *d, const struct shaper_lane *l)
{
	struct session *ss = d->idle, *next;

	for (; ss; ss = next) {
		struct sref *ref = session_owner(ss);
		next = session_list_next(ss);
		if (ref->lane == l)
			session_quit(ss);
	}
}

/* Whether d has a lane other than l that is neither suspended nor
 * closed, from a source that is not set aside. */
static int
sched_other_lane(struct sched *s, const struct dest *d, const struct shaper_lane *l,
    uint64_t now)
{
	for (size_t k = 0; k < d->nlanes; k++) {
		const struct shaper_lane *o = d->lanes[k];
		const char *ip = lane_src(d, k);
		if (o == l || o->suspended_until > now || o->closed_until > now)
			continue;
		if (ip && source_broken(s, ip))
			continue;
		return 1;
	}
	return 0;
}

/*
 * sched_react - the reaction rules (shaping_rule blocks) on a failed reply
 * of lane l: the first rule that matches counts it; when its threshold is
 * reached its action applies to the lane (scope site: every lane of the
 * destination), on top of what shaper_result() did with the verdict.
 */
static void
sched_react(struct sched *s, struct dest *d, struct shaper_lane *l,
    const struct smtp_result *r, const char *campaign, uint64_t now)
{
	const struct config *c = s->cfg;
	const struct reaction_rule *rule;
	struct shaper_lane *lanes[64];
	struct shaper_event ev;
	char reason[sizeof r->text + 200], thr[48], enh[16];
	const char *text;
	size_t n = 1;
	int code;

	if (c->nreactions == 0 || r->status == SMTP_OK || r->cause != SMTP_CAUSE_REPLY ||
	    r->code == 0)
		return;
	text = reaction_parse_reply(r->text, &code, enh);
	rule = reaction_match(c->reactions, c->nreactions, r->code, r->enh, text,
	    smtp_stage_name(r->stage), d->site, d->sdest);
	if (rule == NULL)
		return;
	if (rule->action == REACTION_SUSPEND && rule->scope == REACTION_SCOPE_CAMPAIGN) {
		/* Counted per campaign (across its lanes); the campaign is
		 * paused for every engine until the rule's time is up. */
		char key[SHAPER_LANE_MAX], by[200];
		uint64_t until;

		if (campaign == NULL || campaign[0] == '\0')
			return;		/* a job without a campaign: nothing to pause */
		snprintf(key, sizeof key, "campaign:%s", campaign);
		if (!reaction_count(&s->react, rule, key, now))
			return;
		until = clock_wall_ms() + rule->duration_ms;
		snprintf(by, sizeof by, "volley:shaping_rule:%s", rule->name);
		memset(&ev, 0, sizeof ev);
		snprintf(ev.lane, sizeof ev.lane, "%s", key);
		ev.action = SHAPER_PAUSED;
		snprintf(reason, sizeof reason, "rule %s (%s): %s", rule->name,
		    reaction_threshold_text(rule, thr, sizeof thr), r->text);
		snprintf(ev.reason, sizeof ev.reason, "%.*s", (int)sizeof ev.reason - 1, reason);
		ev.until = now + rule->duration_ms;
		ev.ts = now;
		sched_event(s, &ev);
		if (s->pause_campaign)
			s->pause_campaign(s->pause_arg, campaign, until, by);
		return;
	}
	if (!reaction_count(&s->react, rule, l->name, now))
		return;
	snprintf(reason, sizeof reason, "rule %s (%s): %s", rule->name,
	    reaction_threshold_text(rule, thr, sizeof thr), r->text);
	lanes[0] = l;
	if (rule->action == REACTION_SUSPEND && rule->scope == REACTION_SCOPE_SITE)
		n = shaper_lanes_to(&s->sh, d->sdest, lanes, sizeof lanes / sizeof lanes[0]);
	for (size_t i = 0; i < n; i++) {
		if (!shaper_react(&s->sh, lanes[i], now, rule, reason, &ev))
			continue;
		sched_event(s, &ev);
		if (ev.action == SHAPER_SUSPENDED)
			sched_quit_lane_idle(d, lanes[i]);
	}
}

/*
 * sched_rates_react - the feedback loop's suspend or throttle (a
 * threshold, rates.h) on this engine's lanes to site from ip (NULL: from
 * every IP), through the shaper as a reaction rule would. Returns how
 * many lanes changed.
 */
int
sched_rates_react(struct sched *s, const char *ip, const char *site, int suspend,
    uint64_t mph, uint64_t duration_ms, const char *reason)
{
	struct shaper_lane *lanes[64];
	struct reaction_rule rule;
	struct shaper_event ev;
	size_t n, iplen = ip ? strlen(ip) : 0;
	int changed = 0;

	memset(&rule, 0, sizeof rule);
	rule.name = (char *)"threshold";
	rule.action = suspend ? REACTION_SUSPEND : REACTION_THROTTLE;
	rule.scope = REACTION_SCOPE_IP;
	rule.mph = mph;
	rule.duration_ms = duration_ms;
	n = shaper_lanes_to(&s->sh, site, lanes, sizeof lanes / sizeof lanes[0]);
	for (size_t i = 0; i < n; i++) {
		if (ip != NULL && (strncmp(lanes[i]->name, ip, iplen) != 0 ||
		    lanes[i]->name[iplen] != '/'))
			continue;
		if (!shaper_react(&s->sh, lanes[i], loop_now(s->loop), &rule, reason, &ev))
			continue;
		sched_event(s, &ev);
		changed++;
	}
	return changed;
}

static void
sop_on_result(struct session *ss, struct job *j, const struct smtp_result *r)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct dest *d = ref->d;
	struct job_outcome o;
	struct shaper_verdict v;
	struct shaper_event ev;
	uint64_t now = loop_now(s->loop), until;

	trouble_from_smtp(s->rules, r, 1, &o);
	o.mx = session_mx(ss);
	o.ip = session_local_ip(ss);
	o.tls = session_tls(ss);
	if (o.source_fault && session_src_ip(ss)[0] && !s->stopping) {
		/* Not the destination's fault nor the job's: another source
		 * takes it (the session reports the failure next). */
		dest_push(d, j, now);
		return;
	}
	shaper_verdict_of(&o, &v);
	if (!o.source_fault && shaper_result(&s->sh, ref->lane, now, &v, &ev)) {
		sched_event(s, &ev);
		if (ev.action == SHAPER_SUSPENDED)
			sched_quit_lane_idle(d, ref->lane);
	}
	if (!o.source_fault)
		sched_react(s, d, ref->lane, r, j->campaign, now);
	if (v.reputation && !s->stopping && sched_other_lane(s, d, ref->lane, now)) {
		/* Our IP is blocked, not the recipient: another IP of the
		 * pool takes the job (each block counts toward suspending
		 * this lane, so this ends). */
		char q[sizeof o.reply * 4 + 1];
		log_info("scheduler", "dest=%s job=%s blocked from %s reason=\"%s\"; another "
		    "address of pool %s takes it", d->key, j->key, ref->lane->ip->addr,
		    quote(q, sizeof q, o.reply), d->pool);
		dest_push(d, j, now);
		return;
	}
	if (o.status == JOB_DELIVERED) {
		d->delivered++;
		stats_site_delivered(s->st, d->site, strcmp(o.tls, "none") != 0);
	} else if (o.status == JOB_BOUNCED)
		d->bounced++;
	else
		d->deferred++;
	stats_result(s->st, d->pool, session_src_ip(ss), o.status);
	if (o.status == JOB_DEFERRED && sched_lanes_held(d, now, &until))
		ledger_settle_at(s->lg, j, &o, sched_resume_wall(s, j, until));
	else
		ledger_settle(s->lg, j, &o);
	/* Clean results grow the lane's window: use the room at once. */
	if (!s->stopping && ref->lane->nconn < ref->lane->window) {
		if (d->queued > d->nconnecting + 1)	/* this session takes one */
			sched_kick(s, d);
		sched_kick_waiters(s, ref->lane);
	}
}

static void
sop_on_site_failure(struct session *ss, const struct smtp_result *r)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct dest *d = ref->d;
	struct job_outcome o;
	unsigned others;
	char q[sizeof o.reply * 4 + 1];

	struct shaper_verdict v;
	struct shaper_event ev;
	uint64_t now = loop_now(s->loop);

	trouble_from_site(s->rules, r, &o);
	o.mx = NULL;
	o.ip = session_local_ip(ss);
	if (!o.source_fault) {
		/* The lane's window shrinks; a failed cohort closes it (no
		 * new connection until the closure ends). */
		shaper_verdict_of(&o, &v);
		if (shaper_result(&s->sh, ref->lane, now, &v, &ev))
			sched_event(s, &ev);
		sched_react(s, d, ref->lane, r, NULL, now);
	}
	others = dest_site_failed(d, now, 0);
	if (others > 0) {
		/* Other sessions are open or still connecting: the site may
		 * just take no more connections (a provider's per-IP limit).
		 * They carry the queue; the last one to fail defers it. */
		log_warn("dest", "dest=%s a new connection failed on every MX reason=\"%s\"; %u "
		    "other session(s) carry the queue, lane %s window %u", d->key,
		    quote(q, sizeof q, o.reply), others, ref->lane->name, ref->lane->window);
		return;
	}
	log_warn("dest", "dest=%s every MX failed reason=\"%s\"; deferring %zu queued job(s)",
	    d->key, quote(q, sizeof q, o.reply), d->queued);
	sched_fail_queue(s, d, &o);
}

/*
 * A session could not even start from its source (socket or bind failed,
 * or no MX address of its family): this host's fault. A source that
 * cannot be bound is set aside for every destination; the pool's other
 * addresses carry the queue (on_closed kicks the destination, and the
 * queue is deferred only when no address is usable). The destination is
 * not blamed.
 */
static void
sop_on_source_failure(struct session *ss, const struct smtp_result *r)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct dest *d = ref->d;
	const char *ip = session_src_ip(ss);
	int fam = conn_ip_family(ip);
	char q[sizeof r->text * 4 + 1];

	if (ip[0] == '\0') {
		sop_on_site_failure(ss, r);	/* the default source: nothing to switch to */
		return;
	}
	if (d->mx && fam != AF_UNSPEC && mxset_count_family(d->mx, fam) == 0)
		return;		/* not the address's fault: sched_pick_source skips it here */
	log_warn("scheduler", "source %s: reason=\"%s\"; set aside for %d s, the pool's other "
	    "addresses carry %s", ip, quote(q, sizeof q, r->text), SOURCE_BROKEN_MS / 1000, d->key);
	source_set_aside(s, ip, r->text);
}

static void
sop_on_established(struct session *ss)
{
	struct sref *ref = session_owner(ss);

	dest_session_established(ref->d);
	stats_site_session(ref->s->st, ref->d->site, strcmp(session_tls(ss), "none") != 0);
}

static void
sop_on_idle(struct session *ss, int idle)
{
	struct sref *ref = session_owner(ss);
	struct dest *d = ref->d;

	if (idle) {
		ref->lane->sched_idle++;
		session_list_set_prev(ss, NULL);
		session_list_set_next(ss, d->idle);
		if (d->idle)
			session_list_set_prev(d->idle, ss);
		d->idle = ss;
		/* Stopping; another destination waits for the lane's slot; or
		 * the lane is suspended and has nothing to send for a while. */
		if (ref->s->stopping || (d->queued == 0 && sched_lane_wanted(ref->s, ref->lane)) ||
		    ref->lane->suspended_until > loop_now(ref->s->loop))
			session_quit(ss);
	} else {
		struct session *p = session_list_prev(ss), *n = session_list_next(ss);
		if (ref->lane->sched_idle > 0)
			ref->lane->sched_idle--;
		if (p)
			session_list_set_next(p, n);
		else if (d->idle == ss)
			d->idle = n;
		if (n)
			session_list_set_prev(n, p);
		session_list_set_next(ss, NULL);
		session_list_set_prev(ss, NULL);
	}
}

static void
sop_on_closed(struct session *ss)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct dest *d = ref->d, *w;
	struct shaper_lane *lane = ref->lane;
	int lk = lane_index(d, lane);

	if (lk >= 0 && d->lane_nsess[lk] > 0)
		d->lane_nsess[lk]--;
	dest_session_closed(d, session_was_established(ss));
	s->nsessions--;
	stats_session(s->st, d->pool, session_src_ip(ss), -1);
	shaper_disconnect(&s->sh, lane);
	ref->ep->nsessions--;
	free(ref);
	if (s->epochs->next)
		epochs_collect(s);
	if (s->stopping) {
		shaper_lane_unref(lane);
		return;
	}
	if (d->queued > 0)
		sched_kick(s, d);
	/* A slot of this lane is free: the destinations waiting for it try
	 * again (the lane is still referenced here). */
	sched_kick_waiters(s, lane);
	shaper_lane_unref(lane);
	/* A global slot is free: give it to a waiting destination. */
	while (s->nsessions < s->max_sessions && (w = dests_next_waiting(&s->ds)) != NULL)
		sched_kick(s, w);
}

/* --- public --- */

struct sched *
sched_new(struct loop *l, struct dns *dns, struct ledger *lg, struct stats *st,
    const struct config *cfg, const struct classify_rules *rules, unsigned fd_cap)
{
	struct sched *s = xcalloc(1, sizeof *s);

	s->loop = l;
	s->dns = dns;
	s->lg = lg;
	s->st = st;
	s->cfg = cfg;
	s->rules = rules;
	s->fd_cap = fd_cap;
	s->max_sessions = cfg->max_sessions < fd_cap ? cfg->max_sessions : fd_cap;
	s->epochs = epoch_new(cfg, NULL);
	{
		struct shaper_params p;
		shaper_params_from_config(cfg, &p);
		shaper_init(&s->sh, &p);
	}
	reaction_state_init(&s->react);
	stats_set_shaper(st, &s->sh);
	fleet_init(&s->fleet, clock_wall_ms() ^ ((uint64_t)getpid() << 32));
	stats_set_fleet(st, &s->fleet);
	s->ops.next_job = sop_next_job;
	s->ops.on_result = sop_on_result;
	s->ops.on_site_failure = sop_on_site_failure;
	s->ops.on_established = sop_on_established;
	s->ops.on_idle = sop_on_idle;
	s->ops.on_closed = sop_on_closed;
	s->ops.on_source_failure = sop_on_source_failure;
	s->sts = mtasts_cache_new(l, dns);
	warm_preload(s);
	sched_smarthost_log(cfg);
	return s;
}

int
sched_free(struct sched *s)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (s == NULL)
		return 0;
	if (s->nsessions > 0)
		return -1;
	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *d = v;
		struct job *j;
		timer_cancel(s->loop, &d->retry_timer);
		while ((j = dest_pop_any(d)) != NULL)
			ledger_forget(s->lg, j);
	}
	dests_free(&s->ds);	/* drops the destinations' lane references */
	mtasts_cache_free(s->sts);
	stats_set_shaper(s->st, NULL);
	stats_set_fleet(s->st, NULL);
	shaper_free(&s->sh);
	reaction_state_free(&s->react);
	fleet_free(&s->fleet);
	it = 0;
	while (map_iter(&s->broken, &it, &k, &v))
		free(v);
	map_free(&s->broken);
	it = 0;
	while (map_iter(&s->warm, &it, &k, &v)) {
		struct warm *w = v;
		free(w->ip);
		free(w->site);
		free(w);
	}
	map_free(&s->warm);
	while (s->epochs) {
		struct epoch *ep = s->epochs;
		s->epochs = ep->next;
		epoch_free(ep);
	}
	free(s);
	return 0;
}

void
sched_set_config(struct sched *s, struct config *cfg, int owned_old,
    const struct classify_rules *rules)
{
	struct epoch *ep = epoch_new(cfg, cfg);
	const char *k;
	void *v;
	size_t it = 0;

	if (!owned_old)
		s->epochs->cfg = NULL;	/* the caller frees its own */
	ep->next = s->epochs;
	s->epochs = ep;
	s->cfg = cfg;
	s->rules = rules;
	s->max_sessions = cfg->max_sessions < s->fd_cap ? cfg->max_sessions : s->fd_cap;
	{
		struct shaper_params p;
		shaper_params_from_config(cfg, &p);
		shaper_set_params(&s->sh, &p);
	}
	reaction_state_clear(&s->react);	/* the rules may have changed */
	/* Lanes are looked up again: new pools, limits, sites. Open
	 * sessions keep their lane until they close. */
	s->gen++;
	while (map_iter(&s->ds.map, &it, &k, &v))
		sched_dest_lanes(s, v);
	/* A destination that waited for a full lane left its (old) lanes'
	 * queues with the rebuild: every one with jobs looks again now. */
	it = 0;
	while (map_iter(&s->ds.map, &it, &k, &v))
		if (((struct dest *)v)->queued > 0)
			sched_kick(s, v);
	warm_preload(s);
	sched_smarthost_log(cfg);
	epochs_collect(s);
}

void
sched_set_owner(struct sched *s, const struct route_owner *own)
{
	s->own = own;
	s->gen++;	/* lanes are built again */
}

void
sched_route(struct sched *s, struct job *j)
{
	const char *pool = j->pool ? j->pool : "default";
	struct dest *d;
	struct job *out;
	struct job_outcome o;

	if (config_pool(s->cfg, pool) == NULL) {
		char why[300];
		snprintf(why, sizeof why, "unknown pool '%s'", pool);
		ledger_fail(s->lg, j, why);
		return;
	}
	if (route_pool_foreign(s->own, s->cfg, pool)) {
		ledger_hand_over(s->lg, j);	/* the pool became another host's */
		return;
	}
	if (clock_wall_ms() >= j->expires_at_ms) {
		trouble_expired(j, j->attempts, j->last_reply, &o);
		ledger_settle(s->lg, j, &o);
		return;
	}
	if (s->stopping) {
		ledger_hand_back(s->lg, j);
		return;
	}
	d = dests_get(&s->ds, pool, j->domain);
	if (d->owner == NULL)
		d->owner = s;
	/* One slow destination must not fill memory and hold back the
	 * others: past its share, its jobs wait in Redis. A job of a higher
	 * priority class takes the room of the newest lower one. */
	out = dest_push_capped(d, j, loop_now(s->loop), s->cfg->max_queued_per_dest);
	if (out != NULL) {
		if (d->parked++ % 1000 == 0)
			log_info("scheduler", "dest=%s holds %zu jobs (smtp.max_queued_per_destination); "
			    "more wait in Redis (%llu so far)", d->key, d->queued,
			    (unsigned long long)d->parked);
		ledger_park(s->lg, out, clock_wall_ms() + PARK_MS + (uint64_t)(d->queued % 1000));
		if (out == j)
			return;
	}
	sched_kick(s, d);
}

void
sched_set_pause_hook(struct sched *s, void (*fn)(void *arg, const char *campaign,
    uint64_t until_wall, const char *by), void *arg)
{
	s->pause_campaign = fn;
	s->pause_arg = arg;
}

size_t
sched_park_queued(struct sched *s, int (*due_of)(void *arg, const struct job *j, uint64_t *due),
    void *arg)
{
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *d = v;
		struct job *keep = NULL, **tail = &keep, *j;
		uint64_t due;

		if (d->queued == 0)
			continue;
		while ((j = dest_pop_any(d)) != NULL) {
			if (due_of(arg, j, &due)) {
				ledger_park(s->lg, j, due);
				n++;
			} else {
				*tail = j;
				tail = &j->next;
			}
		}
		/* The others go back in the order they were queued. */
		while ((j = keep) != NULL) {
			keep = j->next;
			dest_push(d, j, d->last_used);
		}
	}
	return n;
}

void
sched_stop(struct sched *s)
{
	const char *k;
	void *v;
	size_t it = 0;

	s->stopping = 1;
	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *d = v;
		struct job *j;
		timer_cancel(s->loop, &d->retry_timer);
		while ((j = dest_pop_any(d)) != NULL)
			ledger_hand_back(s->lg, j);
		while (d->idle)
			session_quit(d->idle);
	}
	while (dests_next_waiting(&s->ds) != NULL)
		;
	it = 0;
	while (map_iter(&s->ds.map, &it, &k, &v))
		sched_lw_remove(s, v);
}

void
sched_halt(struct sched *s)
{
	s->stopping = 1;
	stats_detach(s->st);	/* Redis goes next: no more shaping events */
	mtasts_cache_halt(s->sts);	/* DNS goes next too */
}

void
sched_quit_idle(struct sched *s)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&s->ds.map, &it, &k, &v))
		while (((struct dest *)v)->idle)
			session_quit(((struct dest *)v)->idle);
}

size_t
sched_sweep(struct sched *s)
{
	uint64_t now = loop_now(s->loop);
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	/* Slots are handed to their lane's waiters as they free up; anything
	 * that frees one some other way (a reload, a reopening) is caught
	 * here at the latest. */
	if (!s->stopping)
		sched_kick_waiters(s, NULL);
	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *d = v;
		if (!dest_sweepable(d, now, DEST_IDLE_MS) || timer_armed(&d->retry_timer) ||
		    d->lane_waiting)
			continue;
		dests_drop(&s->ds, d);	/* the slot's key is freed; k not used after */
		n++;
	}
	/* Closures and suspensions that ended with nobody waiting for
	 * them are still reported; then idle lanes nobody holds go. */
	it = 0;
	while (map_iter(&s->sh.lanes, &it, &k, &v)) {
		struct shaper_event ev;
		if (shaper_poll(&s->sh, v, now, &ev))
			sched_event(s, &ev);
	}
	shaper_sweep(&s->sh, now, DEST_IDLE_MS);
	reaction_sweep(&s->react, now, DEST_IDLE_MS * 100);
	fleet_sweep(&s->fleet, now, DEST_IDLE_MS);
	return n;
}

unsigned sched_sessions(const struct sched *s) { return s->nsessions; }
struct fleet *sched_fleet_cache(struct sched *s) { return &s->fleet; }
unsigned sched_max_sessions(const struct sched *s) { return s->max_sessions; }
const struct dests *sched_dests(const struct sched *s) { return &s->ds; }
