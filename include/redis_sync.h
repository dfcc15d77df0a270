/*
 * redis_sync.h - the blocking half of the Redis module, for the command
 * line (inject, status, pause/resume, suppress) and for the engine's last words at a clean exit.
 *
 * One hiredis connection with a timeout, authenticated (AUTH user pass or
 * AUTH pass) and on the configured database. Errors come back as text in
 * err (never containing the password); nothing here exits or prints.
 * Key names and commands are built here and in redis.c only (see
 * redis_schema.h and docs/redis.md).
 */
#ifndef VOLLEY_REDIS_SYNC_H
#define VOLLEY_REDIS_SYNC_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct rqs;

/* rqs_connect - connect, AUTH, SELECT. NULL on failure with err set. */
struct rqs *rqs_connect(const struct config *cfg, unsigned timeout_ms, char *err, size_t errlen);
void rqs_free(struct rqs *s);

/* The jobs stream's name (for messages such as "queued N on volley:jobs"). */
const char *rqs_jobs_key(const struct rqs *s);

/*
 * rqs_store_msg - store a message body once under PREFIXmsg:SHA1 with a
 * TTL of ttl_ms (0: none; an existing key gets the TTL refreshed). The
 * key name is written to key. 0 on success, -1 with err set.
 */
int rqs_store_msg(struct rqs *s, const char *data, size_t len, uint64_t ttl_ms,
    char *key, size_t keylen, char *err, size_t errlen);

/* What every injected job shares; NULL fields are left out. */
struct rqs_job {
	const char *from;		/* "" = null reverse-path */
	const char *msg;		/* inline body, or NULL */
	size_t msg_len;
	const char *msg_ref;		/* key from rqs_store_msg, or NULL */
	const char *pool, *campaign, *tenant, *expires_at;
};

/*
 * rqs_inject - one XADD per recipient, pipelined 1000 at a time. Returns
 * how many were queued; on a connection error stops and sets err; an
 * XADD refused by Redis is counted in *refused with its text in err.
 */
size_t rqs_inject(struct rqs *s, const struct rqs_job *job, const char *const *rcpts,
    size_t n, size_t *refused, char *err, size_t errlen);

/* One instance's stats hash: field/value pairs as written by the engine. */
struct rqs_instance {
	char *name;
	size_t n;
	char **fields, **values;
};
const char *rqs_instance_get(const struct rqs_instance *in, const char *field);

struct rqs_status {
	long long stream_len, unread, pending;	/* -1: unknown */
	long long high_len;			/* PREFIXjobs:high: unread + pending */
	long long deferred, suppressed, events;
	int has_next_retry;
	double next_retry_ms;			/* wall clock ms */
	struct rqs_instance *inst;		/* those with a live stats hash */
	size_t ninst;
	/* PREFIXretry:pool:NAME, one per pool with jobs waiting there (for
	 * the hosts that own an IP of that pool), sorted by name */
	struct rqs_pool_wait {
		char *pool;
		long long waiting, due;		/* due: score <= now */
	} *pools;
	size_t npools;
};

/*
 * rqs_rates_read - the feedback loop's counters (rates.h) of up to max
 * names of the dimensions in dims ("campaign:,tenant:,"), most recently
 * counted first, folded at now. 0 (*out, *n: free with rq_rates_free) or
 * -1 (err).
 */
struct rate_entry;
int rqs_rates_read(struct rqs *s, uint64_t now_wall_ms, const char *dims, size_t max,
    struct rate_entry **out, size_t *n, char *err, size_t errlen);
void rqs_rates_free(struct rate_entry *e, size_t n);

/* rqs_status_read - queue depth and the instances' stats. 0 or -1 (err). */
int rqs_status_read(struct rqs *s, struct rqs_status *st, char *err, size_t errlen);
void rqs_status_free(struct rqs_status *st);

/*
 * rqs_instance_cleanup - a clean exit of the instance that holds the lock
 * with token (or whose lock has expired): delete its stats hash and its
 * member of PREFIXinstances, release the lock, and delete its consumer
 * from the group if it has no pending entries (XGROUP DELCONSUMER would
 * drop them). One script, atomic; if another process holds the lock now
 * nothing is touched (-1). Returns 1 if the consumer was deleted, 0 if it
 * was kept, -1 on error.
 */
int rqs_instance_cleanup(struct rqs *s, const char *instance, const char *token,
    char *err, size_t errlen);

/*
 * Pause and resume (PREFIXpaused:campaign, PREFIXpaused:tenant: hashes
 * NAME -> "SINCE_MS BY"; every engine reads them once a second).
 * tenant: 0 campaign, 1 tenant.
 * rqs_pause: 1 if newly paused, 0 if it already was (its "SINCE_MS BY" in
 * was), -1 on error. rqs_resume: 1 if resumed, 0 if it was not paused, -1.
 */
int rqs_pause(struct rqs *s, int tenant, const char *name, const char *by, char *was,
    size_t waslen, char *err, size_t errlen);
int rqs_resume(struct rqs *s, int tenant, const char *name, char *err, size_t errlen);
struct rqs_paused {
	char *name, *by;
	uint64_t since_ms;		/* wall clock */
};
/* Every paused campaign (tenant 0) or tenant (1); 0 or -1 (err). */
int rqs_paused_list(struct rqs *s, int tenant, struct rqs_paused **out, size_t *n,
    char *err, size_t errlen);
void rqs_paused_free(struct rqs_paused *p, size_t n);

/*
 * The suppression lists: PREFIXsuppressed (tenant NULL or "") and
 * PREFIXsuppressed:TENANT. Addresses are canonical keys (lower-cased,
 * domain in A-label form: what the engine compares). Writes are SADD/SREM
 * of up to 1000 members, pipelined; *added / *removed count the members
 * that changed. A removal deletes the addresses' reason and time
 * (PREFIXsuppressed_info[:TENANT]) in the same script. 0, or -1 with err
 * set (the first error; the rest is still sent).
 */
char *rqs_suppress_key(const struct rqs *s, const char *tenant);	/* malloc'd */
int rqs_suppress_add(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    size_t *added, char *err, size_t errlen);
int rqs_suppress_remove(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    size_t *removed, char *err, size_t errlen);
/* member[i]: RQS_SUPP_GLOBAL if addrs[i] is in the global list,
 * RQS_SUPP_TENANT if in tenant's (both bits possible). */
#define RQS_SUPP_GLOBAL	1
#define RQS_SUPP_TENANT	2
int rqs_suppress_check(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    int *member, char *err, size_t errlen);
/* Why and when each address was added ("REASON TS_MS", from
 * PREFIXsuppressed_info and, with a tenant, PREFIXsuppressed_info:TENANT):
 * global[i] / tenants[i] malloc'd, NULL where there is none. */
int rqs_suppress_info(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    char **global, char **tenants, char *err, size_t errlen);
/* Every member, SSCAN 1000 at a time (a huge list streams; a member may
 * be seen twice if the set changes meanwhile). fn returns non-zero to
 * stop (an output error). *count: members passed to fn. */
int rqs_suppress_scan(struct rqs *s, const char *tenant,
    int (*fn)(void *arg, const char *addr, size_t len), void *arg, size_t *count,
    char *err, size_t errlen);

/*
 * rqs_warmup_read - an IP's warm-up state in Redis (written by the
 * engines): its start day (-1: not used yet), the days holds added, a
 * hold running now, and its own counts (every host's) today and this
 * hour (UTC). 0, or -1 with err set.
 */
struct rqs_warmup {
	long long start, shift;
	uint32_t sent_day, sent_hour;
	uint32_t hold_day;		/* 0: no hold now */
	uint64_t hold_until;
	char hold_reason[160];
};
int rqs_warmup_read(struct rqs *s, const char *ip, uint64_t now_wall_ms, struct rqs_warmup *w,
    char *err, size_t errlen);

#endif
