/*
 * scheduler.c - the scheduler (scheduler.h): destinations, sessions, outcomes.
 *
 * Destinations open sessions up to their connection limit and the global
 * smtp.max_sessions, reuse idle ones first, and when every MX fails
 * before a transaction they back off: no new connection meanwhile (as
 * Postfix marks a destination dead). The decisions about counts and
 * queues are dest.c's (pure); what a result means is trouble.c's; this
 * file does the I/O those decisions ask for.
 */
#include "scheduler.h"
#include "classify.h"
#include "config.h"
#include "conn.h"
#include "dest.h"
#include "dns.h"
#include "job.h"
#include "ledger.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "session.h"
#include "stats.h"
#include "trouble.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEST_BACKOFF_MS		5000	/* after every MX failed, before trying again */
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
};

struct sched {
	struct loop *loop;
	struct dns *dns;
	struct ledger *lg;
	struct stats *st;
	const struct config *cfg;	/* current */
	const struct classify_rules *rules;
	struct epoch *epochs;		/* current first */
	struct session_ops ops;
	struct dests ds;
	struct map broken;		/* source ip -> struct broken */
	unsigned nsessions;
	unsigned max_sessions;		/* smtp.max_sessions, capped by the fd limit */
	unsigned fd_cap;
	int stopping;
};

static void sched_kick(struct sched *s, struct dest *d);

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

/* dest_limits - the limits for d: its site (from its first MX host), its
 * domain block, then the smtp defaults (config_limits_for). */
static void
sched_dest_limits(const struct config *cfg, struct dest *d)
{
	const struct config_site *site = d->mx ? config_site_for_mx(cfg, d->mx->t[0].host) : NULL;

	d->lim = config_limits_for(cfg, site, config_domain_find(cfg, d->domain));
	snprintf(d->site, sizeof d->site, "%s", site ? site->name : "");
}

/* Settle every queued job of d with the same outcome (DNS or site failure). */
static void
sched_fail_queue(struct sched *s, struct dest *d, const struct job_outcome *tmpl)
{
	struct job *j;

	while ((j = dest_pop_any(d)) != NULL) {
		struct job_outcome o = *tmpl;
		ledger_settle(s->lg, j, &o);
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

	d->resolving = 0;
	if (r->status == DNS_OK && r->ntargets > 0) {
		mxset_unref(d->mx);
		d->mx = mxset_from_dns(r);
		sched_dest_limits(s->cfg, d);
		if (!s->stopping)
			sched_open_sessions(s, d);
		return;
	}
	if (s->stopping)
		return;		/* queues were handed back */
	trouble_from_dns(r->status, d->domain, r->error, &o);
	if (o.status == JOB_DEFERRED && d->nsessions > 0 && d->mx != NULL) {
		/* A passing DNS failure on a new lookup while sessions from the
		 * last good answer still carry the queue: let them. */
		log_info("dest", "dest=%s MX lookup failed; %u open session(s) carry the queue",
		    d->key, d->nsessions);
		return;
	}
	sched_fail_queue(s, d, &o);
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

/*
 * sched_pick_source - a session's source: the next usable IP of the
 * destination's pool, round robin, looked up by name in the running
 * configuration (a reload may have changed the pool or dropped it: then
 * the default pool). An IP is not usable while it is set aside (it could
 * not be bound) or when no MX address of d is of its family. Returns NULL
 * when none is, with the reason and the IP it concerns in why / why_ip.
 */
static const struct session_cfg *
sched_pick_source(struct sched *s, struct dest *d, const char **src_ip, char *why,
    size_t whylen, const char **why_ip)
{
	const struct config *c = s->cfg;
	const struct config_pool *p = config_pool(c, d->pool);
	size_t base = 1;

	*src_ip = NULL;
	*why_ip = NULL;
	if (p == NULL)
		p = config_pool(c, "default");
	if (p == NULL || p->nips == 0)
		return &s->epochs->scfg[0];
	for (size_t i = 0; i < c->npools && &c->pools[i] != p; i++)
		base += c->pools[i].nips;
	for (size_t tries = 0; tries < p->nips; tries++) {
		size_t k = d->ip_rr++ % p->nips;
		const char *ip = p->ips[k].addr;
		const struct broken *b = source_broken(s, ip);
		int fam = conn_ip_family(ip);

		if (b != NULL) {
			snprintf(why, whylen, "%s", b->reason);
			*why_ip = ip;
			continue;
		}
		if (d->mx && fam != AF_UNSPEC && mxset_count_family(d->mx, fam) == 0) {
			snprintf(why, whylen, "source %s is %s and every MX address of this "
			    "destination is %s (%zu address(es), first host %s)", ip,
			    fam == AF_INET6 ? "IPv6" : "IPv4", fam == AF_INET6 ? "IPv4" : "IPv6",
			    d->mx->n, d->mx->n ? d->mx->t[0].host : "?");
			*why_ip = ip;
			continue;
		}
		*src_ip = ip;
		return &s->epochs->scfg[base + k];
	}
	return NULL;
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

static void
sched_open_sessions(struct sched *s, struct dest *d)
{
	unsigned global_free = s->nsessions < s->max_sessions ? s->max_sessions - s->nsessions : 0;
	int wait_global;
	unsigned n = dest_plan(d, loop_now(s->loop), global_free, &wait_global);

	for (unsigned i = 0; i < n; i++) {
		const char *src, *why_ip;
		char why[600];
		const struct session_cfg *sc = sched_pick_source(s, d, &src, why, sizeof why, &why_ip);
		struct sref *ref;
		struct session *ss;

		if (sc == NULL) {
			struct job_outcome o;
			if (d->nsessions > 0)
				return;		/* the open sessions carry the queue */
			trouble_from_local(&o, why);
			o.ip = why_ip;
			char q[sizeof why * 4 + 1];
			log_warn("scheduler", "dest=%s no usable source address pool=%s reason=\"%s\"; "
			    "deferring %zu queued job(s)", d->key, d->pool, quote(q, sizeof q, why),
			    d->queued);
			sched_fail_queue(s, d, &o);
			return;
		}
		ref = xmalloc(sizeof *ref);
		ref->s = s;
		ref->d = d;
		ref->ep = s->epochs;
		ref->ep->nsessions++;
		dest_session_opened(d);
		s->nsessions++;
		stats_session(s->st, d->pool, src, 1);
		ss = session_open(s->loop, &s->ops, sc, d->mx, src, d->lim.max_msgs_per_connection,
		    ref);
		session_set_tls(ss, (enum tls_policy)d->lim.tls);
	}
	if (wait_global)
		sched_wait_global(s, d);
}

static void
on_dest_retry(struct timer *t)
{
	struct dest *d = (struct dest *)((char *)t - offsetof(struct dest, retry_timer));

	sched_kick(d->owner, d);
}

/* Something changed for d (new job, session freed): act on it. */
static void
sched_kick(struct sched *s, struct dest *d)
{
	struct session *idle;
	uint64_t now = loop_now(s->loop);

	if (s->stopping)
		return;
	/* Idle sessions first: a reused session costs nothing. */
	while (d->queued > 0 && (idle = d->idle) != NULL) {
		struct job *expired = NULL;
		struct job *j = dest_pop(d, clock_wall_ms(), &expired);
		sched_settle_expired(s, expired);
		if (j == NULL)
			break;
		session_give(idle, j);	/* on_idle(idle, 0) unlinks it */
	}
	if (d->queued == 0)
		return;
	if (now < d->backoff_until) {
		/* Every MX failed a moment ago: no new connection until the
		 * back-off ends; then one more try, and if that fails too
		 * the queue is deferred (sop_on_site_failure). Open sessions
		 * keep pulling from the queue meanwhile. */
		if (!timer_armed(&d->retry_timer))
			timer_set(s->loop, &d->retry_timer, d->backoff_until - now, on_dest_retry);
		return;
	}
	if (!dest_wants_mx(d, now))
		return;
	d->resolving = 1;
	dns_query_mx(s->dns, d->domain, on_mx, d);	/* may call on_mx at once */
}

/* --- session callbacks --- */

static struct job *
sop_next_job(struct session *ss)
{
	struct sref *ref = session_owner(ss);
	struct job *expired = NULL, *j;

	if (ref->s->stopping)
		return NULL;
	j = dest_pop(ref->d, clock_wall_ms(), &expired);
	sched_settle_expired(ref->s, expired);
	return j;
}

static void
sop_on_result(struct session *ss, struct job *j, const struct smtp_result *r)
{
	struct sref *ref = session_owner(ss);
	struct sched *s = ref->s;
	struct dest *d = ref->d;
	struct job_outcome o;

	trouble_from_smtp(s->rules, r, 1, &o);
	o.mx = session_mx(ss);
	o.ip = session_local_ip(ss);
	o.tls = session_tls(ss);
	if (o.source_fault && session_src_ip(ss)[0] && !s->stopping) {
		/* Not the destination's fault nor the job's: another source
		 * takes it (the session reports the failure next). */
		dest_push(d, j, loop_now(s->loop));
		return;
	}
	if (o.status == JOB_DELIVERED)
		d->delivered++;
	else if (o.status == JOB_BOUNCED)
		d->bounced++;
	else
		d->deferred++;
	stats_result(s->st, d->pool, session_src_ip(ss), o.status);
	ledger_settle(s->lg, j, &o);
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

	trouble_from_site(s->rules, r, &o);
	o.mx = NULL;
	o.ip = session_local_ip(ss);
	others = dest_site_failed(d, loop_now(s->loop), DEST_BACKOFF_MS);
	if (others > 0) {
		/* Other sessions are open or still connecting: the site may
		 * just take no more connections (a provider's per-IP limit).
		 * They carry the queue; the last one to fail defers it. No
		 * new connection for a while. */
		log_warn("dest", "dest=%s a new connection failed on every MX reason=\"%s\"; %u "
		    "other session(s) carry the queue, no new connection for %d s", d->key,
		    quote(q, sizeof q, o.reply), others, DEST_BACKOFF_MS / 1000);
		sched_kick(s, d);	/* arms the retry at the end of the back-off */
		return;
	}
	log_warn("dest", "dest=%s every MX failed reason=\"%s\"; deferring %zu queued job(s), "
	    "backing off %d s", d->key, quote(q, sizeof q, o.reply), d->queued,
	    DEST_BACKOFF_MS / 1000);
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
}

static void
sop_on_idle(struct session *ss, int idle)
{
	struct sref *ref = session_owner(ss);
	struct dest *d = ref->d;

	if (idle) {
		session_list_set_prev(ss, NULL);
		session_list_set_next(ss, d->idle);
		if (d->idle)
			session_list_set_prev(d->idle, ss);
		d->idle = ss;
		if (ref->s->stopping)
			session_quit(ss);
	} else {
		struct session *p = session_list_prev(ss), *n = session_list_next(ss);
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

	dest_session_closed(d, session_was_established(ss));
	s->nsessions--;
	stats_session(s->st, d->pool, session_src_ip(ss), -1);
	ref->ep->nsessions--;
	free(ref);
	if (s->epochs->next)
		epochs_collect(s);
	if (s->stopping)
		return;
	if (d->queued > 0)
		sched_kick(s, d);
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
	s->ops.next_job = sop_next_job;
	s->ops.on_result = sop_on_result;
	s->ops.on_site_failure = sop_on_site_failure;
	s->ops.on_established = sop_on_established;
	s->ops.on_idle = sop_on_idle;
	s->ops.on_closed = sop_on_closed;
	s->ops.on_source_failure = sop_on_source_failure;
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
	dests_free(&s->ds);
	it = 0;
	while (map_iter(&s->broken, &it, &k, &v))
		free(v);
	map_free(&s->broken);
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
	while (map_iter(&s->ds.map, &it, &k, &v))
		sched_dest_limits(cfg, v);
	epochs_collect(s);
}

void
sched_route(struct sched *s, struct job *j)
{
	const char *pool = j->pool ? j->pool : "default";
	struct dest *d;
	struct job_outcome o;

	if (config_pool(s->cfg, pool) == NULL) {
		char why[300];
		snprintf(why, sizeof why, "unknown pool '%s'", pool);
		ledger_fail(s->lg, j, why);
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
	if (d->owner == NULL) {
		d->owner = s;
		sched_dest_limits(s->cfg, d);
	}
	if (dest_full(d, s->cfg->max_queued_per_dest)) {
		/* One slow destination must not fill memory and hold back the
		 * others: past its share, its jobs wait in Redis. */
		if (d->parked++ % 1000 == 0)
			log_info("scheduler", "dest=%s holds %zu jobs (smtp.max_queued_per_destination); "
			    "more wait in Redis (%llu so far)", d->key, d->queued,
			    (unsigned long long)d->parked);
		ledger_park(s->lg, j, clock_wall_ms() + PARK_MS + (uint64_t)(d->queued % 1000));
		return;
	}
	dest_push(d, j, loop_now(s->loop));
	sched_kick(s, d);
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
}

void
sched_halt(struct sched *s)
{
	s->stopping = 1;
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

	while (map_iter(&s->ds.map, &it, &k, &v)) {
		struct dest *d = v;
		if (!dest_sweepable(d, now, DEST_IDLE_MS) || timer_armed(&d->retry_timer))
			continue;
		dests_drop(&s->ds, d);	/* the slot's key is freed; k not used after */
		n++;
	}
	return n;
}

unsigned sched_sessions(const struct sched *s) { return s->nsessions; }
unsigned sched_max_sessions(const struct sched *s) { return s->max_sessions; }
const struct dests *sched_dests(const struct sched *s) { return &s->ds; }
