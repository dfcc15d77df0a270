/*
 * dest.h - destinations and their queues: the scheduler's pure state.
 *
 * A destination is (pool, recipient domain). It owns the jobs queued for
 * it (one FIFO per priority class: high leaves before normal, normal
 * before low), counts its sessions (open, still connecting), remembers its
 * MX answer, its limits, its back-off after every MX failed, and its
 * outcome counters. The set of destinations (struct dests) also keeps the
 * list of destinations waiting for a global session slot.
 *
 * Nothing here does I/O or reads a clock: the scheduler (scheduler.c) passes
 * the time in and acts on the answers (open so many sessions, wait for a
 * global slot, settle these expired jobs). Unit-tested in test_dest.c.
 *
 * Invariants: queued == the summed length of the qhead lists; nconnecting <=
 * nsessions; a job is on at most one queue (j->dest names it).
 */
#ifndef VOLLEY_DEST_H
#define VOLLEY_DEST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "fleet.h"
#include "job.h"
#include "loop.h"
#include "map.h"
#include "shaper.h"

struct job;
struct mxset;
struct session;

/* A destination's place in the waiting queue of one of its lanes (the
 * scheduler links them; one per lane while it waits for a full lane). */
struct dest_lw {
	struct dest *d;
	struct dest_lw *prev, *next;
};

struct dest {
	char *key;			/* "pool|domain" */
	char *domain;			/* the domain as used for DNS (A-labels) */
	char *pool;			/* pool name (looked up again after a reload) */
	struct config_limits lim;
	char site[64];			/* the site its MX hosts fall under, or "" */
	/* Shaping: the destination its mail goes to (a site, a domain
	 * block, or the MX rollup) and one lane per pool IP (a pool with
	 * none: one lane of the pseudo-IP "0.0.0.0"), each referenced. */
	char sdest[SHAPER_DEST_MAX];
	struct shaper_limits slim;
	char fleet_key[FLEET_KEY_MAX];	/* its fleet-wide limit ("site:NAME"...), or "" */
	uint64_t fleet_mph;		/* that limit, 0: none */
	struct shaper_lane **lanes;
	size_t *lane_cfg;		/* session settings index (0: default source) */
	uint32_t *lane_weight;
	/* Per lane, kept by the scheduler: smooth weighted round-robin credit
	 * per job handed out, and this destination's sessions on the lane. */
	int64_t *lane_credit;
	unsigned *lane_nsess;
	int weights_equal;		/* every lane weighs the same: no per-job turns */
	uint64_t weight_wait;		/* mono ms a lane in debit began to wait (0: none) */
	size_t nlanes;
	unsigned lanes_gen;		/* configuration generation they were built in */
	int lane_waiting;		/* in its lanes' waiting queues (full lanes) */
	struct dest_lw *lw;		/* nlanes of them while waiting */
	size_t lw_cap;
	/* by job_priority_rank(): [0] high, [1] normal, [2] low */
	struct job *qhead[JOB_PRIO__N], *qtail[JOB_PRIO__N];
	size_t queued;
	unsigned nsessions, nconnecting;
	struct session *idle;		/* idle sessions (scheduler.c links them) */
	struct mxset *mx;		/* NULL until the first answer */
	int resolving;
	char q_route[128];		/* the lookup in flight: a smarthost's name, or "" (MX) */
	int sts_enforce;		/* MTA-STS enforce: policy MX only, tls = verify */
	int waiting_global;
	struct dest *wait_next;
	uint64_t backoff_until;		/* mono ms: no new connection before */
	uint64_t last_used;		/* mono ms of the last job pushed */
	uint64_t delivered, deferred, bounced;
	uint64_t parked;		/* jobs sent back to Redis: over the cap */
	struct timer retry_timer;	/* armed by the scheduler to end a back-off */
	void *owner;			/* the scheduler */
};

struct dests {
	struct map map;			/* key -> struct dest */
	struct dest *wait_head, *wait_tail;	/* waiting for a global slot */
};

/* dests_get - the destination for (pool, domain), created on first use. */
struct dest *dests_get(struct dests *ds, const char *pool, const char *domain);
/* dests_drop - forget d (it must be empty: no job, no session). */
void dests_drop(struct dests *ds, struct dest *d);
void dests_free(struct dests *ds);

/*
 * dest_set_lanes - d's lanes (n of them, each already referenced for d);
 * the old ones are unreferenced. dest_clear_lanes drops them all.
 */
void dest_set_lanes(struct dest *d, struct shaper_lane **lanes, size_t *cfg, uint32_t *weight,
    size_t n);
void dest_clear_lanes(struct dest *d);

/* dest_push - queue j at the tail of its priority class (now: mono ms,
 * for the idle sweep). */
void dest_push(struct dest *d, struct job *j, uint64_t now);
/*
 * dest_push_capped - dest_push within cap jobs. Below the cap: j is
 * queued, NULL is returned. At the cap: if a class below j's holds jobs,
 * the newest job of the lowest such class leaves the queue and is
 * returned (the caller parks it) and j takes its room; otherwise j is
 * not queued and is returned. So a high job is never parked while normal
 * or low ones hold the room, and the queue never exceeds cap.
 */
struct job *dest_push_capped(struct dest *d, struct job *j, uint64_t now, size_t cap);
/*
 * dest_pop - the next job to send (the oldest of the highest class), or NULL. Jobs whose expires_at has
 * passed (now_wall_ms) are taken off too and chained through j->next
 * onto *expired, for the caller to settle: an expired job is never sent.
 */
struct job *dest_pop(struct dest *d, uint64_t now_wall_ms, struct job **expired);
/* dest_pop_any - the next job whatever its expiry (hand back, fail all). */
struct job *dest_pop_any(struct dest *d);
/* dest_full - whether d holds cap jobs or more (the rest stay in Redis). */
int dest_full(const struct dest *d, size_t cap);

/*
 * dest_plan - how many new sessions to open for d now: enough for what
 * is queued beyond those still connecting, within its connection limit
 * (lim.max_connections, 20 if unset) and the global_free slots, none
 * while backing off. *wait_global is set when the global cap is what
 * holds it back (the caller queues d for the next free slot).
 */
unsigned dest_plan(const struct dest *d, uint64_t now, unsigned global_free, int *wait_global);
/* Whether an MX lookup is wanted now (work beyond the connecting sessions). */
int dest_wants_mx(const struct dest *d, uint64_t now);

/* Session accounting. */
void dest_session_opened(struct dest *d);
void dest_session_established(struct dest *d);
void dest_session_closed(struct dest *d, int was_established);

/*
 * dest_site_failed - a new connection failed on every MX. Backs off for
 * backoff_ms. Returns the number of other sessions still carrying the
 * queue (0: the caller defers the queue).
 */
unsigned dest_site_failed(struct dest *d, uint64_t now, uint64_t backoff_ms);

/* dest_sweepable - nothing queued, running or pending, unused idle_ms. */
int dest_sweepable(const struct dest *d, uint64_t now, uint64_t idle_ms);

/* The global-slot waiting list. */
void dests_wait(struct dests *ds, struct dest *d);
struct dest *dests_next_waiting(struct dests *ds);

#endif
