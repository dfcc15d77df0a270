/*
 * engine.c - the scheduler: live jobs, destinations, sessions, outcomes.
 *
 * Life of a job:
 *   stream entry / leased retry -> job_decode (invalid: `failed` at once)
 *   -> suppression check (one SMISMEMBER per read batch)
 *   -> body (inline, or msg_ref fetched once and shared)
 *   -> expiry check -> destination queue (pool, domain)
 *   -> a session pulls it -> smtp result -> trouble_from_smtp (trouble.c, the one place
 *      that decides what a failure means, like Postfix's smtp_trouble.c)
 *   -> settle: final event + XACK, or deferral into the retry ZSET.
 *
 * Destinations open sessions up to their connection limit (and the global
 * smtp.max_sessions), reuse idle ones, and when every MX fails before a
 * transaction they defer what they hold and back off for a while: no
 * connection is tried meanwhile (Postfix's "dead destination").
 */
#include "engine.h"
#include "classify.h"
#include "config.h"
#include "dns.h"
#include "job.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "redis.h"
#include "session.h"
#include "trouble.h"
#include "util.h"
#include "version.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEST_BACKOFF_MS	5000	/* after every MX failed, before trying again */

struct dest {
	char *key;			/* "pool|domain" */
	char *domain;
	const struct config_pool *pool;
	struct config_limits lim;
	struct job *qhead, *qtail;
	size_t queued;
	unsigned nsessions, nconnecting;
	struct session *idle;		/* idle sessions, doubly linked */
	struct mxset *mx;
	int resolving, waiting_global;
	struct dest *wait_next;
	uint64_t backoff_until;		/* mono ms */
	unsigned ip_rr;
	uint64_t delivered, deferred, bounced;
	char site[64];			/* the site its MX hosts fall under, or "" */
	uint64_t last_used;		/* mono ms of the last job pushed */
	struct timer retry_timer;
	struct engine *e;
};

struct ipstat {				/* per (pool, source IP), for status */
	unsigned sessions;
	uint64_t delivered, deferred, bounced;
};

struct bodyref {			/* a msg_ref's body, shared by its jobs */
	struct msg_body *body;
	struct job *waiting;		/* jobs waiting for the fetch */
	int fetching;
	char *name;
	struct engine *e;
};

struct check {				/* one suppression check batch */
	struct engine *e;
	size_t n;
	struct job *jobs[];
};

struct engine {
	struct loop *loop;
	struct config *cfg;
	const char *config_path;
	struct engine_opts opts;
	struct rq *rq;
	struct dns *dns;
	struct classify_rules *rules;
	struct session_ops sops;
	struct session_cfg *scfg;	/* [0] default, then one per pool ip */
	/* Configurations replaced by SIGHUP stay alive: sessions, the Redis
	 * and DNS modules keep pointers into them. A reload is rare. */
	struct config **old_cfgs;
	struct session_cfg **old_scfgs;
	size_t nold;
	struct smtp_timeouts timeouts;
	struct map jobs;		/* key -> job (live, any state) */
	struct job all;			/* list of live jobs */
	size_t njobs;
	struct map dests;
	struct map ipstats;		/* "pool|ip" -> struct ipstat */
	struct dest *wait_head, *wait_tail;	/* waiting for a global session slot */
	struct map bodies;		/* msg_ref -> bodyref */
	unsigned nsessions;
	unsigned max_sessions;		/* smtp.max_sessions, capped by the fd limit */
	unsigned fd_cap;		/* sessions the open file limit allows */
	int stream_empty, stopping, stopped, drain_checking;
	int aborting;			/* stop deadline passed: sessions aborted */
	int tearing_down;		/* freeing: Redis writes no longer possible */
	uint64_t stop_deadline;
	struct timer tick;
	struct loop_hook hook;
	uint64_t last_retry_poll, last_claim, last_refresh, last_stats, last_progress, last_sweep;
	uint64_t started_wall;
	/* counters since start */
	uint64_t n_delivered, n_bounced, n_deferred, n_expired, n_failed, n_suppressed;
	uint64_t n_taken;
};

static volatile sig_atomic_t sig_stop, sig_hup;

static void engine_kick(struct engine *e, struct dest *d);
static void dest_limits(const struct config *cfg, struct dest *d);
static void dest_take_sessions(struct engine *e, struct dest *d);

/* --- outcomes: the one place that decides what a result means --- */

/* --- job bookkeeping --- */

static void
job_track(struct engine *e, struct job *j)
{
	map_put(&e->jobs, j->key, j);
	j->all_next = e->all.all_next;
	j->all_prev = &e->all;
	e->all.all_next->all_prev = j;
	e->all.all_next = j;
	j->taken_ms = loop_now(e->loop);
	e->njobs++;
}

/* Drop a job from memory without writing anything: it stays pending in
 * Redis (stream PEL or leased retry) and comes back later. */
static void
job_forget(struct engine *e, struct job *j)
{
	map_del(&e->jobs, j->key);
	j->all_prev->all_next = j->all_next;
	j->all_next->all_prev = j->all_prev;
	e->njobs--;
	job_free(j);
}

/* Forget a job we will not work on now; a leased retry is handed back
 * (due now) so that it need not wait out its lease. */
static void
job_hand_back(struct engine *e, struct job *j)
{
	if (!e->tearing_down)
		rq_release_retry(e->rq, j, clock_wall_ms());
	job_forget(e, j);
}

static void
job_log(const struct job *j, const struct job_outcome *o)
{
	log_info("job", "job=%s to=%s status=%s attempt=%u code=%d enh=%s class=%s mx=%s ip=%s reply=\"%s\"",
	    j->id, j->to, job_status_name(o->status), j->attempts + 1, o->code,
	    o->enh[0] ? o->enh : "-", o->has_class ? bounce_class_name(o->cls) : "-",
	    o->mx ? o->mx : "-", o->ip && o->ip[0] ? o->ip : "-", o->reply);
}

/* Settle a job: event + ack/deferral in Redis, then forget it. */
static void
job_settle(struct engine *e, struct job *j, struct job_outcome *o)
{
	if (o->status == JOB_DEFERRED) {
		uint64_t now = clock_wall_ms();
		uint64_t due = now + config_retry_delay(e->cfg, j->attempts + 1);
		if (now >= j->expires_at_ms) {
			o->status = JOB_EXPIRED;
			char tmp[512];
			snprintf(tmp, sizeof tmp, "%s", o->reply);
			trouble_set_reply(o, "expired after %u attempt(s); last: %s",
			    j->attempts + 1, tmp);
		} else {
			/* Never wait past the job's end: the last retry is at
			 * expires_at, where it ends `expired`. */
			if (due > j->expires_at_ms)
				due = j->expires_at_ms;
			job_log(j, o);
			rq_defer(e->rq, j, o, due);
			e->n_deferred++;
			job_forget(e, j);
			return;
		}
	}
	job_log(j, o);
	rq_final(e->rq, j, o, o->status == JOB_BOUNCED && o->has_class &&
	    bounce_class_suppresses(o->cls));
	switch (o->status) {
	case JOB_DELIVERED: e->n_delivered++; break;
	case JOB_BOUNCED: e->n_bounced++; break;
	case JOB_EXPIRED: e->n_expired++; break;
	case JOB_FAILED: e->n_failed++; break;
	case JOB_SUPPRESSED: e->n_suppressed++; break;
	default: break;
	}
	job_forget(e, j);
}

static void
job_fail(struct engine *e, struct job *j, const char *why)
{
	struct job_outcome o;

	trouble_outcome_init(&o, JOB_FAILED);
	trouble_set_reply(&o, "%s", why);
	job_settle(e, j, &o);
}

/* --- destinations --- */

static struct dest *
dest_get(struct engine *e, const struct config_pool *pool, const char *domain)
{
	char key[600];
	struct dest *d;

	snprintf(key, sizeof key, "%s|%s", pool->name, domain);
	d = map_get(&e->dests, key);
	if (d)
		return d;
	d = xcalloc(1, sizeof *d);
	d->key = xstrdup(key);
	d->domain = xstrdup(domain);
	d->pool = pool;
	d->e = e;
	dest_limits(e->cfg, d);
	map_put(&e->dests, key, d);
	return d;
}

static void
dest_push(struct dest *d, struct job *j)
{
	d->last_used = loop_now(d->e->loop);
	j->next = NULL;
	j->dest = d;
	if (d->qtail)
		d->qtail->next = j;
	else
		d->qhead = j;
	d->qtail = j;
	d->queued++;
}

static struct job *
dest_pop(struct dest *d)
{
	struct job *j = d->qhead;

	if (j == NULL)
		return NULL;
	d->qhead = j->next;
	if (d->qhead == NULL)
		d->qtail = NULL;
	d->queued--;
	j->next = NULL;
	return j;
}

/* Settle every queued job of d with the same outcome (DNS or site failure). */
static void
dest_fail_queue(struct engine *e, struct dest *d, const struct job_outcome *tmpl)
{
	struct job *j;

	while ((j = dest_pop(d)) != NULL) {
		struct job_outcome o = *tmpl;
		job_settle(e, j, &o);
	}
}

/* dest_limits - the limits for d: its site (from its first MX host), its
 * domain block, then the smtp defaults (config_limits_for). */
static void
dest_limits(const struct config *cfg, struct dest *d)
{
	const struct config_site *site = d->mx ? config_site_for_mx(cfg, d->mx->t[0].host) : NULL;

	d->lim = config_limits_for(cfg, site, config_domain_find(cfg, d->domain));
	snprintf(d->site, sizeof d->site, "%s", site ? site->name : "");
}

static struct ipstat *
ipstat_get(struct engine *e, const struct dest *d, const char *src_ip)
{
	char key[300];
	struct ipstat *st;

	snprintf(key, sizeof key, "%s|%s", d->pool->name, src_ip && *src_ip ? src_ip : "default");
	st = map_get(&e->ipstats, key);
	if (st == NULL) {
		st = xcalloc(1, sizeof *st);
		map_put(&e->ipstats, key, st);
	}
	return st;
}

/* Settle d's whole queue after a DNS answer that rules out delivery now. */
static void
dest_fail_dns(struct engine *e, struct dest *d, enum job_status st, const char *enh,
    enum bounce_class cls, const char *why)
{
	struct job_outcome o;

	trouble_outcome_init(&o, st);
	snprintf(o.enh, sizeof o.enh, "%s", enh);
	o.has_class = 1;
	o.cls = cls;
	trouble_set_reply(&o, "%s", why);
	dest_fail_queue(e, d, &o);
}

static void
on_mx(void *arg, const struct dns_result *r)
{
	struct dest *d = arg;
	struct engine *e = d->e;
	char why[600];

	d->resolving = 0;
	if (e->stopped)		/* dns_free at teardown cancels lookups */
		return;
	switch (r->status) {
	case DNS_OK:
		if (r->ntargets == 0)
			break;
		mxset_unref(d->mx);
		d->mx = mxset_from_dns(r);
		dest_limits(e->cfg, d);
		if (!e->stopping)
			dest_take_sessions(e, d);
		return;
	case DNS_NXDOMAIN:
		snprintf(why, sizeof why, "domain %s does not exist (NXDOMAIN)", d->domain);
		dest_fail_dns(e, d, JOB_BOUNCED, "5.1.2", CLASS_BAD_DOMAIN, why);
		return;
	case DNS_NULLMX:
		snprintf(why, sizeof why, "domain %s accepts no mail (null MX, RFC 7505)", d->domain);
		dest_fail_dns(e, d, JOB_BOUNCED, "5.1.10", CLASS_BAD_DOMAIN, why);
		return;
	default:
		break;
	}
	snprintf(why, sizeof why, "MX lookup for %s failed: %s", d->domain,
	    r->error[0] ? r->error : "no usable address");
	dest_fail_dns(e, d, JOB_DEFERRED, "4.4.3", CLASS_DNS_FAILURE, why);
}

/* A session's source: the next IP of the destination's pool, round robin,
 * looked up by name in the running configuration (a reload may have
 * changed the pool or dropped it: then the default pool). */
static const struct session_cfg *
dest_pick_source(struct engine *e, struct dest *d, const char **src_ip)
{
	const struct config_pool *p = config_pool(e->cfg, d->pool->name);
	size_t base = 1, k;

	*src_ip = NULL;
	if (p == NULL)
		p = config_pool(e->cfg, "default");
	if (p == NULL || p->nips == 0)
		return &e->scfg[0];
	for (size_t i = 0; i < e->cfg->npools && &e->cfg->pools[i] != p; i++)
		base += e->cfg->pools[i].nips;
	k = d->ip_rr++ % p->nips;
	*src_ip = p->ips[k].addr;
	return &e->scfg[base + k];
}

static void
global_wait(struct engine *e, struct dest *d)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (d->waiting_global)
		return;
	/* An idle session elsewhere holds a slot it does not use: free it
	 * (its close wakes the waiting list). */
	while (map_iter(&e->dests, &it, &k, &v)) {
		struct dest *o = v;
		if (o != d && o->idle) {
			session_quit(o->idle);
			break;
		}
	}
	d->waiting_global = 1;
	d->wait_next = NULL;
	if (e->wait_tail)
		e->wait_tail->wait_next = d;
	else
		e->wait_head = d;
	e->wait_tail = d;
}

/* Open sessions for d's queue: up to its limit and the global cap. */
static void
dest_take_sessions(struct engine *e, struct dest *d)
{
	unsigned limit = d->lim.max_connections ? d->lim.max_connections : 20;

	while (d->queued > d->nconnecting && d->nsessions < limit &&
	    loop_now(e->loop) >= d->backoff_until) {
		const char *src;
		const struct session_cfg *sc;
		if (e->nsessions >= e->max_sessions) {
			global_wait(e, d);
			return;
		}
		sc = dest_pick_source(e, d, &src);
		d->nsessions++;
		d->nconnecting++;
		e->nsessions++;
		ipstat_get(e, d, src)->sessions++;
		session_open(e->loop, &e->sops, sc, d->mx, src, d->lim.max_msgs_per_connection, d);
	}
}

static void
on_dest_retry(struct timer *t)
{
	struct dest *d = (struct dest *)((char *)t - offsetof(struct dest, retry_timer));

	engine_kick(d->e, d);
}

/* Something changed for d (new job, session freed): act on it. */
static void
engine_kick(struct engine *e, struct dest *d)
{
	struct session *s;

	if (e->stopping)
		return;
	/* Idle sessions first: a reused session costs nothing. */
	while (d->queued > 0 && (s = d->idle) != NULL)
		session_give(s, dest_pop(d));	/* on_idle(s, 0) unlinks it */
	if (d->queued == 0)
		return;
	if (loop_now(e->loop) < d->backoff_until) {
		/* Every MX failed a moment ago: no new connection until the
		 * back-off ends; then one more try, and if that fails too
		 * the queue is deferred (sop_on_site_failure). Open sessions
		 * keep pulling from the queue meanwhile. */
		if (!timer_armed(&d->retry_timer))
			timer_set(e->loop, &d->retry_timer, d->backoff_until - loop_now(e->loop),
			    on_dest_retry);
		return;
	}
	if (d->resolving)
		return;
	if (d->queued <= d->nconnecting)
		return;
	d->resolving = 1;
	dns_query_mx(e->dns, d->domain, on_mx, d);	/* may call on_mx at once */
}

/* --- session callbacks --- */

static struct job *
sop_next_job(struct session *s)
{
	struct dest *d = session_owner(s);

	if (d->e->stopping)
		return NULL;
	return dest_pop(d);
}

static void
sop_on_result(struct session *s, struct job *j, const struct smtp_result *r)
{
	struct dest *d = session_owner(s);
	struct engine *e = d->e;
	struct job_outcome o;

	trouble_from_smtp(e->rules, r, &o);
	o.mx = session_mx(s);
	o.ip = session_local_ip(s);
	{
		struct ipstat *st = ipstat_get(e, d, session_src_ip(s));
		if (o.status == JOB_DELIVERED) {
			d->delivered++;
			st->delivered++;
		} else if (o.status == JOB_BOUNCED) {
			d->bounced++;
			st->bounced++;
		} else {
			d->deferred++;
			st->deferred++;
		}
	}
	job_settle(e, j, &o);
}

static void
sop_on_site_failure(struct session *s, const struct smtp_result *r)
{
	struct dest *d = session_owner(s);
	struct engine *e = d->e;
	struct job_outcome o;
	unsigned others = d->nsessions - 1;	/* s itself is counted until on_closed */

	trouble_from_site(e->rules, r, &o);
	o.mx = NULL;
	o.ip = session_local_ip(s);
	d->backoff_until = loop_now(e->loop) + DEST_BACKOFF_MS;
	if (others > 0) {
		/* Other sessions are open or still connecting: the site may
		 * just take no more connections (a provider's per-IP limit).
		 * They carry the queue; the last one to fail defers it. No
		 * new connection for a while. */
		log_warn("dest", "%s: a new connection failed on every MX (%s); %u other "
		    "session(s) carry the queue, no new connection for %d s", d->domain, o.reply,
		    others, DEST_BACKOFF_MS / 1000);
		engine_kick(e, d);	/* arms the retry at the end of the back-off */
		return;
	}
	log_warn("dest", "%s: every MX failed (%s); deferring %zu queued job(s), "
	    "backing off %d s", d->domain, o.reply, d->queued, DEST_BACKOFF_MS / 1000);
	dest_fail_queue(e, d, &o);
}

static void
sop_on_established(struct session *s)
{
	struct dest *d = session_owner(s);

	d->nconnecting--;
	d->backoff_until = 0;
}

static void
sop_on_idle(struct session *s, int idle)
{
	struct dest *d = session_owner(s);

	if (idle) {
		session_list_set_prev(s, NULL);
		session_list_set_next(s, d->idle);
		if (d->idle)
			session_list_set_prev(d->idle, s);
		d->idle = s;
		if (d->e->stopping)
			session_quit(s);
	} else {
		struct session *p = session_list_prev(s), *n = session_list_next(s);
		if (p)
			session_list_set_next(p, n);
		else if (d->idle == s)
			d->idle = n;
		if (n)
			session_list_set_prev(n, p);
		session_list_set_next(s, NULL);
		session_list_set_prev(s, NULL);
	}
}

static void
sop_on_closed(struct session *s)
{
	struct dest *d = session_owner(s);
	struct engine *e = d->e;

	if (!session_was_established(s))
		d->nconnecting--;
	d->nsessions--;
	e->nsessions--;
	ipstat_get(e, d, session_src_ip(s))->sessions--;
	if (e->stopping)
		return;
	if (d->queued > 0)
		engine_kick(e, d);
	/* A global slot is free: give it to a waiting destination. */
	while (e->wait_head && e->nsessions < e->max_sessions) {
		struct dest *w = e->wait_head;
		e->wait_head = w->wait_next;
		if (e->wait_head == NULL)
			e->wait_tail = NULL;
		w->waiting_global = 0;
		engine_kick(e, w);
	}
}

/* --- jobs in --- */

static void
job_route(struct engine *e, struct job *j)
{
	const struct config_pool *pool = config_pool(e->cfg, j->pool ? j->pool : "default");
	struct dest *d;

	if (pool == NULL) {
		char why[300];
		snprintf(why, sizeof why, "unknown pool '%s'", j->pool);
		job_fail(e, j, why);
		return;
	}
	if (clock_wall_ms() >= j->expires_at_ms) {
		struct job_outcome o;
		trouble_outcome_init(&o, JOB_EXPIRED);
		o.no_attempt = 1;
		if (j->last_reply) {
			trouble_set_reply(&o, "expired after %u attempt(s); last: %s",
			    j->attempts, j->last_reply);
			o.code = j->last_code;
			snprintf(o.enh, sizeof o.enh, "%s", j->last_enh);
			o.has_class = j->last_class && j->last_class[0] &&
			    bounce_class_from_name(j->last_class, &o.cls) == 0;
		} else {
			trouble_set_reply(&o, "expired before the first attempt (expires_at passed)");
		}
		job_settle(e, j, &o);
		return;
	}
	d = dest_get(e, pool, j->domain);
	dest_push(d, j);
	engine_kick(e, d);
}

static void
on_body(void *arg, const redisReply *r)
{
	struct bodyref *b = arg;
	struct engine *e = b->e;
	struct job *j, *next;

	b->fetching = 0;
	j = b->waiting;
	b->waiting = NULL;
	if (r != NULL && r->type == REDIS_REPLY_STRING && r->len > 0)
		b->body = msg_body_new(r->str, r->len);
	for (; j; j = next) {
		next = j->next;
		j->next = NULL;
		if (r == NULL) {
			job_forget(e, j);	/* Redis went away: it comes back */
		} else if (e->stopping) {
			job_hand_back(e, j);
		} else if (b->body) {
			j->body = msg_body_ref(b->body);
			job_route(e, j);
		} else {
			char why[700];
			snprintf(why, sizeof why, "msg_ref key '%s' does not exist or is empty",
			    j->msg_ref);
			job_fail(e, j, why);
		}
	}
	if (b->body == NULL) {
		map_del(&e->bodies, b->name);
		free(b->name);
		free(b);
	}
}

static void
job_attach_body(struct engine *e, struct job *j)
{
	struct bodyref *b;

	if (j->raw) {
		j->body = msg_body_new(j->raw, j->raw_len);
		free(j->raw);
		j->raw = NULL;
		job_route(e, j);
		return;
	}
	b = map_get(&e->bodies, j->msg_ref);
	if (b && b->body) {
		j->body = msg_body_ref(b->body);
		job_route(e, j);
		return;
	}
	if (b == NULL) {
		b = xcalloc(1, sizeof *b);
		b->e = e;
		b->name = xstrdup(j->msg_ref);
		map_put(&e->bodies, j->msg_ref, b);
	}
	j->next = b->waiting;
	b->waiting = j;
	if (!b->fetching) {
		const char *argv[2] = { "GET", j->msg_ref };
		size_t lens[2] = { 3, strlen(j->msg_ref) };
		b->fetching = 1;
		if (rq_call_argv(e->rq, on_body, b, 2, argv, lens) != 0)
			on_body(b, NULL);
	}
}

static void
on_suppression(void *arg, const redisReply *r)
{
	struct check *c = arg;
	struct engine *e = c->e;
	int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == c->n;

	if (r != NULL && !ok)
		log_error("engine", "suppression check failed: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	for (size_t i = 0; i < c->n; i++) {
		struct job *j = c->jobs[i];
		if (!ok) {
			job_forget(e, j);	/* comes back: re-read or lease expiry */
		} else if (e->stopping) {
			job_hand_back(e, j);
		} else if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1) {
			struct job_outcome o;
			trouble_outcome_init(&o, JOB_SUPPRESSED);
			trouble_set_reply(&o, "recipient is on the suppression list");
			job_settle(e, j, &o);
		} else {
			job_attach_body(e, j);
		}
	}
	free(c);
}

static void
field_arrays(const redisReply *kv, const char **f, size_t *fl, const char **v, size_t *vl, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i + 1 < kv->elements && *n < 32; i += 2) {
		const redisReply *a = kv->element[i], *b = kv->element[i + 1];
		if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
			continue;
		f[*n] = a->str; fl[*n] = a->len;
		v[*n] = b->str; vl[*n] = b->len;
		(*n)++;
	}
}

static void
on_entries(void *arg, enum job_origin origin, const redisReply *entries)
{
	struct engine *e = arg;
	struct check *c = xmalloc(sizeof *c + entries->elements * sizeof c->jobs[0]);
	const char **argv = xcalloc(entries->elements + 2, sizeof *argv);
	size_t *lens = xcalloc(entries->elements + 2, sizeof *lens);
	uint64_t now = clock_wall_ms();

	c->e = e;
	c->n = 0;
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *en = entries->element[i];
		const char *f[32], *v[32];
		size_t fl[32], vl[32], n;
		struct job *j;

		if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
		    en->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if (en->element[1]->type != REDIS_REPLY_ARRAY)
			continue;	/* deleted entry; the read acked it */
		if (map_get(&e->jobs, en->element[0]->str))
			continue;	/* already held (re-read or claimed twice) */
		field_arrays(en->element[1], f, fl, v, vl, &n);
		j = job_decode(f, fl, v, vl, n, en->element[0]->str, origin, e->cfg, now);
		job_track(e, j);
		e->n_taken++;
		if (j->error) {
			log_warn("job", "job=%s key=%s invalid: %s", j->id, j->key, j->error);
			char why[600];
			snprintf(why, sizeof why, "%s", j->error);
			job_fail(e, j, why);
			continue;
		}
		c->jobs[c->n++] = j;
	}
	if (c->n == 0) {
		free(c);
	} else {
		size_t n = 0;
		argv[n] = "SMISMEMBER"; lens[n++] = 10;
		argv[n] = rq_key(e->rq, "suppressed");
		argv[n] = xstrdup(argv[n]);
		lens[n] = strlen(argv[n]);
		n++;
		for (size_t i = 0; i < c->n; i++) {
			argv[n] = c->jobs[i]->to_lc;
			lens[n++] = strlen(c->jobs[i]->to_lc);
		}
		if (rq_call_argv(e->rq, on_suppression, c, (int)n, argv, lens) != 0)
			on_suppression(c, NULL);
		free((char *)argv[1]);
	}
	free(argv);
	free(lens);
}

/* --- reading, polling, housekeeping --- */

static unsigned
read_room(struct engine *e)
{
	size_t cap = e->cfg->max_ready;

	if (e->stopping || e->njobs >= cap)
		return 0;
	return (unsigned)(cap - e->njobs < e->cfg->read_batch ? cap - e->njobs : e->cfg->read_batch);
}

static void
on_read_done(void *arg, enum job_origin origin, size_t n)
{
	struct engine *e = arg;
	unsigned room = read_room(e);

	if (origin == JOB_FROM_STREAM) {
		e->stream_empty = n == 0;
		if (n > 0 && room > 0)
			rq_fetch(e->rq, room);	/* more may be waiting */
	} else if (n > 0 && room > 0) {
		rq_fetch_retries(e->rq, room, clock_wall_ms());
	}
}

static void
on_connected(void *arg)
{
	struct engine *e = arg;

	e->stream_empty = 0;
	rq_fetch(e->rq, read_room(e));
}

static void
write_stats(struct engine *e)
{
	struct buf dests = { 0 }, site_lines = { 0 }, ip_lines = { 0 };
	const char *k;
	void *v;
	size_t it = 0, shown = 0;
	char key[300], fields[12][32];
	const char *argv[40];
	size_t lens[40];
	int n = 0;

	while (map_iter(&e->dests, &it, &k, &v) && shown < 200) {
		struct dest *d = v;
		if (d->nsessions == 0 && d->queued == 0 && d->delivered + d->deferred + d->bounced == 0)
			continue;
		buf_appendf(&dests, "%s %u %zu %llu %llu %llu\n", k, d->nsessions, d->queued,
		    (unsigned long long)d->delivered, (unsigned long long)d->deferred,
		    (unsigned long long)d->bounced);
		shown++;
	}
	{
		struct map sites = { 0 };
		it = 0;
		while (map_iter(&e->dests, &it, &k, &v)) {
			struct dest *d = v;
			const char *name = d->site[0] ? d->site : "-";
			struct dest *agg = map_get(&sites, name);
			if (agg == NULL) {
				agg = xcalloc(1, sizeof *agg);
				map_put(&sites, name, agg);
			}
			agg->nsessions += d->nsessions;
			agg->queued += d->queued;
			agg->delivered += d->delivered;
			agg->deferred += d->deferred;
			agg->bounced += d->bounced;
		}
		it = 0;
		while (map_iter(&sites, &it, &k, &v)) {
			struct dest *agg = v;
			buf_appendf(&site_lines, "%s %u %zu %llu %llu %llu\n", k, agg->nsessions,
			    agg->queued, (unsigned long long)agg->delivered,
			    (unsigned long long)agg->deferred, (unsigned long long)agg->bounced);
			free(agg);
		}
		map_free(&sites);
		it = 0;
		while (map_iter(&e->ipstats, &it, &k, &v)) {
			struct ipstat *st = v;
			buf_appendf(&ip_lines, "%s %u 0 %llu %llu %llu\n", k, st->sessions,
			    (unsigned long long)st->delivered, (unsigned long long)st->deferred,
			    (unsigned long long)st->bounced);
		}
	}
	snprintf(key, sizeof key, "%sinstance:%s", e->cfg->prefix, e->cfg->instance);
	snprintf(fields[0], 32, "%d", (int)getpid());
	snprintf(fields[1], 32, "%llu", (unsigned long long)e->started_wall);
	snprintf(fields[2], 32, "%llu", (unsigned long long)clock_wall_ms());
	snprintf(fields[3], 32, "%u", e->nsessions);
	snprintf(fields[4], 32, "%zu", e->njobs);
	snprintf(fields[5], 32, "%llu", (unsigned long long)e->n_delivered);
	snprintf(fields[6], 32, "%llu", (unsigned long long)e->n_deferred);
	snprintf(fields[7], 32, "%llu", (unsigned long long)e->n_bounced);
	snprintf(fields[8], 32, "%llu", (unsigned long long)e->n_expired);
	snprintf(fields[9], 32, "%llu", (unsigned long long)e->n_failed);
	snprintf(fields[10], 32, "%llu", (unsigned long long)e->n_suppressed);
	argv[n++] = "HSET"; argv[n++] = key;
	argv[n++] = "pid"; argv[n++] = fields[0];
	argv[n++] = "started_ms"; argv[n++] = fields[1];
	argv[n++] = "heartbeat_ms"; argv[n++] = fields[2];
	argv[n++] = "sessions"; argv[n++] = fields[3];
	argv[n++] = "in_memory"; argv[n++] = fields[4];
	argv[n++] = "delivered"; argv[n++] = fields[5];
	argv[n++] = "deferred"; argv[n++] = fields[6];
	argv[n++] = "bounced"; argv[n++] = fields[7];
	argv[n++] = "expired"; argv[n++] = fields[8];
	argv[n++] = "failed"; argv[n++] = fields[9];
	argv[n++] = "suppressed"; argv[n++] = fields[10];
	argv[n++] = "dests"; argv[n++] = dests.data ? dests.data : "";
	argv[n++] = "sites"; argv[n++] = site_lines.data ? site_lines.data : "";
	argv[n++] = "ips"; argv[n++] = ip_lines.data ? ip_lines.data : "";
	for (int i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	rq_command_argv(e->rq, n, argv, lens);
	{
		const char *ex[3] = { "EXPIRE", key, "30" };
		size_t el[3] = { 6, strlen(key), 2 };
		rq_command_argv(e->rq, 3, ex, el);
		const char *sa[3] = { "SADD", NULL, e->cfg->instance };
		char ikey[300];
		snprintf(ikey, sizeof ikey, "%sinstances", e->cfg->prefix);
		sa[1] = ikey;
		size_t sl[3] = { 4, strlen(ikey), strlen(e->cfg->instance) };
		rq_command_argv(e->rq, 3, sa, sl);
	}
	buf_free(&dests);
	buf_free(&site_lines);
	buf_free(&ip_lines);
}

static void
print_progress(struct engine *e, int final)
{
	uint64_t secs = (clock_wall_ms() - e->started_wall) / 1000;

	log_flush();
	fprintf(stderr, "%s[volley] %llus  delivered %llu  deferred %llu  bounced %llu  "
	    "expired %llu  failed %llu  suppressed %llu | in memory %zu  sessions %u%s",
	    final ? "" : "\r", (unsigned long long)secs,
	    (unsigned long long)e->n_delivered, (unsigned long long)e->n_deferred,
	    (unsigned long long)e->n_bounced, (unsigned long long)e->n_expired,
	    (unsigned long long)e->n_failed, (unsigned long long)e->n_suppressed,
	    e->njobs, e->nsessions, final ? "\n" : "   ");
	fflush(stderr);
}

static void
refresh_leases(struct engine *e)
{
	uint64_t now = loop_now(e->loop), age = e->cfg->lease_ms / 3;
	const char **sk = xcalloc(e->njobs + 1, sizeof *sk);
	const char **rk = xcalloc(e->njobs + 1, sizeof *rk);
	size_t ns = 0, nr = 0;

	for (struct job *j = e->all.all_next; j != &e->all; j = j->all_next) {
		if (now - j->taken_ms < age)
			continue;
		if (j->origin == JOB_FROM_STREAM)
			sk[ns++] = j->key;
		else
			rk[nr++] = j->key;
		if (ns >= 1000 || nr >= 1000) {
			rq_refresh(e->rq, sk, ns, rk, nr, clock_wall_ms() + e->cfg->lease_ms);
			ns = nr = 0;
		}
	}
	if (ns || nr)
		rq_refresh(e->rq, sk, ns, rk, nr, clock_wall_ms() + e->cfg->lease_ms);
	free(sk);
	free(rk);
}

static void
on_drain_zcard(void *arg, const redisReply *r)
{
	struct engine *e = arg;

	e->drain_checking = 0;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 &&
	    e->njobs == 0 && e->nsessions == 0 && rq_outstanding(e->rq) == 0) {
		log_info("engine", "drained: nothing unread, pending, scheduled or in a session");
		e->stopped = 1;
		loop_stop(e->loop);
	}
}

/* Settled entries are deleted from the stream (XDEL with the ack), so an
 * empty stream means nothing unread and nothing pending, including what
 * was added after our last read. */
static void
on_drain_xlen(void *arg, const redisReply *r)
{
	struct engine *e = arg;

	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 &&
	    rq_command(e->rq, on_drain_zcard, e, "ZCARD %sretry", e->cfg->prefix) == 0)
		return;
	e->drain_checking = 0;
}

static void
drain_check(struct engine *e)
{
	log_debug("engine", "drain check: checking=%d stream_empty=%d jobs=%zu sessions=%u "
	    "outstanding=%zu read_busy=%d connected=%d", e->drain_checking, e->stream_empty,
	    e->njobs, e->nsessions, rq_outstanding(e->rq), rq_read_busy(e->rq),
	    rq_connected(e->rq));
	if (!e->drain_checking && e->stream_empty && e->njobs == 0 && e->nsessions > 0 &&
	    rq_outstanding(e->rq) == 0) {
		/* Nothing left to send: idle sessions need not wait out smtp.idle. */
		const char *k;
		void *v;
		size_t it = 0;
		while (map_iter(&e->dests, &it, &k, &v))
			while (((struct dest *)v)->idle)
				session_quit(((struct dest *)v)->idle);
	}
	if (e->drain_checking || !e->stream_empty || e->njobs || e->nsessions ||
	    rq_outstanding(e->rq) || rq_read_busy(e->rq) || !rq_connected(e->rq))
		return;
	e->drain_checking = 1;
	if (rq_command(e->rq, on_drain_xlen, e, "XLEN %sjobs", e->cfg->prefix) != 0)
		e->drain_checking = 0;
}

static void
begin_stop(struct engine *e, const char *why)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (e->stopping)
		return;
	log_info("engine", "%s: no new jobs; finishing what is in flight", why);
	e->stopping = 1;
	e->stop_deadline = loop_now(e->loop) + e->cfg->stop_ms;
	while (map_iter(&e->dests, &it, &k, &v)) {
		struct dest *d = v;
		struct job *j;
		while ((j = dest_pop(d)) != NULL)
			job_hand_back(e, j);
		while (d->idle)
			session_quit(d->idle);
	}
}

static void build_session_cfgs(struct engine *e);

#ifndef DEST_IDLE_MS
#define DEST_IDLE_MS	300000	/* forget a destination unused this long */
#endif

/*
 * sweep - keep long runs bounded: destinations with nothing queued, no
 * session, no lookup or timer pending and no job for DEST_IDLE_MS are
 * dropped (the DNS cache keeps their answers), and msg_ref bodies no job
 * holds any more are freed.
 */
static void
sweep(struct engine *e)
{
	uint64_t now = loop_now(e->loop);
	const char *k;
	void *v;
	size_t it = 0, nd = 0, nb = 0;

	while (map_iter(&e->dests, &it, &k, &v)) {
		struct dest *d = v;
		if (d->queued || d->nsessions || d->resolving || d->waiting_global ||
		    timer_armed(&d->retry_timer) || now - d->last_used < DEST_IDLE_MS)
			continue;
		map_del(&e->dests, k);	/* the slot's key is freed; k not used after */
		mxset_unref(d->mx);
		free(d->key);
		free(d->domain);
		free(d);
		nd++;
	}
	it = 0;
	while (map_iter(&e->bodies, &it, &k, &v)) {
		struct bodyref *b = v;
		if (b->fetching || b->waiting || b->body == NULL || b->body->refs > 1)
			continue;
		map_del(&e->bodies, k);
		msg_body_unref(b->body);
		free(b->name);
		free(b);
		nb++;
	}
	if (nd || nb)
		log_debug("engine", "sweep: %zu idle destination(s), %zu unused message bod(ies) freed",
		    nd, nb);
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
	const char *k;
	void *v;
	size_t it = 0;

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
	    strcmp(nc->instance, old->instance) != 0 || nc->ndns_servers != old->ndns_servers)
		log_warn("engine", "SIGHUP: redis, instance and dns settings change at the next start");
	classify_rules_free(e->rules);
	e->rules = rules;
	e->old_cfgs = xrealloc(e->old_cfgs, (e->nold + 1) * sizeof *e->old_cfgs);
	e->old_scfgs = xrealloc(e->old_scfgs, (e->nold + 1) * sizeof *e->old_scfgs);
	e->old_cfgs[e->nold] = old;
	e->old_scfgs[e->nold] = e->scfg;
	e->nold++;
	e->cfg = nc;
	e->max_sessions = nc->max_sessions < e->fd_cap ? nc->max_sessions : e->fd_cap;
	build_session_cfgs(e);
	while (map_iter(&e->dests, &it, &k, &v)) {
		struct dest *d = v;
		const struct config_pool *p = config_pool(nc, d->pool->name);
		if (p)
			d->pool = p;
		dest_limits(nc, d);
	}
	log_info("engine", "SIGHUP: reloaded %s (%zu pool(s), %zu site(s), %zu domain rule(s))",
	    e->config_path, nc->npools, nc->nsites, nc->ndomains);
}

static void
on_tick(struct timer *t)
{
	struct engine *e = (struct engine *)((char *)t - offsetof(struct engine, tick));
	uint64_t now = loop_now(e->loop);

	if (sig_stop)
		begin_stop(e, "signal");
	if (sig_hup) {
		sig_hup = 0;
		engine_reload(e);
	}
	if (e->stopping) {
		if (e->nsessions == 0 && rq_outstanding(e->rq) == 0) {
			e->stopped = 1;
			loop_stop(e->loop);
			return;
		}
		if (now >= e->stop_deadline && !e->aborting) {
			/* Sessions that did not finish in time give their jobs
			 * back (deferred); a few seconds more for the writes. */
			log_warn("engine", "stop: %u session(s) still busy after smtp.stop_timeout "
			    "(%llu ms); aborting them", e->nsessions,
			    (unsigned long long)e->cfg->stop_ms);
			e->aborting = 1;
			e->stop_deadline = now + 5000;
			session_abort_all();
		} else if (now >= e->stop_deadline) {
			if (rq_outstanding(e->rq))
				log_error("engine", "stop: %zu settling write(s) could not reach Redis "
				    "(%s); those jobs stay pending and will be delivered again",
				    rq_outstanding(e->rq), rq_connected(e->rq) ? "no answer" : "not connected");
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
		if (room)
			rq_fetch(e->rq, room);
		if (room && now - e->last_retry_poll >= 500) {
			e->last_retry_poll = now;
			rq_fetch_retries(e->rq, room, clock_wall_ms());
		}
		if (room && now - e->last_claim >= (e->cfg->lease_ms / 2 > 1000 ? e->cfg->lease_ms / 2 : 1000)) {
			e->last_claim = now;
			rq_autoclaim(e->rq, room);
		}
		if (now - e->last_refresh >= e->cfg->lease_ms / 3) {
			e->last_refresh = now;
			refresh_leases(e);
		}
	}
	if (now - e->last_sweep >= 10000) {
		e->last_sweep = now;
		sweep(e);
	}
	if (now - e->last_stats >= 1000) {
		e->last_stats = now;
		write_stats(e);
	}
	if (e->opts.progress && now - e->last_progress >= 1000) {
		e->last_progress = now;
		print_progress(e, 0);
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

	log_flush();
	if (sig_stop && !e->stopping)
		on_tick(&e->tick);
}

static void
build_session_cfgs(struct engine *e)
{
	const struct config *c = e->cfg;
	size_t n = 1, k = 1;

	for (size_t i = 0; i < c->npools; i++)
		n += c->pools[i].nips;
	e->scfg = xcalloc(n, sizeof *e->scfg);
	e->timeouts.greeting = c->t_greeting_ms;
	e->timeouts.ehlo = c->t_ehlo_ms;
	e->timeouts.mail = c->t_mail_ms;
	e->timeouts.rcpt = c->t_rcpt_ms;
	e->timeouts.data = c->t_data_ms;
	e->timeouts.block = c->t_block_ms;
	e->timeouts.dot = c->t_dot_ms;
	e->timeouts.quit = 10000;
	e->timeouts.transaction = c->t_transaction_ms;
	for (size_t i = 0; i < n; i++) {
		struct session_cfg *s = &e->scfg[i];
		s->ehlo = c->ehlo;
		s->port = c->port;
		s->connect_ms = c->t_connect_ms;
		s->idle_ms = c->idle_ms;
		s->max_msgs = c->defaults.max_msgs_per_connection ? c->defaults.max_msgs_per_connection : 100;
		s->timeouts = &e->timeouts;
		s->id_header = c->id_header;
		s->return_path = c->return_path;
	}
	for (size_t i = 0; i < c->npools; i++)
		for (size_t j = 0; j < c->pools[i].nips; j++, k++)
			if (c->pools[i].ips[j].ehlo)
				e->scfg[k].ehlo = c->pools[i].ips[j].ehlo;
}

int
engine_run(struct config *cfg, const char *config_path, const struct engine_opts *o)
{
	struct engine *e = xcalloc(1, sizeof *e);
	struct rq_callbacks cb = { on_entries, on_read_done, on_connected };
	unsigned long nofile;
	char *err = NULL;
	const char *k;
	void *v;
	size_t it;

	e->cfg = cfg;
	e->config_path = config_path;
	e->opts = *o;
	e->all.all_next = e->all.all_prev = &e->all;
	e->started_wall = clock_wall_ms();
	nofile = loop_raise_nofile();
	/* One fd per session plus Redis, c-ares and the ring. */
	e->fd_cap = nofile > 128 ? (unsigned)(nofile - 64) : (unsigned)(nofile / 2 + 1);
	e->max_sessions = cfg->max_sessions < e->fd_cap ? cfg->max_sessions : e->fd_cap;
	if (e->max_sessions < cfg->max_sessions) {
		log_info("engine", "open file limit %lu: at most %u sessions (smtp.max_sessions %u; "
		    "raise the limit with ulimit -n / LimitNOFILE= for more)", nofile,
		    e->max_sessions, cfg->max_sessions);
	}
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
	e->sops.next_job = sop_next_job;
	e->sops.on_result = sop_on_result;
	e->sops.on_site_failure = sop_on_site_failure;
	e->sops.on_established = sop_on_established;
	e->sops.on_idle = sop_on_idle;
	e->sops.on_closed = sop_on_closed;
	build_session_cfgs(e);
	e->dns = dns_new(e->loop, cfg);
	e->rq = rq_new(e->loop, cfg, &cb, e);
	e->hook.fn = on_turn_end;
	e->hook.arg = e;
	loop_add_hook(e->loop, &e->hook);
	log_info("engine", "volley %s started: instance %s, redis %s, %zu pool(s), max %u sessions%s",
	    VOLLEY_VERSION, cfg->instance, cfg->redis_url_safe, cfg->npools, e->max_sessions,
	    o->drain ? ", draining" : "");
	timer_set(e->loop, &e->tick, 0, on_tick);
	loop_run(e->loop);
	timer_cancel(e->loop, &e->tick);

	print_progress(e, 1);
	log_info("engine", "stopped: delivered %llu, deferred %llu, bounced %llu, expired %llu, "
	    "failed %llu, suppressed %llu",
	    (unsigned long long)e->n_delivered, (unsigned long long)e->n_deferred,
	    (unsigned long long)e->n_bounced, (unsigned long long)e->n_expired,
	    (unsigned long long)e->n_failed, (unsigned long long)e->n_suppressed);

	/* Redis and DNS first: their cancelled requests call back into jobs,
	 * bodies and destinations, which must still exist. */
	e->tearing_down = 1;
	dns_free(e->dns);
	rq_free(e->rq);
	/* Cancelled polls of the Redis and c-ares sockets complete on the
	 * ring; their watchers free themselves then. */
	for (int i = 0; i < 20; i++)
		loop_turn(e->loop, 5);
	if (e->nsessions > 0) {
		/* Sessions that never completed their teardown still point at
		 * jobs and destinations: leave everything to process exit. */
		log_error("engine", "%u session(s) did not close; exiting without freeing",
		    e->nsessions);
		log_set_buffered(0);
		return 0;
	}
	/* Free what is left (held jobs stay pending in Redis). */
	while (e->all.all_next != &e->all)
		job_forget(e, e->all.all_next);
	it = 0;
	while (map_iter(&e->dests, &it, &k, &v)) {
		struct dest *d = v;
		timer_cancel(e->loop, &d->retry_timer);
		mxset_unref(d->mx);
		free(d->key);
		free(d->domain);
		free(d);
	}
	map_free(&e->dests);
	it = 0;
	while (map_iter(&e->ipstats, &it, &k, &v))
		free(v);
	map_free(&e->ipstats);
	it = 0;
	while (map_iter(&e->bodies, &it, &k, &v)) {
		struct bodyref *b = v;
		if (b->body)
			msg_body_unref(b->body);
		free(b->name);
		free(b);
	}
	map_free(&e->bodies);
	map_free(&e->jobs);
	classify_rules_free(e->rules);
	free(e->scfg);
	for (size_t i = 0; i < e->nold; i++) {
		if (e->old_cfgs[i] != cfg)	/* the caller frees the first one */
			config_free(e->old_cfgs[i]);
		free(e->old_scfgs[i]);
	}
	if (e->cfg != cfg)
		config_free(e->cfg);
	free(e->old_cfgs);
	free(e->old_scfgs);
	loop_free(e->loop);
	free(e);
	log_set_buffered(0);
	return 0;
}
