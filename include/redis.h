/*
 * redis.h - the durable queue: hiredis on the io_uring loop.
 *
 * This module (redis.c, redis_sync.c, redis_schema.h) is the only place
 * that builds Redis commands, names keys, holds the consumer group name
 * and the Lua scripts, and reads redisReply. docs/redis.md has the key
 * schema and what each script guarantees.
 *
 * Jobs in: streams PREFIXjobs:high (read first) and PREFIXjobs, consumer
 * group "volley" on each (created at 0 with MKSTREAM if missing); a job of
 * the high stream has the key JOB_HIGH_KEY_PREFIX + its entry ID. Deferred jobs live in a hash PREFIXjob:KEY plus a
 * ZSET PREFIXretry scored by due time; a script leases due ones. Entries
 * idle past the lease in any consumer's pending list are taken over with
 * XAUTOCLAIM.
 *
 * Connection life: connect (TCP keepalive on) -> AUTH/SELECT -> PING until
 * Redis has finished loading -> take the instance lock PREFIXlock:INSTANCE
 * (a live process holding it: exit 1) -> load the scripts -> resend every
 * unanswered settling write -> only once all of those are answered,
 * on_connected() and reads (our own pending list first, then new
 * entries). So a job settled before a reconnect is never read back and
 * delivered again. A command unanswered for redis.reply_timeout drops the
 * connection; reconnects back off up to 5 s.
 *
 * Settling writes (final event + XACK, deferral) are Lua scripts kept in
 * an outbox until Redis answers them; they are idempotent: a stream job's
 * settlement sets PREFIXdone:KEY (TTL well past the lease) in the same
 * script that writes its event, so a resent or duplicate settlement writes
 * nothing, and a job whose stream entry was trimmed while it was held
 * still gets its one event. Each script writes the event before it acks.
 * Transient and permission errors keep the write and retry with
 * exponential back-off (capped at 30 s, one log line per step); a NOSCRIPT
 * reloads the scripts and resends at once.
 *
 * Entries this instance reads that it cannot hand over end `failed` here:
 * an entry of a pending list whose data was trimmed or deleted (unless the
 * engine holds that job), and an entry delivered more than
 * redis.max_deliveries times without settling.
 *
 * Module prefix rq_ ("Redis queue") keeps clear of hiredis' own names.
 */
#ifndef VOLLEY_REDIS_H
#define VOLLEY_REDIS_H

#include <stddef.h>
#include <stdint.h>


#include "job.h"
#include "rates.h"

struct loop;
struct config;
struct rq;

/*
 * One job as read from Redis: a stream entry or a leased retry hash.
 * Pointers are valid only during the callback; job_decode() copies.
 * fields[i]/values[i] have lengths flens[i]/vlens[i] (binary-safe).
 */
struct rq_entry {
	const char *key;		/* the job's key (JOB_HIGH_KEY_PREFIX): names the retry hash */
	const char *const *fields;
	const char *const *values;
	const size_t *flens;
	const size_t *vlens;
	size_t n;			/* field/value pairs */
	unsigned deliveries;		/* times handed to an engine, this one included */
	const char *retry_pool;		/* a leased retry: its ZSET's pool, NULL: PREFIXretry */
};

struct rq_callbacks {
	/* n jobs read (their entries' data present). */
	void (*on_jobs)(void *arg, enum job_origin origin, const struct rq_entry *e, size_t n);
	/* read finished (entries may have been 0): n entries seen */
	void (*on_read_done)(void *arg, enum job_origin origin, size_t n);
	/* connected, every earlier settling write answered: reads may start */
	void (*on_connected)(void *arg);
	/* Does the engine hold the job with this key in memory? It decides
	 * whether a trimmed or over-delivered pending entry is failed here.
	 * NULL: the module tracks what it handed over itself. */
	int (*holds)(void *arg, const char *key);
};

struct rq *rq_new(struct loop *l, const struct config *cfg,
    const struct rq_callbacks *cb, void *arg);
/*
 * rq_free - drop the connection; on the way out (a clean exit) a short
 * blocking connection (at most ~2 s) deletes this instance's stats hash
 * and its member of PREFIXinstances, releases the instance lock, and
 * deletes the consumer from the group if it has no pending entries. Only
 * if this process held the lock and nobody else holds it now. Callbacks
 * of unanswered commands run with a NULL reply. Nothing to wait for
 * beforehand but what the engine waits for anyway: rq_outstanding() == 0.
 */
void rq_free(struct rq *q);
/* rq_shutdown - the same cleanup at once (rq_free then skips it). */
void rq_shutdown(struct rq *q);
/* Connected, lock held, and every settling write from before the last
 * reconnect answered. */
int rq_connected(const struct rq *q);

/* Read new/own-pending stream entries (one read in flight): up to
 * max_high from PREFIXjobs:high first, then from PREFIXjobs up to what is
 * left of max. */
void rq_fetch(struct rq *q, unsigned max, unsigned max_high);
/* Lease up to max due retries (one in flight), from PREFIXretry and the
 * PREFIXretry:pool:NAME of each pool set by rq_set_retry_pools (together,
 * the starting ZSET rotating per call). Each job remembers its ZSET
 * (rq_entry.retry_pool); its settlement, release and lease refresh use
 * that ZSET. */
void rq_fetch_retries(struct rq *q, unsigned max, uint64_t now_wall_ms);
/* The pools this engine owns (route.h): their retry ZSETs are leased
 * from, drained (rq_drain_check) and unparked too. Copied. */
void rq_set_retry_pools(struct rq *q, const char *const *pools, size_t n);
/* XAUTOCLAIM entries idle past the lease (one in flight). */
void rq_autoclaim(struct rq *q, unsigned max);
int rq_read_busy(const struct rq *q);

/* Settle a job: final event (+XACK/XDEL or ZREM/DEL) / deferral. */
void rq_final(struct rq *q, const struct job *j, const struct job_outcome *o,
    int suppress);
/* A deferral waits in the retry ZSET of to_pool (PREFIXretry:pool:NAME;
 * NULL: PREFIXretry); a leased retry moves there from its own ZSET. */
void rq_defer(struct rq *q, const struct job *j, const struct job_outcome *o,
    uint64_t due_wall_ms, const char *to_pool);
/* Park a job untried in the retry schedule of to_pool (as rq_defer) until
 * due_wall_ms: no event, no attempt counted (a destination holds as many
 * jobs as it may, its campaign is paused, or its pool is another host's).
 * A leased retry staying in its ZSET only gets its due time moved. */
void rq_park(struct rq *q, const struct job *j, uint64_t due_wall_ms, const char *to_pool);
/* Give a job back untried (shutdown, stop): a leased retry becomes due
 * now; a stream entry's delivery count is put back, so that restarts do
 * not count towards redis.max_deliveries. */
void rq_release_retry(struct rq *q, const struct job *j, uint64_t now_wall_ms);
/* Keep leases of held jobs fresh (XCLAIM JUSTID on the job's stream /
 * ZADD XX). */
void rq_refresh(struct rq *q, const struct job *const *jobs, size_t n, uint64_t until_wall_ms);

/* Writes sent or waiting to be sent, not yet answered. */
size_t rq_outstanding(const struct rq *q);

/*
 * Typed reads. Each returns 0 if the command was sent, -1 if not connected
 * (the callback is then not called). Callbacks get NULL / an error status
 * when the connection dropped before the answer.
 */
/* The suppression check of a batch: member[i] is 1 if addrs[i] is in
 * PREFIXsuppressed or, where tenants[i] is set (tenants may be NULL), in
 * PREFIXsuppressed:TENANT. One SMISMEMBER for the global set and one per
 * tenant in the batch, pipelined. member == NULL on error. addrs are the
 * jobs' canonical keys (job->to_lc). */
int rq_suppressed(struct rq *q, const char *const *addrs, const char *const *tenants, size_t n,
    void (*cb)(void *arg, const int *member, size_t n), void *arg);

/* The pause state: the names in PREFIXpaused:campaign and
 * PREFIXpaused:tenant (hashes NAME -> "SINCE_MS BY", written by `volley
 * pause`), both in one round trip. ok 0 (lists empty) on any error. */
int rq_paused(struct rq *q, void (*cb)(void *arg, int ok, const char *const *campaigns,
    size_t nc, const char *const *tenants, size_t nt), void *arg);

/* Pause a campaign (tenant 0) or tenant (1) until until_wall (ms), as
 * "SINCE BY until=MS" (by's blanks become '_'), unless it is paused
 * already. Every engine honours it like `volley pause`; once the time is
 * past, the first engine to read it takes it as resumed and deletes it.
 * Fire and forget; -1 if not connected. */
int rq_pause_until(struct rq *q, int tenant, const char *name, uint64_t now_wall,
    uint64_t until_wall, const char *by);

/* After a resume: jobs of these campaigns (tenant 0) or tenants (1) that
 * wait in the retry schedule, due within window_ms, and that nobody holds
 * become due now (so a resume takes effect at the next retry read, not a
 * park later). Fire and forget; the count is logged. */
int rq_unpark(struct rq *q, int tenant, const char *const *names, size_t n,
    uint64_t now_wall_ms, uint64_t window_ms);

enum rq_body_status {
	RQ_BODY_OK = 0,		/* data/len is the body */
	RQ_BODY_MISSING,	/* no such key, or not a string: the job fails */
	RQ_BODY_TOO_LARGE,	/* larger than max_size (len = its size): the job fails */
	RQ_BODY_ERROR,		/* connection lost, LOADING, BUSY, NOPERM...: try later */
};
/* A msg_ref body: STRLEN, then GET unless it is larger than max_size (0:
 * no limit; pass smtp.max_message_size), so a huge value is never read.
 * An empty or missing key is RQ_BODY_MISSING. */
int rq_fetch_body(struct rq *q, const char *key, uint64_t max_size,
    void (*cb)(void *arg, enum rq_body_status st, const char *data, size_t len), void *arg);

/*
 * rq_fleet_take - ask the fleet-wide bucket PREFIXfleet:NAME (a GCRA at
 * mph, burst tokens at once, on Redis's clock) for n tokens. cb gets ok 1
 * with granted (0..n) and wait_ms (until a whole burst fits again), or
 * ok 0 on any error (no answer, connection lost, bad reply). Returns -1,
 * cb not called, when Redis is not usable now.
 */
int rq_fleet_take(struct rq *q, const char *name, uint32_t n, uint64_t mph, uint32_t burst,
    void (*cb)(void *arg, int ok, uint32_t granted, uint64_t wait_ms), void *arg);

/* This instance's live stats, PREFIXinstance:NAME (TTL 30 s) and a member
 * of PREFIXinstances. The text tables are lines "name sessions queued
 * delivered deferred bounced" (see volley status). Fire and forget. */
struct rq_stats {
	long pid;
	uint64_t started_ms, heartbeat_ms;	/* wall clock */
	unsigned sessions;
	size_t in_memory;
	uint64_t delivered, deferred, bounced, expired, failed, suppressed;
	const char *dests, *sites, *ips;	/* NULL = "" */
	const char *lanes;	/* shaping lanes, one per line; NULL = "" */
	const char *fleet;	/* fleet-wide limits in use, one per line; NULL = "" */
};
void rq_publish_stats(struct rq *q, const struct rq_stats *s);

/* --drain: is nothing unread/pending in the stream and nothing scheduled
 * for retry (PREFIXretry and the retry ZSETs of the pools this engine
 * owns; other pools' are their owners')? empty is 1 if so, 0 if not or on
 * error. */
int rq_drain_check(struct rq *q, void (*cb)(void *arg, int empty), void *arg);

/*
 * rq_shaping_event - one entry on PREFIXshaping (XADD MAXLEN ~
 * RQ_SHAPING_MAXLEN): lane, action, reason, window, rate, until, ts (wall
 * ms). Returns 0 when sent, -1 when Redis is not usable now (keep it).
 */
struct shaper_event;
#define RQ_SHAPING_MAXLEN	100000
int rq_shaping_event(struct rq *q, const struct shaper_event *ev);

/*
 * Warm-up counters, shared by every host (PREFIXwarmup:IP and
 * PREFIXwarmup:IP:DAY, docs/redis.md). rq_warmup_sync adds delta (sent
 * in hour `hour`, hours since the epoch) to the IP's counters (site NULL
 * or "") or its counters for site, and answers with the totals in Redis
 * for that day and hour, and the ramp's start day: the config's
 * (cfg_start >= 0, written) or the one Redis has (set to today on first
 * use), moved forward while a hold lasts. One script, atomic. id names
 * the call: resend an unanswered call with the same id and delta, and it
 * counts once. The callback gets NULL when the call failed (connection
 * lost, error, a malformed answer). Returns -1 (no callback) when not
 * connected.
 */
struct rq_warmup_req {
	const char *ip;
	const char *site;		/* NULL or "": the IP's own counters */
	int64_t cfg_start;		/* the config's warmup_start (day number), -1: none */
	uint64_t hour;			/* the hour the delta was counted in */
	uint32_t delta;
	uint64_t id;
	uint64_t now_wall_ms;
};
struct rq_warmup_ans {
	int64_t start;			/* day 1 of the ramp now (start + shift) */
	int64_t shift;			/* days holds have added */
	uint32_t sent_day, sent_hour;	/* totals for the request's day and hour */
	int held;			/* a hold is running */
	uint64_t hold_until;		/* wall ms */
	uint32_t hold_day;		/* the ramp day it holds */
};
int rq_warmup_sync(struct rq *q, const struct rq_warmup_req *w,
    void (*cb)(void *arg, const struct rq_warmup_ans *a), void *arg);
/*
 * rq_warmup_hold - hold ip's ramp at its current day until until_wall_ms
 * (0: release the hold; the days held stay added), with a reason for
 * volley status. Fire and forget (a log line says what happened).
 */
int rq_warmup_hold(struct rq *q, const char *ip, int64_t cfg_start, uint64_t until_wall_ms,
    const char *reason, uint64_t now_wall_ms);


/*
 * The inbound stream PREFIXinbound (DSNs and feedback reports), consumer
 * group RQ_INBOUND_GROUP. rq_inbound_fetch reads up to max entries (one
 * read in flight): after each (re)connect this consumer's own pending
 * entries first, then new ones; with claim_idle_ms > 0 it first takes over
 * entries idle that long in any consumer's pending list (a dead
 * instance's). cb gets the entries (m, n > 0; pointers valid during the
 * call only; NULL msg: the field is missing), then, once per read, m NULL
 * with seen = the entries the read brought (0 on an error or a lost
 * connection). Returns -1 (no callback) when not connected.
 */
struct rq_inbound_msg {
	const char *entry;		/* stream entry ID */
	const char *msg;		/* raw message, NULL if absent */
	size_t msg_len;
	const char *rcpt, *from, *source, *ts;	/* "" if absent */
};
int rq_inbound_fetch(struct rq *q, unsigned max, uint64_t claim_idle_ms,
    void (*cb)(void *arg, const struct rq_inbound_msg *m, size_t n, size_t seen), void *arg);

/* What one inbound message comes to (see docs/redis.md, the inbound script). */
enum rq_inbound_mode {
	RQ_INBOUND_EVENTS = 0,	/* events (and suppression) for a job */
	RQ_INBOUND_UNMATCHED,	/* keep it in PREFIXinbound:unmatched */
	RQ_INBOUND_ACK,		/* nothing to write: ack it */
};
struct rq_inbound_event {
	const char *status;		/* "bounced", "complained" */
	const char *rcpt;		/* the report's recipient (lower case), may be "" */
	int suppress;
	const char *why;		/* the suppression's reason: "bounced:invalid_recipient" */
	const char *const *pairs;	/* event fields: name, value, ... */
	size_t npairs;			/* name/value pairs */
};
/*
 * rq_inbound_settle - one script, atomic and idempotent (a marker per
 * entry; one event per job, status and recipient ever): XADD the events
 * (enriched from the job's sent record PREFIXsent:ID_KEY: to, campaign,
 * tenant, pool, ip, mx), SADD suppression to the job's tenant's list or
 * the global one with "why ts" in the matching PREFIXsuppressed_info hash,
 * or XADD to PREFIXinbound:unmatched (reason, msg, source, rcpt, from,
 * ts); then XACK + XDEL the entry. While sent records are written
 * (config_keep_sent_ms() of the configuration Redis runs with), an EVENTS
 * message whose job has none goes to unmatched ("unknown job") instead.
 * Kept in the outbox until Redis answers, like every settling write.
 */
void rq_inbound_settle(struct rq *q, const struct rq_inbound_msg *m, enum rq_inbound_mode mode,
    const char *job_id, const char *id_key, const char *reason,
    const struct rq_inbound_event *ev, size_t nev);

/* Policy, pure (exposed for the unit tests). */
/* Is a write refused with this error kept and retried (LOADING, BUSY,
 * READONLY, OOM, NOPERM, NOAUTH...)? Else it is dropped. The code is the
 * error's first word: BUSYGROUP is not BUSY. */
int rq_error_kept(const char *err);
/* The next back-off step after cur ms: 500 ms, doubling, at most 30 s. */
uint64_t rq_backoff_next(uint64_t cur);

/*
 * rq_inbound_add - append a raw inbound message to the stream
 * PREFIXinbound (fields msg, rcpt, from, source, ts; MAXLEN ~ 1,000,000).
 * cb(arg, 1) once Redis stored it, cb(arg, 0) on an error or a lost
 * connection (always exactly once). Returns -1, cb not called, when Redis is
 * not usable now.
 */
int rq_inbound_add(struct rq *q, const char *msg, size_t len, const char *rcpts,
    const char *from, const char *source, void (*cb)(void *arg, int ok), void *arg);

/*
 * The feedback loop's counters (rates.h; docs/redis.md). The scripts that
 * write final events and inbound events count them. rq_rates_read reads
 * up to max names counted within 25 hours, most recent first, of the
 * dimensions in dims ("campaign,ip," each followed by a comma), folded
 * into windows at now: cb(arg, entries, n, now) exactly once (n = 0 on an
 * error or a lost connection); the entries are freed after cb returns.
 * -1 (cb not called) when Redis is not usable now.
 */
int rq_rates_read(struct rq *q, uint64_t now_wall_ms, const char *dims, size_t max,
    void (*cb)(void *arg, struct rate_entry *e, size_t n, uint64_t now_wall_ms), void *arg);
/* The read script (redis_sync.c runs it for `volley status`) and its
 * answer's parser: entries into *out (free with rq_rates_free). */
const char *rq_rates_read_script(void);
size_t rq_rates_parse(const void *redis_reply, uint64_t now_wall_ms, struct rate_entry **out);
void rq_rates_free(struct rate_entry *e, size_t n);

/* One threshold's action, recorded once per marker (threshold, name, window). */
struct rq_rate_act {
	const char *threshold;		/* its name */
	enum rate_dim dim;
	const char *name;		/* the campaign, tenant, ip... */
	int pause;			/* HSETNX the pause hash of dim (campaign/tenant) */
	uint64_t marker_ms;		/* the marker lives this long (the window) */
	const char *lane;		/* the shaping entry's lane ("ip/site", or the name) */
	const char *action;		/* "paused", "warmup_held", ... */
	const char *reason;		/* the figures */
	uint64_t now_wall_ms, until_wall_ms;	/* until: 0 = until resumed */
	const struct rate_held *held;	/* suspend/throttle: for every engine (NULL: none) */
};
/*
 * rq_rates_act - in one script: unless the marker PREFIXrate:mark:
 * THRESHOLD:DIM:NAME exists, set it (PX marker_ms), pause (HSETNX, by =
 * "volley:threshold NAME"), record a suspend or throttle for every
 * engine in PREFIXshaping:held (a->held; kept if the field's own lasts
 * longer) and XADD the volley:shaping entry. cb(arg, 1,
 * tag) when this call did it, 0 when it was done before, -1 on an error
 * (exactly once). -1 (cb not called) when Redis is not usable now.
 */
int rq_rates_act(struct rq *q, const struct rq_rate_act *a,
    void (*cb)(void *arg, int acted, void *tag), void *arg, void *tag);

/*
 * rq_rates_export - the rate figures the engine last read into its
 * instance hash (PREFIXinstance:NAME, beside the stats): fields[i] =
 * values[i] (`rate:DIM:NAME`), and `rates_at` = at_wall_ms; every other
 * field starting "rate:" goes (one script). Fire and forget; -1 when the
 * stats are not being published (no lock, not connected).
 */
int rq_rates_export(struct rq *q, const char *const *fields, const char *const *values, size_t n,
    uint64_t at_wall_ms);

/*
 * rq_shaping_held - the suspensions and throttles recorded for every
 * engine (PREFIXshaping:held, rates.h): cb(arg, 1, entries, n) with those
 * still running at now_wall_ms (malformed fields are skipped and left);
 * those past their end are deleted (only if unchanged). cb(arg, 0, NULL,
 * 0) on an error or a lost connection, exactly once. -1 (cb not called)
 * when Redis is not usable now.
 */
int rq_shaping_held(struct rq *q, uint64_t now_wall_ms,
    void (*cb)(void *arg, int ok, const struct rate_held *h, size_t n), void *arg);

/*
 * MTA-STS policies kept over a restart: hash PREFIXmta_sts, field DOMAIN,
 * value "ID EXPIRES_MS POLICY" (mtasts_store_format). rq_sts_store writes
 * one (fire and forget; the hash stays at most RQ_MTA_STS_MAX fields: past
 * it a random other field goes). rq_sts_load reads them all: cb(arg, ok,
 * domains, values, lens, n) exactly once (ok 0, n 0 on an error).
 * rq_sts_forget deletes the named fields only if they still hold the
 * values read (an expired or malformed entry found at load). -1: Redis is
 * not usable now.
 */
int rq_sts_store(struct rq *q, const char *domain, const char *value);
int rq_sts_load(struct rq *q, void (*cb)(void *arg, int ok, const char *const *domains,
    const char *const *values, const size_t *lens, size_t n), void *arg);
int rq_sts_forget(struct rq *q, const char *domain, const char *value);

#endif
