/*
 * dest.c - destinations and their queues. See dest.h: pure state and
 * decisions, no I/O, time passed in.
 */
#include "dest.h"
#include "job.h"
#include "session.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_CONNECTIONS 20

struct dest *
dests_get(struct dests *ds, const char *pool, const char *domain)
{
	char key[600];
	struct dest *d;

	snprintf(key, sizeof key, "%s|%s", pool, domain);
	d = map_get(&ds->map, key);
	if (d)
		return d;
	d = xcalloc(1, sizeof *d);
	d->key = xstrdup(key);
	d->domain = xstrdup(domain);
	d->pool = xstrdup(pool);
	map_put(&ds->map, key, d);
	return d;
}

void
dest_clear_lanes(struct dest *d)
{
	for (size_t i = 0; i < d->nlanes; i++)
		shaper_lane_unref(d->lanes[i]);
	free(d->lanes);
	free(d->lane_cfg);
	free(d->lane_weight);
	free(d->lane_credit);
	free(d->lane_nsess);
	d->lane_credit = NULL;
	d->lane_nsess = NULL;
	d->lanes = NULL;
	d->lane_cfg = NULL;
	d->lane_weight = NULL;
	d->nlanes = 0;
}

void
dest_set_lanes(struct dest *d, struct shaper_lane **lanes, size_t *cfg, uint32_t *weight,
    size_t n)
{
	dest_clear_lanes(d);
	d->lanes = lanes;
	d->lane_cfg = cfg;
	d->lane_weight = weight;
	d->weights_equal = 1;
	for (size_t i = 1; i < n; i++)
		if (weight[i] != weight[0])
			d->weights_equal = 0;
	d->lane_credit = xcalloc(n ? n : 1, sizeof *d->lane_credit);
	d->lane_nsess = xcalloc(n ? n : 1, sizeof *d->lane_nsess);
	d->nlanes = n;
}

static void
dest_free(struct dest *d)
{
	dest_clear_lanes(d);
	mxset_unref(d->mx);
	free(d->lw);
	free(d->key);
	free(d->domain);
	free(d->pool);
	free(d);
}

void
dests_drop(struct dests *ds, struct dest *d)
{
	if (d->queued || d->nsessions)
		panic("dests_drop: destination %s still busy", d->key);
	map_del(&ds->map, d->key);
	dest_free(d);
}

void
dests_free(struct dests *ds)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&ds->map, &it, &k, &v))
		dest_free(v);
	map_free(&ds->map);
	ds->wait_head = ds->wait_tail = NULL;
}

void
dest_push(struct dest *d, struct job *j, uint64_t now)
{
	unsigned c = job_priority_rank(j->priority);

	d->last_used = now;
	j->next = NULL;
	j->dest = d;
	if (d->qtail[c])
		d->qtail[c]->next = j;
	else
		d->qhead[c] = j;
	d->qtail[c] = j;
	d->queued++;
}

/* evict_newest - take the tail job of class c off the queue. A walk of
 * that class: rare (a higher job meeting a full queue), and the class is
 * at most the cap long. */
static struct job *
evict_newest(struct dest *d, unsigned c)
{
	struct job *j = d->qtail[c], *p = d->qhead[c];

	if (p == j) {
		d->qhead[c] = d->qtail[c] = NULL;
	} else {
		while (p->next != j)
			p = p->next;
		p->next = NULL;
		d->qtail[c] = p;
	}
	d->queued--;
	j->next = NULL;
	j->dest = NULL;
	return j;
}

struct job *
dest_push_capped(struct dest *d, struct job *j, uint64_t now, size_t cap)
{
	unsigned mine = job_priority_rank(j->priority);
	struct job *out;

	if (d->queued < cap) {
		dest_push(d, j, now);
		return NULL;
	}
	for (unsigned c = JOB_PRIO__N; c-- > mine + 1;) {
		if (d->qtail[c] == NULL)
			continue;
		out = evict_newest(d, c);
		dest_push(d, j, now);
		return out;
	}
	return j;
}

struct job *
dest_pop_any(struct dest *d)
{
	for (unsigned c = 0; c < JOB_PRIO__N; c++) {
		struct job *j = d->qhead[c];

		if (j == NULL)
			continue;
		d->qhead[c] = j->next;
		if (d->qhead[c] == NULL)
			d->qtail[c] = NULL;
		d->queued--;
		j->next = NULL;
		j->dest = NULL;
		return j;
	}
	return NULL;
}

struct job *
dest_pop(struct dest *d, uint64_t now_wall_ms, struct job **expired)
{
	struct job *j;

	while ((j = dest_pop_any(d)) != NULL) {
		if (now_wall_ms < j->expires_at_ms)
			return j;
		j->next = *expired;
		*expired = j;
	}
	return NULL;
}

int
dest_full(const struct dest *d, size_t cap)
{
	return d->queued >= cap;
}

unsigned
dest_plan(const struct dest *d, uint64_t now, unsigned global_free, int *wait_global)
{
	unsigned limit = d->lim.max_connections ? d->lim.max_connections : DEFAULT_MAX_CONNECTIONS;
	size_t want;
	unsigned n;

	*wait_global = 0;
	if (now < d->backoff_until || d->queued <= d->nconnecting || d->nsessions >= limit)
		return 0;
	want = d->queued - d->nconnecting;
	n = limit - d->nsessions;
	if (want < n)
		n = (unsigned)want;
	if (n > global_free) {
		n = global_free;
		*wait_global = 1;
	}
	return n;
}

int
dest_wants_mx(const struct dest *d, uint64_t now)
{
	return !d->resolving && now >= d->backoff_until && d->queued > d->nconnecting;
}

void
dest_session_opened(struct dest *d)
{
	d->nsessions++;
	d->nconnecting++;
}

void
dest_session_established(struct dest *d)
{
	if (d->nconnecting == 0)
		panic("dest %s: established without a connecting session", d->key);
	d->nconnecting--;
	d->backoff_until = 0;
}

void
dest_session_closed(struct dest *d, int was_established)
{
	if (d->nsessions == 0 || (!was_established && d->nconnecting == 0))
		panic("dest %s: session count underflow", d->key);
	if (!was_established)
		d->nconnecting--;
	d->nsessions--;
}

unsigned
dest_site_failed(struct dest *d, uint64_t now, uint64_t backoff_ms)
{
	d->backoff_until = now + backoff_ms;
	return d->nsessions > 0 ? d->nsessions - 1 : 0;	/* the failed one still counts */
}

int
dest_sweepable(const struct dest *d, uint64_t now, uint64_t idle_ms)
{
	return d->queued == 0 && d->nsessions == 0 && !d->resolving && !d->waiting_global &&
	    now - d->last_used >= idle_ms;
}

void
dests_wait(struct dests *ds, struct dest *d)
{
	if (d->waiting_global)
		return;
	d->waiting_global = 1;
	d->wait_next = NULL;
	if (ds->wait_tail)
		ds->wait_tail->wait_next = d;
	else
		ds->wait_head = d;
	ds->wait_tail = d;
}

struct dest *
dests_next_waiting(struct dests *ds)
{
	struct dest *d = ds->wait_head;

	if (d == NULL)
		return NULL;
	ds->wait_head = d->wait_next;
	if (ds->wait_head == NULL)
		ds->wait_tail = NULL;
	d->waiting_global = 0;
	d->wait_next = NULL;
	return d;
}
