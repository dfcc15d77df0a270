/*
 * stats.h - what a running engine tells about itself.
 *
 * Counters per (pool, source IP) — sessions open and outcomes — and per
 * site — sessions and deliveries over TLS or in clear text — kept as
 * results arrive; once a second stats_publish() sends a snapshot (with the
 * busiest destinations and a per-site rollup) to Redis, where `volley
 * status` reads it, and the optional progress line is drawn on stderr.
 */
#ifndef VOLLEY_STATS_H
#define VOLLEY_STATS_H

#include <stdint.h>

#include "job.h"

struct dests;
struct ledger;
struct rq;

struct fleet;
struct shaper;
struct shaper_event;

struct stats *stats_new(void);
/* The lanes to publish (NULL: none); the scheduler sets it. */
void stats_set_shaper(struct stats *st, const struct shaper *sh);
/* The fleet-wide limits to publish (NULL: none); the scheduler sets it. */
void stats_set_fleet(struct stats *st, const struct fleet *f);
/*
 * A lane changed state: to the shaping stream, at once once stats_publish
 * has named the Redis client, else queued until it does (past
 * STATS_EVENTS_MAX unsent, the oldest are dropped).
 */
void stats_shaping_event(struct stats *st, const struct shaper_event *ev);
/* Forget the Redis client (teardown: it is about to be freed). */
void stats_detach(struct stats *st);
void stats_free(struct stats *st);

/* A session opened (+1) or closed (-1) from pool/src_ip ("" = default). */
void stats_session(struct stats *st, const char *pool, const char *src_ip, int delta);
/* A transaction's outcome from pool/src_ip. */
void stats_result(struct stats *st, const char *pool, const char *src_ip, enum job_status s);

/*
 * A session to site ("" = none) got past its greeting and EHLO, over TLS
 * (tls) or in clear text; a message was delivered over TLS or not.
 */
void stats_site_session(struct stats *st, const char *site, int tls);
void stats_site_delivered(struct stats *st, const char *site, int tls);

/* Publish a snapshot to Redis (instance key, expiring). */
void stats_publish(struct stats *st, struct rq *q, const struct dests *ds,
    const struct ledger *lg, unsigned sessions, uint64_t started_ms);
/* The progress line on stderr (final: with a newline). */
void stats_progress(const struct ledger *lg, unsigned sessions, uint64_t started_ms, int final);

#endif
