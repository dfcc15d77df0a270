/*
 * fleet.c - fleet-wide token buckets as seen by this instance (see
 * fleet.h). Pure: times are passed in; O(1) per take, O(keys) per
 * fleet_need.
 *
 * The bucket lives in Redis; here we keep what one instance holds of it.
 * A key asks for a batch when a take was refused or when its tokens run
 * low while it is in use (so a busy key has its next batch before it runs
 * out), never while a request is out, never before the time Redis named.
 */
#include "fleet.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
fleet_init(struct fleet *f, uint64_t seed)
{
	memset(f, 0, sizeof *f);
	f->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* xorshift64: jitter, so that instances refused together do not all
 * come back at the same instant (the first would win every time) */
static uint64_t
fleet_rand(struct fleet *f)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

void
fleet_free(struct fleet *f)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&f->keys, &it, &k, &v))
		free(v);
	map_free(&f->keys);
}

uint32_t
fleet_batch(uint64_t mph)
{
	/* mph: millionths of a message per hour; per FLEET_BATCH_MS */
	unsigned __int128 n = (unsigned __int128)mph * FLEET_BATCH_MS / 3600000000000ull;

	if (n < 1)
		return 1;
	return n > FLEET_BATCH_MAX ? FLEET_BATCH_MAX : (uint32_t)n;
}

static struct fleet_key *
key_get(struct fleet *f, const char *name, uint64_t mph, uint64_t now)
{
	struct fleet_key *k = map_get(&f->keys, name);

	if (k == NULL) {
		k = xcalloc(1, sizeof *k);
		snprintf(k->name, sizeof k->name, "%s", name);
		k->last_used = now;
		map_put(&f->keys, k->name, k);
	}
	k->mph = mph;		/* a reload may change it */
	return k;
}

/* tokens in hand at now (expired ones are dropped) */
static uint32_t
key_tokens(struct fleet_key *k, uint64_t now)
{
	if (k->tokens && now >= k->expires) {
		k->lost += k->tokens;
		k->tokens = 0;
	}
	return k->tokens;
}

/* no token: when to look again, and a batch is wanted */
static int
key_refuse(struct fleet_key *k, uint64_t now, uint64_t *at)
{
	k->wanted = 1;
	k->waits++;
	k->last_used = now;
	if (!k->inflight && k->not_before > now)
		*at = k->not_before;
	else
		*at = now + FLEET_POLL_MS;
	return 0;
}

int
fleet_may(struct fleet *f, const char *name, uint64_t mph, uint64_t now, uint64_t *at)
{
	struct fleet_key *k;

	if (mph == 0)
		return 1;
	k = key_get(f, name, mph, now);
	if (key_tokens(k, now) > 0)
		return 1;
	return key_refuse(k, now, at);
}

int
fleet_take(struct fleet *f, const char *name, uint64_t mph, uint64_t now, uint64_t *at)
{
	struct fleet_key *k;

	if (mph == 0)
		return 1;
	k = key_get(f, name, mph, now);
	if (key_tokens(k, now) == 0)
		return key_refuse(k, now, at);
	k->tokens--;
	k->taken++;
	k->last_used = now;
	return 1;
}

size_t
fleet_need(struct fleet *f, uint64_t now, struct fleet_ask *out, size_t max)
{
	const char *name;
	void *v;
	size_t it = 0, n = 0;

	while (n < max && map_iter(&f->keys, &it, &name, &v)) {
		struct fleet_key *k = v;
		uint32_t batch = fleet_batch(k->mph), have = key_tokens(k, now);

		if (k->inflight && now - k->asked_at >= FLEET_ASK_TIMEOUT_MS)
			k->inflight = 0;	/* lost; a late answer is dropped */
		if (k->inflight || now < k->not_before)
			continue;
		if (!k->wanted && !(now - k->last_used < FLEET_GRANT_TTL_MS &&
		    have < (batch + 1) / 2))
			continue;
		if (have >= batch)
			continue;
		k->inflight = 1;
		k->asked_at = now;
		k->wanted = 0;
		k->asks++;
		snprintf(out[n].name, sizeof out[n].name, "%s", k->name);
		out[n].mph = k->mph;
		out[n].n = batch - have;
		out[n].burst = batch;
		n++;
	}
	return n;
}

void
fleet_grant(struct fleet *f, const char *name, uint32_t n, uint64_t wait_ms, uint64_t now)
{
	struct fleet_key *k = map_get(&f->keys, name);
	uint32_t batch;

	if (k == NULL || !k->inflight)
		return;
	k->inflight = 0;
	batch = fleet_batch(k->mph);
	if (n > batch)
		n = batch;	/* never more than asked for */
	key_tokens(k, now);
	k->tokens += n;
	k->granted += n;
	if (n > 0)
		k->expires = now + FLEET_GRANT_TTL_MS;
	k->wanted = 0;		/* a refusal while it was out is answered */
	if (wait_ms > 0) {
		if (wait_ms > FLEET_MAX_WAIT_MS)
			wait_ms = FLEET_MAX_WAIT_MS;
		k->not_before = now + wait_ms + fleet_rand(f) % (wait_ms / 16 + 1);
	} else {
		k->not_before = now;
	}
}

void
fleet_fail(struct fleet *f, const char *name, uint64_t now)
{
	struct fleet_key *k = map_get(&f->keys, name);

	if (k == NULL || !k->inflight)
		return;
	k->inflight = 0;
	k->not_before = now + FLEET_FAIL_WAIT_MS;
}

uint32_t
fleet_tokens(const struct fleet *f, const char *name, uint64_t now)
{
	const struct fleet_key *k = map_get(&f->keys, name);

	return k && now < k->expires ? k->tokens : 0;
}

size_t
fleet_sweep(struct fleet *f, uint64_t now, uint64_t idle_ms)
{
	const char *name;
	void *v;
	size_t it = 0, n = 0;

	while (map_iter(&f->keys, &it, &name, &v)) {
		struct fleet_key *k = v;

		if (k->inflight || now - k->last_used < idle_ms)
			continue;
		map_del(&f->keys, k->name);
		free(k);
		n++;
	}
	return n;
}
