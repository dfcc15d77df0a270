/*
 * scheduler.h - the scheduler: jobs onto destinations, sessions for them.
 *
 * A job ready to send is routed to its destination (pool, domain) and
 * queued there (dest.h). The scheduler looks up the destination's MX,
 * opens sessions within the destination's and the global limits, hands
 * each session the next job when it asks, and turns every session result
 * into an outcome through trouble.c, which the ledger settles.
 *
 * Sessions are opened from the destination's pool: the shaper picks the
 * source IP (by weight, among the IPs whose lane may connect and send
 * now) and paces each lane's sessions and messages; every result goes
 * back to the lane (docs/shaping.md, "What the scheduler does today"). A
 * source that cannot be bound (this host's fault) is set aside for a
 * while and another IP of the pool is used, without blaming the
 * destination. When every MX fails before a transaction, the lane's
 * window shrinks (a failed cohort closes it); if no other session carries
 * the queue, it is deferred. Jobs that wait for a suspended or closed
 * pool are retried when that ends, not on the retry schedule.
 *
 * A configuration replaced by SIGHUP is freed once the last session
 * opened under it has closed.
 */
#ifndef VOLLEY_SCHEDULER_H
#define VOLLEY_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

struct classify_rules;
struct config;
struct dests;
struct dns;
struct fleet;
struct job;
struct ledger;
struct loop;
struct stats;

struct sched *sched_new(struct loop *l, struct dns *dns, struct ledger *lg, struct stats *st,
    const struct config *cfg, const struct classify_rules *rules, unsigned fd_cap);
/*
 * sched_free - free what is left. Returns -1 (and frees nothing) if
 * sessions are still open: they point into the scheduler.
 */
int sched_free(struct sched *s);

/*
 * sched_set_config - SIGHUP: new sessions use cfg (pools, limits,
 * timeouts, EHLO names) and rules. The scheduler takes ownership of cfg;
 * owned_old says whether it also owns the configuration it replaces
 * (then it is freed once no session uses it).
 */
void sched_set_config(struct sched *s, struct config *cfg, int owned_old,
    const struct classify_rules *rules);

/* Which pools and IPs are ours (route.h): lanes only from our IPs of a
 * pool; a job of a pool with none is handed over. NULL: all ours. Set it
 * before the configuration it describes (sched_set_config). */
struct route_owner;
void sched_set_owner(struct sched *s, const struct route_owner *own);

/* A job with its body: to its destination (unknown pool, expired: settled;
 * another host's pool: handed over). */
void sched_route(struct sched *s, struct job *j);
/* Every job queued in memory (not yet given to a session) for which
 * due_of(arg, j, &due) says so goes back to Redis untried, due at the
 * wall time it gives (a pause began). Returns how many went. */
/* Who pauses a campaign for a shaping rule with scope campaign (the
 * engine: a pause with an end time in Redis). */
void sched_set_pause_hook(struct sched *s, void (*fn)(void *arg, const char *campaign,
    uint64_t until_wall, const char *by), void *arg);
size_t sched_park_queued(struct sched *s,
    int (*due_of)(void *arg, const struct job *j, uint64_t *due), void *arg);

/* Stop: hand queued jobs back, close idle sessions; sessions finish. */
void sched_stop(struct sched *s);
/* Teardown: from now on nothing is routed, kicked or settled. */
void sched_halt(struct sched *s);
/* Close idle sessions (nothing left to send). */
void sched_quit_idle(struct sched *s);
/* Forget idle destinations; returns how many. */
size_t sched_sweep(struct sched *s);

/*
 * Warm-up counters (docs/shaping.md, "Warm-up"): the scheduler counts
 * each message against its IP's budget in memory; sched_warm_sync, from
 * the engine's tick, sends what was counted to Redis (at most every
 * 250 ms per IP and site, all at once when flush_all) and takes Redis'
 * totals (every host's) back, once a second at least; an IP Redis has
 * not answered for yet does not send. sched_warm_busy: counts or a hold
 * not yet in Redis (a stop waits for them).
 */
struct rq;
void sched_warm_sync(struct sched *s, struct rq *q, int flush_all);
/*
 * sched_sts_attach - keep fetched MTA-STS policies in Redis (q) and load
 * those stored there (a restart keeps them). Once, when Redis first
 * connects: later calls do nothing.
 */
void sched_sts_attach(struct sched *s, struct rq *q);
int sched_warm_busy(const struct sched *s);
/*
 * sched_warm_hold - the hook for the feedback loop: hold pool IP ip's
 * warm-up ramp at its current day (its cap repeats) until until_wall
 * (wall ms; 0 releases it: the ramp goes on from the day it was held
 * at). At once here, in Redis (every host) at the next sync. -1 if no
 * pool IP of the configuration has that address and a warm-up.
 */
int sched_warm_hold(struct sched *s, const char *ip, const char *reason, uint64_t until_wall);

/*
 * sched_rates_react - the hook for the feedback loop's suspend (suspend
 * = 1) or throttle (at most mph) of this engine's lanes to site from ip
 * (NULL: every IP) for duration_ms; a shaping event per lane changed.
 * Returns how many changed (lanes not opened yet are not touched).
 */
int sched_rates_react(struct sched *s, const char *ip, const char *site, int suspend,
    uint64_t mph, uint64_t duration_ms, const char *reason);

unsigned sched_sessions(const struct sched *s);
/* The fleet-wide tokens in hand (fleet.h): the engine asks Redis for the
 * batches it needs and hands back the grants. */
struct fleet *sched_fleet_cache(struct sched *s);
unsigned sched_max_sessions(const struct sched *s);
const struct dests *sched_dests(const struct sched *s);

#endif
