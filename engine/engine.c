/*
 * engine.c - `volley run`: wires the parts together and runs the loop.
 *
 * Life of a job, and the file that owns each step:
 *   Redis stream entry / leased retry          redis.c (the durable queue)
 *   -> decode, suppression check, body         intake.c
 *   -> held in memory until it settles         ledger.c
 *   -> destination queue, sessions, MX         scheduler.c, dest.c, dns.c
 *   -> one SMTP transaction                    session.c, smtp_client.c
 *   -> what the result means                   trouble.c
 *   -> final event + ack, or deferral          ledger.c -> redis.c
 *   bounces and complaints that come back      inbound.c -> redis.c
 *
 * This file owns the tick (reads, retries, takeover, lease refresh,
 * stats, sweep), stopping (SIGTERM/SIGINT: finish what is in flight for
 * smtp.stop_timeout, then abort and defer), draining (--drain) and the
 * SIGHUP reload.
 */
#include "engine.h"
#include "classify.h"
#include "config.h"
#include "conn.h"
#include "dns.h"
#include "fleet.h"
#include "inbound.h"
#include "intake.h"
#include "ledger.h"
#include "listener.h"
#include "loop.h"
#include "map.h"
#include "rates.h"
#include "redis.h"
#include "route.h"
#include "scheduler.h"
#include "signer.h"
#include "session.h"
#include "stats.h"
#include "util.h"
#include "version.h"

#include <errno.h>
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine {
	struct loop *loop;
	uint64_t trim_at;		/* trim_tick: last look (loop ms) */
	unsigned trim_mark, trim_last;	/* sessions at the last trim, at the last look */
	struct config *cfg;		/* the running configuration */
	struct config *first_cfg;	/* the caller's; Redis and DNS keep using it */
	const char *config_path;
	struct engine_opts opts;
	struct rq *rq;
	struct dns *dns;
	struct classify_rules *rules;
	struct ledger *lg;
	struct intake *in;
	struct signer *signer;		/* DKIM signing threads, or NULL */
	struct inbound *inb;		/* DSNs and feedback reports in */
	struct sched *sched;
	struct stats *st;
	struct listener *li;		/* inbound.listen; NULL when unset */
	struct route_owner own[2];	/* which pool IPs are ours: the running
					 * configuration's, and the one before */
	int own_cur;
	int stream_empty, stopping, stopped, drain_checking;
	int aborting;			/* stop deadline passed: sessions aborted */
	int tearing_down;		/* Redis is being freed: ask it nothing more */
	uint64_t stop_deadline;
	struct timer tick;
	struct loop_hook hook;
	uint64_t last_retry_poll, last_claim, last_refresh, last_stats, last_progress, last_sweep;
	uint64_t started_wall;
	uint64_t last_rates;		/* the feedback loop's last look (mono ms) */
	int rates_reading;		/* a read of the rate counters in flight */
	uint64_t last_held;		/* the last read of shaping:held (mono ms) */
	int held_reading;		/* that read in flight */
	struct map held_seen;		/* "FIELD UNTIL" of the holds applied here */
};

static volatile sig_atomic_t sig_stop, sig_hup;

/* --- reading --- */

/*
 * read_room_for - how many jobs the next read may bring: within
 * smtp.max_ready jobs and smtp.max_ready_bytes of bodies held. The high
 * stream (high = 1) has a reserve on top of both, a tenth of each (at
 * least one read batch of jobs), so that a full read-ahead of bulk mail
 * never keeps a password reset waiting in Redis.
 */
static unsigned
read_room_for(struct engine *e, int high)
{
	size_t cap = e->cfg->max_ready, held = ledger_count(e->lg);
	uint64_t bcap = e->cfg->max_ready_bytes;
	size_t bytes = ledger_bytes(e->lg) + intake_bytes(e->in);

	if (high) {
		cap += cap / 10 > e->cfg->read_batch ? cap / 10 : e->cfg->read_batch;
		bcap += bcap / 10;
	}
	if (e->stopping || held >= cap || bytes >= bcap ||
	    intake_holding(e->in, loop_now(e->loop)))
		return 0;
	return (unsigned)(cap - held < e->cfg->read_batch ? cap - held : e->cfg->read_batch);
}

static unsigned
read_room(struct engine *e)
{
	return read_room_for(e, 0);
}

/* Read the jobs streams if either has room. */
static void
fetch_streams(struct engine *e)
{
	unsigned room = read_room(e), high = read_room_for(e, 1);

	if (room || high)
		rq_fetch(e->rq, room, high);
}

static void
on_jobs(void *arg, enum job_origin origin, const struct rq_entry *entries, size_t n)
{
	struct engine *e = arg;

	intake_on_entries(e->in, origin, entries, n);
}

static int
holds(void *arg, const char *key)
{
	struct engine *e = arg;

	return ledger_find(e->lg, key) != NULL;
}

static void
on_read_done(void *arg, enum job_origin origin, size_t n)
{
	struct engine *e = arg;
	unsigned room = read_room(e);

	if (origin != JOB_FROM_RETRY) {
		e->stream_empty = n == 0;
		if (n > 0)
			fetch_streams(e);	/* more may be waiting */
	} else if (n > 0 && room > 0) {
		rq_fetch_retries(e->rq, room, clock_wall_ms());
	}
}

/* A shaping rule with scope campaign: pause it for every engine until
 * until_wall (a pause with an end, in Redis; intake sees it within a
 * second, here too, and the first engine to read it past its end
 * resumes it). */
static void
engine_pause_campaign(void *arg, const char *campaign, uint64_t until_wall, const char *by)
{
	struct engine *e = arg;

	log_warn("engine", "campaign '%s' paused by %s for %llus", campaign, by,
	    (unsigned long long)((until_wall - clock_wall_ms()) / 1000));
	if (rq_pause_until(e->rq, 0, campaign, clock_wall_ms(), until_wall, by) < 0)
		log_error("engine", "campaign '%s': cannot write the pause to Redis (not "
		    "connected); the rule fires again if the replies go on", campaign);
}

static void
on_connected(void *arg)
{
	struct engine *e = arg;

	e->stream_empty = 0;
	/* Warm-up counters and kept MTA-STS policies first: answered
	 * before the jobs arrive. */
	sched_warm_sync(e->sched, e->rq, 0);
	sched_sts_attach(e->sched, e->rq);
	fetch_streams(e);
}

/* --- draining --- */

static void
on_drain_check(void *arg, int empty)
{
	struct engine *e = arg;

	e->drain_checking = 0;
	if (empty && ledger_count(e->lg) == 0 && sched_sessions(e->sched) == 0 &&
	    rq_outstanding(e->rq) == 0 && !sched_warm_busy(e->sched)) {
		log_info("engine", "drained: nothing unread, pending, scheduled or in a session");
		e->stopped = 1;
		loop_stop(e->loop);
	}
}

static void
drain_check(struct engine *e)
{
	int idle = e->stream_empty && ledger_count(e->lg) == 0 && rq_outstanding(e->rq) == 0;

	/* Nothing left to send: idle sessions need not wait out smtp.idle. */
	if (!e->drain_checking && idle && sched_sessions(e->sched) > 0)
		sched_quit_idle(e->sched);
	if (e->drain_checking || !idle || sched_sessions(e->sched) || rq_read_busy(e->rq) ||
	    !rq_connected(e->rq))
		return;
	e->drain_checking = 1;
	if (rq_drain_check(e->rq, on_drain_check, e) != 0)
		e->drain_checking = 0;
}

/* --- pool ownership --- */

/*
 * engine_ownership - decide which pool IPs of c are ours (route.h): an
 * IP with an explicit `instance` is ours if our name matches; any other
 * is tested with a bind() (EADDRNOTAVAIL: not an address of this host).
 * Logs the pools that are not ours or only partly, and tells the parts.
 * Called before the components get c (SIGHUP): the scheduler builds
 * its lanes from c with this table. The previous table is kept until the
 * next call, as the components point at it until they switch over.
 */
static void
engine_ownership(struct engine *e, const struct config *c)
{
	size_t nips = route_ip_count(c), k = 0, nown = 0;
	enum route_bind *bind = xcalloc(nips + 1, sizeof *bind);
	struct route_owner *o;
	const char **owned;

	for (size_t i = 0; i < c->npools; i++)
		for (size_t j = 0; j < c->pools[i].nips; j++, k++) {
			const struct config_ip *ip = &c->pools[i].ips[j];
			int err;

			if (ip->instance != NULL)
				continue;	/* explicit: no test */
			if (!c->detect_ips) {
				bind[k] = ROUTE_BIND_OK;	/* ours: a bind failure is the send path's */
				continue;
			}
			err = conn_test_bind(ip->addr);
			bind[k] = err == 0 ? ROUTE_BIND_OK : err == EADDRNOTAVAIL ?
			    ROUTE_BIND_NOT_HERE : ROUTE_BIND_ERROR;
			if (bind[k] == ROUTE_BIND_ERROR)
				log_warn("engine", "pool=%s ip=%s: test bind failed: %s (kept as this "
				    "host's)", c->pools[i].name, ip->addr, strerror(err));
		}
	e->own_cur ^= 1;
	o = &e->own[e->own_cur];
	route_owner_decide(o, c, c->instance, bind);
	free(bind);
	owned = xcalloc(c->npools + 1, sizeof *owned);
	k = 0;
	for (size_t i = 0; i < c->npools; i++) {
		size_t mine = 0, nip = c->pools[i].nips;

		for (size_t j = 0; j < nip; j++)
			mine += route_ip_ours(o, k + j);
		k += nip;
		if (o->pool_ours[i])
			owned[nown++] = c->pools[i].name;
		if (nip > 0 && mine == 0)
			log_info("engine", "pool=%s: none of its %zu IP(s) is this host's; its jobs "
			    "are handed over to its owners (retry:pool:%s)", c->pools[i].name, nip,
			    c->pools[i].name);
		else if (o->pool_shared[i])
			log_info("engine", "pool=%s: %zu of its %zu IP(s) are this host's; its "
			    "deferred jobs wait in retry:pool:%s", c->pools[i].name, mine, nip,
			    c->pools[i].name);
	}
	ledger_set_owner(e->lg, o);
	intake_set_owner(e->in, o);
	sched_set_owner(e->sched, o);
	rq_set_retry_pools(e->rq, owned, nown);
	free(owned);
}

/* The scheduler's question about each queued job after a reload: is its
 * pool now another host's? Then it goes back to Redis for its owners. */
static int
queued_foreign(void *arg, const struct job *j, uint64_t *due)
{
	struct engine *e = arg;

	if (!route_pool_foreign(&e->own[e->own_cur], e->cfg, j->pool ? j->pool : "default"))
		return 0;
	*due = clock_wall_ms();
	return 1;
}

/* --- stopping and reloading --- */

static void
begin_stop(struct engine *e, const char *why)
{
	if (e->stopping)
		return;
	log_info("engine", "%s: no new jobs; finishing what is in flight", why);
	e->stopping = 1;
	e->stop_deadline = loop_now(e->loop) + e->cfg->stop_ms;
	intake_set_stopping(e->in);
	sched_stop(e->sched);
	listener_stop(e->li);
}

/* engine_reload - SIGHUP: load the file again; on success new sessions use
 * the new pools, limits, timeouts and rules. Redis, DNS and instance
 * settings take effect at the next start. */
static void
engine_reload(struct engine *e)
{
	struct config *nc, *old = e->cfg;
	struct classify_rules *rules = NULL;
	char *errors = NULL;
	uint64_t t0 = clock_mono_ms();

	if (e->config_path == NULL) {
		log_warn("engine", "SIGHUP: running on built-in defaults, nothing to reload");
		return;
	}
	nc = config_load(e->config_path, &errors);
	if (nc == NULL) {
		log_error("engine", "SIGHUP: %s is invalid, keeping the running configuration: %s",
		    e->config_path, errors ? errors : "?");
		free(errors);
		return;
	}
	free(errors);
	errors = NULL;
	if (nc->classify_rules) {
		rules = classify_rules_load(nc->classify_rules, &errors);
		if (rules == NULL) {
			log_error("engine", "SIGHUP: %s; keeping the running configuration", errors);
			free(errors);
			config_free(nc);
			return;
		}
	} else {
		rules = classify_rules_builtin();
	}
	if (strcmp(nc->redis_url, old->redis_url) != 0 || strcmp(nc->prefix, old->prefix) != 0 ||
	    strcmp(nc->instance, old->instance) != 0 || nc->ndns_servers != old->ndns_servers ||
	    nc->dns_allow_private != old->dns_allow_private)
		log_warn("engine", "SIGHUP: redis, instance and dns settings change at the next start");
	/* The instance name stays the one Redis knows us by. */
	free(nc->instance);
	nc->instance = xstrdup(e->first_cfg->instance);
	/* The scheduler owns every configuration but the first (the
	 * caller's, which Redis and DNS keep using) and frees each once no
	 * session uses it any more. */
	/* Signatures in flight keep their own copy of the old keys: the
	 * next ones take the new configuration's, nothing waits. */
	if (e->signer)
		signer_rekey(e->signer);
	/* Ownership again first (pools and IPs may have changed, and so may
	 * the host's addresses): the scheduler rebuilds its lanes with it. */
	engine_ownership(e, nc);
	sched_set_config(e->sched, nc, old != e->first_cfg, rules);
	classify_rules_free(e->rules);
	e->rules = rules;
	e->cfg = nc;
	ledger_set_config(e->lg, nc);
	intake_set_config(e->in, nc);
	inbound_set_config(e->inb, nc, rules);
	{
		size_t n = sched_park_queued(e->sched, queued_foreign, e);

		if (n > 0)
			log_info("engine", "SIGHUP: %zu queued job(s) of pools that are no longer "
			    "this host's were handed over", n);
	}
	log_info("engine", "SIGHUP: reloaded %s (%zu pool(s), %zu site(s), %zu domain rule(s)) in "
	    "%llu ms, %zu signature(s) in flight, %zu still to sign", e->config_path, nc->npools,
	    nc->nsites, nc->ndomains, (unsigned long long)(clock_mono_ms() - t0),
	    e->signer ? signer_pending(e->signer) : (size_t)0,
	    e->signer ? signer_to_sign(e->signer) : (size_t)0);
}

/* --- fleet-wide limits --- */

struct fleet_req {
	struct engine *e;
	char name[FLEET_KEY_MAX];
};

static void
on_fleet_grant(void *arg, int ok, uint32_t granted, uint64_t wait_ms)
{
	struct fleet_req *r = arg;
	struct engine *e = r->e;
	uint64_t now = loop_now(e->loop);

	if (ok)
		fleet_grant(sched_fleet_cache(e->sched), r->name, granted, wait_ms, now);
	else
		fleet_fail(sched_fleet_cache(e->sched), r->name, now);
	free(r);
}

/*
 * fleet_ask - at the end of each loop turn: one request to Redis per
 * fleet-wide limit that wants a batch of tokens (none when no fleet
 * limit is configured). Redis unusable: the limit waits (fleet_fail).
 */
static void
fleet_ask(struct engine *e)
{
	struct fleet *f = sched_fleet_cache(e->sched);
	struct fleet_ask asks[16];
	uint64_t now = loop_now(e->loop);
	size_t n;

	if (e->tearing_down)
		return;
	do {
		n = fleet_need(f, now, asks, sizeof asks / sizeof asks[0]);
		for (size_t i = 0; i < n; i++) {
			struct fleet_req *r = xmalloc(sizeof *r);

			r->e = e;
			memcpy(r->name, asks[i].name, sizeof r->name);
			if (rq_fleet_take(e->rq, asks[i].name, asks[i].n, asks[i].mph, asks[i].burst,
			    on_fleet_grant, r) != 0) {
				fleet_fail(f, asks[i].name, now);
				free(r);
			}
		}
	} while (n == sizeof asks / sizeof asks[0]);
}

/* --- the feedback loop: rates against thresholds (rates.h) --- */

#define RATES_EVERY_MS		5000	/* how often the counters are read */
#define RATES_EXPORT_EVERY_MS	10000	/* the same without thresholds, for the status */
#define RATES_EXPORT_MAX	50	/* names in the instance status */
#define HELD_EVERY_MS		1000	/* how often shaping:held is read */
#define HELD_MIN_LEFT_MS	1000	/* a hold about to end is not applied again */
#define RATES_MAX_NAMES		200	/* names judged per look, most recent first */
#define RATES_MAX_DECISIONS	64

/* One action under way: what its answer needs (the configuration may be
 * reloaded before it comes). */
struct rate_act {
	struct engine *e;
	enum rate_action action;
	enum rate_dim dim;
	char threshold[128], name[RATES_NAME_MAX + 1], site[128];
	char reason[300];
	uint64_t duration_ms, mph, until;
};

static void
on_rate_act(void *arg, int acted, void *tag)
{
	struct engine *e = arg;
	struct rate_act *a = tag;

	if (acted == 1 && !e->tearing_down) {
		log_warn("rates", "%s %s '%s': %s", rates_action_name(a->action),
		    rates_dim_name(a->dim), a->name, a->reason);
		switch (a->action) {
		case RATE_ACT_PAUSE:
			break;	/* every engine sees the pause hash within a second */
		case RATE_ACT_WARMUP_HOLD:
			if (sched_warm_hold(e->sched, a->name, a->reason, a->until) < 0)
				log_warn("rates", "threshold %s: %s is not a warming pool IP here; "
				    "nothing held", a->threshold, a->name);
			break;
		case RATE_ACT_SUSPEND:
		case RATE_ACT_THROTTLE: {
			/* Here at once; every engine (this one too) reads it
			 * from shaping:held within a second (held_apply). */
			const char *ip = a->dim == RATE_DIM_IP ? a->name : NULL;
			const char *site = a->dim == RATE_DIM_SITE ? a->name : a->site;
			int n = sched_rates_react(e->sched, ip, site, a->action == RATE_ACT_SUSPEND,
			    a->mph, a->duration_ms, a->reason);

			if (n == 0)
				log_info("rates", "threshold %s: no lane of this engine to %s%s%s yet; "
				    "the other engines apply it to theirs", a->threshold, site,
				    ip ? " from " : "", ip ? ip : "");
			break;
		}
		}
	}
	free(a);
}

/*
 * rates_export - the figures just read into the instance status: the
 * RATES_EXPORT_MAX names with the most outcomes over the day, one field
 * `rate:DIM:NAME` each (rates_entry_text); the fields of names no longer
 * among them go. An empty read (nothing counted, or an error) empties it.
 */
static void
rates_export(struct engine *e, const struct rate_entry *ent, size_t n, uint64_t now_wall)
{
	size_t idx[RATES_EXPORT_MAX], k = rates_top(ent, n, idx, RATES_EXPORT_MAX);
	char *fields[RATES_EXPORT_MAX], *values[RATES_EXPORT_MAX];

	for (size_t i = 0; i < k; i++) {
		const struct rate_entry *x = &ent[idx[i]];
		char v[300];

		fields[i] = xasprintf("rate:%s:%s", rates_dim_name(x->dim), x->name);
		values[i] = xstrdup(rates_entry_text(x, v, sizeof v));
	}
	rq_rates_export(e->rq, (const char *const *)fields, (const char *const *)values, k,
	    now_wall);
	for (size_t i = 0; i < k; i++) {
		free(fields[i]);
		free(values[i]);
	}
}

static void
on_rates(void *arg, struct rate_entry *ent, size_t n, uint64_t now_wall)
{
	struct engine *e = arg;
	const struct config *c = e->cfg;
	struct rate_decision d[RATES_MAX_DECISIONS];
	struct rate_held held;
	size_t nd;

	e->rates_reading = 0;
	if (e->tearing_down)
		return;
	rates_export(e, ent, n, now_wall);
	if (n == 0)
		return;
	nd = rates_evaluate(c->thresholds, c->nthresholds, ent, n, d, RATES_MAX_DECISIONS);
	for (size_t i = 0; i < nd; i++) {
		const struct rate_threshold *t = &c->thresholds[d[i].threshold];
		const struct rate_entry *x = &ent[d[i].entry];
		struct rate_act *a = xcalloc(1, sizeof *a);
		struct rq_rate_act ra;
		char lane[300];

		a->e = e;
		a->action = t->action;
		a->dim = x->dim;
		snprintf(a->threshold, sizeof a->threshold, "%s", t->name);
		snprintf(a->name, sizeof a->name, "%s", x->name);
		snprintf(a->site, sizeof a->site, "%s", t->site ? t->site : "");
		snprintf(a->reason, sizeof a->reason, "threshold %s: %s", t->name, d[i].reason);
		a->duration_ms = t->duration_ms;
		a->mph = t->mph;
		a->until = t->action == RATE_ACT_PAUSE ? 0 : now_wall + t->duration_ms;
		if (t->action == RATE_ACT_SUSPEND || t->action == RATE_ACT_THROTTLE)
			snprintf(lane, sizeof lane, "%s/%s", x->dim == RATE_DIM_IP ? x->name : "*",
			    x->dim == RATE_DIM_SITE ? x->name : a->site);
		else
			snprintf(lane, sizeof lane, "%s:%s", rates_dim_name(x->dim), x->name);
		memset(&ra, 0, sizeof ra);
		ra.threshold = t->name;
		ra.dim = x->dim;
		ra.name = x->name;
		ra.pause = t->action == RATE_ACT_PAUSE;
		/* Not again for the same window (a resumed campaign is not
		 * paused again at once), nor before an action has run out. */
		ra.marker_ms = d[i].window_ms > t->duration_ms ? d[i].window_ms : t->duration_ms;
		ra.lane = lane;
		ra.action = rates_action_name(t->action);
		ra.reason = a->reason;
		ra.now_wall_ms = now_wall;
		ra.until_wall_ms = a->until;
		if (t->action == RATE_ACT_SUSPEND || t->action == RATE_ACT_THROTTLE) {
			memset(&held, 0, sizeof held);
			snprintf(held.ip, sizeof held.ip, "%s", x->dim == RATE_DIM_IP ? x->name : "");
			snprintf(held.site, sizeof held.site, "%s",
			    x->dim == RATE_DIM_SITE ? x->name : a->site);
			held.suspend = t->action == RATE_ACT_SUSPEND;
			held.until_wall_ms = a->until;
			held.mph = t->mph;
			snprintf(held.reason, sizeof held.reason, "%s", a->reason);
			ra.held = &held;
		}
		if (rq_rates_act(e->rq, &ra, on_rate_act, e, a) != 0)
			free(a);
	}
}

/* Every RATES_EVERY_MS: one read of the counters of the dimensions some
 * threshold judges. Every engine looks; the marker makes one of them act.
 * Without thresholds, every RATES_EXPORT_EVERY_MS a read of the names of
 * every dimension for the instance status only (RATES_EXPORT_MAX names,
 * most recent first: a fraction of a millisecond of Redis time). */
static void
rates_tick(struct engine *e, uint64_t now)
{
	char dims[64] = "";
	const struct config *c = e->cfg;

	if (e->rates_reading)
		return;
	if (c->nthresholds == 0) {
		if (now - e->last_rates < RATES_EXPORT_EVERY_MS && e->last_rates != 0)
			return;
		e->last_rates = now;
		if (rq_rates_read(e->rq, clock_wall_ms(), "campaign:,tenant:,pool:,ip:,site:,",
		    RATES_EXPORT_MAX, on_rates, e) == 0)
			e->rates_reading = 1;
		return;
	}
	if (now - e->last_rates < RATES_EVERY_MS)
		return;
	e->last_rates = now;
	for (int d = 0; d < RATE_DIM__N; d++)
		for (size_t i = 0; i < c->nthresholds; i++)
			if (c->thresholds[i].per == (enum rate_dim)d) {
				size_t l = strlen(dims);
				snprintf(dims + l, sizeof dims - l, "%s:,", rates_dim_name((enum rate_dim)d));
				break;
			}
	if (rq_rates_read(e->rq, clock_wall_ms(), dims, RATES_MAX_NAMES, on_rates, e) == 0)
		e->rates_reading = 1;
}

/*
 * on_held - the suspensions and throttles every engine applies (recorded
 * by whichever engine's threshold acted, rq_rates_act): each one still
 * running is applied to this engine's lanes through the same path as a
 * threshold of its own, for what is left of it. The shaper leaves a lane
 * already suspended or throttled to that rate as it is, so each poll only
 * changes lanes opened since (or rebuilt by a reload). Logged once per
 * field and end.
 */
static void
on_held(void *arg, int ok, const struct rate_held *h, size_t n)
{
	struct engine *e = arg;
	uint64_t now_wall = clock_wall_ms();
	struct map seen = { 0 };

	e->held_reading = 0;
	if (e->tearing_down || !ok)
		return;
	for (size_t i = 0; i < n; i++) {
		char key[400];
		int changed;

		if (h[i].until_wall_ms < now_wall + HELD_MIN_LEFT_MS)
			continue;
		changed = sched_rates_react(e->sched, h[i].ip[0] ? h[i].ip : NULL, h[i].site,
		    h[i].suspend, h[i].mph, h[i].until_wall_ms - now_wall, h[i].reason);
		snprintf(key, sizeof key, "%s|%s %llu", h[i].ip, h[i].site,
		    (unsigned long long)h[i].until_wall_ms);
		if (map_get(&e->held_seen, key) == NULL || changed > 0)
			log_info("rates", "%s %s/%s for %llus (shaping:held): %d lane(s) of this "
			    "engine changed; %s", h[i].suspend ? "suspend" : "throttle",
			    h[i].ip[0] ? h[i].ip : "*", h[i].site,
			    (unsigned long long)((h[i].until_wall_ms - now_wall) / 1000), changed,
			    h[i].reason);
		map_put(&seen, key, (void *)1);
	}
	map_free(&e->held_seen);
	e->held_seen = seen;
}

/* Once a second: read shaping:held (every engine, thresholds or not). */
static void
held_tick(struct engine *e, uint64_t now)
{
	if (e->held_reading || (now - e->last_held < HELD_EVERY_MS && e->last_held != 0))
		return;
	e->last_held = now;
	if (rq_shaping_held(e->rq, clock_wall_ms(), on_held, e) == 0)
		e->held_reading = 1;
}

/* --- the tick --- */

/*
 * trim_tick - after a wave of new sessions (a cold start, a reconnect
 * storm) is over, give the heap the handshakes, DNS answers and replies of
 * that wave used and freed back to the system (malloc_trim): glibc keeps
 * it otherwise, and five thousand TLS handshakes leave several KB per
 * session of it behind. Once a second at most; the wave is over when the
 * session count moved by less than TRIM_STEADY in the last second after
 * moving by TRIM_WAVE since the last trim.
 */
#define TRIM_WAVE	1000
#define TRIM_STEADY	50
static void
trim_tick(struct engine *e, uint64_t now)
{
	unsigned n = sched_sessions(e->sched);
	unsigned moved = n > e->trim_mark ? n - e->trim_mark : e->trim_mark - n;
	unsigned recent = n > e->trim_last ? n - e->trim_last : e->trim_last - n;

	if (now - e->trim_at < 1000)
		return;
	e->trim_at = now;
	e->trim_last = n;
	if (moved < TRIM_WAVE || recent >= TRIM_STEADY)
		return;
	e->trim_mark = n;
	malloc_trim(0);
}

static void
on_tick(struct timer *t)
{
	struct engine *e = (struct engine *)((char *)t - offsetof(struct engine, tick));
	uint64_t now = loop_now(e->loop);
	uint64_t lease = e->cfg->lease_ms;

	if (sig_stop)
		begin_stop(e, "signal");
	if (sig_hup) {
		sig_hup = 0;
		engine_reload(e);
	}
	/* Warm-up counts to Redis and every host's totals back; when
	 * stopping, all of them at once (the stop waits for them). */
	if (rq_connected(e->rq))
		sched_warm_sync(e->sched, e->rq, e->stopping);
	if (e->stopping) {
		if (sched_sessions(e->sched) == 0 && rq_outstanding(e->rq) == 0 &&
		    !sched_warm_busy(e->sched) && listener_sessions(e->li) == 0) {
			e->stopped = 1;
			loop_stop(e->loop);
			return;
		}
		if (now >= e->stop_deadline && !e->aborting) {
			/* Sessions that did not finish in time give their jobs
			 * back (deferred); a few seconds more for the writes. */
			log_warn("engine", "stop: %u session(s) still busy after smtp.stop_timeout "
			    "(%llu ms); aborting them", sched_sessions(e->sched),
			    (unsigned long long)e->cfg->stop_ms);
			e->aborting = 1;
			e->stop_deadline = now + 5000;
			session_abort_all();
			listener_abort(e->li);
		} else if (now >= e->stop_deadline) {
			if (rq_outstanding(e->rq))
				log_error("engine", "stop: %zu settling write(s) could not reach Redis "
				    "(%s); those jobs stay pending and will be delivered again",
				    rq_outstanding(e->rq), rq_connected(e->rq) ? "no answer" : "not connected");
			if (sched_warm_busy(e->sched))
				log_error("engine", "stop: warm-up counts could not reach Redis; the "
				    "next start may send that many more from the warming IPs");
			e->stopped = 1;
			loop_stop(e->loop);
			return;
		}
	} else if (rq_connected(e->rq)) {
		unsigned room = read_room(e);
		/* Before this tick's reads, so that their being in flight
		 * does not hide an idle queue. */
		if (e->opts.drain)
			drain_check(e);
		intake_poll_pause(e->in, now);	/* paused campaigns/tenants, once a second */
		inbound_tick(e->inb, now);	/* bounces and complaints in */
		rates_tick(e, now);		/* thresholds on the rates */
		held_tick(e, now);		/* their suspensions, from every engine */
		trim_tick(e, now);		/* memory of a finished wave back */
		fetch_streams(e);
		if (room && now - e->last_retry_poll >= 500) {
			e->last_retry_poll = now;
			rq_fetch_retries(e->rq, room, clock_wall_ms());
		}
		if (room && now - e->last_claim >= (lease / 2 > 1000 ? lease / 2 : 1000)) {
			e->last_claim = now;
			rq_autoclaim(e->rq, room);
		}
		if (now - e->last_refresh >= lease / 3) {
			e->last_refresh = now;
			ledger_refresh_leases(e->lg);
		}
	}
	if (now - e->last_sweep >= 10000) {
		size_t nd = sched_sweep(e->sched), nb = intake_sweep(e->in);
		e->last_sweep = now;
		if (nd || nb)
			log_debug("engine", "sweep: %zu idle destination(s), %zu unused message "
			    "bod(ies) freed", nd, nb);
	}
	if (now - e->last_stats >= 1000) {
		e->last_stats = now;
		stats_publish(e->st, e->rq, sched_dests(e->sched), e->lg, sched_sessions(e->sched),
		    e->started_wall);
	}
	if (e->opts.progress && now - e->last_progress >= 1000) {
		e->last_progress = now;
		stats_progress(e->lg, sched_sessions(e->sched), e->started_wall, 0);
	}
	timer_set(e->loop, &e->tick, 100, on_tick);
}

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		sig_hup = 1;
	else
		sig_stop = 1;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;	/* no SA_RESTART: the ring wait returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void
on_turn_end(void *arg)
{
	struct engine *e = arg;

	fleet_ask(e);
	log_flush();
	if (sig_stop && !e->stopping)
		on_tick(&e->tick);
}

int
engine_run(struct config *cfg, const char *config_path, const struct engine_opts *o)
{
	struct engine *e = xcalloc(1, sizeof *e);
	struct rq_callbacks cb = { on_jobs, on_read_done, on_connected, holds };
	unsigned long nofile;
	unsigned fd_cap;
	char *err = NULL;

	e->cfg = e->first_cfg = cfg;
	e->config_path = config_path;
	e->opts = *o;
	e->started_wall = clock_wall_ms();
	nofile = loop_raise_nofile();
	/* One fd per session plus Redis, c-ares and the ring. */
	fd_cap = nofile > 128 ? (unsigned)(nofile - 64) : (unsigned)(nofile / 2 + 1);
	if (fd_cap < cfg->max_sessions)
		log_info("engine", "open file limit %lu: at most %u sessions (smtp.max_sessions %u; "
		    "raise the limit with ulimit -n / LimitNOFILE= for more)", nofile, fd_cap,
		    cfg->max_sessions);
	if (cfg->classify_rules) {
		e->rules = classify_rules_load(cfg->classify_rules, &err);
		if (e->rules == NULL)
			fatal("%s", err);
	} else {
		e->rules = classify_rules_builtin();
	}
	install_signals();
	log_set_buffered(1);
	e->loop = loop_new(4096, 4096, 4096);
	e->dns = dns_new(e->loop, cfg);
	e->rq = rq_new(e->loop, cfg, &cb, e);
	e->st = stats_new();
	e->lg = ledger_new(e->loop, e->rq, cfg);
	e->sched = sched_new(e->loop, e->dns, e->lg, e->st, cfg, e->rules, fd_cap);
	e->in = intake_new(e->loop, e->rq, e->lg, e->sched, cfg);
	sched_set_pause_hook(e->sched, engine_pause_campaign, e);
	if (cfg->dkim_threads > 0) {
		/* Room for every job the read-ahead may hold, so the loop
		 * signs only past that. */
		unsigned q = cfg->max_ready < 65536 ? cfg->max_ready : 65536;
		e->signer = signer_new(e->loop, cfg->dkim_threads, q < 1024 ? 1024 : q);
		intake_set_signer(e->in, e->signer);
	}
	e->inb = inbound_new(e->loop, e->rq, cfg, e->rules);
	e->li = listener_new(e->loop, e->rq, cfg);
	engine_ownership(e, cfg);
	e->hook.fn = on_turn_end;
	e->hook.arg = e;
	loop_add_hook(e->loop, &e->hook);
	log_info("engine", "volley %s started: instance %s, redis %s, %zu pool(s), max %u sessions%s",
	    VOLLEY_VERSION, cfg->instance, cfg->redis_url_safe, cfg->npools,
	    sched_max_sessions(e->sched), o->drain ? ", draining" : "");
	timer_set(e->loop, &e->tick, 0, on_tick);
	loop_run(e->loop);
	timer_cancel(e->loop, &e->tick);

	stats_progress(e->lg, sched_sessions(e->sched), e->started_wall, 1);
	{
		const struct ledger_counts *n = ledger_counts(e->lg);
		log_info("engine", "stopped: delivered %llu, deferred %llu, bounced %llu, expired %llu, "
		    "failed %llu, suppressed %llu",
		    (unsigned long long)n->delivered, (unsigned long long)n->deferred,
		    (unsigned long long)n->bounced, (unsigned long long)n->expired,
		    (unsigned long long)n->failed, (unsigned long long)n->suppressed);
	}

	/* Redis and DNS first: their cancelled requests call back into jobs,
	 * bodies and destinations, which must still exist; nothing may be
	 * written or routed from here on. */
	e->tearing_down = 1;
	ledger_set_tearing_down(e->lg);
	intake_set_stopping(e->in);
	intake_set_signer(e->in, NULL);
	signer_free(e->signer);		/* its eventfd read completes in the turns below */
	e->signer = NULL;
	sched_halt(e->sched);
	listener_abort(e->li);
	dns_free(e->dns);
	rq_free(e->rq);
	/* Cancelled polls of the Redis and c-ares sockets complete on the
	 * ring; their watchers free themselves then. */
	for (int i = 0; i < 20; i++)
		loop_turn(e->loop, 5);
	/* Inbound sessions got their answers from Redis (or its loss) above. */
	if (listener_free(e->li) != 0) {
		log_error("engine", "%u inbound session(s) did not close; exiting without freeing",
		    listener_sessions(e->li));
		log_set_buffered(0);
		return 0;
	}
	/* The scheduler frees every configuration a reload brought. */
	if (sched_free(e->sched) != 0) {
		/* Sessions that never completed their teardown still point at
		 * jobs and destinations: leave everything to process exit. */
		log_error("engine", "%u session(s) did not close; exiting without freeing",
		    sched_sessions(e->sched));
		log_set_buffered(0);
		return 0;
	}
	/* Held jobs stay pending in Redis. */
	intake_free(e->in);
	inbound_free(e->inb);
	ledger_free(e->lg);
	map_free(&e->held_seen);
	route_owner_free(&e->own[0]);
	route_owner_free(&e->own[1]);
	stats_free(e->st);
	classify_rules_free(e->rules);
	loop_free(e->loop);
	free(e);
	log_set_buffered(0);
	return 0;
}
