/*
 * ledger.h - the jobs held in memory and how they leave it.
 *
 * Every job read from Redis (a stream entry or a leased retry) is tracked
 * here from decoding until it leaves memory, keyed by its key (the stream
 * entry ID, "h-" + it for the high stream) so that a job read twice is
 * held once. It leaves in one of three ways:
 *
 *   ledger_settle()     its outcome is written to Redis: a final event with
 *                       the ack, or a deferral into the retry schedule
 *                       (the outcome comes from trouble.c, never made here)
 *   ledger_hand_back()  not worked on now (stopping): a leased retry is
 *                       made due again; a stream entry stays pending
 *   ledger_forget()     dropped without a write: it stays pending in Redis
 *                       and comes back (re-read, lease expiry)
 *
 * The ledger also counts outcomes since start, the bytes of message
 * bodies it holds (the read budget), and keeps the Redis leases of long
 * held jobs fresh.
 */
#ifndef VOLLEY_LEDGER_H
#define VOLLEY_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct config;
struct loop;
struct rq;

struct ledger_counts {
	uint64_t taken, delivered, bounced, deferred, expired, failed, suppressed;
	uint64_t parked;
	uint64_t handed_over;	/* jobs of pools this host does not own */
};

struct ledger *ledger_new(struct loop *l, struct rq *rq, const struct config *cfg);
/* Forget every job (they stay pending in Redis) and free the ledger. */
void ledger_free(struct ledger *lg);
/* The running configuration changed (SIGHUP). */
void ledger_set_config(struct ledger *lg, const struct config *cfg);
/* Which pools are ours (route.h), for where deferred and parked jobs
 * wait: a shared pool's in its own retry ZSET. NULL: all in PREFIXretry.
 * Kept by pointer; set it again with every configuration. */
struct route_owner;
void ledger_set_owner(struct ledger *lg, const struct route_owner *own);
/* No Redis writes from now on (teardown): hand_back only forgets. */
void ledger_set_tearing_down(struct ledger *lg);

/* ledger_find - the held job with this key, or NULL. */
struct job *ledger_find(const struct ledger *lg, const char *key);
void ledger_track(struct ledger *lg, struct job *j);
void ledger_forget(struct ledger *lg, struct job *j);
void ledger_hand_back(struct ledger *lg, struct job *j);
/*
 * ledger_settle - write o for j and forget j. A deferral past the job's
 * expires_at becomes `expired` (trouble.c words it); the retry is never
 * scheduled past expires_at.
 */
void ledger_settle(struct ledger *lg, struct job *j, struct job_outcome *o);
/*
 * ledger_settle_at - ledger_settle, but a deferral is retried at
 * due_wall_ms (when the reason it waits ends, e.g. a suspension of every
 * source address) instead of on the retry schedule; due_wall_ms 0 or in
 * the past: the schedule. Never past expires_at either.
 */
void ledger_settle_at(struct ledger *lg, struct job *j, struct job_outcome *o,
    uint64_t due_wall_ms);
/* ledger_park - back into Redis untried until due_wall_ms (no event, no
 * attempt counted), and forget j. */
void ledger_park(struct ledger *lg, struct job *j, uint64_t due_wall_ms);
/* ledger_hand_over - j's pool is another host's: into its pool's retry
 * ZSET, due now, untried (no event, no attempt counted). */
void ledger_hand_over(struct ledger *lg, struct job *j);
/* ledger_fail - settle j `failed` with the reason why. */
void ledger_fail(struct ledger *lg, struct job *j, const char *why);

/* Bytes of message bodies the held jobs account for (see ledger_add_bytes). */
void ledger_add_bytes(struct ledger *lg, struct job *j, size_t n);
size_t ledger_bytes(const struct ledger *lg);
size_t ledger_count(const struct ledger *lg);
const struct ledger_counts *ledger_counts(const struct ledger *lg);

/* Refresh the Redis leases of jobs held longer than a third of the lease. */
void ledger_refresh_leases(struct ledger *lg);

#endif
