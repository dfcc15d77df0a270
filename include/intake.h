/*
 * intake.h - jobs in: from Redis entries to jobs ready for a destination.
 *
 *   entries (stream or leased retries) -> job_decode (invalid: `failed`)
 *   -> held in the ledger -> paused campaign or tenant: parked in the
 *      retry schedule for a second or two (no event, no attempt)
 *   -> suppression check (one batch per read: the global list and the
 *      job's tenant's list)
 *   -> body (inline, or the msg_ref key fetched once and shared by every
 *      job naming it) -> size check -> handed to the scheduler
 *
 * The intake owns the shared message bodies (by msg_ref) and their bytes.
 * A body fetch that gets an error (BUSY, LOADING, connection lost) is not
 * "missing": those jobs are dropped from memory and come back later; only
 * a nil reply fails them.
 */
#ifndef VOLLEY_INTAKE_H
#define VOLLEY_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct config;
struct ledger;
struct loop;
struct rq;
struct rq_entry;
struct sched;
struct signer;

struct intake *intake_new(struct loop *l, struct rq *rq, struct ledger *lg, struct sched *s,
    const struct config *cfg);
void intake_free(struct intake *in);
void intake_set_config(struct intake *in, const struct config *cfg);
/* Which pools are ours (route.h): a job of another host's pool is handed
 * over untried as soon as it is decoded. NULL: every pool is ours. */
struct route_owner;
void intake_set_owner(struct intake *in, const struct route_owner *own);
/* Stop: jobs still waiting for a check or a body are handed back (when
 * it answers), jobs waiting for a signature at once. */
void intake_set_stopping(struct intake *in);
/* Sign on this pool (signer.h) rather than on the loop; NULL: the loop. */
void intake_set_signer(struct intake *in, struct signer *sg);
/* Jobs waiting for the signing pool. */
size_t intake_signing(const struct intake *in);

/* Entries read from Redis (the Redis module's callback). */
void intake_on_entries(struct intake *in, enum job_origin origin, const struct rq_entry *e,
    size_t n);

/* Read the pause state from Redis if the last read is a second old (call
 * from the tick; one read in flight at most). */
void intake_poll_pause(struct intake *in, uint64_t now_mono);
/* Is j's campaign or tenant paused (or the pause state not read yet)?
 * For a later check by whoever holds queued jobs. */
int intake_paused(const struct intake *in, const struct job *j);

/* Whether a Redis error holds reading back (intake_trouble's back-off). */
int intake_holding(const struct intake *in, uint64_t now_mono);
/* Bytes of shared bodies held. */
size_t intake_bytes(const struct intake *in);
/* Free bodies no job holds any more; returns how many. */
size_t intake_sweep(struct intake *in);

#endif
