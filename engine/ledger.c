/*
 * ledger.c - the jobs held in memory and how they leave it (ledger.h).
 *
 * Jobs are in a map by key (see JOB_HIGH_KEY_PREFIX) and on a doubly linked list (for
 * the lease refresh, in order of arrival). What an outcome means was
 * decided by trouble.c before it gets here; the ledger only turns a
 * deferral past the job's end into `expired`, picks the retry time from
 * the schedule, logs one line per outcome and hands the write to the
 * Redis module.
 */
#include "ledger.h"
#include "config.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "redis.h"
#include "route.h"
#include "trouble.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ledger {
	struct loop *loop;
	struct rq *rq;
	const struct config *cfg;
	struct map jobs;		/* key -> job */
	struct job all;			/* list head of held jobs */
	size_t njobs;
	size_t bytes;			/* inline bodies held */
	int tearing_down;
	const struct route_owner *own;
	struct ledger_counts n;
};

/* The pool whose retry ZSET j waits in (NULL: PREFIXretry). */
static const char *
retry_pool_of(const struct ledger *lg, const struct job *j)
{
	return route_retry_pool(lg->own, lg->cfg, j->pool ? j->pool : "default");
}

struct ledger *
ledger_new(struct loop *l, struct rq *rq, const struct config *cfg)
{
	struct ledger *lg = xcalloc(1, sizeof *lg);

	lg->loop = l;
	lg->rq = rq;
	lg->cfg = cfg;
	lg->all.all_next = lg->all.all_prev = &lg->all;
	return lg;
}

void
ledger_free(struct ledger *lg)
{
	if (lg == NULL)
		return;
	while (lg->all.all_next != &lg->all)
		ledger_forget(lg, lg->all.all_next);
	map_free(&lg->jobs);
	free(lg);
}

void ledger_set_config(struct ledger *lg, const struct config *cfg) { lg->cfg = cfg; }
void ledger_set_tearing_down(struct ledger *lg) { lg->tearing_down = 1; }
void ledger_set_owner(struct ledger *lg, const struct route_owner *own) { lg->own = own; }
size_t ledger_bytes(const struct ledger *lg) { return lg->bytes; }
size_t ledger_count(const struct ledger *lg) { return lg->njobs; }
const struct ledger_counts *ledger_counts(const struct ledger *lg) { return &lg->n; }

struct job *
ledger_find(const struct ledger *lg, const char *key)
{
	return map_get(&lg->jobs, key);
}

void
ledger_track(struct ledger *lg, struct job *j)
{
	if (map_get(&lg->jobs, j->key))
		panic("ledger: job %s tracked twice", j->key);
	map_put(&lg->jobs, j->key, j);
	j->all_next = lg->all.all_next;
	j->all_prev = &lg->all;
	lg->all.all_next->all_prev = j;
	lg->all.all_next = j;
	j->taken_ms = loop_now(lg->loop);
	lg->njobs++;
	lg->n.taken++;
}

void
ledger_add_bytes(struct ledger *lg, struct job *j, size_t n)
{
	j->held_bytes += n;
	lg->bytes += n;
}

void
ledger_forget(struct ledger *lg, struct job *j)
{
	map_del(&lg->jobs, j->key);
	j->all_prev->all_next = j->all_next;
	j->all_next->all_prev = j->all_prev;
	lg->njobs--;
	lg->bytes -= j->held_bytes;
	job_free(j);
}

void
ledger_hand_back(struct ledger *lg, struct job *j)
{
	if (!lg->tearing_down)
		rq_release_retry(lg->rq, j, clock_wall_ms());
	ledger_forget(lg, j);
}

static void
ledger_log(const struct job *j, const struct job_outcome *o)
{
	char reply[sizeof o->reply * 4 + 1], verdict[64], mx[300];

	if (log_level_max < LOG_INFO)
		return;
	log_quote(reply, sizeof reply, o->reply);
	log_quote(mx, sizeof mx, o->mx ? o->mx : "-");
	if (trouble_verdict_to_text(o, verdict, sizeof verdict)[0] == '\0')
		snprintf(verdict, sizeof verdict, "-");
	log_info("job", "job=%s to=%s status=%s attempt=%u code=%d enh=%s class=%s verdict=%s mx=\"%s\" "
	    "ip=%s reply=\"%s\"", j->id, j->to, job_status_name(o->status), j->attempts + 1, o->code,
	    o->enh[0] ? o->enh : "-", o->has_class ? bounce_class_name(o->cls) : "-",
	    verdict,
	    mx, o->ip && o->ip[0] ? o->ip : "-", reply);
}

void
ledger_settle(struct ledger *lg, struct job *j, struct job_outcome *o)
{
	ledger_settle_at(lg, j, o, 0);
}

void
ledger_settle_at(struct ledger *lg, struct job *j, struct job_outcome *o, uint64_t due_wall_ms)
{
	if (o->status == JOB_DEFERRED) {
		uint64_t now = clock_wall_ms();
		uint64_t due = due_wall_ms > now ? due_wall_ms :
		    now + config_retry_delay(lg->cfg, j->attempts + 1);

		if (now >= j->expires_at_ms) {
			trouble_expire_deferred(o, j->attempts + 1);
		} else {
			/* Never wait past the job's end: the last retry is at
			 * expires_at, where it ends `expired`. */
			if (due > j->expires_at_ms)
				due = j->expires_at_ms;
			ledger_log(j, o);
			rq_defer(lg->rq, j, o, due, retry_pool_of(lg, j));
			lg->n.deferred++;
			ledger_forget(lg, j);
			return;
		}
	}
	ledger_log(j, o);
	rq_final(lg->rq, j, o, o->suppress);
	switch (o->status) {
	case JOB_DELIVERED: lg->n.delivered++; break;
	case JOB_BOUNCED: lg->n.bounced++; break;
	case JOB_EXPIRED: lg->n.expired++; break;
	case JOB_FAILED: lg->n.failed++; break;
	case JOB_SUPPRESSED: lg->n.suppressed++; break;
	default: break;
	}
	ledger_forget(lg, j);
}

void
ledger_park(struct ledger *lg, struct job *j, uint64_t due_wall_ms)
{
	rq_park(lg->rq, j, due_wall_ms, retry_pool_of(lg, j));
	lg->n.parked++;
	ledger_forget(lg, j);
}

void
ledger_hand_over(struct ledger *lg, struct job *j)
{
	const char *pool = j->pool ? j->pool : "default";

	/* A foreign pool always has its own ZSET; never PREFIXretry, which
	 * this host would lease it from again. */
	if (lg->n.handed_over++ % 1000 == 0)
		log_info("job", "job=%s pool=%s: no address of this pool is this host's; handed "
		    "over to its owners (%llu so far)", j->id, pool,
		    (unsigned long long)lg->n.handed_over);
	rq_park(lg->rq, j, clock_wall_ms(), pool);
	ledger_forget(lg, j);
}

void
ledger_fail(struct ledger *lg, struct job *j, const char *why)
{
	struct job_outcome o;

	trouble_invalid(&o, why);
	ledger_settle(lg, j, &o);
}

void
ledger_refresh_leases(struct ledger *lg)
{
	uint64_t now = loop_now(lg->loop), age = lg->cfg->lease_ms / 3;
	const struct job **held = xcalloc(1000, sizeof *held);
	size_t n = 0;

	for (struct job *j = lg->all.all_next; j != &lg->all; j = j->all_next) {
		if (now - j->taken_ms < age)
			continue;
		held[n++] = j;
		if (n >= 1000) {
			rq_refresh(lg->rq, held, n, clock_wall_ms() + lg->cfg->lease_ms);
			n = 0;
		}
	}
	if (n)
		rq_refresh(lg->rq, held, n, clock_wall_ms() + lg->cfg->lease_ms);
	free(held);
}
