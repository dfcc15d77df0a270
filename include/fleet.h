/*
 * fleet.h - fleet-wide token buckets as seen by this instance.
 *
 * A fleet limit (a site's or domain's fleet_max_rate, an ip's
 * fleet_max_rate) holds across every instance sharing the Redis: the
 * bucket itself lives in Redis (one GCRA per limit, redis.c), and each
 * instance takes tokens from it in small batches, so that Redis is asked
 * once per batch, not once per message. This file is the instance's side:
 * per limit key, the tokens in hand, whether a batch request is in flight,
 * and when Redis may be asked again.
 *
 *   fleet_take(key, now)   one token, or no with the time to look again;
 *   fleet_need(now)        which keys want a batch and how many tokens
 *                          (the caller sends one request per key);
 *   fleet_grant(key, n, wait)  Redis answered: n tokens, and when a whole
 *                          batch fits again if it granted fewer;
 *   fleet_fail(key)        no answer (Redis unreachable): wait, ask later.
 *
 * Tokens in hand expire FLEET_GRANT_TTL_MS after their grant: an instance
 * that took a batch and then went quiet cannot spend it much later on top
 * of what the others are taking then. Without a token nothing is sent, so
 * a fleet-limited lane waits while Redis is unreachable (it never exceeds
 * the limit).
 *
 * Batch size: what the rate allows in FLEET_BATCH_MS (at least 1, at most
 * FLEET_BATCH_MAX); the Redis bucket's burst is one batch.
 *
 * Pure: no clock (ms of one clock the caller chooses), no I/O. Keys are
 * allocated on first use; fleet_sweep forgets unused ones. Unit-tested in
 * test_fleet.c.
 */
#ifndef VOLLEY_FLEET_H
#define VOLLEY_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"

#define FLEET_KEY_MAX		280	/* "site:NAME", "domain:NAME", "ip:ADDR" with NUL */
#define FLEET_BATCH_MS		200	/* a batch is this long at the rate */
#define FLEET_BATCH_MAX		1000
#define FLEET_GRANT_TTL_MS	1000	/* tokens in hand expire after this */
#define FLEET_POLL_MS		20	/* a waiter looks again after this while a batch is due */
#define FLEET_ASK_TIMEOUT_MS	5000	/* an unanswered request is given up after this */
#define FLEET_FAIL_WAIT_MS	500	/* after a failed request, ask again after this */
#define FLEET_MAX_WAIT_MS	600000	/* a wait Redis names is capped to this */

struct fleet_key {
	char name[FLEET_KEY_MAX];
	uint64_t mph;		/* the limit (pace.h units, > 0) */
	uint32_t tokens;	/* in hand, valid until `expires` */
	uint64_t expires;
	int inflight;		/* a batch request is out */
	uint64_t asked_at;
	uint64_t not_before;	/* do not ask before this */
	int wanted;		/* a take was refused since the last request */
	uint64_t last_used;
	uint64_t granted, taken, lost, asks, waits;	/* counters, for status */
};

struct fleet {
	struct map keys;	/* name -> struct fleet_key */
	uint64_t rng;		/* jitter state */
};

/* One batch request for the caller to send. */
struct fleet_ask {
	char name[FLEET_KEY_MAX];
	uint64_t mph;
	uint32_t n;		/* tokens wanted */
	uint32_t burst;		/* the bucket's burst (one batch) */
};

/* fleet_init - seed: for the jitter on waits (differs between instances). */
void fleet_init(struct fleet *f, uint64_t seed);
void fleet_free(struct fleet *f);

/* fleet_batch - tokens in one batch at mph (1..FLEET_BATCH_MAX). */
uint32_t fleet_batch(uint64_t mph);

/*
 * fleet_may - is a token of key `name` (limit mph, created or updated on
 * the way) in hand at now? 1: yes (nothing taken: fleet_take does).
 * 0: no, *at is when to look again (a batch is then wanted). mph 0: no
 * limit, always 1.
 */
int fleet_may(struct fleet *f, const char *name, uint64_t mph, uint64_t now, uint64_t *at);
/*
 * fleet_take - take one token of `name` at now: 1 if one was in hand,
 * else 0 with *at as for fleet_may.
 */
int fleet_take(struct fleet *f, const char *name, uint64_t mph, uint64_t now, uint64_t *at);

/*
 * fleet_need - the keys that want a batch at now: a take was refused, or
 * tokens run low (under half a batch) on a key used in the last grant
 * period; no request in flight and not before the time Redis named. Each
 * key returned is marked in flight. Fills up to max, returns how many.
 */
size_t fleet_need(struct fleet *f, uint64_t now, struct fleet_ask *out, size_t max);

/*
 * fleet_grant - Redis granted n tokens of name at now; wait_ms: the ms
 * until a whole batch fits in the bucket again (do not ask before that,
 * plus up to a sixteenth of it at random, so that instances refused
 * together do not come back together). A grant for a key with no request in flight (it timed out, or
 * the key is gone) is dropped: using it late could exceed the limit.
 */
void fleet_grant(struct fleet *f, const char *name, uint32_t n, uint64_t wait_ms, uint64_t now);
/* fleet_fail - the request for name got no usable answer: ask again later. */
void fleet_fail(struct fleet *f, const char *name, uint64_t now);

/* fleet_tokens - tokens of name in hand at now (0 if unknown). */
uint32_t fleet_tokens(const struct fleet *f, const char *name, uint64_t now);

/* fleet_sweep - forget keys unused for idle_ms with nothing in flight. */
size_t fleet_sweep(struct fleet *f, uint64_t now, uint64_t idle_ms);

#endif
