/*
 * redis.h - the durable queue: hiredis on the io_uring loop.
 *
 * Jobs in: stream PREFIXjobs, consumer group "volley" (created at 0 with
 * MKSTREAM if missing). After every (re)connect the engine first re-reads
 * its own pending entries (XREADGROUP ... 0), then new ones (">").
 * Entries idle past the lease in other consumers' pending lists are taken
 * over with XAUTOCLAIM. Deferred jobs live in a hash PREFIXjob:KEY plus
 * a ZSET PREFIXretry scored by due time; a Lua script leases due ones.
 *
 * Writes that settle a job (final event + XACK, deferral) are Lua scripts
 * that check they still own the job (XACK returned 1 / the ZSET member is
 * there) before writing the event: they are idempotent, so after a lost
 * connection every unanswered one is simply sent again, and nothing is
 * acked twice or evented twice. Commands are pipelined by hiredis: one
 * write per loop turn for everything queued in it.
 *
 * Module prefix rq_ ("Redis queue") keeps clear of hiredis' own names.
 */
#ifndef VOLLEY_REDIS_H
#define VOLLEY_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "job.h"

struct loop;
struct config;
struct rq;

/* One job entry as read from Redis: field/value pairs of a stream entry
 * or a retry hash. deliveries: times it was handed out (0: unknown). */
struct rq_entry {
	const char *key;
	const char *const *fields, *const *values;
	const size_t *flens, *vlens;
	size_t n;
	unsigned deliveries;
};

struct rq_callbacks {
	/* n job entries read (entries whose data is gone are not passed). */
	void (*on_entries)(void *arg, enum job_origin origin, const struct rq_entry *e, size_t n);
	/* read finished (entries may have been 0): n entries seen */
	void (*on_read_done)(void *arg, enum job_origin origin, size_t n);
	void (*on_connected)(void *arg);
};

/* What an instance publishes about itself (volley status reads it). */
struct rq_stats {
	int pid;
	uint64_t started_ms, heartbeat_ms;
	unsigned sessions;
	size_t in_memory;
	uint64_t delivered, deferred, bounced, expired, failed, suppressed;
	const char *dests, *sites, *ips;	/* one line per row: "name sessions queued delivered deferred bounced" */
};

enum rq_body_status {
	RQ_BODY_OK = 0,		/* data, len: the key's value */
	RQ_BODY_MISSING,	/* nil: the key does not exist */
	RQ_BODY_ERROR,		/* error reply or connection lost: try again later */
};

struct rq *rq_new(struct loop *l, const struct config *cfg,
    const struct rq_callbacks *cb, void *arg);
void rq_free(struct rq *q);
int rq_connected(const struct rq *q);

/* Read up to max new/own-pending stream entries (one read in flight). */
void rq_fetch(struct rq *q, unsigned max);
/* Lease up to max due retries (one in flight). */
void rq_fetch_retries(struct rq *q, unsigned max, uint64_t now_wall_ms);
/* XAUTOCLAIM entries idle past the lease (one in flight). */
void rq_autoclaim(struct rq *q, unsigned max);
int rq_read_busy(const struct rq *q);

/* Settle a job: final event (+XACK/XDEL or ZREM/DEL) / deferral. */
void rq_final(struct rq *q, const struct job *j, const struct job_outcome *o,
    int suppress);
void rq_defer(struct rq *q, const struct job *j, const struct job_outcome *o,
    uint64_t due_wall_ms);
/* Give a leased retry back (due now) on shutdown. */
void rq_release_retry(struct rq *q, const struct job *j, uint64_t now_wall_ms);
/* Keep leases of held jobs fresh (XCLAIM JUSTID / ZADD XX). */
void rq_refresh(struct rq *q, const char *const *stream_keys, size_t ns,
    const char *const *retry_keys, size_t nr, uint64_t until_wall_ms);

/* Typed calls for the engine. Each may call back before it returns
 * (not connected: error at once). */
void rq_suppressed(struct rq *q, const char *const *addrs, size_t n,
    void (*cb)(void *arg, const int *member, size_t n), void *arg);
void rq_fetch_body(struct rq *q, const char *key,
    void (*cb)(void *arg, enum rq_body_status st, const char *data, size_t len), void *arg);
void rq_publish_stats(struct rq *q, const struct rq_stats *st);
/* empty = 1 when the jobs stream and the retry schedule are both empty. */
void rq_drain_check(struct rq *q, void (*cb)(void *arg, int empty), void *arg);

/* Writes sent or waiting to be sent, not yet answered. */
size_t rq_outstanding(const struct rq *q);

/*
 * A read-only command with a callback; the reply is NULL if the
 * connection dropped. Not retried. Returns -1 if not connected.
 */
int rq_command(struct rq *q, void (*cb)(void *arg, const redisReply *r), void *arg,
    const char *fmt, ...);
/* Same with an argv (binary-safe). */
int rq_call_argv(struct rq *q, void (*cb)(void *arg, const redisReply *r), void *arg,
    int argc, const char **argv, const size_t *lens);
/* Fire-and-forget (stats, heartbeats): dropped if not connected. */
void rq_command_argv(struct rq *q, int argc, const char **argv, const size_t *lens);

const char *rq_key(const struct rq *q, const char *suffix);	/* prefix+suffix, static buffer */

#endif
